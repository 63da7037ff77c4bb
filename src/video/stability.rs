//! How much flicker a dreamed video adds to its source, measured two ways, per pair of
//! consecutive frames (pairs across a scene cut are left out):
//!
//! - The warping error of Lai et al. 2018 ("Learning Blind Video Temporal Consistency") with
//!   the occlusion test of Ruder et al. 2016, as `scripts/coherence_bench.py` defines it:
//!   `E_warp(V) = mean over t of sum_i M_t(i) |V_t+1(i) - warp(V_t)(i)|^2 / sum_i M_t(i)`, RGB
//!   in `[0, 1]`, squares summed over the channels. `warp` samples frame `t` bilinearly at
//!   `i + w^(i)`, `w^` the backward flow (frame `t + 1` to `t`) of the *source*; `M_t` keeps the
//!   pixels whose `i + w^(i)` is inside the frame and whose forward flow `w~` there comes back,
//!   `|w~ + w^|^2 <= 0.01 (|w~|^2 + |w^|^2) + 0.5`. Both flows are Farnebäck's
//!   ([`super::farneback`]: OpenCV's algorithm with the bench's parameters), independent of
//!   [`super::flow`], along which renders carry their dream: measured with the flow it follows,
//!   a render would grade its own homework.
//! - Static-pixel flicker, which needs no flow at all: over the pixels where the source stands
//!   still, the mean squared change of each video from one frame to the next (see
//!   [`static_flicker`]).

use std::ops::Range;
use std::path::Path;

use anyhow::bail;
use image::RgbImage;

use super::coherence::chw;
use super::flow::{self, Plane};
use super::shots::is_cut;
use super::{farneback, frames, noise, Item, Source};

/// One figure of a pair of frames, for the source and for the dreamed video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceAndDream {
    /// Of the source.
    pub source: f64,
    /// Of the dreamed video.
    pub dreamed: f64,
}

/// What [`measure`] found for a pair of consecutive frames of one shot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// The `E_warp` terms; `None` when no pixel passed the occlusion test.
    pub warp: Option<SourceAndDream>,
    /// The static-pixel flicker; `None` when no pixel of the source stood still.
    pub still: Option<SourceAndDream>,
    /// The share of the pixels that stood still, in `[0, 1]`.
    pub static_share: f64,
}

/// What [`measure`] found, per frame and per pair.
#[derive(Debug, Clone, Default)]
pub struct Stability {
    /// Frames in each shot (index ranges).
    pub shots: Vec<Range<usize>>,
    /// The pairs `(t, t + 1)`, `None` across a cut.
    pub pairs: Vec<Option<Pair>>,
    /// Mean absolute difference dreamed - source of each frame, in `0..255`.
    pub strength: Vec<f64>,
    /// Mean luma dreamed - source of each frame, in `0..255`.
    pub luma_shift: Vec<f64>,
}

/// One row of [`Stability::summary`]: means over the pairs of its frames (NaN where there are
/// none).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// `clip` or `shot A-B`.
    pub scope: String,
    /// The first frame.
    pub first: usize,
    /// The last frame.
    pub last: usize,
    /// `E_warp` of the source.
    pub source: f64,
    /// `E_warp` of the dreamed video.
    pub dreamed: f64,
    /// Static-pixel flicker of the source.
    pub static_source: f64,
    /// Static-pixel flicker of the dreamed video.
    pub static_dreamed: f64,
    /// The share of the pixels that stood still.
    pub static_share: f64,
    /// Mean strength in `0..255`.
    pub strength: f64,
    /// Change of the mean luma shift from the first to the last tenth of the frames, `/255`.
    pub drift: f64,
}

impl Summary {
    /// The flicker the dream adds: `E_warp(dreamed) - E_warp(source)`.
    pub fn added(&self) -> f64 {
        self.dreamed - self.source
    }

    /// How much more the dream flickers where the source stands still than the source does.
    pub fn static_ratio(&self) -> f64 {
        self.static_dreamed / self.static_source
    }
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

impl Stability {
    /// The whole clip, then each shot when there are several.
    pub fn summary(&self) -> Vec<Summary> {
        let row = |scope: String, frames: Range<usize>| {
            let pairs = || self.pairs[frames.start..frames.end.saturating_sub(1)].iter().flatten();
            let warp = || pairs().filter_map(|p| p.warp);
            let still = || pairs().filter_map(|p| p.still);
            let tenth = (frames.len() / 10).max(1);
            let shift = |r: Range<usize>| mean(self.luma_shift[r].iter().copied());
            Summary {
                scope,
                first: frames.start,
                last: frames.end.saturating_sub(1),
                source: mean(warp().map(|p| p.source)),
                dreamed: mean(warp().map(|p| p.dreamed)),
                static_source: mean(still().map(|p| p.source)),
                static_dreamed: mean(still().map(|p| p.dreamed)),
                static_share: mean(pairs().map(|p| p.static_share)),
                strength: mean(self.strength[frames.clone()].iter().copied()),
                drift: shift(frames.end - tenth..frames.end) - shift(frames.start..frames.start + tenth),
            }
        };
        let mut out = vec![row("clip".into(), 0..self.strength.len())];
        if self.shots.len() > 1 {
            out.extend(self.shots.iter().map(|s| row(format!("shot {}-{}", s.start, s.end - 1), s.clone())));
        }
        out
    }

