//! The GPU check that `scripts/gpu-check` runs on a machine with an NVIDIA GPU (build it with
//! `scripts/cuda-build`, which enables the `cuda` feature). It links no FFmpeg, so it runs where
//! only the NVIDIA driver and the CUDA runtime libraries are installed.
//!
//! 1. The same dream on CPU and on CUDA (f32) must agree: PSNR at least 30 dB, else exit 1.
//!    f16 and bf16 on CUDA are compared with the CPU result and reported.
//! 2. Times one dream step on CUDA (forward to the layer, input gradient, update) for VGG19
//!    features[:31] and EfficientNet-Lite0 at 224 and 512 pixels, printing
//!    `RESULT dreamvid MODEL SIZE PRECISION SECONDS` lines for the script's ratio table.
//!
//!   gpu_check --vgg VGG.safetensors --lite0 LITE0.safetensors [--runs N]

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

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn step_seconds(net: &Network, layer: &str, size: usize, runs: usize, device: &Device) -> anyhow::Result<f64> {
    let x = test_image(size, size, device)?.to_dtype(net.dtype())?;
    let params =
        DreamParams { objective: Objective::layer(net.find_tap(layer).context("layer")?), ..DreamParams::default() };
    let mut rng = Rng::new(0);
    for _ in 0..2 {
        ascend(net, &x, &params, None, &mut rng)?;
    }
    device.synchronize()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        ascend(net, &x, &params, None, &mut rng)?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

fn main() -> anyhow::Result<()> {
    let vgg = PathBuf::from(arg("--vgg").context("--vgg PATH (torchvision-layout VGG19 features) is required")?);
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

    // 2. Step timings.
    let vgg_net = ModelKind::Vgg19.load(&vgg, &gpu)?;
    for (name, net, layer) in [("vgg19", &vgg_net, "features.30"), ("efficientnet-lite0", &gpu_net, "blocks.10")] {
        for dtype in [DType::F32, DType::BF16] {
            let net = net.to_dtype(dtype)?;
            for size in [224, 512] {
                let s = step_seconds(&net, layer, size, runs, &gpu)?;
                println!("RESULT dreamvid {name} {size} {} {s:.5}", format!("{dtype:?}").to_lowercase());
            }
        }
    }
    if failed {
        bail!("CUDA results differ from the CPU beyond the threshold");
    }
    Ok(())
}
