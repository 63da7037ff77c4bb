//! Temporal coherence: what each frame's dream starts from, given the previous frame.

use image::RgbImage;

use super::flow::{self, Flow, FlowParams, Plane};

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
    let diff = prev.data.iter().zip(&cur.data).map(|(a, b)| (a - b).abs()).sum::<f32>() / cur.data.len() as f32;
    let cut = diff > scene_cut;
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
    let n = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = p[c] as f32 / 255.0;
        }
    }
    out
}

/// The image a frame's dream starts from: the current source frame, plus what is carried
/// over from the previous frame (`prev_source`, `prev_dreamed`) according to `mode`, weighted
/// by `blend` in `[0, 1]`.
pub fn initial_image(
    current: &RgbImage,
    previous: Option<(&RgbImage, &RgbImage)>,
    motion: Option<&Motion>,
    mode: Coherence,
    blend: f32,
) -> Vec<f32> {
    let cur = chw(current);
    let Some((prev_src, prev_dream)) = previous else {
        return cur;
    };
    if motion.is_some_and(|m| m.cut) || mode == Coherence::None || blend == 0.0 {
        return cur;
    }
    let dreamed = chw(prev_dream);
    match (mode, motion.and_then(|m| m.back.as_ref().map(|b| (b, &m.reliable)))) {
        (Coherence::Flow, Some((back, reliable))) => {
            let residual: Vec<f32> = dreamed.iter().zip(chw(prev_src)).map(|(d, s)| d - s).collect();
            let carried = flow::warp(&residual, 3, back);
            let n = reliable.len();
            cur.iter()
                .zip(carried)
                .enumerate()
                .map(|(i, (c, r))| (c + blend * reliable[i % n] * r).clamp(0.0, 1.0))
                .collect()
        }
        _ => cur.iter().zip(dreamed).map(|(c, d)| (1.0 - blend) * c + blend * d).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(v: u8) -> RgbImage {
        RgbImage::from_pixel(8, 8, image::Rgb([v, v, v]))
    }

    #[test]
    fn blend_mixes_and_none_ignores_the_previous_frame() {
        let (cur, src, dream) = (solid(100), solid(100), solid(200));
        let b = initial_image(&cur, Some((&src, &dream)), None, Coherence::Blend, 0.5);
        assert!((b[0] - 150.0 / 255.0).abs() < 1e-6);
        let n = initial_image(&cur, Some((&src, &dream)), None, Coherence::None, 0.5);
        assert!((n[0] - 100.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn scene_cuts_reset_and_flow_carries_the_residual() {
        let (a, b) = (Plane::luma(&solid(10)), Plane::luma(&solid(240)));
        assert!(motion(&a, &b, Coherence::Flow, crate::settings::Settings::default().scene_cut as f32).cut);
        let m = motion(&a, &a, Coherence::Flow, crate::settings::Settings::default().scene_cut as f32);
        assert!(!m.cut);
        let cut = Motion { back: None, reliable: vec![], cut: true };
        let x = initial_image(&solid(100), Some((&solid(100), &solid(200))), Some(&cut), Coherence::Blend, 0.5);
        assert!((x[0] - 100.0 / 255.0).abs() < 1e-6);
        let carried = initial_image(&solid(50), Some((&solid(100), &solid(120))), Some(&m), Coherence::Flow, 0.5);
        assert!((carried[0] - 60.0 / 255.0).abs() < 1e-5, "{}", carried[0] * 255.0);
    }
}
