//! From a gradient to a step: scaled by its mean magnitude, by its standard deviation, or band
//! by band over a Laplacian pyramid (the TensorFlow DeepDream notebook's `lap_normalize`), all
//! as device-agnostic tensor ops.

use std::mem::MaybeUninit;

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use crate::nn::cpu::{assume_init, cpu_f32, uninit, with_f32_values};

/// How each gradient is scaled into a step of size `lr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradientNorm {
    /// `lr` per unit of the gradient's mean magnitude (google/deepdream's step).
    Mean,
    /// `lr` per unit of the gradient's standard deviation, its mean removed (the step of many
    /// PyTorch DeepDreams; smaller than `Mean`'s at the same `lr`, as gradients are
    /// heavy-tailed).
    Std,
    /// Every band of a Laplacian pyramid of the gradient scaled to unit RMS, merged, and the
    /// result scaled to a mean magnitude of `lr`: coarse and fine bands get equal weight, so
    /// the step is less dominated by pixel-level noise.
    Laplacian,
}

impl GradientNorm {
    /// Every mode, by name.
    pub const NAMES: &'static [&'static str] = &["mean", "std", "laplacian"];

    /// The mode's name in presets and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            GradientNorm::Mean => "mean",
            GradientNorm::Std => "std",
            GradientNorm::Laplacian => "laplacian",
        }
    }
}

impl std::str::FromStr for GradientNorm {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        [GradientNorm::Mean, GradientNorm::Std, GradientNorm::Laplacian].into_iter().find(|g| g.name() == s).ok_or(())
    }
}

/// Below this, a gradient (or band) counts as zero and is not scaled up.
const EPS: f64 = 1e-12;

/// The step for `grad` (`[N, C, H, W]`) with `norm`; `levels` is the number of band-pass
/// levels of [`GradientNorm::Laplacian`] (the pyramid has one more band, the low-pass rest).
pub fn step(grad: Tensor, norm: GradientNorm, levels: usize, lr: f64) -> Result<Tensor> {
    match norm {
        GradientNorm::Mean => scale_to_mean(grad, lr),
        GradientNorm::Std => {
            let dtype = grad.dtype();
            let g = grad.to_dtype(DType::F32)?;
            let centred = g.broadcast_sub(&g.mean_all()?)?;
            let std = centred.sqr()?.mean_all()?.sqrt()?.maximum(EPS)?;
            (centred.broadcast_div(&std)? * lr)?.to_dtype(dtype)
        }
        GradientNorm::Laplacian => {
            let dtype = grad.dtype();
            let g = laplacian_normalize(&grad.to_dtype(DType::F32)?, levels)?;
            scale_to_mean(g.to_dtype(dtype)?, lr)
        }
    }
}

/// `grad` scaled to a mean magnitude of `lr`.
fn scale_to_mean(grad: Tensor, lr: f64) -> Result<Tensor> {
    let scale = lr / (mean_magnitude(&grad)? + EPS);
    grad * scale
}

/// The mean of `|grad|`.
fn mean_magnitude(grad: &Tensor) -> Result<f64> {
    grad.abs()?.mean_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()
}

/// `clamp(x + step(grad) * weight, 0, 1)` with [`GradientNorm::Mean`]'s step, the weight
/// (`[1 or N, 1, H, W]`) scaling each pixel, in one parallel pass after the mean magnitude
/// where `x`, `grad` and `weight` are `F32` CPU tensors (candle's ops take five more, most on
/// one thread); `None` elsewhere. The same values as the tensor ops, to the bit: the mean is
/// theirs, as a dream amplifies even the rounding of another summation order.
pub fn mean_step_cpu(x: &Tensor, grad: &Tensor, lr: f64, weight: Option<&Tensor>) -> Result<Option<Tensor>> {
    let (n, c, h, w) = x.dims4()?;
    let per_pixel =
        |t: &Tensor| t.dims4().is_ok_and(|(wn, wc, wh, ww)| (wn == 1 || wn == n) && (wc, wh, ww) == (1, h, w));
    if !cpu_f32(x) || !cpu_f32(grad) || grad.dims() != x.dims() || weight.is_some_and(|t| !cpu_f32(t) || !per_pixel(t))
    {
        return Ok(None);
    }
    let scale = (lr / (mean_magnitude(grad)? + EPS)) as f32;
    let row = w.max(1);
    let step = |weight: Option<&[f32]>| {
        with_f32_values(x, |x| {
            with_f32_values(grad, |g| {
                let mut out = uninit::<f32>(x.len());
                let rows = out.par_chunks_mut(row).zip(x.par_chunks(row).zip(g.par_chunks(row)));
                rows.enumerate().with_min_len(16).for_each(|(y, (o, (x, g)))| {
                    let weight_row = weight.map(|wt| {
                        let image = if wt.len() == h * w { 0 } else { y / h / c };
                        &wt[(image * h + y % h) * w..][..w]
                    });
                    step_row(o, x, g, scale, weight_row);
                });
                // SAFETY: every row of the output was written in full.
                unsafe { assume_init(out) }
            })
        })?
    };
    // The weight is read in place, as x and grad are.
    let out = match weight {
        Some(t) => with_f32_values(t, |wt| step(Some(wt)))??,
        None => step(None)?,
    };
    Tensor::from_vec(out, (n, c, h, w), x.device()).map(Some)
}

