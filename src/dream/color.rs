//! Colour in the dream: steps in a decorrelated colour space (Lucid's), and dreams that keep
//! the source's colours.

use candle_core::{Result, Tensor};

/// Lucid's `color_correlation_svd_sqrt`: the square root of ImageNet's RGB correlation, which
/// maps decorrelated colour coordinates to RGB (lucid/optvis/param/color.py).
const CORRELATION_SVD_SQRT: [[f64; 3]; 3] = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];

/// ITU-R BT.601 luma weights (YCbCr's Y).
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// `C Cᵀ` for Lucid's matrix `C` divided by its largest column norm, as Lucid normalises it.
fn step_matrix() -> [[f64; 3]; 3] {
    let c = CORRELATION_SVD_SQRT;
    let norm = (0..3).map(|j| (0..3).map(|i| c[i][j] * c[i][j]).sum::<f64>().sqrt()).fold(0.0, f64::max);
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| c[i][k] * c[j][k]).sum::<f64>() / (norm * norm);
        }
    }
    m
}

fn three_channels(x: &Tensor) -> Result<(usize, usize, usize)> {
    let (n, c, h, w) = x.dims4()?;
    if c != 3 {
        candle_core::bail!("colour steps need RGB images, got {c} channels");
    }
    Ok((n, h, w))
}

/// The gradient `grad` (`[N, 3, H, W]`) as a step in Lucid's decorrelated colour space seen in
/// RGB: with pixels `rgb = C z` (`C` Lucid's normalised `color_correlation_svd_sqrt`), a
/// gradient step on `z` moves `rgb` by `C Cᵀ grad`, which favours the colour directions
/// natural images vary in (mostly brightness) over saturated ones.
pub fn decorrelate(grad: &Tensor) -> Result<Tensor> {
    let (n, h, w) = three_channels(grad)?;
    let m: Vec<f32> = step_matrix().iter().flatten().map(|&v| v as f32).collect();
    let m = Tensor::from_vec(m, (3, 3), grad.device())?.to_dtype(grad.dtype())?;
    m.broadcast_matmul(&grad.reshape((n, 3, h * w))?)?.reshape((n, 3, h, w))
}

/// `dreamed` with the colours of `source` (both `[N, 3, H, W]`, in `[0, 1]`): the source plus
/// the dream's change of luma on every channel, which is the dream's luma (BT.601 Y) with the
/// source's chroma (Cb, Cr) exactly, up to clipping to valid pixels.
pub fn keep_colors(source: &Tensor, dreamed: &Tensor) -> Result<Tensor> {
    three_channels(source)?;
    let weights = Tensor::from_slice(&LUMA, (1, 3, 1, 1), source.device())?.to_dtype(source.dtype())?;
    let luma = |x: &Tensor| x.broadcast_mul(&weights)?.sum_keepdim(1);
    source.broadcast_add(&(luma(dreamed)? - luma(source)?)?)?.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_matrix_is_symmetric_and_favours_brightness() {
        let m = step_matrix();
        for (i, row) in m.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - m[j][i]).abs() < 1e-12);
            }
        }
        // A grey gradient keeps most of its length, a red-minus-blue one loses most of it.
        let apply = |g: [f64; 3]| -> f64 { m.iter().map(|r| (0..3).map(|k| r[k] * g[k]).sum::<f64>().powi(2)).sum() };
        let (grey, chroma) =
            (apply([1.0, 1.0, 1.0]).sqrt() / 3f64.sqrt(), apply([1.0, 0.0, -1.0]).sqrt() / 2f64.sqrt());
        assert!(grey > 0.9 && chroma < 0.15, "grey {grey}, chroma {chroma}");
    }
}
