//! Regions (`--mask`): where the mask is black the output is the source, bit for bit (images,
//! every frame of a video with its carried dream, zooms), white is the plain dream, and the
//! feathered edge ramps between them.

mod common;

use std::path::{Path, PathBuf};

use common::{dreamvid, fixture_weights, stderr};
use dreamvid::compare::frames;
use dreamvid::fixture::clip::{moving_pattern, write_clip, ClipSpec};
use image::{Rgb, RgbImage};

/// A mask of `w x h` that is black left of `edge` (as a fraction of the width), white right.
fn half_mask(path: &Path, w: u32, h: u32, edge: f64, black_left: bool) {
    let cut = (edge * w as f64).round() as u32;
    image::GrayImage::from_fn(w, h, |x, _| image::Luma([if (x < cut) == black_left { 0 } else { 255 }]))
        .save(path)
        .unwrap();
}

fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 3) as u8, (y * 4) as u8, ((x * y) % 251) as u8]))
}

/// The columns `cols` of `a` and `b` are the same bytes.
fn same_columns(a: &RgbImage, b: &RgbImage, cols: std::ops::Range<u32>) -> bool {
    (0..a.height()).all(|y| cols.clone().all(|x| a.get_pixel(x, y) == b.get_pixel(x, y)))
}

/// Mean absolute difference of column `x` of `a` and `b`.
fn column_change(a: &RgbImage, b: &RgbImage, x: u32) -> f64 {
    let sum: f64 = (0..a.height())
        .flat_map(|y| (0..3).map(move |c| (a.get_pixel(x, y)[c] as f64 - b.get_pixel(x, y)[c] as f64).abs()))
        .sum();
    sum / (3 * a.height()) as f64
}

struct Scene {
    dir: PathBuf,
    weights: String,
}

impl Scene {
    fn new(name: &str) -> Self {
        let dir = common::scratch(name);
        let weights = fixture_weights(&dir);
        Self { dir, weights }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `dreamvid ARGS... --model vgg19 --weights W` with quick dream settings.
    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--model", "vgg19", "--weights", &self.weights, "--layer", "20", "--octaves", "2"]);
        all.extend(["--iterations", "3", "--lr", "0.05"]);
        dreamvid(&all)
    }

