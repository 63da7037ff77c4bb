//! What a render reports: an event after every frame, the stages' times (kept by a clock the
//! stage threads share), and the totals at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use image::RgbImage;

/// Progress after each frame: the event a front end shows (a progress bar, a preview).
#[derive(Debug, Clone, Copy)]
pub struct FrameProgress<'a> {
    /// Frames done.
    pub done: usize,
    /// Frames in the video, when the container says.
    pub total: Option<usize>,
    /// Every frame so far came from checkpoints.
    pub resumed: bool,
    /// The index of the frame just done, in the input.
    pub index: usize,
    /// The frame just done, dreamed.
    pub image: &'a RgbImage,
    /// Time each stage has spent working so far.
    pub stages: StageTimes,
}

/// What a render measured.
#[derive(Debug, Clone)]
pub struct VideoReport {
    /// Frames written.
    pub frames: usize,
    /// Frames taken from checkpoints.
    pub resumed: usize,
    /// Frames whose checkpoint was damaged, and were dreamed again.
    pub redone: Vec<usize>,
    /// Damaged video packets of the input that were skipped.
    pub damaged_packets: usize,
    /// Wall time of the whole render.
    pub wall: Duration,
    /// Time each stage spent working.
    pub stages: StageTimes,
    /// Peak resident memory of the process, when the OS reports it.
    pub peak_rss_bytes: Option<u64>,
}

/// Time each stage of a render spent working, not waiting on the others. The stages run at
/// the same time, so these add up to more than the wall time; the slowest sets the pace.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// Reading and decoding the input.
    pub decode: Duration,
    /// Analysing the motion between frames (optical flow, scene cuts).
    pub flow: Duration,
    /// Building each frame's starting image and dreaming it.
    pub dream: Duration,
    /// Saving each dreamed frame as a checkpoint.
    pub checkpoint: Duration,
    /// Encoding and writing the output.
    pub encode: Duration,
}

/// The stages' working time, added to by each stage's thread as it goes.
#[derive(Default)]
pub(super) struct StageClock {
    /// Nanoseconds of decode, flow, dream, checkpoint and encode.
    nanos: [AtomicU64; 5],
}

/// A stage of the render, as [`StageClock`] counts it.
#[derive(Clone, Copy)]
pub(super) enum Stage {
    Decode,
    Flow,
    Dream,
    Checkpoint,
    Encode,
}

impl StageClock {
    /// Adds the time since `start` to `stage`.
    pub(super) fn since(&self, stage: Stage, start: Instant) {
        self.nanos[stage as usize].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Each stage's time so far.
    pub(super) fn times(&self) -> StageTimes {
        let at = |stage: Stage| Duration::from_nanos(self.nanos[stage as usize].load(Ordering::Relaxed));
        StageTimes {
            decode: at(Stage::Decode),
            flow: at(Stage::Flow),
            dream: at(Stage::Dream),
            checkpoint: at(Stage::Checkpoint),
            encode: at(Stage::Encode),
        }
    }
}

/// Peak resident set size of this process (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
