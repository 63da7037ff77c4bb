//! The `dreamvid` binary as a user runs it.

mod common;

use common::{dreamvid, fixture_weights, stderr};
use dreamvid::models::ModelKind;

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
fn a_video_output_without_a_container_is_explained_before_any_work() {
    let dir = common::scratch("cli-no-container");
    let input = dir.join("in.mp4");
    let spec = dreamvid::fixture::clip::ClipSpec::constant(32, 32, 2, 25);
    dreamvid::fixture::clip::write_clip(&input, &spec, dreamvid::fixture::clip::moving_pattern(32, 32, 1, 1)).unwrap();
    for (name, says) in [("out", "no extension to choose the container by"), ("out.xyz", "no container for .xyz")] {
        let out = dir.join(name);
        let o = dreamvid(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--weights", "no-such-file"]);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(err.contains(says) && err.contains(".mp4") && err.contains("in / to write PNG frames"), "{err}");
        assert!(!err.contains("dreamvid-partial") && !err.contains("no-such-file"), "{err}");
        assert!(!out.exists());
    }
    // A preview writes OUTPUT.preview.mp4, whatever OUTPUT's extension: the check reaches the
    // weights (given as missing here), not the container.
    let out = dir.join("out");
    let o = dreamvid(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--preview", "--weights", "no-such-file"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no-such-file") && !stderr(&o).contains("container"), "{}", stderr(&o));
}

