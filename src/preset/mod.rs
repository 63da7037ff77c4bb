//! TOML presets: settings plus keyframed schedules, validated with file/line/key errors.
//!
//! The format is documented in `presets/README.md`; every key is a row of the settings table
//! ([`crate::settings`]). [`raw`] reads the text, [`shipped`] holds the presets compiled into
//! the binary ([`crate::settings::schedule`] interpolates keyframes); this file holds the validated [`Preset`].

mod raw;
mod shipped;

use crate::models::ModelKind;
use crate::settings::schedule::Interpolation;
use crate::settings::{Partial, Settings};
pub use raw::RawPreset;
pub use shipped::{source, SHIPPED};

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

/// When a keyframe applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyTime {
    /// A frame index.
    Frame(u64),
    /// Seconds from the start.
    Seconds(f64),
}

/// Settings that change at a point of a render.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyframe {
    /// When.
    pub time: KeyTime,
    /// How values travel from here to the next keyframe that sets them.
    pub interpolation: Interpolation,
    /// The settings this keyframe sets.
    pub values: Partial,
}

/// A validated preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// Where it came from (a path or `preset NAME`).
    pub origin: String,
    /// One-line description.
    pub description: String,
    /// The model its layers were checked against (`--model`, else the preset's own), if any.
    pub model: Option<ModelKind>,
    /// Values at frame 0 before any keyframe.
    pub base: Settings,
    /// [`text_hash`] of the preset's TOML.
    pub source_hash: u64,
    /// Keyframes in time order.
    pub keyframes: Vec<Keyframe>,
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
        let raw = RawPreset::parse(text, origin)?;
        raw.resolve(text, origin, model.or(raw.model()))
    }

    /// Settings at `frame` of a render at `fps` frames per second.
    pub fn at(&self, frame: usize, fps: f64) -> Settings {
        let keys: Vec<(f64, Interpolation, &Partial)> = self
            .keyframes
            .iter()
            .map(|k| {
                let when = match k.time {
                    KeyTime::Frame(f) => f as f64,
                    KeyTime::Seconds(s) => s * fps,
                };
                (when, k.interpolation, &k.values)
            })
            .collect();
        self.base.at(frame as f64, &keys)
    }

    /// Sets `values` for the whole render (command-line flags): they replace the base values
    /// and every keyframe value of the same settings.
    pub fn pin(&mut self, values: &Partial) {
        self.base = self.base.with(values);
        for name in values.names() {
            for k in &mut self.keyframes {
                k.values.clear(name);
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

/// FNV-1a hash of a preset's text, recorded with renders so edits are noticed on resume.
pub fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
