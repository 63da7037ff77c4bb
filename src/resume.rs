//! Resuming an interrupted render: the render record (the settings a render used, which a
//! resume must match) and the per-frame checkpoints kept beside the output.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use image::RgbImage;

use crate::models::ModelKind;
use crate::output::write_atomically;
use crate::preset::Preset;

/// The settings of a render as TOML: stored beside the output and in its checkpoints, and
/// compared on `--resume`. Holds the input, the model and weights file, the preset (origin,
/// hash and keyframe count) and every setting at frame 0.
pub fn render_record(input: &Path, model: ModelKind, weights: &Path, preset: &Preset) -> String {
    let mut record = toml::Table::new();
    let mut put = |k: &str, v: toml::Value| record.insert(k.into(), v);
    put("dreamvid", env!("CARGO_PKG_VERSION").into());
    put("input", input.display().to_string().into());
    put("model", model.name().into());
    put("weights", weights.file_name().unwrap_or_default().to_string_lossy().into_owned().into());
    put("preset", preset.origin.clone().into());
    put("preset_hash", format!("{:016x}", preset.source_hash).into());
    put("keyframes", (preset.keyframes.len() as i64).into());
    // Frame 0 is at 0 s whatever the frame rate.
    put("settings", preset.at(0, 25.0).to_table().into());
    toml::to_string(&record).expect("a table of plain values serialises")
}

/// What a checkpoint folder holds for one frame.
pub enum Checkpoint {
    /// Never saved.
    Missing,
    /// The dreamed frame.
    Found(RgbImage),
    /// Damaged, or not of the frame's size: the frame is dreamed again.
    Unreadable,
}

/// Per-frame PNGs of a render in progress, beside the output.
pub struct Checkpoints {
    /// The folder.
    pub dir: PathBuf,
}

impl Checkpoints {
    /// `out.mp4` -> `.out.mp4.dreamvid-frames`.
    fn dir_for(output: &Path) -> PathBuf {
        let name = output.file_name().unwrap_or_default().to_string_lossy();
        output.with_file_name(format!(".{name}.dreamvid-frames"))
    }

    /// Opens the checkpoints of `output` for a render with `record`: reuses them when
    /// resuming with the same record, else starts an empty folder.
    pub fn prepare(output: &Path, record: &str, resume: bool) -> anyhow::Result<Self> {
        let dir = Self::dir_for(output);
        let job = dir.join("job.toml");
        // A folder with neither record nor frames is one another process (a retried
        // render-farm task) has just made, or one a render killed at once left.
        let has_frames = || Self { dir: dir.clone() }.saved_frames() > 0;
        if resume && dir.is_dir() && (job.exists() || has_frames()) {
            let saved = std::fs::read_to_string(&job).unwrap_or_default();
            if saved != record {
                bail!(
                    "the checkpoints in {} were made with other settings or input; \
                     rerun with the same options, or without --resume to start over",
                    dir.display()
                );
            }
            return Ok(Self { dir });
        }
        if dir.exists() && !resume {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear old checkpoints in {}", dir.display()))?;
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                bail!(
                    "cannot write {}: folder {} does not exist (create it first)",
                    output.display(),
                    parent.display()
                );
            }
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create checkpoint folder {}", dir.display()))?;
        write_atomically(&job, |tmp| Ok(std::fs::write(tmp, record)?))
            .with_context(|| format!("cannot write {}", job.display()))?;
        Ok(Self { dir })
    }

    /// The checkpoint of frame `index`.
    fn path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{index:06}.png"))
    }

    /// The checkpoint of frame `index`, which must be `size` (width, height).
    pub fn load(&self, index: usize, size: (u32, u32)) -> Checkpoint {
        let path = self.path(index);
        if !path.exists() {
            return Checkpoint::Missing;
        }
        match crate::image_io::decode_image(&path) {
            Ok(img) if (img.width(), img.height()) == size => Checkpoint::Found(img.to_rgb8()),
            _ => Checkpoint::Unreadable,
        }
    }

    /// Checkpoints frame `index`.
    pub fn save(&self, index: usize, img: &RgbImage) -> anyhow::Result<()> {
        let path = self.path(index);
        write_atomically(&path, |tmp| Ok(img.save(tmp)?))
            .with_context(|| format!("cannot write checkpoint {}", path.display()))
    }

    /// Number of frames checkpointed so far.
    pub fn saved_frames(&self) -> usize {
        self.saved().len()
    }

    /// The indices of the frames checkpointed so far (by file name; not read).
    pub fn saved(&self) -> std::collections::HashSet<usize> {
        let index = |e: std::fs::DirEntry| e.file_name().to_str()?.strip_suffix(".png")?.parse().ok();
        std::fs::read_dir(&self.dir).map(|d| d.filter_map(Result::ok).filter_map(index).collect()).unwrap_or_default()
    }

    /// Deletes the checkpoints.
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
