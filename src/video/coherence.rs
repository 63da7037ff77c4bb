//! Temporal coherence: what each frame's dream starts from, given the previous frame.

use image::RgbImage;
use rayon::prelude::*;

use super::flow::{self, Flow, FlowParams, Plane};
use super::shots::is_cut;

/// How a frame's dream builds on the previous dreamed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coherence {
    /// Dream every frame independently (flickers).
    None,
    /// Mix the previous dreamed frame into the current frame (ghosts on motion).
    Blend,
    /// Carry the previous dream's residual (dreamed - source) along the optical flow, skipping
    /// occluded pixels, so patterns stick to moving content.
    Flow,
}

impl Coherence {
    /// Every mode, by name.
    pub const NAMES: &'static [&'static str] = &["none", "blend", "flow"];

    /// The mode's name in presets and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Coherence::None => "none",
            Coherence::Blend => "blend",
            Coherence::Flow => "flow",
        }
    }
}

impl std::str::FromStr for Coherence {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        [Coherence::None, Coherence::Blend, Coherence::Flow].into_iter().find(|c| c.name() == s).ok_or(())
    }
}

/// Motion from the previous source frame to the current one.
pub struct Motion {
    /// Flow from the current frame to the previous one (where each pixel came from).
    pub back: Option<Flow>,
    /// Per-pixel reliability of `back` (forward/backward consistency), 0 or 1.
    pub reliable: Vec<f32>,
    /// The frames differ so much that this is a new shot: nothing is carried over.
    pub cut: bool,
}

/// Analyses the step from `prev` to `cur` (luma planes) for `mode`.
pub fn motion(prev: &Plane, cur: &Plane, mode: Coherence, scene_cut: f32) -> Motion {
    let cut = is_cut(prev, cur, scene_cut);
    if mode != Coherence::Flow || cut {
        return Motion { back: None, reliable: Vec::new(), cut };
    }
    let (back, forward) = rayon::join(
        || flow::estimate(cur, prev, FlowParams::default()),
        || flow::estimate(prev, cur, FlowParams::default()),
    );
    let reliable = flow::consistency(&back, &forward);
    Motion { back: Some(back), reliable, cut }
}

/// CHW floats in `[0, 1]` of an RGB image.
pub fn chw(img: &RgbImage) -> Vec<f32> {
    let (w, n) = (img.width() as usize, (img.width() * img.height()) as usize);
    let mut out = vec![0f32; 3 * n];
    let (r, gb) = out.split_at_mut(n);
    let (g, b) = gb.split_at_mut(n);
    let rows = r.par_chunks_mut(w.max(1)).zip(g.par_chunks_mut(w.max(1))).zip(b.par_chunks_mut(w.max(1)));
    rows.zip(img.as_raw().par_chunks(3 * w.max(1))).with_min_len(16).for_each(|(((r, g), b), src)| {
        for (x, p) in src.chunks_exact(3).enumerate() {
            (r[x], g[x], b[x]) = (p[0] as f32 / 255.0, p[1] as f32 / 255.0, p[2] as f32 / 255.0);
        }
    });
    out
}

/// How much of the previous frame's dream a frame takes over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Carryover {
    /// In `blend` mode, the weight in `[0, 1]` of the previous dreamed frame.
    pub blend: f32,
    /// In `flow` mode, the weight in `[0, 1]` of the previous dream's residual (dreamed -
    /// source) carried along the motion.
    pub carry: f32,
    /// In `flow` mode, how much of each dream step is held back where the carried dream is
    /// reliable, in `[0, 1]`: 0 dreams every pixel fully each frame, 1 dreams only where new
    /// content appears.
    pub temporal_weight: f32,
}

/// What a frame's dream starts from.
pub struct Start {
    /// The starting image, CHW floats in `[0, 1]`.
    pub image: Vec<f32>,
    /// Per-pixel weight in `[0, 1]` of every dream step (row-major `H x W`); `None`: 1.
    pub step_weight: Option<Vec<f32>>,
}

/// What a frame's dream starts from: the current source frame, plus what is carried over
/// from the previous frame (`prev_source`, `prev_dreamed`) according to `mode`.
pub fn start(
    current: &RgbImage,
    previous: Option<(&RgbImage, &RgbImage)>,
    motion: Option<&Motion>,
    mode: Coherence,
    carryover: Carryover,
) -> Start {
    let cur = chw(current);
    let fresh = |image| Start { image, step_weight: None };
    let Some((prev_src, prev_dream)) = previous else {
        return fresh(cur);
    };
    let Carryover { blend, carry, temporal_weight } = carryover;
    let weight = if mode == Coherence::Flow { carry } else { blend };
    if motion.is_some_and(|m| m.cut) || mode == Coherence::None || weight == 0.0 {
        return fresh(cur);
    }
    let dreamed = chw(prev_dream);
    match (mode, motion.and_then(|m| m.back.as_ref().map(|b| (b, &m.reliable)))) {
        (Coherence::Flow, Some((back, reliable))) => {
            let residual: Vec<f32> = dreamed.par_iter().zip(chw(prev_src)).map(|(d, s)| d - s).collect();
            let carried = flow::warp(&residual, 3, back);
            let n = reliable.len();
            let image = cur
                .par_iter()
                .zip(carried)
                .enumerate()
                .map(|(i, (c, r))| (c + carry * reliable[i % n] * r).clamp(0.0, 1.0))
                .collect();
            let step_weight =
                (temporal_weight > 0.0).then(|| reliable.iter().map(|r| 1.0 - temporal_weight * r).collect());
            Start { image, step_weight }
        }
        _ => fresh(cur.iter().zip(dreamed).map(|(c, d)| (1.0 - blend) * c + blend * d).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carry(weight: f32) -> Carryover {
        Carryover { blend: weight, carry: weight, temporal_weight: 0.0 }
    }

    fn solid(v: u8) -> RgbImage {
        RgbImage::from_pixel(8, 8, image::Rgb([v, v, v]))
    }

    #[test]
    fn blend_mixes_and_none_ignores_the_previous_frame() {
        let (cur, src, dream) = (solid(100), solid(100), solid(200));
        let b = start(&cur, Some((&src, &dream)), None, Coherence::Blend, carry(0.5)).image;
        assert!((b[0] - 150.0 / 255.0).abs() < 1e-6);
        let n = start(&cur, Some((&src, &dream)), None, Coherence::None, carry(0.5)).image;
        assert!((n[0] - 100.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn scene_cuts_reset_and_flow_carries_the_residual() {
        let (a, b) = (Plane::luma(&solid(10)), Plane::luma(&solid(240)));
        assert!(motion(&a, &b, Coherence::Flow, crate::settings::Settings::default().scene_cut as f32).cut);
        let m = motion(&a, &a, Coherence::Flow, crate::settings::Settings::default().scene_cut as f32);
        assert!(!m.cut);
        let cut = Motion { back: None, reliable: vec![], cut: true };
        let x = start(&solid(100), Some((&solid(100), &solid(200))), Some(&cut), Coherence::Blend, carry(0.5)).image;
        assert!((x[0] - 100.0 / 255.0).abs() < 1e-6);
        let carried = start(&solid(50), Some((&solid(100), &solid(120))), Some(&m), Coherence::Flow, carry(0.5)).image;
        assert!((carried[0] - 60.0 / 255.0).abs() < 1e-5, "{}", carried[0] * 255.0);
    }
}
