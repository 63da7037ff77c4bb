//! 1x1 (pointwise) convolution and its input gradient as GEMMs over bands of pixels, bands in
//! parallel, with bias and a clamp (ReLU / ReLU6) applied to each band's output while it is
//! in cache and the clamp's mask applied to each band's input as it is copied out. candle
//! would first copy the input through its im2col; one GEMM over the whole image, with the
//! bias filled in before and the clamp after, made four passes over outputs tens of MB large.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout, Result, Shape};
use gemm::Parallelism;
use rayon::prelude::*;

use super::buffers::{assume_init, uninit, MaskSlot, Scratch, SharedMut};
use super::operands::{copy_masked, epilogue};
use super::pointwise_avx2::{self, PackedWeights};

/// A 1x1 convolution of an `F32` NCHW CPU tensor (first operand) with a contiguous
/// `[cout, cin, 1, 1]` weight (second operand), or, with `gradient`, the input gradient of one
/// given the output gradient. A third `U8` operand shaped like the first masks it.
#[derive(Debug, Clone, Copy)]
pub struct Conv1x1Cpu<'a> {
    /// Per-output-channel bias (forward only).
    pub bias: Option<&'a [f32]>,
    /// Clamp the forward's result to `[0, clamp]` (ReLU: infinity, ReLU6: 6).
    pub clamp: Option<f32>,
    /// Compute the input gradient instead of the convolution.
    pub gradient: bool,
    /// Where the forward leaves the clamp's mask, if it is wanted (with a clamp only).
    pub mask: Option<&'a MaskSlot>,
    /// The layer's weight as the AVX2 kernel reads it, kept after first use.
    pub packed: &'a PackedWeights,
}

/// Input and output values of one band of pixels (256 KiB): the band's output is still in
/// cache when the bias and clamp are applied to it.
const BAND_VALUES: usize = 1 << 16;

/// Unmasked inputs of this many channels or more go to the gemm crate, which reads them in
/// place: copying them into the AVX2 kernel's panels costs more than the fused epilogue
/// saves (measured on EfficientNet-Lite0's projections of 240-672 channels).
const PANEL_DEPTH: usize = 192;

impl Conv1x1Cpu<'_> {
    fn compute(
        &self,
        x: &[f32],
        mask: Option<&[u8]>,
        l1: &Layout,
        weight: &[f32],
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let (wo, wi, _, _) = l2.shape().dims4()?;
        // Forward: out (wo x hw) = W (wo x wi) x (wi x hw); gradient: out (wi x hw) = Wᵀ g.
        let (cout, row_stride, col_stride) = if self.gradient { (wi, 1, wi) } else { (wo, wi, 1) };
        if c != if self.gradient { wo } else { wi } {
            candle_core::bail!("conv1x1-cpu: input has {c} channels, weight is {:?}", l2.shape().dims());
        }
        let hw = h * w;
        let len = n * cout * hw;
        // Pixels per band: a multiple of 16 (the GEMM's widest register block), at least 16.
        let band = (BAND_VALUES / (c + cout).max(1) / 16 * 16).clamp(16, hw.div_ceil(16) * 16);
        let bands = hw.div_ceil(band);
        let mut out = uninit::<f32>(len);
        let dst = SharedMut(out.as_mut_ptr().cast::<f32>());
        let packed = (pointwise_avx2::available() && (mask.is_some() || c < PANEL_DEPTH)).then(|| {
            self.packed.get(self.gradient, || pointwise_avx2::pack(weight, cout, c, (row_stride, col_stride)))
        });
        let clamp = self.clamp.filter(|_| !self.gradient);
        let clamp_mask = clamp.zip(self.mask);
        // The AVX2 kernel writes the mask through pointers only, so it need not be cleared;
        // the gemm crate's epilogue takes it as slices, which must hold values.
        let mut mask_out = clamp_mask.map(|_| {
            let mut mask = uninit::<u8>(len);
            if packed.is_none() {
                mask.fill(MaybeUninit::new(0));
            }
            mask
        });
        let mask_dst = mask_out.as_mut().map(|m| SharedMut(m.as_mut_ptr().cast::<u8>()));
        (0..n * bands).into_par_iter().for_each(|job| {
            let (b, j0) = (job / bands, job % bands * band);
            let cols = band.min(hw - j0);
            let at = |i: usize| b * c * hw + i * hw + j0;
            let offset = b * cout * hw + j0;
            // SAFETY: in both paths below, this job alone writes columns j0..j0 + cols of every
            // output row of image b (dst + b * cout * hw, row stride hw), and of its mask (same
            // layout), and reads them only after writing them.
            let (out_b, mask_b) = unsafe { (dst.get().add(offset), mask_dst.map(|m| m.get().add(offset))) };
            if let Some(packed) = packed {
                let job = pointwise_avx2::Band {
                    packed,
                    rows: cout,
                    depth: c,
                    x: &x[at(0)..],
                    stride: hw,
                    keep: mask.map(|m| &m[at(0)..]),
                    cols,
                    bias: self.bias,
                    clamp,
                };
                // SAFETY: the kernel is available (checked above); out_b and mask_b take cols
                // values per row (see above).
                unsafe { pointwise_avx2::band(&job, out_b, mask_b, hw) };
                return;
            }
            // The band's input, copied out masked where there is a mask.
            let mut kept = mask.map(|_| Scratch::new(c * cols));
            let (rhs, rhs_stride) = match (mask, kept.as_mut()) {
                (Some(m), Some(kept)) => {
                    for (i, row) in kept.chunks_exact_mut(cols).enumerate() {
                        copy_masked_row(row, &x[at(i)..at(i) + cols], &m[at(i)..at(i) + cols]);
                    }
                    (kept.as_ptr(), cols)
                }
                _ => (x[b * c * hw + j0..].as_ptr(), hw),
            };
            // SAFETY: see above for the outputs; lhs reads weight[o * row_stride + i *
            // col_stride] for o < cout, i < c, within the wo * wi weight; rhs reads `cols`
            // columns of c rows `rhs_stride` apart, inside `kept` or inside image b of x.
            unsafe {
                gemm::gemm(
                    cout,
                    cols,
                    c,
                    out_b,
                    1,
                    hw as isize,
                    false,
                    weight.as_ptr(),
                    col_stride as isize,
                    row_stride as isize,
                    rhs,
                    1,
                    rhs_stride as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
                if self.bias.is_some() || clamp.is_some() {
                    for o in 0..cout {
                        let row = std::slice::from_raw_parts_mut(out_b.add(o * hw), cols);
                        let mask_row = mask_b.map(|m| std::slice::from_raw_parts_mut(m.add(o * hw), cols));
                        epilogue(row, self.bias.map_or(0.0, |bias| bias[o]), clamp, mask_row);
                    }
                }
            }
        });
        if let (Some(mask_out), Some((_, slot))) = (mask_out, clamp_mask) {
            // SAFETY: the jobs wrote every column of every row of every image of the mask
            // (with the clamp, the epilogue writes it).
            slot.put(unsafe { assume_init(mask_out) });
        }
        // SAFETY: as above, for every output row.
        Ok((CpuStorage::F32(unsafe { assume_init(out) }), Shape::from((n, cout, h, w))))
    }
}

multiversion! {
    /// `dst = src` where `mask` is non-zero, 0 elsewhere (see [`copy_masked`]).
    fn copy_masked_row(dst: &mut [f32], src: &[f32], mask: &[u8]) {
        copy_masked(dst, src, Some(mask));
    }
}

masked_op!(Conv1x1Cpu<'_>, "conv1x1-cpu");
