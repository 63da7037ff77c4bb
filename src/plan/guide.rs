//! Reading a guide image (the `guide` setting) for guided dreams (see [`crate::nn::guide`]).

use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Tensor};

use crate::image_io::decode_image;
use crate::nn::Guide;
use crate::resample;

/// Shorter side, in pixels, a guide image is resized to before its features are computed (as
/// google/deepdream's notebook does with its 224-pixel guide).
pub const GUIDE_SIDE: usize = 224;

/// Reads the guide image `path`, resized to [`GUIDE_SIDE`] pixels on its shorter side (and at
/// most 4 times that on its longer side).
pub fn load_guide(path: &Path, device: &Device) -> anyhow::Result<Guide> {
    let img = decode_image(path).with_context(|| format!("cannot use {} as a guide image", path.display()))?;
    let rgb = img.to_rgb32f();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let chw = Tensor::from_vec(rgb.into_raw(), (h, w, 3), device)?.permute((2, 0, 1))?.contiguous()?.unsqueeze(0)?;
    let scale = (GUIDE_SIDE as f64 / h.min(w) as f64).min(4.0 * GUIDE_SIDE as f64 / h.max(w) as f64);
    let (gh, gw) = (((h as f64 * scale).round() as usize).max(1), ((w as f64 * scale).round() as usize).max(1));
    Ok(Guide::new(resample::resize(&chw, gh, gw)?.clamp(0.0, 1.0)?))
}
