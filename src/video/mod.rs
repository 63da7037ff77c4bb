//! Video input and output through FFmpeg's libraries (ffmpeg-next), and the optical flow that
//! keeps dreams attached to moving content.

pub mod coherence;
pub mod decode;
pub mod encode;
pub mod flow;
pub mod shots;
pub mod stability;

pub use decode::{Item, SourceFrame, VideoInfo, VideoReader};
pub use encode::{EncodeSettings, VideoWriter};

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
