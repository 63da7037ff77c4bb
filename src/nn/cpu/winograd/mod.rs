//! Winograd F(4x4, 3x3) convolution (Lavin & Gray 2015): each 4x4 block of output comes from
//! a 6x6 block of input with 36 multiplications per channel pair instead of 144.
//!
//! For every tile: `Y = Aᵀ [U ⊙ (Bᵀ d B)] A` with `U = G g Gᵀ`, summed over input channels.
//! Per band of tile rows, the input tiles are transformed into `V[ξ][c][t]` (36 matrices,
//! tiles contiguous), the 36 products `M[ξ] = U[ξ] V[ξ]` run as independent GEMMs, and the
//! output transform writes each tile back with bias and ReLU. The input gradient is the same
//! convolution with the flipped, transposed kernel, which reuses `U` (see [`Job::gradient`]).
//!
//! Every transform runs over vectors of tiles: each channel's rows of a band are first split by
//! column phase (`x mod 4`, padded, into a buffer that stays in L1), so the pixel at column
//! offset `s` of every tile in a tile row is one contiguous run (see [`kernels`]). The
//! gradient of a ReLU and max-pool that followed the convolution is applied in that split.

mod kernels;

use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

use super::buffers::{Scratch, SharedMut};
use kernels::{input_tiles, kernel_tiles, output_tiles, split_phases, Slots, A, LANES, M};

/// Transformed tile elements.
const XI: usize = A * A;

/// Bytes of transformed tiles (input and output side) a band of tile rows spans at least:
/// what one core's L2 cache holds.
const BAND_BYTES: usize = 2 << 20;

/// Bytes of transformed tiles a band spans at most (bands grow past [`BAND_BYTES`] in wide
/// layers, where reading all of `U` for every band would cost more than V and M).
const MAX_BAND_BYTES: usize = 8 << 20;

/// Transformed kernels `U[ξ][o][i]` of a `[cout, cin, 3, 3]` weight (`o` = output channel,
/// `i` = input channel). Its input gradient uses the same `U` (see [`Job::gradient`]).
pub fn transform_weights(weight: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let pairs = cout * cin;
    let mut u = vec![0f32; XI * pairs];
    let slots = Slots { ptr: SharedMut(u.as_mut_ptr()), xi_stride: pairs, base: 0 };
    (0..cout).into_par_iter().for_each(|o| {
        let mut starts = [0usize; LANES];
        for i0 in (0..cin).step_by(LANES) {
            let n = (cin - i0).min(LANES);
            for (lane, start) in starts[..n].iter_mut().enumerate() {
                *start = (o * cin + i0 + lane) * 9;
            }
            kernel_tiles(weight, &starts[..n], slots, o * cin + i0);
        }
    });
    u
}

/// One convolution of `x` (`[n, c, h, w]`, masked by `mask` where given).
pub struct Job<'a> {
    /// `[n, c, h, w]` input of this call.
    pub x: &'a [f32],
    /// Optional `u8` mask of `x` (zero: the element counts as 0).
    pub mask: Option<&'a [u8]>,
    /// Dimensions of the input.
    pub dims: (usize, usize, usize, usize),
    /// `x` is the `[n, c, h/2, w/2]` gradient of a 2x2 max-pool's output, and the input its
    /// routing to the elements of `mask` (which the pool's mask must be).
    pub pooled: bool,
    /// Transformed kernels from [`transform_weights`].
    pub u: &'a [f32],
    /// Computes the input gradient of the convolution `u` belongs to (`x` is the output
    /// gradient): the correlation with the flipped kernel, channels swapped. Flipping a
    /// tile's kernel is reversing the tile: `corr(d, flip g) = R corr(R d, g)` (`R` reverses
    /// rows and columns of a tile), so each input tile is reversed before its transform, `U`
    /// is used transposed, and each output tile is reversed after its transform.
    pub gradient: bool,
    /// Channels of the result.
    pub cout: usize,
    /// Per-channel bias of the result.
    pub bias: Option<&'a [f32]>,
    /// Apply `max(0, ·)` to the result.
    pub relu: bool,
}

impl Job<'_> {
    /// `x` and `mask` of image `b`, channel `ci`.
    fn plane(&self, b: usize, ci: usize) -> (&[f32], Option<&[u8]>) {
        let (_, c, h, w) = self.dims;
        let len = if self.pooled { (h / 2) * (w / 2) } else { h * w };
        let at = b * c + ci;
        (&self.x[at * len..][..len], self.mask.map(|m| &m[at * h * w..][..h * w]))
    }
}

/// Tile geometry of an `h x w` image and how it is cut into bands of tile rows.
#[derive(Clone, Copy)]
struct Bands {
    /// Tile rows and columns.
    th: usize,
    tw: usize,
    /// Tile rows per band, and the row stride of the transformed matrices (a band's tiles and
    /// room for the garbage tiles of [`input_tiles`]).
    rows: usize,
    stride: usize,
    count: usize,
}

impl Bands {
    fn new(h: usize, w: usize, (c, cout): (usize, usize)) -> Self {
        let (th, tw) = (h.div_ceil(M), w.div_ceil(M));
        let row_bytes = 4 * XI * (c + cout) * tw;
        // Enough tile rows to fill the L2 cache, or to read no more of U than of V and M
        // (U is read once per band), whichever is more, within MAX_BAND_BYTES.
        let (fit, reuse) = (BAND_BYTES / row_bytes, (c * cout / (c + cout)).div_ceil(tw));
        let rows = fit.max(reuse).min(MAX_BAND_BYTES / row_bytes).clamp(1, th);
        let count = th.div_ceil(rows);
        let rows = th.div_ceil(count);
        Self { th, tw, rows, stride: rows * tw + LANES, count }
    }

