//! The presets compiled into the binary, and finding a preset by name or path.

use super::PresetError;

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
    ("inception4c", include_str!("../../presets/inception4c.toml")),
    ("inception3b", include_str!("../../presets/inception3b.toml")),
    ("inception5b", include_str!("../../presets/inception5b.toml")),
    ("zoom-googlenet", include_str!("../../presets/zoom-googlenet.toml")),
];

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
