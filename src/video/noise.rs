//! How noisy a frame is, and which pixels of a frame pair did not change beyond that noise: the
//! still pixels, where a carried dream holds at zero motion (and where `stability` measures the
//! flicker a dream adds without any optical flow).

use rayon::prelude::*;

use super::flow::Plane;

/// The smallest noise level [`level`] reports: 8-bit quantisation's, about half a level.
pub const MIN_LEVEL: f32 = 0.5 / 255.0;

/// Radius of the window over which [`still`] averages a pixel's squared change (5x5).
pub const STILL_RADIUS: usize = 2;

/// Standard deviation of the noise in `plane` (values in `[0, 1]`), by Immerkær's fast
/// estimate ("Fast Noise Variance Estimation", 1996): the mean absolute response of the
/// Laplacian difference mask `[[1,-2,1],[-2,4,-2],[1,-2,1]]` over the interior pixels, times
/// `sqrt(pi/2) / 6`. The mask cancels planes and linear ramps, so mostly noise remains (edges
/// and fine texture count too: it errs high on busy pictures). At least [`MIN_LEVEL`].
pub fn level(plane: &Plane) -> f32 {
    let (w, h) = (plane.w, plane.h);
    if w < 3 || h < 3 {
        return MIN_LEVEL;
    }
    let d = &plane.data;
    let sum: f64 = (1..h - 1)
        .into_par_iter()
        .map(|y| {
            let (up, row, down) = (&d[(y - 1) * w..][..w], &d[y * w..][..w], &d[(y + 1) * w..][..w]);
            let mut s = 0f32;
            for x in 1..w - 1 {
                let corners = up[x - 1] + up[x + 1] + down[x - 1] + down[x + 1];
                let edges = up[x] + down[x] + row[x - 1] + row[x + 1];
                s += (corners - 2.0 * edges + 4.0 * row[x]).abs();
            }
            s as f64
        })
        .sum();
    let sigma = (std::f64::consts::FRAC_PI_2).sqrt() * sum / (6.0 * ((w - 2) * (h - 2)) as f64);
    (sigma as f32).max(MIN_LEVEL)
}

/// Which pixels of `cur` did not change from `prev` (luma planes of one size) beyond noise of
/// standard deviation `sigma`: 1 where the mean of the squared change over the pixel's 5x5
/// window (clamped at the edges) is at most twice `2 sigma^2`, the expected squared
/// difference of two frames of pure noise; else 0.
pub fn still(prev: &Plane, cur: &Plane, sigma: f32) -> Vec<f32> {
    let squared = Plane {
        w: cur.w,
        h: cur.h,
        data: prev.data.par_iter().zip(&cur.data).map(|(a, b)| (b - a) * (b - a)).collect(),
    };
    let bound = 2.0 * 2.0 * sigma * sigma;
    squared.box_mean(STILL_RADIUS).data.into_par_iter().map(|m| if m <= bound { 1.0 } else { 0.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth gradient plus seeded Gaussian-ish noise of standard deviation `sigma`.
    fn noisy(w: usize, h: usize, sigma: f32, seed: u64) -> Plane {
        let mut rng = crate::dream::Rng::new(seed);
        let data = (0..w * h)
            .map(|i| {
                // The sum of 12 uniforms in [0, 1) minus 6 has unit variance.
                let g: f32 = (0..12).map(|_| rng.next_u64() as f32 / u64::MAX as f32).sum::<f32>() - 6.0;
                0.3 + 0.4 * (i % w) as f32 / w as f32 + sigma * g
            })
            .collect();
        Plane { w, h, data }
    }

    #[test]
    fn level_finds_the_noise_of_a_smooth_picture() {
        for sigma in [2.0 / 255.0, 6.0 / 255.0] {
            let found = level(&noisy(160, 120, sigma, 7));
            assert!((found / sigma - 1.0).abs() < 0.1, "sigma {sigma}: found {found}");
        }
        assert_eq!(level(&noisy(64, 64, 0.0, 1)), MIN_LEVEL, "a clean ramp has only quantisation's noise");
    }

    #[test]
    fn still_keeps_noise_and_rejects_change() {
        let sigma = 3.0 / 255.0;
        let (a, mut b) = (noisy(96, 64, sigma, 1), noisy(96, 64, sigma, 2));
        let s = still(&a, &b, sigma);
        let share = s.iter().sum::<f32>() / s.len() as f32;
        assert!(share > 0.97, "frames differing by noise alone are still: {share}");
        for y in 20..40 {
            for x in 30..50 {
                b.data[y * 96 + x] += 0.05;
            }
        }
        let s = still(&a, &b, sigma);
        assert!((22..38).all(|y| (32..48).all(|x| s[y * 96 + x] == 0.0)), "a changed square is not still");
    }
}
