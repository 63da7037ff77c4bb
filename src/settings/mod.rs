//! Every setting of a dream, a video render and a zoom, each defined once.
//!
//! A row of [`settings!`] gives a setting's name (the TOML key in its preset section, the
//! command-line flag with `-` for `_`, the key in render records and in the docs), its type,
//! default, section, whether keyframes may change it, its range and its help text. Parsing
//! presets, keyframe interpolation, flag overrides, range errors, render records and the
//! defaults of [`crate::dream::DreamParams`] all derive from this table: adding a setting is
//! one row here plus the code that uses it.

pub mod schedule;
mod value;

pub use value::{Channels, FilePath, Layers, Naming, Raw, Value, ValueError};

use crate::dream::GradientNorm;
use crate::models::ModelKind;
use crate::video::coherence::Coherence;
use schedule::{Interpolation, Track};

/// Where a setting lives in a preset, and which commands take it as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `[dream]`: the dream itself (every command).
    Dream,
    /// `[video]`: how frames of a video build on each other.
    Video,
    /// `[zoom]`: the camera of an infinite zoom.
    Zoom,
    /// How this run computes (flags only, not part of a preset's look).
    Compute,
    /// How videos and animations are encoded (flags only).
    Encode,
}

impl Section {
    /// The preset table this section is read from (`None`: flags only).
    pub fn preset_table(self) -> Option<&'static str> {
        match self {
            Section::Dream => Some("dream"),
            Section::Video => Some("video"),
            Section::Zoom => Some("zoom"),
            Section::Compute | Section::Encode => None,
        }
    }
}

/// The values a numeric setting accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// Any value of the type.
    Any,
    /// From the first to the second, inclusive (each component of a pair).
    Span(f64, f64),
    /// 0 (off), or from the first to the second inclusive.
    ZeroOr(f64, f64),
}

impl Range {
    /// Why `v` is not allowed, as a phrase following the value (`is out of range (1 to 12)`).
    pub fn check(self, v: f64) -> Result<(), String> {
        match self {
            Range::Any => Ok(()),
            Range::Span(lo, hi) if v.is_finite() && v >= lo && v <= hi => Ok(()),
            Range::Span(lo, hi) => Err(format!("is out of range ({lo} to {hi})")),
            Range::ZeroOr(..) if v == 0.0 => Ok(()),
            Range::ZeroOr(lo, _) if v.is_finite() && v < lo => {
                Err(format!("is too small: use at least {lo}, or 0 to turn it off"))
            }
            Range::ZeroOr(lo, hi) => Range::Span(lo, hi).check(v),
        }
    }
}

/// One row of the settings table.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The one name: TOML key, flag (`-` for `_`), render-record key.
    pub name: &'static str,
    /// Another key presets and flags may use (`layer` for a single layer).
    pub alias: Option<&'static str>,
    /// Preset section, and which commands take it.
    pub section: Section,
    /// Whether keyframes may change it during a render.
    pub keyframed: bool,
    /// Allowed numbers.
    pub range: Range,
    /// What a value looks like (`NUMBER`, `COUNT`, `LAYER[=W],...`).
    pub shape: &'static str,
    /// The allowed words, for settings that are a choice.
    pub choices: &'static [&'static str],
    /// An on/off setting: its flag alone means on (`--keep-colors`), `--keep-colors=false` off.
    pub switch: bool,
    /// Help text: the first line, then details.
    pub help: &'static str,
}

impl Setting {
    /// The command-line flag, without the dashes.
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }

    /// Whether `key` names this setting (its name or alias).
    pub fn is_called(&self, key: &str) -> bool {
        self.name == key || self.alias == Some(key)
    }

    /// Parses and range-checks `text` given on the command line, for `model`.
    pub fn parse_flag(&self, text: &str, model: Option<ModelKind>) -> Result<Partial, String> {
        let mut p = Partial::default();
        p.set(self, Raw::Text(text), model).map_err(|e| e.describe(self.name, Naming::Flag))?;
        Ok(p)
    }
}

