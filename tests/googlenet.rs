//! GoogLeNet against torchvision's definition: layer list and output sizes (ceil-mode pools),
//! input transform, folded BatchNorm, the Inception block's branches and their order, and the
//! tensors the loader must not need.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use dreamvid::fixture::googlenet::{googlenet_tensors, FIXTURE_GOOGLENET_WIDTHS, GOOGLENET_WIDTHS};
use dreamvid::fixture::test_image;
use dreamvid::models::ModelKind;
use dreamvid::nn::{Network, Objective};

/// Input sizes of the reference table, `(h, w)`.
const SIZES: [(usize, usize); 6] = [(224, 224), (512, 512), (360, 640), (227, 227), (31, 31), (15, 15)];

/// `(h, w)` per entry of [`SIZES`].
type Sizes = [(usize, usize); 6];

/// torchvision's output sizes (channels, then `(h, w)` per entry of [`SIZES`]) of every layer,
/// from its forward pass: ceil-mode pools keep partial windows (360 -> 45 after maxpool2,
/// where floor mode gives 44; 227 -> 57 after maxpool1; 7 -> 4 in maxpool4).
fn torchvision_shapes() -> Vec<(&'static str, usize, Sizes)> {
    let conv1 = [(112, 112), (256, 256), (180, 320), (114, 114), (16, 16), (8, 8)];
    let pool1 = [(56, 56), (128, 128), (90, 160), (57, 57), (8, 8), (4, 4)];
    let pool2 = [(28, 28), (64, 64), (45, 80), (28, 28), (4, 4), (2, 2)];
    let pool3 = [(14, 14), (32, 32), (22, 40), (14, 14), (2, 2), (1, 1)];
    let pool4 = [(7, 7), (16, 16), (11, 20), (7, 7), (1, 1), (1, 1)];
    vec![
        ("conv1", 64, conv1),
        ("maxpool1", 64, pool1),
        ("conv2", 64, pool1),
        ("conv3", 192, pool1),
        ("maxpool2", 192, pool2),
        ("inception3a", 256, pool2),
        ("inception3b", 480, pool2),
        ("maxpool3", 480, pool3),
        ("inception4a", 512, pool3),
        ("inception4b", 512, pool3),
        ("inception4c", 512, pool3),
        ("inception4d", 528, pool3),
        ("inception4e", 832, pool3),
        ("maxpool4", 832, pool4),
        ("inception5a", 832, pool4),
        ("inception5b", 1024, pool4),
    ]
}

#[test]
fn layers_and_output_sizes_match_torchvision() {
    let net = common::googlenet_with_widths(&GOOGLENET_WIDTHS);
    let expected = torchvision_shapes();
    let names: Vec<&str> = net.taps().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, expected.iter().map(|(n, _, _)| *n).collect::<Vec<_>>());
    assert_eq!(ModelKind::GoogLeNet.layer_names(), names, "the names presets are checked against");
    assert_eq!(ModelKind::GoogLeNet.resolve_layer(ModelKind::GoogLeNet.default_layer()).unwrap(), "inception4c");
    for (i, &(h, w)) in SIZES.iter().enumerate() {
        let x = Tensor::zeros((1, 3, h, w), DType::F32, &Device::Cpu).unwrap();
        let shapes = net.tap_shapes(&x).unwrap();
        for ((name, channels, sizes), shape) in expected.iter().zip(shapes) {
            let (eh, ew) = sizes[i];
            assert_eq!(shape, vec![1, *channels, eh, ew], "{name} for a {h}x{w} input");
        }
    }
    let kinds: HashMap<&str, &str> = net.taps().iter().map(|t| (t.name.as_str(), t.kind.as_str())).collect();
    assert_eq!(kinds["conv1"], "conv 7x7/2 3->64");
    assert_eq!(kinds["maxpool1"], "maxpool 3x3/2 ceil");
    assert_eq!(kinds["maxpool4"], "maxpool 2x2/2 ceil");
    assert_eq!(kinds["inception4c"], "inception 512->512");
}

#[test]
fn smaller_inputs_than_one_pool_window_are_an_error_not_a_panic() {
    let net = common::fixture_googlenet();
    let x = Tensor::zeros((1, 3, 14, 14), DType::F32, &Device::Cpu).unwrap();
    let err = net.tap_shapes(&x).unwrap_err().to_string();
    assert!(err.contains("maxpool 3x3/2 ceil") && err.contains("1x1 input"), "{err}");
}

/// The fixture's tensors in `F64`.
fn fixture_tensors() -> HashMap<String, Tensor> {
    let tensors = googlenet_tensors(&FIXTURE_GOOGLENET_WIDTHS, common::FIXTURE_SEED).unwrap();
    tensors.into_iter().map(|(k, t)| (k, t.to_dtype(DType::F64).unwrap())).collect()
}

