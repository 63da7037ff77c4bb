//! Temporal coherence: what each frame's dream starts from, given the previous frame.

use image::RgbImage;
use rayon::prelude::*;

use super::camera_motion::CameraMotion;
use super::flow::{self, Flow, FlowParams, Plane};
use super::noise;
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
    /// Flow from the current frame to the previous one (where each pixel came from): the
    /// camera's motion where the source did not change beyond its noise, zero where the pixel
    /// is still.
    pub back: Option<Flow>,
    /// Per-pixel reliability of `back` (forward/backward consistency; still pixels are
    /// reliable), 0 or 1.
    pub reliable: Vec<f32>,
    /// Per-pixel stillness in `[0, 1]`: 1 where most of the pixel's 5x5 window did not change
    /// beyond the source's noise level ([`noise::still`]) and the camera moved less than
    /// [`STILL_MOTION`] pixels, feathered over a few pixels so that held and dreamed regions
    /// meet smoothly.
    pub still: Vec<f32>,
    /// The frames differ so much that this is a new shot: nothing is carried over.
    pub cut: bool,
}

impl Motion {
    /// Share of the pixels whose carried dream is unreliable (new content): 0 when there is
    /// no flow.
    pub fn new_share(&self) -> f32 {
        match self.reliable.len() {
            0 => 0.0,
            n => 1.0 - self.reliable.iter().sum::<f32>() / n as f32,
        }
    }
}

/// Largest camera motion, in pixels, at which a pixel whose source did not change beyond the
/// noise counts as still (and keeps its dream where it is).
pub const STILL_MOTION: f32 = 0.5;

/// Radius in pixels of the window whose majority decides stillness, and over which the still
/// mask is then feathered.
const STILL_FEATHER: usize = 2;

/// Analyses the step from `prev` to `cur` (luma planes) for `mode`.
pub fn motion(prev: &Plane, cur: &Plane, mode: Coherence, scene_cut: f32) -> Motion {
    let cut = is_cut(prev, cur, scene_cut);
    if mode != Coherence::Flow || cut {
        return Motion { back: None, reliable: Vec::new(), still: Vec::new(), cut };
    }
    let ((mut back, forward), sigma) = rayon::join(
        || {
            rayon::join(
                || flow::estimate(cur, prev, FlowParams::default()),
                || flow::estimate(prev, cur, FlowParams::default()),
            )
        },
        || noise::level(cur),
    );
    let consistent = flow::consistency(&back, &forward);
    let camera = CameraMotion::fit(&back, &consistent, cur, sigma);
    // Pixels whose source did not change beyond the noise show no motion of their own (plain
    // regions, or none at all): they move with the camera, and where the camera holds still
    // they are still and keep their dream where it is. Either way what is carried there is
    // consistent with the frames. Stillness is decided by a majority of the pixel's window, so
    // that codec noise flipping single pixels does not pepper a still region with pixels that
    // dream on.
    let unchanged = noise::still(prev, cur, sigma);
    let (w, h) = (cur.w, cur.h);
    let camera_holds = |i: usize| {
        let (u, v) = camera.at(i % w, i / w);
        u * u + v * v <= STILL_MOTION * STILL_MOTION
    };
    let candidates = unchanged.par_iter().enumerate().map(|(i, &s)| if s > 0.0 && camera_holds(i) { 1.0 } else { 0.0 });
    let majority = Plane { w, h, data: candidates.collect() }.box_mean(STILL_FEATHER).data;
    let still: Vec<f32> = (back.u.par_iter_mut().zip(back.v.par_iter_mut()), unchanged.par_iter(), majority.par_iter())
        .into_par_iter()
        .enumerate()
        .map(|(i, ((u, v), &unchanged, &majority))| {
            if majority >= 0.5 && camera_holds(i) {
                (*u, *v) = (0.0, 0.0);
                1.0
            } else {
                if unchanged > 0.0 {
                    (*u, *v) = camera.at(i % w, i / w);
                }
                0.0
            }
        })
        .collect();
    let reliable =
        consistent.into_iter().zip(unchanged.iter().zip(&still)).map(|(r, (&u, &s))| r.max(u).max(s)).collect();
    let still = Plane { w, h, data: still }.box_mean(STILL_FEATHER).data;
    Motion { back: Some(back), reliable, still, cut }
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
    /// Per-pixel weight in `[0, 1]` of every dream step (row-major `H x W`; 0 holds a pixel);
    /// `None`: 1.
    pub step_weight: Option<Vec<f32>>,
}

