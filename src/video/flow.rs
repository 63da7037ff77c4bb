//! Dense optical flow (pyramidal, iterative Lucas-Kanade), warping and the forward/backward
//! consistency check that marks occluded or unreliable pixels.

use std::mem::MaybeUninit;

use image::RgbImage;
use rayon::prelude::*;

use crate::nn::cpu::{assume_init, uninit};

/// A single-channel float image.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl Plane {
    /// Luma in `[0, 1]` of an RGB image.
    pub fn luma(img: &RgbImage) -> Self {
        let data =
            img.pixels().map(|p| (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) / 255.0).collect();
        Self { w: img.width() as usize, h: img.height() as usize, data }
    }

    fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.w + x]
    }

    /// Bilinear sample with clamped edges.
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        sample(&self.data, self.w, self.h, x, y)
    }

    /// Half-size copy (2x2 means; a trailing odd row/column is dropped).
    fn half(&self) -> Self {
        let (w, h) = (self.w / 2, self.h / 2);
        let mut data = vec![0f32; w * h];
        data.par_chunks_mut(w.max(1)).enumerate().for_each(|(y, row)| {
            for (x, o) in row.iter_mut().enumerate() {
                let (x, y) = (2 * x, 2 * y);
                *o = 0.25 * (self.at(x, y) + self.at(x + 1, y) + self.at(x, y + 1) + self.at(x + 1, y + 1));
            }
        });
        Self { w, h, data }
    }

    /// Mean over a `(2r+1)^2` window (clamped at the edges), separably: along rows, then along
    /// columns, each the difference of two running sums over the window's line divided by its
    /// length. One pass on one thread (callers run planes in parallel): rows are summed
    /// [`ROWS_AT_ONCE`] at a time (independent chains of additions), and the running sums down
    /// the columns advance a whole row at a time, only the last `2r + 2` of them kept, so that
    /// the pass reads its input once and writes its output once, in place (each row of means
    /// is written after the rows its window reads have been summed).
    pub(crate) fn box_mean(mut self, r: usize) -> Self {
        box_mean_in_place(&mut self.data, (self.w, self.h), r);
        self
    }
}

multiversion! {
    /// [`Plane::box_mean`] of the `w x h` plane `data` (`size`) with radius `r`, in place.
    fn box_mean_in_place(data: &mut [f32], size: (usize, usize), r: usize) {
        let (w, h) = size;
        let window = |i: usize, n: usize| (i.saturating_sub(r), (i + r + 1).min(n));
        // The running sums along a group of rows and the group's row means, interleaved:
        // prefix[x * ROWS_AT_ONCE + k] is the sum of the first x values of the group's row k,
        // row_means[x * ROWS_AT_ONCE + k] the mean of that row's window around x.
        let mut row_means = vec![0f32; ROWS_AT_ONCE * w];
        let mut prefix = vec![0f32; (w + 1) * ROWS_AT_ONCE];
        // Running sums down the columns: sum k (of the first k row means) in ring row k % ring.
        let ring = 2 * r + 2;
        let mut sums = vec![0f32; ring * w];
        let mut summed = 0;
        for y in 0..h {
            let (lo, hi) = window(y, h);
            while summed < hi {
                let k = summed % ROWS_AT_ONCE;
                if k == 0 {
                    let n = ROWS_AT_ONCE.min(h - summed);
                    if n == ROWS_AT_ONCE {
                        // A whole group: the running sums kept in a register, each column of
                        // values added at once.
                        let rows = &data[summed * w..][..ROWS_AT_ONCE * w];
                        let mut running = [0f32; ROWS_AT_ONCE];
                        for (x, at_x) in prefix[ROWS_AT_ONCE..].chunks_exact_mut(ROWS_AT_ONCE).enumerate() {
                            for (k, (s, o)) in running.iter_mut().zip(at_x).enumerate() {
                                *s += rows[k * w + x];
                                *o = *s;
                            }
                        }
                    } else {
                        for x in 0..w {
                            for k in 0..n {
                                prefix[(x + 1) * ROWS_AT_ONCE + k] =
                                    prefix[x * ROWS_AT_ONCE + k] + data[(summed + k) * w + x];
                            }
                        }
                    }
                    let group = |x: usize| -> &[f32; ROWS_AT_ONCE] {
                        prefix[x * ROWS_AT_ONCE..][..ROWS_AT_ONCE].try_into().expect("a group of sums")
                    };
                    for (x, means) in row_means.chunks_exact_mut(ROWS_AT_ONCE).enumerate() {
                        let (lo, hi) = window(x, w);
                        // Arrays of the group's size, so that the group's means are one vector.
                        let (left, right, n) = (group(lo), group(hi), (hi - lo) as f32);
                        let group_means: [f32; ROWS_AT_ONCE] = std::array::from_fn(|k| (right[k] - left[k]) / n);
                        means.copy_from_slice(&group_means);
                    }
                }
                let (from, to) = (summed % ring, (summed + 1) % ring);
                let (above, next) = if from < to {
                    let (a, b) = sums.split_at_mut(to * w);
                    (&a[from * w..], &mut b[..w])
                } else {
                    let (a, b) = sums.split_at_mut(from * w);
                    (&b[..w], &mut a[to * w..to * w + w])
                };
                let row = row_means[k..].iter().step_by(ROWS_AT_ONCE);
                next.iter_mut().zip(above).zip(row).for_each(|((s, &a), &v)| *s = a + v);
                summed += 1;
            }
            let (top, bottom) = (&sums[lo % ring * w..][..w], &sums[hi % ring * w..][..w]);
            let out = &mut data[y * w..][..w];
            let n = (hi - lo) as f32;
            out.iter_mut().zip(bottom.iter().zip(top)).for_each(|(o, (&b, &t))| *o = (b - t) / n);
        }
    }
}

