//! PyTorch checkpoints load exactly like the safetensors they were written from, in every
//! layout torch writes (scripts/write_pth.py writes them as torch.save does); damaged and
//! unusable ones give errors that name the file and the fix, and never panic.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use dreamvid::dream::Rng;
use dreamvid::fixture::{test_image, vgg19_tensors, write_tiny_vgg19, FIXTURE_VGG_WIDTHS};
use dreamvid::models::{Format, Layout, ModelKind, WeightFile, WeightsError};
use dreamvid::nn::Network;

/// Runs scripts/write_pth.py on `src`, writing `out` with `flags`.
fn write_pth(src: &Path, out: &Path, flags: &[&str]) {
    let o = Command::new("python3")
        .arg(common::repo().join("scripts/write_pth.py"))
        .args([src, out])
        .args(flags)
        .output()
        .expect("python3 must be installed: scripts/write_pth.py writes the test checkpoints");
    assert!(o.status.success(), "write_pth.py {flags:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// The bits of the last layer's activations (which every weight feeds) on a test image.
fn last_activations(net: &Network) -> Vec<u32> {
    let x = test_image(40, 48, &Device::Cpu).unwrap();
    let a = net.activations(&x, net.taps().len() - 1).unwrap();
    a.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
}

fn fixture_safetensors(dir: &Path) -> PathBuf {
    let path = dir.join("vgg19.safetensors");
    write_tiny_vgg19(&path, common::FIXTURE_SEED).unwrap();
    path
}

fn load_err(path: &Path) -> (WeightsError, String) {
    let err = ModelKind::Vgg19.load(path, &Device::Cpu).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&path.display().to_string()), "error does not name the file: {text}");
    assert!(text.contains("fix:"), "error gives no fix: {text}");
    (err.downcast::<WeightsError>().unwrap(), text)
}

#[test]
fn every_layout_loads_bit_identically_to_safetensors() {
    let dir = common::scratch("pth-layouts");
    let src = fixture_safetensors(&dir);
    let expected = last_activations(&ModelKind::Vgg19.load(&src, &Device::Cpu).unwrap());
    let zip = Format::Pth(Layout::Zip);
    let legacy = Format::Pth(Layout::Legacy);
    let cases: [(&str, &[&str], Format); 13] = [
        ("zip.pth", &[], zip),
        ("torch1.pth", &["--torch-layout", "1.x", "--archive-name", "archive"], zip),
        ("parameters.pth", &["--rebuild", "parameter"], zip),
        ("channels-last.pth", &["--channels-last"], zip),
        ("shared.pth", &["--shared-storage"], zip),
        ("wrapped.pth", &["--wrap", "state_dict"], zip),
        ("data-parallel.pth", &["--rename", "features.=module.features."], zip),
        // The format comes from the content, not the name.
        ("zip-named.safetensors", &[], zip),
        ("legacy.pth", &["--legacy"], legacy),
        ("legacy-v1", &["--legacy", "--rebuild", "v1"], legacy),
        ("legacy-v0.bin", &["--legacy", "--rebuild", "v0"], legacy),
        ("legacy-strided.pth", &["--legacy", "--channels-last", "--shared-storage"], legacy),
        ("legacy-wrapped.pt", &["--legacy", "--wrap", "model"], legacy),
    ];
    for (name, flags, format) in cases {
        let path = dir.join(name);
        write_pth(&src, &path, flags);
        let file = WeightFile::open(&path, "vgg19", "", &Device::Cpu).unwrap();
        assert_eq!(file.format(), format, "{name}");
        let net = ModelKind::Vgg19.load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(last_activations(&net) == expected, "{name} ({flags:?}) differs from the safetensors");
    }
}

#[test]
fn half_precision_checkpoint_loads_like_half_precision_safetensors() {
    let dir = common::scratch("pth-f16");
    let src = dir.join("f16.safetensors");
    let tensors: HashMap<String, Tensor> = vgg19_tensors(&FIXTURE_VGG_WIDTHS, common::FIXTURE_SEED)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::F16).unwrap()))
        .collect();
    candle_core::safetensors::save(&tensors, &src).unwrap();
    let expected = last_activations(&ModelKind::Vgg19.load(&src, &Device::Cpu).unwrap());
    for flags in [&[][..], &["--legacy", "--channels-last"]] {
        let path = dir.join("f16.pth");
        write_pth(&src, &path, flags);
        let net = ModelKind::Vgg19.load(&path, &Device::Cpu).unwrap();
        assert!(last_activations(&net) == expected, "{flags:?}");
    }
}

#[test]
fn truncated_checkpoints_are_clear_errors() {
    let dir = common::scratch("pth-truncated");
    let src = fixture_safetensors(&dir);
    for (name, flags) in [("full.pth", &[][..]), ("full-legacy.pth", &["--legacy"])] {
        let full = std::fs::read({
            let path = dir.join(name);
            write_pth(&src, &path, flags);
            path
        })
        .unwrap();
        let cut = dir.join(format!("cut-{name}"));
        let mut ends: Vec<usize> = (0..40).map(|i| i * full.len() / 40).collect();
        ends.extend([1, 8, 20, 100, full.len() - 1]);
        for end in ends {
            std::fs::write(&cut, &full[..end]).unwrap();
            let (err, text) = load_err(&cut);
            assert!(matches!(err, WeightsError::Unreadable { .. }), "{name} cut at {end}: {text}");
        }
    }
    // Where a legacy file ends is said in words.
    let legacy = std::fs::read(dir.join("full-legacy.pth")).unwrap();
    std::fs::write(dir.join("short.pth"), &legacy[..legacy.len() - 10]).unwrap();
    let (_, text) = load_err(&dir.join("short.pth"));
    assert!(text.contains("ends inside storage"), "{text}");
    std::fs::write(dir.join("short.pth"), &legacy[..300]).unwrap();
    let (_, text) = load_err(&dir.join("short.pth"));
    assert!(text.contains("ends inside the state-dict pickle"), "{text}");
}

