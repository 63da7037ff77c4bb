//! 1x1 (pointwise) convolution and its input gradient as one GEMM per image, with bias and a
//! clamp (ReLU / ReLU6) fused into the forward and the clamp's mask into the gradient. candle
//! would first copy the input through its im2col.

use candle_core::{CpuStorage, Layout, Result, Shape};
use gemm::Parallelism;
use rayon::prelude::*;

use super::operands::masked;

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
}

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
        let kept;
        let x = match mask {
            Some(m) => {
                kept = x.par_iter().zip(m).map(|(&v, &keep)| masked(v, keep)).collect::<Vec<f32>>();
                &kept[..]
            }
            None => x,
        };
        let mut out = vec![0f32; n * cout * hw];
        for (b, out_b) in out.chunks_exact_mut(cout * hw).enumerate() {
            if let Some(bias) = self.bias {
                out_b.par_chunks_mut(hw).zip(bias).for_each(|(row, &v)| row.fill(v));
            }
            // SAFETY: dst is cout x hw (row stride hw) inside out_b; lhs reads
            // weight[o * row_stride + i * col_stride] for o < cout, i < c, within the wo * wi
            // weight; rhs reads x[b * c * hw + i * hw + j] for i < c, j < hw.
            unsafe {
                gemm::gemm(
                    cout,
                    hw,
                    c,
                    out_b.as_mut_ptr(),
                    1,
                    hw as isize,
                    self.bias.is_some(),
                    weight.as_ptr(),
                    col_stride as isize,
                    row_stride as isize,
                    x.as_ptr().add(b * c * hw),
                    1,
                    hw as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::Rayon(rayon::current_num_threads()),
                );
            }
            if let Some(upper) = self.clamp {
                out_b.par_chunks_mut(1 << 14).for_each(|v| v.iter_mut().for_each(|v| *v = v.clamp(0.0, upper)));
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, cout, h, w))))
    }
}

masked_op!(Conv1x1Cpu<'_>, "conv1x1-cpu");
