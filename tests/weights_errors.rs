//! Bad weights files give errors that name the file, the tensor and the fix.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use dreamvid::fixture::vgg19_tensors;
use dreamvid::models::{ModelKind, WeightsError};

fn load_err(kind: ModelKind, tensors: &HashMap<String, Tensor>) -> (WeightsError, String) {
    let dir = common::scratch("weights-errors");
    let path = dir.join("w.safetensors");
    candle_core::safetensors::save(tensors, &path).unwrap();
    let err = kind.load(&path, &Device::Cpu).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&path.display().to_string()), "error does not name the file: {text}");
    assert!(text.contains("fix:"), "error gives no fix: {text}");
    (err.downcast::<WeightsError>().unwrap(), text)
}

fn fixture() -> HashMap<String, Tensor> {
    vgg19_tensors(&dreamvid::fixture::FIXTURE_VGG_WIDTHS, 1).unwrap()
}

#[test]
fn missing_file_says_how_to_get_it() {
    let err = ModelKind::Vgg19.load(std::path::Path::new("/nonexistent/vgg19.safetensors"), &Device::Cpu).unwrap_err();
    let text = format!("{err:#}");
    assert!(matches!(err.downcast_ref::<WeightsError>(), Some(WeightsError::Missing { .. })));
    assert!(text.contains("/nonexistent/vgg19.safetensors") && text.contains("scripts/fetch-weights vgg19"), "{text}");
}

#[test]
fn missing_tensor_is_named() {
    let mut t = fixture();
    t.remove("features.10.weight");
    let (err, text) = load_err(ModelKind::Vgg19, &t);
    assert!(matches!(err, WeightsError::MissingTensor { .. }));
    assert!(text.contains("features.10.weight"), "{text}");
}

#[test]
fn wrong_shape_is_named_with_expectation() {
    let mut t = fixture();
    // features.2 expects 4 input channels (features.0 has 4 outputs).
    t.insert("features.2.weight".into(), Tensor::zeros((4, 5, 3, 3), DType::F32, &Device::Cpu).unwrap());
    let (err, text) = load_err(ModelKind::Vgg19, &t);
    assert!(matches!(err, WeightsError::WrongShape { .. }));
    assert!(
        text.contains("features.2.weight") && text.contains("[4, 5, 3, 3]") && text.contains("[*, 4, 3, 3]"),
        "{text}"
    );
}

#[test]
fn wrong_dtype_is_named() {
    let mut t = fixture();
    t.insert("features.0.bias".into(), Tensor::zeros(4, DType::I64, &Device::Cpu).unwrap());
    let (err, text) = load_err(ModelKind::Vgg19, &t);
    assert!(matches!(err, WeightsError::WrongDtype { .. }));
    assert!(text.contains("features.0.bias") && text.contains("I64"), "{text}");
}

#[test]
fn vgg_file_is_not_mistaken_for_efficientnet() {
    let (err, text) = load_err(ModelKind::EfficientNetLite0, &fixture());
    assert!(matches!(err, WeightsError::MissingTensor { .. }));
    assert!(text.contains("_conv_stem.weight") && text.contains("efficientnet-lite0"), "{text}");
}

#[test]
fn garbage_file_is_reported_unreadable() {
    let dir = common::scratch("weights-garbage");
    let path = dir.join("w.safetensors");
    std::fs::write(&path, b"this is not a safetensors file").unwrap();
    let err = ModelKind::Vgg19.load(&path, &Device::Cpu).unwrap_err();
    assert!(matches!(err.downcast_ref::<WeightsError>(), Some(WeightsError::Unreadable { .. })));
    assert!(format!("{err:#}").contains(&path.display().to_string()));
}

#[test]
fn half_precision_weights_load_as_f32() {
    let t: HashMap<String, Tensor> = fixture().into_iter().map(|(k, v)| (k, v.to_dtype(DType::F16).unwrap())).collect();
    let dir = common::scratch("weights-f16");
    let path = dir.join("w.safetensors");
    candle_core::safetensors::save(&t, &path).unwrap();
    let net = ModelKind::Vgg19.load(&path, &Device::Cpu).unwrap();
    assert_eq!(net.taps().len(), 37);
}

fn googlenet_fixture() -> HashMap<String, Tensor> {
    dreamvid::fixture::googlenet::googlenet_tensors(&dreamvid::fixture::googlenet::FIXTURE_GOOGLENET_WIDTHS, 1).unwrap()
}

#[test]
fn googlenet_checks_every_convolution_shape_against_torchvision_layout() {
    // torchvision's "5x5" branch is a 3x3 convolution: a real 5x5 kernel there is refused.
    let mut t = googlenet_fixture();
    let key = "inception4c.branch3.1.conv.weight";
    let cin = t[key].dim(1).unwrap();
    t.insert(key.into(), Tensor::zeros((3, cin, 5, 5), DType::F32, &Device::Cpu).unwrap());
    let (err, text) = load_err(ModelKind::GoogLeNet, &t);
    assert!(matches!(err, WeightsError::WrongShape { .. }));
    assert!(text.contains(key) && text.contains(&format!("[*, {cin}, 3, 3]")), "{text}");
    let mut t = googlenet_fixture();
    t.remove("inception3b.branch4.1.bn.running_var");
    let (err, text) = load_err(ModelKind::GoogLeNet, &t);
    assert!(matches!(err, WeightsError::MissingTensor { .. }));
    assert!(text.contains("inception3b.branch4.1.bn.running_var"), "{text}");
}

#[test]
fn another_model_as_googlenet_says_where_the_weights_come_from() {
    let (err, text) = load_err(ModelKind::GoogLeNet, &fixture());
    assert!(matches!(err, WeightsError::MissingTensor { .. }));
    assert!(text.contains("conv1.conv.weight") && text.contains("googlenet-1378be20.pth"), "{text}");
}
