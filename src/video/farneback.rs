//! Gunnar Farnebäck's dense optical flow ("Two-frame motion estimation based on polynomial
//! expansion", SCIA 2003) as OpenCV's `calcOpticalFlowFarneback` computes it, with the
//! parameters `scripts/coherence_bench.py` gives it: pyramid scale 0.5, 5 levels, 15x15 box
//! window, 3 iterations, polynomial neighbourhood 5 with sigma 1.2.
//!
//! It is here for `dreamvid stability`, as a flow independent of [`super::flow`], the one
//! renders carry their dream along: measured with that flow, a render would be graded by the
//! very motion it was made to follow.
//!
//! The neighbourhood of every pixel is fitted with a quadratic polynomial `x^T A x + b^T x + c`
//! (weighted least squares, as separable Gaussian-weighted correlations). Moved by `d`, an
//! image's `b` becomes `b - 2 A d`, so each iteration solves `A d = (b1 - b2) / 2` in the least
//! squares sense over a box window around each pixel, with the second image's coefficients
//! taken at `p + d` of the current flow. It runs coarse to fine over a pyramid whose levels are
//! the full-size image blurred and resized (not halved step by step), as OpenCV's are. The
//! arithmetic follows OpenCV's (single precision where it has it, double where it has it), so
//! that the two flows agree to a small fraction of a pixel.

use rayon::prelude::*;

use super::flow::{Flow, Plane};

/// Each pyramid level is this much smaller than the one below it.
const PYR_SCALE: f64 = 0.5;
/// Levels above the full-size one, at most.
const LEVELS: usize = 5;
/// No level is smaller than this on either side.
const MIN_SIZE: f64 = 32.0;
/// Side of the box window over which the displacement equations are summed.
const WINSIZE: usize = 15;
/// Solves per level.
const ITERATIONS: usize = 3;
/// Radius of the neighbourhood fitted with a polynomial (OpenCV's `poly_n`).
const POLY_N: usize = 5;
/// Standard deviation of the Gaussian that weights that neighbourhood.
const POLY_SIGMA: f64 = 1.2;

/// Polynomial coefficients of a pixel's neighbourhood in OpenCV's order, rows first:
/// `[b_y, b_x, a_yy, a_xx, a_xy]` (the constant term is not kept).
type Coefficients = [f32; 5];

/// Dense flow from `a` to `b` (luma planes of one size, values in `[0, 1]` as
/// [`Plane::luma`] makes them): pixel `p` of `a` is seen at `p + (u, v)` in `b`, the
/// convention of [`super::flow::estimate`].
pub fn estimate(a: &Plane, b: &Plane) -> Flow {
    assert_eq!((a.w, a.h), (b.w, b.h), "two images of one size");
    let (w, h) = (a.w, a.h);
    let zero = |w: usize, h: usize| Flow { w, h, u: vec![0.0; w * h], v: vec![0.0; w * h] };
    if w == 0 || h == 0 {
        return zero(w, h);
    }
    // OpenCV's constants (the regularisation in `solve`, above all) are for 8-bit grey levels.
    let grey = |p: &Plane| p.data.iter().map(|v| v * 255.0).collect::<Vec<f32>>();
    let images = [grey(a), grey(b)];
    let mut levels = 0;
    let mut scale = 1.0;
    while levels < LEVELS {
        scale *= PYR_SCALE;
        if w as f64 * scale < MIN_SIZE || h as f64 * scale < MIN_SIZE {
            break;
        }
        levels += 1;
    }
    let poly = Polynomial::new();
    let mut flow: Option<Flow> = None;
    for k in (0..=levels).rev() {
        let scale = (0..k).fold(1.0, |s, _| s * PYR_SCALE);
        let size = ((w as f64 * scale).round_ties_even() as usize, (h as f64 * scale).round_ties_even() as usize);
        let mut f = match flow {
            Some(coarser) => upscale(&coarser, size),
            None => zero(size.0, size.1),
        };
        let expand = |img: &[f32]| poly.expand(&level(img, (w, h), scale, size), size);
        let (r0, r1) = rayon::join(|| expand(&images[0]), || expand(&images[1]));
        let mut m = matrices(&r0, &r1, &f);
        for i in 0..ITERATIONS {
            solve(&m, &mut f);
            if i + 1 < ITERATIONS {
                m = matrices(&r0, &r1, &f);
            }
        }
        flow = Some(f);
    }
    flow.expect("at least the full-size level")
}

