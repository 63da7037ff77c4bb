//! Weights are found in the documented order, published files are checked by sha256, and
//! `dreamvid weights` lists every place. Search roots are passed explicitly (no process-wide
//! environment changes, so tests can run in parallel); the binary gets its own environment.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use dreamvid::models::discovery::{
    self, candidates, locate, sha256_hex, survey, KnownFile, Root, RootKind, SearchRoots, Source, Verification,
};
use dreamvid::models::{Format, Layout, ModelKind, WeightsError};
use dreamvid::nn::Network;

/// Roots as the environment would give them, all under `base`.
fn roots(base: &Path) -> SearchRoots {
    let root = |kind, label: &str, dir: &str| Root { kind, label: label.into(), dir: Some(base.join(dir)) };
    SearchRoots {
        roots: vec![
            root(RootKind::Weights, "$DREAMVID_WEIGHTS_DIR", "env"),
            root(RootKind::Weights, "./weights", "cwd/weights"),
            root(RootKind::Weights, "repository weights/", "repo/weights"),
            root(RootKind::TorchHub, "$TORCH_HOME/hub/checkpoints", "torch/hub/checkpoints"),
            root(RootKind::HuggingFace, "$HF_HUB_CACHE", "hf"),
        ],
    }
}

/// The fixture VGG19 written at `path` (safetensors; a zip checkpoint when it ends in .pth).
fn put_fixture(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if path.extension().is_some_and(|e| e == "pth") {
        let src = path.with_extension("src.safetensors");
        dreamvid::fixture::write_tiny_vgg19(&src, common::FIXTURE_SEED).unwrap();
        let o = Command::new("python3")
            .arg(common::repo().join("scripts/write_pth.py"))
            .args([&src, path])
            .output()
            .expect("python3 must be installed: scripts/write_pth.py writes the test checkpoints");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::remove_file(src).unwrap();
    } else {
        dreamvid::fixture::write_tiny_vgg19(path, common::FIXTURE_SEED).unwrap();
    }
}

/// A Hugging Face cache entry of timm/vgg19.tv_in1k at revision `rev`, `refs/main` naming it:
/// the file stored as blobs/`blob` with the snapshot's model.safetensors linking to it.
fn put_hf_snapshot(hf: &Path, rev: &str, blob: Option<&str>) -> PathBuf {
    let repo = hf.join("models--timm--vgg19.tv_in1k");
    let file = repo.join("snapshots").join(rev).join("model.safetensors");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), rev).unwrap();
    match blob {
        Some(blob) => {
            let target = repo.join("blobs").join(blob);
            put_fixture(&target);
            std::os::unix::fs::symlink(Path::new("../../blobs").join(blob), &file).unwrap();
        }
        None => put_fixture(&file),
    }
    file
}

#[test]
fn weights_are_found_in_the_documented_order() {
    let base = common::scratch("discovery-order");
    let roots = roots(&base);
    let vgg = ModelKind::Vgg19;

    let err = locate(vgg, &roots).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, WeightsError::Missing { .. }));
    for looked in ["env/vgg19.safetensors", "torch/hub/checkpoints/vgg19-dcbb9e9d.pth", "models--timm--vgg19.tv_in1k"] {
        assert!(text.contains(looked), "the error does not list {looked}: {text}");
    }

    // Each file found hides the ones after it.
    let hf = put_hf_snapshot(&base.join("hf"), "0123abcd", None);
    let found = locate(vgg, &roots).unwrap();
    assert_eq!((found.path, found.place.as_str()), (hf, "$HF_HUB_CACHE"));
    assert_eq!((found.format, found.verification), (Some(Format::Safetensors), Verification::Unchecked));

    let steps = [
        ("repo/weights/vgg19.safetensors", "repository weights/"),
        ("cwd/weights/vgg19.safetensors", "./weights"),
        ("env/vgg19.safetensors", "$DREAMVID_WEIGHTS_DIR"),
    ];
    // A torchvision file that is not the published one stops the search with an error.
    let torch = base.join("torch/hub/checkpoints/vgg19-dcbb9e9d.pth");
    put_fixture(&torch);
    let err = locate(vgg, &roots).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, WeightsError::Checksum { .. }), "{text}");
    assert!(
        text.contains(&torch.display().to_string()) && text.contains("dcbb9e9d") && text.contains("delete"),
        "{text}"
    );
    std::fs::remove_file(&torch).unwrap();
    for (file, place) in steps {
        put_fixture(&base.join(file));
        let found = locate(vgg, &roots).unwrap();
        assert_eq!((found.path, found.place.as_str()), (base.join(file), place));
    }

    // The listing has every place, in order, and what is there.
    let listed = survey(vgg, &roots);
    let paths: Vec<PathBuf> = listed.iter().map(|(c, _)| c.path.clone()).collect();
    let expected: Vec<PathBuf> = [
        "env/vgg19.safetensors",
        "env/vgg19-dcbb9e9d.pth",
        "cwd/weights/vgg19.safetensors",
        "cwd/weights/vgg19-dcbb9e9d.pth",
        "repo/weights/vgg19.safetensors",
        "repo/weights/vgg19-dcbb9e9d.pth",
        "torch/hub/checkpoints/vgg19-dcbb9e9d.pth",
        "hf/models--timm--vgg19.tv_in1k/snapshots/0123abcd/model.safetensors",
    ]
    .iter()
    .map(|p| base.join(p))
    .collect();
    assert_eq!(paths, expected);
    let found: Vec<bool> = listed.iter().map(|(_, f)| f.is_some()).collect();
    assert_eq!(found, [true, false, true, false, true, false, false, true]);
}

