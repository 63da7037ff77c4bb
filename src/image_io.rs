//! Image files to and from `[1, 3, H, W]` RGB tensors in `[0, 1]`.

use std::path::Path;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use image::ImageDecoder;
use image::RgbImage;
use rayon::prelude::*;

use crate::nn::cpu::with_f32_values;
use crate::output::write_atomically;

/// An 8-bit RGB image as a `[1, 3, H, W]` `F32` tensor in `[0, 1]`.
pub fn rgb_to_tensor(img: &RgbImage, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = img.dimensions();
    let hwc = Tensor::from_slice(img.as_raw(), (h as usize, w as usize, 3), device)?;
    (hwc.permute((2, 0, 1))?.to_dtype(DType::F32)? / 255.0)?.unsqueeze(0)
}

/// A `[1, 3, H, W]` tensor in `[0, 1]` as an 8-bit RGB image (values are clamped and rounded).
pub fn tensor_to_rgb(x: &Tensor) -> candle_core::Result<RgbImage> {
    let (_, c, h, w) = x.dims4()?;
    if c != 3 {
        candle_core::bail!("an RGB image needs 3 channels, not {c}");
    }
    let n = h * w;
    let mut bytes = vec![0u8; 3 * n];
    with_f32_values(&x.to_dtype(DType::F32)?, |planes| {
        bytes.par_chunks_mut(3 * w.max(1)).enumerate().with_min_len(16).for_each(|(y, row)| {
            for (i, px) in (y * w..).zip(row.chunks_exact_mut(3)) {
                for (c, v) in px.iter_mut().enumerate() {
                    *v = (planes[c * n + i].clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        })
    })?;
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

/// Largest picture dreamvid reads, in pixels (8192x4096; an 8K UHD frame fits): the dream
/// needs some 60 bytes per pixel with the smallest network and several times that with real
/// ones, so a larger picture would exhaust a workstation's memory (Rust aborts then).
pub const MAX_PIXELS: u64 = 1 << 25;

/// Most raw bytes a PNG file's byte can hold: deflate's limit (1032) with room for the chunk
/// headers and filter bytes.
const PNG_MAX_RATIO: u64 = 1100;

/// Decodes an image file (PNG, JPEG, WebP, TIFF, BMP, whatever its extension says), upright
/// (a JPEG's EXIF orientation applied); pictures over [`MAX_PIXELS`] are refused before any
/// memory is taken for them.
pub fn decode_image(path: &Path) -> anyhow::Result<image::DynamicImage> {
    let cannot = || format!("cannot read image {} (dreamvid reads {FORMATS} files)", path.display());
    let mut reader = image::ImageReader::open(path).with_context(cannot)?.with_guessed_format()?;
    let png = reader.format() == Some(image::ImageFormat::Png);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8); // RGBA at 16 bits per channel
    reader.limits(limits);
    let mut decoder = reader.into_decoder().with_context(cannot)?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        anyhow::bail!(
            "{} is {w}x{h} pixels; dreamvid reads pictures of up to {} megapixels: scale it down first",
            path.display(),
            MAX_PIXELS / 1_000_000
        );
    }
    // Deflate packs at most 1032 bytes into one, so a PNG smaller than its pixels / 1032 is
    // cut short: say so before its pixels' memory is taken, rather than after.
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if png && decoder.total_bytes() > PNG_MAX_RATIO * file_len {
        anyhow::bail!("{} is damaged: {} bytes cannot hold a {w}x{h} PNG picture", path.display(), file_len);
    }
    let orientation = decoder.orientation().with_context(cannot)?;
    let mut img = image::DynamicImage::from_decoder(decoder).with_context(cannot)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// `img` resized with `filter` so that its longer side is `side` pixels, or `None` when it is
/// no larger than that already (pictures are never enlarged).
pub fn shrunk(img: &RgbImage, side: u32, filter: image::imageops::FilterType) -> Option<RgbImage> {
    let (w, h) = img.dimensions();
    let scale = f64::from(side) / f64::from(w.max(h));
    let size = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
    (scale < 1.0).then(|| image::imageops::resize(img, size(w), size(h), filter))
}

/// Reads an image file as a [`Picture`] (see [`decode_image`]).
pub fn read_picture(path: &Path, device: &Device) -> anyhow::Result<Picture> {
    let img = decode_image(path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG file claiming `w`x`h` RGB pixels, with no pixel data (valid CRCs).
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        fn crc(bytes: &[u8]) -> u32 {
            let mut c = !0u32;
            for &b in bytes {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                }
            }
            !c
        }
        let mut header = w.to_be_bytes().to_vec();
        header.extend(h.to_be_bytes());
        header.extend([8, 2, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(b"IHDR", header), (b"IDAT", vec![]), (b"IEND", vec![])] {
            let chunk: Vec<u8> = kind.iter().chain(&data).copied().collect();
            png.extend((data.len() as u32).to_be_bytes());
            png.extend(&chunk);
            png.extend(crc(&chunk).to_be_bytes());
        }
        png
    }

    #[test]
    fn huge_pictures_are_refused_before_memory_is_taken() {
        let dir = std::env::temp_dir().join(format!("dreamvid-huge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("huge.png");
        std::fs::write(&path, png_header(65535, 4096)).unwrap();
        let err = decode_image(&path).unwrap_err().to_string();
        assert!(err.contains("65535x4096 pixels") && err.contains("scale it down"), "{err}");
        // Within the size limit, but far more pixels than the file can hold: refused before
        // the decoder takes the picture's 100 MB (the fuzz target found such inputs).
        std::fs::write(&path, png_header(8192, 4096)).unwrap();
        let err = decode_image(&path).unwrap_err().to_string();
        assert!(err.contains("is damaged") && err.contains("cannot hold a 8192x4096 PNG"), "{err}");
        // A small header gets past the size check and fails on the missing pixels instead.
        std::fs::write(&path, png_header(64, 64)).unwrap();
        let err = format!("{:#}", decode_image(&path).unwrap_err());
        assert!(err.contains("cannot read image") && !err.contains("scale it down"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
