//! The camera's motion between two frames: an affine motion field fitted to the optical flow of
//! the textured pixels, robustly, so that moving objects do not pull it along. Plain regions
//! (a sky, a road, a wall) show no motion of their own; they move with the camera.

use super::flow::{Flow, Plane};

/// Pixels between the samples the fit reads, each way.
const SAMPLE_STEP: usize = 4;

/// Reweighting rounds of the robust fit (each down-weights samples far from the last fit).
const ROUNDS: usize = 4;

/// Residual, in pixels, at which a sample's weight is halved in the robust fit (Cauchy).
const RESIDUAL_SCALE: f32 = 1.0;

/// The camera counts as still when no motion explains the texture at least this share as well
/// as the fit does (by the weight of the samples each comes within [`SUPPORT_DISTANCE`] of).
const STILL_SUPPORT: f32 = 0.5;

/// Distance in pixels within which a motion model explains a sample's flow.
const SUPPORT_DISTANCE: f32 = 0.5;

/// An affine motion field: `(u, v)` at `(x, y)` is `a + b x' + c y'` per component, with `x'`,
/// `y'` the pixel's coordinates scaled to `[-1, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraMotion {
    u: [f64; 3],
    v: [f64; 3],
    size: (usize, usize),
}

impl CameraMotion {
    /// No motion, for a `w x h` frame.
    pub fn still(w: usize, h: usize) -> Self {
        Self { u: [0.0; 3], v: [0.0; 3], size: (w, h) }
    }

    /// The camera's motion in `flow` (computed on the luma plane `luma`, whose noise has
    /// standard deviation `sigma`): a weighted least-squares affine fit to the flow of the
    /// pixels in `reliable` (1 where the flow is trusted), weighted by texture (the squared
    /// luma gradient against the noise's) and, over a few rounds, by how well each pixel fits
    /// (Cauchy weights), so that objects moving across a still or panning scene do not pull the
    /// fit along. No motion when no textured pixel is reliable, or when no motion explains the
    /// texture at least [`STILL_SUPPORT`] as well as the fit.
    pub fn fit(flow: &Flow, reliable: &[f32], luma: &Plane, sigma: f32) -> Self {
        let (w, h) = (flow.w, flow.h);
        let mut fit = Self::still(w, h);
        if w < 3 || h < 3 {
            return fit;
        }
        let noise = (2.0 * sigma) * (2.0 * sigma);
        let samples: Vec<(usize, usize, f32)> = (1..h - 1)
            .step_by(SAMPLE_STEP)
            .flat_map(|y| (1..w - 1).step_by(SAMPLE_STEP).map(move |x| (x, y)))
            .filter_map(|(x, y)| {
                let at = |x: usize, y: usize| luma.data[y * w + x];
                let (gx, gy) = (0.5 * (at(x + 1, y) - at(x - 1, y)), 0.5 * (at(x, y + 1) - at(x, y - 1)));
                let g = gx * gx + gy * gy;
                let weight = reliable[y * w + x] * g / (g + noise);
                (weight > 0.05).then_some((x, y, weight))
            })
            .collect();
        if samples.is_empty() {
            return fit;
        }
        let support = |model: &Self| -> f32 {
            let near = |&&(x, y, _): &&(usize, usize, f32)| {
                let (u, v) = model.at(x, y);
                (flow.u[y * w + x] - u).hypot(flow.v[y * w + x] - v) <= SUPPORT_DISTANCE
            };
            samples.iter().filter(near).map(|s| s.2).sum()
        };
        let still_support = support(&fit);
        for round in 0..ROUNDS {
            // Normal equations of both components (one matrix), in f64.
            let (mut m, mut bu, mut bv) = ([[0f64; 3]; 3], [0f64; 3], [0f64; 3]);
            for &(x, y, weight) in &samples {
                let i = y * w + x;
                let (u, v) = (flow.u[i], flow.v[i]);
                let mut weight = f64::from(weight);
                if round > 0 {
                    let (fu, fv) = fit.at(x, y);
                    let r2 = (u - fu).powi(2) + (v - fv).powi(2);
                    weight /= 1.0 + f64::from(r2 / (RESIDUAL_SCALE * RESIDUAL_SCALE));
                }
                let p = fit.basis(x, y);
                for r in 0..3 {
                    for c in 0..3 {
                        m[r][c] += weight * p[r] * p[c];
                    }
                    bu[r] += weight * p[r] * f64::from(u);
                    bv[r] += weight * p[r] * f64::from(v);
                }
            }
            match (solve3(m, bu), solve3(m, bv)) {
                (Some(u), Some(v)) => (fit.u, fit.v) = (u, v),
                _ => return Self::still(w, h),
            }
        }
        // A still camera is the likelier story unless the fit explains much more of the
        // texture: a close-up subject can fill more of it than the background it moves
        // across, and would otherwise pass for the camera.
        match still_support >= STILL_SUPPORT * support(&fit) {
            true => Self::still(w, h),
            false => fit,
        }
    }

