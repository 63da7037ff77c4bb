//! The library API a front end stands on: a model opened once dreams pictures with any
//! settings, reports every step, and stops when cancelled.

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use dreamvid::cancel::{Cancel, Cancelled};
use dreamvid::device::Precision;
use dreamvid::dream;
use dreamvid::fixture::test_image;
use dreamvid::models::ModelKind;
use dreamvid::session::Session;
use dreamvid::settings::Settings;

fn open(dir: &Path) -> Session {
    let weights = common::fixture_weights(dir);
    Session::open(ModelKind::Vgg19, Path::new(&weights), Device::Cpu, Precision::F32).unwrap()
}

fn settings(layer: &str) -> Settings {
    Settings { layers: vec![(layer.into(), 1.0)], octaves: 2, iterations: 3, lr: 0.05, ..Settings::default() }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn one_session_dreams_with_any_settings() {
    let dir = common::scratch("session-looks");
    let session = open(&dir);
    let image = test_image(40, 56, &Device::Cpu).unwrap();
    let look = session.look(&settings("features.20")).unwrap();
    let mut steps = 0;
    let a = session.dream_image(&image, &look, &Cancel::new(), &mut |_| steps += 1).unwrap();
    assert_eq!(steps, dream::total_steps(40, 56, &look.params), "every step is reported");
    let again = session.dream_image(&image, &look, &Cancel::new(), &mut |_| {}).unwrap();
    assert_eq!(max_diff(&a, &again), 0.0, "the same settings dream the same picture");
    let deeper = session.look(&settings("30")).unwrap();
    let b = session.dream_image(&image, &deeper, &Cancel::new(), &mut |_| {}).unwrap();
    assert!(max_diff(&a, &image) > 0.01 && max_diff(&b, &image) > 0.01, "both dreamed");
    assert!(max_diff(&a, &b) > 0.01, "another layer dreams another picture");
    let missing = session.look(&settings("features.99")).err().expect("no such layer");
    assert!(format!("{missing:#}").contains("features.99"), "{missing:#}");
}

#[test]
fn a_black_mask_keeps_the_picture_and_a_cancel_stops_the_dream() {
    let dir = common::scratch("session-cancel");
    let session = open(&dir);
    let image = test_image(40, 56, &Device::Cpu).unwrap();
    let black = dir.join("black.png");
    image::RgbImage::new(56, 40).save(&black).unwrap();
    let masked = session.look(&Settings { mask: Some(black), ..settings("features.20") }).unwrap();
    let kept = session.dream_image(&image, &masked, &Cancel::new(), &mut |_| panic!("nothing to dream")).unwrap();
    assert_eq!(max_diff(&kept, &image), 0.0);

    let look = session.look(&settings("features.20")).unwrap();
    let cancel = Cancel::new();
    let mut steps = 0;
    let err = session
        .dream_image(&image, &look, &cancel, &mut |_| {
            steps += 1;
            if steps == 2 {
                cancel.cancel();
            }
        })
        .unwrap_err();
    assert!(err.is::<Cancelled>(), "{err:#}");
    assert_eq!(steps, 2, "no step after the cancel");
    let err = session.dream_image(&image, &look, &cancel, &mut |_| panic!("cancelled before")).unwrap_err();
    assert!(err.is::<Cancelled>(), "{err:#}");
}
