//! Writing frame sequences as they are made: looping GIF (frames quantised in parallel batches),
//! video, or PNGs. Frames go to the output as they come, so memory does not grow with their
//! number, and nothing appears at the output path until the last frame is written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use anyhow::{anyhow, bail, Context};
use ffmpeg_next::Rational;
use image::RgbImage;
use rayon::prelude::*;

use crate::output::{write_atomically, write_folder_atomically};
use crate::video::frames::PngFrames;
use crate::video::{EncodeSettings, VideoInfo, VideoWriter};

/// Frames a GIF quantises at once, in parallel: at most this many wait in memory for it.
const GIF_BATCH: usize = 16;

/// Frames that may wait between the producer and the writer thread.
const QUEUE: usize = 4;

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

/// How frames are written: frame rate, GIF palette quality and video encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Format {
    /// Frames per second.
    pub fps: u32,
    /// GIF palette quality, 1 (best palette, slowest) to 30 (fastest).
    pub gif_quality: i32,
    /// Video encoder settings.
    pub codec: EncodeSettings,
}

/// Something that takes frames one at a time, in order; it fails once the output cannot take more.
pub type FrameSink<'a> = dyn FnMut(RgbImage) -> anyhow::Result<()> + 'a;

/// Writes the frames that `produce` hands to its sink, in that order, to `target` while
/// `produce` runs (on another thread, a few frames behind), and returns how many were written.
/// The output appears at the target only when `produce` and the writing have succeeded; if
/// either fails, nothing is left behind.
pub fn write_frames(
    target: &Target,
    format: &Format,
    produce: impl FnOnce(&mut FrameSink) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    match target {
        Target::Gif(path) | Target::Video(path) => write_atomically(path, |tmp| stream(target, tmp, format, produce)),
        Target::Pngs(dir) => write_folder_atomically(dir, |tmp| stream(target, tmp, format, produce)),
    }
}

/// Runs `produce` here and a [`Writer`] on `tmp` in a thread of its own, joined by a short queue.
fn stream(
    target: &Target,
    tmp: &Path,
    format: &Format,
    produce: impl FnOnce(&mut FrameSink) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let (to_writer, frames) = sync_channel::<RgbImage>(QUEUE);
    std::thread::scope(|s| {
        let writer = s.spawn(move || -> anyhow::Result<usize> {
            let mut writer: Option<Writer> = None;
            let mut written = 0;
            for frame in frames {
                let w = match &mut writer {
                    Some(w) => w,
                    None => writer.insert(Writer::open(target, tmp, frame.dimensions(), format)?),
                };
                w.write(frame)?;
                written += 1;
            }
            writer.context("no frames to write")?.finish()?;
            Ok(written)
        });
        let mut writer_stopped = false;
        let produced = produce(&mut |frame| {
            to_writer.send(frame).map_err(|_| {
                writer_stopped = true;
                anyhow!("the frame writer stopped")
            })
        });
        drop(to_writer);
        let written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match produced {
            // The writer's own error says why it stopped taking frames.
            Err(_) if writer_stopped => written,
            Err(e) => Err(e),
            Ok(()) => written,
        }
    })
}

/// An open output of one [`Target`] kind, written frame by frame.
enum Writer {
    Gif(GifWriter),
    Video { writer: Box<VideoWriter>, written: i64 },
    Pngs { tmp: PathBuf, dir: PathBuf, written: usize },
}

impl Writer {
    /// Opens `tmp` (a file or an empty folder) for frames of `size` as `target` says.
    fn open(target: &Target, tmp: &Path, size: (u32, u32), format: &Format) -> anyhow::Result<Self> {
        Ok(match target {
            Target::Gif(_) => Writer::Gif(GifWriter::create(tmp, size, format.fps, format.gif_quality)?),
            Target::Video(path) => {
                let info = VideoInfo {
                    path: path.clone(),
                    width: size.0,
                    height: size.1,
                    time_base: Rational::new(1, format.fps as i32),
                    frame_rate: Rational::new(format.fps as i32, 1),
                    frames: None,
                    rotation: 0,
                    audio: Vec::new(),
                };
                Writer::Video { writer: Box::new(VideoWriter::create(tmp, &info, &format.codec)?), written: 0 }
            }
            Target::Pngs(dir) => Writer::Pngs { tmp: tmp.into(), dir: dir.clone(), written: 0 },
        })
    }

