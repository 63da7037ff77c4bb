//! Times one dream step (forward to the layer + input-gradient backward + update) per model.
//!
//!   cargo bench --bench dream_step [-- SIZE [RUNS]]      (defaults: 224, 5)
//!
//! VGG19 and GoogLeNet use seeded random weights with the real channel widths (the same work
//! as the real weights, which cannot be downloaded everywhere); EfficientNet-Lite0 uses the
//! real weights from weights/ or ../shared/weights. Prints the median and the spread of the runs.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use dreamvid::dream::{ascend, DreamParams, Rng};
use dreamvid::fixture::googlenet::{write_googlenet, GOOGLENET_WIDTHS};
use dreamvid::fixture::{test_image, write_vgg19, VGG19_WIDTHS};
use dreamvid::models::ModelKind;
use dreamvid::nn::Network;
use dreamvid::nn::Objective;

fn time_steps(name: &str, net: &Network, layer: &str, size: usize, runs: usize) {
    let x = test_image(size, size, &Device::Cpu).unwrap();
    let params = DreamParams { objective: Objective::layer(net.find_tap(layer).unwrap()), ..DreamParams::default() };
    let mut rng = Rng::new(0);
    ascend(net, &x, &params, None, &mut rng).unwrap(); // warm-up
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            ascend(net, &x, &params, None, &mut rng).unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "{name:<22} {layer:<12} {size}x{size}  median {:.3} s  (min {:.3}, max {:.3}, {runs} runs)",
        times[runs / 2],
        times[0],
        times[runs - 1]
    );
}

fn main() {
    dreamvid::runtime::configure();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let size = args.first().and_then(|s| s.parse().ok()).unwrap_or(224);
    let runs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lite0 = ["weights", "../shared/weights"].map(|d| repo.join(d).join("efficientnet_lite0.safetensors"));
    match lite0.iter().find(|p| p.is_file()) {
        Some(p) => {
            let net = ModelKind::EfficientNetLite0.load(p, &Device::Cpu).unwrap();
            time_steps("efficientnet-lite0", &net, "blocks.10", size, runs);
        }
        None => println!("efficientnet-lite0: no weights (run scripts/fetch-weights)"),
    }
    let vgg = std::env::temp_dir().join(format!("dreamvid-bench-vgg19-{}.safetensors", std::process::id()));
    write_vgg19(&vgg, &VGG19_WIDTHS, 0).unwrap();
    let net = ModelKind::Vgg19.load(&vgg, &Device::Cpu).unwrap();
    std::fs::remove_file(&vgg).unwrap();
    time_steps("vgg19 (random weights)", &net, "features.30", size, runs);
    let googlenet = std::env::temp_dir().join(format!("dreamvid-bench-googlenet-{}.safetensors", std::process::id()));
    write_googlenet(&googlenet, &GOOGLENET_WIDTHS, 0).unwrap();
    let net = ModelKind::GoogLeNet.load(&googlenet, &Device::Cpu).unwrap();
    std::fs::remove_file(&googlenet).unwrap();
    time_steps("googlenet (random)", &net, "inception4c", size, runs);
}
