//! Previews: a few frames of a video, dreamed small, as a short MP4 and a contact sheet, to
//! judge settings in seconds before rendering for hours.

use std::path::{Path, PathBuf};

use anyhow::bail;
use image::RgbImage;

use crate::output::write_atomically;
use crate::video::{Item, VideoReader};

/// Longest side of preview frames, in pixels.
pub const SIDE: u32 = 480;

/// Frames a preview dreams when not told how many to skip.
pub const FRAMES: usize = 12;

/// Columns of the contact sheet.
const COLUMNS: usize = 4;

/// Pixels between the sheet's frames.
const GAP: u32 = 4;

/// `dream.mp4` -> (`dream.preview.mp4`, `dream.preview.png`).
pub fn paths(output: &Path) -> (PathBuf, PathBuf) {
    let stem = output.file_stem().unwrap_or_default().to_string_lossy();
    (output.with_file_name(format!("{stem}.preview.mp4")), output.with_file_name(format!("{stem}.preview.png")))
}

/// Every how many frames a preview of `frames` frames (when known) dreams one.
pub fn every(frames: Option<usize>) -> usize {
    frames.map_or(25, |n| n.div_ceil(FRAMES)).max(1)
}

/// The frames in rows of four, on black, with a gap between them.
pub fn contact_sheet(frames: &[RgbImage]) -> anyhow::Result<RgbImage> {
    let Some(first) = frames.first() else { bail!("no frames for a contact sheet") };
    let (w, h) = first.dimensions();
    let columns = COLUMNS.min(frames.len());
    let rows = frames.len().div_ceil(columns);
    let size = |n: usize, side: u32| n as u32 * side + (n as u32 + 1) * GAP;
    let mut sheet = RgbImage::new(size(columns, w), size(rows, h));
    for (i, f) in frames.iter().enumerate() {
        let (col, row) = ((i % columns) as u32, (i / columns) as u32);
        image::imageops::replace(&mut sheet, f, i64::from(GAP + col * (w + GAP)), i64::from(GAP + row * (h + GAP)));
    }
    Ok(sheet)
}

/// Writes the contact sheet of every frame of `video` to `sheet` (PNG).
pub fn write_sheet(video: &Path, sheet: &Path) -> anyhow::Result<()> {
    let mut reader = VideoReader::open(video)?;
    let mut frames = Vec::new();
    while let Some(item) = reader.next_item()? {
        if let Item::Frame(f) = item {
            frames.push(f.image);
        }
    }
    let sheet_image = contact_sheet(&frames)?;
    write_atomically(sheet, |tmp| Ok(sheet_image.save_with_format(tmp, image::ImageFormat::Png)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheets_lay_frames_out_in_rows_of_four() {
        let frames: Vec<RgbImage> =
            (0..6u8).map(|i| RgbImage::from_pixel(10, 6, image::Rgb([i * 40 + 10; 3]))).collect();
        let sheet = contact_sheet(&frames).unwrap();
        assert_eq!(sheet.dimensions(), (4 * 10 + 5 * GAP, 2 * 6 + 3 * GAP));
        // Frame 5 is the second of the second row.
        assert_eq!(sheet.get_pixel(GAP + 10 + GAP + 3, GAP + 6 + GAP + 2).0, [210; 3]);
        assert_eq!(sheet.get_pixel(0, 0).0, [0; 3], "gaps are black");
        assert!(contact_sheet(&[]).is_err());
        assert_eq!(every(Some(100)), 9);
        assert_eq!(every(Some(5)), 1);
        let (mp4, png) = paths(Path::new("out/dream.mkv"));
        assert_eq!((mp4.to_str().unwrap(), png.to_str().unwrap()), ("out/dream.preview.mp4", "out/dream.preview.png"));
    }
}
