//! Which part of an input a render reads: a start time, a length in time or frames (FFmpeg's
//! `-ss`, `-t` and `-frames:v`), every Nth frame, and a smaller frame size (for previews).

use anyhow::bail;
use ffmpeg_next::Packet;

use super::info::VideoInfo;

/// How much of the input, from the start, a render reads.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Limit {
    /// To the end.
    #[default]
    All,
    /// This many seconds.
    Seconds(f64),
    /// This many frames (of those read, after `every`).
    Frames(usize),
}

/// The part of an input to render. Frames keep their index in the input (so keyframes and
/// seeds are those of the whole video) and, when `start` is given, their timestamps are shifted
/// so the excerpt starts at 0, as FFmpeg's input `-ss` does; the copied audio is cut to match.
#[derive(Debug, Clone, PartialEq)]
pub struct Excerpt {
    /// Seconds into the input where reading starts: the first frame shown at or after it.
    pub start: Option<f64>,
    /// How much to read from there.
    pub limit: Limit,
    /// Keep every `every`th frame (1: all).
    pub every: usize,
    /// Scale frames to fit within this many pixels on their longer side.
    pub max_side: Option<u32>,
}

impl Default for Excerpt {
    fn default() -> Self {
        Self { start: None, limit: Limit::All, every: 1, max_side: None }
    }
}

impl Excerpt {
    /// Whether this reads the whole input at its size.
    pub fn is_whole(&self) -> bool {
        *self == Self::default()
    }

    /// The excerpt as settings text, for the render record (resuming with another excerpt
    /// starts afresh).
    pub fn record(&self) -> String {
        if self.is_whole() {
            return String::new();
        }
        let mut s = String::from("[excerpt]\n");
        if let Some(t) = self.start {
            s += &format!("start = {t}\n");
        }
        match self.limit {
            Limit::All => {}
            Limit::Seconds(t) => s += &format!("duration = {t}\n"),
            Limit::Frames(n) => s += &format!("frames = {n}\n"),
        }
        if self.every > 1 {
            s += &format!("every = {}\n", self.every);
        }
        if let Some(m) = self.max_side {
            s += &format!("max_side = {m}\n");
        }
        s
    }

    /// Frame size that fits `(width, height)` within `max_side`, even, never larger.
    pub fn size(&self, (width, height): (u32, u32)) -> (u32, u32) {
        let Some(max) = self.max_side.filter(|&m| m < width.max(height)) else {
            return (width, height);
        };
        let scale = f64::from(max) / f64::from(width.max(height));
        let fit = |v: u32| ((f64::from(v) * scale / 2.0).round() as u32 * 2).max(2);
        (fit(width), fit(height))
    }
}

/// An excerpt in a stream's terms: which frames and audio packets pass, and their timestamps.
pub struct Window {
    /// Where to seek to (a timestamp of the stream), when the excerpt starts later.
    pub seek_pts: Option<i64>,
    /// Index of the first frame at or after the start, as the frame rate puts it.
    pub first_index: usize,
    every: usize,
    /// Frames still to yield.
    frames_left: Option<usize>,
    /// Frames at or after this pts are past the end.
    end_pts: Option<i64>,
    /// Subtracted from the frames' timestamps.
    offset_pts: i64,
    /// Audio packets are kept from `from` to `until` seconds and shifted back by `offset`.
    audio: (f64, Option<f64>, f64),
    /// Index of the first frame admitted.
    first: Option<usize>,
    /// No more frames will pass.
    pub done: bool,
}

impl Window {
    /// The window of `excerpt` on a stream described by `info` whose first frame is at
    /// `stream_start`; `info` becomes the excerpt's (frame size, frame count).
    pub fn new(excerpt: &Excerpt, info: &mut VideoInfo, stream_start: i64) -> Self {
        let tb = f64::from(info.time_base);
        let fps = f64::from(info.frame_rate);
        let start_secs = stream_start as f64 * tb;
        let (from, offset) = match excerpt.start {
            Some(t) => (start_secs + t, start_secs + t),
            None => (f64::NEG_INFINITY, 0.0),
        };
        let first_index = excerpt.start.map_or(0, |t| (t * fps - 1e-6).ceil().max(0.0) as usize);
        let every = excerpt.every.max(1);
        let (length, frames_left) = match excerpt.limit {
            Limit::All => (None, None),
            Limit::Seconds(d) => (Some(d), None),
            Limit::Frames(n) => (Some(n as f64 * every as f64 / fps), Some(n)),
        };
        let until = length.map(|d| from.max(start_secs) + d);
        let available = info.frames.map(|n| n.saturating_sub(first_index));
        let by_length = length.map(|d| (d * fps - 1e-6).ceil().max(0.0) as usize);
        let read = match (available, by_length) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        info.frames = read.map(|n| n.div_ceil(every).min(frames_left.unwrap_or(usize::MAX)));
        (info.width, info.height) = excerpt.size((info.width, info.height));
        Self {
            seek_pts: excerpt.start.filter(|&t| t > 0.0).map(|t| stream_start + (t / tb).round() as i64),
            first_index,
            every,
            frames_left,
            end_pts: until.map(|u| (u / tb).round() as i64),
            offset_pts: (offset / tb).round() as i64,
            audio: (from, until, offset),
            first: None,
            done: false,
        }
    }

