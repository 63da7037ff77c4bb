//! Dense convolutions with few input channels (EfficientNet's 3x3 stride-2 stem, GoogLeNet's
//! 7x7 stride-2 `conv1`) and their input gradient as GEMMs over unfolded input patches
//! (im2col), a band of output rows at a time so that the patches stay cache-sized at any frame
//! size. Plane passes like [`super::depthwise`]'s would make `cin * k * k` strided passes over
//! every output plane, which hardly vectorise, and give the gradient only `cin` planes to
//! share between threads: for these stems they took a quarter to a half of a whole dream step.
//! Bias and a clamp are fused into the forward, the clamp's mask into the gradient.

use std::ops::Range;

use candle_core::{CpuStorage, Layout, Result, Shape};
use gemm::Parallelism;
use rayon::prelude::*;

use super::buffers::{assume_init, uninit, Scratch, SharedMut};
use super::depthwise::DepthwiseCpu;
use super::operands::{copy_masked, epilogue};
use super::pointwise_avx2::{self, PackedWeights};
use crate::nn::padding::columns;

/// Unfolded patch values per band (1 MiB).
const BAND_VALUES: usize = 1 << 18;

/// Patch and output values per band of [`UnfoldedConvCpu::forward_panels`] (256 KiB).
const PANEL_VALUES: usize = 1 << 16;

/// A dense convolution of an `F32` NCHW CPU tensor (first operand) with a contiguous
/// `[cout, cin, k, k]` weight (second operand), or, with `gradient`, the input gradient of one
/// given the output gradient: the same operands as [`DepthwiseCpu`]'s. A third `U8` operand
/// shaped like the first masks it.
#[derive(Debug, Clone, Copy)]
pub struct UnfoldedConvCpu<'a> {
    /// Geometry, bias, clamp, direction and mask slot, as for a depthwise convolution.
    pub conv: DepthwiseCpu<'a>,
    /// The layer's weight as the AVX2 kernel reads it, kept after first use.
    pub packed: &'a PackedWeights,
}

/// One image's output gradient, and where it is masked its mask and, for the gemm crate, a
/// buffer for a band of the masked gradient.
type Gradient<'a> = (&'a [f32], Option<(&'a [u8], Option<&'a mut [f32]>)>);

/// The sizes one band works with.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// Input channels of the forward.
    cin: usize,
    /// Output channels of the forward.
    cout: usize,
    /// Side of the kernel.
    k: usize,
    /// The forward's input size.
    image: (usize, usize),
    /// The forward's output size.
    out: (usize, usize),
}

impl Geometry {
    /// Rows of the unfolded patches: one per input channel and kernel position.
    fn taps(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// Input channel, kernel row and kernel column of patch row `t`.
    fn tap(&self, t: usize) -> (usize, usize, usize) {
        (t / (self.k * self.k), t / self.k % self.k, t % self.k)
    }
}

impl UnfoldedConvCpu<'_> {
    fn compute(
        &self,
        x: &[f32],
        mask: Option<&[u8]>,
        l1: &Layout,
        weight: &[f32],
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = &self.conv;
        let (n, c, h, w) = l1.shape().dims4()?;
        let (cout, cin, k, _) = l2.shape().dims4()?;
        let (inputs, outputs) = if op.gradient { (cout, cin) } else { (cin, cout) };
        if c != inputs {
            candle_core::bail!("unfolded-conv-cpu: input has {c} channels, weight is {:?}", l2.shape().dims());
        }
        let (ho, wo) = op.out;
        let (image, out) = if op.gradient { ((ho, wo), (h, w)) } else { ((h, w), (ho, wo)) };
        let g = Geometry { cin, cout, k, image, out };
        let shape = Shape::from((n, outputs, ho, wo));
        if ho * wo == 0 || h * w == 0 {
            return Ok((CpuStorage::F32(vec![0f32; n * outputs * ho * wo]), shape));
        }
        if !op.gradient && pointwise_avx2::available() {
            return Ok((CpuStorage::F32(self.forward_panels(&g, x, weight, n)), shape));
        }
        let rows_per_band = (BAND_VALUES / (g.taps() * out.1).max(1)).clamp(1, out.0.max(1));
        let mut result = vec![0f32; n * outputs * ho * wo];
        // The gradient's transposed weight for [`pointwise_avx2`], where it runs.
        let packed = (op.gradient && pointwise_avx2::available())
            .then(|| self.packed.get(true, || pointwise_avx2::pack(weight, g.taps(), g.cout, (1, g.taps()))));
        // One band's unfolded patches, and for the gemm crate where there is a mask the band's
        // masked output gradient.
        let mut patches = Scratch::new(g.taps() * rows_per_band * out.1);
        let mut kept = mask.filter(|_| packed.is_none()).map(|_| Scratch::new(cout * rows_per_band * out.1));
        for (b, result_b) in result.chunks_exact_mut(outputs * ho * wo).enumerate() {
            let x_b = &x[b * c * h * w..][..c * h * w];
            for r0 in (0..out.0).step_by(rows_per_band) {
                let rows = r0..(r0 + rows_per_band).min(out.0);
                if op.gradient {
                    let mask_b = mask.map(|m| (&m[b * c * h * w..][..c * h * w], kept.as_deref_mut()));
                    let weights = (weight, packed);
                    self.gradient_band(&g, (x_b, mask_b), weights, rows, &mut patches, result_b);
                } else {
                    self.forward_band(&g, x_b, weight, rows, &mut patches, result_b);
                }
            }
        }
        Ok((CpuStorage::F32(result), shape))
    }

