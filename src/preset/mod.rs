//! TOML presets: base settings plus keyframed schedules, validated with file/line/key errors.
//!
//! The format is documented in `presets/README.md`. Shipped presets are compiled into the
//! binary, so `--preset NAME` works wherever the binary is; `--preset path.toml` loads a file.

pub mod schedule;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::dream::DEFAULT_TILE;
use crate::models::ModelKind;
use crate::video::coherence::{Coherence, DEFAULT_SCENE_CUT};
use schedule::{crossfade, Interpolation, Track};

/// Presets shipped with dreamvid: `(name, TOML text)`.
pub const SHIPPED: &[(&str, &str)] = &[
    ("layer10", include_str!("../../presets/layer10.toml")),
    ("layer20", include_str!("../../presets/layer20.toml")),
    ("layer30", include_str!("../../presets/layer30.toml")),
    ("lite0", include_str!("../../presets/lite0.toml")),
    ("lite0-video", include_str!("../../presets/lite0-video.toml")),
    ("lite0-textures", include_str!("../../presets/lite0-textures.toml")),
    ("zoom", include_str!("../../presets/zoom.toml")),
    ("zoom-vgg", include_str!("../../presets/zoom-vgg.toml")),
    ("zoom-spiral", include_str!("../../presets/zoom-spiral.toml")),
];

/// A preset problem, located in its file.
#[derive(Debug, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct PresetError {
    /// File path, or `preset NAME` for a shipped one.
    pub origin: String,
    /// 1-based line of the offending key (0 when unknown).
    pub line: usize,
    /// What is wrong, naming the key.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreset {
    description: Option<String>,
    model: Option<Spanned<ModelKind>>,
    #[serde(default)]
    dream: RawDream,
    #[serde(default)]
    video: RawVideo,
    #[serde(default)]
    zoom: RawZoom,
    #[serde(default)]
    keyframe: Vec<Spanned<RawKeyframe>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDream {
    layer: Option<Spanned<String>>,
    layers: Option<Spanned<BTreeMap<String, f64>>>,
    channels: Option<Spanned<Vec<usize>>>,
    octaves: Option<Spanned<usize>>,
    octave_scale: Option<Spanned<f64>>,
    iterations: Option<Spanned<usize>>,
    lr: Option<Spanned<f64>>,
    jitter: Option<Spanned<usize>>,
    smooth: Option<Spanned<f64>>,
    seed: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawVideo {
    coherence: Option<Coherence>,
    blend: Option<Spanned<f64>>,
    scene_cut: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawZoom {
    factor: Option<Spanned<f64>>,
    rotate: Option<Spanned<f64>>,
    translate: Option<Spanned<[f64; 2]>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyframe {
    frame: Option<Spanned<u64>>,
    seconds: Option<Spanned<f64>>,
    #[serde(default)]
    interpolation: Interpolation,
    layer: Option<Spanned<String>>,
    layers: Option<Spanned<BTreeMap<String, f64>>>,
    channels: Option<Spanned<Vec<usize>>>,
    octaves: Option<Spanned<usize>>,
    octave_scale: Option<Spanned<f64>>,
    iterations: Option<Spanned<usize>>,
    lr: Option<Spanned<f64>>,
    jitter: Option<Spanned<usize>>,
    smooth: Option<Spanned<f64>>,
    blend: Option<Spanned<f64>>,
    zoom: Option<Spanned<f64>>,
    rotate: Option<Spanned<f64>>,
    translate: Option<Spanned<[f64; 2]>>,
}

/// Everything that can vary from frame to frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameSettings {
    /// Layers (tap names) and their weights.
    pub layers: Vec<(String, f64)>,
    /// Channel selection (all channels when `None`).
    pub channels: Option<Vec<usize>>,
    /// Octaves.
    pub octaves: usize,
    /// Octave size ratio.
    pub octave_scale: f64,
    /// Gradient steps per octave.
    pub iterations: usize,
    /// Step size.
    pub lr: f64,
    /// Jitter in pixels.
    pub jitter: usize,
    /// Gradient smoothing sigma in pixels.
    pub smooth: f64,
    /// Weight of the previous frame's dream (video).
    pub blend: f64,
    /// Zoom factor per frame (zoom animations; > 1 zooms in).
    pub zoom: f64,
    /// Rotation per frame in degrees, clockwise (zoom animations).
    pub rotate: f64,
    /// Translation per frame in pixels `(x, y)` (zoom animations).
    pub translate: (f64, f64),
}

/// Settings that stay fixed for a whole render.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fixed {
    /// Model the preset was written for, if it says.
    pub model: Option<ModelKind>,
    /// Seed.
    pub seed: u64,
    /// Temporal coherence mode (video).
    pub coherence: Coherence,
    /// Scene-cut threshold (video).
    pub scene_cut: f64,
    /// Longest side pushed through the network at once (`--tile`; a memory setting, not
    /// part of the look, so presets do not set it).
    pub tile: usize,
}

/// When a keyframe applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyTime {
    /// A frame index.
    Frame(u64),
    /// Seconds from the start.
    Seconds(f64),
}

