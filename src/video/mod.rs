//! Video input and output through FFmpeg's libraries (ffmpeg-next), and the optical flow that
//! keeps dreams attached to moving content.

pub mod coherence;
pub mod decode;
pub mod encode;
pub mod flow;

pub use decode::{Item, SourceFrame, VideoInfo, VideoReader};
pub use encode::{EncodeSettings, VideoWriter};

/// An FFmpeg pixel-format converter that may move to another thread.
pub(crate) struct Scaler(pub(crate) ffmpeg_next::software::scaling::Context);

// SAFETY: an SwsContext has no thread affinity; it is only ever used by one thread at a time
// (it is owned, and moved with its reader or writer, never shared).
unsafe impl Send for Scaler {}
