//! Resampling, all with the one Catmull-Rom kernel ([`cubic`]): antialiased bicubic resizing
//! and Gaussian blur as device-agnostic tensor ops (the blur in plain loops on `F32` CPU
//! tensors), and the bicubic camera warp of zooms.

use std::mem::MaybeUninit;

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

use crate::nn::cpu::{assume_init, cpu_f32, uninit, with_f32_values};

/// Catmull-Rom cubic (a = -0.5), the kernel PIL calls BICUBIC.
fn cubic(x: f64) -> f64 {
    let x = x.abs();
    let a = -0.5;
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// The taps that resample one axis from `src` to `dst` samples: for each output sample, the
/// first input sample it reads and the weights of it and the ones after it (summing to one).
/// When shrinking, the kernel is widened by the scale factor so that the result is antialiased
/// (as PIL does).
fn resample_taps(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = src as f64 / dst as f64;
    let widen = scale.max(1.0);
    let support = 2.0 * widen;
    (0..dst)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let lo = ((center - support).floor().max(0.0)) as usize;
            let hi = ((center + support).ceil() as usize).min(src);
            let weights: Vec<f64> = (lo..hi).map(|j| cubic((j as f64 + 0.5 - center) / widen)).collect();
            let total: f64 = weights.iter().sum();
            (lo, weights.into_iter().map(|w| (w / total) as f32).collect())
        })
        .collect()
}

/// [`resample_taps`] as a `dst x src` row-stochastic matrix.
pub fn resample_matrix(src: usize, dst: usize) -> Vec<f32> {
    let mut m = vec![0f32; dst * src];
    for (i, (lo, weights)) in resample_taps(src, dst).into_iter().enumerate() {
        m[i * src + lo..][..weights.len()].copy_from_slice(&weights);
    }
    m
}

/// Resizes `[N, C, H, W]` to `h x w` with antialiased bicubic resampling.
pub fn resize(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (n, c, h0, w0) = x.dims4()?;
    if (h0, w0) == (h, w) {
        return Ok(x.clone());
    }
    if cpu_f32(x) {
        let resized = with_f32_values(x, |planes| resize_planes(planes, (h0, w0), (h, w)))?;
        return Tensor::from_vec(resized, (n, c, h, w), x.device());
    }
    let dev = x.device();
    let dtype = x.dtype();
    let cols = matrix_t(w0, w, dev)?.to_dtype(dtype)?; // [w0, w]
    let rows = matrix_t(h0, h, dev)?.to_dtype(dtype)?; // [h0, h]
    let x = x.reshape((n * c * h0, w0))?.matmul(&cols)?; // [n c h0, w]
    let x = x.reshape((n * c, h0, w))?.transpose(1, 2)?.contiguous()?.reshape((n * c * w, h0))?;
    let x = x.matmul(&rows)?; // [n c w, h]
    x.reshape((n * c, w, h))?.transpose(1, 2)?.contiguous()?.reshape((n, c, h, w))
}

/// [`resize`] of `h0 x w0` planes stored one after the other to `h x w`, in loops over the
/// few taps each output sample reads (the matrix products of the other devices multiply
/// mostly zeros: 2.2 GFLOP to shrink a 768x576 RGB image by 1.4), rows in parallel: along the
/// rows first, then down the columns a whole row at a time.
fn resize_planes(planes: &[f32], (h0, w0): (usize, usize), (h, w): (usize, usize)) -> Vec<f32> {
    let (across, down) = (resample_taps(w0, w), resample_taps(h0, h));
    let mut wide = uninit::<f32>(planes.len() / w0 * w);
    wide.par_chunks_mut(w).zip(planes.par_chunks(w0)).with_min_len(16).for_each(|(out, row)| {
        resample_row(out, row, &across);
    });
    // SAFETY: the buffer is a row of w values for each of the planes' rows, and every value of
    // every row was written (`across` has w taps).
    let wide = unsafe { assume_init(wide) };
    let mut resized = uninit::<f32>(wide.len() / h0 * h);
    resized.par_chunks_mut(w).enumerate().with_min_len(16).for_each(|(row, out)| {
        let (lo, weights) = &down[row % h];
        weighted_rows(out, &wide[row / h * h0 * w..][..h0 * w], *lo as isize, weights);
    });
    // SAFETY: every row was written in full (`weighted_rows` writes its whole output row).
    unsafe { assume_init(resized) }
}

multiversion! {
    /// `out[j] = sum of weights[i] * row[lo + i]` for each output `j` and its taps `(lo,
    /// weights)`: one row of [`resize_planes`]' first pass.
    fn resample_row(out: &mut [MaybeUninit<f32>], row: &[f32], taps: &[(usize, Vec<f32>)]) {
        for (o, (lo, weights)) in out.iter_mut().zip(taps) {
            o.write(weights.iter().zip(&row[*lo..]).map(|(k, v)| k * v).sum());
        }
    }
}