    /// Whether frame `index` at `pts` passes, and its timestamp in the output.
    pub fn admit(&mut self, index: usize, pts: i64) -> Option<i64> {
        if self.done || self.end_pts.is_some_and(|end| pts >= end) || self.frames_left == Some(0) {
            self.done = true;
            return None;
        }
        if self.seek_pts.is_some_and(|s| pts < s) {
            return None;
        }
        let first = *self.first.get_or_insert(index);
        if !(index - first).is_multiple_of(self.every) {
            return None;
        }
        if let Some(n) = self.frames_left.as_mut() {
            *n -= 1;
        }
        Some(pts - self.offset_pts)
    }

    /// The audio packet (time base `tb` seconds) if it starts inside the window, shifted with
    /// the frames.
    pub fn admit_audio(&self, mut packet: Packet, tb: f64) -> Option<Packet> {
        let (from, until, offset) = self.audio;
        let t = packet.pts().or(packet.dts())? as f64 * tb;
        if t < from - 1e-9 || until.is_some_and(|u| t >= u - 1e-9) {
            return None;
        }
        let shift = (offset / tb).round() as i64;
        packet.set_pts(packet.pts().map(|p| p - shift));
        packet.set_dts(packet.dts().map(|d| d - shift));
        Some(packet)
    }
}

/// Parses a time as FFmpeg does: `SECONDS[.frac]` with an optional `s`/`ms`/`us` suffix, or
/// `[HH:]MM:SS[.frac]`.
pub fn parse_time(text: &str) -> anyhow::Result<f64> {
    let t = text.trim();
    let bad = || anyhow::anyhow!("`{text}` is not a time: write seconds (90, 2.5, 1500ms) or [HH:]MM:SS[.frac] (1:30)");
    let seconds = if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let mut total = 0.0;
        for (i, p) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let v: f64 = p.parse().map_err(|_| bad())?;
            if !last && p.contains('.') || i > 0 && v >= 60.0 {
                return Err(bad());
            }
            total = total * 60.0 + v;
        }
        total
    } else {
        let (number, unit) = match t {
            _ if t.ends_with("ms") => (&t[..t.len() - 2], 1e-3),
            _ if t.ends_with("us") => (&t[..t.len() - 2], 1e-6),
            _ if t.ends_with('s') => (&t[..t.len() - 1], 1.0),
            _ => (t, 1.0),
        };
        number.parse::<f64>().map_err(|_| bad())? * unit
    };
    if !seconds.is_finite() || seconds < 0.0 {
        bail!("`{text}` is not a time from the start of the video (it must be 0 or more)");
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_ffmpeg() {
        for (text, want) in [("90", 90.0), ("2.5", 2.5), ("1500ms", 1.5), ("3s", 3.0), ("1:30", 90.0)] {
            assert_eq!(parse_time(text).unwrap(), want, "{text}");
        }
        assert!((parse_time("01:02:03.5").unwrap() - 3723.5).abs() < 1e-9);
        for bad in ["", "-1", "1:60", "a", "1::2", "1.5:00", "1:2:3:4", "inf", "NaN"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn preview_sizes_fit_and_stay_even() {
        let e = Excerpt { max_side: Some(480), ..Excerpt::default() };
        assert_eq!(e.size((1920, 1080)), (480, 270));
        assert_eq!(e.size((1080, 1920)), (270, 480));
        assert_eq!(e.size((320, 240)), (320, 240), "never larger");
        assert_eq!(e.size((1001, 333)), (480, 160));
        assert!(Excerpt::default().is_whole() && Excerpt::default().record().is_empty());
        assert!(e.record().contains("max_side = 480"));
    }
}