    /// The input row that output row `r` reads at kernel row `dy`, if inside the image.
    fn input_row(&self, g: &Geometry, r: usize, dy: usize) -> Option<usize> {
        (r * self.conv.stride + dy).checked_sub(self.conv.pad.0).filter(|&row| row < g.image.0)
    }

    /// Row `t` of the unfolded patches of output rows `rows`: the input value that tap `t`
    /// (input channel, kernel row and column) reads for each output, or 0 in the padding.
    fn unfold_tap(&self, g: &Geometry, x: &[f32], rows: Range<usize>, t: usize, patch: &mut [f32]) {
        let op = &self.conv;
        let ((h, w), (_, wo)) = (g.image, g.out);
        let (ci, dy, dx) = g.tap(t);
        let plane = &x[ci * h * w..][..h * w];
        let js = columns(dx, (op.stride, op.pad.1), w, wo);
        for (r, dst) in rows.zip(patch.chunks_exact_mut(wo)) {
            let Some(row) = self.input_row(g, r, dy) else {
                dst.fill(0.0);
                continue;
            };
            let src = &plane[row * w..][..w];
            dst[..js.start].fill(0.0);
            dst[js.end..].fill(0.0);
            if !js.is_empty() {
                let from = src[js.start * op.stride + dx - op.pad.1..].iter().step_by(op.stride);
                dst[js.clone()].iter_mut().zip(from).for_each(|(d, &v)| *d = v);
            }
        }
    }