    /// Tile rows of band `k`.
    fn range(&self, k: usize) -> (usize, usize) {
        (k * self.rows, ((k + 1) * self.rows).min(self.th))
    }

    /// Runs `band(buffers, k, split)` for every band: many bands go one per worker, each in
    /// its own cache (`split` = all of a band's channels in one task); few bands run one at a
    /// time with every worker sharing its channels (`split` = 1).
    fn run(
        &self,
        buffers: impl Fn() -> (Scratch, Scratch) + Sync + Send,
        band: impl Fn(&mut (Scratch, Scratch), usize, usize) + Sync + Send,
    ) {
        if self.count >= 2 * rayon::current_num_threads() {
            (0..self.count).into_par_iter().for_each_init(buffers, |bufs, k| band(bufs, k, usize::MAX));
        } else {
            let mut bufs = buffers();
            for k in 0..self.count {
                band(&mut bufs, k, 1);
            }
        }
    }
}

/// The 36 products of one band: `out[ξ] (rows x tiles) = U[ξ] (rows x inner) · src[ξ]
/// (inner x tiles)`, with `U[ξ]` stored `inner x rows` (read transposed) where `transposed`.
fn products(
    (u, transposed): (&[f32], bool),
    (rows, inner): (usize, usize),
    src: &[f32],
    out: &mut [f32],
    (tiles, stride): (usize, usize),
    split: usize,
) {
    let op = SharedMut(out.as_mut_ptr());
    let (u_cs, u_rs) = if transposed { (rows, 1) } else { (1, inner) };
    (0..XI).into_par_iter().with_min_len(split).for_each(|xi| {
        // SAFETY: task xi reads U[xi] (rows x inner or inner x rows, within u's
        // XI * rows * inner elements), src[xi] (inner x tiles, row stride `stride`) and writes
        // only out[xi] (rows x tiles, row stride `stride`); tiles <= stride.
        unsafe {
            gemm::gemm(
                rows,
                tiles,
                inner,
                op.get().add(xi * rows * stride),
                1,
                stride as isize,
                false,
                u.as_ptr().add(xi * rows * inner),
                u_cs as isize,
                u_rs as isize,
                src.as_ptr().add(xi * inner * stride),
                1,
                stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    });
}

/// The 3x3 "same" convolution of `job.x` (bias and ReLU from `job`): `[n, cout, h, w]`.
pub fn convolve(job: &Job) -> Vec<f32> {
    let (n, c, h, w) = job.dims;
    let cout = job.cout;
    let bands = Bands::new(h, w, (c, cout));
    let (tw, stride) = (bands.tw, bands.stride);
    // A band's phases: p[s][y][j] = padded[band's first row + y][j * M + s], where padded is
    // a channel of the input with a one-pixel zero border.
    let (rows, cols) = (bands.rows * M + 2, tw + 1);
    // Written once, by the output transforms: no zeroing first.
    let len = n * cout * h * w;
    let mut out = Vec::<f32>::with_capacity(len);
    let spare = out.spare_capacity_mut();
    for b in 0..n {
        let out_b = SharedMut::<f32>(spare[b * cout * h * w..].as_mut_ptr().cast());
        let buffers = || (Scratch::new(XI * c * stride), Scratch::new(XI * cout * stride));
        bands.run(buffers, |(v, m), k, split| {
            let (t0, t1) = bands.range(k);
            let vp = SharedMut(v.as_mut_ptr());
            (0..c).into_par_iter().with_min_len(split).for_each_init(
                || Scratch::new(M * rows * cols + LANES),
                |p, ci| {
                    let (x, mask) = job.plane(b, ci);
                    split_phases(x, mask, (h, w), job.pooled, t0 * M, p, (rows, cols));
                    let slots = Slots { ptr: vp, xi_stride: c * stride, base: ci * stride };
                    for ti in t0..t1 {
                        for j0 in (0..tw).step_by(LANES) {
                            input_tiles(p, (rows, cols), ((ti - t0) * M, j0), job.gradient, slots, (ti - t0) * tw + j0);
                        }
                    }
                },
            );
            products((job.u, job.gradient), (cout, c), v, m, ((t1 - t0) * tw, stride), split);
            // Output rows y0..y1 of every plane belong to this band.
            let (y0, y1) = (t0 * M, (t1 * M).min(h));
            (0..cout).into_par_iter().with_min_len(split).for_each(|co| {
                // SAFETY: rows y0..y1 of output plane co of image b belong to this task alone
                // (other tasks of this band write other planes, other bands other rows).
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        out_b.get().add((co * h + y0) * w).cast::<MaybeUninit<f32>>(),
                        (y1 - y0) * w,
                    )
                };
                let epilogue = (job.bias.map_or(0.0, |bias| bias[co]), job.relu, job.gradient);
                for ti in t0..t1 {
                    for j0 in (0..tw).step_by(LANES) {
                        let src = (co * stride + (ti - t0) * tw + j0, cout * stride);
                        let at = (y1 - y0, w, (ti - t0) * M, j0 * M);
                        output_tiles(m, src, (tw - j0).min(LANES), epilogue, dst, at);
                    }
                }
            });
        });
    }
    // SAFETY: the output transforms wrote every element (the tiles of the bands cover every
    // plane; the rows and columns they have past its edge are cut off).
    unsafe { out.set_len(len) };
    out
}
