//! dreamvid side of `scripts/bench`: times the dream step or a whole octave dream of VGG19
//! features[:31], GoogLeNet up to inception4c or EfficientNet-Lite0 up to blocks.10 (each
//! model's default layer) on given weights, and measures the machine's sgemm peak.
//!
//!   dream_compare write-weights MODEL PATH      random MODEL (real widths) as safetensors
//!   dream_compare MODEL WEIGHTS H W MODE RUNS [OCTAVES ITERATIONS]
//!       MODEL vgg19 | googlenet | lite0, MODE step | octaves; prints `RESULT dreamvid
//!       MODEL/MODE WxH SECONDS` per run, `PEAK ...` (peak RSS bytes) and for VGG19 `FLOPS ...`
//!       (convolution FLOPs of one step at this size)
//!   dream_compare dump MODEL WEIGHTS H W OUT    a seeded uniform-noise input, the activations
//!       of MODEL's default layer for it and the objective's input gradient, as safetensors
//!       (`input`, `activations`, `gradient`), for torch_reference.py's `check` (noise, not the
//!       ramp: on the ramp's flat areas whole regions sit at a ReLU6 bound together, and the
//!       gradient changes by 2% between f32 and f64 in PyTorch alone)
//!   dream_compare gemm-peak                     `GEMM GFLOPS` of a 2048^3 f32 matmul
//!   dream_compare same-weights A B              fails unless VGG19 weights files A and B
//!       (safetensors or .pth) give bit-identical activations; prints `SAME A B`
//!
//! The input is the same colour ramp torch_reference.py builds.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dreamvid::dream::{ascend, dream, DreamParams, Rng};
use dreamvid::fixture::googlenet::{write_googlenet, GOOGLENET_WIDTHS};
use dreamvid::fixture::{write_vgg19, VGG19_WIDTHS};
use dreamvid::models::vgg19::{layout, Slot};
use dreamvid::models::ModelKind;
use dreamvid::nn::Objective;

fn ramp(h: usize, w: usize) -> candle_core::Result<Tensor> {
    let mut data = vec![0f32; 3 * h * w];
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (x as f32 / (w - 1) as f32, y as f32 / (h - 1) as f32);
            data[y * w + x] = 0.2 + 0.6 * u;
            data[h * w + y * w + x] = 0.15 + 0.7 * v;
            data[2 * h * w + y * w + x] = 0.3 + 0.4 * (1.0 - u);
        }
    }
    Tensor::from_vec(data, (1, 3, h, w), &Device::Cpu)
}

/// Multiply-add FLOPs of the convolutions in features[:31], forward plus input backward.
fn step_flops(h: usize, w: usize) -> f64 {
    let (mut h, mut w, mut c, mut flops) = (h, w, 3usize, 0.0);
    let mut widths = VGG19_WIDTHS.iter();
    for slot in layout().into_iter().take(31) {
        match slot {
            Slot::Conv => {
                let out = *widths.next().expect("width");
                flops += 2.0 * (h * w * c * out * 9) as f64;
                c = out;
            }
            Slot::Pool => (h, w) = (h / 2, w / 2),
            Slot::Relu => {}
        }
    }
    2.0 * flops
}

/// `vgg19`, `googlenet` or `lite0` (EfficientNet-Lite0), as scripts/bench names them.
fn model_kind(name: &str) -> anyhow::Result<ModelKind> {
    match name {
        "lite0" => Ok(ModelKind::EfficientNetLite0),
        other => other.parse().map_err(anyhow::Error::msg),
    }
}

