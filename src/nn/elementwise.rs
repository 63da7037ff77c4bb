//! Elementwise helpers of the backward pass: the masks of ReLU and ReLU6, and sums of gradients.

use candle_core::{Result, Tensor};

use super::cpu::{cpu_f32, ActiveMaskCpu, SumCpu};

/// The sum of `terms` (of one shape): on `F32` CPU tensors three at a time in one pass.
pub(crate) fn sum(terms: Vec<Tensor>) -> Result<Tensor> {
    let mut terms = terms.into_iter();
    let first = terms.next().ok_or_else(|| candle_core::Error::Msg("a sum of no terms".into()))?;
    if !cpu_f32(&first) {
        return terms.try_fold(first, |total, term| total + term);
    }
    let rest = terms.map(|t| t.contiguous()).collect::<Result<Vec<_>>>()?;
    rest.chunks(2).try_fold(first.contiguous()?, |total, pair| match pair.get(1) {
        Some(second) => total.apply_op3_no_bwd(&pair[0], second, &SumCpu),
        None => total.apply_op2_no_bwd(&pair[0], &SumCpu),
    })
}

/// `u8` mask of the elements of `y` strictly between 0 and `upper`: the backward of a ReLU
/// (`upper` infinite) or ReLU6 (6) with output `y`.
pub(crate) fn active_mask(y: &Tensor, upper: f32) -> Result<Tensor> {
    if cpu_f32(y) {
        y.contiguous()?.apply_op1_no_bwd(&ActiveMaskCpu { upper })
    } else if upper.is_finite() {
        y.gt(0.0)? * y.lt(upper as f64)?
    } else {
        y.gt(0.0)
    }
}
