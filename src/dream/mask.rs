//! Regions: a mask (a `[1, 1, H, W]` tensor in `[0, 1]`) that says how strongly each pixel is
//! dreamed. Opening mask pictures and videos is the planner's ([`crate::plan::mask`]); here is
//! what the dream does with them.
//!
//! A mask's luma (white 1, black 0) is resized to the frame, feathered (a Gaussian blur)
//! ([`prepare`]) and multiplied by the frame's `mask_weight` ([`strength`]); values within
//! 2/255 of black or white count as black or white, so that a compressed mask video's black is
//! black. Every dream step is scaled by it per pixel (see [`super::dream_weighted`]), so the
//! dream's strength follows the mask; and the result is composited with the source
//! ([`composite`], [`composite_rgb`]): where the mask is 0, the output is the source itself,
//! bit for bit, whatever octaves, jitter, carried dreams or rounding did nearby. Elsewhere it is
//! the dream as it is: the scaled steps already set its strength, and blending it with the
//! source once more (`m * dream + (1 - m) * source`) would make the strength go as `m^2` in a
//! picture, and in a video, whose dream builds up over frames, collapse wherever the mask is
//! not white.

use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::resample;

/// Mask values within this of black or white count as black or white (the noise of lossy
/// compression, and rounding in the feathering).
const SNAP: f64 = 2.0 / 255.0;

/// `[1, 1, H, W]` luma (Rec. 601) in `[0, 1]` of an RGB image.
pub fn luma(img: &RgbImage, device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = img
        .pixels()
        .map(|p| (0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])) / 255.0)
        .collect();
    Tensor::from_vec(values, (1, 1, img.height() as usize, img.width() as usize), device)
}

/// A mask from the raw luma of a mask picture (any size), `[1, 1, h, w]` `F32` in `[0, 1]`:
/// resized to `h x w`, feathered by a Gaussian of `feather` pixels, and stretched so that values
/// within `SNAP` (2/255) of black or white are exactly 0 or 1.
pub fn prepare(raw: &Tensor, (h, w): (usize, usize), feather: f64) -> candle_core::Result<Tensor> {
    let sized = resample::resize(raw, h, w)?.clamp(0.0, 1.0)?;
    let m = resample::gaussian_blur(&sized, feather)?;
    ((m - SNAP)? / (1.0 - 2.0 * SNAP))?.clamp(0.0, 1.0)
}

/// The per-pixel dream strength of a frame (`h x w`, on `device`): `mask` (the frame's,
/// `[1, 1, h, w]`) times `weight`, or `weight` everywhere without a mask; `None` when that is 1
/// everywhere (nothing to scale, nothing to composite: the plain dream).
pub fn strength(
    mask: Option<&Tensor>,
    (h, w): (usize, usize),
    weight: f64,
    device: &Device,
) -> candle_core::Result<Option<Tensor>> {
    let strength = match mask {
        None if weight >= 1.0 => return Ok(None),
        None => Tensor::full(weight as f32, (1, 1, h, w), device)?,
        Some(m) if weight >= 1.0 => m.clone(),
        Some(m) => (m * weight)?,
    };
    // White everywhere is no mask at all (resized to the octaves, ones would not stay exact).
    Ok((strength.min_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()? < 1.0).then_some(strength))
}

/// Whether `strength` is 0 everywhere (nothing to dream).
pub fn is_zero(strength: &Tensor) -> candle_core::Result<bool> {
    Ok(strength.max_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()? <= 0.0)
}

/// `dreamed` where `strength` (`[1, 1, H, W]`) is above 0, `source` (exactly) elsewhere; both
/// `[1, C, H, W]`, returned in `source`'s precision.
pub fn composite(dreamed: &Tensor, source: &Tensor, strength: &Tensor) -> candle_core::Result<Tensor> {
    let keep = strength.gt(0.0)?.broadcast_as(source.shape())?;
    keep.where_cond(&dreamed.to_dtype(source.dtype())?, source)
}

/// [`composite`] of 8-bit frames, `strength` row-major `H x W`.
pub fn composite_rgb(dreamed: &RgbImage, source: &RgbImage, strength: &[f32]) -> RgbImage {
    let mut out = dreamed.clone();
    for ((o, s), &m) in out.pixels_mut().zip(source.pixels()).zip(strength) {
        if m <= 0.0 {
            *o = *s;
        }
    }
    out
}
