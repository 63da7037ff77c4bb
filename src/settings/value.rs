//! The types settings have ([`Value`]): how each is read from presets and flags, written to
//! render records, range-checked and blended between keyframes.

use crate::dream::GradientNorm;
use crate::models::ModelKind;
use crate::video::coherence::Coherence;

/// A value as written: preset TOML or flag text.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    /// A TOML value from a preset.
    Toml(&'a toml::Value),
    /// A command-line flag's text.
    Text(&'a str),
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueError {
    /// Not of the setting's type: the phrase (starting with its separator, as in
    /// ` must be a number`) says what is expected.
    Type(String),
    /// A number outside the range: `(component suffix, value, reason)`.
    Range(&'static str, f64, String),
}

impl ValueError {
    /// The error as a sentence about the setting `name` as `how` names it.
    pub fn describe(&self, name: &str, how: Naming) -> String {
        match (self, how) {
            (ValueError::Type(what), Naming::Key) => format!("`{name}`{what}"),
            (ValueError::Type(what), Naming::Flag) => format!("--{}{what}", name.replace('_', "-")),
            (ValueError::Range(suffix, v, why), Naming::Key) => format!("`{name}{suffix}` = {v} {why}"),
            (ValueError::Range(suffix, v, why), Naming::Flag) => {
                format!("--{}{} {v} {why}", name.replace('_', "-"), suffix.replace('_', "-"))
            }
        }
    }
}

/// How an error names a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// As a preset key: `` `octave_scale` = 9 ``.
    Key,
    /// As a flag: `--octave-scale 9`.
    Flag,
}

/// A type settings can have.
pub trait Value: Sized + Clone + std::fmt::Debug + PartialEq {
    /// What a value looks like on the command line.
    const SHAPE: &'static str;
    /// The allowed words, for choices.
    const CHOICES: &'static [&'static str] = &[];
    /// Whether the value is on/off (see [`super::Setting::switch`]).
    const SWITCH: bool = false;
    /// Reads a value (ranges are checked by the caller, through [`Value::bounded`]).
    fn parse(raw: Raw, model: Option<ModelKind>) -> Result<Self, String>;
    /// The value in a render record (`None`: left out).
    fn to_toml(&self) -> Option<toml::Value>;
    /// The numbers a [`super::Range`] bounds, each with the suffix that names it.
    fn bounded(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
    /// The value a fraction `s` of the way from `a` to `b` (between keyframes); settings that
    /// cannot blend hold `a`.
    fn between(a: &Self, _b: &Self, _s: f64) -> Self {
        a.clone()
    }
}

fn number(raw: Raw) -> Result<f64, String> {
    match raw {
        Raw::Toml(toml::Value::Float(f)) => Ok(*f),
        Raw::Toml(toml::Value::Integer(i)) => Ok(*i as f64),
        Raw::Text(t) => t.trim().parse().map_err(|_| format!(" must be a number (got `{t}`)")),
        Raw::Toml(v) => Err(format!(" must be a number (got {v})")),
    }
}

fn whole(raw: Raw) -> Result<u64, String> {
    let n = match raw {
        Raw::Toml(toml::Value::Integer(i)) => *i,
        Raw::Text(t) => t.trim().parse::<i64>().map_err(|_| format!(" must be a whole number (got `{t}`)"))?,
        Raw::Toml(v) => return Err(format!(" must be a whole number (got {v})")),
    };
    u64::try_from(n).map_err(|_| format!(" must be 0 or more (got {n})"))
}

fn word<'a>(raw: Raw<'a>) -> Result<&'a str, String> {
    match raw {
        Raw::Toml(toml::Value::String(s)) => Ok(s),
        Raw::Text(t) => Ok(t),
        Raw::Toml(v) => Err(format!(" must be a string (got {v})")),
    }
}

impl Value for f64 {
    const SHAPE: &'static str = "NUMBER";
    fn parse(raw: Raw, _: Option<ModelKind>) -> Result<Self, String> {
        number(raw)
    }
    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::Float(*self))
    }
    fn bounded(&self) -> Vec<(&'static str, f64)> {
        vec![("", *self)]
    }
    fn between(a: &Self, b: &Self, s: f64) -> Self {
        a + (b - a) * s
    }
}

impl Value for usize {
    const SHAPE: &'static str = "COUNT";
    fn parse(raw: Raw, _: Option<ModelKind>) -> Result<Self, String> {
        whole(raw).and_then(|n| usize::try_from(n).map_err(|e| format!(" {e}")))
    }
    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::Integer(*self as i64))
    }
    fn bounded(&self) -> Vec<(&'static str, f64)> {
        vec![("", *self as f64)]
    }
    /// Interpolated, then rounded.
    fn between(a: &Self, b: &Self, s: f64) -> Self {
        f64::between(&(*a as f64), &(*b as f64), s).round() as usize
    }
}

