//! What each command does: load the preset and the network, run the library, show progress.
//! One file per group of commands; this one holds what they share.

mod farm;
mod image;
mod inspect;
mod video;
mod zoom;

pub use farm::{assemble, plan, render, status};
pub use image::image;
pub use inspect::{compare, layers, presets, stability, weights};
pub use video::video;
pub use zoom::zoom;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use dreamvid::models::discovery;
use dreamvid::models::ModelKind;
use dreamvid::nn::{Guide, Network};
use dreamvid::plan::guide::load_guide;
use dreamvid::plan::mask::Mask;
use dreamvid::plan::{load_preset, Plan, Purpose};
use dreamvid::preset::Preset;

use crate::cli::{DreamArgs, ModelArgs};

/// A preset with flags applied, the network it runs on, and where that came from.
struct Setup {
    preset: Preset,
    model: ModelKind,
    weights: PathBuf,
    net: Network,
    device: candle_core::Device,
    guide: Option<Arc<Guide>>,
    mask: Option<Mask>,
}

impl Setup {
    fn new<const S: u8>(model: &ModelArgs, dream: &DreamArgs<S>, purpose: Purpose) -> anyhow::Result<Self> {
        let (preset, kind) = load_preset(dream.preset.as_deref(), purpose, model.model, &dream.settings.given)?;
        let (net, device, weights) = load_model(model, kind)?;
        let (guide, mask) = guide_and_mask(&preset, purpose, &device)?;
        Ok(Setup { preset, model: kind, weights, net, device, guide, mask })
    }

    fn plan(&self, vary_seed: bool) -> Plan<'_> {
        Plan { preset: &self.preset, net: &self.net, vary_seed, guide: self.guide.clone() }
    }
}

/// The guide image and the mask the preset's `guide` and `mask` name, read; a mask video only
/// for videos.
fn guide_and_mask(
    preset: &Preset,
    purpose: Purpose,
    device: &candle_core::Device,
) -> anyhow::Result<(Option<Arc<Guide>>, Option<Mask>)> {
    let base = &preset.base;
    let guide = base.guide.as_deref().map(|path| load_guide(path, device).map(Arc::new)).transpose()?;
    let video = purpose == Purpose::Video;
    let mask = base.mask.as_deref().map(|path| Mask::open(path, base.mask_feather, video, device)).transpose()?;
    Ok((guide, mask))
}

/// The weights file of `kind`: `given` (checked if it has a published name), else the first
/// one found; says on standard error which it is.
fn weights_file(given: Option<&Path>, kind: ModelKind) -> anyhow::Result<PathBuf> {
    let located = match given {
        Some(path) => discovery::given(kind, path)?,
        None => kind.locate_weights()?,
    };
    eprintln!("weights: {located}");
    Ok(located.path)
}

/// Opens the device and loads `kind` from the given or default weights at the precision.
fn load_model(args: &ModelArgs, kind: ModelKind) -> anyhow::Result<(Network, candle_core::Device, PathBuf)> {
    let weights = weights_file(args.weights.as_deref(), kind)?;
    let device = args.device.open()?;
    let dtype = args.precision.dtype_on(&device)?;
    let net = kind.load(&weights, &device)?.to_dtype(dtype)?;
    Ok((net, device, weights))
}

/// A progress bar with rate and ETA; the length is set by the caller.
fn bar(unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit}, {{per_sec}}, ETA {{eta}} {{msg}}"
        ))
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
