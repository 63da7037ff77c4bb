//! From presets and command-line overrides to the dream parameters of each frame.

use anyhow::Context;

use crate::dream::DreamParams;
use crate::models::ModelKind;
use crate::nn::{Network, Objective};
use crate::preset::{source, FrameSettings, Preset, PresetError};
use crate::zoom::CameraStep;

/// What a command is making; each has its own default preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A still image.
    Image,
    /// A dreamed video.
    Video,
    /// An infinite zoom.
    Zoom,
}

/// The shipped preset used when none is given.
pub fn default_preset(purpose: Purpose, model: ModelKind) -> &'static str {
    match (purpose, model) {
        (Purpose::Image, ModelKind::EfficientNetLite0) => "lite0",
        (Purpose::Video, ModelKind::EfficientNetLite0) => "lite0-video",
        (Purpose::Zoom, ModelKind::EfficientNetLite0) => "zoom",
        (Purpose::Image | Purpose::Video, ModelKind::Vgg19) => "layer30",
        (Purpose::Zoom, ModelKind::Vgg19) => "zoom-vgg",
    }
}

/// Loads the preset `spec` (or the default for `purpose`), checking its layers against the
/// model: `model` when the user chose one, else the preset's own, else EfficientNet-Lite0.
pub fn load_preset(
    spec: Option<&str>,
    purpose: Purpose,
    model: Option<ModelKind>,
) -> Result<(Preset, ModelKind), PresetError> {
    let name = spec.unwrap_or_else(|| default_preset(purpose, model.unwrap_or(ModelKind::EfficientNetLite0)));
    let (origin, text) = source(name)?;
    let unchecked = Preset::parse(&text, &origin, model)?;
    let kind = model.or(unchecked.fixed.model).unwrap_or(ModelKind::EfficientNetLite0);
    let mut preset = if model.is_some() { unchecked } else { Preset::parse(&text, &origin, Some(kind))? };
    if preset.base.layers.is_empty() {
        preset.base.layers = vec![(kind.default_layer().to_string(), 1.0)];
    }
    Ok((preset, kind))
}

/// The dream parameters of one frame's settings on `net`.
pub fn dream_params(net: &Network, s: &FrameSettings, seed: u64, tile: usize) -> anyhow::Result<DreamParams> {
    let terms = s
        .layers
        .iter()
        .map(|(name, w)| {
            net.find_tap(name).map(|t| (t, *w as f32)).with_context(|| format!("the model has no layer `{name}`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(DreamParams {
        objective: Objective { terms, channels: s.channels.clone() },
        octaves: s.octaves,
        octave_scale: s.octave_scale,
        iterations: s.iterations,
        step: s.lr,
        jitter: s.jitter,
        smoothing: s.smooth,
        seed,
        tile,
    })
}

/// The camera motion of one frame's settings.
pub fn camera_step(s: &FrameSettings) -> CameraStep {
    CameraStep { zoom: s.zoom, rotate: s.rotate, translate: s.translate }
}
