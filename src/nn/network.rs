//! A network as the op sequence with named taps, and the DeepDream objective on its
//! activations: value and input gradient, optionally over one tile's region.

use candle_core::{DType, Result, Tensor};

use super::ops::{backward_at, forward_at, run_forward, Op};
use super::padding::pad_spatial;

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

/// Input rows and columns `[start, end)` of a crop whose activations count (one tile of a
/// tiled gradient). Activation `(i, j)` of a tap with stride `s` counts when input pixel
/// `(i * s, j * s)` lies inside, so tiles that partition an image partition every tap's
/// activations, provided each crop starts at a multiple of the stride.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Input rows `[start, end)`, relative to the crop.
    pub rows: (usize, usize),
    /// Input columns `[start, end)`, relative to the crop.
    pub cols: (usize, usize),
}

impl Region {
    /// `act` (`[N, C, H, W]`, stride `stride`) with the activations outside zeroed.
    fn keep(&self, act: &Tensor, stride: usize) -> Result<Tensor> {
        let (_, _, h, w) = act.dims4()?;
        let span = |(a, b): (usize, usize), len: usize| (a.div_ceil(stride).min(len), b.div_ceil(stride).min(len));
        let ((r0, r1), (c0, c1)) = (span(self.rows, h), span(self.cols, w));
        if (r0, r1, c0, c1) == (0, h, 0, w) {
            return Ok(act.clone());
        }
        let inside = act.narrow(2, r0, r1 - r0)?.narrow(3, c0, c1 - c0)?;
        pad_spatial(&inside, r0, h - r1, c0, w - c1)
    }
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

    /// How many input pixels one activation of tap `tap` steps over (the product of the
    /// strides before it): activation `(i, j)` sits at input pixel `(i * s, j * s)`.
    pub fn tap_stride(&self, tap: usize) -> usize {
        self.ops[..self.taps[tap].end].iter().map(Op::stride).product()
    }

    /// The DeepDream objective (a weighted sum of the L2 norms of tap activations, see
    /// [`Objective`]) and its gradient with respect to `x`.
    pub fn objective_gradient(&self, x: &Tensor, objective: &Objective) -> Result<(f32, Tensor)> {
        let (squares, grad) = self.seeded_gradient(x, objective, None, &|_, squares| squares.sqrt())?;
        let value = objective.terms.iter().zip(&squares).map(|((_, w), s)| w * s.sqrt()).sum();
        Ok((value, grad))
    }

    /// The building block of [`Network::objective_gradient`] and of tiled gradients.
    ///
    /// For each objective term, only the activations at input pixels inside `region` (all when
    /// `None`) count; their sum of squares `S` is returned per term, and the backward pass is
    /// seeded with `weight * activations / norm(term, S)`. `norm = sqrt(S)` gives the
    /// gradient of the term's norm; a term whose norm is 0 or not finite is left out.
    pub fn seeded_gradient(
        &self,
        x: &Tensor,
        objective: &Objective,
        region: Option<&Region>,
        norm: &dyn Fn(usize, f32) -> f32,
    ) -> Result<(Vec<f32>, Tensor)> {
        let deepest = objective.terms.iter().map(|(t, _)| self.taps[*t].end).max().unwrap_or(0);
        let ops = &self.ops[..deepest];
        let exposed = |end: usize| objective.terms.iter().any(|(t, _)| self.taps[*t].end == end);
        let mut act = x.clone();
        let mut recs = Vec::with_capacity(ops.len());
        let mut seeds: Vec<(usize, Tensor)> = Vec::new();
        let mut squares = vec![0f32; objective.terms.len()];
        let mut done = 0;
        while done < ops.len() {
            let (y, ran) = forward_at(ops, done, &exposed, &act, true, &mut recs)?;
            act = y;
            done += ran;
            for (term, &(tap, weight)) in objective.terms.iter().enumerate() {
                if self.taps[tap].end != done {
                    continue;
                }
                let mut selected = match &objective.channels {
                    Some(channels) => {
                        act.broadcast_mul(&channel_mask(channels, act.dim(1)?, act.device(), act.dtype())?)?
                    }
                    None => act.clone(),
                };
                if let Some(region) = region {
                    selected = region.keep(&selected, self.tap_stride(tap))?;
                }
                squares[term] = selected.sqr()?.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
                let divisor = norm(term, squares[term]);
                if divisor != 0.0 && divisor.is_finite() {
                    let divisor = Tensor::new(divisor, act.device())?.to_dtype(act.dtype())?;
                    seeds.push((done, (selected.broadcast_div(&divisor)? * weight as f64)?));
                }
            }
        }
        let mut grad: Option<Tensor> = None;
        let mut end = ops.len();
        while end > 0 {
            for (_, seed) in seeds.iter().filter(|(e, _)| *e == end) {
                grad = Some(match grad {
                    Some(g) => (g + seed)?,
                    None => seed.clone(),
                });
            }
            let Some(g) = &grad else {
                end -= 1;
                continue;
            };
            let (next, passed) = backward_at(ops, &recs, end, &exposed, g)?;
            grad = Some(next);
            end -= passed;
        }
        Ok((squares, grad.map_or_else(|| x.zeros_like(), Ok)?))
    }

    /// The same network with every parameter converted to `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Result<Network> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        Ok(Network {
            ops: self.ops.iter().map(|o| o.to_dtype(dtype)).collect::<Result<_>>()?,
            taps: self.taps.clone(),
            dtype,
        })
    }
}