multiversion! {
    /// One row of [`mean_step_cpu`]'s pass: `o = clamp(x + g * scale * weight, 0, 1)`.
    fn step_row(o: &mut [MaybeUninit<f32>], x: &[f32], g: &[f32], scale: f32, weight: Option<&[f32]>) {
        let put = |o: &mut MaybeUninit<f32>, x: f32, step: f32| {
            o.write((x + step).clamp(0.0, 1.0));
        };
        match weight {
            Some(wt) => {
                o.iter_mut().zip(x.iter().zip(g)).zip(wt).for_each(|((o, (&x, &g)), &wt)| put(o, x, g * scale * wt));
            }
            None => o.iter_mut().zip(x.iter().zip(g)).for_each(|(o, (&x, &g))| put(o, x, g * scale)),
        }
    }
}

/// The 5-tap binomial filter `[1, 4, 6, 4, 1] / 16` by itself, `[1, 1, 5, 5]`, times `gain`.
fn binomial(gain: f32, device: &Device) -> Result<Tensor> {
    let taps = [1.0f32, 4.0, 6.0, 4.0, 1.0];
    let k: Vec<f32> = taps.iter().flat_map(|a| taps.iter().map(move |b| gain * a * b / 256.0)).collect();
    Tensor::from_vec(k, (1, 1, 5, 5), device)
}

/// `x` with `r` pixels mirrored about its first and last pixel on `dim` (`d c b | a b c d |
/// c b a`, OpenCV's default border, which keeps alternating patterns alternating); sides
/// shorter than `r + 1` repeat their edge instead.
fn pad_mirrored(x: &Tensor, dim: usize, r: usize) -> Result<Tensor> {
    let len = x.dim(dim)?;
    if len <= r {
        return x.pad_with_same(dim, r, r);
    }
    let index = |i: Vec<u32>| Tensor::from_vec(i, r, x.device());
    let before = x.index_select(&index((1..=r as u32).rev().collect())?, dim)?;
    let after = x.index_select(&index((len - 1 - r..len - 1).rev().map(|i| i as u32).collect())?, dim)?;
    Tensor::cat(&[&before, x, &after], dim)
}

/// `x` mirrored by `r` pixels on all four sides (`[P, 1, H, W]`).
fn pad_sides(x: &Tensor, r: usize) -> Result<Tensor> {
    pad_mirrored(&pad_mirrored(x, 2, r)?, 3, r)
}

/// Low-pass and halve `[P, 1, H, W]` to `[P, 1, ceil(H/2), ceil(W/2)]`; output pixel `i` sits
/// on input pixel `2i`.
fn downsample(x: &Tensor, k: &Tensor) -> Result<Tensor> {
    pad_sides(x, 2)?.conv2d(k, 0, 2, 1, 1)
}

/// The inverse of [`downsample`]'s halving: `[P, 1, h, w]` interpolated up to `[P, 1, H, W]`
/// with the same filter (`k4` is it times 4), edges mirrored so every pixel gets its full
/// weight.
fn upsample(lo: &Tensor, k4: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    // After padding by one, input pixel j sits at full-size position 2j - 2, which the
    // transposed convolution puts at output 2j + 2: full-size position p is output p + 4.
    pad_sides(lo, 1)?.conv_transpose2d(k4, 0, 0, 2, 1)?.narrow(2, 4, h)?.narrow(3, 4, w)
}

