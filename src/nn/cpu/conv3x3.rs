//! 3x3, stride-1, padding-1 convolution as a cache-blocked implicit GEMM with no im2col buffer.
//!
//! The output is produced a band of rows at a time, sized so that the band's output and input
//! stay in the core's L2 cache across the nine taps. Each band zero-pads the input rows it
//! needs into planes of `(rows + 2) x (W + 2)` (channel-major, as candle's NCHW). For kernel
//! tap `(dy, dx)`, the input pixels every output needs form one strided matrix: `Cin` rows
//! (one per plane) starting `dy * (W + 2) + dx` into each plane. So a band is nine GEMMs
//! `out[Cout, cols] += W_tap[Cout, Cin] * X_tap[Cin, cols]` computed on the padded width (the
//! two extra columns per row are dropped). Bands run in parallel, and the epilogue adds the
//! bias, applies the optional ReLU and writes the band's rows to the NCHW output.
//!
//! The weight is rearranged once, tap-major (`[9][cout][cin]`), so that each tap's matrix is
//! contiguous. The input gradient is the same operation with the flipped, transposed kernel
//! (rearranged the same way); as a three-operand op it also multiplies its input by a `u8` mask
//! while padding, which is the backward of the ReLU that followed the convolution.
//!
//! Layers with at least [`MIN_CHANNELS`] channels each way and at most [`WINOGRAD_PAIRS`]
//! channel pairs run as Winograd F(4x4, 3x3) instead (see [`super::winograd`]).

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape};
use gemm::Parallelism;
use rayon::prelude::*;

use super::buffers::SharedMut;
use super::operands::copy_masked;
use super::pool::route;
use super::winograd::{self, transform_weights};

/// Bytes of output plus input a band may span (half of the L2 cache of the cores we target).
const BAND_BYTES: usize = 1 << 20;

/// Layers with at most this many (input, output) channel pairs run as Winograd and keep its
/// kernels (4x the weight's size, shared by both directions) after first use: all of
/// VGG19's. Transforming a wider layer's kernels on every call would cost about what Winograd
/// saves.
const WINOGRAD_PAIRS: usize = 512 * 512;

/// Layers with fewer input or output channels than this run as implicit GEMM: the Winograd
/// transforms would cost more than they save (VGG's first layer).
const MIN_CHANNELS: usize = 16;

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
    /// Winograd kernels of the weight, kept after first use for layers up to
    /// [`WINOGRAD_PAIRS`]; forward and input gradient share them.
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
        winograd: winograd.clone(),
        tap_major: Arc::new(OnceLock::new()),
    };
    [forward(bias.clone(), false), forward(bias, true), backward]
}

impl Conv3x3Cpu {
    /// Whether a layer with `c` and `cout` channels (either way round) runs as Winograd.
    fn runs_winograd(c: usize, cout: usize) -> bool {
        c.min(cout) >= MIN_CHANNELS && c * cout <= WINOGRAD_PAIRS
    }

    /// The convolution of the `[n, c, h, w]` input `x` masked by `mask`, or with `pooled`, of
    /// the routing of the pooled gradient `x` to the pool's `mask` (see [`PooledGradientCpu`]).
    fn run(
        &self,
        x: &[f32],
        mask: Option<&[u8]>,
        (n, c, h, w): (usize, usize, usize, usize),
        pooled: bool,
        weight: &[f32],
        cout: usize,
    ) -> Vec<f32> {
        if n * c * h * w * cout == 0 {
            return vec![0f32; n * cout * h * w]; // nothing to sum: an empty image or layer
        }
        if Self::runs_winograd(c, cout) {
            let (wo, wi) = if self.transposed { (c, cout) } else { (cout, c) };
            let u = self.winograd.get_or_init(|| transform_weights(weight, wo, wi));
            let bias = self.bias.as_deref();
            let job = winograd::Job {
                x,
                mask,
                dims: (n, c, h, w),
                pooled,
                u,
                gradient: self.transposed,
                cout,
                bias,
                relu: self.relu,
            };
            return winograd::convolve(&job);
        }
        let routed;
        let (x, mask) = if pooled {
            routed = route(x, mask.expect("a pooled gradient comes with the pool's mask"), (h, w));
            (&routed[..], None)
        } else {
            (x, mask)
        };
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
        // Bands of equal height within BAND_BYTES, as many as a multiple of the workers.
        let threads = rayon::current_num_threads();
        let most = (BAND_BYTES / (4 * (c + cout) * (w + 2))).clamp(1, h);
        let rows = h.div_ceil(h.div_ceil(most).next_multiple_of(threads).min(h));
        let bands = h.div_ceil(rows);
        let mut out = vec![0f32; n * cout * h * w];
        for b in 0..n {
            let band = Band {
                x: &x[b * c * h * w..][..c * h * w],
                mask: mask.map(|m| &m[b * c * h * w..][..c * h * w]),
                taps,
                c,
                cout,
                h,
                w,
                rows,
                out: SharedMut(out[b * cout * h * w..].as_mut_ptr()),
            };
            if bands >= threads {
                (0..bands)
                    .into_par_iter()
                    .for_each_init(Default::default, |bufs, k| self.band(&band, k, bufs, Parallelism::None));
            } else {
                let mut bufs = Default::default();
                for k in 0..bands {
                    self.band(&band, k, &mut bufs, Parallelism::Rayon(threads));
                }
            }
        }
        out
    }

