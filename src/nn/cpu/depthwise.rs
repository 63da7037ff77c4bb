//! Depthwise convolution (one `k x k` filter per channel, any stride and zero padding) and its
//! input gradient: one pass per plane, planes in parallel, with bias and a clamp (ReLU6) fused
//! into the forward and the clamp's mask into the gradient. candle would run it as `k * k`
//! full-tensor multiply-adds.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout, Result, Shape};
use rayon::prelude::*;

use super::buffers::{assume_init, uninit, MaskSlot, Scratch};
use super::operands::{active, copy_masked};

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
    /// Where the forward leaves the clamp's mask, if it is wanted (with a clamp only).
    pub mask: Option<&'a MaskSlot>,
}

/// Outputs of a row that a pass accumulates together, in registers.
const LANES: usize = 16;

/// `acc[l] += tap * src[l]`: one tap of `L` neighbouring outputs.
#[inline(always)]
fn add_tap<const L: usize>(acc: &mut [f32; L], tap: f32, src: &[f32]) {
    let src = &src[..L];
    acc.iter_mut().zip(src).for_each(|(a, &v)| *a += tap * v);
}

/// Where a row's next block of outputs starts and how wide it is: two of [`LANES`] while more
/// than one is left (twice the independent chains of additions in flight), else one.
#[inline(always)]
fn blocks(len: usize) -> impl Iterator<Item = (usize, bool)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let wide = len - at.min(len) > LANES;
        let block = (at, wide);
        at += if wide { 2 * LANES } else { LANES };
        (block.0 < len).then_some(block)
    })
}

/// `dst` (zeroed first): the input row `src` behind `left` zeros, split into `stride` phases
/// of `phase` values each, phase `r` holding padded columns `r, r + stride, ...`, so that every
/// tap of a strided window reads consecutive values.
#[inline(always)]
fn split_phases(dst: &mut [f32], src: &[f32], stride: usize, left: usize, phase: usize) {
    dst.fill(0.0);
    if stride == 1 {
        dst[left..left + src.len()].copy_from_slice(src);
        return;
    }
    for r in 0..stride {
        // The first input column of phase r, and where it goes.
        let first = (r + stride - left % stride) % stride;
        let at = r * phase + (first + left) / stride;
        let taken = src.len().saturating_sub(first).div_ceil(stride);
        dst[at..at + taken].iter_mut().zip(src.iter().skip(first).step_by(stride)).for_each(|(d, &v)| *d = v);
    }
}

multiversion! {
    /// One plane of the forward: `y (ho x wo) = bias + sum of taps[dy * k + dx] * x (h x w) at
    /// (i * stride + dy - top, j * stride + dx - left)`, clamped to `[0, clamp]` if given, with
    /// the clamp's mask beside it where `y` comes with a mask plane. The input rows are first
    /// split into phases (see [`split_phases`]) with zeros around them, so that [`LANES`]
    /// outputs take every tap from consecutive values in registers and are stored once (taps
    /// that read padding add zeros, which leaves every sum as it was).
    pub fn forward_plane(
        x: &[f32],
        size: (usize, usize),
        taps: &[f32],
        geometry: (usize, usize, usize),
        y: (&mut [MaybeUninit<f32>], Option<&mut [MaybeUninit<u8>]>),
        out: (usize, usize),
        epilogue: (f32, Option<f32>),
    ) {
        let (stride, top, left) = geometry;
        // The compiler specialises the common strides.
        match stride {
            1 => forward_strided(x, size, taps, (1, top, left), y, out, epilogue),
            2 => forward_strided(x, size, taps, (2, top, left), y, out, epilogue),
            _ => forward_strided(x, size, taps, geometry, y, out, epilogue),
        }
    }
}

