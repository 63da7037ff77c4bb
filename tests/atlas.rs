//! `dreamvid atlas`: a labelled grid per layer or channel, deterministic, with clear errors.

mod common;

use common::{dreamvid, fixture_weights, repo, stderr};

#[test]
fn an_atlas_has_a_tile_per_layer_is_deterministic_and_explains_bad_choices() {
    let dir = common::scratch("atlas");
    let weights = fixture_weights(&dir);
    let input = repo().join("assets/chelsea.png");
    let atlas = |out: &str, extra: &[&str]| {
        let out = dir.join(out);
        let mut args = vec!["atlas", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "vgg19"];
        args.extend(["--weights", &weights, "--tile", "48", "--octaves", "1", "--iterations", "2"]);
        args.extend(extra);
        (dreamvid(&args), out)
    };
    let (o, a) = atlas("a.png", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let layers = dreamvid::models::ModelKind::Vgg19.layer_names().len();
    assert!(stderr(&o).contains(&format!("({layers} tiles)")), "{}", stderr(&o));
    let (o, b) = atlas("b.png", &[]);
    assert!(o.status.success());
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "the same picture gives the same atlas");
    // Channels: a range, the most active, and a range past the layer.
    let (o, _) = atlas("c.png", &["--layer", "20", "--channels", "0..3"]);
    assert!(stderr(&o).contains("(3 tiles)"), "{}", stderr(&o));
    let (o, _) = atlas("t.png", &["--layer", "20", "--channels", "top-2"]);
    assert!(stderr(&o).contains("(2 tiles)"), "{}", stderr(&o));
    let (o, c) = atlas("x.png", &["--layer", "20", "--channels", "0..999"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("reaches past them"), "{}", stderr(&o));
    assert!(!c.exists());
    let (o, _) = atlas("y.png", &["--layer", "no.such", "--channels", "top-2"]);
    assert!(stderr(&o).contains("has no layer `no.such`") && stderr(&o).contains("dreamvid layers"), "{}", stderr(&o));
    let (o, _) = atlas("z.png", &["--channels", "top-2"]);
    assert_eq!(o.status.code(), Some(2), "--channels needs --layer: {}", stderr(&o));
    let (o, _) = atlas("w.png", &["--layer", "20", "--channels", "top"]);
    assert!(stderr(&o).contains("N..M"), "{}", stderr(&o));
}
