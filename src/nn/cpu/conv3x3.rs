//! 3x3, stride-1, padding-1 convolution as a cache-blocked implicit GEMM with no im2col buffer.
//!
//! The input is zero-padded once into planes of `(H + 2) x (W + 2)` (channel-major, as candle's
//! NCHW). For kernel tap `(dy, dx)`, the input pixels every output needs form one strided
//! matrix: `Cin` rows (one per plane) starting `dy * (W + 2) + dx` into each plane. So the
//! convolution is nine GEMMs `out[Cout, cols] += W_tap[Cout, Cin] * X_tap[Cin, cols]` computed on
//! the padded width (the two extra columns per row are dropped). The output is produced a band
//! of rows at a time, sized so that the band's output and input stay in the core's L2 cache
//! across the nine taps; bands run in parallel, and the epilogue adds the bias, applies the
//! optional ReLU and writes the band's rows to the NCHW output.
//!
//! The weight is rearranged once, tap-major (`[9][cout][cin]`), so that each tap's matrix is
//! contiguous. The input gradient is the same operation with the flipped, transposed kernel
//! (rearranged the same way); as a three-operand op it also multiplies its input by a `u8` mask
//! while padding, which is the backward of the ReLU that followed the convolution.
//!
//! Layers whose transformed kernels are small enough to keep run as Winograd F(4x4, 3x3)
//! instead (see [`super::winograd`]).

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, Layout, Result, Shape};
use gemm::Parallelism;
use rayon::prelude::*;

use super::winograd::{self, transform_weights};
use super::{copy_masked, SharedMut};

/// Bytes of output plus input a band may span (half of the L2 cache of the cores we target).
const BAND_BYTES: usize = 1 << 20;

/// Layers with at most this many (input, output) channel pairs keep their Winograd kernels
/// (4x the weight's size, once per direction) after first use.
const CACHED_PAIRS: usize = 256 * 256;

/// Layers with fewer input or output channels than this run as implicit GEMM: the Winograd
/// transforms would cost more than they save (VGG's first layer).
const MIN_CHANNELS: usize = 16;

/// Wider layers transform their kernels on every call, which pays from this many 4x4 tiles
/// up; smaller images run them as implicit GEMM.
const PER_CALL_MIN_TILES: usize = 100;

/// A 3x3 "same" convolution of an `F32` NCHW CPU tensor (first operand) with a contiguous
/// `[cout, cin, 3, 3]` weight (second operand), or its input gradient, as a candle op; the
/// weight stays in its tensor. A third `U8` operand shaped like the input masks it (zero where
/// the mask is zero).
#[derive(Debug, Clone)]
pub struct Conv3x3Cpu {
    bias: Option<Vec<f32>>,
    relu: bool,
    /// Computes the input gradient: the flipped kernel with input and output swapped.
    transposed: bool,
    /// Winograd kernels of this op's (possibly transposed) weight, kept after first use for
    /// layers up to [`CACHED_PAIRS`].
    winograd: Arc<OnceLock<Vec<f32>>>,
    /// This op's (possibly flipped and transposed) kernel tap-major, `[9][out][in]`, made on
    /// first use by the implicit GEMM.
    tap_major: Arc<OnceLock<Vec<f32>>>,
}

/// The kernels of one layer: forward, forward fused with the following ReLU, and input
/// gradient.
pub fn conv3x3_kernels(bias: Option<Vec<f32>>) -> [Conv3x3Cpu; 3] {
    let (winograd, tap_major) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
    let forward = |bias, relu| Conv3x3Cpu {
        bias,
        relu,
        transposed: false,
        winograd: winograd.clone(),
        tap_major: tap_major.clone(),
    };
    let backward = Conv3x3Cpu {
        bias: None,
        relu: false,
        transposed: true,
        winograd: Arc::new(OnceLock::new()),
        tap_major: Arc::new(OnceLock::new()),
    };
    [forward(bias.clone(), false), forward(bias, true), backward]
}