    /// The [`summary`](Self::summary) as one JSON object, `{"flow": "farneback", "rows": [...]}`,
    /// a row's figures unscaled, `null` where there is none.
    pub fn json(&self) -> String {
        let number = |x: f64| if x.is_finite() { format!("{x}") } else { "null".into() };
        let rows: Vec<String> = self
            .summary()
            .iter()
            .map(|r| {
                let figures = [
                    ("source", r.source),
                    ("dreamed", r.dreamed),
                    ("added", r.added()),
                    ("static_source", r.static_source),
                    ("static_dreamed", r.static_dreamed),
                    ("static_share", r.static_share),
                    ("strength", r.strength),
                    ("drift", r.drift),
                ];
                let figures: Vec<String> = figures.iter().map(|(k, v)| format!("\"{k}\": {}", number(*v))).collect();
                format!(
                    "{{\"scope\": \"{}\", \"first\": {}, \"last\": {}, {}}}",
                    r.scope,
                    r.first,
                    r.last,
                    figures.join(", ")
                )
            })
            .collect();
        format!("{{\"flow\": \"farneback\", \"rows\": [{}]}}", rows.join(", "))
    }
}

/// Mean of `M |b - warp(a)|^2` over the reliable pixels (`None` when there are none).
fn warping_error(a: &[f32], b: &[f32], back: &flow::Flow, reliable: &[f32]) -> Option<f64> {
    let warped = flow::warp(a, 3, back);
    let n = reliable.len();
    let (mut sum, mut count) = (0.0f64, 0.0f64);
    for (i, &m) in reliable.iter().enumerate() {
        if m > 0.0 {
            let e: f32 = (0..3).map(|c| (b[c * n + i] - warped[c * n + i]).powi(2)).sum();
            sum += e as f64;
            count += 1.0;
        }
    }
    (count > 0.0).then(|| sum / count)
}

/// The static-pixel flicker of a pair of frames, and the share of static pixels.
///
/// A pixel is static when the source's luma did not change from `prev` to `cur` beyond the
/// noise of `cur` ([`noise::still`] at [`noise::level`]: the mean over a 5x5 window of the
/// squared change is at most twice that of two frames of pure noise). The flicker of a video there is the mean over the static pixels of
/// `|V_t+1(i) - V_t(i)|^2`, RGB in `[0, 1]`, squares summed over the channels (the units of
/// `E_warp`), of the source (`source`: frames `t` and `t + 1`, CHW) and of the dream
/// (`dreamed`). `None` when no pixel is static.
fn static_flicker(
    prev: &Plane,
    cur: &Plane,
    source: (&[f32], &[f32]),
    dreamed: (&[f32], &[f32]),
) -> (Option<SourceAndDream>, f64) {
    let mask = noise::still(prev, cur, noise::level(cur));
    let still: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] > 0.0).collect();
    let share = still.len() as f64 / mask.len().max(1) as f64;
    if still.is_empty() {
        return (None, share);
    }
    let n = mask.len();
    let flicker = |(a, b): (&[f32], &[f32])| {
        let sum: f64 =
            still.iter().map(|&i| (0..3).map(|c| (b[c * n + i] - a[c * n + i]).powi(2)).sum::<f32>() as f64).sum();
        sum / still.len() as f64
    };
    (Some(SourceAndDream { source: flicker(source), dreamed: flicker(dreamed) }), share)
}

