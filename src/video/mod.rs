//! Video input and output through FFmpeg's libraries (ffmpeg-next), and the optical flow that
//! keeps dreams attached to moving content.

pub mod camera_motion;
pub mod coherence;
pub mod decode;
pub mod encode;
pub mod excerpt;
pub mod farneback;
pub mod flow;
pub mod frames;
pub mod info;
pub mod noise;
pub mod shots;
pub mod stability;

pub use decode::{Item, SourceFrame, VideoReader};
pub use encode::{EncodeSettings, VideoWriter};
pub use excerpt::{Excerpt, Limit};
pub use info::VideoInfo;

/// Where a render's frames come from: a video file, or a frame folder.
pub enum Source {
    /// A video file, decoded by FFmpeg.
    Video(VideoReader),
    /// Numbered pictures.
    Frames(frames::FrameFolder),
}

impl Source {
    /// Opens `path`: a frame folder (a folder or a printf pattern, at `fps` or the rate its
    /// `fps.txt` says) or a video file.
    pub fn open(path: &std::path::Path, fps: Option<f64>) -> anyhow::Result<Self> {
        if frames::is_frame_folder(path) {
            return Ok(Source::Frames(frames::FrameFolder::open(path, fps)?));
        }
        if fps.is_some() {
            anyhow::bail!("{} is a video, which has its own frame rate: --fps is for frame folders", path.display());
        }
        Ok(Source::Video(VideoReader::open(path)?))
    }

    /// What the source is.
    pub fn info(&self) -> &VideoInfo {
        match self {
            Source::Video(r) => r.info(),
            Source::Frames(f) => f.info(),
        }
    }

    /// Reads only `excerpt` from here on.
    pub fn read_excerpt(&mut self, excerpt: &Excerpt) -> anyhow::Result<()> {
        match self {
            Source::Video(r) => r.read_excerpt(excerpt),
            Source::Frames(f) => {
                f.read_excerpt(excerpt);
                Ok(())
            }
        }
    }

    /// Moves to frame `index`, shown at `pts`.
    pub fn seek(&mut self, pts: i64, index: usize) -> anyhow::Result<()> {
        match self {
            Source::Video(r) => r.seek(pts, index),
            Source::Frames(f) => {
                f.seek(index);
                Ok(())
            }
        }
    }

    /// The next frame or audio packet; `None` at the end.
    pub fn next_item(&mut self) -> anyhow::Result<Option<Item>> {
        match self {
            Source::Video(r) => r.next_item(),
            Source::Frames(f) => f.next_item(),
        }
    }

    /// Damaged video packets skipped so far.
    pub fn damaged(&self) -> usize {
        match self {
            Source::Video(r) => r.damaged(),
            Source::Frames(_) => 0,
        }
    }
}

/// Where a render's frames go: a video file, or a folder of PNGs (without audio).
pub enum Sink {
    /// Encoded by FFmpeg.
    Video(Box<VideoWriter>),
    /// `frame_00000.png`, ...
    Pngs(frames::PngFrames),
}

impl Sink {
    /// Creates the video `path`, or fills the folder `path` when `folder`.
    pub fn create(
        path: &std::path::Path,
        folder: bool,
        info: &VideoInfo,
        settings: &EncodeSettings,
    ) -> anyhow::Result<Self> {
        Ok(match folder {
            true => Sink::Pngs(frames::PngFrames::create(path, f64::from(info.frame_rate))),
            false => Sink::Video(Box::new(VideoWriter::create(path, info, settings)?)),
        })
    }

    /// Writes a frame shown at `pts`.
    pub fn write_frame(&mut self, pts: i64, image: image::RgbImage) -> anyhow::Result<()> {
        match self {
            Sink::Video(w) => w.write_frame(pts, image),
            Sink::Pngs(p) => p.write_frame(&image),
        }
    }

    /// Copies an audio packet (PNG folders have no audio).
    pub fn write_audio(&mut self, packet: ffmpeg_next::Packet, stream: usize) -> anyhow::Result<()> {
        match self {
            Sink::Video(w) => w.write_audio(packet, stream),
            Sink::Pngs(_) => Ok(()),
        }
    }

    /// Finishes the output; the last frame lasts `last_duration`.
    pub fn finish(self, last_duration: i64) -> anyhow::Result<()> {
        match self {
            Sink::Video(w) => w.finish(last_duration),
            Sink::Pngs(p) => p.finish(),
        }
    }
}

/// Initialises FFmpeg (once; later calls do nothing) and keeps its log to errors only.
pub fn init() -> anyhow::Result<()> {
    use anyhow::Context;
    ffmpeg_next::init().context("cannot initialise FFmpeg")?;
    ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
    Ok(())
}

/// How every RGB <-> YUV conversion is done: bicubic, with exact rounding and bit-exact on every
/// CPU (swscale's SIMD paths otherwise round differently on AVX2 and AVX-512 machines, and the
/// same input would give other frames elsewhere).
pub fn scale_flags() -> ffmpeg_next::software::scaling::Flags {
    use ffmpeg_next::software::scaling::Flags;
    Flags::BICUBIC | Flags::ACCURATE_RND | Flags::BITEXACT
}

/// An FFmpeg pixel-format converter that may move to another thread.
pub(crate) struct Scaler(pub(crate) ffmpeg_next::software::scaling::Context);

// SAFETY: an SwsContext has no thread affinity; it is only ever used by one thread at a time
// (it is owned, and moved with its reader or writer, never shared).
unsafe impl Send for Scaler {}
