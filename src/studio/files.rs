//! The studio's working folder: every file it writes, by names it makes itself.
//!
//! ```text
//! DIR/pictures/ID.png        an upload, decoded and checked like any input, as RGB PNG
//! DIR/pictures/ID-384.png    the same at preview size: what previews and exports dream
//! DIR/atlas/MODEL/ID/N.png   atlas tile N of picture ID (DIR/atlas/MODEL/ID/LAYER/N.png: of
//!                            the channels of LAYER, one of the model's layer names)
//! DIR/previews/KEY.png       a preview (KEY: hash of picture, model and settings)
//! DIR/videos/ID.EXT          an uploaded video, opened and checked like any input
//! DIR/renders/render-R-N.mp4 render N of studio run R (their checkpoints beside them)
//! ```
//!
//! IDs are 16 hex digits the studio computed; a request naming anything else is refused
//! before any path is built from it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use image::imageops;
use sha2::{Digest, Sha256};

use super::PREVIEW_SIZE;
use crate::image_io::{decode_image, shrunk};
use crate::models::ModelKind;
use crate::output::write_atomically;

/// The working folder.
pub struct Files {
    root: PathBuf,
}

/// A stored picture.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stored {
    /// Its identifier.
    pub id: String,
    /// Width and height of the upload.
    pub width: u32,
    /// See `width`.
    pub height: u32,
}

/// Video containers the studio takes.
const VIDEO_EXTENSIONS: &[&str] = &["mp4", "mkv", "mov", "webm", "avi", "m4v"];

/// A stored video.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredVideo {
    /// Its name in the studio.
    pub id: String,
    /// Frames, as the container says (if it does).
    pub frames: Option<usize>,
    /// Width and height.
    pub width: u32,
    /// See `width`.
    pub height: u32,
}

impl Files {
    /// Creates (or reuses) the working folder `dir`.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        for sub in ["pictures", "atlas", "previews", "videos", "renders"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create the studio's folder {}", dir.join(sub).display()))?;
        }
        Ok(Self { root: dir.canonicalize()? })
    }

    /// Checks an identifier from a request: 16 lowercase hex digits.
    pub fn id(id: &str) -> anyhow::Result<&str> {
        if id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(id)
        } else {
            bail!("`{}` is not a picture of this studio", id.chars().take(40).collect::<String>())
        }
    }

    /// Decodes an upload with the checks every input gets (format, size limit), and stores it
    /// at full and at preview size.
    pub fn store_picture(&self, bytes: &[u8]) -> anyhow::Result<Stored> {
        let format = image::guess_format(bytes)
            .ok()
            .filter(|f| {
                matches!(
                    f,
                    image::ImageFormat::Png
                        | image::ImageFormat::Jpeg
                        | image::ImageFormat::WebP
                        | image::ImageFormat::Tiff
                        | image::ImageFormat::Bmp
                )
            })
            .context("the upload is not a PNG, JPEG, WebP, TIFF or BMP picture")?;
        // A name of its own: uploads run at once.
        let upload = crate::output::temp_path(
            &self.root.join("pictures").join(format!("upload.{}", format.extensions_str()[0])),
        );
        std::fs::write(&upload, bytes).with_context(|| format!("cannot write {}", upload.display()))?;
        let decoded = decode_image(&upload);
        let _ = std::fs::remove_file(&upload);
        let rgb = decoded?.to_rgb8();
        let (width, height) = rgb.dimensions();
        let mut hash = Sha256::new();
        hash.update(width.to_le_bytes());
        hash.update(height.to_le_bytes());
        hash.update(rgb.as_raw());
        let id: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        let (full, small_path) = (self.picture(&id, false)?, self.picture(&id, true)?);
        if !(full.exists() && small_path.exists()) {
            write_atomically(&full, |tmp| Ok(rgb.save_with_format(tmp, image::ImageFormat::Png)?))?;
            let small = shrunk(&rgb, PREVIEW_SIZE, imageops::FilterType::Lanczos3).unwrap_or(rgb);
            write_atomically(&small_path, |tmp| Ok(small.save_with_format(tmp, image::ImageFormat::Png)?))?;
        }
        Ok(Stored { id, width, height })
    }

    /// Stores an uploaded video named `name` (for its extension) after checking that FFmpeg
    /// reads it as a video.
    pub fn store_video(&self, name: &str, bytes: &[u8]) -> anyhow::Result<StoredVideo> {
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
        if !VIDEO_EXTENSIONS.contains(&ext.as_str()) {
            bail!("`{name}` is not a video dreamvid reads here: upload a {} file", VIDEO_EXTENSIONS.join(", "));
        }
        let id: String = Sha256::digest(bytes).iter().take(8).map(|b| format!("{b:02x}")).collect();
        let path = self.root.join("videos").join(format!("{id}.{ext}"));
        let info = match path.exists() {
            true => crate::video::VideoReader::open(&path)?.info().clone(),
            false => write_atomically(&path, |tmp| {
                std::fs::write(tmp, bytes)?;
                Ok(crate::video::VideoReader::open(tmp)?.info().clone())
            })?,
        };
        Ok(StoredVideo { id: format!("{id}.{ext}"), frames: info.frames, width: info.width, height: info.height })
    }

    /// The stored video `name` (as [`Files::store_video`] named it).
    pub fn video(&self, name: &str) -> anyhow::Result<PathBuf> {
        let (id, ext) = name.split_once('.').context("not a video of this studio")?;
        if !VIDEO_EXTENSIONS.contains(&ext) {
            bail!("not a video of this studio");
        }
        Ok(self.root.join("videos").join(format!("{}.{ext}", Self::id(id)?)))
    }

    /// Where the render output `name` goes.
    pub fn render(&self, name: &str) -> PathBuf {
        self.root.join("renders").join(name)
    }

    /// The stored picture `id`, at preview size or full.
    pub fn picture(&self, id: &str, preview: bool) -> anyhow::Result<PathBuf> {
        let id = Self::id(id)?;
        let name = if preview { format!("{id}-{PREVIEW_SIZE}.png") } else { format!("{id}.png") };
        Ok(self.root.join("pictures").join(name))
    }

    /// The folder of picture `id`'s atlas tiles for `model`: of its layers, or of the channels
    /// of `layer`, which must be one of the model's layer names.
    pub fn atlas_dir(&self, model: ModelKind, id: &str, layer: Option<&str>) -> anyhow::Result<PathBuf> {
        let dir = self.root.join("atlas").join(model.name()).join(Self::id(id)?);
        match layer {
            None => Ok(dir),
            Some(layer) if model.layer_names().iter().any(|n| n == layer) => Ok(dir.join(layer)),
            Some(layer) => bail!("{} has no layer `{}`", model.name(), layer.chars().take(40).collect::<String>()),
        }
    }

    /// Where the preview with hash `key` goes.
    pub fn preview(&self, key: u64) -> PathBuf {
        self.root.join("previews").join(format!("{key:016x}.png"))
    }
}