    fn image(&self, input: &Path, out: &str, extra: &[&str]) -> RgbImage {
        let output = self.path(out);
        let o = self.run(&[&["image", input.to_str().unwrap(), "-o", output.to_str().unwrap()], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        image::open(&output).unwrap().to_rgb8()
    }
}

#[test]
fn masked_images_keep_the_source_where_black_and_dream_fully_where_white() {
    let s = Scene::new("regions-image");
    let (w, h) = (96, 64);
    let input = s.path("in.png");
    let source = pattern(w, h);
    source.save(&input).unwrap();
    let (mask, small, white) = (s.path("mask.png"), s.path("small.png"), s.path("white.png"));
    half_mask(&mask, w, h, 0.5, true);
    half_mask(&small, 24, 16, 0.5, true); // resized to the frame
    half_mask(&white, 24, 16, 0.0, true);
    let m = mask.to_str().unwrap();

    let plain = s.image(&input, "plain.png", &[]);
    assert!(column_change(&plain, &source, 20) > 1.0, "the plain dream is too weak to test with");
    // Hard edges: the black half is the source, the white half the plain dream's strength.
    let hard = s.image(&input, "hard.png", &["--mask", m, "--mask-feather", "0"]);
    assert!(same_columns(&hard, &source, 0..48), "the black half changed");
    assert!((60..w).all(|x| column_change(&hard, &source, x) > 0.3 * column_change(&plain, &source, x)));
    // Feathered (sigma 4): the dream reaches into the black half, fading, and stops 3 sigma out.
    let soft = s.image(&input, "soft.png", &["--mask", m, "--mask-feather", "4"]);
    assert!(same_columns(&soft, &source, 0..48 - 12), "the feathered mask reached too far");
    assert!(!same_columns(&soft, &source, 40..48), "the feathered mask did not soften the edge");
    let ramp = |x0: u32| (x0..x0 + 4).map(|x| column_change(&soft, &source, x)).sum::<f64>();
    assert!(ramp(40) < ramp(48) && ramp(48) < ramp(56), "{} {} {}", ramp(40), ramp(48), ramp(56));
    // A smaller mask picture is resized to the frame.
    let resized = s.image(&input, "resized.png", &["--mask", small.to_str().unwrap(), "--mask-feather", "0"]);
    assert!(same_columns(&resized, &source, 0..46));
    assert!(!same_columns(&resized, &source, 50..w));
    // White everywhere is the plain dream exactly; weight 0 dreams nowhere.
    assert!(s.image(&input, "white.png", &["--mask", white.to_str().unwrap()]) == plain, "not the plain image");
    assert!(s.image(&input, "zero.png", &["--mask", m, "--mask-weight", "0"]) == source, "not the source image");
    assert!(s.image(&input, "nomask-zero.png", &["--mask-weight", "0"]) == source, "not the source image");
    // Deterministic.
    assert!(s.image(&input, "soft2.png", &["--mask", m, "--mask-feather", "4"]) == soft, "not the soft image");

    // A preset names its mask relative to its own folder.
    let presets = s.path("presets");
    std::fs::create_dir_all(&presets).unwrap();
    std::fs::copy(&mask, presets.join("left.png")).unwrap();
    std::fs::write(presets.join("masked.toml"), "[dream]\nmask = \"left.png\"\nmask_feather = 0.0\n").unwrap();
    let preset = presets.join("masked.toml");
    assert!(s.image(&input, "preset.png", &["--preset", preset.to_str().unwrap()]) == hard, "not the hard image");

    // A missing or broken mask is named, and nothing is written.
    for (bad, what) in [(s.path("none.png"), "none.png"), (input.with_extension("txt"), "in.txt")] {
        if bad.extension().unwrap() == "txt" {
            std::fs::write(&bad, "not a picture").unwrap();
        }
        let out = s.path("bad.png");
        let o =
            s.run(&["image", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--mask", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains(what) && stderr(&o).contains("mask"), "{}", stderr(&o));
        assert!(!out.exists());
    }
}

/// Writes `frames` as `dir/f00000.png, ...` with `fps.txt`.
fn frame_folder(dir: &Path, frames: &[RgbImage]) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, f) in frames.iter().enumerate() {
        f.save(dir.join(format!("f{i:05}.png"))).unwrap();
    }
    std::fs::write(dir.join("fps.txt"), "12\n").unwrap();
}

fn read_frames(dir: &Path, n: usize) -> Vec<RgbImage> {
    (0..n).map(|i| image::open(dir.join(format!("frame_{i:05}.png"))).unwrap().to_rgb8()).collect()
}

#[test]
fn masked_videos_keep_every_source_frame_where_black_with_the_dream_carried_along() {
    let s = Scene::new("regions-video");
    let (w, h, n) = (64u32, 40u32, 8usize);
    // The pattern moves left by 3 pixels a frame: the dream of the white half is carried by
    // the flow into the black half, where the output must still be the source.
    let source: Vec<RgbImage> = (0..n).map(moving_pattern(w, h, -3, 0)).collect();
    let input = s.path("in");
    frame_folder(&input, &source);
    let mask = s.path("mask.png");
    half_mask(&mask, w, h, 0.5, true);
    let render = |out: &str, extra: &[&str]| {
        let output = s.path(out);
        let mut args = vec![input.to_str().unwrap(), "-o", output.to_str().unwrap(), "--coherence", "flow"];
        args.extend(extra);
        let o = s.run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        read_frames(&output, n)
    };
    let dreamed = render("still/", &["--mask", mask.to_str().unwrap(), "--mask-feather", "2"]);
    for (i, (d, src)) in dreamed.iter().zip(&source).enumerate() {
        assert!(same_columns(d, src, 0..32 - 6), "frame {i}: the black half changed");
        assert!(column_change(d, src, 50) > 0.5, "frame {i}: the white half was not dreamed");
    }

    // A mask video (here a frame folder) shorter than the input: frames 0-1 black on the left,
    // frames 2-3 black on the right, and its last frame held for frames 4-7.
    let masks = s.path("masks");
    let mask_frames: Vec<RgbImage> = (0..4)
        .map(|i| RgbImage::from_fn(w, h, |x, _| if (x < w / 2) == (i < 2) { Rgb([0, 0, 0]) } else { Rgb([255; 3]) }))
        .collect();
    frame_folder(&masks, &mask_frames);
    let dreamed = render("moving/", &["--mask", masks.to_str().unwrap(), "--mask-feather", "0"]);
    for (i, (d, src)) in dreamed.iter().zip(&source).enumerate() {
        let (black, white) = if i < 2 { (0..32, 40..w) } else { (32..w, 0..24) };
        assert!(same_columns(d, src, black.clone()), "frame {i}: the black part {black:?} changed");
        assert!(!same_columns(d, src, white.clone()), "frame {i}: the white part {white:?} was not dreamed");
    }
    // The same as H.264 videos: each output frame against the decoded source frame, the mask
    // video's black (a little noisy after compression) still black.
    let (clip, mask_clip) = (s.path("in.mp4"), s.path("mask.mp4"));
    let spec = ClipSpec::constant(w, h, n, 12);
    write_clip(&clip, &spec, |i| source[i].clone()).unwrap();
    write_clip(&mask_clip, &ClipSpec::constant(w, h, 4, 12), |i| mask_frames[i].clone()).unwrap();
    let decoded = frames(&clip).unwrap();
    let output = s.path("from-mp4/");
    let o = s.run(&[
        clip.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--mask",
        mask_clip.to_str().unwrap(),
        "--mask-feather",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (i, (d, src)) in read_frames(&output, n).iter().zip(&decoded).enumerate() {
        let (black, white) = if i < 2 { (0..32 - 8, 40..w) } else { (32 + 8..w, 0..24) };
        assert!(same_columns(d, src, black.clone()), "mp4 frame {i}: the black part {black:?} changed");
        assert!(!same_columns(d, src, white.clone()), "mp4 frame {i}: the white part {white:?} was not dreamed");
    }

    // A mask video is for video input only.
    let (one, out) = (s.path("one.png"), s.path("out.png"));
    source[0].save(&one).unwrap();
    let o = s.run(&["image", one.to_str().unwrap(), "-o", out.to_str().unwrap(), "--mask", masks.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("masks") && stderr(&o).contains("for video input only"), "{}", stderr(&o));
}

#[test]
fn masked_zooms_dream_only_where_white_in_the_camera_frame() {
    let s = Scene::new("regions-zoom");
    let (w, h) = (64, 48);
    let seed = s.path("seed.png");
    pattern(w, h).save(&seed).unwrap();
    let mask = s.path("mask.png");
    half_mask(&mask, w, h, 0.5, true);
    let zoom = |out: &str, extra: &[&str]| {
        let output = s.path(out);
        let mut args = vec!["zoom", seed.to_str().unwrap(), "-o", output.to_str().unwrap(), "--frames", "3"];
        args.extend(["--zoom", "1.05"]);
        args.extend(extra);
        let o = s.run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        read_frames(&output, 3)
    };
    let seed_image = image::open(&seed).unwrap().to_rgb8();
    let frames = zoom("masked/", &["--mask", mask.to_str().unwrap(), "--mask-feather", "0"]);
    assert!(same_columns(&frames[0], &seed_image, 0..32), "the black half of the first frame changed");
    assert!(!same_columns(&frames[0], &seed_image, 32..w));
    // Weight 0: no dream at all, only the camera moving over the seed image.
    let still = zoom("still/", &["--mask", mask.to_str().unwrap(), "--mask-weight", "0"]);
    assert!(still[0] == seed_image, "weight 0 changed the first frame");
    let unmasked = zoom("plain/", &["--mask-weight", "0"]);
    assert!(still == unmasked, "weight 0 with and without a mask differ");
    assert_ne!(still[1], still[0], "the camera did not move");
}
