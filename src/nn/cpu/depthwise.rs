//! Depthwise convolution (one `k x k` filter per channel, any stride and zero padding) and its
//! input gradient: one pass per plane, planes in parallel, with bias and a clamp (ReLU6) fused
//! into the forward and the clamp's mask into the gradient. candle would run it as `k * k`
//! full-tensor multiply-adds. The same plane passes, summed over input channels, serve dense
//! convolutions with few input channels.

use candle_core::{CpuStorage, Layout, Result, Shape};
use rayon::prelude::*;

use super::buffers::Scratch;
use super::operands::copy_masked;

/// A depthwise convolution of an `F32` NCHW CPU tensor (first operand) with a contiguous
/// `[c, 1, k, k]` weight (second operand), or, with `gradient`, the input gradient of one
/// given the output gradient. A third `U8` operand shaped like the first masks it.
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseCpu<'a> {
    /// Per-channel bias (forward only).
    pub bias: Option<&'a [f32]>,
    /// Step between windows.
    pub stride: usize,
    /// Zeros before the first row and the first column of the input.
    pub pad: (usize, usize),
    /// Spatial size of the result: the output (forward) or the input (gradient).
    pub out: (usize, usize),
    /// Clamp the forward's result to `[0, clamp]` (ReLU6: 6).
    pub clamp: Option<f32>,
    /// Compute the input gradient instead of the convolution.
    pub gradient: bool,
}

/// Output columns `j` whose tap at column offset `dx` reads an input column inside `0..w`.
pub(super) fn columns(dx: usize, (stride, left): (usize, usize), w: usize, wo: usize) -> std::ops::Range<usize> {
    let lo = left.saturating_sub(dx).div_ceil(stride);
    let hi = if w + left > dx { ((w + left - dx - 1) / stride + 1).min(wo) } else { 0 };
    lo..hi.max(lo)
}

/// Outputs of a row that the forward accumulates together, in registers.
const LANES: usize = 16;

/// `acc[l] += tap * src[l * S]`: one tap of [`LANES`] neighbouring outputs (a constant stride
/// lets the compiler drop the bounds checks and vectorise).
#[inline(always)]
fn add_tap<const S: usize>(acc: &mut [f32; LANES], tap: f32, src: &[f32]) {
    let src = &src[..(LANES - 1) * S + 1];
    acc.iter_mut().enumerate().for_each(|(l, a)| *a += tap * src[l * S]);
}

multiversion! {
    /// One plane of the forward: `y (ho x wo) += sum of taps[dy * k + dx] * x (h x w) at
    /// (i * stride + dy - top, j * stride + dx - left)`, starting from `fill` where given, then
    /// clamped to `[0, clamp]` if given. The input rows are copied behind `left` zeros and
    /// followed by more, so that [`LANES`] outputs take every tap in registers and are stored
    /// once (taps that read padding add zeros, which leaves every sum as it was).
    pub fn forward_plane(
        x: &[f32],
        size: (usize, usize),
        taps: &[f32],
        geometry: (usize, usize, usize),
        y: &mut [f32],
        out: (usize, usize),
        epilogue: (Option<f32>, Option<f32>),
    ) {
        let (h, w) = size;
        let (stride, top, left) = geometry;
        let (ho, wo) = out;
        let (fill, clamp) = epilogue;
        let k = (taps.len() as f64).sqrt() as usize;
        let pw = wo.div_ceil(LANES) * LANES * stride + k;
        let mut padded = Scratch::new(h * pw);
        for (dst, src) in padded.chunks_exact_mut(pw).zip(x.chunks_exact(w)) {
            dst.fill(0.0);
            dst[left..left + w].copy_from_slice(src);
        }
        for (i, y_row) in y.chunks_exact_mut(wo).enumerate().take(ho) {
            for (chunk, y_out) in y_row.chunks_mut(LANES).enumerate() {
                let j0 = chunk * LANES;
                let mut acc = [fill.unwrap_or(0.0); LANES];
                if fill.is_none() {
                    acc[..y_out.len()].copy_from_slice(y_out);
                }
                for dy in 0..k {
                    let Some(row) = (i * stride + dy).checked_sub(top).filter(|&r| r < h) else {
                        continue;
                    };
                    let src_row = &padded[row * pw..][..pw];
                    for dx in 0..k {
                        let (tap, src) = (taps[dy * k + dx], &src_row[j0 * stride + dx..]);
                        match stride {
                            1 => add_tap::<1>(&mut acc, tap, src),
                            2 => add_tap::<2>(&mut acc, tap, src),
                            _ => {
                                let picked: [f32; LANES] = std::array::from_fn(|l| src[l * stride]);
                                add_tap::<1>(&mut acc, tap, &picked);
                            }
                        }
                    }
                }
                if let Some(upper) = clamp {
                    acc.iter_mut().for_each(|v| *v = v.clamp(0.0, upper));
                }
                y_out.copy_from_slice(&acc[..y_out.len()]);
            }
        }
    }
}