/// Defines [`Settings`], [`Partial`] and [`TABLE`] from one list of rows:
/// `/// help` `name: Type = default, [Section, keyframed?, range, alias];`.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $ty:ty = $default:expr, [$section:ident, $keyframed:literal, $range:expr, $alias:expr];
    )*) => {
        /// The value of every setting.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings {
            $($(#[doc = $doc])+ pub $name: $ty,)*
        }

        impl Default for Settings {
            fn default() -> Self {
                Self { $($name: $default,)* }
            }
        }

        /// Some settings' values: what a preset section, a keyframe or the flags set.
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct Partial {
            $($(#[doc = $doc])+ pub $name: Option<$ty>,)*
        }

        /// Every setting, in the order of [`Settings`]' fields.
        pub const TABLE: &[Setting] = &[$(Setting {
            name: stringify!($name),
            alias: $alias,
            section: Section::$section,
            keyframed: $keyframed,
            range: $range,
            shape: <$ty as Value>::SHAPE,
            choices: <$ty as Value>::CHOICES,
            switch: <$ty as Value>::SWITCH,
            help: concat!($($doc, "\n"),+),
        },)*];

        impl Partial {
            /// Reads `raw` into the setting `row`, range-checked.
            pub fn set(&mut self, row: &Setting, raw: Raw, model: Option<ModelKind>) -> Result<(), ValueError> {
                $(if row.name == stringify!($name) {
                    let v = <$ty as Value>::parse(raw, model).map_err(ValueError::Type)?;
                    for (suffix, x) in v.bounded() {
                        row.range.check(x).map_err(|why| ValueError::Range(suffix, x, why))?;
                    }
                    self.$name = Some(v);
                    return Ok(());
                })*
                unreachable!("`{}` is a row of the table", row.name)
            }

            /// Whether the setting `name` has a value here.
            pub fn has(&self, name: &str) -> bool {
                $(if name == stringify!($name) {
                    return self.$name.is_some();
                })*
                false
            }

            /// Forgets the setting `name`.
            pub fn clear(&mut self, name: &str) {
                $(if name == stringify!($name) {
                    self.$name = None;
                })*
            }

            /// The names of the settings with a value here.
            pub fn names(&self) -> Vec<&'static str> {
                TABLE.iter().map(|s| s.name).filter(|n| self.has(n)).collect()
            }

            /// These values, then `other`'s where it has one.
            pub fn merged(&self, other: &Partial) -> Partial {
                Partial { $($name: other.$name.clone().or_else(|| self.$name.clone()),)* }
            }
        }

        impl Settings {
            /// These settings with `p`'s values where it has them.
            pub fn with(&self, p: &Partial) -> Settings {
                Settings { $($name: p.$name.clone().unwrap_or_else(|| self.$name.clone()),)* }
            }

            /// The settings at time `t` (in frames) given keyframes `(time, interpolation
            /// towards the next, values)` in time order: a keyframed setting holds its first
            /// keyframe value before it and its last one after it; settings that no keyframe
            /// sets keep these values.
            pub fn at(&self, t: f64, keys: &[(f64, Interpolation, &Partial)]) -> Settings {
                let mut out = self.clone();
                $(if $keyframed {
                    let keys = keys.iter().filter_map(|(time, how, p)| p.$name.clone().map(|v| (*time, v, *how)));
                    out.$name = Track { keys: keys.collect() }.value(t, self.$name.clone());
                })*
                out
            }

            /// Every setting as `name = value` (render records).
            pub fn to_table(&self) -> toml::Table {
                let mut t = toml::Table::new();
                $(if let Some(v) = Value::to_toml(&self.$name) {
                    t.insert(stringify!($name).into(), v);
                })*
                t
            }
        }
    };
}

/// Default smallest side, in pixels, of the tiles large frames get their gradient in.
pub const DEFAULT_TILE: usize = 768;

settings! {
    /// Layer(s) to amplify: a name from `dreamvid layers` (features.30, blocks.10, inception4c)
    /// or its number. Deeper layers give more object-like patterns. Several layers with weights:
    /// `blocks.6=1,blocks.10=0.5` (in presets `layers = { "blocks.6" = 1.0, ... }`); a change
    /// between keyframes cross-fades. Default: the model's (features.30, blocks.10, inception4c).
    layers: Layers = Vec::new(), [Dream, true, Range::Any, Some("layer")];
    /// Only these channels of the layers count (default: all); keyframes switch them.
    channels: Channels = None, [Dream, true, Range::Any, None];
    /// Number of octaves (scales); each is octave_scale times smaller than the last.
    octaves: usize = 4, [Dream, true, Range::Span(1.0, 12.0), None];
    /// Size ratio between octaves.
    octave_scale: f64 = 1.4, [Dream, true, Range::Span(1.01, 4.0), None];
    /// Gradient steps per octave.
    iterations: usize = 10, [Dream, true, Range::Span(0.0, 1000.0), None];
    /// Step size per iteration (pixel range 0..1, relative to the mean gradient).
    lr: f64 = 0.01, [Dream, true, Range::Span(1e-6, 1.0), None];
    /// How each gradient becomes a step of size lr: mean (scaled by its mean magnitude, the
    /// classic step), std (by its standard deviation, mean removed: smaller steps at the same
    /// lr) or laplacian (each band of a Laplacian pyramid scaled to the same strength, then the
    /// mean magnitude to lr: coarse patterns grow as fast as fine ones, less pixel noise).
    gradient: GradientNorm = GradientNorm::Mean, [Dream, false, Range::Any, None];
    /// Bands of the laplacian gradient's pyramid, besides the coarse rest (each half the size of
    /// the last).
    gradient_levels: usize = 4, [Dream, true, Range::Span(1.0, 8.0), None];
    /// Step in a decorrelated colour space (Lucid's color_correlation_svd_sqrt): steps follow the
    /// colour directions natural images vary in, mostly brightness, so dreams are less garish.
    decorrelate: bool = false, [Dream, false, Range::Any, None];
    /// Keep the source's colours: the output has the source's chroma (YCbCr Cb, Cr) and the
    /// dream's brightness (Y), up to clipping. Videos keep each frame's colours, zooms the first
    /// image's.
    keep_colors: bool = false, [Dream, false, Range::Any, None];
    /// Largest random shift in pixels before each step (hides tiling artefacts).
    jitter: usize = 16, [Dream, true, Range::Span(0.0, 256.0), None];
    /// Gaussian smoothing of the gradient, in pixels (0 = off).
    smooth: f64 = 0.5, [Dream, true, Range::Span(0.0, 20.0), None];
    /// Random seed: the same input, settings and seed give the same output.
    seed: u64 = 0, [Dream, false, Range::Any, None];
    /// Guide image (google/deepdream's objective_guide): instead of amplifying whatever the
    /// layer sees, each position's features are pushed towards the best-matching features of
    /// this picture (read once, at 224 pixels on its shorter side), so its textures and objects
    /// grow. In a preset, relative to the preset's folder.
    guide: FilePath = None, [Dream, false, Range::Any, None];
    /// With a guide: 1 follows the guide only, 0 ignores it (the plain dream), in between mixes
    /// the two directions (each of unit length at the layer) by this weight.
    guide_weight: f64 = 1.0, [Dream, true, Range::Span(0.0, 1.0), None];
    /// Mask image: how strongly each pixel is dreamed, by its brightness (white: fully, black:
    /// not at all; those pixels stay exactly the source's). Resized to the frame (a zoom's: the
    /// camera's); a video may take a mask video, read frame by frame (its last frame held if
    /// it is shorter). In a preset, relative to the preset's folder.
    mask: FilePath = None, [Dream, false, Range::Any, None];
    /// Softens the mask's edges: the standard deviation, in pixels of the frame, of a Gaussian
    /// blur of the mask (0: hard edges).
    mask_feather: f64 = 4.0, [Dream, false, Range::Span(0.0, 256.0), None];
    /// Multiplies the mask (an all-white one when none is given): 1 dreams as the mask says,
    /// 0 dreams nowhere; keyframes fade the dream in and out.
    mask_weight: f64 = 1.0, [Dream, true, Range::Span(0.0, 1.0), None];
    /// How each video frame builds on the previous dreamed frame: flow (carry the dream along
    /// the motion), blend (plain mix, ghosts on motion) or none (independent frames, flickers).
    coherence: Coherence = Coherence::Flow, [Video, false, Range::Any, None];
    /// In flow coherence, how much of the previous frame's dream (its difference from its source)
    /// is carried along the motion into the next frame (0..1; near 1 keeps the dream, lower
    /// lets it fade).
    carry: f64 = 0.98, [Video, true, Range::Span(0.0, 1.0), None];
    /// In blend coherence, the weight of the previous dreamed frame mixed into the next (0..1;
    /// more leaves more ghosts of moving things).
    blend: f64 = 0.6, [Video, true, Range::Span(0.0, 1.0), None];
    /// In flow coherence, how much of each frame's dream is held back where the previous dream
    /// carries over reliably (0: every pixel is dreamed afresh each frame; 1: only content that
    /// comes into view is dreamed, the rest follows the motion). Still pixels (their source did
    /// not change beyond its noise) keep their dream whole while the settings stay the same.
    temporal_weight: f64 = 0.7, [Video, true, Range::Span(0.0, 1.0), None];
    /// Gradient steps per octave of a video frame that continues a shot (0: `iterations`, every
    /// frame as strong as an image). A shot's first frame takes `iterations`, the preset's full
    /// strength; later frames start from the carried dream and take these few steps, more when
    /// much new content comes into view. Flow and blend coherence; `none` dreams every frame
    /// with `iterations`.
    frame_iterations: usize = 0, [Video, true, Range::Span(0.0, 1000.0), None];
    /// How different consecutive frames must be to count as a cut, where the carry-over resets:
    /// the distance of their brightness histograms plus their mean brightness difference (within
    /// a shot about 0.2 at most, even with fast motion; hard cuts 0.4 and more).
    scene_cut: f64 = crate::video::shots::DEFAULT_SCENE_CUT, [Video, false, Range::Span(0.0, 2.0), None];
    /// Zoom factor per frame (> 1 zooms in).
    zoom: f64 = 1.0, [Zoom, true, Range::Span(0.5, 2.0), None];
    /// Rotation per frame in degrees, clockwise.
    rotate: f64 = 0.0, [Zoom, true, Range::Span(-45.0, 45.0), None];
    /// Camera shift per frame in pixels, `X,Y`.
    translate: (f64, f64) = (0.0, 0.0), [Zoom, true, Range::Span(-256.0, 256.0), None];
    /// Frames with a side longer than this many pixels get their gradients in tiles (at random
    /// offsets, so no seams), which bounds memory: at 768, a 4K frame dreams with VGG19 in
    /// under 4 GB. 0 never tiles.
    tile: usize = DEFAULT_TILE, [Compute, false, Range::ZeroOr(crate::dream::MIN_TILE as f64, 1e9), None];
    /// FFmpeg video encoder (libx264, libx265, libvpx-vp9, mpeg4, ...).
    codec: String = crate::video::encode::DEFAULT_CODEC.to_string(), [Encode, false, Range::Any, None];
    /// Quality: constant rate factor (lower = better, bigger), for encoders that have one.
    crf: usize = crate::video::encode::DEFAULT_CRF as usize, [Encode, false, Range::Span(0.0, 63.0), None];
}

/// Keys that were renamed, with their new names, so old presets get a pointer.
pub const RENAMED: &[(&str, &str)] = &[("factor", "zoom"), ("step", "lr"), ("smoothing", "smooth")];

/// Every setting as a Markdown table (`dreamvid settings`; `presets/README.md` holds a copy
/// that a test keeps current).
pub fn reference() -> String {
    let defaults = Settings::default().to_table();
    let mut out = String::from(
        "| setting | preset table | flag | keyframes | range | default | what it does |\n|---|---|---|---|---|---|---|\n",
    );
    for s in TABLE {
        let table = s.section.preset_table().map_or("(flag only)".to_string(), |t| format!("[{t}]"));
        let flag = match s.alias {
            Some(a) => format!("--{} (--{a})", s.flag()),
            None => format!("--{}", s.flag()),
        };
        let range = match (s.range, s.choices) {
            (_, [_, ..]) => s.choices.join(", "),
            (Range::Any, _) => "any".to_string(),
            (Range::Span(lo, hi), _) => format!("{lo} to {hi}"),
            (Range::ZeroOr(lo, _), _) => format!("0 (off), or {lo} and more"),
        };
        let default = defaults.get(s.name).map_or("none".to_string(), |v| v.to_string());
        let default = if s.name == "layers" { "the model's".to_string() } else { default };
        let help = s.help.split_whitespace().collect::<Vec<_>>().join(" ");
        let keyed = if s.keyframed { "yes" } else { "no" };
        out += &format!("| `{}` | {table} | `{flag}` | {keyed} | {range} | {default} | {help} |\n", s.name);
    }
    out
}

/// The row of the setting called `key` (its name or alias).
pub fn find(key: &str) -> Option<&'static Setting> {
    TABLE.iter().find(|s| s.is_called(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_defaults_read_back() {
        for (i, s) in TABLE.iter().enumerate() {
            assert!(TABLE[..i].iter().all(|o| !o.is_called(s.name) && s.alias.is_none_or(|a| !o.is_called(a))));
            assert!(!s.help.trim().is_empty(), "{} has no help", s.name);
        }
        let d = Settings { layers: vec![("blocks.10".into(), 1.0)], ..Settings::default() }.to_table();
        for s in TABLE {
            if let Some(v) = d.get(s.name) {
                let mut p = Partial::default();
                p.set(s, Raw::Toml(v), None).unwrap_or_else(|e| panic!("default of {}: {e:?}", s.name));
            }
        }
    }

    #[test]
    fn flags_and_toml_read_the_same_values() {
        let lr = find("lr").unwrap();
        assert_eq!(lr.parse_flag("0.02", None).unwrap().lr, Some(0.02));
        assert_eq!(lr.parse_flag("7", None).unwrap_err(), "--lr 7 is out of range (0.000001 to 1)");
        let tile = find("tile").unwrap();
        assert!(tile.parse_flag("5", None).unwrap_err().starts_with("--tile 5 is too small"));
        assert_eq!(tile.parse_flag("0", None).unwrap().tile, Some(0));
        let t = find("translate").unwrap();
        assert_eq!(t.parse_flag("1,-2", None).unwrap().translate, Some((1.0, -2.0)));
        assert!(t.parse_flag("1,900", None).unwrap_err().contains("--translate-y 900"));
        let layers = find("layer").unwrap();
        let p = layers.parse_flag("30", Some(ModelKind::Vgg19)).unwrap();
        assert_eq!(p.layers, Some(vec![("features.30".to_string(), 1.0)]));
        let p = layers.parse_flag("blocks.6=1,blocks.10=0.5", Some(ModelKind::EfficientNetLite0)).unwrap();
        assert_eq!(p.layers.unwrap().len(), 2);
        assert!(find("coherence").unwrap().parse_flag("wobble", None).unwrap_err().contains("flow"));
    }
}
