//! Mask files (the `mask` setting): a picture for every frame, or a mask video (or frame
//! folder) read along with a video's frames. What a mask does to the dream is
//! [`crate::dream::mask`]'s.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use candle_core::{Device, Tensor};

use crate::dream::mask::{luma, prepare};
use crate::image_io::decode_image;
use crate::video::{frames::is_frame_folder, Item, Source};

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

impl Mask {
    /// Opens the mask `path`, feathered by `feather` pixels: a picture (PNG, JPEG, ...; grey
    /// or colour, whose luma counts), or with `video` a video or frame folder too.
    pub fn open(path: &Path, feather: f64, video: bool, device: &Device) -> anyhow::Result<Self> {
        let picture = image::ImageFormat::from_path(path).is_ok() && !is_frame_folder(path);
        if !picture && !video && (is_frame_folder(path) || path.is_file()) {
            anyhow::bail!(
                "{} is not a picture: a mask video (or frame folder) is for video input only; \
                 give a picture (PNG, JPEG, WebP, TIFF or BMP)",
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
    /// `F32` in `[0, 1]`, resized and feathered (see [`prepare`]).
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
        let m = prepare(&raw, (h, w), self.feather)?;
        if still.is_some() {
            *self.feathered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(m.clone());
        }
        Ok(m)
    }
}
