//! Branches run on one input with their outputs concatenated along the channels (an Inception
//! block), the branches' leading 1x1 convolutions run as one.
//!
//! Three of an Inception block's four branches start with a 1x1 convolution and a ReLU of the
//! block's input. Stacked into one convolution (the stem), they take one GEMM forward and one
//! backward, whose backward also sums their input gradients, instead of three small GEMMs and
//! a sum: the 14x14 blocks of GoogLeNet are made of GEMMs too small to keep two cores busy.

use std::ops::Range;

use candle_core::{Result, Tensor};

use super::{run_backward, run_forward, Op, Record};
use crate::nn::conv::Conv2d;
use crate::nn::elementwise::sum;

/// Branches run on one input, their outputs concatenated in branch order. Build with
/// [`Op::concat`].
#[derive(Debug, Clone)]
pub struct Concat {
    /// The 1x1 convolutions (each followed by a ReLU) that two or more branches start with,
    /// stacked; its ReLU'd output feeds those branches.
    stem: Option<Conv2d>,
    branches: Vec<Branch>,
}

/// One branch: what it reads and the ops it runs.
#[derive(Debug, Clone)]
struct Branch {
    /// Its channels of the stem's output, or `None`: the block's input.
    stem_channels: Option<Range<usize>>,
    /// Its ops after the stem's part (all of them when it reads the input).
    ops: Vec<Op>,
}

/// What [`Concat`]'s backward needs from its forward.
pub(in crate::nn) struct ConcatRecord {
    /// The stem's input size and ReLU mask.
    stem: Option<((usize, usize), Tensor)>,
    /// Per branch: its output channels and its ops' records.
    branches: Vec<(usize, Vec<Record>)>,
}

impl Concat {
    /// The branches, the leading 1x1 convolution + ReLU of each that starts with one stacked
    /// into the stem when two or more do.
    pub(super) fn new(branches: Vec<Vec<Op>>) -> Result<Self> {
        let leads = |ops: &[Op]| matches!(ops, [Op::Conv(c), Op::Relu, ..] if c.is_pointwise());
        if branches.iter().filter(|b| leads(b)).count() < 2 {
            let branches = branches.into_iter().map(|ops| Branch { stem_channels: None, ops }).collect();
            return Ok(Self { stem: None, branches });
        }
        let mut heads = Vec::new();
        let mut split = Vec::with_capacity(branches.len());
        let mut width = 0;
        for mut ops in branches {
            if !leads(&ops) {
                split.push(Branch { stem_channels: None, ops });
                continue;
            }
            let Op::Conv(head) = ops.remove(0) else { unreachable!("checked by `leads`") };
            ops.remove(0);
            let out = head.weight().dim(0)?;
            split.push(Branch { stem_channels: Some(width..width + out), ops });
            width += out;
            heads.push(head);
        }
        let stem = Conv2d::stack(&heads.iter().collect::<Vec<_>>())?;
        Ok(Self { stem: Some(stem), branches: split })
    }

    pub(super) fn forward(&self, x: &Tensor, record: bool) -> Result<(Tensor, ConcatRecord)> {
        let (_, _, h, w) = x.dims4()?;
        let (stem, stem_mask) = match (&self.stem, record) {
            (Some(c), true) => c.forward_activated_masked(x, f32::INFINITY).map(|(y, m)| (Some(y), Some(m)))?,
            (Some(c), false) => (Some(c.forward_activated(x, f32::INFINITY)?), None),
            (None, _) => (None, None),
        };
        let mut outputs = Vec::with_capacity(self.branches.len());
        let mut recs = Vec::with_capacity(self.branches.len());
        for branch in &self.branches {
            let input = match (&branch.stem_channels, &stem) {
                (Some(r), Some(y)) => y.narrow(1, r.start, r.len())?,
                _ => x.clone(),
            };
            let (y, rec) = run_forward(&branch.ops, &input, record)?;
            recs.push((y.dim(1)?, rec));
            outputs.push(y);
        }
        let stem = stem_mask.map(|m| ((h, w), m));
        Ok((Tensor::cat(&outputs, 1)?, ConcatRecord { stem, branches: recs }))
    }

    /// Each branch gets its channels of `grad`; the gradients of the stem's branches pass the
    /// stem together, and every input gradient adds up.
    pub(super) fn backward(&self, grad: &Tensor, rec: &ConcatRecord) -> Result<Tensor> {
        let mut start = 0;
        let mut stem_grads = Vec::new();
        let mut input_grads = Vec::with_capacity(self.branches.len());
        for (branch, (channels, recs)) in self.branches.iter().zip(&rec.branches) {
            let g = run_backward(&branch.ops, recs, &grad.narrow(1, start, *channels)?)?;
            start += channels;
            match branch.stem_channels {
                Some(_) => stem_grads.push(g),
                None => input_grads.push(g),
            }
        }
        if let (Some(stem), Some((size, mask))) = (&self.stem, &rec.stem) {
            input_grads.insert(0, stem.backward_masked(&Tensor::cat(&stem_grads, 1)?, mask, *size)?);
        }
        sum(input_grads)
    }

    /// How many input pixels one output pixel steps over (the branches agree on it).
    pub(super) fn stride(&self) -> usize {
        self.branches.first().map_or(1, |b| b.ops.iter().map(Op::stride).product())
    }

    pub(super) fn to_dtype(&self, dtype: candle_core::DType) -> Result<Self> {
        Ok(Self {
            stem: self.stem.as_ref().map(|c| c.to_dtype(dtype)).transpose()?,
            branches: self
                .branches
                .iter()
                .map(|b| {
                    let ops = b.ops.iter().map(|o| o.to_dtype(dtype)).collect::<Result<_>>()?;
                    Ok(Branch { stem_channels: b.stem_channels.clone(), ops })
                })
                .collect::<Result<_>>()?,
        })
    }
}
