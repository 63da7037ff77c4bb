//! The dream's quality controls: gradient normalisation (`gradient`), decorrelated-colour steps
//! (`decorrelate`) and `keep_colors`, on images, videos and zooms.

mod common;

use common::{dreamvid, fixture_weights, stderr};

use std::path::Path;

use candle_core::{Device, Tensor};
use dreamvid::compare::frames;
use dreamvid::dream::{self, DreamParams, GradientNorm};
use dreamvid::fixture::clip::{moving_pattern, write_clip, ClipSpec};
use dreamvid::fixture::test_image;
use dreamvid::image_io::tensor_to_rgb;
use dreamvid::nn::Objective;
use image::RgbImage;

/// Mean absolute change of (luma, chroma) from `a` to `b`, in 8-bit levels: BT.601 Y, and
/// |Cb| + |Cr|, over pixels that `b` has not clipped (no channel at 0 or 255).
fn ycc_change(a: &RgbImage, b: &RgbImage) -> (f64, f64) {
    let ycc = |p: &image::Rgb<u8>| {
        let [r, g, b] = p.0.map(f64::from);
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        (y, 0.564 * (b - y), 0.713 * (r - y))
    };
    let (mut luma, mut chroma, mut n) = (0.0, 0.0, 0usize);
    for (p, q) in a.pixels().zip(b.pixels()) {
        if q.0.iter().any(|&c| c == 0 || c == 255) {
            continue;
        }
        let ((y0, cb0, cr0), (y1, cb1, cr1)) = (ycc(p), ycc(q));
        luma += (y1 - y0).abs();
        chroma += (cb1 - cb0).abs() + (cr1 - cr0).abs();
        n += 1;
    }
    assert!(n > a.len() / 6, "most pixels clipped");
    (luma / n as f64, chroma / n as f64)
}

fn png(path: &Path) -> RgbImage {
    image::open(path).unwrap().to_rgb8()
}