/// A keyframe's values; `None` leaves the parameter to other keyframes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyValues {
    /// Layer set.
    pub layers: Option<Vec<(String, f64)>>,
    /// Channels.
    pub channels: Option<Vec<usize>>,
    /// Numeric parameters by name (`octaves`, `lr`, `zoom`, `translate_x`, ...).
    pub numbers: BTreeMap<&'static str, f64>,
}

/// A validated preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// Where it came from (a path or `preset NAME`).
    pub origin: String,
    /// One-line description.
    pub description: String,
    /// Values at frame 0 before any keyframe.
    pub base: FrameSettings,
    /// Settings fixed for the render.
    pub fixed: Fixed,
    /// [`text_hash`] of the preset's TOML.
    pub source_hash: u64,
    /// Keyframes in time order.
    pub keyframes: Vec<(KeyTime, Interpolation, KeyValues)>,
}

/// Built-in defaults (what a preset or flag does not set).
pub fn defaults() -> (FrameSettings, Fixed) {
    (
        FrameSettings {
            layers: Vec::new(),
            channels: None,
            octaves: 4,
            octave_scale: 1.4,
            iterations: 10,
            lr: 0.01,
            jitter: 16,
            smooth: 0.5,
            blend: 0.6,
            zoom: 1.0,
            rotate: 0.0,
            translate: (0.0, 0.0),
        },
        Fixed { model: None, seed: 0, coherence: Coherence::Flow, scene_cut: DEFAULT_SCENE_CUT, tile: DEFAULT_TILE },
    )
}

/// Numeric parameters and their allowed ranges.
const NUMBERS: &[(&str, f64, f64)] = &[
    ("octaves", 1.0, 12.0),
    ("octave_scale", 1.01, 4.0),
    ("iterations", 0.0, 1000.0),
    ("lr", 1e-6, 1.0),
    ("jitter", 0.0, 256.0),
    ("smooth", 0.0, 20.0),
    ("blend", 0.0, 1.0),
    ("zoom", 0.5, 2.0),
    ("rotate", -45.0, 45.0),
    ("translate_x", -256.0, 256.0),
    ("translate_y", -256.0, 256.0),
    ("scene_cut", 0.0, 1.0),
];

/// Checks a numeric setting against its allowed range (as presets do), for command-line values.
pub fn check_range(key: &str, value: f64) -> Result<f64, String> {
    let (_, lo, hi) = NUMBERS.iter().find(|(k, _, _)| *k == key).ok_or_else(|| format!("unknown setting `{key}`"))?;
    if value.is_finite() && value >= *lo && value <= *hi {
        Ok(value)
    } else {
        Err(format!("{key} = {value} is out of range ({lo} to {hi})"))
    }
}

struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: std::ops::Range<usize>, message: String) -> PresetError {
        let line = self.text[..span.start.min(self.text.len())].matches('\n').count() + 1;
        PresetError { origin: self.origin.to_string(), line, message }
    }

    fn number(&self, key: &'static str, v: &Spanned<f64>) -> Result<f64, PresetError> {
        check_range(key, *v.get_ref()).map_err(|m| self.err(v.span(), format!("`{}", m.replacen(' ', "` ", 1))))
    }

    fn count(&self, key: &'static str, v: &Spanned<usize>) -> Result<f64, PresetError> {
        self.number(key, &Spanned::new(v.span(), *v.get_ref() as f64))
    }

    fn layers(
        &self,
        model: Option<ModelKind>,
        layer: &Option<Spanned<String>>,
        layers: &Option<Spanned<BTreeMap<String, f64>>>,
    ) -> Result<Option<Vec<(String, f64)>>, PresetError> {
        let set: Vec<(Spanned<String>, f64)> = match (layer, layers) {
            (Some(_), Some(l)) => return Err(self.err(l.span(), "give either `layer` or `layers`, not both".into())),
            (Some(l), None) => vec![(l.clone(), 1.0)],
            (None, Some(l)) => {
                if l.get_ref().is_empty() {
                    return Err(self.err(l.span(), "`layers` is empty".into()));
                }
                l.get_ref().iter().map(|(k, w)| (Spanned::new(l.span(), k.clone()), *w)).collect()
            }
            (None, None) => return Ok(None),
        };
        let mut out = Vec::new();
        for (name, w) in set {
            if !(w.is_finite() && (0.0..=100.0).contains(&w)) {
                return Err(self.err(
                    name.span(),
                    format!("`layers` weight {w} for `{}` must be between 0 and 100", name.get_ref()),
                ));
            }
            let resolved = match model {
                Some(m) => m.resolve_layer(name.get_ref()).ok_or_else(|| {
                    self.err(
                        name.span(),
                        format!(
                            "`{}` is not a layer of {} (see `dreamvid layers --model {}`)",
                            name.get_ref(),
                            m.name(),
                            m.name()
                        ),
                    )
                })?,
                None => name.get_ref().clone(),
            };
            out.push((resolved, w));
        }
        Ok(Some(out))
    }
}

impl Preset {
    /// A shipped preset by name, or a preset file by path (anything with `/` or `.toml`).
    pub fn find(spec: &str) -> Result<Self, PresetError> {
        let (origin, text) = source(spec)?;
        Self::parse(&text, &origin, None)
    }