#[test]
fn the_shell_gets_completions_a_manual_and_a_version_that_says_what_was_built() {
    let dir = common::scratch("cli-shell");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = dreamvid(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        for word in ["dreamvid", "preset", "stability", "keep-colors"] {
            assert!(script.contains(word), "the {shell} script has no `{word}`");
        }
    }
    let bash = dir.join("dreamvid.bash");
    std::fs::write(&bash, dreamvid(&["completions", "bash"]).stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
    assert!(check.status.success(), "the bash script does not parse: {}", stderr(&check));

    let page = String::from_utf8(dreamvid(&["man"]).stdout).unwrap();
    assert!(page.contains(".TH dreamvid 1") && page.contains("completions") && page.contains("preset"), "{page}");
    let o = dreamvid(&["man", "--dir", dir.join("man1").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let image = std::fs::read_to_string(dir.join("man1/dreamvid-image.1")).unwrap();
    assert!(image.contains("guide") && image.contains("WebP"), "{image}");

    let version = String::from_utf8(dreamvid(&["--version"]).stdout).unwrap();
    assert!(version.starts_with(&format!("dreamvid {} (", env!("CARGO_PKG_VERSION"))), "{version}");
    assert!(version.contains("features: CPU only"), "{version}");
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(common::repo()).output();
    match head.ok().filter(|o| o.status.success()) {
        Some(commit) => {
            let commit = String::from_utf8_lossy(&commit.stdout).trim().to_string();
            assert!(version.contains(&format!("commit {commit}")), "{version} names no commit {commit}");
        }
        None => assert!(version.contains("not built from git"), "{version}"),
    }
}

#[test]
fn missing_weights_name_the_fetch_script() {
    let dir = common::scratch("cli-no-weights");
    let input = write_input(&dir, 40, 40);
    let o = Command::new(env!("CARGO_BIN_EXE_dreamvid"))
        .args(["image", &input, "-o", "o.png", "--model", "vgg19"])
        .current_dir(&dir)
        .env("DREAMVID_OFFLINE", "1")
        .env("DREAMVID_WEIGHTS_DIR", dir.join("empty"))
        .env("HOME", &dir)
        .env("TORCH_HOME", dir.join("empty"))
        .env("HF_HUB_CACHE", dir.join("empty"))
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
fn layers_lists_googlenet_modules_with_shapes() {
    let dir = common::scratch("cli-layers-googlenet");
    let weights = dir.join("googlenet.safetensors");
    let widths = dreamvid::fixture::googlenet::FIXTURE_GOOGLENET_WIDTHS;
    dreamvid::fixture::googlenet::write_googlenet(&weights, &widths, common::FIXTURE_SEED).unwrap();
    let o = dreamvid(&["layers", "--model", "googlenet", "--weights", weights.to_str().unwrap(), "--size", "224"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let names: Vec<&str> = text.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ModelKind::GoogLeNet.layer_names());
    // The fixture's inception4c takes inception4b's 9 channels and concatenates 2 + 4 + 3 + 2.
    let line = |name: &str| text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_default();
    assert!(line("inception4c").contains("inception 9->11") && line("inception4c").contains("[11, 14, 14]"), "{text}");
    assert!(line("maxpool4").contains("maxpool 2x2/2 ceil") && line("maxpool4").contains(", 7, 7]"), "{text}");
    assert!(line("conv1").contains("conv 7x7/2 3->4") && line("conv1").contains("[4, 112, 112]"), "{text}");
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

/// Dreams `input` into `output` with the fixture model (fast settings).
fn dream_image(weights: &str, input: &Path, output: &Path) -> std::process::Output {
    dreamvid(&[
        "image",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--model",
        "vgg19",
        "--weights",
        weights,
        "--layer",
        "20",
        "--octaves",
        "2",
        "--iterations",
        "2",
    ])
}

#[test]
fn images_of_every_kind_dream_and_keep_what_they_had() {
    use image::{DynamicImage, ImageBuffer, ImageEncoder, Luma, Rgba};
    let dir = common::scratch("cli-image-kinds");
    let weights = fixture_weights(&dir);
    let (w, h) = (40u32, 30u32);
    let colour = |x: u32, y: u32| [(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8];
    // Alpha: kept exactly in PNG, dropped from a JPEG with a note.
    let rgba = ImageBuffer::from_fn(w, h, |x, y| {
        let [r, g, b] = colour(x, y);
        Rgba([r, g, b, (x * 6) as u8])
    });
    let input = dir.join("alpha.png");
    rgba.save(&input).unwrap();
    let out = dir.join("alpha-dream.png");
    let o = dream_image(&weights, &input, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let dreamed = image::open(&out).unwrap();
    assert!(dreamed.color().has_alpha(), "alpha dropped: {:?}", dreamed.color());
    let alpha = |img: &DynamicImage| img.to_rgba8().pixels().map(|p| p[3]).collect::<Vec<_>>();
    assert_eq!(alpha(&dreamed), alpha(&DynamicImage::ImageRgba8(rgba.clone())), "alpha must be copied back");
    assert_ne!(dreamed.to_rgb8().as_raw(), DynamicImage::ImageRgba8(rgba).to_rgb8().as_raw(), "not dreamed");
    let o = dream_image(&weights, &input, &dir.join("alpha-dream.jpg"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("transparency was dropped"), "{}", stderr(&o));
    // 16-bit grey: dreamed in colour, written back at 16 bits.
    let grey = ImageBuffer::from_fn(w, h, |x, y| Luma([(x * 1500 + y * 700) as u16]));
    let input = dir.join("grey16.png");
    grey.save(&input).unwrap();
    let out = dir.join("grey16-dream.png");
    let o = dream_image(&weights, &input, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(image::open(&out).unwrap().color(), image::ColorType::Rgb16);
    // WebP, TIFF and BMP in, the same format out.
    let plain = DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| image::Rgb(colour(x, y))));
    for ext in ["webp", "tif", "bmp"] {
        let input = dir.join(format!("plain.{ext}"));
        plain.save(&input).unwrap();
        let out = dir.join(format!("plain-dream.{ext}"));
        let o = dream_image(&weights, &input, &out);
        assert!(o.status.success(), "{ext}: {}", stderr(&o));
        let dreamed = image::open(&out).unwrap();
        assert_eq!((dreamed.width(), dreamed.height()), (w, h), "{ext}");
        assert_eq!(
            image::ImageFormat::from_path(&out).unwrap(),
            image::guess_format(&std::fs::read(&out).unwrap()).unwrap()
        );
    }
    // A JPEG whose EXIF says "rotate 90 degrees clockwise" is dreamed upright.
    let exif = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00\x00\x00\x00\x00";
    let input = dir.join("turned.jpg");
    let mut encoder = image::codecs::jpeg::JpegEncoder::new(std::fs::File::create(&input).unwrap());
    encoder.set_exif_metadata(exif.to_vec()).unwrap();
    encoder.write_image(plain.as_bytes(), w, h, image::ExtendedColorType::Rgb8).unwrap();
    let out = dir.join("turned-dream.png");
    let o = dream_image(&weights, &input, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let dreamed = image::open(&out).unwrap();
    assert_eq!((dreamed.width(), dreamed.height()), (h, w), "EXIF orientation applied");
}

#[test]
fn tiny_images_dream_and_the_input_is_never_the_output() {
    let dir = common::scratch("cli-tiny");
    let weights = fixture_weights(&dir);
    for (w, h) in [(1, 1), (3, 1), (8, 7), (1, 40)] {
        let input = dir.join(format!("tiny-{w}x{h}.png"));
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 40) as u8, (y * 5) as u8, 120])).save(&input).unwrap();
        let out = dir.join(format!("tiny-{w}x{h}-dream.png"));
        let o = dream_image(&weights, &input, &out);
        assert!(o.status.success(), "{w}x{h}: {}", stderr(&o));
        let img = image::open(&out).unwrap();
        assert_eq!((img.width(), img.height()), (w, h));
    }
    let input = dir.join("tiny-8x7.png");
    let before = std::fs::read(&input).unwrap();
    std::fs::hard_link(&input, dir.join("hard.png")).unwrap();
    for out in [input.clone(), dir.join("./tiny-8x7.png"), dir.join("hard.png")] {
        let o = dream_image(&weights, &input, &out);
        assert_eq!(o.status.code(), Some(1), "{}", out.display());
        assert!(stderr(&o).contains("replace it with its dream"), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read(&input).unwrap(), before, "the input must be untouched");
}

#[test]
fn weights_with_nan_or_empty_layers_are_refused() {
    let dir = common::scratch("cli-bad-weights");
    let input = write_input(&dir, 40, 30);
    let mut tensors = dreamvid::fixture::vgg19_tensors(&dreamvid::fixture::FIXTURE_VGG_WIDTHS, 1).unwrap();
    let nan = dir.join("nan.safetensors");
    let w = tensors["features.0.weight"].clone();
    let poisoned = (w.clone() * f64::NAN).unwrap();
    tensors.insert("features.0.weight".into(), poisoned);
    candle_core::safetensors::save(&tensors, &nan).unwrap();
    let out = dir.join("out.png");
    let o = dream_image(nan.to_str().unwrap(), Path::new(&input), &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("NaN or infinite") && stderr(&o).contains("features.0.weight"), "{}", stderr(&o));
    assert!(!out.exists());
    tensors.insert("features.0.weight".into(), w);
    tensors.insert(
        "features.2.weight".into(),
        candle_core::Tensor::zeros((0, 4, 3, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    let empty = dir.join("empty.safetensors");
    candle_core::safetensors::save(&tensors, &empty).unwrap();
    let o = dream_image(empty.to_str().unwrap(), Path::new(&input), &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("features.2.weight") && !stderr(&o).contains("panicked"), "{}", stderr(&o));
}
