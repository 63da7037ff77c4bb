//! Presets: shipped ones load, schedules interpolate, bad files fail with file/line/key, the
//! parser never panics, and a preset's values reach a render.

mod common;

use std::process::Command;

use dreamvid::dream::Rng;
use dreamvid::models::ModelKind;
use dreamvid::preset::{Preset, SHIPPED};

fn parse(text: &str) -> Result<Preset, String> {
    Preset::parse(text, "test.toml", Some(ModelKind::EfficientNetLite0)).map_err(|e| e.to_string())
}

#[test]
fn shipped_presets_are_valid_for_their_models() {
    assert!(SHIPPED.len() >= 9);
    for (name, _) in SHIPPED {
        let p = Preset::find(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let model = p.model.unwrap_or_else(|| panic!("{name} names no model"));
        let (origin, text) = dreamvid::preset::source(name).unwrap();
        Preset::parse(&text, &origin, Some(model)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!p.description.is_empty(), "{name} has no description");
    }
    for required in ["layer10", "layer20", "layer30", "zoom"] {
        assert!(SHIPPED.iter().any(|(n, _)| *n == required), "missing preset {required}");
    }
    let layer30 = Preset::find("layer30").unwrap();
    assert_eq!(layer30.at(0, 25.0).layers, vec![("features.30".to_string(), 1.0)]);
}

#[test]
fn presets_command_lists_every_preset() {
    let o = Command::new(env!("CARGO_BIN_EXE_dreamvid")).arg("presets").output().unwrap();
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    for (name, _) in SHIPPED {
        assert!(text.lines().any(|l| l.starts_with(name) && l.len() > name.len() + 10), "{name} missing in:\n{text}");
    }
}

#[test]
fn keyframes_interpolate_and_cross_fade_layers() {
    let p = parse(
        r#"
[dream]
layer = "blocks.4"
iterations = 2

[[keyframe]]
frame = 10
layer = "blocks.4"
zoom = 1.0
iterations = 2
interpolation = "linear"

[[keyframe]]
frame = 20
layer = "blocks.10"
zoom = 1.1
iterations = 6
interpolation = "step"

[[keyframe]]
frame = 30
zoom = 1.0
"#,
    )
    .unwrap();
    let at = |f| p.at(f, 25.0);
    assert_eq!(at(0).zoom, 1.0);
    assert!((at(15).zoom - 1.05).abs() < 1e-12);
    assert_eq!(at(15).iterations, 4);
    assert_eq!(at(15).layers, vec![("blocks.4".to_string(), 0.5), ("blocks.10".to_string(), 0.5)]);
    assert_eq!(at(25).zoom, 1.1, "step holds until the next keyframe");
    assert_eq!(at(30).zoom, 1.0);
    assert_eq!(at(25).layers, vec![("blocks.10".to_string(), 1.0)]);
    assert_eq!(at(99).iterations, 6);
}

#[test]
fn seconds_keyframes_use_the_frame_rate() {
    let p = parse("[[keyframe]]\nseconds = 0.0\nlr = 0.01\n[[keyframe]]\nseconds = 2.0\nlr = 0.03\n").unwrap();
    assert!((p.at(25, 25.0).lr - 0.02).abs() < 1e-12, "1 s at 25 fps is half way");
    assert!((p.at(12, 12.0).lr - 0.02).abs() < 1e-12);
}

/// Asserts the error names the file, the given line and the key (or value).
fn fails(text: &str, line: usize, mentions: &str) {
    let e = parse(text).expect_err("must fail");
    assert!(e.starts_with(&format!("test.toml:{line}:")), "wrong location in: {e}");
    assert!(e.contains(mentions), "`{mentions}` not in: {e}");
}

#[test]
fn invalid_presets_name_file_line_and_key() {
    fails("description = \"x\"\n\n[dream]\noctves = 3\n", 4, "octves");
    fails("[dream]\noctaves = \"three\"\n", 2, "octaves");
    fails("[dream]\niterations = 5\nlr = 7.5\n", 3, "lr");
    fails("[video]\nblend = -0.1\n", 2, "blend");
    fails("[dream]\nlayer = \"features.30\"\n", 2, "features.30");
    fails("[[keyframe]]\nframe = 10\nzoom = 1.1\n\n[[keyframe]]\nframe = 5\nzoom = 1.2\n", 6, "frame");
    fails("[[keyframe]]\nframe = 1\n[[keyframe]]\nseconds = 2.0\n", 4, "seconds");
    fails("[[keyframe]]\nzoom = 1.1\n", 1, "frame");
    fails("[dream]\nlayer = \"blocks.2\"\nlayers = { \"blocks.3\" = 1.0 }\n", 3, "layers");
    fails("[zoom]\ntranslate = [0.0, 900.0]\n", 2, "translate_y");
    fails("[dream]\nlayers = { \"blocks.3\" = -1.0 }\n", 2, "weight");
    fails("[dream\n", 1, "");
}

#[test]
fn the_parser_never_panics_on_mangled_input() {
    let mut rng = Rng::new(99);
    let pieces = [
        "[",
        "]",
        "=",
        "\"",
        "\n",
        "[[keyframe]]",
        "frame = ",
        "1e999",
        "-",
        "{",
        "}",
        ",",
        "layer",
        "nan",
        "0x",
        "\u{0}",
        "é",
    ];
    for (_, text) in SHIPPED {
        for _ in 0..300 {
            let mut s: Vec<char> = text.chars().collect();
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() as usize) % (s.len() + 1);
                match rng.next_u64() % 3 {
                    0 if at < s.len() => {
                        s.remove(at);
                    }
                    1 => {
                        let piece = pieces[(rng.next_u64() as usize) % pieces.len()];
                        for (k, c) in piece.chars().enumerate() {
                            s.insert(at + k, c);
                        }
                    }
                    _ => s.truncate(at),
                }
            }
            let mangled: String = s.into_iter().collect();
            if let Ok(p) = Preset::parse(&mangled, "fuzz", None) {
                for frame in [0, 7, 1000] {
                    let _ = p.at(frame, 25.0);
                }
            }
        }
    }
}