fn peak_rss() -> u64 {
    dreamvid::pipeline::peak_rss_bytes().unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    dreamvid::runtime::configure();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    // Arguments of each mode, its name included (see the usage at the top of this file).
    let wanted = match args.first().map(String::as_str) {
        Some("write-weights" | "same-weights") => 3,
        Some("dump") => 6,
        Some("gemm-peak") => 1,
        _ => 6,
    };
    anyhow::ensure!(
        args.len() >= wanted,
        "{wanted} arguments expected, {} given: {args:?} (the modes and their arguments are listed at the top of benches/dream_compare.rs)",
        args.len()
    );
    match args.first().map(String::as_str) {
        Some("write-weights") => {
            let path = args[2].as_ref();
            match model_kind(&args[1])? {
                ModelKind::Vgg19 => write_vgg19(path, &VGG19_WIDTHS, 0)?,
                ModelKind::GoogLeNet => write_googlenet(path, &GOOGLENET_WIDTHS, 0)?,
                other => anyhow::bail!("no random weights for {}", other.name()),
            }
            return Ok(());
        }
        Some("same-weights") => {
            let x = ramp(64, 64)?;
            let last = |path: &str| -> anyhow::Result<Vec<u32>> {
                let net = ModelKind::Vgg19.load(path.as_ref(), &Device::Cpu)?;
                let out = net.activations(&x, net.taps().len() - 1)?.flatten_all()?.to_vec1::<f32>()?;
                Ok(out.into_iter().map(f32::to_bits).collect())
            };
            anyhow::ensure!(last(&args[1])? == last(&args[2])?, "{} loads differently from {}", args[2], args[1]);
            println!("SAME {} {}", args[1], args[2]);
            return Ok(());
        }
        Some("dump") => {
            let model = model_kind(&args[1])?;
            let net = model.load(args[2].as_ref(), &Device::Cpu)?;
            let tap = net.find_tap(model.default_layer()).expect("layer");
            let (h, w): (usize, usize) = (args[3].parse()?, args[4].parse()?);
            let mut rng = Rng::new(0);
            let x =
                Tensor::from_vec((0..3 * h * w).map(|_| rng.unit()).collect::<Vec<f32>>(), (1, 3, h, w), &Device::Cpu)?;
            let (_, gradient) = net.objective_gradient(&x, &Objective::layer(tap))?;
            let tensors =
                HashMap::from([("activations", net.activations(&x, tap)?), ("gradient", gradient), ("input", x)]);
            candle_core::safetensors::save(&tensors, &args[5])?;
            return Ok(());
        }
        Some("gemm-peak") => {
            let n = 2048;
            let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
            let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
            a.matmul(&b)?;
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                a.matmul(&b)?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("GEMM {:.1}", 2.0 * (n as f64).powi(3) / best / 1e9);
            return Ok(());
        }
        _ => {}
    }
    let (label, model) = (args[0].as_str(), model_kind(&args[0])?);
    let weights = &args[1];
    let (h, w): (usize, usize) = (args[2].parse()?, args[3].parse()?);
    let mode = args[4].as_str();
    let runs: usize = args[5].parse()?;
    let octaves: usize = args.get(6).map_or(Ok(3), |s| s.parse())?;
    let iterations: usize = args.get(7).map_or(Ok(3), |s| s.parse())?;
    let net = model.load(weights.as_ref(), &Device::Cpu)?;
    let params = DreamParams {
        // features.30, inception4c and blocks.10.
        objective: Objective::layer(net.find_tap(model.default_layer()).expect("layer")),
        octaves,
        iterations,
        ..DreamParams::default()
    };
    let image = ramp(h, w)?;
    let mut rng = Rng::new(0);
    let mut work = || -> anyhow::Result<()> {
        match mode {
            "step" => {
                ascend(&net, &image, &params, None, &mut rng)?.0.to_dtype(DType::F32)?;
            }
            "octaves" => {
                dream(&net, &image, &params, &mut |_| {})?;
            }
            other => anyhow::bail!("unknown mode {other}"),
        }
        Ok(())
    };
    work()?;
    for _ in 0..runs {
        let t = Instant::now();
        work()?;
        println!("RESULT dreamvid {label}/{mode} {w}x{h} {:.5}", t.elapsed().as_secs_f64());
    }
    println!("PEAK dreamvid {label}/{mode} {w}x{h} {}", peak_rss());
    if mode == "step" && model == ModelKind::Vgg19 {
        println!("FLOPS vgg19/{mode} {w}x{h} {:.0}", step_flops(h, w));
    }
    Ok(())
}