/// The pyramid level at `scale` of an image of `size`: blurred with a Gaussian of standard
/// deviation `(1 / scale - 1) / 2` (the full size level with OpenCV's 3-tap `[1, 2, 1] / 4`),
/// then resized to `to` bilinearly.
fn level(img: &[f32], size: (usize, usize), scale: f64, to: (usize, usize)) -> Vec<f32> {
    let sigma = (1.0 / scale - 1.0) * 0.5;
    let taps = ((sigma * 5.0).round_ties_even() as usize | 1).max(3);
    let blurred = gaussian_blur(img, size, &gaussian_kernel(taps, sigma));
    if to == size {
        blurred
    } else {
        resize(&blurred, size, to)
    }
}

/// OpenCV's `getGaussianKernel(taps, sigma)`: for `sigma` 0 (only ever with 3 taps here) its
/// fixed `[1, 2, 1] / 4`.
fn gaussian_kernel(taps: usize, sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 {
        return vec![0.25, 0.5, 0.25];
    }
    let centre = (taps - 1) as f64 * 0.5;
    let weights: Vec<f64> = (0..taps).map(|i| (-(i as f64 - centre).powi(2) / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f64 = weights.iter().sum();
    weights.iter().map(|&v| (v / sum) as f32).collect()
}

/// Index `i` of a line of `n` values reflected at its ends without repeating them (OpenCV's
/// `BORDER_REFLECT_101`: `-1` is `1`, `n` is `n - 2`).
fn reflect(mut i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    loop {
        if i < 0 {
            i = -i;
        } else if i >= n {
            i = 2 * n - 2 - i;
        } else {
            return i as usize;
        }
    }
}

/// The `w x h` plane `img` convolved with the symmetric, odd-sized `kernel` along rows, then
/// along columns, edges reflected ([`reflect`]).
fn gaussian_blur(img: &[f32], (w, h): (usize, usize), kernel: &[f32]) -> Vec<f32> {
    let r = kernel.len() / 2;
    let (centre, sides) = (kernel[r], &kernel[r + 1..]);
    let mut rows = vec![0f32; w * h];
    rows.par_chunks_mut(w).enumerate().for_each(|(y, out)| {
        let line = &img[y * w..][..w];
        let padded: Vec<f32> = (-(r as isize)..(w + r) as isize).map(|x| line[reflect(x, w)]).collect();
        for (x, o) in out.iter_mut().enumerate() {
            let c = x + r;
            *o = sides
                .iter()
                .enumerate()
                .fold(centre * padded[c], |s, (k, &g)| s + g * (padded[c - k - 1] + padded[c + k + 1]));
        }
    });
    let mut out = vec![0f32; w * h];
    out.par_chunks_mut(w).enumerate().for_each(|(y, out)| {
        let row = |d: isize| &rows[reflect(y as isize + d, h) * w..][..w];
        let mid = row(0);
        for (x, o) in out.iter_mut().enumerate() {
            *o = centre * mid[x];
        }
        for (k, &g) in sides.iter().enumerate() {
            let d = k as isize + 1;
            let (above, below) = (row(-d), row(d));
            for (x, o) in out.iter_mut().enumerate() {
                *o += g * (above[x] + below[x]);
            }
        }
    });
    out
}

/// Where each of `dst` output pixels along a line samples a line of `src` pixels, as OpenCV's
/// bilinear `resize` computes it: the two pixels and the weight of the second.
fn resize_taps(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = f.floor();
            let (i, frac) = if s < 0.0 {
                (0, 0.0)
            } else if s >= (src - 1) as f32 {
                (src - 1, 0.0)
            } else {
                (s as usize, f - s)
            };
            (i, (i + 1).min(src - 1), frac)
        })
        .collect()
}

