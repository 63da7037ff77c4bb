//! The atlas: small, quick dreams of one picture, one per layer of a model (or one per channel
//! of a layer), labelled in a grid, to choose a `--layer` or `--channels` by eye.
//!
//! Every tile is the library's own dream ([`Session::dream_image`]) of the picture shrunk to
//! the tile's size, with the given settings but the layer (and channel) of the tile and few
//! octaves and steps; tiles have the same seed, so an atlas is deterministic.

use anyhow::{bail, Context};
use candle_core::Tensor;
use image::{imageops, Rgb, RgbImage};

use crate::cancel::Cancel;
use crate::image_io::{rgb_to_tensor, shrunk, tensor_to_rgb};
use crate::session::Session;
use crate::settings::Settings;

/// Default longest side of a tile, in pixels.
pub const DEFAULT_TILE: u32 = 160;

/// Default octaves of a tile's dream.
pub const DEFAULT_OCTAVES: usize = 3;

/// Default gradient steps per octave of a tile's dream.
pub const DEFAULT_ITERATIONS: usize = 8;

/// Tiles on one page of a channel atlas.
pub const PAGE: usize = 64;

/// Height of a tile's label strip, in pixels (an 8-pixel font with 2 pixels above and below).
const LABEL: u32 = 12;

/// Space between tiles, in pixels.
const GAP: u32 = 4;

/// What an atlas shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// One tile per layer (tap) of the model.
    Layers,
    /// One tile per channel of `layer`, those `pick` chooses.
    Channels {
        /// The layer, as `--layer` takes it (name or number).
        layer: String,
        /// Which of its channels.
        pick: ChannelPick,
    },
}

/// Which channels of a layer get a tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelPick {
    /// Channels `first..end`.
    Range(usize, usize),
    /// The `k` channels most active on the picture (highest mean activation), most active first.
    Top(usize),
    /// Every channel.
    All,
}

impl std::str::FromStr for ChannelPick {
    type Err = String;

    /// `N..M` (channels N to M-1), `top K` (or `top-K`), or `all`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let wrong = || format!("`{s}` is not a channel choice: give N..M (channels N to M-1), `top K` or `all`");
        if s == "all" {
            return Ok(ChannelPick::All);
        }
        if let Some(k) = s.strip_prefix("top").map(|k| k.trim_start_matches(['-', ' '])) {
            let k: usize = k.parse().map_err(|_| wrong())?;
            return if k == 0 { Err(wrong()) } else { Ok(ChannelPick::Top(k)) };
        }
        let (a, b) = s.split_once("..").ok_or_else(wrong)?;
        let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| wrong())?, b.trim().parse().map_err(|_| wrong())?);
        if a >= b {
            return Err(format!("`{s}` holds no channel: N..M needs N < M"));
        }
        Ok(ChannelPick::Range(a, b))
    }
}

/// One tile to dream: its label and the settings it is dreamed with.
#[derive(Debug, Clone)]
pub struct TileSpec {
    /// The layer's name, or `layer:channel`.
    pub label: String,
    /// The settings of its dream.
    pub settings: Settings,
}

/// The picture at tile size: its longest side `tile` pixels (never enlarged).
pub fn shrink(picture: &Tensor, tile: u32) -> anyhow::Result<Tensor> {
    match shrunk(&tensor_to_rgb(picture)?, tile, imageops::FilterType::Triangle) {
        Some(small) => Ok(rgb_to_tensor(&small, picture.device())?),
        None => Ok(picture.clone()),
    }
}