/// Rows whose running sums [`Plane::box_mean`] advances together.
const ROWS_AT_ONCE: usize = 8;

/// Bilinear sample at `(x, y)` of the `w x h` row-major plane `data`, edges clamped.
#[inline(always)]
pub fn sample(data: &[f32], w: usize, h: usize, x: f32, y: f32) -> f32 {
    assert!(
        w > 0 && h > 0 && w.checked_mul(h).is_some_and(|n| data.len() >= n),
        "a {w}x{h} plane of {} values",
        data.len()
    );
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    // Truncation is the floor here (both are clamped to at least 0), without a call to floorf
    // on CPUs the baseline build cannot assume SSE4.1 of; through u32 (coordinates stay far
    // below 2^32) it is one instruction, where a float to usize conversion takes several.
    let (x0, y0) = (x as u32 as usize, y as u32 as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    // SAFETY: x0, x1 < w and y0, y1 < h (x and y are clamped into the non-empty plane, and a
    // NaN truncates to 0), so every index is below w * h <= data.len() (asserted above, without
    // overflow). Unchecked, the loads leave callers' loops free to vectorise.
    let at = |i: usize| unsafe { *data.get_unchecked(i) };
    let top = at(y0 * w + x0) * (1.0 - fx) + at(y0 * w + x1) * fx;
    let bottom = at(y1 * w + x0) * (1.0 - fx) + at(y1 * w + x1) * fx;
    top * (1.0 - fy) + bottom * fy
}

multiversion! {
    /// Row `y` of the `w x h` plane `data` sampled at `(x + u[x], y + v[x])` for every column
    /// `x` (see [`sample`]), into `out` (as long as `u` and `v`: every value written).
    fn warp_row(data: &[f32], size: (usize, usize), y: usize, flow: (&[f32], &[f32]), out: &mut [MaybeUninit<f32>]) {
        let (w, h) = size;
        let (u, v) = flow;
        for (x, (o, (&u, &v))) in out.iter_mut().zip(u.iter().zip(v)).enumerate() {
            o.write(sample(data, w, h, x as f32 + u, y as f32 + v));
        }
    }
}

multiversion! {
    /// Row `y` of a grid whose pixels are `step` pixels of the `size` plane `plane` apart,
    /// sampled bilinearly at the grid's pixel centres and times `scale`: every value of `out`.
    fn upscale_row(plane: &[f32], size: (usize, usize), step: (f32, f32), y: usize, scale: f32, out: &mut [MaybeUninit<f32>]) {
        let ((w, h), (fx, fy)) = (size, step);
        let sy = (y as f32 + 0.5) * fy - 0.5;
        for (x, o) in out.iter_mut().enumerate() {
            o.write(scale * sample(plane, w, h, (x as f32 + 0.5) * fx - 0.5, sy));
        }
    }
}

multiversion! {
    /// Row `y` of [`refine`]'s products of the image gradient `(gx, gy)` (central differences,
    /// averaged over `a` and `warped`, `size` planes, edges clamped) and the temporal
    /// difference `it = warped - a`: `gx gx, gx gy, gy gy, gx it, gy it`, into `out`.
    fn products_row(a: &[f32], warped: &[f32], size: (usize, usize), y: usize, out: [&mut [MaybeUninit<f32>]; 5]) {
        let (w, h) = size;
        let (t, d) = (y.saturating_sub(1), (y + 1).min(h - 1));
        let (a_row, a_up, a_down) = (&a[y * w..][..w], &a[t * w..][..w], &a[d * w..][..w]);
        let (b_row, b_up, b_down) = (&warped[y * w..][..w], &warped[t * w..][..w], &warped[d * w..][..w]);
        // Every slice exactly w long, so that the compiler can drop the loop's bounds checks.
        let [xx, xy, yy, xt, yt] = out.map(|o| &mut o[..w]);
        let rows = ((a_row, a_up, a_down), (b_row, b_up, b_down));
        // A macro, not a closure: a closure holding the five outputs hid from the compiler
        // that they do not overlap, and the loop stayed scalar.
        macro_rules! put {
            ($x:expr, $neighbours:expr) => {{
                let x = $x;
                let p = products_at(rows, x, $neighbours);
                xx[x].write(p[0]);
                xy[x].write(p[1]);
                yy[x].write(p[2]);
                xt[x].write(p[3]);
                yt[x].write(p[4]);
            }};
        }
        // The edge columns, whose neighbours are clamped, and the columns between them.
        if w == 1 {
            put!(0, (0, 0));
            return;
        }
        put!(0, (0, 1));
        for x in 1..w - 1 {
            put!(x, (x - 1, x + 1));
        }
        put!(w - 1, (w - 2, w - 1));
    }
}

/// [`products_row`] at column `x` with its left and right neighbours `(l, r)`, from the rows
/// (the row, the one above, the one below) of `a` and of the warped image.
#[inline(always)]
fn products_at(rows: Rows3, x: usize, (l, r): (usize, usize)) -> [f32; 5] {
    let ((a_row, a_up, a_down), (b_row, b_up, b_down)) = rows;
    let gx = 0.25 * (a_row[r] - a_row[l] + b_row[r] - b_row[l]);
    let gy = 0.25 * (a_down[x] - a_up[x] + b_down[x] - b_up[x]);
    let it = b_row[x] - a_row[x];
    [gx * gx, gx * gy, gy * gy, gx * it, gy * it]
}

/// A row of each of two planes, with the rows above and below it.
type Rows3<'a> = ((&'a [f32], &'a [f32], &'a [f32]), (&'a [f32], &'a [f32], &'a [f32]));

multiversion! {
    /// One Lucas-Kanade update of `(u, v)` from the windowed products `m` (see
    /// [`products_row`]): the 2x2 normal equations solved, the step bounded.
    fn solve_row(u: &mut [f32], v: &mut [f32], m: [&[f32]; 5]) {
        let [xx, xy, yy, xt, yt] = m;
        let reg = 1e-4;
        for (i, (u, v)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
            let (a11, a12, a22) = (xx[i] + reg, xy[i], yy[i] + reg);
            let det = a11 * a22 - a12 * a12;
            let du = -(a22 * xt[i] - a12 * yt[i]) / det;
            let dv = -(a11 * yt[i] - a12 * xt[i]) / det;
            // Bounded steps keep flat or aperture-limited windows from exploding.
            *u += du.clamp(-2.0, 2.0);
            *v += dv.clamp(-2.0, 2.0);
        }
    }
}

/// Per-pixel displacement `(u, v)`: pixel `p` of the first image is seen at `p + (u, v)` in
/// the second.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    /// Horizontal displacement.
    pub u: Vec<f32>,
    /// Vertical displacement.
    pub v: Vec<f32>,
}