#[test]
fn torch_hub_names_are_checked_against_their_sha256_prefix() {
    let base = common::scratch("discovery-torch-hub");
    let roots = roots(&base);
    let probe = base.join("probe.pth");
    put_fixture(&probe);
    let prefix = &sha256_hex(&probe).unwrap()[..8];
    // A table entry such as torchvision's, for a file whose digits are right...
    let name: &'static str = format!("fixture-{prefix}.pth").leak();
    let known = [KnownFile { model: ModelKind::Vgg19, source: Source::TorchHub(name) }];
    let good = base.join("torch/hub/checkpoints").join(name);
    std::fs::create_dir_all(good.parent().unwrap()).unwrap();
    std::fs::copy(&probe, &good).unwrap();
    let found = candidates(ModelKind::Vgg19, &roots, &known).into_iter().find(|c| c.path == good).unwrap();
    assert_eq!(discovery::verify(&found.path, &found.check).unwrap(), Verification::Verified);
    // ...and for one whose content is another file.
    std::fs::write(&good, b"not the file").unwrap();
    assert!(matches!(discovery::verify(&found.path, &found.check).unwrap(), Verification::Mismatch(_)));

    // --weights with a published name is checked too; other names are not.
    let err = discovery::given(ModelKind::Vgg19, &{
        let p = base.join("elsewhere/vgg19-dcbb9e9d.pth");
        put_fixture(&p);
        p
    })
    .unwrap_err();
    assert!(matches!(err, WeightsError::Checksum { .. }), "{err}");
    let mine = discovery::given(ModelKind::Vgg19, &probe).unwrap();
    assert_eq!((mine.format, mine.verification), (Some(Format::Pth(Layout::Zip)), Verification::Unchecked));
}

#[test]
fn hugging_face_files_are_checked_against_their_blob_name() {
    let base = common::scratch("discovery-hf");
    let roots = roots(&base);
    let probe = base.join("probe.safetensors");
    put_fixture(&probe);
    let sha = sha256_hex(&probe).unwrap();
    let file = put_hf_snapshot(&base.join("hf"), "main-rev", Some(&sha));
    // An older snapshot, not the one refs/main names, comes after it.
    let old = base.join("hf/models--timm--vgg19.tv_in1k/snapshots/0000old/model.safetensors");
    put_fixture(&old);
    let found = locate(ModelKind::Vgg19, &roots).unwrap();
    assert_eq!((found.path, found.verification), (file.clone(), Verification::Verified));
    let order: Vec<PathBuf> = candidates(ModelKind::Vgg19, &roots, &discovery::KNOWN_FILES)
        .into_iter()
        .filter(|c| c.place == "$HF_HUB_CACHE")
        .map(|c| c.path)
        .collect();
    assert_eq!(order, [file.clone(), old]);

    // A blob whose name is not its content's sha256 is damaged.
    let bad = "f".repeat(64);
    let hf = base.join("hf2");
    let roots = SearchRoots {
        roots: vec![Root { kind: RootKind::HuggingFace, label: "$HF_HUB_CACHE".into(), dir: Some(hf.clone()) }],
    };
    put_hf_snapshot(&hf, "rev", Some(&bad));
    let err = locate(ModelKind::Vgg19, &roots).unwrap_err();
    assert!(matches!(err, WeightsError::Checksum { .. }) && err.to_string().contains("timm/vgg19.tv_in1k"), "{err}");
}

#[test]
fn a_folder_reached_twice_is_looked_in_once() {
    let base = common::scratch("discovery-twice");
    let same = |label: &str| Root { kind: RootKind::Weights, label: label.into(), dir: Some(base.join("weights")) };
    let roots = SearchRoots { roots: vec![same("./weights"), same("repository weights/")] };
    std::fs::create_dir_all(base.join("weights")).unwrap();
    let listed = candidates(ModelKind::EfficientNetLite0, &roots, &discovery::KNOWN_FILES);
    let names: Vec<_> = listed.iter().map(|c| (c.place.as_str(), c.path.file_name().unwrap().to_owned())).collect();
    assert_eq!(
        names,
        [
            ("./weights", "efficientnet_lite0.safetensors".into()),
            ("./weights", "efficientnet-lite0-57934424.pth".into())
        ]
    );
}

/// The dreamvid binary in `dir` with an environment naming only folders under `dir`.
fn dreamvid_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dreamvid"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("DREAMVID_WEIGHTS_DIR", dir.join("env"))
        .env("TORCH_HOME", dir.join("torch"))
        .env("HF_HUB_CACHE", dir.join("hf"))
        .env_remove("XDG_CACHE_HOME")
        .env_remove("HF_HOME")
        .env("DREAMVID_OFFLINE", "1")
        .output()
        .unwrap()
}