/// [`forward_plane`]'s body.
#[inline(always)]
fn forward_strided(
    x: &[f32],
    (h, w): (usize, usize),
    taps: &[f32],
    (stride, top, left): (usize, usize, usize),
    (y, mut mask): (&mut [MaybeUninit<f32>], Option<&mut [MaybeUninit<u8>]>),
    (ho, wo): (usize, usize),
    (bias, clamp): (f32, Option<f32>),
) {
    let k = (taps.len() as f64).sqrt() as usize;
    // Output j's tap dx reads padded column j * stride + dx: index j + dx / stride of phase
    // dx % stride. Padded columns end before wo * stride + k - 1; blocks of outputs may run
    // up to 2 * LANES - 1 past the last.
    let phase = wo.div_ceil(LANES) * LANES + LANES + (k - 1) / stride + 1;
    let row_len = stride * phase;
    let mut padded = Scratch::new(h * row_len);
    for (dst, src) in padded.chunks_exact_mut(row_len).zip(x.chunks_exact(w)) {
        split_phases(dst, src, stride, left, phase);
    }
    let rows = (&padded[..], row_len, phase);
    for (i, y_row) in y.chunks_exact_mut(wo).enumerate().take(ho) {
        for (j0, wide) in blocks(wo) {
            let mut sums = [0f32; 2 * LANES];
            let n = if wide {
                sums = forward_block(rows, taps, (k, stride, top, h), (i, j0), bias);
                2 * LANES
            } else {
                sums[..LANES].copy_from_slice(&forward_block::<LANES>(rows, taps, (k, stride, top, h), (i, j0), bias));
                LANES
            };
            let y_out = &mut y_row[j0..(j0 + n).min(wo)];
            let acc = &mut sums[..y_out.len()];
            if let Some(upper) = clamp {
                acc.iter_mut().for_each(|v| *v = v.clamp(0.0, upper));
                if let Some(mask) = mask.as_deref_mut() {
                    let at = i * wo + j0;
                    mask[at..at + acc.len()].iter_mut().zip(&*acc).for_each(|(m, &v)| {
                        m.write(active(v, upper));
                    });
                }
            }
            y_out.iter_mut().zip(&*acc).for_each(|(d, &v)| {
                d.write(v);
            });
        }
    }
}

/// The gradient's sums of `L` padded input columns `(m0 + l) * stride + r` of the padded
/// input row `at`, in registers, from the masked output-gradient `rows` (`padded`, row
/// length, output rows) kept `lead` columns in.
#[inline(always)]
fn gradient_block<const L: usize>(
    (padded, pw, ho): (&[f32], usize, usize),
    taps: &[f32],
    (k, stride, lead): (usize, usize, usize),
    (at, r, m0): (usize, usize, usize),
) -> [f32; L] {
    let mut acc = [0f32; L];
    for dy in (at % stride..k.min(at + 1)).step_by(stride) {
        let i = (at - dy) / stride;
        if i >= ho {
            continue;
        }
        let g_row = &padded[i * pw..][..pw];
        for (q, dx) in (r..k).step_by(stride).enumerate() {
            add_tap(&mut acc, taps[dy * k + dx], &g_row[m0 + lead - q..]);
        }
    }
    acc
}

/// The forward's sums of `L` outputs of row `i` from column `j0`, in registers: `bias` plus
/// every tap of every kernel row inside the input, from the phase-split `rows` (`padded`,
/// row length, phase length).
#[inline(always)]
fn forward_block<const L: usize>(
    (padded, row_len, phase): (&[f32], usize, usize),
    taps: &[f32],
    (k, stride, top, h): (usize, usize, usize, usize),
    (i, j0): (usize, usize),
    bias: f32,
) -> [f32; L] {
    let mut acc = [bias; L];
    for dy in 0..k {
        let Some(row) = (i * stride + dy).checked_sub(top).filter(|&r| r < h) else {
            continue;
        };
        let src_row = &padded[row * row_len..][..row_len];
        for dx in 0..k {
            add_tap(&mut acc, taps[dy * k + dx], &src_row[dx % stride * phase + j0 + dx / stride..]);
        }
    }
    acc
}

multiversion! {
    /// One plane of the input gradient (`sizes`: output, then input): every input element of
    /// `dx_plane` (`h x w`) gathers the output-gradient elements `g (ho x wo)` (zero where
    /// `mask` is) that read it, each times the tap it was read with. The masked gradient rows
    /// are copied behind zeros; the padded input columns of one phase (`c + left ≡ r` modulo
    /// the stride) take the taps `dx ≡ r` from consecutive output columns, [`LANES`] columns
    /// at a time in registers; the phases are interleaved back into a row buffer.
    pub fn gradient_plane(
        g: &[f32],
        mask: Option<&[u8]>,
        sizes: ((usize, usize), (usize, usize)),
        taps: &[f32],
        geometry: (usize, usize, usize),
        dx_plane: &mut [MaybeUninit<f32>],
    ) {
        let (stride, top, left) = geometry;
        // The compiler specialises the common strides.
        match stride {
            1 => gradient_strided(g, mask, sizes, taps, (1, top, left), dx_plane),
            2 => gradient_strided(g, mask, sizes, taps, (2, top, left), dx_plane),
            _ => gradient_strided(g, mask, sizes, taps, geometry, dx_plane),
        }
    }
}