    /// The forward on CPUs with [`pointwise_avx2`]: bands of a few output rows of every image
    /// in parallel, each band's patches unfolded, laid out as panels and multiplied by the
    /// 1x1 kernel's GEMM, which applies the bias and clamp and writes the clamp's mask where
    /// one is wanted.
    fn forward_panels(&self, g: &Geometry, x: &[f32], weight: &[f32], n: usize) -> Vec<f32> {
        let op = &self.conv;
        let ((h, w), (ho, wo)) = (g.image, g.out);
        let taps = g.taps();
        let rows_per_band = (PANEL_VALUES / ((taps + g.cout) * wo)).clamp(1, ho);
        let bands = ho.div_ceil(rows_per_band);
        let len = n * g.cout * ho * wo;
        let packed = self.packed.get(false, || pointwise_avx2::pack(weight, g.cout, taps, (taps, 1)));
        let mut y = uninit::<f32>(len);
        let clamp_mask = op.clamp.zip(op.mask);
        let mut mask = clamp_mask.map(|_| uninit::<u8>(len));
        let y_dst = SharedMut(y.as_mut_ptr().cast::<f32>());
        let mask_dst = mask.as_mut().map(|m| SharedMut(m.as_mut_ptr().cast::<u8>()));
        (0..n * bands).into_par_iter().for_each(|job| {
            let (b, r0) = (job / bands, job % bands * rows_per_band);
            let rows = r0..(r0 + rows_per_band).min(ho);
            let cols = rows.len() * wo;
            let x_b = &x[b * g.cin * h * w..][..g.cin * h * w];
            let mut patches = Scratch::new(taps * cols);
            for (t, patch) in patches.chunks_exact_mut(cols).enumerate() {
                self.unfold_tap(g, x_b, rows.clone(), t, patch);
            }
            let band = pointwise_avx2::Band {
                packed,
                rows: g.cout,
                depth: taps,
                x: &patches,
                stride: cols,
                keep: None,
                cols,
                bias: op.bias,
                clamp: op.clamp,
            };
            let at = b * g.cout * ho * wo + r0 * wo;
            // SAFETY: the kernel is available (the caller checked); this job alone writes
            // output rows `rows` (cols values from `at`) of every channel of image b, channel
            // planes ho * wo apart, in the output and in its mask (same layout).
            unsafe { pointwise_avx2::band(&band, y_dst.get().add(at), mask_dst.map(|m| m.get().add(at)), ho * wo) };
        });
        if let (Some(mask), Some((_, slot))) = (mask, clamp_mask) {
            // SAFETY: the jobs wrote every row of every channel of every image of the mask
            // (the kernel writes it with the clamp).
            slot.put(unsafe { assume_init(mask) });
        }
        // SAFETY: as above, for every output row.
        unsafe { assume_init(y) }
    }

    /// Output rows `rows` of one image: the unfolded patches of `x` (`cin x h x w`) into
    /// `patches`, then `y = W patches` into `y` (`cout x ho x wo`), with bias and clamp.
    fn forward_band(
        &self,
        g: &Geometry,
        x: &[f32],
        weight: &[f32],
        rows: Range<usize>,
        patches: &mut [f32],
        y: &mut [f32],
    ) {
        let op = &self.conv;
        let (ho, wo) = g.out;
        let len = rows.len() * wo;
        let patches = &mut patches[..g.taps() * len];
        patches.par_chunks_mut(len).enumerate().for_each(|(t, patch)| self.unfold_tap(g, x, rows.clone(), t, patch));
        let band = rows.start * wo..rows.end * wo;
        // SAFETY: dst is cout x len with row stride ho * wo starting at output row
        // `rows.start`, inside y (cout x ho x wo); lhs reads weight[o * taps + t] for o < cout,
        // t < taps, the whole weight; rhs reads patches[t * len + j] for t < taps, j < len.
        unsafe {
            gemm::gemm(
                g.cout,
                len,
                g.taps(),
                y.as_mut_ptr().add(rows.start * wo),
                1,
                (ho * wo) as isize,
                false,
                weight.as_ptr(),
                1,
                g.taps() as isize,
                patches.as_ptr(),
                1,
                len as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::Rayon(rayon::current_num_threads()),
            );
        }
        if op.bias.is_some() || op.clamp.is_some() {
            y.par_chunks_mut(ho * wo).enumerate().for_each(|(o, plane)| {
                epilogue(&mut plane[band.clone()], op.bias.map_or(0.0, |bias| bias[o]), op.clamp, None);
            });
        }
    }

    /// `patches = Wᵀ grad` for the output pixels from `at` on (as many as `patches` has
    /// columns), with [`pointwise_avx2`]: chunks of pixels in parallel, each chunk's
    /// gradient masked on its way into the kernel.
    fn patch_gradient_panels(
        &self,
        g: &Geometry,
        (grad, mask): (&[f32], Option<&[u8]>),
        packed: &[f32],
        at: usize,
        patches: &mut [f32],
    ) {
        let (ho, wo) = g.out;
        let len = patches.len() / g.taps();
        // Cache-sized chunks, at least one per thread.
        let per_thread = len.div_ceil(rayon::current_num_threads());
        let chunk = (PANEL_VALUES / (g.taps() + g.cout)).min(per_thread).next_multiple_of(pointwise_avx2::COLS);
        let dst = SharedMut(patches.as_mut_ptr());
        (0..len.div_ceil(chunk)).into_par_iter().for_each(|j| {
            let (j0, cols) = (j * chunk, chunk.min(len - j * chunk));
            let from = at + j0;
            let band = pointwise_avx2::Band {
                packed,
                rows: g.taps(),
                depth: g.cout,
                x: &grad[from..],
                stride: ho * wo,
                keep: mask.map(|m| &m[from..]),
                cols,
                bias: None,
                clamp: None,
            };
            // SAFETY: the kernel is available (the caller checked); this job alone writes
            // columns j0..j0 + cols of the taps rows of `patches` (row stride len).
            unsafe { pointwise_avx2::band(&band, dst.get().add(j0), None, len) };
        });
    }