impl Flow {
    fn zero(w: usize, h: usize) -> Self {
        Self { w, h, u: vec![0.0; w * h], v: vec![0.0; w * h] }
    }

    /// The flow resampled to `w x h` (twice its size, from one pyramid level to the next), its
    /// displacements scaled with it.
    fn upscale(&self, w: usize, h: usize) -> Self {
        let (fx, fy) = (self.w as f32 / w as f32, self.h as f32 / h as f32);
        let resample = |d: &[f32], scale: f32| -> Vec<f32> {
            let mut out = uninit(w * h);
            out.par_chunks_mut(w.max(1)).enumerate().for_each(|(y, row)| {
                upscale_row(d, (self.w, self.h), (fx, fy), y, scale, row);
            });
            // SAFETY: the buffer is h rows of w values, and upscale_row writes every value of
            // its row.
            unsafe { assume_init(out) }
        };
        Self { w, h, u: resample(&self.u, 1.0 / fx), v: resample(&self.v, 1.0 / fy) }
    }
}

/// Tuning of [`estimate`].
#[derive(Debug, Clone, Copy)]
pub struct FlowParams {
    /// Pyramid levels at most (each halves the size; stops above 16 pixels).
    pub levels: usize,
    /// Lucas-Kanade refinements per level.
    pub iterations: usize,
    /// Window radius in pixels.
    pub radius: usize,
}

