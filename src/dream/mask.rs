//! Regions: a mask picture (or mask video) that says how strongly each pixel is dreamed.
//!
//! The mask's luma (white 1, black 0) is resized to the frame, feathered (a Gaussian blur) and
//! multiplied by the frame's `mask_weight`; values within 2/255 of black or white count as
//! black or white, so that a compressed mask video's black is black. Every dream step is scaled by it per pixel (see
//! [`super::dream_weighted`]), so the dream's strength follows the mask; and the result is
//! composited with the source ([`composite`], [`composite_rgb`]): where the mask is 0, the
//! output is the source itself, bit for bit, whatever octaves, jitter, carried dreams or
//! rounding did nearby. Elsewhere it is the dream as it is: the scaled steps already set its
//! strength, and blending it with the source once more (`m * dream + (1 - m) * source`) would
//! make the strength go as `m^2` in a picture, and in a video, whose dream builds up over
//! frames, collapse wherever the mask is not white.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::image_io::decode_image;
use crate::resample;
use crate::video::{frames::is_frame_folder, Item, Source};

/// Mask values within this of black or white count as black or white (the noise of lossy
/// compression, and rounding in the feathering).
const SNAP: f64 = 2.0 / 255.0;

/// Where a mask's pictures come from.
enum Frames {
    /// One picture for every frame.
    Still(Tensor),
    /// A video (or frame folder) read along with the input: the frame of the same index, the
    /// last one for frames past its end.
    Video(Box<Mutex<MaskVideo>>),
}

struct MaskVideo {
    source: Source,
    /// The latest frame read: its index and luma.
    current: Option<(usize, Tensor)>,
    ended: bool,
}

/// A mask file, ready to give each frame's mask.
pub struct Mask {
    path: PathBuf,
    frames: Frames,
    feather: f64,
    device: Device,
    /// The feathered still mask at the last size asked for.
    feathered: Mutex<Option<Tensor>>,
}

/// `[1, 1, H, W]` luma (Rec. 601) in `[0, 1]` of an RGB image.
fn luma(img: &RgbImage, device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = img
        .pixels()
        .map(|p| (0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])) / 255.0)
        .collect();
    Tensor::from_vec(values, (1, 1, img.height() as usize, img.width() as usize), device)
}

impl Mask {
    /// Opens the mask `path`, feathered by `feather` pixels: a picture (PNG, JPEG, ...; grey
    /// or colour, whose luma counts), or with `video` a video or frame folder too.
    pub fn open(path: &Path, feather: f64, video: bool, device: &Device) -> anyhow::Result<Self> {
        let picture = image::ImageFormat::from_path(path).is_ok() && !is_frame_folder(path);
        if !picture && !video && (is_frame_folder(path) || path.is_file()) {
            anyhow::bail!(
                "{} is not a picture: a mask video (or frame folder) is for video input only; \
                 give a PNG or JPEG mask",
                path.display()
            );
        }
        let frames = if picture || !video {
            let img = decode_image(path).with_context(|| format!("cannot use {} as a mask", path.display()))?;
            Frames::Still(luma(&img.to_rgb8(), device)?)
        } else {
            let fps = is_frame_folder(path).then_some(1.0);
            let source =
                Source::open(path, fps).with_context(|| format!("cannot read mask video {}", path.display()))?;
            Frames::Video(Box::new(Mutex::new(MaskVideo { source, current: None, ended: false })))
        };
        Ok(Self { path: path.to_path_buf(), frames, feather, device: device.clone(), feathered: Mutex::new(None) })
    }

    /// The raw luma of frame `index`, at the mask file's size.
    fn luma_at(&self, index: usize) -> anyhow::Result<Tensor> {
        let Frames::Video(video) = &self.frames else { unreachable!("stills are feathered once") };
        let mut v = video.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while !v.ended && v.current.as_ref().is_none_or(|(i, _)| *i < index) {
            match v.source.next_item().with_context(|| format!("cannot read mask video {}", self.path.display()))? {
                Some(Item::Frame(f)) => v.current = Some((f.index, luma(&f.image, &self.device)?)),
                Some(Item::Audio(..)) => {}
                None => v.ended = true,
            }
        }
        match &v.current {
            Some((_, l)) => Ok(l.clone()),
            None => anyhow::bail!("the mask video {} has no frames", self.path.display()),
        }
    }

    /// The mask of frame `index` (a video's frame index; any for a still), `[1, 1, h, w]`
    /// `F32` in `[0, 1]`: resized to `h x w`, feathered, and stretched so that values within
    /// [`SNAP`] of black or white are exactly 0 or 1.
    pub fn frame(&self, index: usize, h: usize, w: usize) -> anyhow::Result<Tensor> {
        let still = match &self.frames {
            Frames::Still(l) => Some(l),
            Frames::Video(_) => None,
        };
        if still.is_some() {
            let cached = self.feathered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(m) = cached.as_ref().filter(|m| m.dims4().is_ok_and(|d| (d.2, d.3) == (h, w))) {
                return Ok(m.clone());
            }
        }
        let raw = match still {
            Some(l) => l.clone(),
            None => self.luma_at(index)?,
        };
        let sized = resample::resize(&raw, h, w)?.clamp(0.0, 1.0)?;
        let m = resample::gaussian_blur(&sized, self.feather)?;
        let m = ((m - SNAP)? / (1.0 - 2.0 * SNAP))?.clamp(0.0, 1.0)?;
        if still.is_some() {
            *self.feathered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(m.clone());
        }
        Ok(m)
    }
}

/// The per-pixel dream strength of frame `index` (`h x w`, on `device`): `mask`'s frame times
/// `weight`, or `weight` everywhere without a mask; `None` when that is 1 everywhere (nothing
/// to scale, nothing to composite: the plain dream).
pub fn strength(
    mask: Option<&Mask>,
    index: usize,
    (h, w): (usize, usize),
    weight: f64,
    device: &Device,
) -> anyhow::Result<Option<Tensor>> {
    let strength = match mask {
        None if weight >= 1.0 => return Ok(None),
        None => Tensor::full(weight as f32, (1, 1, h, w), device)?,
        Some(m) if weight >= 1.0 => m.frame(index, h, w)?,
        Some(m) => (m.frame(index, h, w)? * weight)?,
    };
    // White everywhere is no mask at all (resized to the octaves, ones would not stay exact).
    Ok((strength.min_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()? < 1.0).then_some(strength))
}

/// Whether `strength` is 0 everywhere (nothing to dream).
pub fn is_zero(strength: &Tensor) -> anyhow::Result<bool> {
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