/// The rows of `g` (`wo` wide), zero where `mask` is, each `lead` columns into a zeroed row of
/// `pw`: what the gathering gradients read whole blocks of outputs from.
#[inline(always)]
fn padded_rows(g: &[f32], mask: Option<&[u8]>, wo: usize, (lead, pw): (usize, usize)) -> Scratch {
    let mut padded = Scratch::new(g.len() / wo * pw);
    for (i, dst) in padded.chunks_exact_mut(pw).enumerate() {
        dst.fill(0.0);
        copy_masked(&mut dst[lead..lead + wo], &g[i * wo..][..wo], mask.map(|m| &m[i * wo..][..wo]));
    }
    padded
}

multiversion! {
    /// One plane of the input gradient (`sizes`: output, then input): every output-gradient
    /// element `g (ho x wo)` (zero where `mask` is) added, times each tap, to the input element
    /// that tap read (`dx_plane`, `h x w`, is zeroed first unless `accumulate`).
    pub fn gradient_plane(
        g: &[f32],
        mask: Option<&[u8]>,
        sizes: ((usize, usize), (usize, usize)),
        taps: &[f32],
        geometry: (usize, usize, usize),
        dx_plane: &mut [f32],
        accumulate: bool,
    ) {
        let ((ho, wo), (h, w)) = sizes;
        let (stride, top, left) = geometry;
        let k = (taps.len() as f64).sqrt() as usize;
        if stride == 1 {
            // Each input element gathers its taps instead: the masked gradient rows are copied
            // behind `k - 1` zeros and followed by more, [`LANES`] inputs take every tap in
            // registers and are stored once. Taps run in the order the scatter below adds them
            // to one input element (kernel rows backwards, columns forwards), and taps that
            // read padding add zeros, so the sums are the scatter's bit for bit.
            let lead = k - 1;
            let pw = (w.div_ceil(LANES) * LANES + left).max(wo) + k;
            let padded = padded_rows(g, mask, wo, (lead, pw));
            for (row, dx_row) in dx_plane.chunks_exact_mut(w).enumerate().take(h) {
                for (chunk, dst) in dx_row.chunks_mut(LANES).enumerate() {
                    let c0 = chunk * LANES;
                    let mut acc = [0f32; LANES];
                    if accumulate {
                        acc[..dst.len()].copy_from_slice(dst);
                    }
                    for dy in (0..k).rev() {
                        let Some(i) = (row + top).checked_sub(dy).filter(|&i| i < ho) else {
                            continue;
                        };
                        let g_row = &padded[i * pw..][..pw];
                        for dx in 0..k {
                            // Input column c takes output column c + left - dx, kept at
                            // c + left - dx + lead.
                            add_tap::<1>(&mut acc, taps[dy * k + dx], &g_row[c0 + left + lead - dx..]);
                        }
                    }
                    dst.copy_from_slice(&acc[..dst.len()]);
                }
            }
            return;
        }
        if stride == 2 {
            // The same gather, with the input columns of a block of 2 x [`LANES`] split by
            // parity: those of one parity take only the kernel columns of that parity, from
            // consecutive output columns. Rows are kept `k` columns in.
            let lead = k;
            let pw = (w.div_ceil(2 * LANES) * LANES + left + 2 * k).max(wo + lead) + LANES;
            let padded = padded_rows(g, mask, wo, (lead, pw));
            for (row, dx_row) in dx_plane.chunks_exact_mut(w).enumerate().take(h) {
                for c0 in (0..w).step_by(2 * LANES) {
                    for parity in 0..2 {
                        let cols = || (0..LANES).map(|l| c0 + 2 * l + parity).take_while(|&c| c < w);
                        let mut acc = [0f32; LANES];
                        if accumulate {
                            cols().enumerate().for_each(|(l, c)| acc[l] = dx_row[c]);
                        }
                        for dy in (0..k).rev() {
                            let Some(at) = (row + top).checked_sub(dy).filter(|at| at % 2 == 0 && at / 2 < ho) else {
                                continue;
                            };
                            let g_row = &padded[at / 2 * pw..][..pw];
                            for dx in (0..k).filter(|dx| (parity + left + dx) % 2 == 0) {
                                // Input column c takes output column (c + left - dx) / 2.
                                let start = (c0 + parity + left + 2 * lead - dx) / 2;
                                add_tap::<1>(&mut acc, taps[dy * k + dx], &g_row[start..]);
                            }
                        }
                        cols().enumerate().for_each(|(l, c)| dx_row[c] = acc[l]);
                    }
                }
            }
            return;
        }
        if !accumulate {
            dx_plane.fill(0.0);
        }
        let mut masked = vec![0f32; wo];
        for i in 0..ho {
            let g_row = &g[i * wo..][..wo];
            let g_row = match mask {
                Some(m) => {
                    copy_masked(&mut masked, g_row, Some(&m[i * wo..][..wo]));
                    &masked[..]
                }
                None => g_row,
            };
            for dy in 0..k {
                let Some(row) = (i * stride + dy).checked_sub(top).filter(|&r| r < h) else {
                    continue;
                };
                let dx_row = &mut dx_plane[row * w..][..w];
                for dx in 0..k {
                    let tap = taps[dy * k + dx];
                    let js = columns(dx, (stride, left), w, wo);
                    if js.is_empty() {
                        continue; // every output column this tap would add to reads padding
                    }
                    if stride == 1 {
                        let dst = &mut dx_row[js.start + dx - left..js.end + dx - left];
                        dst.iter_mut().zip(&g_row[js]).for_each(|(o, &v)| *o += tap * v);
                    } else {
                        for j in js {
                            dx_row[j * stride + dx - left] += tap * g_row[j];
                        }
                    }
                }
            }
        }
    }
}

