//! The DeepDream algorithm: gradient ascent on the input pixels over an octave pyramid.
//!
//! For each octave, smallest first: add the detail dreamed so far (upscaled) to the octave's
//! copy of the image, then repeat `iterations` times: roll the image by a random jitter,
//! compute the gradient of `||activations||_2` with respect to the pixels, roll it back, smooth
//! it with a Gaussian, optionally turn it into a decorrelated-colour step ([`color`]), and step
//! along it with the step normalised by its mean magnitude, its standard deviation or band by
//! band ([`gradient`]); clamp to valid pixels. What the octave added becomes the detail passed
//! to the next one. With `keep_colors`, the result takes the input's colours ([`color`]).

pub mod color;
pub mod gradient;
pub mod mask;
mod octave;
mod rng;
pub mod tiles;

use std::ops::ControlFlow;

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use crate::nn::cpu::{assume_init, cpu_f32, uninit, with_f32_values};

pub use gradient::GradientNorm;
pub use octave::octave_sizes;
pub use rng::Rng;

use crate::nn::{Network, Objective};
use crate::resample;

/// Octaves whose shorter side would fall below this many pixels are skipped, and smaller
/// images are dreamed with their edges extended to this size (no network here steps over
/// more than 32 input pixels at its deepest layer).
pub const MIN_OCTAVE_SIDE: usize = 32;

/// Smallest tile worth its halo of context.
pub const MIN_TILE: usize = 128;

/// Parameters of one dream. Their defaults are the settings table's ([`crate::plan`] makes
/// them from settings, and implements `Default` with the table's defaults on the first tap).
#[derive(Debug, Clone, PartialEq)]
pub struct DreamParams {
    /// What is amplified: which layers (taps), with which weights and channels.
    pub objective: Objective,
    /// Octaves in the pyramid (fewer for small images, see [`MIN_OCTAVE_SIDE`]).
    pub octaves: usize,
    /// Size ratio between consecutive octaves.
    pub octave_scale: f64,
    /// Gradient steps per octave.
    pub iterations: usize,
    /// Step size, in pixel units (`[0, 1]` range) per unit of mean gradient magnitude (see
    /// `gradient`).
    pub lr: f64,
    /// How each gradient is scaled into a step.
    pub gradient: GradientNorm,
    /// Band-pass levels of the Laplacian pyramid of [`GradientNorm::Laplacian`].
    pub gradient_levels: usize,
    /// Step in Lucid's decorrelated colour space ([`color::decorrelate`]).
    pub decorrelate: bool,
    /// The dream keeps the input's colours ([`color::keep_colors`]).
    pub keep_colors: bool,
    /// Largest random shift in pixels applied before each step.
    pub jitter: usize,
    /// Standard deviation in pixels of the Gaussian applied to each gradient (0 disables).
    pub smooth: f64,
    /// Seed of the jitter sequence.
    pub seed: u64,
    /// Longest side, in pixels, pushed through the network at once; larger images get their
    /// gradient in tiles (see [`tiles`]). 0 never tiles.
    pub tile: usize,
}

/// Progress of a running dream, reported after every gradient step.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// Octave being dreamed, 0 = smallest.
    pub octave: usize,
    /// Octaves in this dream's pyramid.
    pub octaves: usize,
    /// Step within the octave, 0-based.
    pub iteration: usize,
    /// Objective before this step.
    pub objective: f32,
}

/// Number of gradient steps [`dream`] takes for an image of `h x w` (for progress bars).
pub fn total_steps(h: usize, w: usize, params: &DreamParams) -> usize {
    let (h, w) = (h.max(MIN_OCTAVE_SIDE), w.max(MIN_OCTAVE_SIDE));
    octave_sizes(h, w, params.octaves, params.octave_scale, MIN_OCTAVE_SIDE).len() * params.iterations
}

/// `x` (`[N, C, H, W]`) with its edges repeated to at least `side` pixels each way, and where
/// the original sits in it (`top`, `left`).
fn extend_to(x: &Tensor, side: usize) -> Result<(Tensor, usize, usize)> {
    let (_, _, h, w) = x.dims4()?;
    let (ph, pw) = (side.saturating_sub(h), side.saturating_sub(w));
    let x = x.pad_with_same(2, ph / 2, ph - ph / 2)?.pad_with_same(3, pw / 2, pw - pw / 2)?;
    Ok((x, ph / 2, pw / 2))
}

/// Dreams on `image` (`[1, 3, H, W]`, RGB in `[0, 1]`) and returns the dreamed image, in the
/// network's precision.
pub fn dream(
    net: &Network,
    image: &Tensor,
    params: &DreamParams,
    on_step: &mut dyn FnMut(StepReport),
) -> Result<Tensor> {
    dream_weighted(net, image, params, None, on_step)
}

/// [`dream`] with every step scaled per pixel by `weight` (`[1, 1, H, W]`, in `[0, 1]`; resized
/// to each octave): 0 leaves a pixel as it is, 1 dreams it fully. The step size is still
/// normalised over the whole image. With `keep_colors`, the result has `image`'s colours.
pub fn dream_weighted(
    net: &Network,
    image: &Tensor,
    params: &DreamParams,
    weight: Option<&Tensor>,
    on_step: &mut dyn FnMut(StepReport),
) -> Result<Tensor> {
    let dreamed = dream_until(net, image, params, weight, &mut |report| {
        on_step(report);
        ControlFlow::Continue(())
    })?;
    Ok(dreamed.expect("a dream that is never stopped finishes"))
}