impl Value for u64 {
    const SHAPE: &'static str = "N";
    fn parse(raw: Raw, _: Option<ModelKind>) -> Result<Self, String> {
        whole(raw)
            .and_then(|n| i64::try_from(n).map(|_| n).map_err(|_| format!(" must be at most {} (got {n})", i64::MAX)))
    }
    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::Integer(*self as i64))
    }
}

/// An `(x, y)` pair: `[x, y]` in presets, `X,Y` on the command line; its components are
/// range-checked as `NAME_x` and `NAME_y`.
impl Value for (f64, f64) {
    const SHAPE: &'static str = "X,Y";
    fn parse(raw: Raw, _: Option<ModelKind>) -> Result<Self, String> {
        let parts: Vec<f64> = match raw {
            Raw::Toml(toml::Value::Array(a)) => a.iter().map(|v| number(Raw::Toml(v))).collect::<Result<_, _>>()?,
            Raw::Text(t) => t.split(',').map(|p| number(Raw::Text(p))).collect::<Result<_, _>>()?,
            Raw::Toml(v) => return Err(format!(" must be a pair [x, y] (got {v})")),
        };
        match parts[..] {
            [x, y] => Ok((x, y)),
            _ => Err(format!(" must be a pair of two numbers (got {})", parts.len())),
        }
    }
    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::Array(vec![toml::Value::Float(self.0), toml::Value::Float(self.1)]))
    }
    fn bounded(&self) -> Vec<(&'static str, f64)> {
        vec![("_x", self.0), ("_y", self.1)]
    }
    fn between(a: &Self, b: &Self, s: f64) -> Self {
        (f64::between(&a.0, &b.0, s), f64::between(&a.1, &b.1, s))
    }
}

impl Value for String {
    const SHAPE: &'static str = "NAME";
    fn parse(raw: Raw, _: Option<ModelKind>) -> Result<Self, String> {
        word(raw).map(str::to_string)
    }
    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::String(self.clone()))
    }
}

/// [`Value`] for enums that are a choice of words: each has `NAMES`, `name()` and `FromStr`.
macro_rules! choice_value {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            const SHAPE: &'static str = "MODE";
            const CHOICES: &'static [&'static str] = <$ty>::NAMES;
            fn parse(raw: Raw, _: Option<ModelKind>) -> Result<Self, String> {
                let w = word(raw)?;
                w.parse().map_err(|_| format!(" must be one of {} (got `{w}`)", Self::CHOICES.join(", ")))
            }
            fn to_toml(&self) -> Option<toml::Value> {
                Some(toml::Value::String(self.name().to_string()))
            }
        }
    )*};
}

choice_value!(Coherence, GradientNorm);

/// On or off: `true` / `false` in presets and flags.
impl Value for bool {
    const SHAPE: &'static str = "BOOL";
    const CHOICES: &'static [&'static str] = &["true", "false"];
    const SWITCH: bool = true;
    fn parse(raw: Raw, _: Option<ModelKind>) -> Result<Self, String> {
        match raw {
            Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
            Raw::Text("true") => Ok(true),
            Raw::Text("false") => Ok(false),
            Raw::Text(t) => Err(format!(" must be true or false (got `{t}`)")),
            Raw::Toml(v) => Err(format!(" must be true or false (got {v})")),
        }
    }
    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::Boolean(*self))
    }
}

/// A file a setting names (a guide image, a mask): `None` when not given. On the command line
/// it is relative to the working folder; in a preset file, to the preset's folder.
pub type FilePath = Option<std::path::PathBuf>;

impl Value for FilePath {
    const SHAPE: &'static str = "PATH";
    fn parse(raw: Raw, _: Option<ModelKind>) -> Result<Self, String> {
        match word(raw)? {
            "" => Err(" must name a file (got an empty path)".into()),
            w => Ok(Some(w.into())),
        }
    }
    fn to_toml(&self) -> Option<toml::Value> {
        self.as_ref().map(|p| toml::Value::String(p.display().to_string()))
    }
}

/// Only these channels of a layer count (all when `None`).
pub type Channels = Option<Vec<usize>>;

