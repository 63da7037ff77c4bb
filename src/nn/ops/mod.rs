//! The ops a model compiles to, their forward pass with a compact record of what the backward
//! needs, and the input-gradient backward pass, with fused convolution + activation (+ pool)
//! steps on the CPU.

use candle_core::{DType, Result, Tensor};

mod concat;

use super::conv::{Conv2d, DepthwiseConv2d};
use super::cpu::{cpu_f32, MaxPool2Cpu, PoolMaskCpu, PoolRouteCpu};
use super::elementwise::active_mask;
use super::padding::pad_spatial;
use super::pool::MaxPool;
use concat::{Concat, ConcatRecord};

/// One step of a network.
#[derive(Debug, Clone)]
pub enum Op {
    /// `(x - mean) * scale` per channel; `mean` and `scale` are `[1, C, 1, 1]`.
    Normalize {
        /// Per-channel mean.
        mean: Tensor,
        /// Per-channel scale (1 / standard deviation).
        scale: Tensor,
    },
    /// Dense convolution.
    Conv(Conv2d),
    /// Depthwise convolution.
    Depthwise(DepthwiseConv2d),
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// 2x2 max-pool with stride 2, floor mode (odd trailing rows/columns are dropped).
    MaxPool2,
    /// Max-pool with any window, stride, padding and rounding ([`MaxPool`]).
    MaxPool(MaxPool),
    /// `x + body(x)`.
    Residual(Vec<Op>),
    /// Every branch run on the same input, their outputs concatenated along the channels in
    /// branch order (an Inception block): see [`Op::concat`].
    Concat(Concat),
}

/// What an op's backward needs from its forward.
pub(super) enum Record {
    None,
    /// Spatial size of the input.
    Size(usize, usize),
    /// `u8` mask of where the gradient passes.
    Mask(Tensor),
    /// `u8` mask of the pooled maxima over the cropped input, and the input size.
    Pool(Tensor, usize, usize),
    /// `u8` mask of the pooled maxima over the whole input (CPU kernels).
    PoolCpu(Tensor),
    /// `u8` offset of each output's maximum inside its window, and the input size.
    Argmax(Tensor, usize, usize),
    Seq(Vec<Record>),
    Concat(ConcatRecord),
}

impl Op {
    /// Every branch of `branches` run on the same input, their outputs concatenated along the
    /// channels in branch order; the branches must agree on the output size. Branches that
    /// start with a 1x1 convolution and a ReLU have those run as one convolution.
    pub fn concat(branches: Vec<Vec<Op>>) -> Result<Op> {
        Ok(Op::Concat(Concat::new(branches)?))
    }

    fn forward(&self, x: &Tensor, record: bool) -> Result<(Tensor, Record)> {
        let (_, _, h, w) = x.dims4()?;
        Ok(match self {
            Op::Normalize { mean, scale } => (x.broadcast_sub(mean)?.broadcast_mul(scale)?, Record::None),
            Op::Conv(c) => (c.forward(x)?, Record::Size(h, w)),
            Op::Depthwise(c) => (c.forward(x)?, Record::Size(h, w)),
            Op::Relu => {
                let y = x.relu()?;
                (y.clone(), if record { Record::Mask(active_mask(&y, f32::INFINITY)?) } else { Record::None })
            }
            Op::Relu6 => {
                let y = x.clamp(0.0, 6.0)?;
                (y.clone(), if record { Record::Mask(active_mask(&y, 6.0)?) } else { Record::None })
            }
            Op::MaxPool2 if cpu_f32(x) => {
                let x = x.contiguous()?;
                let rec = if record {
                    Record::PoolCpu(x.apply_op1_no_bwd(&PoolMaskCpu { positive: false })?)
                } else {
                    Record::None
                };
                (x.apply_op1_no_bwd(&MaxPool2Cpu)?, rec)
            }
            Op::MaxPool2 => {
                let (ho, wo) = (h / 2, w / 2);
                let cropped = x.narrow(2, 0, 2 * ho)?.narrow(3, 0, 2 * wo)?;
                let y = cropped.max_pool2d(2)?;
                let rec = if record {
                    Record::Pool(cropped.eq(&y.upsample_nearest2d(2 * ho, 2 * wo)?)?, h, w)
                } else {
                    Record::None
                };
                (y, rec)
            }
            Op::MaxPool(pool) => {
                let (y, offsets) = pool.forward(x, record)?;
                (y, offsets.map_or(Record::None, |o| Record::Argmax(o, h, w)))
            }
            Op::Residual(body) => {
                let (y, recs) = run_forward(body, x, record)?;
                ((x + y)?, Record::Seq(recs))
            }
            Op::Concat(block) => {
                let (y, rec) = block.forward(x, record)?;
                (y, Record::Concat(rec))
            }
        })
    }