/// [`dream_weighted`] that stops after any step where `on_step` says [`ControlFlow::Break`]:
/// then `None` (a front end cancelled it), else the dreamed image.
pub fn dream_until(
    net: &Network,
    image: &Tensor,
    params: &DreamParams,
    weight: Option<&Tensor>,
    on_step: &mut dyn FnMut(StepReport) -> ControlFlow<()>,
) -> Result<Option<Tensor>> {
    let image = &image.to_dtype(net.dtype())?;
    let weight = weight.map(|w| w.to_dtype(net.dtype())).transpose()?;
    let (_, _, h, w) = image.dims4()?;
    if h.min(w) < MIN_OCTAVE_SIDE {
        let (padded, top, left) = extend_to(image, MIN_OCTAVE_SIDE)?;
        let weight = weight.map(|w| extend_to(&w, MIN_OCTAVE_SIDE).map(|(w, _, _)| w)).transpose()?;
        let dreamed = dream_until(net, &padded, params, weight.as_ref(), on_step)?;
        return dreamed.map(|d| d.narrow(2, top, h)?.narrow(3, left, w)).transpose();
    }
    let sizes = octave_sizes(h, w, params.octaves, params.octave_scale, MIN_OCTAVE_SIDE);
    let mut pyramid = vec![image.clone()];
    for &(oh, ow) in &sizes[1..] {
        let prev = pyramid.last().expect("pyramid starts with the image");
        pyramid.push(resample::resize(prev, oh, ow)?);
    }
    let mut rng = Rng::new(params.seed);
    let mut detail: Option<Tensor> = None;
    let mut x = image.clone();
    for (octave, base) in pyramid.iter().rev().enumerate() {
        let (_, _, oh, ow) = base.dims4()?;
        x = match &detail {
            Some(d) => (base + resample::resize(d, oh, ow)?)?,
            None => base.clone(),
        };
        let weight = weight.as_ref().map(|w| resample::resize(w, oh, ow)).transpose()?;
        for iteration in 0..params.iterations {
            let objective;
            (x, objective) = ascend(net, &x, params, weight.as_ref(), &mut rng)?;
            if on_step(StepReport { octave, octaves: pyramid.len(), iteration, objective }).is_break() {
                return Ok(None);
            }
        }
        detail = Some((&x - base)?);
    }
    if params.keep_colors {
        x = color::keep_colors(image, &x)?;
    }
    Ok(Some(x))
}

/// `x` (`[N, C, H, W]`) rolled `dy` pixels down and `dx` right, wrapping around (as
/// `torch.roll`): on `F32` CPU tensors in one parallel pass of row copies, elsewhere as
/// candle's two rolls.
fn roll(x: &Tensor, dy: i64, dx: i64) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if !cpu_f32(x) || h * w == 0 {
        return x.roll(dy as i32, 2)?.roll(dx as i32, 3);
    }
    let (sy, sx) = (dy.rem_euclid(h as i64) as usize, dx.rem_euclid(w as i64) as usize);
    let out = with_f32_values(x, |src| {
        let mut out = uninit::<f32>(src.len());
        out.par_chunks_mut(w).enumerate().with_min_len(16).for_each(|(row, out)| {
            let (plane, y) = (row / h, row % h);
            let from = &src[(plane * h + (y + h - sy) % h) * w..][..w];
            let (tail, head) = from.split_at(w - sx);
            out.iter_mut().zip(head.iter().chain(tail)).for_each(|(d, &v)| {
                d.write(v);
            });
        });
        // SAFETY: every row was written in full: the source row's last sx values, then its
        // first w - sx.
        unsafe { assume_init(out) }
    })?;
    Tensor::from_vec(out, (n, c, h, w), x.device())
}

/// One jittered, normalised gradient-ascent step, scaled per pixel by `weight` when given
/// (`[1, 1, H, W]`); returns the new image and the objective (before the step).
pub fn ascend(
    net: &Network,
    x: &Tensor,
    params: &DreamParams,
    weight: Option<&Tensor>,
    rng: &mut Rng,
) -> Result<(Tensor, f32)> {
    let (dy, dx) = (rng.symmetric(params.jitter), rng.symmetric(params.jitter));
    let shifted = roll(x, dy, dx)?;
    let (objective, grad) = tiles::objective_gradient(net, &shifted, &params.objective, params.tile, rng)?;
    let grad = resample::gaussian_blur(&roll(&grad, -dy, -dx)?, params.smooth)?;
    let grad = if params.decorrelate { color::decorrelate(&grad)? } else { grad };
    if params.gradient == GradientNorm::Mean {
        if let Some(next) = gradient::mean_step_cpu(x, &grad, params.lr, weight)? {
            return Ok((next, objective));
        }
    }
    let step = gradient::step(grad, params.gradient, params.gradient_levels, params.lr)?;
    let step = match weight {
        Some(w) => step.broadcast_mul(w)?,
        None => step,
    };
    Ok(((x + step)?.clamp(0.0, 1.0)?, objective))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn roll_matches_candles_rolls() -> Result<()> {
        let x = Tensor::rand(0f32, 1.0, (2, 3, 5, 7), &Device::Cpu)?;
        for (dy, dx) in [(0, 0), (1, -2), (-4, 3), (12, -15), (5, 7)] {
            let ours = roll(&x, dy, dx)?;
            let candle = x.roll(dy as i32, 2)?.roll(dx as i32, 3)?;
            let diff = (ours - candle)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(diff, 0.0, "roll by ({dy}, {dx})");
        }
        Ok(())
    }
}