/// Splits `x` (`[N, C, H, W]`) into `levels` band-pass images, finest first, and the low-pass
/// rest (`levels + 1` tensors, each half the size of the one before); [`laplacian_merge`]
/// adds them up to `x` again.
pub fn laplacian_split(x: &Tensor, levels: usize) -> Result<Vec<Tensor>> {
    let (n, c, h, w) = x.dims4()?;
    let k = binomial(1.0, x.device())?.to_dtype(x.dtype())?;
    let k4 = binomial(4.0, x.device())?.to_dtype(x.dtype())?;
    let mut bands = Vec::with_capacity(levels + 1);
    let mut cur = x.reshape((n * c, 1, h, w))?;
    for _ in 0..levels {
        let (_, _, h, w) = cur.dims4()?;
        let lo = downsample(&cur, &k)?;
        bands.push((&cur - upsample(&lo, &k4, h, w)?)?);
        cur = lo;
    }
    bands.push(cur);
    bands.into_iter().map(|b| b.reshape((n, c, b.dim(2)?, b.dim(3)?))).collect()
}

/// Adds up the bands of [`laplacian_split`].
pub fn laplacian_merge(bands: &[Tensor]) -> Result<Tensor> {
    let (rest, band_pass) = bands.split_last().ok_or_else(|| candle_core::Error::Msg("no bands".into()))?;
    let k4 = binomial(4.0, rest.device())?.to_dtype(rest.dtype())?;
    let mut cur = rest.clone();
    for hi in band_pass.iter().rev() {
        let (n, c, h, w) = hi.dims4()?;
        let (_, _, lh, lw) = cur.dims4()?;
        let up = upsample(&cur.reshape((n * c, 1, lh, lw))?, &k4, h, w)?;
        cur = (up.reshape((n, c, h, w))? + hi)?;
    }
    Ok(cur)
}

/// `x` over its root mean square (all of it, every channel together).
fn unit_rms(x: &Tensor) -> Result<Tensor> {
    x.broadcast_div(&x.sqr()?.mean_all()?.sqrt()?.maximum(EPS)?)
}

/// The bands of `x` ([`laplacian_split`]), each scaled to unit RMS.
pub fn normalized_bands(x: &Tensor, levels: usize) -> Result<Vec<Tensor>> {
    laplacian_split(x, levels)?.iter().map(unit_rms).collect()
}

