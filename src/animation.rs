//! Writing frame sequences: looping GIF (frames quantised in parallel), video, or PNGs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ffmpeg_next::Rational;
use image::RgbImage;
use rayon::prelude::*;

use crate::output::{write_atomically, write_folder_atomically};
use crate::video::frames::PngFrames;
use crate::video::{EncodeSettings, VideoInfo, VideoWriter};

/// Where and how frames are written, chosen from the output path.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `.gif`: looping animated GIF.
    Gif(PathBuf),
    /// `.mp4`, `.mkv`, `.mov`, `.webm`: a video through FFmpeg.
    Video(PathBuf),
    /// A folder (path ending in `/`, or an existing folder): `frame_00000.png`, ...
    Pngs(PathBuf),
}

impl Target {
    /// Picks the target for an output path, or explains which ones exist.
    pub fn for_path(path: &Path) -> anyhow::Result<Self> {
        let text = path.to_string_lossy();
        if text.ends_with('/') || path.is_dir() {
            return Ok(Target::Pngs(path.into()));
        }
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("gif") => Ok(Target::Gif(path.into())),
            Some("mp4" | "mkv" | "mov" | "webm") => Ok(Target::Video(path.into())),
            _ => bail!(
                "cannot write {}: use a .gif, .mp4/.mkv/.mov/.webm, or a folder ending in / for PNG frames",
                path.display()
            ),
        }
    }
}

/// Writes `frames` at `fps`. `gif_quality` is 1 (best palette, slowest) to 30 (fastest).
pub fn write_frames(
    target: &Target,
    frames: &[RgbImage],
    fps: u32,
    gif_quality: i32,
    codec: &EncodeSettings,
) -> anyhow::Result<()> {
    let Some(first) = frames.first() else { bail!("no frames to write") };
    let (w, h) = first.dimensions();
    match target {
        Target::Gif(path) => write_atomically(path, |tmp| write_gif(tmp, frames, fps, gif_quality)),
        Target::Video(path) => write_atomically(path, |tmp| {
            let info = VideoInfo {
                path: path.clone(),
                width: w,
                height: h,
                time_base: Rational::new(1, fps as i32),
                frame_rate: Rational::new(fps as i32, 1),
                frames: Some(frames.len()),
                rotation: 0,
                audio: Vec::new(),
            };
            let mut writer = VideoWriter::create(tmp, &info, codec)?;
            for (i, f) in frames.iter().enumerate() {
                writer.write_frame(i as i64, f.clone())?;
            }
            writer.finish(1)
        }),
        Target::Pngs(dir) => write_pngs(dir, frames),
    }
}

fn write_gif(path: &Path, frames: &[RgbImage], fps: u32, quality: i32) -> anyhow::Result<()> {
    let (w, h) = frames[0].dimensions();
    let (w16, h16) =
        (u16::try_from(w).context("GIF width over 65535")?, u16::try_from(h).context("GIF height over 65535")?);
    let delay = (100.0 / fps as f64).round().max(1.0) as u16;
    let speed = quality.clamp(1, 30);
    let quantised: Vec<gif::Frame<'static>> = frames
        .par_iter()
        .map(|f| {
            let mut frame = gif::Frame::from_rgb_speed(w16, h16, f.as_raw(), speed);
            frame.delay = delay;
            frame
        })
        .collect();
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut encoder = gif::Encoder::new(std::io::BufWriter::new(file), w16, h16, &[])?;
    encoder.set_repeat(gif::Repeat::Infinite)?;
    for frame in &quantised {
        encoder.write_frame(frame)?;
    }
    Ok(())
}

fn write_pngs(dir: &Path, frames: &[RgbImage]) -> anyhow::Result<()> {
    write_folder_atomically(dir, |tmp| {
        frames
            .par_iter()
            .enumerate()
            .try_for_each(|(i, f)| f.save(tmp.join(PngFrames::name(i))))
            .with_context(|| format!("cannot write PNG frames into {}", dir.display()))
    })
}
