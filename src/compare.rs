//! Frame-by-frame comparison of two videos (for regression tests of renders).

use std::path::Path;

use anyhow::bail;
use image::RgbImage;

use crate::video::{Item, VideoReader};

/// PSNR in dB between two RGB images of the same size (infinite when identical).
///
/// # Panics
/// When the sizes differ: there is no per-pixel comparison of different sizes (the callers
/// that read files, [`compare_videos`], check sizes first and say which file differs).
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "PSNR of images of different sizes");
    let mse = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>()
        / a.as_raw().len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64.powi(2) / mse).log10()
    }
}

/// Every frame of a video, decoded.
pub fn frames(path: &Path) -> anyhow::Result<Vec<RgbImage>> {
    let mut reader = VideoReader::open(path)?;
    let mut out = Vec::new();
    while let Some(item) = reader.next_item()? {
        if let Item::Frame(f) = item {
            out.push(f.image);
        }
    }
    Ok(out)
}

/// Per-frame PSNR of `b` against `a`; fails if the videos differ in frame count or size.
pub fn compare_videos(a: &Path, b: &Path) -> anyhow::Result<Vec<f64>> {
    let (fa, fb) = (frames(a)?, frames(b)?);
    if fa.len() != fb.len() {
        bail!("{} has {} frames but {} has {}", a.display(), fa.len(), b.display(), fb.len());
    }
    if let (Some(x), Some(y)) = (fa.first(), fb.first()) {
        if x.dimensions() != y.dimensions() {
            bail!("{} is {:?} but {} is {:?}", a.display(), x.dimensions(), b.display(), y.dimensions());
        }
    }
    if let Some((i, (x, y))) = fa.iter().zip(&fb).enumerate().find(|(_, (x, y))| x.dimensions() != y.dimensions()) {
        bail!("frame {i} of {} is {:?} but of {} is {:?}", a.display(), x.dimensions(), b.display(), y.dimensions());
    }
    Ok(fa.iter().zip(&fb).map(|(x, y)| psnr(x, y)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "different sizes")]
    fn psnr_refuses_images_of_different_sizes() {
        psnr(&RgbImage::new(4, 3), &RgbImage::new(3, 4));
    }

    #[test]
    fn psnr_of_known_differences() {
        let a = RgbImage::from_pixel(4, 4, image::Rgb([100, 100, 100]));
        assert_eq!(psnr(&a, &a), f64::INFINITY);
        let b = RgbImage::from_pixel(4, 4, image::Rgb([110, 100, 100]));
        let expected = 10.0 * (255.0f64.powi(2) / (100.0 / 3.0)).log10();
        assert!((psnr(&a, &b) - expected).abs() < 1e-9);
    }
}