/// The tiles of `subject` for `picture` (already at tile size): `base` with each tile's layer
/// (and channel), `octaves` and `iterations`.
pub fn tiles(
    session: &Session,
    picture: &Tensor,
    base: &Settings,
    subject: &Subject,
    (octaves, iterations): (usize, usize),
) -> anyhow::Result<Vec<TileSpec>> {
    let net = &session.net;
    let quick = Settings { octaves, iterations, channels: None, ..base.clone() };
    let with = |label: String, layer: &str, channels: Option<Vec<usize>>| TileSpec {
        label,
        settings: Settings { layers: vec![(layer.to_string(), 1.0)], channels, ..quick.clone() },
    };
    let Subject::Channels { layer, pick } = subject else {
        return Ok(net.taps().iter().map(|t| with(t.name.clone(), &t.name, None)).collect());
    };
    let tap = net.find_tap(layer).with_context(|| {
        format!(
            "{} has no layer `{layer}` (see `dreamvid layers --model {}`)",
            session.model.name(),
            session.model.name()
        )
    })?;
    let name = net.taps()[tap].name.clone();
    let x = picture.to_dtype(net.dtype())?;
    let activations = net.activations(&x, tap)?;
    let count = activations.dim(1)?;
    let channels: Vec<usize> = match *pick {
        ChannelPick::All => (0..count).collect(),
        ChannelPick::Range(a, b) => {
            if b > count {
                bail!("layer {name} has channels 0..{count}; {a}..{b} reaches past them");
            }
            (a..b).collect()
        }
        ChannelPick::Top(k) => {
            let means: Vec<f32> =
                activations.mean((2, 3))?.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?;
            let mut order: Vec<usize> = (0..count).collect();
            order.sort_by(|&a, &b| means[b].total_cmp(&means[a]).then(a.cmp(&b)));
            order.truncate(k);
            order
        }
    };
    Ok(channels.into_iter().map(|c| with(format!("{name}:{c}"), &name, Some(vec![c]))).collect())
}

/// Dreams one tile of `picture` (at tile size).
pub fn dream_tile(session: &Session, picture: &Tensor, spec: &TileSpec, cancel: &Cancel) -> anyhow::Result<RgbImage> {
    let look = session.look(&spec.settings)?;
    let dreamed = session.dream_image(picture, &look, cancel, &mut |_| {})?;
    Ok(tensor_to_rgb(&dreamed)?)
}

/// The labelled grid of `tiles` (each `(label, picture)`), about as wide as it is tall, with
/// `title` above it.
pub fn sheet(tiles: &[(String, RgbImage)], title: &str) -> RgbImage {
    let (tw, th) = tiles.iter().fold((1, 1), |(w, h), (_, t)| (w.max(t.width()), h.max(t.height())));
    let n = tiles.len().max(1) as u32;
    let columns = ((f64::from(n) * f64::from(th + LABEL) / f64::from(tw)).sqrt().ceil() as u32).clamp(1, n);
    let rows = n.div_ceil(columns);
    let (cell_w, cell_h) = (tw + GAP, th + LABEL + GAP);
    let top = LABEL + GAP;
    let mut out = RgbImage::from_pixel(GAP + columns * cell_w, top + GAP + rows * cell_h, Rgb([24, 24, 24]));
    let width = out.width() - GAP;
    draw_text(&mut out, GAP, GAP + 2, title, width);
    for (i, (label, tile)) in tiles.iter().enumerate() {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        let (x, y) = (GAP + col * cell_w, top + GAP + row * cell_h);
        imageops::replace(&mut out, tile, i64::from(x), i64::from(y));
        draw_text(&mut out, x, y + tile.height() + 2, label, tw);
    }
    out
}

/// Writes `text` in the 8x8 font with its top-left corner at `(x, y)`, cut at `width` pixels.
fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, width: u32) {
    use font8x8::UnicodeFonts;
    for (i, c) in text.chars().take((width / 8) as usize).enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(c).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                let (px, py) = (x + i as u32 * 8 + col, y + row as u32);
                if bits >> col & 1 == 1 && px < img.width() && py < img.height() {
                    img.put_pixel(px, py, Rgb([235, 235, 235]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_choices_read_as_the_help_says() {
        assert_eq!("0..16".parse(), Ok(ChannelPick::Range(0, 16)));
        assert_eq!("top 8".parse(), Ok(ChannelPick::Top(8)));
        assert_eq!("top-8".parse(), Ok(ChannelPick::Top(8)));
        assert_eq!("all".parse(), Ok(ChannelPick::All));
        for bad in ["5..5", "top 0", "top", "3", "a..b", ""] {
            assert!(bad.parse::<ChannelPick>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sheet_holds_every_tile_and_its_label() {
        let tile = RgbImage::from_pixel(20, 10, Rgb([200, 0, 0]));
        let tiles: Vec<(String, RgbImage)> = (0..5).map(|i| (format!("t{i}"), tile.clone())).collect();
        let sheet = sheet(&tiles, "title");
        let red = sheet.pixels().filter(|p| **p == Rgb([200, 0, 0])).count();
        assert_eq!(red, 5 * 20 * 10, "every tile whole");
        let text = sheet.pixels().filter(|p| **p == Rgb([235, 235, 235])).count();
        assert!(text > 5 * 10, "labels and title drawn ({text} pixels)");
    }
}