impl Value for Channels {
    const SHAPE: &'static str = "C,C,...";
    fn parse(raw: Raw, _: Option<ModelKind>) -> Result<Self, String> {
        let list: Vec<usize> = match raw {
            Raw::Toml(toml::Value::Array(a)) => {
                a.iter().map(|v| usize::parse(Raw::Toml(v), None)).collect::<Result<_, _>>()?
            }
            Raw::Text(t) => t.split(',').map(|p| usize::parse(Raw::Text(p), None)).collect::<Result<_, _>>()?,
            Raw::Toml(v) => return Err(format!(" must be a list of channel numbers (got {v})")),
        };
        Ok(Some(list))
    }
    fn to_toml(&self) -> Option<toml::Value> {
        self.as_ref().map(|c| toml::Value::Array(c.iter().map(|&i| toml::Value::Integer(i as i64)).collect()))
    }
}

/// A weighted set of layers, by the model's names: `"blocks.6"` or
/// `{ "blocks.6" = 1.0, "blocks.10" = 0.5 }` in presets, `blocks.6=1,blocks.10=0.5` on the
/// command line; layer numbers (`30`) stand for the name ending in them (`features.30`).
pub type Layers = Vec<(String, f64)>;

/// Largest weight of one layer in a [`Layers`] set.
const MAX_LAYER_WEIGHT: f64 = 100.0;

impl Value for Layers {
    const SHAPE: &'static str = "LAYER[=W],...";
    fn parse(raw: Raw, model: Option<ModelKind>) -> Result<Self, String> {
        let set: Vec<(String, f64)> = match raw {
            Raw::Toml(toml::Value::String(s)) => vec![(s.clone(), 1.0)],
            Raw::Toml(toml::Value::Table(t)) => {
                t.iter().map(|(k, v)| Ok((k.clone(), number(Raw::Toml(v))?))).collect::<Result<_, String>>()?
            }
            // `[["name", weight], ...]`, as render records write it.
            Raw::Toml(toml::Value::Array(pairs)) => pairs
                .iter()
                .map(|pair| match pair.as_array().map(Vec::as_slice) {
                    Some([toml::Value::String(name), w]) => Ok((name.clone(), number(Raw::Toml(w))?)),
                    _ => Err(format!(" must hold [\"layer\", weight] pairs (got {pair})")),
                })
                .collect::<Result<_, String>>()?,
            Raw::Text(t) => t
                .split(',')
                .map(|part| match part.split_once('=') {
                    Some((name, w)) => Ok((name.trim().to_string(), number(Raw::Text(w))?)),
                    None => Ok((part.trim().to_string(), 1.0)),
                })
                .collect::<Result<_, String>>()?,
            Raw::Toml(v) => return Err(format!(" must be a layer name or a table of layer weights (got {v})")),
        };
        if set.is_empty() {
            return Err(" is empty".into());
        }
        set.into_iter()
            .map(|(name, w)| {
                if !(w.is_finite() && (0.0..=MAX_LAYER_WEIGHT).contains(&w)) {
                    return Err(format!(" weight {w} for `{name}` must be between 0 and {MAX_LAYER_WEIGHT}"));
                }
                let Some(m) = model else { return Ok((name, w)) };
                match m.resolve_layer(&name) {
                    Some(resolved) => Ok((resolved, w)),
                    None => Err(format!(
                        ": {} has no layer `{name}`; choose one of: {} (see `dreamvid layers --model {}`)",
                        m.name(),
                        m.layer_names().join(", "),
                        m.name()
                    )),
                }
            })
            .collect()
    }
    fn to_toml(&self) -> Option<toml::Value> {
        let pair =
            |(n, w): &(String, f64)| toml::Value::Array(vec![toml::Value::String(n.clone()), toml::Value::Float(*w)]);
        Some(toml::Value::Array(self.iter().map(pair).collect()))
    }
    /// A layer change cross-fades: `(1 - s) * a + s * b`.
    fn between(a: &Self, b: &Self, s: f64) -> Self {
        crossfade(a, b, s)
    }
}

/// Blends two weighted layer sets: `(1 - s) * a + s * b`, dropping zero weights.
pub fn crossfade(a: &[(String, f64)], b: &[(String, f64)], s: f64) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (set, scale) in [(a, 1.0 - s), (b, s)] {
        for (name, w) in set {
            let w = w * scale;
            match out.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 += w,
                None => out.push((name.clone(), w)),
            }
        }
    }
    out.retain(|(_, w)| *w > 1e-9);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_crossfade_weights() {
        let a = vec![("features.20".to_string(), 1.0)];
        let b = vec![("features.30".to_string(), 2.0)];
        let mid = crossfade(&a, &b, 0.25);
        assert_eq!(mid, vec![("features.20".to_string(), 0.75), ("features.30".to_string(), 0.5)]);
        assert_eq!(crossfade(&a, &b, 1.0), b);
        let same = crossfade(&a, &a, 0.5);
        assert_eq!(same, a);
    }
}
