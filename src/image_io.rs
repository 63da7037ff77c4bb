//! Image files to and from `[1, 3, H, W]` RGB tensors in `[0, 1]`.

use std::path::Path;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::output::write_atomically;

/// An 8-bit RGB image as a `[1, 3, H, W]` `F32` tensor in `[0, 1]`.
pub fn rgb_to_tensor(img: &RgbImage, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = img.dimensions();
    let hwc = Tensor::from_slice(img.as_raw(), (h as usize, w as usize, 3), device)?;
    (hwc.permute((2, 0, 1))?.to_dtype(DType::F32)? / 255.0)?.unsqueeze(0)
}

/// A `[1, 3, H, W]` tensor in `[0, 1]` as an 8-bit RGB image (values are clamped and rounded).
pub fn tensor_to_rgb(x: &Tensor) -> candle_core::Result<RgbImage> {
    let (_, _, h, w) = x.dims4()?;
    let bytes = (x.squeeze(0)?.to_dtype(DType::F32)?.clamp(0.0, 1.0)? * 255.0)?
        .round()?
        .permute((1, 2, 0))?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    Ok(RgbImage::from_raw(w as u32, h as u32, bytes).expect("buffer has h*w*3 bytes"))
}

/// Reads an image file (PNG, JPEG) as a tensor.
pub fn load_image(path: &Path, device: &Device) -> anyhow::Result<Tensor> {
    let img = image::open(path)
        .with_context(|| format!("cannot read image {} (is it a PNG or JPEG file?)", path.display()))?
        .to_rgb8();
    Ok(rgb_to_tensor(&img, device)?)
}

/// Checks that `path` has an image extension dreamvid can write, before any work is done.
pub fn check_image_path(path: &Path) -> anyhow::Result<()> {
    match image::ImageFormat::from_path(path) {
        Ok(image::ImageFormat::Png | image::ImageFormat::Jpeg) => Ok(()),
        _ => anyhow::bail!("cannot write {}: unknown image extension (use .png or .jpg)", path.display()),
    }
}

/// Writes a tensor as an image file; the format follows the extension (`.png`, `.jpg`).
/// The file appears only once it is complete.
pub fn save_image(x: &Tensor, path: &Path) -> anyhow::Result<()> {
    check_image_path(path)?;
    let img = tensor_to_rgb(x)?;
    write_atomically(path, |tmp| img.save(tmp).with_context(|| format!("cannot write image {}", path.display())))
}