impl Default for FlowParams {
    fn default() -> Self {
        Self { levels: 4, iterations: 4, radius: 4 }
    }
}

/// Dense flow from `a` to `b` (same size).
pub fn estimate(a: &Plane, b: &Plane, params: FlowParams) -> Flow {
    let mut pyramid = vec![(a.clone(), b.clone())];
    while pyramid.len() < params.levels {
        let (pa, pb) = pyramid.last().expect("non-empty");
        if pa.w.min(pa.h) < 32 {
            break;
        }
        pyramid.push((pa.half(), pb.half()));
    }
    let mut flow: Option<Flow> = None;
    for (pa, pb) in pyramid.iter().rev() {
        let mut f = match &flow {
            Some(f) => f.upscale(pa.w, pa.h),
            None => Flow::zero(pa.w, pa.h),
        };
        for i in 0..params.iterations {
            refine(pa, pb, &mut f, params.radius, i + 1 == params.iterations);
        }
        flow = Some(f);
    }
    flow.expect("at least one level")
}

/// One Lucas-Kanade step: linearise `b` around the current flow and solve the 2x2 normal
/// equations over a window at every pixel; with `fill` (a level's last step), low-structure
/// windows then take their neighbourhood's motion ([`fill_from_confident_neighbours`]).
fn refine(a: &Plane, b: &Plane, flow: &mut Flow, radius: usize, fill: bool) {
    let (w, h) = (a.w, a.h);
    let warped = warp(&b.data, 1, flow);
    let n = w * h;
    let (mut xx, mut xy, mut yy, mut xt, mut yt) = (uninit(n), uninit(n), uninit(n), uninit(n), uninit(n));
    let product_rows =
        (xx.par_chunks_mut(w), xy.par_chunks_mut(w), yy.par_chunks_mut(w), xt.par_chunks_mut(w), yt.par_chunks_mut(w));
    product_rows.into_par_iter().enumerate().for_each(|(y, (xx, xy, yy, xt, yt))| {
        products_row(&a.data, &warped, (w, h), y, [xx, xy, yy, xt, yt]);
    });
    // SAFETY: each buffer is h rows of w values, and products_row writes every column of its
    // row of each.
    let products = [xx, xy, yy, xt, yt].map(|p| unsafe { assume_init(p) });
    let means: Vec<Vec<f32>> =
        products.into_par_iter().map(|d| Plane { w, h, data: d }.box_mean(radius).data).collect();
    let [xx, xy, yy, xt, yt]: [Vec<f32>; 5] = means.try_into().expect("five planes in, five out");
    let flow_rows = flow.u.par_chunks_mut(w).zip(flow.v.par_chunks_mut(w)).enumerate();
    flow_rows.for_each(|(y, (u, v))| {
        let at = y * w..(y + 1) * w;
        solve_row(u, v, [&xx[at.clone()], &xy[at.clone()], &yy[at.clone()], &xt[at.clone()], &yt[at]]);
    });
    if fill {
        fill_from_confident_neighbours(flow, [&xx, &xy, &yy]);
    }
    // Smoothing spreads the flow of textured windows into flat ones, where the equations
    // above are nearly singular (as Horn-Schunck's smoothness term does).
    let (u, v) = (std::mem::take(&mut flow.u), std::mem::take(&mut flow.v));
    (flow.u, flow.v) =
        rayon::join(|| Plane { w, h, data: u }.box_mean(2).data, || Plane { w, h, data: v }.box_mean(2).data);
}