    fn backward(&self, grad: &Tensor, rec: &Record) -> Result<Tensor> {
        match (self, rec) {
            (Op::Normalize { scale, .. }, _) => grad.broadcast_mul(scale),
            (Op::Conv(c), Record::Size(h, w)) => c.backward(grad, (*h, *w)),
            (Op::Depthwise(c), Record::Size(h, w)) => c.backward(grad, (*h, *w)),
            (Op::Relu | Op::Relu6, Record::Mask(m)) => grad * m.to_dtype(grad.dtype())?,
            (Op::MaxPool2, Record::Pool(mask, h, w)) => {
                // Ties only occur between zeros that the preceding ReLU blocks anyway, so every
                // maximum receives the full gradient (candle's backward divides it instead).
                let (_, _, ho, wo) = grad.dims4()?;
                let routed = (grad.upsample_nearest2d(2 * ho, 2 * wo)? * mask.to_dtype(grad.dtype())?)?;
                pad_spatial(&routed, 0, h - 2 * ho, 0, w - 2 * wo)
            }
            (Op::MaxPool2, Record::PoolCpu(mask)) => grad.contiguous()?.apply_op2_no_bwd(mask, &PoolRouteCpu),
            (Op::MaxPool(pool), Record::Argmax(offsets, h, w)) => pool.backward(grad, offsets, (*h, *w)),
            (Op::Residual(body), Record::Seq(recs)) => grad + run_backward(body, recs, grad)?,
            (Op::Concat(block), Record::Concat(rec)) => block.backward(grad, rec),
            _ => Err(candle_core::Error::Msg("backward called without a forward record".into())),
        }
    }

    /// How many input pixels one output pixel steps over (along each axis).
    pub(super) fn stride(&self) -> usize {
        match self {
            Op::Conv(c) => c.stride(),
            Op::Depthwise(c) => c.stride(),
            Op::MaxPool2 => 2,
            Op::MaxPool(pool) => pool.stride(),
            Op::Residual(body) => body.iter().map(Op::stride).product(),
            Op::Concat(block) => block.stride(),
            Op::Normalize { .. } | Op::Relu | Op::Relu6 => 1,
        }
    }

    pub(super) fn to_dtype(&self, dtype: DType) -> Result<Op> {
        Ok(match self {
            Op::Normalize { mean, scale } => {
                Op::Normalize { mean: mean.to_dtype(dtype)?, scale: scale.to_dtype(dtype)? }
            }
            Op::Conv(c) => Op::Conv(c.to_dtype(dtype)?),
            Op::Depthwise(c) => Op::Depthwise(c.to_dtype(dtype)?),
            Op::Relu => Op::Relu,
            Op::Relu6 => Op::Relu6,
            Op::MaxPool2 => Op::MaxPool2,
            Op::MaxPool(pool) => Op::MaxPool(*pool),
            Op::Residual(body) => Op::Residual(body.iter().map(|o| o.to_dtype(dtype)).collect::<Result<_>>()?),
            Op::Concat(block) => Op::Concat(block.to_dtype(dtype)?),
        })
    }
}

/// Whether `ops[i]` and its activation `ops[i + 1]` run as one fused op (a convolution or
/// depthwise convolution and a ReLU or ReLU6): always, unless the convolution's output itself
/// is needed (`exposed(i + 1)`: an objective taps it).
fn fuses(ops: &[Op], i: usize, exposed: &dyn Fn(usize) -> bool) -> bool {
    let pair =
        matches!((ops.get(i), ops.get(i + 1)), (Some(Op::Conv(_) | Op::Depthwise(_)), Some(Op::Relu | Op::Relu6)));
    pair && !exposed(i + 1)
}