/// [`gradient_plane`]'s body.
#[inline(always)]
fn gradient_strided(
    g: &[f32],
    mask: Option<&[u8]>,
    ((ho, wo), (h, w)): ((usize, usize), (usize, usize)),
    taps: &[f32],
    (stride, top, left): (usize, usize, usize),
    dx_plane: &mut [MaybeUninit<f32>],
) {
    let k = (taps.len() as f64).sqrt() as usize;
    // Padded input column m * stride + r takes output column m - q through tap r + q * stride;
    // output column j is kept at j + lead in its padded row.
    let lead = (k - 1) / stride;
    // Padded input columns m * stride + r for m < columns cover the input; blocks of them may
    // run up to 2 * LANES - 1 past the last.
    let columns = (left + w).div_ceil(stride);
    let span = columns.div_ceil(LANES) * LANES + LANES;
    let pw = span.max(wo) + lead;
    let mut padded = Scratch::new(ho * pw);
    for (i, dst) in padded.chunks_exact_mut(pw).enumerate() {
        dst.fill(0.0);
        copy_masked(&mut dst[lead..lead + wo], &g[i * wo..][..wo], mask.map(|m| &m[i * wo..][..wo]));
    }
    let mut line = Scratch::new(span * stride);
    let g_rows = (&padded[..], pw, ho);
    for (row, dx_row) in dx_plane.chunks_exact_mut(w).enumerate().take(h) {
        let at = row + top;
        for (m0, wide) in blocks(columns) {
            let n = if wide { 2 * LANES } else { LANES };
            // The block's padded columns (m0 + l) * stride + r, one chunk of `stride` per l.
            let block = &mut line[m0 * stride..(m0 + n) * stride];
            for r in 0..stride {
                let mut sums = [0f32; 2 * LANES];
                if wide {
                    sums = gradient_block(g_rows, taps, (k, stride, lead), (at, r, m0));
                } else {
                    sums[..LANES].copy_from_slice(&gradient_block::<LANES>(
                        g_rows,
                        taps,
                        (k, stride, lead),
                        (at, r, m0),
                    ));
                }
                block.chunks_exact_mut(stride).zip(&sums[..n]).for_each(|(d, &v)| d[r] = v);
            }
        }
        dx_row.iter_mut().zip(&line[left..]).for_each(|(d, &v)| {
            d.write(v);
        });
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
        let shape = Shape::from((n, c, ho, wo));
        if h * w == 0 {
            return Ok((CpuStorage::F32(vec![0f32; n * c * ho * wo]), shape));
        }
        let geometry = self.geometry();
        let mut out = uninit(n * c * ho * wo);
        let clamp_mask = self.clamp.filter(|_| !self.gradient).zip(self.mask);
        let mut mask_out = clamp_mask.map(|_| uninit::<u8>(n * c * ho * wo));
        let plane_pass = |plane: usize, y: &mut [MaybeUninit<f32>], mask_out: Option<&mut [MaybeUninit<u8>]>| {
            let ch = plane % c;
            let x_plane = &x[plane * h * w..][..h * w];
            let taps = &weight[ch * k2..][..k2];
            let m = mask.map(|m| &m[plane * h * w..][..h * w]);
            if self.gradient {
                gradient_plane(x_plane, m, ((h, w), (ho, wo)), taps, geometry, y);
            } else {
                let bias = self.bias.map_or(0.0, |b| b[ch]);
                forward_plane(x_plane, (h, w), taps, geometry, (y, mask_out), (ho, wo), (bias, self.clamp));
            }
        };
        if ho * wo > 0 {
            let planes = out.par_chunks_mut(ho * wo).enumerate();
            match mask_out.as_mut() {
                Some(m) => planes.zip(m.par_chunks_mut(ho * wo)).for_each(|((p, y), m)| plane_pass(p, y, Some(m))),
                None => planes.for_each(|(p, y)| plane_pass(p, y, None)),
            }
        }
        if let (Some(m), Some((_, slot))) = (mask_out, clamp_mask) {
            // SAFETY: every plane's pass wrote each element of its mask plane.
            slot.put(unsafe { assume_init(m) });
        }
        // SAFETY: every plane's pass wrote each of its elements.
        Ok((CpuStorage::F32(unsafe { assume_init(out) }), shape))
    }
}

masked_op!(DepthwiseCpu<'_>, "depthwise-cpu");
