//! The op sequence a model compiles to, its forward pass with a compact record, and the
//! input-gradient backward pass.

use candle_core::{DType, Result, Tensor};

use super::conv::{Conv2d, DepthwiseConv2d};
use super::padding::pad_spatial;

/// One step of a network.
#[derive(Debug, Clone)]
pub enum Op {
    /// `(x - mean) * scale` per channel; `mean` and `scale` are `[1, C, 1, 1]`.
    Normalize { mean: Tensor, scale: Tensor },
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
    /// `x + body(x)`.
    Residual(Vec<Op>),
}

/// What an op's backward needs from its forward.
enum Record {
    None,
    /// Spatial size of the input.
    Size(usize, usize),
    /// `u8` mask of where the gradient passes.
    Mask(Tensor),
    /// `u8` mask of the pooled maxima over the cropped input, and the input size.
    Pool(Tensor, usize, usize),
    Seq(Vec<Record>),
}

impl Op {
    fn forward(&self, x: &Tensor, record: bool) -> Result<(Tensor, Record)> {
        let (_, _, h, w) = x.dims4()?;
        Ok(match self {
            Op::Normalize { mean, scale } => (x.broadcast_sub(mean)?.broadcast_mul(scale)?, Record::None),
            Op::Conv(c) => (c.forward(x)?, Record::Size(h, w)),
            Op::Depthwise(c) => (c.forward(x)?, Record::Size(h, w)),
            Op::Relu => {
                let mask = if record { Record::Mask(x.gt(0.0)?) } else { Record::None };
                (x.relu()?, mask)
            }
            Op::Relu6 => {
                let mask = if record { Record::Mask((x.gt(0.0)? * x.lt(6.0)?)?) } else { Record::None };
                (x.clamp(0.0, 6.0)?, mask)
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
            Op::Residual(body) => {
                let (y, recs) = run_forward(body, x, record)?;
                ((x + y)?, Record::Seq(recs))
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
            (Op::Residual(body), Record::Seq(recs)) => grad + run_backward(body, recs, grad)?,
            _ => Err(candle_core::Error::Msg("backward called without a forward record".into())),
        }
    }

    fn to_dtype(&self, dtype: DType) -> Result<Op> {
        Ok(match self {
            Op::Normalize { mean, scale } => {
                Op::Normalize { mean: mean.to_dtype(dtype)?, scale: scale.to_dtype(dtype)? }
            }
            Op::Conv(c) => Op::Conv(c.to_dtype(dtype)?),
            Op::Depthwise(c) => Op::Depthwise(c.to_dtype(dtype)?),
            Op::Relu => Op::Relu,
            Op::Relu6 => Op::Relu6,
            Op::MaxPool2 => Op::MaxPool2,
            Op::Residual(body) => Op::Residual(body.iter().map(|o| o.to_dtype(dtype)).collect::<Result<_>>()?),
        })
    }
}

fn run_forward(ops: &[Op], x: &Tensor, record: bool) -> Result<(Tensor, Vec<Record>)> {
    let mut x = x.clone();
    let mut recs = Vec::with_capacity(ops.len());
    for op in ops {
        let (y, rec) = op.forward(&x, record)?;
        recs.push(rec);
        x = y;
    }
    Ok((x, recs))
}

fn run_backward(ops: &[Op], recs: &[Record], grad: &Tensor) -> Result<Tensor> {
    let mut g = grad.clone();
    for (op, rec) in ops.iter().zip(recs).rev() {
        g = op.backward(&g, rec)?;
    }
    Ok(g)
}

/// What a dream maximises: `sum of weight * ||activations(tap)[channels]||_2` over its terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// `(tap index, weight)` pairs.
    pub terms: Vec<(usize, f32)>,
    /// Only these channels count (all when `None`); indices past a layer's width are ignored.
    pub channels: Option<Vec<usize>>,
}

impl Objective {
    /// The plain DeepDream objective on one tap.
    pub fn layer(tap: usize) -> Self {
        Self { terms: vec![(tap, 1.0)], channels: None }
    }
}

/// `[1, width, 1, 1]` tensor with ones at `channels`.
fn channel_mask(channels: &[usize], width: usize, device: &candle_core::Device, dtype: DType) -> Result<Tensor> {
    let mut m = vec![0f32; width];
    for &c in channels.iter().filter(|&&c| c < width) {
        m[c] = 1.0;
    }
    Tensor::from_vec(m, (1, width, 1, 1), device)?.to_dtype(dtype)
}

/// Position of the layer `spec` among `names`: an exact name, or a number matching the last
/// part of a name (`30` is `features.30`, `10` is `blocks.10`).
pub fn match_layer<'a>(names: impl Iterator<Item = &'a str> + Clone, spec: &str) -> Option<usize> {
    names.clone().position(|n| n == spec).or_else(|| {
        let numeric = !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit());
        let suffix = format!(".{spec}");
        numeric.then(|| names.clone().position(|n| n.ends_with(&suffix))).flatten()
    })
}