/// Structure (smallest eigenvalue of a window's mean gradient products, luma units per pixel
/// squared) at which a window's own motion and its neighbourhood's count alike in
/// [`fill_from_confident_neighbours`]: camera noise of a few levels gives a tenth of it,
/// texture and corners ten to a hundred times as much.
const STRUCTURE: f32 = 1e-4;

/// Radius of the neighbourhood a low-structure window takes its motion from (at each level of
/// the pyramid, so about eight times as far in the full frame).
const FILL_RADIUS: usize = 8;

/// Weight of a window's own motion against a neighbourhood without any structure (where
/// there is none to take over, the motion from the coarser level stays).
const FILL_PRIOR: f32 = 0.01;

/// Replaces the motion of low-structure windows by their neighbourhood's, weighted by
/// structure. Where a window is plain (a sky, a road, a wall) or has one edge (the aperture
/// problem), the Lucas-Kanade equations cannot tell motion from noise, and a dream carried
/// along that motion slides about; the motion of textured windows nearby is the better guess,
/// as variational methods spread it into flat regions. `structure` holds the windowed
/// gradient products `gx gx, gx gy, gy gy`; a window's confidence is its smallest eigenvalue
/// `l` as `l / (l + STRUCTURE)`, and its motion becomes `c own + (1 - c) neighbourhood`, the
/// neighbourhood's being the confidence-weighted mean over `FILL_RADIUS` (normalised
/// convolution, Knutsson and Westin 1993).
fn fill_from_confident_neighbours(flow: &mut Flow, structure: [&[f32]; 3]) {
    let (w, h) = (flow.w, flow.h);
    let [xx, xy, yy] = structure;
    let confidence: Vec<f32> = (xx, xy, yy)
        .into_par_iter()
        .map(|(&a, &b, &c)| {
            let smallest = (0.5 * (a + c) - (0.25 * (a - c) * (a - c) + b * b).sqrt()).max(0.0);
            smallest / (smallest + STRUCTURE)
        })
        .collect();
    let weighted_mean = |d: &[f32]| {
        let data = d.par_iter().zip(&confidence).map(|(x, c)| x * c).collect();
        Plane { w, h, data }.box_mean(FILL_RADIUS).data
    };
    let (total, (u_sum, v_sum)) = rayon::join(
        || Plane { w, h, data: confidence.clone() }.box_mean(FILL_RADIUS).data,
        || rayon::join(|| weighted_mean(&flow.u), || weighted_mean(&flow.v)),
    );
    let rows = flow.u.par_chunks_mut(w).zip(flow.v.par_chunks_mut(w)).enumerate();
    rows.for_each(|(y, (u, v))| {
        for (x, (u, v)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
            let i = y * w + x;
            let (c, norm) = (confidence[i], total[i] + FILL_PRIOR);
            *u = c * *u + (1.0 - c) * (u_sum[i] + FILL_PRIOR * *u) / norm;
            *v = c * *v + (1.0 - c) * (v_sum[i] + FILL_PRIOR * *v) / norm;
        }
    });
}