    fn write(&mut self, frame: RgbImage) -> anyhow::Result<()> {
        match self {
            Writer::Gif(gif) => gif.write(frame),
            Writer::Video { writer, written } => {
                writer.write_frame(*written, frame)?;
                *written += 1;
                Ok(())
            }
            Writer::Pngs { tmp, dir, written } => {
                let name = PngFrames::name(*written);
                frame.save(tmp.join(&name)).with_context(|| format!("cannot write {name} into {}", dir.display()))?;
                *written += 1;
                Ok(())
            }
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Writer::Gif(gif) => gif.finish(),
            Writer::Video { writer, .. } => writer.finish(1),
            Writer::Pngs { .. } => Ok(()),
        }
    }
}

/// A looping GIF whose frames each get their own palette, quantised [`GIF_BATCH`] at a time.
struct GifWriter {
    encoder: gif::Encoder<BufWriter<File>>,
    path: PathBuf,
    size: (u16, u16),
    delay: u16,
    speed: i32,
    batch: Vec<RgbImage>,
}

impl GifWriter {
    fn create(path: &Path, (w, h): (u32, u32), fps: u32, quality: i32) -> anyhow::Result<Self> {
        let size =
            (u16::try_from(w).context("GIF width over 65535")?, u16::try_from(h).context("GIF height over 65535")?);
        let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut encoder = gif::Encoder::new(BufWriter::new(file), size.0, size.1, &[])?;
        encoder.set_repeat(gif::Repeat::Infinite)?;
        Ok(Self {
            encoder,
            path: path.into(),
            size,
            delay: (100.0 / fps as f64).round().max(1.0) as u16,
            speed: quality.clamp(1, 30),
            batch: Vec::with_capacity(GIF_BATCH),
        })
    }

    fn write(&mut self, frame: RgbImage) -> anyhow::Result<()> {
        self.batch.push(frame);
        if self.batch.len() == GIF_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Quantises the waiting frames in parallel and writes them in order.
    fn flush(&mut self) -> anyhow::Result<()> {
        let ((w, h), delay, speed) = (self.size, self.delay, self.speed);
        let quantised: Vec<gif::Frame<'static>> = self
            .batch
            .par_iter()
            .map(|f| {
                let mut frame = gif::Frame::from_rgb_speed(w, h, f.as_raw(), speed);
                frame.delay = delay;
                frame
            })
            .collect();
        self.batch.clear();
        for frame in &quantised {
            self.encoder.write_frame(frame).with_context(|| format!("cannot write {}", self.path.display()))?;
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.flush()?;
        let path = self.path;
        self.encoder
            .into_inner()
            .and_then(|mut file| file.flush())
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u8, (w, h): (u32, u32)) -> Vec<RgbImage> {
        (0..n).map(|i| RgbImage::from_pixel(w, h, image::Rgb([i * 20, 100, 200 - i * 20]))).collect()
    }

    fn write(target: &Target, frames: Vec<RgbImage>, fail_after: Option<usize>) -> anyhow::Result<usize> {
        let format = Format { fps: 10, gif_quality: 10, codec: EncodeSettings::default() };
        write_frames(target, &format, |sink| {
            for (i, f) in frames.into_iter().enumerate() {
                if Some(i) == fail_after {
                    bail!("the dream broke at frame {i}");
                }
                sink(f)?;
            }
            Ok(())
        })
    }

    #[test]
    fn every_target_appears_whole_or_not_at_all() {
        let dir = std::env::temp_dir().join(format!("dreamvid-animation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let entries = || std::fs::read_dir(&dir).unwrap().count();
        for (done, name) in ["a.gif", "a.mp4", "pngs/"].into_iter().enumerate() {
            let target = Target::for_path(&dir.join(name)).unwrap();
            let failed = write(&target, frames(5, (16, 12)), Some(3)).unwrap_err();
            assert_eq!(failed.to_string(), "the dream broke at frame 3", "{name}");
            assert_eq!(entries(), done, "{name}: something was left behind");
            assert_eq!(write(&target, frames(20, (16, 12)), None).unwrap(), 20, "{name}");
            assert_eq!(entries(), done + 1, "{name}: the output and nothing else");
        }
        let gif = gif::DecodeOptions::new().read_info(File::open(dir.join("a.gif")).unwrap()).unwrap();
        assert_eq!(gif.into_iter().count(), 20, "frames past a whole batch are written too");
        assert_eq!(crate::compare::frames(&dir.join("a.mp4")).unwrap().len(), 20);
        assert_eq!(std::fs::read_dir(dir.join("pngs")).unwrap().count(), 20);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_writer_says_why_it_stopped() {
        let dir = std::env::temp_dir().join(format!("dreamvid-animation-wide-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = Target::Gif(dir.join("wide.gif"));
        let e = write(&target, frames(10, (70_000, 1)), None).unwrap_err();
        assert_eq!(e.to_string(), "GIF width over 65535");
        let e = write(&target, Vec::new(), None).unwrap_err();
        assert_eq!(e.to_string(), "no frames to write");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
