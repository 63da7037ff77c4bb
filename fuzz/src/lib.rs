//! The fuzz targets' bodies: each reads bytes as dreamvid reads a file of that kind from a
//! stranger, through the library's own entry points. A target passes on an input when it
//! returns (an error is a fine answer); a panic, an abort, a hang or memory past libFuzzer's
//! `-rss_limit_mb` is a finding.

use std::path::{Path, PathBuf};

use candle_core::Device;
use dreamvid::farm::{self, Job};
use dreamvid::models::{ModelKind, WeightFile};
use dreamvid::preset::Preset;
use dreamvid::resume::{Checkpoint, Checkpoints};

/// A folder of this process for the files the targets write (dreamvid reads files by path).
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dreamvid-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the temp folder is writable");
    dir
}

/// Writes `data` to `name` in the scratch folder and returns its path.
fn file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, data).expect("the temp folder is writable");
    path
}

/// A weights file (safetensors, or a PyTorch checkpoint in the zip or legacy layout; told by
/// content as dreamvid does): opened, every tensor read as `F32` and each model built from it.
pub fn weights(data: &[u8]) {
    let path = file("weights", data);
    let Ok(file) = WeightFile::open(&path, "fuzz", "(fuzzing)", &Device::Cpu) else { return };
    for (name, shape) in file.tensors() {
        let _ = file.get(&name, &vec![None; shape.len()]);
    }
    for model in ModelKind::ALL {
        let _ = model.load(&path, &Device::Cpu);
    }
}

/// A preset's TOML: parsed and resolved for every model, then read at frames and times
/// around its keyframes.
pub fn preset(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Preset::parse(text, "fuzz.toml", None);
    for model in ModelKind::ALL {
        let Ok((preset, _)) = dreamvid::plan::resolve_preset("fuzz.toml", text, Some(model), &[]) else { continue };
        for (frame, fps) in [(0, 25.0), (1, 25.0), (49, 25.0), (1000, 30.0), (7, 0.001)] {
            let settings = preset.at(frame, fps);
            let _ = settings.to_table();
        }
        let _ = dreamvid::resume::render_record(Path::new("in.mp4"), model, Path::new("w"), &preset);
    }
}

/// A render farm's `job.toml`: parsed and checked, its settings resolved, and every
/// segment's render worked out.
pub fn job(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = scratch();
    let Ok(job) = Job::parse(text, &Job::path(&dir)) else { return };
    let _ = job.setting_flags();
    let _ = job.model_kind();
    let _ = farm::job_preset(&job);
    for i in 0..job.segments.len() {
        if let Ok(render) = farm::segment_render(&dir, &job, i) {
            let _ = render.span.dreamed();
        }
    }
    let _ = farm::status(&dir, &job);
}

/// A picture: the first byte picks the extension (PNG, JPEG, WebP, TIFF, BMP), the rest is
/// the file, read as an input picture and as a render's checkpoint.
pub fn image(data: &[u8]) {
    let Some((&pick, data)) = data.split_first() else { return };
    let ext = ["png", "jpg", "webp", "tiff", "bmp"][usize::from(pick) % 5];
    let path = file(&format!("picture.{ext}"), data);
    if let Ok(img) = dreamvid::image_io::decode_image(&path) {
        let _ = img.to_rgb32f();
    }
    let dir = scratch().join("checkpoints");
    std::fs::create_dir_all(&dir).expect("the temp folder is writable");
    std::fs::write(dir.join("000000.png"), data).expect("the temp folder is writable");
    if let Checkpoint::Found(img) = (Checkpoints { dir }).load(0, (64, 48)) {
        assert_eq!(img.dimensions(), (64, 48), "a checkpoint of another size is refused");
    }
}