#[test]
fn a_preset_file_and_flags_reach_the_render_record() {
    let dir = common::scratch("preset-render");
    let weights = common::fixture_weights(&dir);
    let preset = dir.join("mine.toml");
    std::fs::write(
        &preset,
        "description = \"test\"\nmodel = \"vgg19\"\n[dream]\nlayer = \"20\"\noctaves = 2\niterations = 3\nlr = 0.02\n[video]\ncoherence = \"blend\"\nblend = 0.3\n",
    )
    .unwrap();
    let input = dir.join("in.mp4");
    dreamvid::fixture::clip::write_clip(
        &input,
        &dreamvid::fixture::clip::ClipSpec::constant(48, 32, 3, 25),
        dreamvid::fixture::clip::moving_pattern(48, 32, 1, 0),
    )
    .unwrap();
    let out = dir.join("out.mp4");
    let o = Command::new(env!("CARGO_BIN_EXE_dreamvid"))
        .args([input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--weights", &weights])
        .args(["--preset", preset.to_str().unwrap(), "--iterations", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let record = std::fs::read_to_string(dreamvid::pipeline::sidecar_path(&out)).unwrap();
    for expected in [
        "model = \"vgg19\"",
        "coherence = \"blend\"",
        "octaves = 2",
        "iterations = 1",
        "lr = 0.02",
        "blend = 0.3",
        "features.20",
    ] {
        assert!(record.contains(expected), "`{expected}` missing from:\n{record}");
    }
}

#[test]
fn the_preset_docs_list_every_setting_as_the_binary_does() {
    let docs = std::fs::read_to_string(common::repo().join("presets/README.md")).unwrap();
    let table = dreamvid::settings::reference();
    assert!(docs.contains(&table), "presets/README.md is out of date: paste the output of `dreamvid settings`");
    let o = Command::new(env!("CARGO_BIN_EXE_dreamvid")).arg("settings").output().unwrap();
    assert_eq!(String::from_utf8(o.stdout).unwrap(), table);
    for s in dreamvid::settings::TABLE {
        assert!(table.contains(&format!("`{}`", s.name)), "{} missing", s.name);
    }
}

#[test]
fn keys_in_the_wrong_place_or_renamed_are_explained() {
    fails("[zoom]\nfactor = 1.1\n", 2, "now called `zoom`");
    fails("[dream]\nblend = 0.5\n", 2, "belongs in [video]");
    fails("[dream]\ntile = 512\n", 2, "--tile");
    fails("[[keyframe]]\nframe = 0\nseed = 3\n", 3, "fixed for a whole render");
    fails("[video]\ncoherence = \"wobbly\"\n", 2, "flow");
    let p = parse("[zoom]\nzoom = 1.2\n[[keyframe]]\nframe = 4\nzoom = 1.4\n").unwrap();
    assert_eq!((p.at(0, 25.0).zoom, p.at(9, 25.0).zoom), (1.4, 1.4), "a keyframe holds before and after");
}

#[test]
fn every_setting_of_a_command_is_a_flag_with_help() {
    use dreamvid::settings::{Section, TABLE};
    let help = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_dreamvid")).args(args).output().unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let (video, image, zoom) = (help(&["--help"]), help(&["image", "--help"]), help(&["zoom", "--help"]));
    for s in TABLE {
        let flag = format!("--{}", s.flag());
        let on = |text: &str| text.contains(&flag);
        match s.section {
            Section::Dream | Section::Compute => assert!(on(&video) && on(&image) && on(&zoom), "{flag}"),
            Section::Video => assert!(on(&video) && !on(&image) && !on(&zoom), "{flag}"),
            Section::Zoom => assert!(on(&zoom) && !on(&video), "{flag}"),
            Section::Encode => assert!(on(&video) && on(&zoom) && !on(&image), "{flag}"),
        }
    }
}
