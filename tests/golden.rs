//! Golden-image regression of the whole dream with the fixture model, and determinism.
//!
//! Goldens change only through `scripts/regen-goldens` (which sets DREAMVID_REGEN_GOLDENS=1);
//! a normal run compares against the stored PNG with a PSNR threshold, so tiny floating-point
//! differences between CPUs pass while any change to the algorithm fails.

mod common;

use candle_core::{Device, Tensor};
use dreamvid::compare::psnr;
use dreamvid::dream::{self, DreamParams};
use dreamvid::fixture::test_image;
use dreamvid::image_io::{load_image, save_image, tensor_to_rgb};
use dreamvid::nn::Objective;

/// Below this PSNR (dB) a dream no longer matches its golden image.
const MIN_PSNR: f64 = 40.0;

fn fixture_dream(seed: u64) -> Tensor {
    let net = common::fixture_vgg();
    let image = test_image(72, 96, &Device::Cpu).unwrap();
    let params = DreamParams {
        objective: Objective::layer(net.find_tap("features.20").unwrap()),
        octaves: 3,
        octave_scale: 1.4,
        iterations: 4,
        lr: 0.02,
        jitter: 4,
        smooth: 0.5,
        seed,
        tile: 0,
        ..DreamParams::default()
    };
    dream::dream(&net, &image, &params, &mut |_| {}).unwrap()
}

#[test]
fn fixture_dream_matches_golden() {
    let golden_path = common::repo().join("tests/golden/fixture_dream.png");
    let dreamed = fixture_dream(7);
    if std::env::var_os("DREAMVID_REGEN_GOLDENS").is_some() {
        save_image(&dreamed, &golden_path).unwrap();
        eprintln!("regenerated {}", golden_path.display());
        return;
    }
    let golden = tensor_to_rgb(&load_image(&golden_path, &Device::Cpu).unwrap()).unwrap();
    let got = tensor_to_rgb(&dreamed).unwrap();
    assert_eq!(got.dimensions(), golden.dimensions());
    let p = psnr(&got, &golden);
    assert!(p >= MIN_PSNR, "PSNR {p:.1} dB against {} (< {MIN_PSNR} dB)", golden_path.display());
    // The dream must have changed the picture, or the golden would guard nothing.
    let input = tensor_to_rgb(&test_image(72, 96, &Device::Cpu).unwrap()).unwrap();
    assert!(psnr(&got, &input) < 30.0, "the dream barely changed the input");
}

#[test]
fn same_seed_same_dream_other_seed_other_dream() {
    let (a, b, c) = (fixture_dream(7), fixture_dream(7), fixture_dream(8));
    let diff = |x: &Tensor, y: &Tensor| (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(diff(&a, &b), 0.0);
    assert!(diff(&a, &c) > 1e-3);
}

/// Convolution widths that put every 3x3 layer but the first on the Winograd kernels (16 to
/// 512 channels each way), as real VGG19's are.
const WINOGRAD_WIDTHS: [usize; 16] = [16, 16, 24, 24, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32];

#[test]
fn winograd_fixture_dream_matches_golden() {
    // One step: a single gradient is a smooth function of the kernels' arithmetic, so CPUs
    // that round differently (AVX2, AVX-512) agree to well above the threshold, while a wrong
    // transform, tile or mask moves it far below.
    let net = common::vgg_with_widths(&WINOGRAD_WIDTHS);
    let image = test_image(64, 88, &Device::Cpu).unwrap();
    let params = DreamParams {
        objective: Objective::layer(net.find_tap("features.20").unwrap()),
        octaves: 1,
        iterations: 1,
        lr: 0.05,
        jitter: 4,
        seed: 11,
        tile: 0,
        ..DreamParams::default()
    };
    let dreamed = tensor_to_rgb(&dream::dream(&net, &image, &params, &mut |_| {}).unwrap()).unwrap();
    let golden_path = common::repo().join("tests/golden/winograd_dream.png");
    if std::env::var_os("DREAMVID_REGEN_GOLDENS").is_some() {
        dreamed.save(&golden_path).unwrap();
        return;
    }
    let golden = image::open(&golden_path).unwrap().to_rgb8();
    assert_eq!(dreamed.dimensions(), golden.dimensions());
    let p = psnr(&dreamed, &golden);
    assert!(p >= MIN_PSNR, "PSNR {p:.1} dB against {} (< {MIN_PSNR} dB)", golden_path.display());
    let input = tensor_to_rgb(&image).unwrap();
    assert!(psnr(&dreamed, &input) < 35.0, "the dream barely changed the input");
}