/// Runs `ops[i]` on `x`, or `ops[i]` and `ops[i + 1]` fused when they fuse (see [`fuses`]),
/// or a convolution, ReLU and max-pool as one on `F32` CPU tensors when neither the
/// convolution's nor the ReLU's output is exposed: the pool's mask of positive maxima then
/// stands for both masks, and the backward needs no routed gradient; pushes one record per op
/// and returns the output and the number of ops run.
pub(super) fn forward_at(
    ops: &[Op],
    i: usize,
    exposed: &dyn Fn(usize) -> bool,
    x: &Tensor,
    record: bool,
    recs: &mut Vec<Record>,
) -> Result<(Tensor, usize)> {
    if let (Some(Op::Conv(conv)), Some(Op::Relu), Some(Op::MaxPool2)) = (ops.get(i), ops.get(i + 1), ops.get(i + 2)) {
        if cpu_f32(x) && !exposed(i + 1) && !exposed(i + 2) {
            let (_, _, h, w) = x.dims4()?;
            let y = conv.forward_activated(x, f32::INFINITY)?.contiguous()?;
            let pool = if record {
                Record::PoolCpu(y.apply_op1_no_bwd(&PoolMaskCpu { positive: true })?)
            } else {
                Record::None
            };
            recs.extend([Record::Size(h, w), Record::None, pool]);
            return Ok((y.apply_op1_no_bwd(&MaxPool2Cpu)?, 3));
        }
    }
    if fuses(ops, i, exposed) {
        let (_, _, h, w) = x.dims4()?;
        let upper = if matches!(ops[i + 1], Op::Relu6) { 6.0 } else { f32::INFINITY };
        let (y, mask) = match (&ops[i], record) {
            (Op::Conv(conv), true) => conv.forward_activated_masked(x, upper).map(|(y, m)| (y, Some(m)))?,
            (Op::Conv(conv), false) => (conv.forward_activated(x, upper)?, None),
            (Op::Depthwise(conv), true) => conv.forward_clamped_masked(x, upper).map(|(y, m)| (y, Some(m)))?,
            (Op::Depthwise(conv), false) => (conv.forward_clamped(x, upper)?, None),
            _ => return Err(candle_core::Error::Msg("only convolutions fuse with an activation".into())),
        };
        recs.push(Record::Size(h, w));
        recs.push(mask.map_or(Record::None, Record::Mask));
        return Ok((y, 2));
    }
    let (y, rec) = ops[i].forward(x, record)?;
    recs.push(rec);
    Ok((y, 1))
}

/// Gradient through `ops[..end]`'s last op, or its last two or three when [`forward_at`] ran
/// them as one; returns the gradient and the number of ops passed.
pub(super) fn backward_at(
    ops: &[Op],
    recs: &[Record],
    end: usize,
    exposed: &dyn Fn(usize) -> bool,
    grad: &Tensor,
) -> Result<(Tensor, usize)> {
    if end >= 3 {
        let fused = (&ops[end - 3..end], &recs[end - 3..end]);
        if let ([Op::Conv(conv), Op::Relu, Op::MaxPool2], [Record::Size(h, w), Record::None, Record::PoolCpu(mask)]) =
            fused
        {
            return Ok((conv.backward_pooled(grad, mask, (*h, *w))?, 3));
        }
    }
    if end >= 2 && fuses(ops, end - 2, exposed) {
        if let (Record::Size(h, w), Record::Mask(mask)) = (&recs[end - 2], &recs[end - 1]) {
            match &ops[end - 2] {
                Op::Conv(conv) => return Ok((conv.backward_masked(grad, mask, (*h, *w))?, 2)),
                Op::Depthwise(conv) => return Ok((conv.backward_masked(grad, mask, (*h, *w))?, 2)),
                _ => {}
            }
        }
    }
    Ok((ops[end - 1].backward(grad, &recs[end - 1])?, 1))
}

pub(super) fn run_forward(ops: &[Op], x: &Tensor, record: bool) -> Result<(Tensor, Vec<Record>)> {
    let mut x = x.clone();
    let mut recs = Vec::with_capacity(ops.len());
    let mut i = 0;
    while i < ops.len() {
        let (y, ran) = forward_at(ops, i, &|_| false, &x, record, &mut recs)?;
        x = y;
        i += ran;
    }
    Ok((x, recs))
}

pub(super) fn run_backward(ops: &[Op], recs: &[Record], grad: &Tensor) -> Result<Tensor> {
    let mut g = grad.clone();
    let mut end = ops.len();
    while end > 0 {
        let (next, passed) = backward_at(ops, recs, end, &|_| false, &g)?;
        g = next;
        end -= passed;
    }
    Ok(g)
}