/// Gradient steps per octave of a frame. A frame that starts a shot (also every frame of
/// `none` coherence) takes `iterations`, the preset's full strength. One that continues a shot
/// takes `per_frame` (0: `iterations`) plus the share of its pixels that are new content
/// (`new_share`) of the difference, so that a frame full of new content is dreamed as a first
/// frame. (Stepping harder on new pixels alone, to give them the first frame's strength at
/// once, made fast-moving new content flicker: a hand coming into view added 2.3 times the
/// flicker at twice the step, 3.1 times at four times.)
pub fn frame_steps(iterations: usize, per_frame: usize, continues: bool, new_share: f32) -> usize {
    if !continues || per_frame == 0 || per_frame >= iterations {
        return iterations;
    }
    per_frame + ((iterations - per_frame) as f32 * new_share.clamp(0.0, 1.0)).round() as usize
}

/// What a frame's dream starts from: the current source frame, plus what is carried over
/// from the previous frame (`prev_source`, `prev_dreamed`) according to `mode`. With
/// `hold_still` (flow mode, while the frame's dream settings are the previous frame's: a
/// keyframed change must reach still content too), still pixels ([`Motion::still`]) keep the
/// previous frame's dream as it is: nothing of it fades, and no step touches it.
pub fn start(
    current: &RgbImage,
    previous: Option<(&RgbImage, &RgbImage)>,
    motion: Option<&Motion>,
    mode: Coherence,
    carryover: Carryover,
    hold_still: bool,
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
    match (mode, motion.filter(|m| m.back.is_some())) {
        (Coherence::Flow, Some(m)) => {
            let back = m.back.as_ref().expect("filtered on a flow");
            let residual: Vec<f32> = dreamed.par_iter().zip(chw(prev_src)).map(|(d, s)| d - s).collect();
            let carried = flow::warp(&residual, 3, back);
            let n = m.reliable.len();
            let hold = |i: usize| if hold_still { m.still[i] } else { 0.0 };
            let image = cur
                .par_iter()
                .zip(carried)
                .enumerate()
                .map(|(i, (c, r))| {
                    let i = i % n;
                    let kept = carry + (1.0 - carry) * hold(i);
                    (c + kept * m.reliable[i] * r).clamp(0.0, 1.0)
                })
                .collect();
            let step_weight = (0..n)
                .into_par_iter()
                .map(|i| match m.reliable[i] > 0.0 {
                    true => (1.0 - temporal_weight) * (1.0 - hold(i)),
                    false => 1.0,
                })
                .collect();
            Start { image, step_weight: Some(step_weight) }
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
        let b = start(&cur, Some((&src, &dream)), None, Coherence::Blend, carry(0.5), true).image;
        assert!((b[0] - 150.0 / 255.0).abs() < 1e-6);
        let n = start(&cur, Some((&src, &dream)), None, Coherence::None, carry(0.5), true).image;
        assert!((n[0] - 100.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn scene_cuts_reset_and_flow_carries_the_residual() {
        let (a, b) = (Plane::luma(&solid(10)), Plane::luma(&solid(240)));
        assert!(motion(&a, &b, Coherence::Flow, crate::video::shots::DEFAULT_SCENE_CUT as f32).cut);
        let m = motion(&a, &a, Coherence::Flow, crate::video::shots::DEFAULT_SCENE_CUT as f32);
        assert!(!m.cut);
        let cut = Motion { back: None, reliable: vec![], still: vec![], cut: true };
        let x =
            start(&solid(100), Some((&solid(100), &solid(200))), Some(&cut), Coherence::Blend, carry(0.5), true).image;
        assert!((x[0] - 100.0 / 255.0).abs() < 1e-6);
        let carried = start(&solid(50), Some((&solid(100), &solid(120))), Some(&m), Coherence::Flow, carry(0.5), false);
        assert!((carried.image[0] - 60.0 / 255.0).abs() < 1e-5, "{}", carried.image[0] * 255.0);
        assert_eq!(carried.step_weight.as_deref().map(|w| w[0]), Some(1.0), "temporal weight 0: dreamed afresh");
        // Unchanged frames are still: their dream is kept whole, and not stepped on.
        assert!(m.still.iter().all(|&s| s == 1.0) && m.reliable.iter().all(|&r| r == 1.0));
        let held = start(&solid(50), Some((&solid(100), &solid(120))), Some(&m), Coherence::Flow, carry(0.5), true);
        assert!((held.image[0] - 70.0 / 255.0).abs() < 1e-5, "{}", held.image[0] * 255.0);
        assert!(held.step_weight.unwrap().iter().all(|&w| w == 0.0));
    }

    #[test]
    fn continuing_frames_take_fewer_steps_and_more_with_new_content() {
        assert_eq!(frame_steps(8, 2, false, 0.0), 8, "a shot's first frame: full strength");
        assert_eq!(frame_steps(8, 0, true, 0.0), 8, "no per-frame steps set: every frame full");
        assert_eq!(frame_steps(8, 2, true, 0.0), 2);
        assert_eq!(frame_steps(8, 2, true, 0.5), 5);
        assert_eq!(frame_steps(8, 2, true, 1.0), 8, "all new: dreamed as a first frame");
    }
}