/// `x` with every band of its Laplacian pyramid scaled to unit RMS (`lap_normalize`).
pub fn laplacian_normalize(x: &Tensor, levels: usize) -> Result<Tensor> {
    laplacian_merge(&normalized_bands(x, levels)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(x: &Tensor) -> Vec<f32> {
        x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn rms(x: &Tensor) -> f32 {
        x.sqr().unwrap().mean_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn fused_mean_step_matches_the_tensor_ops() -> Result<()> {
        let dev = Device::Cpu;
        for (n, wn, with_weight) in [(1, 1, false), (1, 1, true), (2, 1, true), (2, 2, true)] {
            let x = Tensor::rand(0f32, 1.0, (n, 3, 13, 17), &dev)?;
            let grad = Tensor::rand(-1f32, 1.0, (n, 3, 13, 17), &dev)?;
            let weight = with_weight.then(|| Tensor::rand(0f32, 1.0, (wn, 1, 13, 17), &dev)).transpose()?;
            let fused = mean_step_cpu(&x, &grad, 0.3, weight.as_ref())?.expect("F32 CPU tensors take the fused path");
            let step = step(grad, GradientNorm::Mean, 0, 0.3)?;
            let step = match &weight {
                Some(w) => step.broadcast_mul(w)?,
                None => step,
            };
            let ops = (x + step)?.clamp(0.0, 1.0)?;
            let err = (fused - ops)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(err, 0.0, "{n} images, weight of {wn}");
        }
        Ok(())
    }

    /// Pseudo-random values in [-0.5, 0.5), `[1, 3, h, w]`.
    fn noise(h: usize, w: usize, seed: u64) -> Tensor {
        let mut rng = crate::dream::Rng::new(seed);
        let data: Vec<f32> = (0..3 * h * w).map(|_| rng.unit() - 0.5).collect();
        Tensor::from_vec(data, (1, 3, h, w), &Device::Cpu).unwrap()
    }

    /// `amplitude` times the finest checkerboard: the finest band alone (the binomial filter
    /// sums it to exactly 0).
    fn checkerboard(h: usize, w: usize, amplitude: f32) -> Tensor {
        let data: Vec<f32> =
            (0..3 * h * w).map(|i| if (i / w + i % w).is_multiple_of(2) { amplitude } else { -amplitude }).collect();
        Tensor::from_vec(data, (1, 3, h, w), &Device::Cpu).unwrap()
    }

    #[test]
    fn bands_halve_in_size_and_add_up_to_the_signal() {
        for (h, w) in [(37, 50), (64, 64), (5, 3), (1, 9)] {
            let x = noise(h, w, 3);
            let bands = laplacian_split(&x, 4).unwrap();
            let sizes: Vec<(usize, usize)> = bands.iter().map(|b| (b.dim(2).unwrap(), b.dim(3).unwrap())).collect();
            let mut expected = vec![(h, w)];
            for _ in 0..4 {
                let (a, b) = *expected.last().unwrap();
                expected.push((a.div_ceil(2), b.div_ceil(2)));
            }
            assert_eq!(sizes, expected);
            let back = laplacian_merge(&bands).unwrap();
            let err = (back - &x).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(err < 1e-5, "{h}x{w}: {err}");
        }
    }

    #[test]
    fn a_single_band_signal_comes_out_with_unit_std() {
        // The finest checkerboard at any amplitude: its band is all there is.
        let x = checkerboard(24, 30, 1000.0);
        let bands = normalized_bands(&x, 3).unwrap();
        assert!((rms(&bands[0]) - 1.0).abs() < 1e-6);
        assert!(bands[1..].iter().all(|b| rms(b) == 0.0), "the other bands stay empty");
        let out = laplacian_normalize(&x, 3).unwrap();
        assert!(values(&out).iter().all(|v| (v.abs() - 1.0).abs() < 1e-6));
    }

    #[test]
    fn bands_of_very_different_strength_come_out_equal() {
        // A checkerboard of 1024 on a constant of 0.25 (the coarse rest): a mean- or
        // std-normalised step is all checkerboard; the Laplacian one gives both unit RMS.
        let x = (checkerboard(32, 40, 1024.0) + 0.25).unwrap();
        let bands = normalized_bands(&x, 3).unwrap();
        assert!((rms(&bands[0]) - 1.0).abs() < 1e-6 && (rms(&bands[3]) - 1.0).abs() < 1e-6);
        let out = laplacian_normalize(&x, 3).unwrap();
        let expected = values(&(checkerboard(32, 40, 1.0) + 1.0).unwrap());
        assert!(values(&out).iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-5));
        let mean = step(x.clone(), GradientNorm::Mean, 3, 1.0).unwrap();
        let spread = values(&mean).iter().fold(0f32, |m, v| m.max((v.abs() - 1.0).abs()));
        assert!(spread < 1e-3, "mean: the constant is lost in the checkerboard ({spread})");
    }

    #[test]
    fn every_norm_gives_steps_of_size_lr() {
        let g = (noise(40, 56, 9) * 1e-4).unwrap();
        let lr = 0.02;
        let mean_abs = |t: &Tensor| t.abs().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap();
        for norm in [GradientNorm::Mean, GradientNorm::Laplacian] {
            let s = step(g.clone(), norm, 4, lr).unwrap();
            assert!((mean_abs(&s) - lr as f32).abs() < 1e-6, "{norm:?}: {}", mean_abs(&s));
        }
        let s = step(g.clone(), GradientNorm::Std, 4, lr).unwrap();
        let centre = s.mean_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(centre.abs() < 1e-7 && (rms(&s) - lr as f32).abs() < 1e-6, "std: mean {centre}, std {}", rms(&s));
        // A zero gradient is no step, not a division by zero.
        for norm in [GradientNorm::Mean, GradientNorm::Std, GradientNorm::Laplacian] {
            let z = step(g.zeros_like().unwrap(), norm, 4, lr).unwrap();
            assert!(values(&z).iter().all(|v| *v == 0.0), "{norm:?}");
        }
    }

    #[test]
    fn mean_steps_are_the_classic_formula_bit_for_bit() {
        let g = noise(30, 20, 5);
        let mean_abs = g.abs().unwrap().mean_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        let classic = (&g * (0.01 / (mean_abs + 1e-12))).unwrap();
        assert_eq!(values(&step(g, GradientNorm::Mean, 4, 0.01).unwrap()), values(&classic));
    }

    #[test]
    fn names_round_trip() {
        for name in GradientNorm::NAMES {
            assert_eq!(name.parse::<GradientNorm>().unwrap().name(), *name);
        }
        assert!("median".parse::<GradientNorm>().is_err());
    }
}