/// The plane `src` of size `from` resized to `to` bilinearly (pixel centres aligned, edges
/// clamped), as OpenCV's `resize` with `INTER_LINEAR`.
fn resize(src: &[f32], from: (usize, usize), to: (usize, usize)) -> Vec<f32> {
    let (xs, ys) = (resize_taps(from.0, to.0), resize_taps(from.1, to.1));
    let mut out = vec![0f32; to.0 * to.1];
    out.par_chunks_mut(to.0).zip(&ys).for_each(|(out, &(y0, y1, fy))| {
        let (top, bottom) = (&src[y0 * from.0..][..from.0], &src[y1 * from.0..][..from.0]);
        for (o, &(x0, x1, fx)) in out.iter_mut().zip(&xs) {
            let t = top[x0] * (1.0 - fx) + top[x1] * fx;
            let b = bottom[x0] * (1.0 - fx) + bottom[x1] * fx;
            *o = t * (1.0 - fy) + b * fy;
        }
    });
    out
}

/// The coarser level's flow resized to `size` (bilinearly) and scaled to its pixels.
fn upscale(flow: &Flow, size: (usize, usize)) -> Flow {
    let scale = (1.0 / PYR_SCALE) as f32;
    let resized = |d: &[f32]| resize(d, (flow.w, flow.h), size).into_iter().map(|v| v * scale).collect();
    Flow { w: size.0, h: size.1, u: resized(&flow.u), v: resized(&flow.v) }
}

/// The separable Gaussian correlations that fit a quadratic polynomial to each pixel's
/// neighbourhood, and the entries of the inverse normal matrix that turn them into
/// coefficients (OpenCV's `FarnebackPrepareGaussian`).
struct Polynomial {
    /// Gaussian weights `g(k)` for `k` in `0..=POLY_N` (the kernel is symmetric).
    g: [f32; POLY_N + 1],
    /// `k g(k)`.
    xg: [f32; POLY_N + 1],
    /// `k^2 g(k)`.
    xxg: [f32; POLY_N + 1],
    /// Inverse normal matrix entries: of the linear terms, of constant and square term, of a
    /// square term with itself, of the cross term.
    ig11: f64,
    ig03: f64,
    ig33: f64,
    ig55: f64,
}

impl Polynomial {
    fn new() -> Self {
        let n = POLY_N as i32;
        let sigma = POLY_SIGMA;
        let mut full = [0f32; 2 * POLY_N + 1];
        let mut sum = 0f64;
        for x in -n..=n {
            let g = (-(x * x) as f64 / (2.0 * sigma * sigma)).exp() as f32;
            full[(x + n) as usize] = g;
            sum += g as f64;
        }
        for g in &mut full {
            *g = (*g as f64 / sum) as f32;
        }
        // The normal matrix of the fit over the basis (1, x, y, x^2, y^2, xy), with products
        // in single precision and sums in double, as OpenCV forms them.
        let (mut g00, mut g11, mut g33, mut g55) = (0f64, 0f64, 0f64, 0f64);
        for y in -n..=n {
            for x in -n..=n {
                let gg = full[(y + n) as usize] * full[(x + n) as usize];
                let (xf, yf) = (x as f32, y as f32);
                g00 += gg as f64;
                g11 += (gg * xf * xf) as f64;
                g33 += (gg * xf * xf * xf * xf) as f64;
                g55 += (gg * xf * xf * yf * yf) as f64;
            }
        }
        // The linear and cross terms are orthogonal to everything else; the constant and the
        // two squares form the block [[g00, g11, g11], [g11, g33, g55], [g11, g55, g33]],
        // whose inverse has (0, 1) entry -g11 / q and (1, 1) entry
        // (g00 g33 - g11^2) / ((g33 - g55) q), with q = g00 (g33 + g55) - 2 g11^2.
        let q = g00 * (g33 + g55) - 2.0 * g11 * g11;
        let g = std::array::from_fn(|k| full[POLY_N + k]);
        Self {
            g,
            xg: std::array::from_fn(|k| k as f32 * g[k]),
            xxg: std::array::from_fn(|k| (k * k) as f32 * g[k]),
            ig11: 1.0 / g11,
            ig03: -g11 / q,
            ig33: (g00 * g33 - g11 * g11) / ((g33 - g55) * q),
            ig55: 1.0 / g55,
        }
    }