    /// Output rows `rows` of one image's gradient `grad` (`cout x ho x wo`; with a mask, the
    /// mask and, for the gemm crate, a buffer for the masked rows), with the weight and, where
    /// [`pointwise_avx2`] runs, its packed transpose: the gradient of its unfolded patches,
    /// `Wᵀ grad`, into `patches`, then added back onto the input positions each patch value
    /// came from in `dx` (`cin x h x w`).
    fn gradient_band(
        &self,
        g: &Geometry,
        (grad, mask): Gradient<'_>,
        (weight, packed): (&[f32], Option<&[f32]>),
        rows: Range<usize>,
        patches: &mut [f32],
        dx: &mut [f32],
    ) {
        let op = &self.conv;
        let ((h, w), (ho, wo)) = (g.image, g.out);
        let len = rows.len() * wo;
        let patches = &mut patches[..g.taps() * len];
        if let Some(packed) = packed {
            self.patch_gradient_panels(g, (grad, mask.as_ref().map(|(m, _)| *m)), packed, rows.start * wo, patches);
        } else {
            let band = |o: usize| o * ho * wo + rows.start * wo..o * ho * wo + rows.end * wo;
            let (rhs, rhs_rs) = match mask {
                Some((m, kept)) => {
                    let kept =
                        &mut kept.expect("compute gives the gemm crate's masked gradient a buffer")[..g.cout * len];
                    kept.par_chunks_mut(len)
                        .enumerate()
                        .for_each(|(o, dst)| copy_masked(dst, &grad[band(o)], Some(&m[band(o)])));
                    (kept.as_ptr(), len)
                }
                None => (grad[rows.start * wo..].as_ptr(), ho * wo),
            };
            // SAFETY: dst is the taps x len `patches`; lhs reads weight[o * taps + t] (the
            // transposed weight) for t < taps, o < cout; rhs reads cout rows of len values with row
            // stride `rhs_rs`: the masked copy, or the band of `grad` (cout x ho x wo) from output
            // row `rows.start`.
            unsafe {
                gemm::gemm(
                    g.taps(),
                    len,
                    g.cout,
                    patches.as_mut_ptr(),
                    1,
                    len as isize,
                    false,
                    weight.as_ptr(),
                    g.taps() as isize,
                    1,
                    rhs,
                    1,
                    rhs_rs as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::Rayon(rayon::current_num_threads()),
                );
            }
        }
        // Each input row gathers what the patches of every kernel row and column add to it,
        // in the order of the taps, so that rows run in parallel (an image has few channels).
        let kk = g.k * g.k;
        dx.par_chunks_mut(w).enumerate().for_each(|(plane_row, dst)| {
            let (ci, row) = (plane_row / h, plane_row % h);
            for dy in 0..g.k {
                // Output row r reads input row `r * stride + dy - pad`.
                let Some(at) = (row + op.pad.0).checked_sub(dy).filter(|at| at % op.stride == 0) else { continue };
                let r = at / op.stride;
                if !rows.contains(&r) {
                    continue;
                }
                for dxk in 0..g.k {
                    let src = &patches[(ci * kk + dy * g.k + dxk) * len + (r - rows.start) * wo..][..wo];
                    let js = columns(dxk, (op.stride, op.pad.1), w, wo);
                    if !js.is_empty() {
                        let to = dst[js.start * op.stride + dxk - op.pad.1..].iter_mut().step_by(op.stride);
                        to.zip(&src[js]).for_each(|(d, &v)| *d += v);
                    }
                }
            }
        });
    }
}

masked_op!(UnfoldedConvCpu<'_>, "unfolded-conv-cpu");
