//! Frame-by-frame comparison of two videos (for regression tests of renders).

use std::path::Path;

use anyhow::bail;
use image::RgbImage;

use crate::video::{Item, VideoReader};

/// PSNR in dB between two RGB images of the same size (infinite when identical).
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
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
    Ok(fa.iter().zip(&fb).map(|(x, y)| psnr(x, y)).collect())
}
