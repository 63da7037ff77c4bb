//! Preset TOML as written, with the position of every key and value, and its validation into
//! a [`Preset`] against the settings table: errors name the file, the line and the key.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{text_hash, KeyTime, Keyframe, Preset, PresetError};
use crate::models::ModelKind;
use crate::settings::schedule::Interpolation;
use crate::settings::{self, Naming, Partial, Raw, Settings, RENAMED};

/// Keys and values of one TOML table, with their positions.
type Table = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// A preset file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreset {
    description: Option<String>,
    model: Option<Spanned<ModelKind>>,
    #[serde(default)]
    dream: Table,
    #[serde(default)]
    video: Table,
    #[serde(default)]
    zoom: Table,
    #[serde(default)]
    keyframe: Vec<Spanned<Table>>,
}

/// Locates errors in the preset text.
struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
    model: Option<ModelKind>,
}

impl Ctx<'_> {
    fn err(&self, span: std::ops::Range<usize>, message: String) -> PresetError {
        let line = self.text[..span.start.min(self.text.len())].matches('\n').count() + 1;
        PresetError { origin: self.origin.to_string(), line, message }
    }

    /// Reads one `key = value` of `table` (a section, or `None` for a keyframe) into `into`.
    fn setting(
        &self,
        key: &Spanned<String>,
        value: &Spanned<toml::Value>,
        table: Option<&str>,
        into: &mut Partial,
    ) -> Result<(), PresetError> {
        let name = key.get_ref().as_str();
        let here = |m: String| self.err(key.span(), m);
        let Some(row) = settings::find(name) else {
            let hint = match RENAMED.iter().find(|(old, _)| *old == name) {
                Some((_, new)) => format!("; it is now called `{new}`"),
                None => {
                    let valid = settings::TABLE.iter().filter(|s| match table {
                        Some(t) => s.section.preset_table() == Some(t),
                        None => s.keyframed,
                    });
                    format!("; valid keys here: {}", valid.map(|s| s.name).collect::<Vec<_>>().join(", "))
                }
            };
            return Err(here(format!("unknown key `{name}`{hint}")));
        };
        match (table, row.section.preset_table()) {
            (_, None) => {
                return Err(here(format!(
                    "`{name}` is not a preset setting (it depends on the machine, not the look): use --{}",
                    row.flag()
                )))
            }
            (Some(t), Some(home)) if t != home => {
                return Err(here(format!("`{name}` belongs in [{home}], not [{t}]")));
            }
            (None, Some(home)) if !row.keyframed => {
                return Err(here(format!(
                    "`{name}` is fixed for a whole render: set it in [{home}], not in a keyframe"
                )));
            }
            _ => {}
        }
        if into.has(row.name) {
            let other = if row.name == name { row.alias.unwrap_or(name) } else { row.name };
            return Err(here(format!("give either `{other}` or `{name}`, not both")));
        }
        into.set(row, Raw::Toml(value.get_ref()), self.model)
            .map_err(|e| self.err(value.span(), e.describe(name, Naming::Key)))
    }

    fn section(&self, name: &str, table: &Table) -> Result<Partial, PresetError> {
        let mut p = Partial::default();
        for (key, value) in table {
            self.setting(key, value, Some(name), &mut p)?;
        }
        Ok(p)
    }

    fn keyframe(&self, k: &Spanned<Table>, previous: Option<KeyTime>) -> Result<Keyframe, PresetError> {
        let mut time: Option<(KeyTime, std::ops::Range<usize>)> = None;
        let mut interpolation = Interpolation::default();
        let mut values = Partial::default();
        for (key, value) in k.get_ref() {
            let at = value.span();
            match key.get_ref().as_str() {
                "frame" | "seconds" if time.is_some() => {
                    return Err(self.err(k.span(), "a [[keyframe]] needs exactly one of `frame` or `seconds`".into()))
                }
                "frame" => match value.get_ref() {
                    toml::Value::Integer(f) if *f >= 0 => time = Some((KeyTime::Frame(*f as u64), at)),
                    v => return Err(self.err(at, format!("`frame` = {v} must be a whole number, 0 or more"))),
                },
                "seconds" => match value.get_ref() {
                    toml::Value::Float(s) if s.is_finite() && *s >= 0.0 => time = Some((KeyTime::Seconds(*s), at)),
                    toml::Value::Integer(s) if *s >= 0 => time = Some((KeyTime::Seconds(*s as f64), at)),
                    v => return Err(self.err(at, format!("`seconds` = {v} must be 0 or more"))),
                },
                "interpolation" => {
                    interpolation = Interpolation::deserialize(value.get_ref().clone()).map_err(|_| {
                        self.err(at, "`interpolation` must be \"linear\", \"ease-in-out\" or \"step\"".into())
                    })?
                }
                _ => self.setting(key, value, None, &mut values)?,
            }
        }
        let Some((time, at)) = time else {
            return Err(self.err(k.span(), "a [[keyframe]] needs exactly one of `frame` or `seconds`".into()));
        };
        match (previous, time) {
            (Some(KeyTime::Frame(a)), KeyTime::Frame(b)) if b <= a => Err(self.err(
                at,
                format!("`frame` = {b} does not come after the previous keyframe (frame {a}); keyframes must increase"),
            )),
            (Some(KeyTime::Seconds(a)), KeyTime::Seconds(b)) if b <= a => Err(self.err(
                at,
                format!("`seconds` = {b} does not come after the previous keyframe ({a} s); keyframes must increase"),
            )),
            (Some(KeyTime::Frame(_)), KeyTime::Seconds(_)) | (Some(KeyTime::Seconds(_)), KeyTime::Frame(_)) => {
                Err(self.err(at, "keyframes mix `frame` and `seconds`; use one of them throughout".into()))
            }
            _ => Ok(Keyframe { time, interpolation, values }),
        }
    }
}

impl RawPreset {
    /// Parses preset text (syntax and types of the top level only; see [`RawPreset::resolve`]).
    pub fn parse(text: &str, origin: &str) -> Result<Self, PresetError> {
        toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let line_start = text[..span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
            let line = text[line_start..].lines().next().unwrap_or("").trim();
            let ctx = Ctx { origin, text, model: None };
            ctx.err(span, format!("{} (in `{line}`)", e.message().trim()))
        })
    }

    /// The model the preset names, if any.
    pub fn model(&self) -> Option<ModelKind> {
        self.model.as_ref().map(|m| *m.get_ref())
    }

    /// Validates every value against the settings table, layers against `model` when known.
    pub fn resolve(&self, text: &str, origin: &str, model: Option<ModelKind>) -> Result<Preset, PresetError> {
        let ctx = Ctx { origin, text, model };
        let mut base = Partial::default();
        for (name, table) in [("dream", &self.dream), ("video", &self.video), ("zoom", &self.zoom)] {
            base = base.merged(&ctx.section(name, table)?);
        }
        if !origin.starts_with("preset ") {
            let folder = std::path::Path::new(origin).parent().unwrap_or(std::path::Path::new(""));
            for file in [&mut base.guide, &mut base.mask].into_iter().flatten().flatten() {
                *file = folder.join(&*file);
            }
        }
        let mut keyframes: Vec<Keyframe> = Vec::with_capacity(self.keyframe.len());
        for k in &self.keyframe {
            keyframes.push(ctx.keyframe(k, keyframes.last().map(|k| k.time))?);
        }
        Ok(Preset {
            origin: origin.into(),
            description: self.description.clone().unwrap_or_default(),
            model,
            base: Settings::default().with(&base),
            source_hash: text_hash(text),
            keyframes,
        })
    }
}
