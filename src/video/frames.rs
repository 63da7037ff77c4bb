//! Frame folders: numbered pictures (PNG, JPEG, TIFF, WebP, BMP) read as a video's frames, and
//! dreamed frames written as numbered PNGs, as compositing tools exchange them.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ffmpeg_next::Rational;
use image::RgbImage;

use super::excerpt::{Excerpt, Window};
use super::{Item, SourceFrame, VideoInfo};

/// Picture extensions a frame folder's frames may have.
const EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "tif", "tiff", "webp", "bmp"];

/// File in a frame folder that holds its frame rate (written with every PNG folder output).
pub const FPS_FILE: &str = "fps.txt";

/// Whether `path` names frames rather than a video: a folder, or a printf pattern such as
/// `frames/%05d.png`.
pub fn is_frame_folder(path: &Path) -> bool {
    path.is_dir() || path.to_string_lossy().ends_with('/') || pattern_parts(path).is_some()
}

/// `dir/pre%05dpost` -> (`dir`, `pre`, width 5, `post`); `%d` has width 0.
fn pattern_parts(path: &Path) -> Option<(PathBuf, String, usize, String)> {
    let name = path.file_name()?.to_str()?;
    let at = name.find('%')?;
    let rest = &name[at + 1..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[digits..].starts_with('d').then_some(())?;
    let width = rest[..digits].parse().unwrap_or(0);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    Some((dir, name[..at].to_string(), width, rest[digits + 1..].to_string()))
}

/// Orders names as people do: digit runs by their value (`frame2` before `frame10`).
pub fn natural_order(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    fn key((digits, text): (bool, &str)) -> (bool, usize, &str) {
        let trimmed = text.trim_start_matches('0');
        (digits, if digits { trimmed.len() } else { 0 }, if digits { trimmed } else { text })
    }
    let (ca, cb) = (chunks(a), chunks(b));
    ca.iter().map(|&c| key(c)).cmp(cb.iter().map(|&c| key(c))).then_with(|| a.cmp(b))
}

/// The frames of a folder (every picture in it, in natural order) or of a printf pattern
/// (numbered files, in number order, with no gaps).
pub fn list_frames(spec: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let frames = if let Some((dir, pre, width, post)) = pattern_parts(spec).filter(|_| !spec.is_dir()) {
        let mut numbered: Vec<(u64, PathBuf)> = read_dir(&dir)?
            .into_iter()
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                let digits = name.strip_prefix(pre.as_str())?.strip_suffix(post.as_str())?;
                let ok = !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && (width == 0 || digits.len() == width);
                ok.then(|| digits.parse().ok().map(|n| (n, p.clone())))?
            })
            .collect();
        numbered.sort();
        if let Some(w) = numbered.windows(2).find(|w| w[1].0 != w[0].0 + 1) {
            bail!(
                "{}: frame {} is missing (the frames jump from {} to {}); frames must be numbered without gaps",
                spec.display(),
                w[0].0 + 1,
                w[0].1.display(),
                w[1].1.display()
            );
        }
        numbered.into_iter().map(|(_, p)| p).collect()
    } else {
        let mut pictures: Vec<PathBuf> = read_dir(spec)?
            .into_iter()
            .filter(|p| {
                let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
                ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
            })
            .collect();
        pictures.sort_by(|a, b| natural_order(&a.to_string_lossy(), &b.to_string_lossy()));
        pictures
    };
    if frames.is_empty() {
        bail!(
            "{} has no frames: give a folder of {} pictures or a pattern such as frames/%05d.png",
            spec.display(),
            EXTENSIONS.join("/")
        );
    }
    Ok(frames)
}

fn read_dir(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read the folder {}", dir.display()))?;
    Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
}

/// The frame rate of a frame folder: `fps` if given, else its [`FPS_FILE`].
fn frame_rate(spec: &Path, frames: &[PathBuf], fps: Option<f64>) -> anyhow::Result<f64> {
    let folder = if spec.is_dir() { spec } else { frames[0].parent().unwrap_or(Path::new(".")) };
    let file = folder.join(FPS_FILE);
    let fps = match fps {
        Some(f) => f,
        None => match std::fs::read_to_string(&file) {
            Ok(text) => {
                text.trim().parse().with_context(|| format!("{} does not hold a frame rate", file.display()))?
            }
            Err(_) => bail!(
                "{} is a frame folder: give its frame rate with --fps (or write it into {})",
                spec.display(),
                file.display()
            ),
        },
    };
    if !(fps.is_finite() && (0.1..=1000.0).contains(&fps)) {
        bail!("frame rate {fps} for {} is not between 0.1 and 1000", spec.display());
    }
    Ok(fps)
}

