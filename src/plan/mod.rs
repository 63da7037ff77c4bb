//! From presets and command-line flags to the parameters of each frame: the one place the
//! settings table becomes the parameters of the layers below ([`DreamParams`],
//! [`EncodeSettings`], [`CameraStep`], [`Carryover`]), and where the files settings name are
//! opened ([`guide`] images, [`mask`] pictures and videos).

pub mod guide;
pub mod mask;

use std::sync::Arc;

use anyhow::Context;
use candle_core::Device;

use crate::dream::{DreamParams, Rng};
use crate::models::ModelKind;
use crate::nn::{Guide, GuideTerm, Network, Objective};
use crate::preset::{source, Preset, RawPreset};
use crate::resample::CameraStep;
use crate::settings::{Partial, Setting, Settings};
use crate::video::coherence::Carryover;
use crate::video::EncodeSettings;
use mask::Mask;

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
        (Purpose::Image | Purpose::Video, ModelKind::GoogLeNet) => "inception4c",
        (Purpose::Zoom, ModelKind::GoogLeNet) => "zoom-googlenet",
    }
}

/// Loads the preset `spec` (or the default for `purpose`) for the model: `model` when the user
/// chose one, else the preset's own, else EfficientNet-Lite0; then applies `flags` (raw
/// `(setting, text)` pairs from the command line, checked like preset values) for the whole
/// render.
pub fn load_preset(
    spec: Option<&str>,
    purpose: Purpose,
    model: Option<ModelKind>,
    flags: &[(&'static Setting, String)],
) -> anyhow::Result<(Preset, ModelKind)> {
    let name = spec.unwrap_or_else(|| default_preset(purpose, model.unwrap_or(ModelKind::EfficientNetLite0)));
    let (origin, text) = source(name)?;
    resolve_preset(&origin, &text, model, flags)
}

/// The origin and text of the preset `spec` (or the default for `purpose`), and the model it
/// runs on: `model` when the user chose one, else the preset's own, else EfficientNet-Lite0.
pub fn preset_source(
    spec: Option<&str>,
    purpose: Purpose,
    model: Option<ModelKind>,
) -> anyhow::Result<(String, String, ModelKind)> {
    let name = spec.unwrap_or_else(|| default_preset(purpose, model.unwrap_or(ModelKind::EfficientNetLite0)));
    let (origin, text) = source(name)?;
    let kind = model.or(RawPreset::parse(&text, &origin)?.model()).unwrap_or(ModelKind::EfficientNetLite0);
    Ok((origin, text, kind))
}

/// [`load_preset`] for preset text already read (`origin` names where it came from).
pub fn resolve_preset(
    origin: &str,
    text: &str,
    model: Option<ModelKind>,
    flags: &[(&'static Setting, String)],
) -> anyhow::Result<(Preset, ModelKind)> {
    let raw = RawPreset::parse(text, origin)?;
    let kind = model.or(raw.model()).unwrap_or(ModelKind::EfficientNetLite0);
    let mut preset = raw.resolve(text, origin, Some(kind))?;
    if preset.base.layers.is_empty() {
        preset.base.layers = vec![(kind.default_layer().to_string(), 1.0)];
    }
    let mut pinned = Partial::default();
    for (row, text) in flags {
        pinned = pinned.merged(&row.parse_flag(text, Some(kind)).map_err(anyhow::Error::msg)?);
    }
    preset.pin(&pinned);
    Ok((preset, kind))
}

/// Everything that drives one frame of a video or zoom.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameParams {
    /// The dream, with this frame's seed.
    pub dream: DreamParams,
    /// What is carried over from the previous frame (video).
    pub carryover: Carryover,
    /// Gradient steps per octave of a video frame that continues a shot (0: `dream.iterations`,
    /// see [`crate::video::coherence::frame_steps`]).
    pub frame_iterations: usize,
    /// Camera motion to the next frame (zoom).
    pub camera: CameraStep,
    /// How strongly the frame is dreamed where the mask is white (`mask_weight`, 0 to 1).
    pub mask_weight: f64,
}

/// Per-frame parameters of `preset` on `net`.
pub struct Plan<'a> {
    /// Settings and schedules.
    pub preset: &'a Preset,
    /// The network the layers are found in.
    pub net: &'a Network,
    /// Mix the frame index into each frame's seed ([`frame_seed`]): zooms dream new patterns
    /// every frame. Videos keep one seed, so the jitter takes the same path every frame and
    /// content that stays put dreams the same way (much less flicker).
    pub vary_seed: bool,
    /// The guide image of the `guide` setting, read (see [`guide::load_guide`]).
    pub guide: Option<Arc<Guide>>,
}

impl Plan<'_> {
    /// Frame `index` of a render at `fps` frames per second.
    pub fn frame(&self, index: usize, fps: f64) -> anyhow::Result<FrameParams> {
        let s = self.preset.at(index, fps);
        Ok(FrameParams {
            dream: self.dream_params(&s, if self.vary_seed { frame_seed(s.seed, index) } else { s.seed })?,
            carryover: Carryover {
                blend: s.blend as f32,
                carry: s.carry as f32,
                temporal_weight: s.temporal_weight as f32,
            },
            frame_iterations: s.frame_iterations,
            camera: CameraStep { zoom: s.zoom, rotate: s.rotate, translate: s.translate },
            mask_weight: s.mask_weight,
        })
    }

    /// A still image: the settings at frame 0 with the preset's own seed.
    pub fn still(&self) -> anyhow::Result<DreamParams> {
        let s = self.preset.at(0, 25.0);
        self.dream_params(&s, s.seed)
    }

    /// [`guided_params`] with this plan's guide.
    fn dream_params(&self, s: &Settings, seed: u64) -> anyhow::Result<DreamParams> {
        guided_params(self.net, s, seed, self.guide.as_ref())
    }
}

/// [`dream_params`] with `guide`, weighted by `s.guide_weight` (left out at 0).
pub fn guided_params(
    net: &Network,
    s: &Settings,
    seed: u64,
    guide: Option<&Arc<Guide>>,
) -> anyhow::Result<DreamParams> {
    let mut params = dream_params(net, s, seed)?;
    params.objective.guide = match guide {
        Some(guide) if s.guide_weight > 0.0 => Some(GuideTerm { guide: guide.clone(), weight: s.guide_weight as f32 }),
        _ => None,
    };
    Ok(params)
}

/// The guide image and the mask that `s`'s `guide` and `mask` name, read; a mask may be a
/// video (or frame folder) only for videos.
pub fn open_files(
    s: &Settings,
    purpose: Purpose,
    device: &Device,
) -> anyhow::Result<(Option<Arc<Guide>>, Option<Mask>)> {
    let guide = s.guide.as_deref().map(|path| guide::load_guide(path, device).map(Arc::new)).transpose()?;
    let video = purpose == Purpose::Video;
    let mask = s.mask.as_deref().map(|path| Mask::open(path, s.mask_feather, video, device)).transpose()?;
    Ok((guide, mask))
}

impl From<&Settings> for EncodeSettings {
    /// The encoder and quality of `s` (`codec`, `crf`), with B-frames and no metadata.
    fn from(s: &Settings) -> Self {
        Self { codec: s.codec.clone(), crf: s.crf as u32, ..EncodeSettings::default() }
    }
}

/// Seed of frame `index`: independent of the frames before it, so resuming is exact.
pub fn frame_seed(seed: u64, index: usize) -> u64 {
    Rng::new(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

/// The dream parameters of `s` on `net`, with `seed` (without a guide).
pub fn dream_params(net: &Network, s: &Settings, seed: u64) -> anyhow::Result<DreamParams> {
    let terms = s
        .layers
        .iter()
        .map(|(name, w)| {
            net.find_tap(name).map(|t| (t, *w as f32)).with_context(|| format!("the model has no layer `{name}`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(params_of(s, Objective { terms, channels: s.channels.clone(), guide: None }, seed))
}

/// The dream settings of `s`, amplifying `objective`, with `seed`.
fn params_of(s: &Settings, objective: Objective, seed: u64) -> DreamParams {
    DreamParams {
        objective,
        octaves: s.octaves,
        octave_scale: s.octave_scale,
        iterations: s.iterations,
        lr: s.lr,
        gradient: s.gradient,
        gradient_levels: s.gradient_levels,
        decorrelate: s.decorrelate,
        keep_colors: s.keep_colors,
        jitter: s.jitter,
        smooth: s.smooth,
        seed,
        tile: s.tile,
    }
}

impl Default for DreamParams {
    /// The settings table's defaults, on the first tap.
    fn default() -> Self {
        let s = Settings::default();
        params_of(&s, Objective::layer(0), s.seed)
    }
}