multiversion! {
    /// `out = sum of k[i] * row(first + i)` over the rows of the `h x w` plane (`w =
    /// out.len()`), row indices clamped to the plane (its edge rows repeat), added up in the
    /// order of `k`: a row of a vertical resize or blur pass.
    fn weighted_rows(out: &mut [MaybeUninit<f32>], plane: &[f32], first: isize, k: &[f32]) {
        let w = out.len();
        let last = (plane.len() / w.max(1)) as isize - 1;
        let row = |i: usize| &plane[(first + i as isize).clamp(0, last) as usize * w..][..w];
        let Some((&k0, rest)) = k.split_first() else {
            out.iter_mut().for_each(|o| {
                o.write(0.0);
            });
            return;
        };
        // `0.0 +`: a sum into a zeroed row, to the bit (a -0.0 product gives 0.0).
        out.iter_mut().zip(row(0)).for_each(|(o, &v)| {
            o.write(0.0 + k0 * v);
        });
        // SAFETY: every value was written just above.
        let out = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
        for (i, &kv) in rest.iter().enumerate() {
            out.iter_mut().zip(row(i + 1)).for_each(|(o, &v)| *o += kv * v);
        }
    }
}

fn matrix_t(src: usize, dst: usize, dev: &Device) -> Result<Tensor> {
    Tensor::from_vec(resample_matrix(src, dst), (dst, src), dev)?.t()?.contiguous()
}

/// Normalised 1-D Gaussian of standard deviation `sigma`, radius `ceil(3 sigma)`.
pub fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil().max(1.0) as i64;
    let raw: Vec<f64> = (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = raw.iter().sum();
    raw.into_iter().map(|v| (v / total) as f32).collect()
}

/// Gaussian blur of `[N, C, H, W]` with edge pixels replicated; `sigma <= 0` returns `x`.
pub fn gaussian_blur(x: &Tensor, sigma: f64) -> Result<Tensor> {
    if sigma <= 0.0 {
        return Ok(x.clone());
    }
    let (n, c, h, w) = x.dims4()?;
    let k = gaussian_kernel(sigma);
    if cpu_f32(x) {
        let blurred = with_f32_values(x, |planes| gaussian_blur_planes(planes, (h, w), &k))?;
        return Tensor::from_vec(blurred, (n, c, h, w), x.device());
    }
    gaussian_blur_tensor_ops(x, &k)
}

/// [`gaussian_blur`] with the 1-D kernel `k` as two one-channel `conv2d`s (any device).
fn gaussian_blur_tensor_ops(x: &Tensor, k: &[f32]) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let r = k.len() / 2;
    let dev = x.device();
    let kv = Tensor::from_slice(k, (1, 1, k.len(), 1), dev)?.to_dtype(x.dtype())?;
    let kh = kv.reshape((1, 1, 1, k.len()))?;
    let planes = x.reshape((n * c, 1, h, w))?;
    let v = pad_replicate(&planes, 2, r)?.conv2d(&kv, 0, 1, 1, 1)?;
    let b = pad_replicate(&v, 3, r)?.conv2d(&kh, 0, 1, 1, 1)?;
    b.reshape((n, c, h, w))
}

/// [`gaussian_blur`]'s two passes over `h x w` planes stored one after the other, with the
/// 1-D kernel `k`, in row loops that vectorise (candle's `conv2d` of one-channel planes
/// unfolds every pixel's window first: 7 ms of a 60 ms dream step at 224x224).
fn gaussian_blur_planes(planes: &[f32], (h, w): (usize, usize), k: &[f32]) -> Vec<f32> {
    let r = k.len() / 2;
    let mut vertical = uninit::<f32>(planes.len());
    vertical.par_chunks_mut(w).with_min_len(16).enumerate().for_each(|(row, out)| {
        let (plane, y) = (&planes[row / h * h * w..][..h * w], row % h);
        weighted_rows(out, plane, y as isize - r as isize, k);
    });
    // SAFETY: every row was written in full (`weighted_rows` writes its whole output row).
    let vertical = unsafe { assume_init(vertical) };
    let mut blurred = uninit::<f32>(planes.len());
    blurred.par_chunks_mut(w).zip(vertical.par_chunks(w)).with_min_len(16).for_each(|(out, row)| {
        blur_row(out, row, k);
    });
    // SAFETY: as above, for `blur_row`.
    unsafe { assume_init(blurred) }
}

