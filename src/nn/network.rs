//! A network as the op sequence with named taps, and the DeepDream objective on its
//! activations: value and input gradient, optionally over one tile's region.

use candle_core::{DType, Result, Tensor};

use super::guide::{Guide, GuideTerm};
use super::ops::{backward_at, forward_at, run_forward, Op};
use super::padding::pad_spatial;

/// What a dream maximises: over its terms, the sum of `weight * ||activations(tap)[channels]||_2`;
/// with a guide of weight `g`, each term is `weight * ((1 - g) ||A|| + g <A, G> / ||G||)`, `G`
/// the guide features matching the activations `A` best (see [`super::guide`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// `(tap index, weight)` pairs.
    pub terms: Vec<(usize, f32)>,
    /// Only these channels count (all when `None`); indices past a layer's width are ignored.
    pub channels: Option<Vec<usize>>,
    /// A guide image that each term's activations are matched with, if any.
    pub guide: Option<GuideTerm>,
}

impl Objective {
    /// The plain DeepDream objective on one tap.
    pub fn layer(tap: usize) -> Self {
        Self { terms: vec![(tap, 1.0)], channels: None, guide: None }
    }

    /// The guide's weight (0 without a guide).
    fn guide_weight(&self) -> f32 {
        self.guide.as_ref().map_or(0.0, |g| g.weight)
    }

    /// The objective's value from its terms' [`TermStats`] over the whole image.
    pub fn value(&self, stats: &[TermStats]) -> f32 {
        let g = self.guide_weight();
        let term = |((_, weight), s): (&(usize, f32), &TermStats)| {
            let guided = if s.guide_squares > 0.0 { s.guide_dot / s.guide_squares.sqrt() } else { 0.0 };
            weight * ((1.0 - g) * s.squares.sqrt() + g * guided)
        };
        self.terms.iter().zip(stats).map(term).sum()
    }
}

/// What one objective term measured over the activations that count.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TermStats {
    /// Sum of squares of the activations (`||A||^2`).
    pub squares: f32,
    /// With a guide: sum of squares of the matched guide features (`||G||^2`).
    pub guide_squares: f32,
    /// With a guide: `<A, G>`.
    pub guide_dot: f32,
}

impl TermStats {
    /// The stats of two parts of an image (tiles) together.
    pub fn add(&mut self, other: &TermStats) {
        self.squares += other.squares;
        self.guide_squares += other.guide_squares;
        self.guide_dot += other.guide_dot;
    }

    /// The divisors of the plain and the guide gradient that give the objective's gradient
    /// when these are the whole image's stats: `(||A||, ||G||)`.
    pub fn norms(&self) -> (f32, f32) {
        (self.squares.sqrt(), self.guide_squares.sqrt())
    }
}

fn scalar(t: &Tensor) -> Result<f32> {
    t.to_dtype(DType::F32)?.to_scalar::<f32>()
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
        let (stats, grad) = self.seeded_gradient(x, objective, None, &|_, s| s.norms())?;
        Ok((objective.value(&stats), grad))
    }

    /// The building block of [`Network::objective_gradient`] and of tiled gradients.
    ///
    /// For each objective term, only the activations at input pixels inside `region` (all when
    /// `None`) count; what they measure is returned per term ([`TermStats`]), and the backward
    /// pass is seeded with `weight * ((1 - g) A / a + g G / b)`, `(a, b) = norm(term, stats)`,
    /// `g` the guide's weight (0 without one). [`TermStats::norms`] gives the gradient of the
    /// objective; a part whose divisor is 0 or not finite is left out.
    pub fn seeded_gradient(
        &self,
        x: &Tensor,
        objective: &Objective,
        region: Option<&Region>,
        norm: &dyn Fn(usize, &TermStats) -> (f32, f32),
    ) -> Result<(Vec<TermStats>, Tensor)> {
        let deepest = objective.terms.iter().map(|(t, _)| self.taps[*t].end).max().unwrap_or(0);
        let ops = &self.ops[..deepest];
        let exposed = |end: usize| objective.terms.iter().any(|(t, _)| self.taps[*t].end == end);
        let mut act = x.clone();
        let mut recs = Vec::with_capacity(ops.len());
        let mut seeds: Vec<(usize, Tensor)> = Vec::new();
        let mut stats = vec![TermStats::default(); objective.terms.len()];
        let g = objective.guide_weight();
        let mut done = 0;
        while done < ops.len() {
            let (y, ran) = forward_at(ops, done, &exposed, &act, true, &mut recs)?;
            act = y;
            done += ran;
            for (term, &(tap, weight)) in objective.terms.iter().enumerate() {
                if self.taps[tap].end != done {
                    continue;
                }
                let mask = match &objective.channels {
                    Some(channels) => Some(channel_mask(channels, act.dim(1)?, act.device(), act.dtype())?),
                    None => None,
                };
                let mut selected = match &mask {
                    Some(m) => act.broadcast_mul(m)?,
                    None => act.clone(),
                };
                let mut matched = match &objective.guide {
                    Some(guide) => {
                        let features =
                            guide.guide.features(tap, |image| self.activations(&image.to_dtype(self.dtype())?, tap))?;
                        let features = match &mask {
                            Some(m) => features.broadcast_mul(&m.reshape((act.dim(1)?, 1))?)?,
                            None => features,
                        };
                        Some(Guide::matched(&selected, &features)?)
                    }
                    None => None,
                };
                if let Some(region) = region {
                    selected = region.keep(&selected, self.tap_stride(tap))?;
                    matched = matched.map(|m| region.keep(&m, self.tap_stride(tap))).transpose()?;
                }
                let s = &mut stats[term];
                s.squares = scalar(&selected.sqr()?.sum_all()?)?;
                if let Some(m) = &matched {
                    s.guide_squares = scalar(&m.sqr()?.sum_all()?)?;
                    s.guide_dot = scalar(&(m * &selected)?.sum_all()?)?;
                }
                let (plain, guided) = norm(term, s);
                let mut parts = vec![(selected, plain, 1.0 - g)];
                parts.extend(matched.map(|m| (m, guided, g)));
                for (part, divisor, share) in parts {
                    if divisor != 0.0 && divisor.is_finite() && share != 0.0 {
                        let divisor = Tensor::new(divisor, act.device())?.to_dtype(act.dtype())?;
                        seeds.push((done, (part.broadcast_div(&divisor)? * (share * weight) as f64)?));
                    }
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
        Ok((stats, grad.map_or_else(|| x.zeros_like(), Ok)?))
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