/// Reliability in `{0, 1}` of each pixel of `forward` (a to b), given `backward` (b to a):
/// pixels whose round trip does not come back (occlusions, flow errors) or that leave the
/// frame get 0 (Sundaram et al. 2010).
pub fn consistency(forward: &Flow, backward: &Flow) -> Vec<f32> {
    let (w, h) = (forward.w, forward.h);
    let mut out = uninit(w * h);
    out.par_chunks_mut(w.max(1)).enumerate().for_each(|(y, row)| consistency_row(forward, backward, y, row));
    // SAFETY: the buffer is h rows of w values, and consistency_row writes all w of a row (the
    // forward flow's row has w values).
    unsafe { assume_init(out) }
}

multiversion! {
    /// Row `y` of [`consistency`], into `out` (as long as a row of `forward`: every value
    /// written).
    fn consistency_row(forward: &Flow, backward: &Flow, y: usize, out: &mut [MaybeUninit<f32>]) {
        let (w, h) = (forward.w, forward.h);
        let at = y * w..(y + 1) * w;
        for (x, (o, (&u, &v))) in out.iter_mut().zip(forward.u[at.clone()].iter().zip(&forward.v[at])).enumerate() {
            o.write(round_trip(backward, (x as f32, y as f32), (u, v), (w, h)));
        }
    }
}

/// [`consistency`] of the pixel at `(x, y)` whose forward flow is `(u, v)`.
#[inline(always)]
fn round_trip(backward: &Flow, (x, y): (f32, f32), (u, v): (f32, f32), (w, h): (usize, usize)) -> f32 {
    let (qx, qy) = (x + u, y + v);
    if qx < 0.0 || qy < 0.0 || qx > (w - 1) as f32 || qy > (h - 1) as f32 {
        return 0.0;
    }
    let (bx, by) = (sample(&backward.u, w, h, qx, qy), sample(&backward.v, w, h, qx, qy));
    let err = (u + bx).powi(2) + (v + by).powi(2);
    let bound = 0.01 * (u * u + v * v + bx * bx + by * by) + 0.5;
    if err <= bound {
        1.0
    } else {
        0.0
    }
}