/// Measures `dreamed` against its `source` (videos or frame folders, with the same frame count
/// and size).
pub fn measure(source: &Path, dreamed: &Path, scene_cut: f32) -> anyhow::Result<Stability> {
    // A frame folder's frame rate plays no part here.
    let open = |path: &Path| Source::open(path, frames::is_frame_folder(path).then_some(25.0));
    let (mut src, mut out) = (open(source)?, open(dreamed)?);
    let next = |r: &mut Source| -> anyhow::Result<Option<RgbImage>> {
        while let Some(item) = r.next_item()? {
            if let Item::Frame(f) = item {
                return Ok(Some(f.image));
            }
        }
        Ok(None)
    };
    let mut s = Stability::default();
    let mut previous: Option<(Plane, Vec<f32>, Vec<f32>)> = None;
    let mut shot_start = 0;
    loop {
        let (a, b) = (next(&mut src)?, next(&mut out)?);
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (None, None) => break,
            _ => bail!("{} and {} have different frame counts", source.display(), dreamed.display()),
        };
        if a.dimensions() != b.dimensions() {
            bail!("{} is {:?} but {} is {:?}", source.display(), a.dimensions(), dreamed.display(), b.dimensions());
        }
        let index = s.strength.len();
        let (luma, sa, sb) = (Plane::luma(&a), chw(&a), chw(&b));
        let diff = |f: &dyn Fn(usize) -> f32| mean((0..sa.len()).map(|i| f(i) as f64)) * 255.0;
        s.strength.push(diff(&|i| (sb[i] - sa[i]).abs()));
        let third = sa.len() / 3;
        let weights = [0.299f32, 0.587, 0.114];
        s.luma_shift.push(diff(&|i| 3.0 * weights[i / third] * (sb[i] - sa[i])));
        if let Some((prev_luma, prev_a, prev_b)) = &previous {
            if is_cut(prev_luma, &luma, scene_cut) {
                s.pairs.push(None);
                s.shots.push(shot_start..index);
                shot_start = index;
            } else {
                let ((back, forward), (still, static_share)) = rayon::join(
                    || rayon::join(|| farneback::estimate(&luma, prev_luma), || farneback::estimate(prev_luma, &luma)),
                    || static_flicker(prev_luma, &luma, (prev_a, &sa), (prev_b, &sb)),
                );
                let reliable = flow::consistency(&back, &forward);
                let warp = warping_error(prev_a, &sa, &back, &reliable)
                    .zip(warping_error(prev_b, &sb, &back, &reliable))
                    .map(|(source, dreamed)| SourceAndDream { source, dreamed });
                s.pairs.push(Some(Pair { warp, still, static_share }));
            }
        }
        previous = Some((luma, sa, sb));
    }
    if s.strength.is_empty() {
        bail!("no video frames could be decoded from {}", source.display());
    }
    s.shots.push(shot_start..s.strength.len());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain grey field (left) beside a moving texture (right), with a little seeded noise.
    fn frame(t: usize, (w, h): (u32, u32)) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let hash = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ (t as u32).wrapping_mul(83_492_791))
                .wrapping_mul(2_654_435_761);
            let noise = (hash >> 30) as f32 - 1.5;
            let v = if x < w / 2 {
                120.0
            } else {
                let u = x as f32 - 2.0 * t as f32;
                128.0 + 60.0 * (u * 0.3).sin() * (y as f32 * 0.2).cos()
            };
            let v = (v + noise).round() as u8;
            image::Rgb([v, v.saturating_add(10), v.saturating_sub(10)])
        })
    }

    fn measured(a: &RgbImage, b: &RgbImage, da: &RgbImage, db: &RgbImage) -> (Option<SourceAndDream>, f64) {
        static_flicker(&Plane::luma(a), &Plane::luma(b), (&chw(a), &chw(b)), (&chw(da), &chw(db)))
    }

    #[test]
    fn static_flicker_sees_a_dream_flicker_where_the_source_stands_still() {
        let size = (64, 48);
        let (a, b) = (frame(0, size), frame(1, size));
        // An unchanged "dream": its flicker is the source's.
        let (same, share) = measured(&a, &b, &a, &b);
        let same = same.expect("the grey half stands still");
        assert_eq!(same.source, same.dreamed);
        assert!(same.source > 0.0, "the source's own noise");
        assert!((0.4..0.6).contains(&share), "about the grey half is static: {share}");
        // A dream that changes its pattern on the grey field from frame to frame.
        let dream = |t: usize, img: &RgbImage| {
            let mut d = img.clone();
            for (x, y, p) in d.enumerate_pixels_mut() {
                if x < size.0 / 2 && (x / 4 + y / 4 + t as u32).is_multiple_of(2) {
                    p.0 = p.0.map(|v| v.saturating_add(30));
                }
            }
            d
        };
        let (flickers, _) = measured(&a, &b, &dream(0, &a), &dream(1, &b));
        let flickers = flickers.expect("static pixels");
        assert_eq!(flickers.source, same.source, "the source's figure does not depend on the dream");
        assert!(flickers.dreamed > 50.0 * flickers.source, "{flickers:?}");
    }

    #[test]
    fn json_has_every_row_and_null_for_missing_figures() {
        let s = Stability {
            shots: std::iter::once(0..2).collect(),
            pairs: vec![Some(Pair {
                warp: Some(SourceAndDream { source: 0.5, dreamed: 0.75 }),
                still: None,
                static_share: 0.0,
            })],
            strength: vec![2.0, 4.0],
            luma_shift: vec![0.0, 1.0],
        };
        assert_eq!(
            s.json(),
            "{\"flow\": \"farneback\", \"rows\": [{\"scope\": \"clip\", \"first\": 0, \"last\": 1, \"source\": 0.5, \
             \"dreamed\": 0.75, \"added\": 0.25, \"static_source\": null, \"static_dreamed\": null, \
             \"static_share\": 0, \"strength\": 3, \"drift\": 1}]}"
        );
    }
}