impl Conv3x3Cpu {
    fn run(
        &self,
        x: &[f32],
        mask: Option<&[u8]>,
        (n, c, h, w): (usize, usize, usize, usize),
        weight: &[f32],
    ) -> Vec<f32> {
        let cout = weight.len() / (9 * c);
        let pairs = c * cout;
        let tiles = h.div_ceil(4) * w.div_ceil(4);
        if c.min(cout) >= MIN_CHANNELS && (pairs <= CACHED_PAIRS || tiles >= PER_CALL_MIN_TILES) {
            let (wo, wi) = if self.transposed { (c, cout) } else { (cout, c) };
            let transform = || transform_weights(weight, wo, wi, self.transposed);
            let per_call;
            let u = if pairs <= CACHED_PAIRS {
                self.winograd.get_or_init(transform)
            } else {
                per_call = transform();
                &per_call
            };
            let bias = self.bias.as_deref();
            return winograd::convolve(&winograd::Job { x, mask, dims: (n, c, h, w), u, cout, bias, relu: self.relu });
        }
        // taps[t][o][i]: weight[o][i][t], or for the input gradient weight[i][o][8 - t].
        let taps = self.tap_major.get_or_init(|| {
            let mut taps = vec![0f32; weight.len()];
            for (t, tap) in taps.chunks_exact_mut(cout * c).enumerate() {
                for (at, v) in tap.iter_mut().enumerate() {
                    let (o, i) = (at / c, at % c);
                    *v = if self.transposed { weight[(i * cout + o) * 9 + 8 - t] } else { weight[at * 9 + t] };
                }
            }
            taps
        });
        let (pw, plane) = (w + 2, (h + 2) * (w + 2) + 2);
        let rows = (BAND_BYTES / (4 * (c + cout) * pw)).clamp(1, h);
        let bands = h.div_ceil(rows);
        let threads = rayon::current_num_threads();
        let mut out = vec![0f32; n * cout * h * w];
        let mut padded = vec![0f32; c * plane];
        for b in 0..n {
            let image = b * c * h * w;
            padded.par_chunks_mut(plane).enumerate().for_each(|(ci, p)| {
                for y in 0..h {
                    let at = image + (ci * h + y) * w;
                    copy_masked(&mut p[(y + 1) * pw + 1..][..w], &x[at..at + w], mask.map(|m| &m[at..at + w]));
                }
            });
            let band = Band {
                padded: &padded,
                taps,
                c,
                cout,
                h,
                w,
                rows,
                out: SharedMut(out[b * cout * h * w..].as_mut_ptr()),
            };
            if bands >= 2 * threads {
                (0..bands)
                    .into_par_iter()
                    .for_each_init(Vec::new, |buf, k| self.band(&band, k, buf, Parallelism::None));
            } else {
                let mut buf = Vec::new();
                for k in 0..bands {
                    self.band(&band, k, &mut buf, Parallelism::Rayon(threads));
                }
            }
        }
        out
    }

    /// Computes output rows `k * rows ..` of one image into `buf`, then writes them out.
    fn band(&self, band: &Band, k: usize, buf: &mut Vec<f32>, parallelism: Parallelism) {
        let Band { padded, taps, c, cout, h, w, rows, out } = *band;
        let pw = w + 2;
        let plane = (h + 2) * pw + 2;
        let y0 = k * rows;
        let nr = rows.min(h - y0);
        let len = nr * pw;
        buf.resize(cout * len, 0.0);
        if let Some(bias) = &self.bias {
            buf.chunks_mut(len).zip(bias).for_each(|(row, &v)| row.fill(v));
        }
        for tap in 0..9 {
            let offset = (y0 + tap / 3) * pw + tap % 3;
            // SAFETY: dst is `cout x len` with row stride len (buf's size). lhs reads
            // taps[tap][o][i] for o < cout, i < c. rhs reads padded[ci * plane + offset + j]
            // for ci < c, j < len; the largest index is (y0 + nr + 2) * pw + 1 <=
            // (h + 2) * pw + 1 < plane.
            unsafe {
                gemm::gemm(
                    cout,
                    len,
                    c,
                    buf.as_mut_ptr(),
                    1,
                    len as isize,
                    tap > 0 || self.bias.is_some(),
                    taps.as_ptr().add(tap * cout * c),
                    1,
                    c as isize,
                    padded.as_ptr().add(offset),
                    1,
                    plane as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        }
        for co in 0..cout {
            for r in 0..nr {
                let src = &buf[co * len + r * pw..][..w];
                // SAFETY: rows y0..y0 + nr of every output plane belong to this band alone, and
                // (co * h + y0 + r) * w + w <= cout * h * w, the image's output size.
                let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add((co * h + y0 + r) * w), w) };
                if self.relu {
                    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s.max(0.0));
                } else {
                    dst.copy_from_slice(src);
                }
            }
        }
    }

    fn compute(
        &self,
        x: &[f32],
        mask: Option<&[u8]>,
        l1: &Layout,
        weight: &[f32],
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let (wo, wi, kh, kw) = l2.shape().dims4()?;
        let (cout, cin) = if self.transposed { (wi, wo) } else { (wo, wi) };
        if (c, kh, kw) != (cin, 3, 3) {
            candle_core::bail!("conv3x3-cpu: input has {c} channels, weight is {:?}", l2.shape().dims());
        }
        let out = self.run(x, mask, (n, c, h, w), weight);
        Ok((CpuStorage::F32(out), Shape::from((n, cout, h, w))))
    }
}

/// What every band of one image shares.
#[derive(Clone, Copy)]
struct Band<'a> {
    padded: &'a [f32],
    taps: &'a [f32],
    c: usize,
    cout: usize,
    h: usize,
    w: usize,
    rows: usize,
    out: SharedMut,
}

masked_op!(Conv3x3Cpu, "conv3x3-cpu");
