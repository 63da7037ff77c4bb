//! Where shots change: a frame starts a new shot when its luma histogram and its pixels both
//! move far from the previous frame's.

use std::path::Path;

use super::flow::Plane;
use super::{Item, VideoReader};

/// The default `scene_cut` threshold on [`cut_score`]: above any shot's own motion, below hard
/// cuts.
pub const DEFAULT_SCENE_CUT: f64 = 0.3;

/// Luma histogram bins.
const BINS: usize = 64;

/// How different two frames (luma planes in `[0, 1]`) are as shots: the Bhattacharyya distance
/// of their 64-bin luma histograms plus their mean absolute luma difference. Within a shot it
/// stays below about 0.2 even with fast motion (the histogram barely moves); hard cuts score
/// 0.4 and more.
pub fn cut_score(prev: &Plane, cur: &Plane) -> f32 {
    let histogram = |p: &Plane| {
        let mut h = [0f32; BINS];
        for &v in &p.data {
            h[((v * BINS as f32) as usize).min(BINS - 1)] += 1.0;
        }
        let n = p.data.len().max(1) as f32;
        h.map(|c| c / n)
    };
    let (a, b) = (histogram(prev), histogram(cur));
    let overlap: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).sqrt()).sum();
    let distance = (1.0 - overlap).max(0.0).sqrt();
    let diff = prev.data.iter().zip(&cur.data).map(|(a, b)| (a - b).abs()).sum::<f32>() / cur.data.len().max(1) as f32;
    distance + diff
}

/// Whether `cur` starts a new shot after `prev`: its [`cut_score`] is above `threshold`.
pub fn is_cut(prev: &Plane, cur: &Plane, threshold: f32) -> bool {
    cut_score(prev, cur) > threshold
}

/// A whole video's frames and shots, from one decode.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// Presentation timestamp of every frame (video time base).
    pub pts: Vec<i64>,
    /// Frames that start a new shot (not frame 0), in order.
    pub cuts: Vec<usize>,
    /// Frames that are a flash: a cut into them and straight back out (the frames before and
    /// after look alike). They do not start shots.
    pub flashes: Vec<usize>,
}

/// Decodes `path` once and finds its cuts ([`is_cut`] at `threshold`), telling flashes (a frame
/// unlike both neighbours, which are alike) from cuts. Fades change little from frame to frame
/// and are no cut.
pub fn scan(path: &Path, threshold: f32) -> anyhow::Result<Scan> {
    let mut reader = VideoReader::open(path)?;
    let mut scan = Scan { pts: Vec::new(), cuts: Vec::new(), flashes: Vec::new() };
    // The last two frames' luma, and whether the last frame was cut from the one before it.
    let mut before: Option<Plane> = None;
    let mut last: Option<(Plane, bool)> = None;
    while let Some(item) = reader.next_item()? {
        let Item::Frame(frame) = item else { continue };
        let luma = Plane::luma(&frame.image);
        let index = scan.pts.len();
        scan.pts.push(frame.pts);
        let cut = last.as_ref().is_some_and(|(prev, _)| is_cut(prev, &luma, threshold));
        if let (Some(b), Some((_, true))) = (&before, &last) {
            // The last frame was cut in: if this one is cut out again to what came before it,
            // the last frame was a flash.
            if cut && !is_cut(b, &luma, threshold) {
                scan.cuts.pop();
                scan.flashes.push(index - 1);
                before = last.map(|(p, _)| p);
                last = Some((luma, false));
                continue;
            }
        }
        if cut {
            scan.cuts.push(index);
        }
        before = last.map(|(p, _)| p);
        last = Some((luma, cut));
    }
    if scan.pts.is_empty() {
        anyhow::bail!("no video frames could be decoded from {}", path.display());
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(f: impl Fn(usize, usize) -> f32) -> Plane {
        let (w, h) = (64, 48);
        Plane { w, h, data: (0..w * h).map(|i| f(i % w, i / w)).collect() }
    }

    #[test]
    fn motion_scores_low_and_a_new_scene_high() {
        let texture =
            |dx: usize| plane(move |x, y| 0.5 + 0.4 * (((x + dx) as f32 * 0.4).sin() * (y as f32 * 0.3).cos()));
        let moved = cut_score(&texture(0), &texture(3));
        assert!(moved < 0.35, "a moving texture is one shot: {moved}");
        let dark = plane(|x, y| 0.1 + 0.002 * (x + y) as f32);
        let cut = cut_score(&texture(0), &dark);
        assert!(cut > 0.8, "another scene: {cut}");
        assert_eq!(cut_score(&dark, &dark), 0.0);
    }
}
