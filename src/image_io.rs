//! Image files to and from `[1, 3, H, W]` RGB tensors in `[0, 1]`.

use std::path::Path;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use image::ImageDecoder;
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

/// The formats dreamvid reads and writes, by extension.
const FORMATS: &str = "PNG, JPEG, WebP, TIFF or BMP";

/// A picture as read from a file: its colours for the dream, and what is kept to write it back
/// like the original.
pub struct Picture {
    /// `[1, 3, H, W]` `F32` RGB in `[0, 1]`, upright (a JPEG's EXIF orientation applied); grey
    /// pictures are RGB with equal channels.
    pub rgb: Tensor,
    /// The alpha channel, row-major, as 16-bit values (copied back untouched), if the file has
    /// one.
    pub alpha: Option<Vec<u16>>,
    /// The file stores more than 8 bits per channel (written back at 16 bits where the output
    /// format can).
    pub deep: bool,
}

/// Reads an image file (PNG, JPEG, WebP, TIFF, BMP, whatever its extension says) as a
/// [`Picture`].
pub fn read_picture(path: &Path, device: &Device) -> anyhow::Result<Picture> {
    let cannot = || format!("cannot read image {} (dreamvid reads {FORMATS} files)", path.display());
    let mut decoder = image::ImageReader::open(path)
        .with_context(cannot)?
        .with_guessed_format()?
        .into_decoder()
        .with_context(cannot)?;
    let orientation = decoder.orientation().with_context(cannot)?;
    let mut img = image::DynamicImage::from_decoder(decoder).with_context(cannot)?;
    img.apply_orientation(orientation);
    let deep = img.color().bytes_per_pixel() / img.color().channel_count().max(1) > 1;
    let alpha = img.color().has_alpha().then(|| img.to_rgba16().pixels().map(|p| p[3]).collect());
    let rgb = img.to_rgb32f();
    let (w, h) = rgb.dimensions();
    let hwc = Tensor::from_vec(rgb.into_raw(), (h as usize, w as usize, 3), device)?;
    Ok(Picture { rgb: hwc.permute((2, 0, 1))?.contiguous()?.unsqueeze(0)?, alpha, deep })
}

/// Reads an image file as a `[1, 3, H, W]` RGB tensor in `[0, 1]` (see [`read_picture`]).
pub fn load_image(path: &Path, device: &Device) -> anyhow::Result<Tensor> {
    Ok(read_picture(path, device)?.rgb)
}

/// Checks that `path` has an image extension dreamvid can write, before any work is done.
pub fn check_image_path(path: &Path) -> anyhow::Result<image::ImageFormat> {
    use image::ImageFormat::*;
    match image::ImageFormat::from_path(path) {
        Ok(f @ (Png | Jpeg | WebP | Tiff | Bmp)) => Ok(f),
        _ => anyhow::bail!(
            "cannot write {}: unknown image extension (use .png, .jpg, .webp, .tif or .bmp)",
            path.display()
        ),
    }
}

/// Writes `rgb` (`[1, 3, H, W]` in `[0, 1]`) as an image file in the format of its
/// extension, like `like`: its alpha channel copied back and 16 bits per channel where the
/// format has them (PNG, TIFF). Returns a note when something of `like` could not be kept (a
/// JPEG has no alpha). The file appears only once it is complete.
pub fn write_picture(rgb: &Tensor, like: &Picture, path: &Path) -> anyhow::Result<Option<String>> {
    use image::{DynamicImage, ImageBuffer, ImageFormat};
    let format = check_image_path(path)?;
    let (_, _, h, w) = rgb.dims4()?;
    let values = rgb.squeeze(0)?.to_dtype(DType::F32)?.clamp(0.0, 1.0)?.permute((1, 2, 0))?.flatten_all()?.to_vec1()?;
    let alpha = like.alpha.as_ref().filter(|a| a.len() == h * w);
    let keeps_alpha = format != ImageFormat::Jpeg;
    let deep = like.deep && matches!(format, ImageFormat::Png | ImageFormat::Tiff);
    let img: DynamicImage = match alpha.filter(|_| keeps_alpha) {
        Some(a) => {
            let rgba: Vec<f32> = values
                .chunks_exact(3)
                .zip(a)
                .flat_map(|(p, &al)| [p[0], p[1], p[2], f32::from(al) / 65535.0])
                .collect();
            ImageBuffer::from_raw(w as u32, h as u32, rgba).map(DynamicImage::ImageRgba32F).expect("h*w*4 values")
        }
        None => ImageBuffer::from_raw(w as u32, h as u32, values).map(DynamicImage::ImageRgb32F).expect("h*w*3 values"),
    };
    let img = match (deep, img.color().has_alpha()) {
        (true, true) => DynamicImage::ImageRgba16(img.to_rgba16()),
        (true, false) => DynamicImage::ImageRgb16(img.to_rgb16()),
        (false, true) => DynamicImage::ImageRgba8(img.to_rgba8()),
        (false, false) => DynamicImage::ImageRgb8(img.to_rgb8()),
    };
    write_atomically(path, |tmp| {
        img.save_with_format(tmp, format).with_context(|| format!("cannot write image {}", path.display()))
    })?;
    Ok((alpha.is_some() && !keeps_alpha).then(|| {
        format!("{} has no alpha channel: the transparency was dropped (write .png to keep it)", path.display())
    }))
}

/// Writes a tensor as an 8-bit RGB image file; the format follows the extension. The file
/// appears only once it is complete.
pub fn save_image(x: &Tensor, path: &Path) -> anyhow::Result<()> {
    write_picture(x, &Picture { rgb: x.clone(), alpha: None, deep: false }, path).map(|_| ())
}