/// `channels` planes of `src` (CHW) sampled at `p + flow(p)`: the content of the image the
/// flow points into, brought to the flow's own pixel grid.
pub fn warp(src: &[f32], channels: usize, flow: &Flow) -> Vec<f32> {
    let (w, h) = (flow.w, flow.h);
    let mut out = uninit(channels * w * h);
    out.par_chunks_mut(w.max(1)).enumerate().for_each(|(row, row_out)| {
        let (c, y) = (row / h, row % h);
        let at = y * w..(y + 1) * w;
        warp_row(&src[c * w * h..(c + 1) * w * h], (w, h), y, (&flow.u[at.clone()], &flow.v[at]), row_out);
    });
    // SAFETY: the buffer is channels x h rows of w values, and warp_row writes all w of a row
    // (u and v are given w values).
    unsafe { assume_init(out) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A smooth texture moved by `(dx, dy)` (the flow tests' and Farnebäck's).
    pub(crate) fn pattern(w: usize, h: usize, dx: f32, dy: f32) -> Plane {
        let data = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 - dx, (i / w) as f32 - dy);
                0.5 + 0.25 * (x * 0.21).sin() * (y * 0.17).cos() + 0.2 * ((x + 2.0 * y) * 0.05).sin()
            })
            .collect();
        Plane { w, h, data }
    }

    #[test]
    fn box_mean_is_the_mean_of_running_sums_along_rows_then_columns() {
        // One running sum per line, as written down, to the last bit (odd sizes leave a
        // partial group of rows and windows clamped at both edges).
        let reference = |p: &Plane, r: usize| {
            let line_means = |line: &[f32]| -> Vec<f32> {
                let mut prefix = vec![0f32; line.len() + 1];
                for (x, &v) in line.iter().enumerate() {
                    prefix[x + 1] = prefix[x] + v;
                }
                (0..line.len())
                    .map(|x| {
                        let (lo, hi) = (x.saturating_sub(r), (x + r + 1).min(line.len()));
                        (prefix[hi] - prefix[lo]) / (hi - lo) as f32
                    })
                    .collect()
            };
            let rows: Vec<f32> = p.data.chunks(p.w).flat_map(line_means).collect();
            let mut out = vec![0f32; p.w * p.h];
            for x in 0..p.w {
                let column: Vec<f32> = (0..p.h).map(|y| rows[y * p.w + x]).collect();
                for (y, v) in line_means(&column).into_iter().enumerate() {
                    out[y * p.w + x] = v;
                }
            }
            out
        };
        for (w, h, r) in [(37, 29, 4), (5, 3, 2), (64, 17, 0), (1, 9, 3)] {
            let p = pattern(w, h, 0.3, 0.7);
            assert_eq!(p.clone().box_mean(r).data, reference(&p, r), "{w}x{h} radius {r}");
        }
    }

    #[test]
    fn products_are_the_central_differences_with_clamped_neighbours() {
        // Per pixel, as written down, for widths whose rows are all edge or reach the loop.
        for (w, h) in [(1, 3), (2, 2), (3, 1), (17, 4)] {
            let (a, b) = (pattern(w, h, 0.0, 0.0), pattern(w, h, 0.6, -0.4));
            for y in 0..h {
                let mut rows: [Vec<MaybeUninit<f32>>; 5] = std::array::from_fn(|_| uninit(w));
                products_row(&a.data, &b.data, (w, h), y, rows.each_mut().map(|r| r.as_mut_slice()));
                // SAFETY: products_row writes every column of every row.
                let rows = rows.map(|r| unsafe { assume_init(r) });
                for x in 0..w {
                    let (l, r) = (x.saturating_sub(1), (x + 1).min(w - 1));
                    let (t, d) = (y.saturating_sub(1), (y + 1).min(h - 1));
                    let gx = 0.25 * (a.at(r, y) - a.at(l, y) + b.at(r, y) - b.at(l, y));
                    let gy = 0.25 * (a.at(x, d) - a.at(x, t) + b.at(x, d) - b.at(x, t));
                    let it = b.at(x, y) - a.at(x, y);
                    let want = [gx * gx, gx * gy, gy * gy, gx * it, gy * it];
                    assert_eq!(rows.each_ref().map(|r| r[x]), want, "{w}x{h} at ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn recovers_a_translation() {
        let (a, b) = (pattern(96, 64, 0.0, 0.0), pattern(96, 64, 3.0, -2.0));
        let f = estimate(&a, &b, FlowParams::default());
        // Interior pixels (edges see content entering the frame).
        let mut err = 0.0;
        let mut n = 0;
        for y in 10..54 {
            for x in 10..86 {
                let i = y * 96 + x;
                err += (f.u[i] - 3.0).abs() + (f.v[i] + 2.0).abs();
                n += 1;
            }
        }
        assert!(err / (n as f32) < 0.05, "mean error {}", err / n as f32);
    }

    #[test]
    fn consistency_flags_contradicting_flows() {
        let w = 8;
        let fwd = Flow { w, h: w, u: vec![1.0; 64], v: vec![0.0; 64] };
        let good = Flow { w, h: w, u: vec![-1.0; 64], v: vec![0.0; 64] };
        let bad = Flow { w, h: w, u: vec![3.0; 64], v: vec![0.0; 64] };
        let ok = consistency(&fwd, &good);
        assert_eq!(ok[3 * 8 + 2], 1.0);
        assert_eq!(ok[3 * 8 + 7], 0.0, "pixels flowing out of the frame are unreliable");
        assert!(consistency(&fwd, &bad).iter().all(|&m| m == 0.0));
    }

    #[test]
    fn warp_follows_the_flow() {
        let src: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let flow = Flow { w: 4, h: 4, u: vec![1.0; 16], v: vec![0.0; 16] };
        let out = warp(&src, 1, &flow);
        assert_eq!(&out[0..4], &[1.0, 2.0, 3.0, 3.0]);
    }
}
