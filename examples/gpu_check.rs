//! The GPU check that `scripts/gpu-check` runs on a machine with an NVIDIA GPU (build it with
//! `scripts/cuda-build`, which enables the `cuda` feature). It links no FFmpeg, so it runs where
//! only the NVIDIA driver and the CUDA runtime libraries are installed.
//!
//! 1. The same dream on CPU and on CUDA (f32) must agree: PSNR at least 30 dB, else exit 1.
//!    f16 and bf16 on CUDA are compared with the CPU result and reported.
//! 2. Times on CUDA, in f32 and bf16, one dream step (forward to the layer, input gradient,
//!    update) of VGG19 features[:31] (224, 512 and 1920x1080 pixels), GoogLeNet up to
//!    inception4c and EfficientNet-Lite0 up to blocks.10 (224 and 512), and one frame's dream
//!    of the default video preset (lite0-video: its octaves and steps, each step weighted as
//!    under flow coherence) at 1280x720 and 1920x1080, all with the settings' default tiling,
//!    printing `RESULT dreamvid MODEL SIZE PRECISION SECONDS` lines (median of the runs; a
//!    third as many for frames) for the script's ratio table.
//!
//!   gpu_check --vgg VGG.safetensors --googlenet GOOGLENET.safetensors --lite0 LITE0.safetensors
//!       [--runs N]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device};
use dreamvid::compare::psnr;
use dreamvid::dream::{self, ascend, DreamParams, Rng};
use dreamvid::fixture::test_image;
use dreamvid::image_io::tensor_to_rgb;
use dreamvid::models::ModelKind;
use dreamvid::nn::{Network, Objective};
use dreamvid::plan::{dream_params, load_preset, Purpose};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// Median seconds of `runs` calls of `work` (after two warm-up calls), synchronised.
fn median_seconds(runs: usize, device: &Device, work: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    for _ in 0..2 {
        work()?;
    }
    device.synchronize()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        work()?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

fn step_seconds(
    net: &Network,
    layer: &str,
    (h, w): (usize, usize),
    runs: usize,
    device: &Device,
) -> anyhow::Result<f64> {
    let x = test_image(h, w, device)?.to_dtype(net.dtype())?;
    let params =
        DreamParams { objective: Objective::layer(net.find_tap(layer).context("layer")?), ..DreamParams::default() };
    let mut rng = Rng::new(0);
    median_seconds(runs, device, &mut || {
        ascend(net, &x, &params, None, &mut rng)?;
        Ok(())
    })
}

/// One frame's dream as the default video render does it: lite0-video's settings, every step
/// weighted per pixel (0.3 to 1, as where flow coherence carries the previous dream).
fn frame_seconds(net: &Network, (h, w): (usize, usize), runs: usize, device: &Device) -> anyhow::Result<f64> {
    let (preset, _) = load_preset(None, Purpose::Video, Some(ModelKind::EfficientNetLite0), &[])?;
    let settings = preset.at(0, 25.0);
    let params = dream_params(net, &settings, settings.seed)?;
    let x = test_image(h, w, device)?;
    let weight = ((test_image(h, w, device)?.mean_keepdim(1)? * 0.7)? + 0.3)?;
    median_seconds(runs, device, &mut || {
        dream::dream_weighted(net, &x, &params, Some(&weight), &mut |_| {})?;
        Ok(())
    })
}

fn main() -> anyhow::Result<()> {
    let vgg = PathBuf::from(arg("--vgg").context("--vgg PATH (torchvision-layout VGG19 features) is required")?);
    let googlenet =
        PathBuf::from(arg("--googlenet").context("--googlenet PATH (torchvision-layout GoogLeNet) is required")?);
    let lite0 = PathBuf::from(arg("--lite0").context("--lite0 PATH is required")?);
    let runs: usize = arg("--runs").map_or(Ok(10), |r| r.parse())?;
    let gpu = Device::new_cuda(0).context("no CUDA device (is this a --features cuda build on a GPU machine?)")?;

    // 1. CPU and CUDA agree.
    let cpu_net = ModelKind::EfficientNetLite0.load(&lite0, &Device::Cpu)?;
    let gpu_net = ModelKind::EfficientNetLite0.load(&lite0, &gpu)?;
    let layer = Objective::layer(cpu_net.find_tap("blocks.10").context("layer")?);
    let params = DreamParams { objective: layer, octaves: 2, iterations: 4, seed: 1, ..DreamParams::default() };
    let cpu = tensor_to_rgb(&dream::dream(&cpu_net, &test_image(256, 256, &Device::Cpu)?, &params, &mut |_| {})?)?;
    let mut failed = false;
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let net = gpu_net.to_dtype(dtype)?;
        let out = tensor_to_rgb(&dream::dream(&net, &test_image(256, 256, &gpu)?, &params, &mut |_| {})?)?;
        let p = psnr(&cpu, &out);
        let verdict = match dtype {
            DType::F32 if p < 30.0 => {
                failed = true;
                "FAIL (< 30 dB)"
            }
            DType::F32 => "ok (>= 30 dB)",
            _ => "reported",
        };
        println!("CHECK cpu-vs-cuda {dtype:?} psnr {p:.2} dB {verdict}");
    }

    // 2. Step and frame timings.
    let vgg_net = ModelKind::Vgg19.load(&vgg, &gpu)?;
    let googlenet_net = ModelKind::GoogLeNet.load(&googlenet, &gpu)?;
    let square = |s| (s, s);
    let steps = [
        ("vgg19", &vgg_net, ModelKind::Vgg19, vec![square(224), square(512), (1080, 1920)]),
        ("googlenet", &googlenet_net, ModelKind::GoogLeNet, vec![square(224), square(512)]),
        ("efficientnet-lite0", &gpu_net, ModelKind::EfficientNetLite0, vec![square(224), square(512)]),
    ];
    let label = |(h, w): (usize, usize)| if h == w { h.to_string() } else { format!("{w}x{h}") };
    for dtype in [DType::F32, DType::BF16] {
        let precision = format!("{dtype:?}").to_lowercase();
        for (name, net, kind, sizes) in &steps {
            let net = net.to_dtype(dtype)?;
            for &size in sizes {
                let s = step_seconds(&net, kind.default_layer(), size, runs, &gpu)?;
                println!("RESULT dreamvid {name} {} {precision} {s:.5}", label(size));
            }
        }
        let net = gpu_net.to_dtype(dtype)?;
        for size in [(720, 1280), (1080, 1920)] {
            let s = frame_seconds(&net, size, runs.div_ceil(3), &gpu)?;
            println!("RESULT dreamvid lite0-video-frame {} {precision} {s:.5}", label(size));
        }
    }
    if failed {
        bail!("CUDA results differ from the CPU beyond the threshold");
    }
    Ok(())
}
