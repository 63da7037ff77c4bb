//! What is known about an input before its frames are decoded.

use std::path::PathBuf;

use ffmpeg::Rational;
use ffmpeg_next as ffmpeg;

/// Facts about an input needed before decoding starts.
#[derive(Clone)]
pub struct VideoInfo {
    /// Input path.
    pub path: PathBuf,
    /// Upright frame width.
    pub width: u32,
    /// Upright frame height.
    pub height: u32,
    /// Time base of the video stream's timestamps.
    pub time_base: Rational,
    /// Average frame rate (for rate control and progress; timestamps stay exact).
    pub frame_rate: Rational,
    /// Frame count from the container, when it says.
    pub frames: Option<usize>,
    /// Clockwise rotation applied to the decoded pixels, in degrees (0, 90, 180, 270).
    pub rotation: u32,
    /// Audio stream indices and their parameters, to copy.
    pub audio: Vec<(usize, ffmpeg::codec::Parameters, Rational)>,
}
