//! How much flicker a dreamed video adds to its source: the warping error of Lai et al. 2018
//! ("Learning Blind Video Temporal Consistency") with the occlusion test of Ruder et al. 2016,
//! measured with dreamvid's own optical flow (`scripts/coherence-bench` measures the same with
//! OpenCV's flow, which dreamvid does not use).
//!
//! `E_warp(V) = mean over t of sum_i M_t(i) |V_t+1(i) - warp(V_t)(i)|^2 / sum_i M_t(i)`, RGB in
//! `[0, 1]`, warped along the backward flow of the *source* frames; `M_t` keeps the pixels
//! whose forward and backward flows agree. Pairs across a scene cut are left out.

use std::ops::Range;
use std::path::Path;

use anyhow::bail;
use image::RgbImage;

use super::coherence::chw;
use super::flow::{self, FlowParams, Plane};
use super::shots::is_cut;
use super::{Item, VideoReader};

/// The warping errors of one pair of consecutive frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairError {
    /// `E` of the source pair.
    pub source: f64,
    /// `E` of the dreamed pair.
    pub dreamed: f64,
}

/// What [`measure`] found, per frame and per pair.
#[derive(Debug, Clone, Default)]
pub struct Stability {
    /// Frames in each shot (index ranges).
    pub shots: Vec<Range<usize>>,
    /// Warping errors of the pairs `(t, t + 1)`, `None` across a cut.
    pub pairs: Vec<Option<PairError>>,
    /// Mean absolute difference dreamed - source of each frame, in `0..255`.
    pub strength: Vec<f64>,
    /// Mean luma dreamed - source of each frame, in `0..255`.
    pub luma_shift: Vec<f64>,
}

/// One row of [`Stability::summary`].
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// `clip` or `shot A-B`.
    pub scope: String,
    /// `E_warp` of the source.
    pub source: f64,
    /// `E_warp` of the dreamed video.
    pub dreamed: f64,
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
            let tenth = (frames.len() / 10).max(1);
            let shift = |r: Range<usize>| mean(self.luma_shift[r].iter().copied());
            Summary {
                scope,
                source: mean(pairs().map(|p| p.source)),
                dreamed: mean(pairs().map(|p| p.dreamed)),
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

/// Measures `dreamed` against its `source` (same frame count and size).
pub fn measure(source: &Path, dreamed: &Path, scene_cut: f32) -> anyhow::Result<Stability> {
    let (mut src, mut out) = (VideoReader::open(source)?, VideoReader::open(dreamed)?);
    let next = |r: &mut VideoReader| -> anyhow::Result<Option<RgbImage>> {
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
                let (back, forward) = rayon::join(
                    || flow::estimate(&luma, prev_luma, FlowParams::default()),
                    || flow::estimate(prev_luma, &luma, FlowParams::default()),
                );
                let reliable = flow::consistency(&back, &forward);
                let pair = warping_error(prev_a, &sa, &back, &reliable)
                    .zip(warping_error(prev_b, &sb, &back, &reliable))
                    .map(|(source, dreamed)| PairError { source, dreamed });
                s.pairs.push(pair);
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