/// torchvision's `BasicConv2d` at `key`, in eval mode: convolution without bias, BatchNorm
/// with eps 1e-3 from the running statistics, ReLU.
fn basic_conv(t: &HashMap<String, Tensor>, key: &str, x: &Tensor, stride: usize) -> Tensor {
    let weight = &t[&format!("{key}.conv.weight")];
    let y = x.conv2d(weight, weight.dim(3).unwrap() / 2, stride, 1, 1).unwrap();
    let bn = |field: &str| t[&format!("{key}.bn.{field}")].reshape((1, (), 1, 1)).unwrap();
    let normalised = y
        .broadcast_sub(&bn("running_mean"))
        .unwrap()
        .broadcast_div(&(bn("running_var") + 1e-3).unwrap().sqrt().unwrap());
    normalised.unwrap().broadcast_mul(&bn("weight")).unwrap().broadcast_add(&bn("bias")).unwrap().relu().unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// [`max_diff`] relative to the largest magnitude of `b`. The network folds BatchNorm into the
/// convolutions in `F32` (as the weights load), the references compute in `F64`.
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    max_diff(a, b) / max_diff(b, &b.zeros_like().unwrap()).max(1e-12)
}

#[test]
fn conv1_is_a_batchnorm_relu_7x7_stride_2_convolution_of_2x_minus_1() {
    // torchvision's transform_input on ImageNet-normalised input is 2x - 1 for x in [0, 1].
    let t = fixture_tensors();
    let net = common::fixture_googlenet().to_dtype(DType::F64).unwrap();
    let x = test_image(37, 30, &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
    let expected = basic_conv(&t, "conv1", &((&x * 2.0).unwrap() - 1.0).unwrap(), 2);
    let got = net.activations(&x, net.find_tap("conv1").unwrap()).unwrap();
    assert_eq!(got.dims(), &[1, 4, 19, 15]);
    assert!(rel_diff(&got, &expected) < 1e-6, "differs by {}", rel_diff(&got, &expected));
}

/// torchvision's `Inception` block at `key` on `x` (post-ReLU, so a max-pool's padding can be
/// zeros: it never beats a non-negative value).
fn inception(t: &HashMap<String, Tensor>, key: &str, x: &Tensor) -> Tensor {
    let conv = |sub: &str, x: &Tensor| basic_conv(t, &format!("{key}.{sub}"), x, 1);
    let pooled = x.pad_with_zeros(2, 1, 1).unwrap().pad_with_zeros(3, 1, 1).unwrap().max_pool2d_with_stride(3, 1);
    let branches = [
        conv("branch1", x),
        conv("branch2.1", &conv("branch2.0", x)),
        conv("branch3.1", &conv("branch3.0", x)),
        conv("branch4.1", &pooled.unwrap()),
    ];
    Tensor::cat(&branches, 1).unwrap()
}

#[test]
fn inception_blocks_concatenate_their_four_branches_in_torchvision_order() {
    let t = fixture_tensors();
    let net = common::fixture_googlenet().to_dtype(DType::F64).unwrap();
    let x = test_image(61, 54, &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
    let tap = |name: &str| net.activations(&x, net.find_tap(name).unwrap()).unwrap();
    for (input, block) in [("maxpool2", "inception3a"), ("inception3a", "inception3b"), ("maxpool4", "inception5a")] {
        let expected = inception(&t, block, &tap(input));
        let got = tap(block);
        assert_eq!(got.dims(), expected.dims(), "{block}");
        assert!(rel_diff(&got, &expected) < 1e-6, "{block} differs by {}", rel_diff(&got, &expected));
    }
}

/// Objective and gradient of `net` on the test picture at `inception4c`.
fn dream_gradient(net: &Network) -> (f32, Tensor) {
    let x = test_image(64, 48, &Device::Cpu).unwrap();
    net.objective_gradient(&x, &Objective::layer(net.find_tap("inception4c").unwrap())).unwrap()
}

#[test]
fn auxiliary_heads_classifier_and_batch_counters_are_never_needed() {
    let full = googlenet_tensors(&FIXTURE_GOOGLENET_WIDTHS, common::FIXTURE_SEED).unwrap();
    let unused = |k: &str| k.starts_with("aux1.") || k.starts_with("fc.") || k.ends_with(".num_batches_tracked");
    assert!(full.keys().filter(|k| unused(k)).count() > 57, "the fixture holds them, like torchvision's file");
    let trimmed: HashMap<String, Tensor> =
        full.iter().filter(|(k, _)| !unused(k)).map(|(k, t)| (k.clone(), t.clone())).collect();
    let dir = common::scratch("googlenet-trimmed");
    let path = dir.join("googlenet.safetensors");
    candle_core::safetensors::save(&trimmed, &path).unwrap();
    let net = ModelKind::GoogLeNet.load(&path, &Device::Cpu).unwrap();
    let (value, grad) = dream_gradient(&net);
    let (full_value, full_grad) = dream_gradient(&common::fixture_googlenet());
    assert_eq!(value, full_value);
    assert_eq!(max_diff(&grad, &full_grad), 0.0);
    std::fs::remove_dir_all(&dir).unwrap();
}