    /// The coefficients of every pixel of the `w x h` plane `img` (edges replicated):
    /// OpenCV's `FarnebackPolyExp`, columns in single precision, then rows in double.
    fn expand(&self, img: &[f32], (w, h): (usize, usize)) -> Vec<Coefficients> {
        let n = POLY_N;
        let (g, xg, xxg) = (&self.g, &self.xg, &self.xxg);
        let mut out = vec![[0f32; 5]; w * h];
        out.par_chunks_mut(w).enumerate().for_each(|(y, out)| {
            // Per column, with POLY_N replicated columns on each side: the sums down the
            // column of g, k g (k the row offset) and k^2 g times the pixels.
            let mut col = vec![[0f32; 3]; w + 2 * n];
            let centre = &img[y * w..][..w];
            for (c, &p) in col[n..n + w].iter_mut().zip(centre) {
                *c = [p * g[0], 0.0, 0.0];
            }
            for k in 1..=n {
                let above = &img[y.saturating_sub(k) * w..][..w];
                let below = &img[(y + k).min(h - 1) * w..][..w];
                for (c, (&a, &b)) in col[n..n + w].iter_mut().zip(above.iter().zip(below)) {
                    let p = a + b;
                    *c = [c[0] + g[k] * p, c[1] + xg[k] * (b - a), c[2] + xxg[k] * p];
                }
            }
            let (first, last) = (col[n], col[n + w - 1]);
            col[..n].fill(first);
            col[n + w..].fill(last);
            for (x, o) in out.iter_mut().enumerate() {
                let c = x + n;
                let (mut b1, mut b2) = ((col[c][0] * g[0]) as f64, 0f64);
                let (mut b3, mut b4) = ((col[c][1] * g[0]) as f64, 0f64);
                let (mut b5, mut b6) = ((col[c][2] * g[0]) as f64, 0f64);
                for k in 1..=n {
                    let (l, r) = (col[c - k], col[c + k]);
                    let tg = (r[0] + l[0]) as f64;
                    b1 += tg * g[k] as f64;
                    b4 += tg * xxg[k] as f64;
                    b2 += ((r[0] - l[0]) * xg[k]) as f64;
                    b3 += ((r[1] + l[1]) * g[k]) as f64;
                    b6 += ((r[1] - l[1]) * xg[k]) as f64;
                    b5 += ((r[2] + l[2]) * g[k]) as f64;
                }
                *o = [
                    (b3 * self.ig11) as f32,
                    (b2 * self.ig11) as f32,
                    (b1 * self.ig03 + b5 * self.ig33) as f32,
                    (b1 * self.ig03 + b4 * self.ig33) as f32,
                    (b6 * self.ig55) as f32,
                ];
            }
        });
        out
    }
}

/// Weights of the equations of the 5 pixels nearest an edge (OpenCV's): the fit there sees
/// replicated pixels.
const EDGE_WEIGHTS: [f32; 5] = [0.14, 0.14, 0.4472, 0.4472, 0.4472];

/// The weight of the equations of pixel `i` of a line of `n` from [`EDGE_WEIGHTS`], from
/// either end. (OpenCV's test for the edge band goes wrong on lines under 10 pixels; this one
/// does not.)
fn edge_weight(i: usize, n: usize) -> f32 {
    (if i < EDGE_WEIGHTS.len() { EDGE_WEIGHTS[i] } else { 1.0 })
        * (if i + EDGE_WEIGHTS.len() >= n { EDGE_WEIGHTS[n - 1 - i] } else { 1.0 })
}

