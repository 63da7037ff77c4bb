//! A part of a video rendered on its own (a render-farm segment), and what becomes of each of
//! its frames.

use std::path::{Path, PathBuf};

/// A part of a video to render on its own: `warmup` frames dreamed and thrown away (so the
/// carried-over dream has built up), then `head` frames set aside, `frames` frames written,
/// and `tail` frames set aside. The written frames keep the input's timestamps, with B-frames
/// off (see [`crate::video::EncodeSettings::b_frames`]), so that rendered spans join into one stream; the
/// frames set aside (PNGs in `aside`, named by [`aside_path`]) let spans that meet inside a
/// shot cross-fade where they join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Index of the first frame dreamed (the first warm-up frame, if any).
    pub start: usize,
    /// Its presentation timestamp, in the video stream's time base.
    pub start_pts: i64,
    /// Frames dreamed but not kept.
    pub warmup: usize,
    /// Frames set aside before the written ones.
    pub head: usize,
    /// Frames written.
    pub frames: usize,
    /// Frames set aside after the written ones.
    pub tail: usize,
    /// Where the frames set aside go.
    pub aside: PathBuf,
    /// The folder where the sha256 of the written file is recorded (a file named by it),
    /// before the file is moved into place: a complete span's file always has its record, a
    /// file damaged later is told from a good one, and processes that write the same span at
    /// once never overwrite each other's record.
    pub checksums: PathBuf,
}

impl Span {
    /// Frames dreamed in all.
    pub fn dreamed(&self) -> usize {
        self.warmup + self.head + self.frames + self.tail
    }

    /// What becomes of frame `index`.
    pub(super) fn role(&self, index: usize) -> Role {
        let at = index - self.start;
        if at < self.warmup {
            Role::Warmup
        } else if at < self.warmup + self.head || at >= self.warmup + self.head + self.frames {
            Role::Aside
        } else {
            Role::Written
        }
    }
}

pub(super) enum Role {
    Warmup,
    Aside,
    Written,
}

/// The record, in a span's `checksums` folder, of a file whose sha256 is `sum` (hex).
pub fn checksum_path(checksums: &Path, sum: &str) -> PathBuf {
    checksums.join(format!("{sum}.sha256"))
}

/// Where a span sets frame `index` aside (in its `aside` folder).
pub fn aside_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("{index:06}.png"))
}