impl DepthwiseCpu<'_> {
    /// Geometry shared by the plane kernels: `(stride, top, left)`.
    fn geometry(&self) -> (usize, usize, usize) {
        (self.stride, self.pad.0, self.pad.1)
    }

    fn compute(
        &self,
        x: &[f32],
        mask: Option<&[u8]>,
        l1: &Layout,
        weight: &[f32],
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let k2 = weight.len() / c.max(1);
        if k2 * c != weight.len() || (k2 as f64).sqrt().fract() != 0.0 {
            candle_core::bail!("depthwise-cpu: weight of {} values for {c} channels", weight.len());
        }
        let (ho, wo) = self.out;
        let geometry = self.geometry();
        let mut out = vec![0f32; n * c * ho * wo];
        if ho * wo > 0 && h * w > 0 {
            out.par_chunks_mut(ho * wo).enumerate().for_each(|(plane, y)| {
                let ch = plane % c;
                let x_plane = &x[plane * h * w..][..h * w];
                let taps = &weight[ch * k2..][..k2];
                let m = mask.map(|m| &m[plane * h * w..][..h * w]);
                if self.gradient {
                    gradient_plane(x_plane, m, ((h, w), (ho, wo)), taps, geometry, y, false);
                } else {
                    let bias = self.bias.map_or(0.0, |b| b[ch]);
                    forward_plane(x_plane, (h, w), taps, geometry, y, (ho, wo), (Some(bias), self.clamp));
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }
}

masked_op!(DepthwiseCpu<'_>, "depthwise-cpu");

/// A dense convolution with few input channels (EfficientNet's 3-channel stride-2 stem), any
/// stride and zero padding, as sums of per-channel-pair plane passes: the same operands and
/// fields as [`DepthwiseCpu`], with a `[cout, cin, k, k]` weight. candle would run its input
/// gradient through a dilated, padded copy and an im2col buffer of `cout * k * k` rows.
#[derive(Debug, Clone, Copy)]
pub struct FewChannelConvCpu<'a>(pub DepthwiseCpu<'a>);

impl FewChannelConvCpu<'_> {
    fn compute(
        &self,
        x: &[f32],
        mask: Option<&[u8]>,
        l1: &Layout,
        weight: &[f32],
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = &self.0;
        let (n, c, h, w) = l1.shape().dims4()?;
        let (wo_ch, wi_ch, k, _) = l2.shape().dims4()?;
        let (inputs, outputs) = if op.gradient { (wo_ch, wi_ch) } else { (wi_ch, wo_ch) };
        if c != inputs {
            candle_core::bail!("few-channel-conv-cpu: input has {c} channels, weight is {:?}", l2.shape().dims());
        }
        let (ho, wo) = op.out;
        let geometry = op.geometry();
        let kernel = |o: usize, i: usize| {
            let (co, ci) = if op.gradient { (i, o) } else { (o, i) };
            &weight[(co * wi_ch + ci) * k * k..][..k * k]
        };
        let mut out = vec![0f32; n * outputs * ho * wo];
        if ho * wo > 0 && h * w > 0 {
            out.par_chunks_mut(ho * wo).enumerate().for_each(|(plane, y)| {
                let (b, o) = (plane / outputs, plane % outputs);
                for i in 0..inputs {
                    let at = (b * inputs + i) * h * w;
                    let x_plane = &x[at..at + h * w];
                    if op.gradient {
                        let m = mask.map(|m| &m[at..at + h * w]);
                        gradient_plane(x_plane, m, ((h, w), (ho, wo)), kernel(o, i), geometry, y, i > 0);
                    } else {
                        let fill = (i == 0).then(|| op.bias.map_or(0.0, |bias| bias[o]));
                        let clamp = if i + 1 == inputs { op.clamp } else { None };
                        forward_plane(x_plane, (h, w), kernel(o, i), geometry, y, (ho, wo), (fill, clamp));
                    }
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((n, outputs, ho, wo))))
    }
}

masked_op!(FewChannelConvCpu<'_>, "few-channel-conv-cpu");