multiversion! {
    /// `out[j] = sum of k[i] * row[j + i - r]` (`r` the kernel's radius), edge values
    /// repeated, added up in the order of `k`: a row of [`gaussian_blur_planes`]' second pass.
    fn blur_row(out: &mut [MaybeUninit<f32>], row: &[f32], k: &[f32]) {
        let (w, r) = (row.len(), k.len() / 2);
        let at = |j: usize| row[j.saturating_sub(r).min(w - 1)];
        // Outputs whose window lies inside the row, then those at the edges.
        let inner = if k.is_empty() { w..w } else { r.min(w)..w.saturating_sub(r).max(r.min(w)) };
        if let Some((&k0, rest)) = k.split_first().filter(|_| !inner.is_empty()) {
            let sums = &mut out[inner.clone()];
            // `0.0 +`: as in `weighted_rows`.
            sums.iter_mut().zip(&row[inner.start - r..]).for_each(|(s, &v)| {
                s.write(0.0 + k0 * v);
            });
            // SAFETY: every value was written just above.
            let sums = unsafe { &mut *(sums as *mut [MaybeUninit<f32>] as *mut [f32]) };
            for (i, &kv) in rest.iter().enumerate() {
                sums.iter_mut().zip(&row[inner.start + i + 1 - r..]).for_each(|(s, &v)| *s += kv * v);
            }
        }
        for j in (0..inner.start).chain(inner.end..w) {
            out[j].write(k.iter().enumerate().fold(0.0, |s, (i, &kv)| s + kv * at(j + i)));
        }
    }
}

/// Pads `r` copies of the edge on both sides of `dim` (repeating the pattern for tiny images).
fn pad_replicate(x: &Tensor, dim: usize, r: usize) -> Result<Tensor> {
    x.pad_with_same(dim, r, r)
}

/// Camera motion from one frame to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraStep {
    /// Scale per frame (> 1 zooms in).
    pub zoom: f64,
    /// Rotation per frame in degrees, clockwise.
    pub rotate: f64,
    /// Camera shift per frame in pixels `(x, y)`.
    pub translate: (f64, f64),
}

/// The next frame's starting image: `x` seen by a camera that zoomed, turned and shifted by
/// `step` (bicubic resampling, edges extended).
pub fn move_camera(x: &Tensor, step: CameraStep) -> anyhow::Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let src = x.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let (sin, cos) = (-step.rotate.to_radians()).sin_cos();
    let mut out = vec![0f32; c * h * w];
    for y in 0..h {
        for xx in 0..w {
            let (dx, dy) = ((xx as f64 - cx) / step.zoom, (y as f64 - cy) / step.zoom);
            let sx = cx + step.translate.0 + cos * dx - sin * dy;
            let sy = cy + step.translate.1 + sin * dx + cos * dy;
            for ch in 0..c {
                out[ch * h * w + y * w + xx] = bicubic(&src[ch * h * w..(ch + 1) * h * w], w, h, sx, sy);
            }
        }
    }
    Ok(Tensor::from_vec(out, (1, c, h, w), x.device())?.clamp(0.0, 1.0)?.to_dtype(x.dtype())?)
}

