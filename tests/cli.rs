//! The `dreamvid` binary as a user runs it.

mod common;

use common::{dreamvid, fixture_weights, stderr};

use std::path::Path;
use std::process::Command;

fn write_input(dir: &Path, w: u32, h: u32) -> String {
    let p = dir.join("in.png");
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 5) as u8, (y * 7) as u8, ((x + y) * 3) as u8]))
        .save(&p)
        .unwrap();
    p.display().to_string()
}

#[test]
fn image_command_writes_a_dream_of_the_input_size() {
    let dir = common::scratch("cli-image");
    let (weights, input) = (fixture_weights(&dir), write_input(&dir, 50, 37));
    let out = dir.join("out.png");
    let o = dreamvid(&[
        "image",
        &input,
        "-o",
        out.to_str().unwrap(),
        "--model",
        "vgg19",
        "--weights",
        &weights,
        "--layer",
        "20",
        "--octaves",
        "2",
        "--iterations",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (50, 37));
    assert_ne!(img.to_rgb8().as_raw(), image::open(&input).unwrap().to_rgb8().as_raw());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3, "stray files left beside the output");
}

#[test]
fn unreadable_input_fails_cleanly_and_writes_nothing() {
    let dir = common::scratch("cli-bad-input");
    let weights = fixture_weights(&dir);
    let bad = dir.join("broken.png");
    std::fs::write(&bad, b"\x89PNG garbage").unwrap();
    let out = dir.join("out.png");
    let o = dreamvid(&[
        "image",
        bad.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "vgg19",
        "--weights",
        &weights,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("broken.png"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    assert!(!out.exists());
}

#[test]
fn bad_layer_and_output_extension_are_explained() {
    let dir = common::scratch("cli-bad-args");
    let (weights, input) = (fixture_weights(&dir), write_input(&dir, 40, 40));
    let o = dreamvid(&["image", &input, "-o", "x.png", "--model", "vgg19", "--weights", &weights, "--layer", "99"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no layer `99`") && stderr(&o).contains("features.36"), "{}", stderr(&o));
    let out = dir.join("out.bmpx");
    let o = dreamvid(&["image", &input, "-o", out.to_str().unwrap(), "--model", "vgg19", "--weights", &weights]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown image extension"), "{}", stderr(&o));
}

#[test]
fn missing_weights_name_the_fetch_script() {
    let dir = common::scratch("cli-no-weights");
    let input = write_input(&dir, 40, 40);
    let o = Command::new(env!("CARGO_BIN_EXE_dreamvid"))
        .args(["image", &input, "-o", "o.png", "--model", "vgg19"])
        .current_dir(&dir)
        .env("DREAMVID_WEIGHTS_DIR", dir.join("empty"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("vgg19.safetensors") && err.contains("scripts/fetch-weights vgg19"), "{err}");
}

#[test]
fn layers_lists_torchvision_indices_with_shapes() {
    let dir = common::scratch("cli-layers");
    let weights = fixture_weights(&dir);
    let o = dreamvid(&["layers", "--model", "vgg19", "--weights", &weights, "--size", "64"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("features.")).count(), 37);
    assert!(
        text.lines().any(|l| l.starts_with("features.30") && l.contains("conv 3x3 8->8") && l.contains("[8, 4, 4]")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("features.36") && l.contains("maxpool") && l.contains("[8, 2, 2]")),
        "{text}"
    );
}

#[test]
fn cuda_without_the_feature_is_explained() {
    if cfg!(feature = "cuda") {
        return;
    }
    let dir = common::scratch("cli-cuda");
    let weights = fixture_weights(&dir);
    let o = dreamvid(&["layers", "--model", "vgg19", "--weights", &weights, "--device", "cuda"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("scripts/cuda-build"), "{}", stderr(&o));
}

#[test]
fn half_precision_on_the_cpu_is_explained() {
    let dir = common::scratch("cli-precision");
    let (weights, input) = (fixture_weights(&dir), write_input(&dir, 40, 40));
    let out = dir.join("o.png");
    let o = dreamvid(&[
        "image",
        &input,
        "-o",
        out.to_str().unwrap(),
        "--model",
        "vgg19",
        "--weights",
        &weights,
        "--precision",
        "bf16",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--precision bf16 needs --device cuda"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn tiled_dreams_keep_the_size_and_tiny_tiles_are_refused() {
    let dir = common::scratch("cli-tile");
    let (weights, input) = (fixture_weights(&dir), write_input(&dir, 300, 170));
    let out = dir.join("out.png");
    let args = ["image", &input, "-o", out.to_str().unwrap(), "--model", "vgg19", "--weights", &weights];
    let o = dreamvid(&[&args[..], &["--layer", "20", "--octaves", "1", "--iterations", "2", "--tile", "128"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (300, 170));
    std::fs::remove_file(&out).unwrap();
    let o = dreamvid(&[&args[..], &["--tile", "5"]].concat());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--tile 5 is too small"), "{}", stderr(&o));
    assert!(!out.exists());
}