    fn basis(&self, x: usize, y: usize) -> [f64; 3] {
        let (w, h) = self.size;
        let scale = |i: usize, n: usize| if n > 1 { 2.0 * i as f64 / (n - 1) as f64 - 1.0 } else { 0.0 };
        [1.0, scale(x, w), scale(y, h)]
    }

    /// The motion `(u, v)` at pixel `(x, y)`.
    pub fn at(&self, x: usize, y: usize) -> (f32, f32) {
        let p = self.basis(x, y);
        let dot = |a: &[f64; 3]| (a[0] * p[0] + a[1] * p[1] + a[2] * p[2]) as f32;
        (dot(&self.u), dot(&self.v))
    }
}

/// `m x = b` for a symmetric 3x3 `m` (Cramer's rule); `None` when `m` is singular.
fn solve3(m: [[f64; 3]; 3], b: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&m);
    if d.abs() < 1e-12 {
        return None;
    }
    Some(std::array::from_fn(|k| {
        let mut mk = m;
        for r in 0..3 {
            mk[r][k] = b[r];
        }
        det(&mk) / d
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn textured(w: usize, h: usize) -> Plane {
        let data =
            (0..w * h).map(|i| 0.5 + 0.3 * ((i % w) as f32 * 0.7).sin() * ((i / w) as f32 * 0.5).cos()).collect();
        Plane { w, h, data }
    }

    #[test]
    fn fits_a_zoom_and_ignores_a_moving_object() {
        let (w, h) = (80, 60);
        let (cx, cy) = ((w - 1) as f32 / 2.0, (h - 1) as f32 / 2.0);
        // A 2% zoom about the centre plus a pan, and a square moving 6 pixels right.
        let mut flow = Flow {
            w,
            h,
            u: (0..w * h).map(|i| 0.02 * ((i % w) as f32 - cx) + 1.0).collect(),
            v: (0..w * h).map(|i| 0.02 * ((i / w) as f32 - cy) - 0.5).collect(),
        };
        for y in 10..30 {
            for x in 10..30 {
                (flow.u[y * w + x], flow.v[y * w + x]) = (6.0, 0.0);
            }
        }
        let fit = CameraMotion::fit(&flow, &vec![1.0; w * h], &textured(w, h), 1.0 / 255.0);
        for (x, y) in [(0, 0), (79, 59), (20, 20), (60, 10)] {
            let (u, v) = fit.at(x, y);
            let (eu, ev) = (0.02 * (x as f32 - cx) + 1.0, 0.02 * (y as f32 - cy) - 0.5);
            assert!((u - eu).abs() < 0.1 && (v - ev).abs() < 0.1, "at ({x}, {y}): ({u}, {v}), not ({eu}, {ev})");
        }
    }

    #[test]
    fn a_subject_filling_most_of_the_frame_does_not_move_the_camera() {
        let (w, h) = (60, 40);
        // Three fifths of the frame move (a close-up subject), the rest holds still.
        let u: Vec<f32> = (0..w * h).map(|i| if i % w < 36 { 2.0 } else { 0.0 }).collect();
        let flow = Flow { w, h, u, v: vec![0.0; w * h] };
        let fit = CameraMotion::fit(&flow, &vec![1.0; w * h], &textured(w, h), 1.0 / 255.0);
        assert_eq!(fit.at(50, 20), (0.0, 0.0));
    }

    #[test]
    fn plain_or_unreliable_frames_give_no_motion() {
        let (w, h) = (40, 30);
        let flow = Flow { w, h, u: vec![3.0; w * h], v: vec![1.0; w * h] };
        let plain = Plane { w, h, data: vec![0.5; w * h] };
        assert_eq!(CameraMotion::fit(&flow, &vec![1.0; w * h], &plain, 1.0 / 255.0).at(5, 5), (0.0, 0.0));
        assert_eq!(CameraMotion::fit(&flow, &vec![0.0; w * h], &textured(w, h), 1.0 / 255.0).at(5, 5), (0.0, 0.0));
    }
}