    /// Computes output rows `k * rows ..` of one image into `buf` from the rows of the input
    /// they need, zero-padded into `padded`, then writes them out.
    fn band(&self, band: &Band, k: usize, (padded, buf): &mut (Vec<f32>, Vec<f32>), parallelism: Parallelism) {
        let Band { x, mask, taps, c, cout, h, w, rows, out } = *band;
        let pw = w + 2;
        let y0 = k * rows;
        let nr = rows.min(h - y0);
        // padded[ci][r][1 + j] = x[ci][y0 + r - 1][j] for r < nr + 2 (zero outside the image).
        let plane = (nr + 2) * pw + 2;
        padded.clear();
        padded.resize(c * plane, 0.0);
        for (ci, p) in padded.chunks_exact_mut(plane).enumerate() {
            for r in 0..nr + 2 {
                let Some(y) = (y0 + r).checked_sub(1).filter(|&y| y < h) else { continue };
                let at = (ci * h + y) * w;
                copy_masked(&mut p[r * pw + 1..][..w], &x[at..at + w], mask.map(|m| &m[at..at + w]));
            }
        }
        let len = nr * pw;
        buf.resize(cout * len, 0.0);
        if let Some(bias) = &self.bias {
            buf.chunks_mut(len).zip(bias).for_each(|(row, &v)| row.fill(v));
        }
        for tap in 0..9 {
            let offset = (tap / 3) * pw + tap % 3;
            // SAFETY: dst is `cout x len` with row stride len (buf's size). lhs reads
            // taps[tap][o][i] for o < cout, i < c. rhs reads padded[ci * plane + offset + j]
            // for ci < c, j < len; the largest index within a plane is
            // 2 * pw + 2 + nr * pw - 1 < plane.
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
        let out = self.run(x, mask, (n, c, h, w), false, weight, cout);
        Ok((CpuStorage::F32(out), Shape::from((n, cout, h, w))))
    }
}

/// The input gradient of a convolution whose output went through a ReLU and a 2x2 max-pool,
/// from the pool's output gradient (first operand, `[n, c, h/2, w/2]`), the weight (second)
/// and the pool's `U8` mask of positive maxima (third, `[n, c, h, w]`, see
/// [`super::PoolMaskCpu`]), as one candle op: the routed gradient is never materialised on the
/// Winograd path.
#[derive(Debug, Clone, Copy)]
pub struct PooledGradientCpu<'a>(pub &'a Conv3x3Cpu);

impl CustomOp3 for PooledGradientCpu<'_> {
    fn name(&self) -> &'static str {
        "conv3x3-pooled-gradient-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (n, c, h, w) = l3.shape().dims4()?;
        let (wo, wi, kh, kw) = l2.shape().dims4()?;
        if !self.0.transposed || l1.shape().dims4()? != (n, c, h / 2, w / 2) || (wo, kh, kw) != (c, 3, 3) {
            candle_core::bail!("{name}: gradient {:?}, weight {:?}, mask {:?}", l1.shape(), l2.shape(), l3.shape());
        }
        let (x, weight, mask) = (
            super::operands::f32_data(s1, l1, name)?,
            super::operands::f32_data(s2, l2, name)?,
            super::operands::u8_data(s3, l3, name)?,
        );
        let out = self.0.run(x, Some(mask), (n, c, h, w), true, weight, wi);
        Ok((CpuStorage::F32(out), Shape::from((n, wi, h, w))))
    }
}

/// What every band of one image shares.
#[derive(Clone, Copy)]
struct Band<'a> {
    /// The image's input and its optional mask.
    x: &'a [f32],
    mask: Option<&'a [u8]>,
    taps: &'a [f32],
    c: usize,
    cout: usize,
    h: usize,
    w: usize,
    rows: usize,
    out: SharedMut<f32>,
}

masked_op!(Conv3x3Cpu, "conv3x3-cpu");
