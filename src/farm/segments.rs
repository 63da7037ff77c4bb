//! Splitting a video into segments: at its cuts, and inside long shots every so many seconds.

use serde::{Deserialize, Serialize};

/// One segment of a job: frames `first .. first + frames` of the input, rendered after
/// `warmup` frames dreamed and thrown away. Where two segments meet inside a shot, their
/// dreams differ (each built up from its own start), so they cross-fade: the later one's first
/// `fade_in` frames and as many frames the earlier one dreams past its end (`fade_out`) are set
/// aside, and `dreamvid assemble` blends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Position in the job (its file is `segments/INDEX.mkv`).
    pub index: usize,
    /// First frame written.
    pub first: usize,
    /// Frames written.
    pub frames: usize,
    /// Frames before `first` dreamed to build up the carried-over dream, not written (0 for a
    /// segment that starts a shot, and never reaching back past its shot's first frame).
    pub warmup: usize,
    /// Presentation timestamp of the first frame dreamed (`first - warmup`).
    pub start_pts: i64,
    /// Frames at the start blended with the previous segment's `fade_out` (0 after a cut).
    pub fade_in: usize,
    /// Frames dreamed past the end, for the next segment's `fade_in`.
    pub fade_out: usize,
    /// Presentation timestamps of the `fade_in` frames.
    pub fade_pts: Vec<i64>,
    /// Presentation timestamps of the first and last frames the segment's own video holds
    /// (`first + fade_in` and `first + frames - 1`).
    pub pts: [i64; 2],
}

/// How segments are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutting {
    /// Longest segment, in frames.
    pub max_frames: usize,
    /// Shots shorter than this join the segment before them (a flash or a blink is no reason
    /// to split).
    pub min_frames: usize,
    /// Frames of warm-up (at most back to the shot's start).
    pub warmup: usize,
    /// Frames of cross-fade where segments meet inside a shot (at most half a segment).
    pub crossfade: usize,
}

/// Segments of a video of `pts.len()` frames whose shots start at `cuts`: one per shot, and
/// shots longer than `cut.max_frames` split into near-equal pieces of at most that many frames,
/// each piece but the first warmed up and cross-faded with the one before.
pub fn plan_segments(pts: &[i64], cuts: &[usize], cut: Cutting) -> Vec<Segment> {
    let Cutting { max_frames, min_frames, warmup, crossfade } = cut;
    let n = pts.len();
    // Shot starts; a short shot's start is dropped, so it joins the shot before it (the first
    // shot, if short, joins the next).
    let mut starts: Vec<usize> = std::iter::once(0).chain(cuts.iter().copied().filter(|&c| c > 0 && c < n)).collect();
    let mut k = 0;
    while k < starts.len() && starts.len() > 1 {
        let end = starts.get(k + 1).copied().unwrap_or(n);
        if end - starts[k] < min_frames {
            starts.remove(if k == 0 { 1 } else { k });
        } else {
            k += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &shot) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(n);
        let len = end - shot;
        let pieces = len.div_ceil(max_frames.max(1));
        let fade = crossfade.min(len / pieces / 2);
        for p in 0..pieces {
            let first = shot + p * len / pieces;
            let last = shot + (p + 1) * len / pieces;
            let warm = warmup.min(first - shot);
            let fade_in = if p > 0 { fade } else { 0 };
            out.push(Segment {
                index: out.len(),
                first,
                frames: last - first,
                warmup: warm,
                start_pts: pts[first - warm],
                fade_in,
                fade_out: if p + 1 < pieces { fade } else { 0 },
                fade_pts: pts[first..first + fade_in].to_vec(),
                pts: [pts[first + fade_in], pts[last - 1]],
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_shots_and_split_long_ones_with_warm_ups() {
        let pts: Vec<i64> = (0..100).map(|i| 10 * i).collect();
        // Shots: 0-29, 30-31 (a blink, joining the first), 32-99 (long: three pieces of at most 33).
        let cut = |max_frames, min_frames, warmup| Cutting { max_frames, min_frames, warmup, crossfade: 4 };
        let s = plan_segments(&pts, &[30, 32], cut(33, 5, 12));
        let spans: Vec<(usize, usize, usize)> = s.iter().map(|s| (s.first, s.frames, s.warmup)).collect();
        assert_eq!(spans, vec![(0, 32, 0), (32, 22, 0), (54, 23, 12), (77, 23, 12)]);
        assert_eq!(s[2].start_pts, 420);
        assert_eq!(s[2].pts, [580, 760], "after the 4 frames of cross-fade");
        assert_eq!(s[2].fade_pts, vec![540, 550, 560, 570]);
        let fades: Vec<(usize, usize)> = s.iter().map(|s| (s.fade_in, s.fade_out)).collect();
        assert_eq!(fades, vec![(0, 0), (0, 4), (4, 4), (4, 0)], "only where segments meet inside a shot");
        assert!(s.iter().enumerate().all(|(i, s)| s.index == i));
        // Every frame is written once.
        let covered: usize = s.iter().map(|s| s.frames).sum();
        assert_eq!(covered, 100);
        // A warm-up never reaches back past its shot's start.
        let s = plan_segments(&pts, &[], cut(40, 5, 60));
        assert_eq!(s.iter().map(|s| s.warmup).collect::<Vec<_>>(), vec![0, 33, 60]);
        // A short first shot joins the next one.
        let s = plan_segments(&pts, &[3, 50], cut(250, 5, 12));
        assert_eq!(s.iter().map(|s| s.first).collect::<Vec<_>>(), vec![0, 50]);
        // One short video is one segment.
        assert_eq!(plan_segments(&pts[..3], &[], cut(250, 25, 12)).len(), 1);
    }
}