    /// Parses and validates preset text; layers are checked against `model` (or the preset's
    /// own `model`) when known.
    pub fn parse(text: &str, origin: &str, model: Option<ModelKind>) -> Result<Self, PresetError> {
        let ctx = Ctx { origin, text };
        let raw: RawPreset = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let line_start = text[..span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
            let line = text[line_start..].lines().next().unwrap_or("").trim();
            ctx.err(span, format!("{} (in `{line}`)", e.message().trim()))
        })?;
        let model = model.or(raw.model.as_ref().map(|m| *m.get_ref()));
        let (mut base, mut fixed) = defaults();
        fixed.model = model;
        let d = &raw.dream;
        if let Some(layers) = ctx.layers(model, &d.layer, &d.layers)? {
            base.layers = layers;
        }
        if let Some(c) = &d.channels {
            base.channels = Some(c.get_ref().clone());
        }
        if let Some(v) = &d.octaves {
            base.octaves = ctx.count("octaves", v)? as usize;
        }
        if let Some(v) = &d.octave_scale {
            base.octave_scale = ctx.number("octave_scale", v)?;
        }
        if let Some(v) = &d.iterations {
            base.iterations = ctx.count("iterations", v)? as usize;
        }
        if let Some(v) = &d.lr {
            base.lr = ctx.number("lr", v)?;
        }
        if let Some(v) = &d.jitter {
            base.jitter = ctx.count("jitter", v)? as usize;
        }
        if let Some(v) = &d.smooth {
            base.smooth = ctx.number("smooth", v)?;
        }
        if let Some(v) = &d.seed {
            fixed.seed = *v.get_ref();
        }
        if let Some(c) = raw.video.coherence {
            fixed.coherence = c;
        }
        if let Some(v) = &raw.video.blend {
            base.blend = ctx.number("blend", v)?;
        }
        if let Some(v) = &raw.video.scene_cut {
            fixed.scene_cut = ctx.number("scene_cut", v)?;
        }
        if let Some(v) = &raw.zoom.factor {
            base.zoom = ctx.number("zoom", v)?;
        }
        if let Some(v) = &raw.zoom.rotate {
            base.rotate = ctx.number("rotate", v)?;
        }
        if let Some(v) = &raw.zoom.translate {
            let [x, y] = *v.get_ref();
            base.translate = (
                ctx.number("translate_x", &Spanned::new(v.span(), x))?,
                ctx.number("translate_y", &Spanned::new(v.span(), y))?,
            );
        }
        let mut keyframes = Vec::new();
        let mut previous: Option<KeyTime> = None;
        for k in &raw.keyframe {
            let span = k.span();
            let k = k.get_ref();
            let time = match (&k.frame, &k.seconds) {
                (Some(f), None) => KeyTime::Frame(*f.get_ref()),
                (None, Some(s)) if s.get_ref().is_finite() && *s.get_ref() >= 0.0 => KeyTime::Seconds(*s.get_ref()),
                (None, Some(s)) => {
                    return Err(ctx.err(s.span(), format!("`seconds` = {} must be 0 or more", s.get_ref())))
                }
                _ => return Err(ctx.err(span, "a [[keyframe]] needs exactly one of `frame` or `seconds`".into())),
            };
            let here =
                k.frame.as_ref().map(|f| f.span()).or(k.seconds.as_ref().map(|s| s.span())).unwrap_or(span.clone());
            match (previous, time) {
                (Some(KeyTime::Frame(a)), KeyTime::Frame(b)) if b <= a => {
                    return Err(ctx.err(
                        here,
                        format!(
                        "`frame` = {b} does not come after the previous keyframe (frame {a}); keyframes must increase"
                    ),
                    ))
                }
                (Some(KeyTime::Seconds(a)), KeyTime::Seconds(b)) if b <= a => {
                    return Err(ctx.err(
                        here,
                        format!(
                        "`seconds` = {b} does not come after the previous keyframe ({a} s); keyframes must increase"
                    ),
                    ))
                }
                (Some(KeyTime::Frame(_)), KeyTime::Seconds(_)) | (Some(KeyTime::Seconds(_)), KeyTime::Frame(_)) => {
                    return Err(ctx.err(here, "keyframes mix `frame` and `seconds`; use one of them throughout".into()))
                }
                _ => {}
            }
            previous = Some(time);
            let mut values = KeyValues {
                layers: ctx.layers(model, &k.layer, &k.layers)?,
                channels: k.channels.as_ref().map(|c| c.get_ref().clone()),
                ..KeyValues::default()
            };
            let mut put = |key: &'static str, v: Result<f64, PresetError>| -> Result<(), PresetError> {
                values.numbers.insert(key, v?);
                Ok(())
            };
            for (key, v) in [("octaves", &k.octaves), ("iterations", &k.iterations), ("jitter", &k.jitter)] {
                if let Some(v) = v {
                    put(key, ctx.count(key, v))?;
                }
            }
            for (key, v) in [
                ("octave_scale", &k.octave_scale),
                ("lr", &k.lr),
                ("smooth", &k.smooth),
                ("blend", &k.blend),
                ("zoom", &k.zoom),
                ("rotate", &k.rotate),
            ] {
                if let Some(v) = v {
                    put(key, ctx.number(key, v))?;
                }
            }
            if let Some(t) = &k.translate {
                let [x, y] = *t.get_ref();
                put("translate_x", ctx.number("translate_x", &Spanned::new(t.span(), x)))?;
                put("translate_y", ctx.number("translate_y", &Spanned::new(t.span(), y)))?;
            }
            keyframes.push((time, k.interpolation, values));
        }
        Ok(Preset {
            origin: origin.into(),
            description: raw.description.unwrap_or_default(),
            base,
            fixed,
            source_hash: text_hash(text),
            keyframes,
        })
    }

    /// Settings at `frame` of a render at `fps` frames per second.
    pub fn at(&self, frame: usize, fps: f64) -> FrameSettings {
        let t = frame as f64;
        let when = |k: &KeyTime| match k {
            KeyTime::Frame(f) => *f as f64,
            KeyTime::Seconds(s) => s * fps,
        };
        let number = |key: &str, base: f64| -> f64 {
            let keys = self
                .keyframes
                .iter()
                .filter_map(|(time, how, v)| v.numbers.get(key).map(|x| (when(time), *x, *how)))
                .collect();
            Track { keys }.value(t, base)
        };
        let b = &self.base;
        let layer_track = Track {
            keys: self
                .keyframes
                .iter()
                .filter_map(|(time, how, v)| v.layers.clone().map(|l| (when(time), l, *how)))
                .collect(),
        };
        let channel_track: Track<Option<Vec<usize>>> = Track {
            keys: self
                .keyframes
                .iter()
                .filter_map(|(time, _, v)| v.channels.clone().map(|c| (when(time), Some(c), Interpolation::Step)))
                .collect(),
        };
        FrameSettings {
            layers: layer_track.bracket(t).map_or_else(|| b.layers.clone(), |(a, c, s)| crossfade(&a, &c, s)),
            channels: channel_track.bracket(t).map_or_else(|| b.channels.clone(), |(a, _, _)| a),
            octaves: number("octaves", b.octaves as f64).round() as usize,
            octave_scale: number("octave_scale", b.octave_scale),
            iterations: number("iterations", b.iterations as f64).round() as usize,
            lr: number("lr", b.lr),
            jitter: number("jitter", b.jitter as f64).round() as usize,
            smooth: number("smooth", b.smooth),
            blend: number("blend", b.blend),
            zoom: number("zoom", b.zoom),
            rotate: number("rotate", b.rotate),
            translate: (number("translate_x", b.translate.0), number("translate_y", b.translate.1)),
        }
    }

    /// Removes every keyframe value of `key` (a command-line flag fixes it for the whole render).
    pub fn pin(&mut self, key: &str) {
        for (_, _, v) in &mut self.keyframes {
            match key {
                "layers" => v.layers = None,
                "channels" => v.channels = None,
                _ => {
                    v.numbers.remove(key);
                }
            }
        }
    }

    /// The first line of every shipped preset's description, by name.
    pub fn shipped_descriptions() -> Vec<(&'static str, String)> {
        SHIPPED
            .iter()
            .map(|(name, text)| {
                let d =
                    Self::parse(text, name, None).map(|p| p.description).unwrap_or_else(|e| format!("(invalid: {e})"));
                (*name, d.lines().next().unwrap_or("").to_string())
            })
            .collect()
    }
}

/// `(origin, TOML text)` of a shipped preset name, or of a file for anything with `/` or
/// `.toml`.
pub fn source(spec: &str) -> Result<(String, String), PresetError> {
    if spec.contains('/') || spec.ends_with(".toml") {
        let text = std::fs::read_to_string(spec).map_err(|e| PresetError {
            origin: spec.to_string(),
            line: 0,
            message: format!("cannot read preset: {e}"),
        })?;
        return Ok((spec.to_string(), text));
    }
    match SHIPPED.iter().find(|(n, _)| *n == spec) {
        Some((name, text)) => Ok((format!("preset {name}"), text.to_string())),
        None => Err(PresetError {
            origin: format!("preset {spec}"),
            line: 0,
            message: format!(
                "no such preset; shipped presets are: {} (or give a path to a .toml file)",
                SHIPPED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// FNV-1a hash of a preset's text, recorded with renders so edits are noticed on resume.
pub fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