/// Reads a frame folder as a video of its pictures at a frame rate (no audio).
pub struct FrameFolder {
    frames: Vec<PathBuf>,
    next: usize,
    /// Size of the first frame, which every frame must have.
    size: (u32, u32),
    info: VideoInfo,
    window: Option<Window>,
}

impl FrameFolder {
    /// Lists the frames of `spec` (a folder or a printf pattern) and reads the first for the
    /// size; `fps` overrides the folder's [`FPS_FILE`].
    pub fn open(spec: &Path, fps: Option<f64>) -> anyhow::Result<Self> {
        let frames = list_frames(spec)?;
        let rate = frame_rate(spec, &frames, fps)?;
        let first = read_frame(&frames[0])?;
        let frame_rate = Rational::from(rate);
        let info = VideoInfo {
            path: spec.into(),
            width: first.width(),
            height: first.height(),
            time_base: frame_rate.invert(),
            frame_rate,
            frames: Some(frames.len()),
            rotation: 0,
            audio: Vec::new(),
        };
        Ok(Self { frames, next: 0, size: first.dimensions(), info, window: None })
    }

    /// The frames as a video.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Reads only `excerpt` from here on.
    pub fn read_excerpt(&mut self, excerpt: &Excerpt) {
        let window = Window::new(excerpt, &mut self.info, 0);
        self.next = self.next.max(window.first_index);
        self.window = Some(window);
    }

    /// Moves to frame `index`.
    pub fn seek(&mut self, index: usize) {
        self.next = index;
    }

    /// The next frame; `None` after the last.
    pub fn next_item(&mut self) -> anyhow::Result<Option<Item>> {
        while let Some(path) = self.frames.get(self.next) {
            let index = self.next;
            self.next += 1;
            let pts = match self.window.as_mut() {
                Some(w) => match w.admit(index, index as i64) {
                    Some(pts) => pts,
                    None if w.done => return Ok(None),
                    None => continue,
                },
                None => index as i64,
            };
            let mut image = read_frame(path)?;
            if image.dimensions() != self.size {
                let (w, h) = self.size;
                bail!(
                    "{} is {}x{}, but the first frame {} is {w}x{h}: every frame must have the same size",
                    path.display(),
                    image.width(),
                    image.height(),
                    self.frames[0].display()
                );
            }
            let (w, h) = (self.info.width, self.info.height);
            if (w, h) != self.size {
                image = image::imageops::resize(&image, w, h, image::imageops::FilterType::CatmullRom);
            }
            return Ok(Some(Item::Frame(SourceFrame { index, pts, image })));
        }
        Ok(None)
    }
}

/// One frame as 8-bit RGB, upright.
fn read_frame(path: &Path) -> anyhow::Result<RgbImage> {
    let frame = crate::image_io::decode_image(path)
        .with_context(|| format!("frame {} is damaged or not a picture", path.display()))?;
    Ok(frame.to_rgb8())
}

/// Writes frames as `frame_00000.png`, `frame_00001.png`, ... into a folder, and the frame
/// rate into its [`FPS_FILE`].
pub struct PngFrames {
    dir: PathBuf,
    written: usize,
    fps: f64,
}

impl PngFrames {
    /// Frames of a video at `fps` into the (empty) folder `dir`.
    pub fn create(dir: &Path, fps: f64) -> Self {
        Self { dir: dir.into(), written: 0, fps }
    }

    /// The name of the `index`th frame.
    pub fn name(index: usize) -> String {
        format!("frame_{index:05}.png")
    }

    /// Writes the next frame.
    pub fn write_frame(&mut self, image: &RgbImage) -> anyhow::Result<()> {
        let path = self.dir.join(Self::name(self.written));
        image
            .save_with_format(&path, image::ImageFormat::Png)
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.written += 1;
        Ok(())
    }

    /// Records the frame rate beside the frames.
    pub fn finish(self) -> anyhow::Result<()> {
        let path = self.dir.join(FPS_FILE);
        std::fs::write(&path, format!("{}\n", self.fps)).with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_naturally_and_patterns_parse() {
        let mut names = vec!["f10.png", "f2.png", "f1.png", "f002.png", "a.png"];
        names.sort_by(|a, b| natural_order(a, b));
        assert_eq!(names, vec!["a.png", "f1.png", "f002.png", "f2.png", "f10.png"]);
        let (dir, pre, width, post) = pattern_parts(Path::new("shots/take_%04d.tif")).unwrap();
        assert_eq!((dir.to_str().unwrap(), pre.as_str(), width, post.as_str()), ("shots", "take_", 4, ".tif"));
        assert_eq!(pattern_parts(Path::new("%d.png")).unwrap().2, 0);
        assert!(pattern_parts(Path::new("100%.png")).is_none());
        assert!(is_frame_folder(Path::new("out/")) && !is_frame_folder(Path::new("clip.mp4")));
    }
}