#[test]
fn corrupt_checkpoints_never_panic() {
    let dir = common::scratch("pth-corrupt");
    let src = fixture_safetensors(&dir);
    let mut rng = Rng::new(7);
    let (mut failed, mut total) = (0, 0);
    for (name, flags) in [("good.pth", &[][..]), ("good-legacy.pth", &["--legacy", "--channels-last"])] {
        let path = dir.join(name);
        write_pth(&src, &path, flags);
        let good = std::fs::read(&path).unwrap();
        // The pickles and headers are at the start (legacy) or the start and end (zip): bias
        // the damage there, where it matters most.
        let pickle_end = good.len().min(4096);
        let bad = dir.join("bad.pth");
        for case in 0..300 {
            let mut bytes = good.clone();
            for _ in 0..1 + case % 3 {
                let at = match case % 4 {
                    0 => (rng.next_u64() as usize) % bytes.len(),
                    1 => bytes.len() - 1 - (rng.next_u64() as usize) % pickle_end,
                    _ => (rng.next_u64() as usize) % pickle_end,
                };
                bytes[at] = rng.next_u64() as u8;
            }
            std::fs::write(&bad, &bytes).unwrap();
            total += 1;
            if let Err(e) = ModelKind::Vgg19.load(&bad, &Device::Cpu) {
                failed += 1;
                let text = format!("{e:#}");
                assert!(text.contains("bad.pth") && text.contains("fix:"), "{name} case {case}: {text}");
            }
        }
    }
    // Most damage is noticed (the rest changes weights to other finite values).
    assert!(failed > total / 3, "only {failed} of {total} damaged files were refused");
}

/// A legacy checkpoint whose state-dict pickle is `state`, with no storages.
fn legacy_with_state(path: &Path, state: &[u8]) {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."); // magic number
    bytes.extend_from_slice(b"\x80\x02M\xe9\x03."); // protocol version 1001
    bytes.extend_from_slice(b"\x80\x02}X\x0d\x00\x00\x00little_endian\x88s."); // sys info
    bytes.extend_from_slice(state);
    bytes.extend_from_slice(b"\x80\x02]."); // no storages
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_pickled_model_is_not_a_state_dict() {
    let dir = common::scratch("pth-model");
    let path = dir.join("model.pth");
    // torch.save(model): a torchvision.models.vgg.VGG object (NEWOBJ, then BUILD of its state).
    legacy_with_state(&path, b"\x80\x02ctorchvision.models.vgg\nVGG\nq\x00)\x81}b.");
    let (err, text) = load_err(&path);
    assert!(matches!(err, WeightsError::Unreadable { .. }));
    assert!(text.contains("torchvision.models.vgg.VGG") && text.contains("state_dict()"), "{text}");
}

#[test]
fn unsupported_tensor_kinds_are_named() {
    let dir = common::scratch("pth-qtensor");
    let path = dir.join("quantized.pth");
    legacy_with_state(&path, b"\x80\x02}X\x11\x00\x00\x00features.0.weightctorch._utils\n_rebuild_qtensor\n)Rs.");
    let (err, text) = load_err(&path);
    assert!(matches!(err, WeightsError::Unreadable { .. }));
    assert!(text.contains("features.0.weight") && text.contains("_rebuild_qtensor"), "{text}");
}

/// The fixture with `change` applied, written as a zip and a legacy checkpoint; the error
/// each gives when loaded.
fn errors_after(name: &str, change: impl Fn(&mut HashMap<String, Tensor>)) -> Vec<(WeightsError, String)> {
    let dir = common::scratch(name);
    let mut tensors = vgg19_tensors(&FIXTURE_VGG_WIDTHS, 1).unwrap();
    change(&mut tensors);
    let src = dir.join("changed.safetensors");
    candle_core::safetensors::save(&tensors, &src).unwrap();
    [("zip.pth", &[][..]), ("legacy.pth", &["--legacy"])]
        .into_iter()
        .map(|(file, flags)| {
            let path = dir.join(file);
            write_pth(&src, &path, flags);
            load_err(&path)
        })
        .collect()
}

#[test]
fn checkpoint_tensors_are_checked_like_safetensors_ones() {
    let nan = errors_after("pth-nan", |t| {
        let w = t["features.5.weight"].clone();
        let mut v = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v[3] = f32::NAN;
        t.insert("features.5.weight".into(), Tensor::from_vec(v, w.shape(), &Device::Cpu).unwrap());
    });
    for (err, text) in nan {
        assert!(matches!(err, WeightsError::NotFinite { .. }) && text.contains("features.5.weight"), "{text}");
    }
    let int = errors_after("pth-int", |t| {
        t.insert("features.0.bias".into(), Tensor::zeros(4, DType::I64, &Device::Cpu).unwrap());
    });
    for (err, text) in int {
        assert!(matches!(err, WeightsError::WrongDtype { .. }) && text.contains("LongStorage"), "{text}");
    }
    let empty = errors_after("pth-empty", |t| {
        t.insert("features.0.bias".into(), Tensor::zeros(0, DType::F32, &Device::Cpu).unwrap());
    });
    for (err, text) in empty {
        assert!(matches!(err, WeightsError::WrongShape { .. }) && text.contains("[0]"), "{text}");
    }
    let missing = errors_after("pth-missing", |t| {
        t.remove("features.10.weight");
    });
    for (err, text) in missing {
        assert!(matches!(err, WeightsError::MissingTensor { .. }) && text.contains("features.10.weight"), "{text}");
    }
}