#[test]
fn weights_command_lists_every_place_and_what_is_there() {
    let dir = common::scratch("cli-weights");
    put_fixture(&dir.join("env/vgg19.safetensors"));
    put_fixture(&dir.join("torch/hub/checkpoints/vgg19-dcbb9e9d.pth"));
    let o = dreamvid_in(&dir, &["weights"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for expected in [
        "$DREAMVID_WEIGHTS_DIR",
        "./weights",
        "repository weights/",
        "$TORCH_HOME/hub/checkpoints",
        "$HF_HUB_CACHE",
        "efficientnet-lite0",
        "vgg19",
        "safetensors, no published checksum",
        "PyTorch checkpoint, zip layout, sha256 MISMATCH",
        "not there",
        "models--timm--vgg19.tv_in1k",
    ] {
        assert!(out.contains(expected), "`{expected}` is not in:\n{out}");
    }
    let uses = format!("uses {}", dir.join("env/vgg19.safetensors").display());
    assert!(out.contains(&uses), "`{uses}` is not in:\n{out}");

    // Without the file in the weights folder, the damaged torchvision file is an error.
    std::fs::remove_file(dir.join("env/vgg19.safetensors")).unwrap();
    let o = dreamvid_in(&dir, &["layers", "--model", "vgg19"]);
    assert_eq!(o.status.code(), Some(1));
    let err = common::stderr(&o);
    assert!(err.contains("vgg19-dcbb9e9d.pth") && err.contains("sha256") && err.contains("fix:"), "{err}");
}

#[test]
fn layers_are_listed_without_weights_and_a_dream_says_they_are_missing() {
    let dir = common::scratch("cli-layers-architecture");
    for (model, layer, shape) in
        [("googlenet", "inception4c", "[512, 14, 14]"), ("vgg19", "features.30", "[512, 14, 14]")]
    {
        let o = dreamvid_in(&dir, &["layers", "--model", model]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        let line = out.lines().find(|l| l.starts_with(layer)).unwrap_or_else(|| panic!("no {layer} in:\n{out}"));
        assert!(line.ends_with(shape), "{line}");
        assert!(!common::stderr(&o).contains("fix:"), "{}", common::stderr(&o));
    }
    let picture = dir.join("in.png");
    image::RgbImage::new(32, 32).save(&picture).unwrap();
    let o = dreamvid_in(&dir, &["image", picture.to_str().unwrap(), "-o", "out.png", "--model", "googlenet"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stderr(&o).contains("googlenet-1378be20.pth"), "{}", common::stderr(&o));
}

#[test]
fn the_architecture_has_the_real_models_layers_and_shapes() {
    let real = [
        (ModelKind::Vgg19, common::vgg_with_widths(&dreamvid::fixture::VGG19_WIDTHS)),
        (ModelKind::GoogLeNet, common::googlenet_with_widths(&dreamvid::fixture::googlenet::GOOGLENET_WIDTHS)),
    ];
    for (kind, net) in real {
        let arch = kind.architecture(&Device::Cpu).unwrap();
        let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
        let describe = |n: &Network| -> Vec<(String, String)> {
            n.taps().iter().map(|t| (t.name.clone(), t.kind.clone())).collect()
        };
        assert_eq!(describe(&arch), describe(&net), "{kind:?}");
        assert_eq!(arch.tap_shapes(&x).unwrap(), net.tap_shapes(&x).unwrap(), "{kind:?}");
    }
}

#[test]
#[ignore = "needs the real EfficientNet-Lite0 weights (scripts/fetch-weights); scripts/test runs it"]
fn the_lite0_architecture_has_the_real_layers_and_shapes() {
    let net = ModelKind::EfficientNetLite0.load(&common::lite0_weights(), &Device::Cpu).unwrap();
    let arch = ModelKind::EfficientNetLite0.architecture(&Device::Cpu).unwrap();
    let x = Tensor::zeros((1, 3, 96, 96), DType::F32, &Device::Cpu).unwrap();
    let kinds = |n: &Network| n.taps().iter().map(|t| t.kind.clone()).collect::<Vec<_>>();
    assert_eq!(kinds(&arch), kinds(&net));
    assert_eq!(arch.tap_shapes(&x).unwrap(), net.tap_shapes(&x).unwrap());
}

#[test]
fn the_log_says_which_file_is_used() {
    let dir = common::scratch("cli-weights-log");
    put_fixture(&dir.join("env/vgg19.pth"));
    std::fs::rename(dir.join("env/vgg19.pth"), dir.join("env/vgg19.safetensors")).unwrap();
    let o = dreamvid_in(&dir, &["layers", "--model", "vgg19", "--size", "32"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let err = common::stderr(&o);
    let used = format!("weights: {} (PyTorch checkpoint, zip layout", dir.join("env/vgg19.safetensors").display());
    assert!(err.contains(&used) && err.contains("from $DREAMVID_WEIGHTS_DIR"), "{err}");
}