/// A named point of a network whose activations can be dreamed on.
#[derive(Debug, Clone)]
pub struct Tap {
    /// Name as users write it, e.g. `features.30` or `blocks.10`.
    pub name: String,
    /// What the op producing this output is, e.g. `conv 3x3 512->512`.
    pub kind: String,
    /// Number of leading ops that produce this output.
    pub end: usize,
}

/// A feed-forward network as a flat op sequence with named taps.
///
/// Inputs are `[N, 3, H, W]` RGB in `[0, 1]`; the first op maps them to the model's own input
/// normalisation.
#[derive(Debug, Clone)]
pub struct Network {
    ops: Vec<Op>,
    taps: Vec<Tap>,
    dtype: DType,
}

impl Network {
    /// Builds a network from its ops and taps (taps in forward order).
    pub fn new(ops: Vec<Op>, taps: Vec<Tap>) -> Self {
        Self { ops, taps, dtype: DType::F32 }
    }

    /// Precision of the parameters (inputs are converted to it).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dreamable layers, in forward order.
    pub fn taps(&self) -> &[Tap] {
        &self.taps
    }

    /// Index into [`Network::taps`] for a layer written as its name or its number in the
    /// model's own indexing (`30` and `features.30` are the same VGG layer).
    pub fn find_tap(&self, spec: &str) -> Option<usize> {
        match_layer(self.taps.iter().map(|t| t.name.as_str()), spec)
    }

    /// Shapes of every tap's activations for input `x`, from one forward pass.
    pub fn tap_shapes(&self, x: &Tensor) -> Result<Vec<Vec<usize>>> {
        let mut shapes = Vec::with_capacity(self.taps.len());
        let mut x = x.clone();
        let mut done = 0;
        for tap in &self.taps {
            x = run_forward(&self.ops[done..tap.end], &x, false)?.0;
            done = tap.end;
            shapes.push(x.dims().to_vec());
        }
        Ok(shapes)
    }

    /// Activations of tap `tap` for input `x`.
    pub fn activations(&self, x: &Tensor, tap: usize) -> Result<Tensor> {
        Ok(run_forward(&self.ops[..self.taps[tap].end], x, false)?.0)
    }

    /// The DeepDream objective (a weighted sum of the L2 norms of tap activations, see
    /// [`Objective`]) and its gradient with respect to `x`.
    pub fn objective_gradient(&self, x: &Tensor, objective: &Objective) -> Result<(f32, Tensor)> {
        let deepest = objective.terms.iter().map(|(t, _)| self.taps[*t].end).max().unwrap_or(0);
        let ops = &self.ops[..deepest];
        let mut act = x.clone();
        let mut recs = Vec::with_capacity(ops.len());
        let mut seeds: Vec<(usize, Tensor)> = Vec::new();
        let mut value = 0f32;
        for (i, op) in ops.iter().enumerate() {
            let (y, rec) = op.forward(&act, true)?;
            recs.push(rec);
            act = y;
            for &(_, weight) in objective.terms.iter().filter(|(t, _)| self.taps[*t].end == i + 1) {
                let selected = match &objective.channels {
                    Some(channels) => {
                        act.broadcast_mul(&channel_mask(channels, act.dim(1)?, act.device(), act.dtype())?)?
                    }
                    None => act.clone(),
                };
                let norm = selected.sqr()?.sum_all()?.sqrt()?;
                let n = norm.to_dtype(DType::F32)?.to_scalar::<f32>()?;
                if n > 0.0 {
                    value += weight * n;
                    seeds.push((i + 1, (selected.broadcast_div(&norm)? * weight as f64)?));
                }
            }
        }
        let mut grad: Option<Tensor> = None;
        for i in (0..ops.len()).rev() {
            for (_, seed) in seeds.iter().filter(|(end, _)| *end == i + 1) {
                grad = Some(match grad {
                    Some(g) => (g + seed)?,
                    None => seed.clone(),
                });
            }
            if let Some(g) = &grad {
                grad = Some(ops[i].backward(g, &recs[i])?);
            }
        }
        Ok((value, grad.map_or_else(|| x.zeros_like(), Ok)?))
    }

    /// The same network with every parameter converted to `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Result<Network> {
        Ok(Network {
            ops: self.ops.iter().map(|o| o.to_dtype(dtype)).collect::<Result<_>>()?,
            taps: self.taps.clone(),
            dtype,
        })
    }
}