/// Each pixel's normal equations for the displacement: `[G_yy, G_xy, G_xx, h_y, h_x]` of
/// `A^T A` and `A^T Δb`, with `A` the mean of the two images' quadratic terms (the second's
/// taken bilinearly at `p + flow(p)`) and `Δb` the difference of their linear terms, corrected
/// for the flow already found (OpenCV's `FarnebackUpdateMatrices`).
fn matrices(r0: &[Coefficients], r1: &[Coefficients], flow: &Flow) -> Vec<[f32; 5]> {
    let (w, h) = (flow.w, flow.h);
    let mut out = vec![[0f32; 5]; w * h];
    out.par_chunks_mut(w).enumerate().for_each(|(y, out)| {
        for (x, o) in out.iter_mut().enumerate() {
            let i = y * w + x;
            let (dx, dy) = (flow.u[i], flow.v[i]);
            let (fx, fy) = (x as f32 + dx, y as f32 + dy);
            let (x1, y1) = (fx.floor(), fy.floor());
            let p = &r0[i];
            // Comparisons false for NaN: such a pixel counts as outside.
            let inside = x1 >= 0.0 && x1 < (w - 1) as f32 && y1 >= 0.0 && y1 < (h - 1) as f32;
            let (mut r2, mut r3, r4, r5, r6) = if inside {
                let (fx, fy) = (fx - x1, fy - y1);
                let (a00, a01, a10, a11) = ((1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy);
                let at = y1 as usize * w + x1 as usize;
                let (q00, q01, q10, q11) = (&r1[at], &r1[at + 1], &r1[at + w], &r1[at + w + 1]);
                let c = |j: usize| a00 * q00[j] + a01 * q01[j] + a10 * q10[j] + a11 * q11[j];
                (c(0), c(1), (p[2] + c(2)) * 0.5, (p[3] + c(3)) * 0.5, (p[4] + c(4)) * 0.25)
            } else {
                (0.0, 0.0, p[2], p[3], p[4] * 0.5)
            };
            r2 = (p[0] - r2) * 0.5;
            r3 = (p[1] - r3) * 0.5;
            r2 += r4 * dy + r6 * dx;
            r3 += r6 * dy + r5 * dx;
            let scale = edge_weight(x, w) * edge_weight(y, h);
            let [r2, r3, r4, r5, r6] = [r2, r3, r4, r5, r6].map(|r| r * scale);
            *o = [r4 * r4 + r6 * r6, (r4 + r5) * r6, r5 * r5 + r6 * r6, r4 * r2 + r6 * r3, r6 * r2 + r5 * r3];
        }
    });
    out
}

/// The flow that solves each pixel's normal equations summed over a [`WINSIZE`] box around it
/// (edges replicated, sums in double), regularised as OpenCV does (`FarnebackUpdateFlow_Blur`).
fn solve(m: &[[f32; 5]], flow: &mut Flow) {
    let (w, h) = (flow.w, flow.h);
    let r = WINSIZE / 2;
    let scale = 1.0 / (WINSIZE * WINSIZE) as f64;
    let rows = flow.u.par_chunks_mut(w).zip(flow.v.par_chunks_mut(w)).enumerate();
    rows.for_each(|(y, (u, v))| {
        // Column sums over the window's rows, with r replicated columns on each side.
        let mut columns = vec![[0f64; 5]; w + 2 * r];
        for dy in -(r as isize)..=r as isize {
            let row = (y as isize + dy).clamp(0, h as isize - 1) as usize;
            for (s, e) in columns[r..r + w].iter_mut().zip(&m[row * w..][..w]) {
                for (s, &e) in s.iter_mut().zip(e) {
                    *s += e as f64;
                }
            }
        }
        let (first, last) = (columns[r], columns[r + w - 1]);
        columns[..r].fill(first);
        columns[r + w..].fill(last);
        let mut sum = [0f64; 5];
        for c in &columns[..2 * r] {
            (0..5).for_each(|j| sum[j] += c[j]);
        }
        for (x, (u, v)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
            (0..5).for_each(|j| sum[j] += columns[x + 2 * r][j]);
            let [g11, g12, g22, h1, h2] = sum.map(|s| s * scale);
            let idet = 1.0 / (g11 * g22 - g12 * g12 + 1e-3);
            *u = ((g11 * h2 - g12 * h1) * idet) as f32;
            *v = ((g22 * h1 - g12 * h2) * idet) as f32;
            (0..5).for_each(|j| sum[j] -= columns[x][j]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::flow::tests::pattern;

    #[test]
    fn the_expansion_of_a_quadratic_is_its_coefficients() {
        let (w, h) = (24, 20);
        let f = |x: f32, y: f32| 40.0 + 1.5 * x - 2.0 * y + 0.25 * x * x - 0.125 * y * y + 0.5 * x * y;
        let img: Vec<f32> = (0..w * h).map(|i| f((i % w) as f32, (i / w) as f32)).collect();
        let r = Polynomial::new().expand(&img, (w, h));
        // Around (x0, y0), the same polynomial in (x - x0, y - y0).
        let (x0, y0) = (11.0, 9.0);
        let want = [-2.0 - 0.25 * y0 + 0.5 * x0, 1.5 + 0.5 * x0 + 0.5 * y0, -0.125, 0.25, 0.5];
        let got = r[9 * w + 11];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "{got:?} against {want:?}");
        }
    }

    #[test]
    fn recovers_a_sub_pixel_translation() {
        let (w, h) = (96, 64);
        let (a, b) = (pattern(w, h, 0.0, 0.0), pattern(w, h, 1.4, -0.6));
        let f = estimate(&a, &b);
        // Interior pixels (edges see content entering the frame).
        let (mut err, mut n) = (0.0, 0);
        for y in 10..h - 10 {
            for x in 10..w - 10 {
                let i = y * w + x;
                err += (f.u[i] - 1.4).abs() + (f.v[i] + 0.6).abs();
                n += 1;
            }
        }
        assert!(err / (n as f32) < 0.02, "mean error {}", err / n as f32);
    }

    #[test]
    fn identical_frames_have_no_flow() {
        for (w, h) in [(80, 72), (320, 240)] {
            let a = pattern(w, h, 0.0, 0.0);
            let f = estimate(&a, &a);
            let magnitude = |i: usize| f.u[i].hypot(f.v[i]);
            // None away from the edges. The last row and column find no match in the other
            // image (as in OpenCV), which moves the flow near the edges a little.
            let inside = |i: &usize| (16..w - 16).contains(&(i % w)) && (16..h - 16).contains(&(i / w));
            let inner = (0..w * h).filter(inside).map(magnitude).fold(0f32, f32::max);
            let all = (0..w * h).map(magnitude).fold(0f32, f32::max);
            assert!(inner < 1e-4 && all < 0.5, "{w}x{h}: largest {inner} inside, {all} at the edges");
        }
    }

    #[test]
    fn resize_and_blur_keep_a_constant_and_tiny_images_work() {
        let img = vec![3.0f32; 7 * 5];
        assert!(resize(&img, (7, 5), (3, 2)).iter().all(|&v| (v - 3.0).abs() < 1e-6));
        assert!(gaussian_blur(&img, (7, 5), &gaussian_kernel(9, 1.5)).iter().all(|&v| (v - 3.0).abs() < 1e-5));
        assert_eq!((0..6).map(|i| reflect(i - 2, 3)).collect::<Vec<_>>(), [2, 1, 0, 1, 2, 1]);
        let one = Plane { w: 1, h: 1, data: vec![0.5] };
        let f = estimate(&one, &one);
        assert_eq!((f.w, f.h, f.u.len()), (1, 1, 1));
    }
}