/// The fixture VGG19 with `args` after the common ones (layer 20, a strong short dream).
fn run(dir: &Path, args: &[&str]) {
    let weights = fixture_weights(dir);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--model", "vgg19", "--weights", &weights, "--layer", "20", "--octaves", "2"]);
    all.extend(["--iterations", "3", "--lr", "0.05", "--seed", "3"]);
    let o = dreamvid(&all);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Asserts that `dreamed` kept `source`'s colours (chroma change under 1.5 levels while the
/// luma changed by more than 2), and that `plain` (the same dream without keep_colors) did
/// not (chroma change over 3 times as large).
fn assert_kept_colors(what: &str, source: &RgbImage, dreamed: &RgbImage, plain: &RgbImage) {
    let (luma, chroma) = ycc_change(source, dreamed);
    let (_, plain_chroma) = ycc_change(source, plain);
    assert!(luma > 2.0, "{what}: the dream barely changed the picture (luma {luma:.2})");
    assert!(chroma < 1.5, "{what}: chroma changed by {chroma:.2} levels with keep_colors");
    assert!(plain_chroma > 3.0 * chroma, "{what}: chroma {plain_chroma:.2} without keep_colors, {chroma:.2} with");
}

#[test]
fn keep_colors_keeps_the_source_chroma_in_images_videos_and_zooms() {
    let dir = common::scratch("keep-colors");
    let source = dir.join("source.png");
    tensor_to_rgb(&test_image(72, 96, &Device::Cpu).unwrap()).unwrap().save(&source).unwrap();
    let src = source.to_str().unwrap();

    // Image.
    let (kept, plain) = (dir.join("kept.png"), dir.join("plain.png"));
    run(&dir, &["image", src, "-o", kept.to_str().unwrap(), "--keep-colors"]);
    run(&dir, &["image", src, "-o", plain.to_str().unwrap()]);
    assert_kept_colors("image", &png(&source), &png(&kept), &png(&plain));

    // Video, with flow coherence carrying each dream to the next frame, into PNG frames.
    let clip = dir.join("clip.mp4");
    write_clip(&clip, &ClipSpec::constant(96, 64, 6, 25), moving_pattern(96, 64, 3, 1)).unwrap();
    let (kept, plain) = (dir.join("kept/"), dir.join("plain/"));
    let clip_arg = clip.to_str().unwrap();
    run(&dir, &[clip_arg, "-o", kept.to_str().unwrap(), "--keep-colors", "--coherence", "flow"]);
    run(&dir, &[clip_arg, "-o", plain.to_str().unwrap(), "--keep-colors=false", "--coherence", "flow"]);
    let sources = frames(&clip).unwrap();
    assert_eq!(sources.len(), 6);
    for (i, s) in sources.iter().enumerate() {
        let name = format!("frame_{i:05}.png");
        assert_kept_colors(&format!("video frame {i}"), s, &png(&kept.join(&name)), &png(&plain.join(&name)));
    }

    // Zoom: a still camera, so every frame should keep the first image's colours.
    let (kept, plain) = (dir.join("zoom-kept/"), dir.join("zoom-plain/"));
    let still = ["--frames", "3", "--zoom", "1", "--rotate", "0", "--translate", "0,0"];
    run(&dir, &[&["zoom", src, "-o", kept.to_str().unwrap(), "--keep-colors"][..], &still].concat());
    run(&dir, &[&["zoom", src, "-o", plain.to_str().unwrap()][..], &still].concat());
    for i in 0..3 {
        let name = format!("frame_{i:05}.png");
        assert_kept_colors(
            &format!("zoom frame {i}"),
            &png(&source),
            &png(&kept.join(&name)),
            &png(&plain.join(&name)),
        );
    }
}

#[test]
fn switches_take_true_false_and_nothing_else() {
    let dir = common::scratch("keep-colors-flag");
    let weights = fixture_weights(&dir);
    let o = dreamvid(&["image", "in.png", "-o", "out.png", "--weights", &weights, "--keep-colors=maybe"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--keep-colors"), "{}", stderr(&o));
    let preset = dir.join("p.toml");
    std::fs::write(&preset, "[dream]\nkeep_colors = \"yes\"\n").unwrap();
    let source = dir.join("in.png");
    tensor_to_rgb(&test_image(40, 40, &Device::Cpu).unwrap()).unwrap().save(&source).unwrap();
    let o = dreamvid(&[
        "image",
        source.to_str().unwrap(),
        "-o",
        dir.join("out.png").to_str().unwrap(),
        "--model",
        "vgg19",
        "--weights",
        &weights,
        "--preset",
        preset.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("keep_colors") && stderr(&o).contains("true or false"), "{}", stderr(&o));
}

fn fixture_dream(configure: impl Fn(&mut DreamParams)) -> Tensor {
    let net = common::fixture_vgg();
    let mut params = DreamParams {
        objective: Objective::layer(net.find_tap("features.20").unwrap()),
        octaves: 2,
        iterations: 4,
        lr: 0.03,
        jitter: 4,
        seed: 5,
        tile: 0,
        ..DreamParams::default()
    };
    configure(&mut params);
    dream::dream(&net, &test_image(64, 80, &Device::Cpu).unwrap(), &params, &mut |_| {}).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn decorrelated_steps_are_deterministic_and_favour_brightness() {
    let source = tensor_to_rgb(&test_image(64, 80, &Device::Cpu).unwrap()).unwrap();
    let (a, b) = (fixture_dream(|p| p.decorrelate = true), fixture_dream(|p| p.decorrelate = true));
    assert_eq!(max_diff(&a, &b), 0.0, "same settings, same dream");
    let plain = fixture_dream(|_| {});
    assert!(max_diff(&a, &plain) > 0.02, "decorrelate changed nothing");
    // The same amount of change, less of it in colour: chroma's share of the change drops.
    let share = |x: &Tensor| {
        let (luma, chroma) = ycc_change(&source, &tensor_to_rgb(x).unwrap());
        chroma / (luma + chroma)
    };
    let (decorrelated, classic) = (share(&a), share(&plain));
    assert!(decorrelated < 0.6 * classic, "chroma share {decorrelated:.3} decorrelated, {classic:.3} classic");
}

#[test]
fn every_gradient_norm_dreams_deterministically_and_differently() {
    let mut dreams = Vec::new();
    for norm in [GradientNorm::Mean, GradientNorm::Std, GradientNorm::Laplacian] {
        let once = fixture_dream(|p| p.gradient = norm);
        assert_eq!(max_diff(&once, &fixture_dream(|p| p.gradient = norm)), 0.0, "{norm:?}");
        dreams.push(once);
    }
    assert!(max_diff(&dreams[0], &dreams[1]) > 0.01 && max_diff(&dreams[0], &dreams[2]) > 0.01);
    // Fewer levels is a different pyramid, so a different step.
    let two = fixture_dream(|p| (p.gradient, p.gradient_levels) = (GradientNorm::Laplacian, 2));
    assert!(max_diff(&dreams[2], &two) > 0.01);
}