fn bicubic(plane: &[f32], w: usize, h: usize, x: f64, y: f64) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let taps = |t: f64| [cubic(t + 1.0), cubic(t), cubic(1.0 - t), cubic(2.0 - t)];
    let (wx, wy) = (taps(x - x0), taps(y - y0));
    let at = |i: i64, j: i64| plane[(j.clamp(0, h as i64 - 1) as usize) * w + i.clamp(0, w as i64 - 1) as usize] as f64;
    let mut v = 0.0;
    for (m, wyv) in wy.iter().enumerate() {
        for (n, wxv) in wx.iter().enumerate() {
            v += wyv * wxv * at(x0 as i64 - 1 + n as i64, y0 as i64 - 1 + m as i64);
        }
    }
    v as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_rows_sum_to_one() {
        for (s, d) in [(10, 7), (7, 10), (224, 160), (5, 5), (3, 1)] {
            let m = resample_matrix(s, d);
            for i in 0..d {
                let total: f32 = m[i * s..(i + 1) * s].iter().sum();
                assert!((total - 1.0).abs() < 1e-5, "{s}->{d} row {i}: {total}");
            }
        }
    }

    #[test]
    fn resize_keeps_constant_images_and_shapes() -> Result<()> {
        let x = Tensor::full(0.3f32, (1, 3, 17, 23), &Device::Cpu)?;
        let y = resize(&x, 11, 31)?;
        assert_eq!(y.dims(), &[1, 3, 11, 31]);
        let max_err = (y - 0.3)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(max_err < 1e-5, "{max_err}");
        Ok(())
    }

    #[test]
    fn loops_match_the_matrix_products() -> Result<()> {
        // Shrinking (antialiased) and growing, odd sizes, several planes, one-pixel axes.
        for (c, (h0, w0), (h, w)) in
            [(3, (41, 57), (29, 40)), (2, (13, 9), (31, 22)), (1, (5, 1), (2, 3)), (3, (1, 7), (4, 7))]
        {
            let x = Tensor::rand(0f32, 1.0, (1, c, h0, w0), &Device::Cpu)?;
            let loops = resize(&x, h, w)?;
            let cols = matrix_t(w0, w, &Device::Cpu)?;
            let rows = matrix_t(h0, h, &Device::Cpu)?;
            let ops = x.reshape((c * h0, w0))?.matmul(&cols)?.reshape((c, h0, w))?;
            let ops = rows.t()?.broadcast_matmul(&ops)?.reshape((1, c, h, w))?;
            let err = (loops - ops)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(err < 1e-5, "{c}x{h0}x{w0} -> {h}x{w}: {err}");
        }
        Ok(())
    }

    #[test]
    fn upsampling_interpolates_between_samples() -> Result<()> {
        // A horizontal ramp stays a ramp (bicubic is exact on linear functions inside).
        let ramp: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let x = Tensor::from_vec(ramp, (1, 1, 1, 8), &Device::Cpu)?;
        let y = resize(&x, 1, 16)?.flatten_all()?.to_vec1::<f32>()?;
        for (i, v) in y.iter().enumerate().take(13).skip(3) {
            let expected = (i as f32 + 0.5) / 2.0 - 0.5;
            assert!((v - expected).abs() < 1e-4, "{i}: {v} vs {expected}");
        }
        Ok(())
    }

    #[test]
    fn blur_preserves_mean_and_reduces_variance() -> Result<()> {
        let data: Vec<f32> = (0..400).map(|i| if (i / 20 + i % 20) % 2 == 0 { 1.0 } else { 0.0 }).collect();
        let x = Tensor::from_vec(data, (1, 1, 20, 20), &Device::Cpu)?;
        let y = gaussian_blur(&x, 1.0)?;
        let mean = |t: &Tensor| t.mean_all()?.to_scalar::<f32>();
        assert!((mean(&x)? - mean(&y)?).abs() < 0.02);
        let var = |t: &Tensor| -> Result<f32> { (t - mean(t)? as f64)?.sqr()?.mean_all()?.to_scalar::<f32>() };
        assert!(var(&y)? < 0.1 * var(&x)?);
        let k = gaussian_kernel(1.0);
        assert_eq!(k.len(), 7);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn blur_loops_match_the_tensor_ops() -> Result<()> {
        // Several planes, odd sizes, and planes smaller than the kernel (edges repeat).
        for (c, h, w, sigma) in [(3, 17, 23, 0.5), (2, 9, 40, 1.0), (3, 2, 3, 1.5), (1, 1, 5, 1.0)] {
            let x = Tensor::rand(0f32, 1.0, (1, c, h, w), &Device::Cpu)?;
            let loops = gaussian_blur(&x, sigma)?;
            let ops = gaussian_blur_tensor_ops(&x, &gaussian_kernel(sigma))?;
            let err = (loops - ops)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(err < 1e-6, "{c}x{h}x{w} sigma {sigma}: {err}");
        }
        Ok(())
    }

    #[test]
    fn identity_camera_keeps_the_image() {
        let picture: Vec<f32> = (0..3 * 20 * 24).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let x = Tensor::from_vec(picture, (1, 3, 20, 24), &Device::Cpu).unwrap();
        let y = move_camera(&x, CameraStep { zoom: 1.0, rotate: 0.0, translate: (0.0, 0.0) }).unwrap();
        let err = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(err < 1e-5, "{err}");
    }

    #[test]
    fn zoom_magnifies_about_the_centre() {
        // A horizontal ramp zoomed 2x has half the slope and the same centre value.
        let w = 33;
        let ramp: Vec<f32> = (0..3 * w * 9).map(|i| (i % w) as f32 / (w - 1) as f32).collect();
        let x = Tensor::from_vec(ramp, (1, 3, 9, w), &Device::Cpu).unwrap();
        let y = move_camera(&x, CameraStep { zoom: 2.0, rotate: 0.0, translate: (0.0, 0.0) }).unwrap();
        let row = y.narrow(1, 0, 1).unwrap().narrow(2, 4, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((row[16] - 0.5).abs() < 1e-4);
        assert!(((row[20] - row[12]) - 0.125).abs() < 1e-3, "{}", row[20] - row[12]);
    }
}
