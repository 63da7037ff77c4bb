//! The hand-written input-gradient backward pass against finite differences and candle's
//! autograd (for the ops where candle's autograd is right).

mod common;

use candle_core::{DType, Device, Tensor, Var};
use dreamvid::dream::{tiles, Rng};
use dreamvid::models::ModelKind;
use dreamvid::nn::{Conv2d, DepthwiseConv2d, MaxPool, Network, Objective, Op, Padding, Tap};

fn random(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.unit() as f64).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

/// The objective computed from the activations themselves: the sum over its terms of the
/// weight times the L2 norm of the tap's activations (only the chosen channels).
fn objective(net: &Network, x: &Tensor, objective: &Objective) -> f64 {
    objective
        .terms
        .iter()
        .map(|&(tap, weight)| {
            let a = net.activations(x, tap).unwrap();
            let a = match &objective.channels {
                Some(c) => {
                    let kept: Vec<u32> = c.iter().filter(|&&i| i < a.dim(1).unwrap()).map(|&i| i as u32).collect();
                    a.index_select(&Tensor::new(kept.as_slice(), a.device()).unwrap(), 1).unwrap()
                }
                None => a,
            };
            weight as f64 * a.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f64>().unwrap()
        })
        .sum()
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a * b).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
}

/// Central differences along a random direction and along single pixels, in f64.
fn check_finite_differences(net: &Network, layer: &str, shape: &[usize], tolerance: f64) {
    check_objective_finite_differences(net, &Objective::layer(net.find_tap(layer).unwrap()), shape, tolerance);
}

/// [`check_finite_differences`] for any objective.
fn check_objective_finite_differences(net: &Network, target: &Objective, shape: &[usize], tolerance: f64) {
    let x = random(shape, 1, DType::F64);
    let (value, grad) = net.objective_gradient(&x, target).unwrap();
    assert!((value as f64 - objective(net, &x, target)).abs() < 1e-3 * value as f64);
    let eps = 1e-6;
    let mut directions = vec![(random(shape, 2, DType::F64) - 0.5).unwrap()];
    let n: usize = shape.iter().product();
    for pixel in [0, n / 3, n / 2 + 7, n - 1] {
        let mut e = vec![0f64; n];
        e[pixel] = 1.0;
        directions.push(Tensor::from_vec(e, shape, &Device::Cpu).unwrap());
    }
    for (i, v) in directions.iter().enumerate() {
        let plus = objective(net, &(&x + (v * eps).unwrap()).unwrap(), target);
        let minus = objective(net, &(&x - (v * eps).unwrap()).unwrap(), target);
        let numeric = (plus - minus) / (2.0 * eps);
        let analytic = dot(&grad, v);
        let scale = numeric.abs().max(analytic.abs()).max(1e-3);
        assert!(
            (numeric - analytic).abs() / scale < tolerance,
            "direction {i}: finite difference {numeric} vs backward {analytic}"
        );
    }
}

#[test]
fn weighted_layer_sets_and_channel_choices_match_finite_differences() {
    let net = common::fixture_vgg().to_dtype(DType::F64).unwrap();
    let tap = |name| net.find_tap(name).unwrap();
    let several =
        Objective { terms: vec![(tap("features.9"), 1.0), (tap("features.20"), 0.5)], channels: None, guide: None };
    check_objective_finite_differences(&net, &several, &[1, 3, 37, 42], 1e-5);
    // Channel 9 is past the fixture's 8 channels, so it selects nothing.
    let chosen = Objective { terms: vec![(tap("features.20"), 1.0)], channels: Some(vec![0, 2, 5, 9]), guide: None };
    check_objective_finite_differences(&net, &chosen, &[1, 3, 37, 42], 1e-5);
    let both = Objective { terms: several.terms.clone(), channels: Some(vec![1, 3]), guide: None };
    check_objective_finite_differences(&net, &both, &[1, 3, 40, 33], 1e-5);
    // The channel choice changes the gradient (it is not ignored).
    let x = random(&[1, 3, 37, 42], 1, DType::F64);
    let all = net.objective_gradient(&x, &Objective::layer(tap("features.20"))).unwrap().1;
    let some = net.objective_gradient(&x, &chosen).unwrap().1;
    assert!((all - some).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap() > 1e-6);
}

#[test]
fn vgg_gradient_matches_finite_differences_through_pools_and_odd_sizes() {
    let net = common::fixture_vgg().to_dtype(DType::F64).unwrap();
    // 37x42: the pools drop odd trailing rows and columns along the way.
    for layer in ["features.3", "features.9", "features.20", "features.30", "features.36"] {
        check_finite_differences(&net, layer, &[1, 3, 37, 42], 1e-5);
    }
}

#[test]
#[ignore = "needs the EfficientNet-Lite0 weights (scripts/fetch-weights); scripts/test runs it"]
fn efficientnet_gradient_matches_finite_differences() {
    let path = common::lite0_weights();
    let net = ModelKind::EfficientNetLite0.load(&path, &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
    for layer in ["stem", "blocks.3", "blocks.10", "head"] {
        check_finite_differences(&net, layer, &[1, 3, 45, 38], 1e-4);
    }
}

#[test]
#[ignore = "needs the EfficientNet-Lite0 weights (scripts/fetch-weights); scripts/test runs it"]
fn efficientnet_cpu_kernels_match_the_reference_path() {
    // F32 on the CPU fuses each depthwise convolution with its ReLU6; F64 is all candle ops.
    let path = common::lite0_weights();
    // One input only: on some (a batch of 2 at 35x40) F32 rounding alone flips ReLU6 masks
    // that matter at blocks.10, in candle's own F32 ops as much as in these kernels (3%).
    let net = ModelKind::EfficientNetLite0.load(&path, &Device::Cpu).unwrap();
    check_against_reference(&net, &["stem", "blocks.3", "blocks.10", "head"], &[(1, 37, 42)]);
}

/// `sum(y * probe)` through candle's autograd, returning the gradient of `x`.
fn autograd_input_grad(x: &Tensor, probe: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let var = Var::from_tensor(x).unwrap();
    let y = f(var.as_tensor());
    let grads = (y * probe).unwrap().sum_all().unwrap().backward().unwrap();
    grads.get(var.as_tensor()).unwrap().clone()
}

/// 1 where `0 < y < upper` (an activation's linear range), else 0, element by element.
fn active_range(y: &Tensor, upper: f32) -> Vec<u8> {
    let y = y.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    y.iter().map(|&v| u8::from(v > 0.0 && v < upper as f64)).collect()
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let max = |t: Tensor| t.abs().unwrap().max_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    max((a - b).unwrap()) / max(b.clone()).max(1e-12)
}

#[test]
fn strided_same_padded_convolution_matches_candle() {
    // F64 runs on candle's ops; F32 with 3 input channels on the CPU as GEMMs over unfolded
    // patches (with the clamp fused into the forward and its mask into the backward); F32
    // with 6 on candle again.
    let cases = [(DType::F64, 3, 1e-12), (DType::F32, 3, 1e-5), (DType::F32, 6, 1e-5)];
    for (dtype, cin, tolerance) in cases {
        for (n, h, w) in [(1, 16, 16), (2, 15, 18), (1, 9, 7), (1, 1, 4)] {
            let x = ((random(&[n, cin, h, w], 3, dtype) - 0.3).unwrap() * 4.0).unwrap();
            let weight = (random(&[5, cin, 3, 3], 4, dtype) - 0.5).unwrap();
            let bias = random(&[5], 5, dtype);
            let conv = Conv2d::new(weight.clone(), Some(bias.clone()), 2, Padding::Same).unwrap();
            let (t, b) = Padding::Same.amounts(h, 3, 2);
            let (l, r) = Padding::Same.amounts(w, 3, 2);
            let reference = |x: &Tensor| {
                let padded = x.pad_with_zeros(2, t, b).unwrap().pad_with_zeros(3, l, r).unwrap();
                padded.conv2d(&weight, 0, 2, 1, 1).unwrap().broadcast_add(&bias.reshape((1, 5, 1, 1)).unwrap()).unwrap()
            };
            let what = format!("{dtype:?} {cin} channels {n}x{h}x{w}");
            let expected = reference(&x);
            let y = conv.forward(&x).unwrap();
            assert_eq!(y.dims(), &[n, 5, h.div_ceil(2), w.div_ceil(2)]);
            assert!(max_rel_diff(&y, &expected) < tolerance, "forward {what}");
            let clamped = conv.forward_activated(&x, 6.0).unwrap();
            assert!(max_rel_diff(&clamped, &expected.clamp(0.0, 6.0).unwrap()) < tolerance, "clamped {what}");
            // The mask the unfolded kernel writes beside its output is the activation's range.
            let (y6, mask) = conv.forward_activated_masked(&x, 6.0).unwrap();
            assert!(max_rel_diff(&y6, &clamped) == 0.0, "clamped with its mask {what}");
            assert_eq!(mask.flatten_all().unwrap().to_vec1::<u8>().unwrap(), active_range(&y6, 6.0), "mask {what}");
            let probe = random(y.dims(), 6, dtype);
            let got = conv.backward(&probe, (h, w)).unwrap();
            assert!(max_rel_diff(&got, &autograd_input_grad(&x, &probe, reference)) < tolerance, "backward {what}");
            let mask = expected.gt(0.0).unwrap();
            let masked = (&probe * mask.to_dtype(dtype).unwrap()).unwrap();
            let got = conv.backward_masked(&probe, &mask, (h, w)).unwrap();
            assert!(max_rel_diff(&got, &autograd_input_grad(&x, &masked, reference)) < tolerance, "masked {what}");
        }
    }
}

#[test]
fn large_kernel_few_channel_convolution_matches_candle() {
    // GoogLeNet's 7x7 stride-2 stem (padding 3), and a 5x5 "same" one, run on the CPU as GEMMs
    // over unfolded patches in bands of output rows (227x227: several bands per image), with
    // the clamp fused into the forward and its mask into the backward. candle's autograd
    // cannot take the gradient of a strided convolution whose last window leaves input rows
    // over, so the gradient's reference is the same layer in F64 on candle's ops, itself
    // checked as the adjoint of candle's convolution: <conv(x), g> = <x, backward(g)>.
    let cases = [(7, 2, Padding::Symmetric(3), 64), (5, 1, Padding::Same, 5)];
    for (k, stride, padding, cout) in cases {
        for (n, h, w) in [(1, 227, 227), (2, 15, 18), (1, 9, 7), (1, 1, 4)] {
            let x = ((random(&[n, 3, h, w], 81, DType::F32) - 0.3).unwrap() * 4.0).unwrap();
            let weight = (random(&[cout, 3, k, k], 82, DType::F32) - 0.5).unwrap();
            let bias = random(&[cout], 83, DType::F32);
            let conv = Conv2d::new(weight.clone(), Some(bias.clone()), stride, padding).unwrap();
            let ((t, b), (l, r)) = (padding.amounts(h, k, stride), padding.amounts(w, k, stride));
            let linear = |x: &Tensor| {
                let padded = x.pad_with_zeros(2, t, b).unwrap().pad_with_zeros(3, l, r).unwrap();
                padded.conv2d(&weight.to_dtype(x.dtype()).unwrap(), 0, stride, 1, 1).unwrap()
            };
            let what = format!("{k}x{k}/{stride} {n}x{h}x{w}");
            let expected = linear(&x).broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap()).unwrap();
            let y = conv.forward(&x).unwrap();
            assert_eq!(y.dims(), expected.dims(), "{what}");
            assert!(max_rel_diff(&y, &expected) < 1e-5, "forward {what}");
            let activated = conv.forward_activated(&x, f32::INFINITY).unwrap();
            assert!(max_rel_diff(&activated, &expected.relu().unwrap()) < 1e-5, "activated {what}");
            let (y_relu, mask) = conv.forward_activated_masked(&x, f32::INFINITY).unwrap();
            assert!(max_rel_diff(&y_relu, &activated) == 0.0, "activated with its mask {what}");
            assert_eq!(mask.flatten_all().unwrap().to_vec1::<u8>().unwrap(), active_range(&y_relu, f32::INFINITY));
            let probe = random(y.dims(), 84, DType::F64);
            let f64_conv = Conv2d::new(weight.to_dtype(DType::F64).unwrap(), None, stride, padding).unwrap();
            let reference = f64_conv.backward(&probe, (h, w)).unwrap();
            let x64 = x.to_dtype(DType::F64).unwrap();
            let (forward_side, backward_side) = (dot(&linear(&x64), &probe), dot(&x64, &reference));
            assert!((forward_side - backward_side).abs() < 1e-9 * forward_side.abs(), "adjoint {what}");
            let probe = probe.to_dtype(DType::F32).unwrap();
            let got = conv.backward(&probe, (h, w)).unwrap().to_dtype(DType::F64).unwrap();
            assert!(max_rel_diff(&got, &reference) < 1e-5, "backward {what}");
            let mask = expected.gt(0.0).unwrap();
            let masked = (&probe * mask.to_dtype(DType::F32).unwrap()).unwrap().to_dtype(DType::F64).unwrap();
            let got = conv.backward_masked(&probe, &mask, (h, w)).unwrap().to_dtype(DType::F64).unwrap();
            assert!(max_rel_diff(&got, &f64_conv.backward(&masked, (h, w)).unwrap()) < 1e-5, "masked {what}");
        }
    }
}

#[test]
fn depthwise_convolution_matches_candle_grouped_convolution() {
    // F64 runs as shifted multiply-adds (candle ops), F32 on the CPU kernel; the kernel also
    // fuses the ReLU6 clamp into the forward and its mask into the backward.
    for (dtype, tolerance) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        for (k, stride, h, w) in
            [(3, 1, 12, 10), (5, 1, 9, 11), (3, 2, 14, 14), (5, 2, 13, 10), (3, 2, 1, 5), (5, 3, 11, 13)]
                .into_iter()
                // Rows longer than the kernel's blocks of 32 outputs, ending in a partial block
                // (41, 40; 75 and 70 at stride 2 give 38 and 35).
                .chain([(3, 1, 4, 41), (5, 1, 3, 40), (5, 2, 5, 75), (3, 2, 3, 70)])
        {
            let c = 6;
            let x = ((random(&[2, c, h, w], 7, dtype) - 0.3).unwrap() * 8.0).unwrap();
            let weight = (random(&[c, 1, k, k], 8, dtype) - 0.5).unwrap();
            let bias = random(&[c], 10, dtype);
            let conv = DepthwiseConv2d::new(&weight, Some(bias.clone()), stride, Padding::Same).unwrap();
            let (t, b) = Padding::Same.amounts(h, k, stride);
            let (l, r) = Padding::Same.amounts(w, k, stride);
            let reference = |x: &Tensor| {
                let padded = x.pad_with_zeros(2, t, b).unwrap().pad_with_zeros(3, l, r).unwrap();
                padded
                    .conv2d(&weight, 0, stride, 1, c)
                    .unwrap()
                    .broadcast_add(&bias.reshape((1, c, 1, 1)).unwrap())
                    .unwrap()
            };
            let what = format!("{dtype:?} k{k} s{stride} {h}x{w}");
            let expected = reference(&x);
            let y = conv.forward(&x).unwrap();
            assert!(max_rel_diff(&y, &expected) < tolerance, "forward {what}");
            let clamped = conv.forward_clamped(&x, 6.0).unwrap();
            assert!(max_rel_diff(&clamped, &expected.clamp(0.0, 6.0).unwrap()) < tolerance, "clamped {what}");
            let (y, mask) = conv.forward_clamped_masked(&x, 6.0).unwrap();
            assert!(max_rel_diff(&y, &clamped) == 0.0, "clamped with its mask {what}");
            assert_eq!(mask.flatten_all().unwrap().to_vec1::<u8>().unwrap(), active_range(&y, 6.0), "mask {what}");
            let probe = random(y.dims(), 9, dtype);
            let got = conv.backward(&probe, (h, w)).unwrap();
            assert!(max_rel_diff(&got, &autograd_input_grad(&x, &probe, reference)) < tolerance, "backward {what}");
            let mask = expected.gt(0.0).unwrap();
            let masked = (&probe * mask.to_dtype(dtype).unwrap()).unwrap();
            let got = conv.backward_masked(&probe, &mask, (h, w)).unwrap();
            let expected = autograd_input_grad(&x, &masked, reference);
            assert!(max_rel_diff(&got, &expected) < tolerance, "masked backward {what}");
        }
    }
}

#[test]
fn pointwise_convolution_matches_candle() {
    // 1x1 convolutions run as GEMMs over bands of pixels on the CPU in F32, with bias and
    // clamp fused into the forward and the clamp's mask into the backward. Shapes: channels
    // that fill no whole tile of 6, bands whose pixels fill no whole tile of 16, several bands
    // (37x45 at 24+40 channels), many input channels.
    let shapes = [
        (1, 16, 96, 9, 7, Padding::Same),
        (2, 40, 24, 5, 6, Padding::Symmetric(0)),
        (1, 24, 40, 37, 45, Padding::Same),
        (1, 200, 10, 11, 13, Padding::Same),
    ];
    for (n, cin, cout, h, w, padding) in shapes {
        let x = ((random(&[n, cin, h, w], 41, DType::F32) - 0.5).unwrap() * 6.0).unwrap();
        let weight = (random(&[cout, cin, 1, 1], 42, DType::F32) - 0.5).unwrap();
        let bias = random(&[cout], 43, DType::F32);
        let conv = Conv2d::new(weight.clone(), Some(bias.clone()), 1, padding).unwrap();
        let reference = |t: &Tensor| {
            t.conv2d(&weight, 0, 1, 1, 1).unwrap().broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap()).unwrap()
        };
        let expected = reference(&x);
        assert!(max_rel_diff(&conv.forward(&x).unwrap(), &expected) < 1e-5, "forward {cin}->{cout}");
        for upper in [6.0, f32::INFINITY] {
            let got = conv.forward_activated(&x, upper).unwrap();
            assert!(max_rel_diff(&got, &expected.clamp(0.0, upper).unwrap()) < 1e-5, "activated {upper}");
            // The mask the kernel writes beside its output is the activation's linear range.
            let (y, mask) = conv.forward_activated_masked(&x, upper).unwrap();
            assert!(max_rel_diff(&y, &got) == 0.0, "activated with its mask {upper}");
            assert_eq!(mask.flatten_all().unwrap().to_vec1::<u8>().unwrap(), active_range(&y, upper));
        }
        // A NaN input pixel stays NaN through the clamp in every output channel, as with
        // candle's clamp, instead of being clamped away.
        let mut poisoned = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        poisoned[0] = f32::NAN;
        let poisoned = Tensor::from_vec(poisoned, x.shape(), x.device()).unwrap();
        let y = conv.forward_activated(&poisoned, 6.0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((0..cout).all(|o| y[o * h * w].is_nan()), "NaN through the clamp {cin}->{cout}");
        let probe = random(expected.dims(), 44, DType::F32);
        let got = conv.backward(&probe, (h, w)).unwrap();
        assert!(max_rel_diff(&got, &autograd_input_grad(&x, &probe, reference)) < 1e-5, "backward {cin}->{cout}");
        let mask = expected.gt(0.0).unwrap();
        let masked = (&probe * mask.to_dtype(DType::F32).unwrap()).unwrap();
        let got = conv.backward_masked(&probe, &mask, (h, w)).unwrap();
        assert!(max_rel_diff(&got, &autograd_input_grad(&x, &masked, reference)) < 1e-5, "masked backward");
    }
}

#[test]
fn max_pool_backward_routes_the_whole_gradient_unlike_candle_autograd() {
    // For a positively homogeneous map f, <grad ||f(a)||, a> = ||f(a)|| (Euler). Our pool
    // satisfies it; candle's autograd gives a quarter of it (the defect this crate avoids).
    let pool = Network::new(vec![Op::MaxPool2], vec![Tap { name: "pool".into(), kind: "maxpool".into(), end: 1 }]);
    let a = random(&[1, 4, 9, 10], 10, DType::F64);
    let (norm, ours) = pool.objective_gradient(&a, &Objective::layer(0)).unwrap();
    let norm = norm as f64;
    assert!((dot(&ours, &a) - norm).abs() < 1e-6 * norm);
    let pooled = a.narrow(2, 0, 8).unwrap().narrow(3, 0, 10).unwrap().max_pool2d(2).unwrap();
    let seed =
        (&pooled / pooled.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f64>().unwrap()).unwrap();
    let cropped = a.narrow(2, 0, 8).unwrap().contiguous().unwrap();
    let candle = autograd_input_grad(&cropped, &seed, |t| t.max_pool2d(2).unwrap());
    assert!((dot(&candle, &cropped) * 4.0 - norm).abs() < 1e-6 * norm);
}

#[test]
fn fast_cpu_3x3_convolution_matches_candle() {
    // F32 3x3 stride-1 convolutions on the CPU take the CPU kernels; candle's own
    // convolution and autograd are the reference, for the plain backward and for the backward
    // of the gradient masked by a `u8` mask (a ReLU's, fused into the kernel).
    // Layers with 16-512 channels each way run as Winograd F(4x4, 3x3), narrower or wider ones
    // as implicit GEMM; sizes that are not multiples of the 4x4 tiles, single rows and batches
    // included. Winograd cuts images into bands of tile rows: one band (most shapes), several
    // one after the other (70x90) and several in parallel (240x237, also wide enough for the
    // vectorised phase split).
    let shapes = [(1, 3, 8, 17, 23), (2, 5, 7, 9, 6), (1, 16, 4, 1, 5), (1, 64, 32, 28, 28), (1, 256, 256, 13, 11)];
    let more = [(2, 300, 260, 6, 9), (1, 520, 8, 3, 2), (1, 260, 256, 40, 39), (1, 600, 480, 3, 4)];
    let bands = [(1, 32, 24, 70, 90), (1, 16, 16, 240, 237)];
    for (n, cin, cout, h, w) in shapes.into_iter().chain(more).chain(bands) {
        let x = random(&[n, cin, h, w], 11, DType::F32);
        let weight = (random(&[cout, cin, 3, 3], 12, DType::F32) - 0.5).unwrap();
        let bias = random(&[cout], 13, DType::F32);
        let conv = Conv2d::new(weight.clone(), Some(bias.clone()), 1, Padding::Symmetric(1)).unwrap();
        let reference = |t: &Tensor| t.conv2d(&weight, 1, 1, 1, 1).unwrap();
        let expected = reference(&x).broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap()).unwrap();
        let y = conv.forward(&x).unwrap();
        assert_eq!(y.dims(), expected.dims());
        assert!(max_rel_diff(&y, &expected) < 1e-4, "forward {n}x{cin}x{h}x{w} -> {cout}");
        let probe = random(y.dims(), 14, DType::F32);
        let expected = autograd_input_grad(&x, &probe, reference);
        let got = conv.backward(&probe, (h, w)).unwrap();
        assert!(max_rel_diff(&got, &expected) < 1e-4, "backward {n}x{cin}x{h}x{w} -> {cout}");
        let mask = random(y.dims(), 15, DType::F32).ge(0.5).unwrap();
        let masked = (&probe * mask.to_dtype(DType::F32).unwrap()).unwrap();
        let expected = autograd_input_grad(&x, &masked, reference);
        let got = conv.backward_masked(&probe, &mask, (h, w)).unwrap();
        assert!(max_rel_diff(&got, &expected) < 1e-4, "masked backward {n}x{cin}x{h}x{w} -> {cout}");
    }
}

#[test]
fn pooled_gradient_matches_routing_then_backward() {
    // The backward of a convolution followed by a ReLU and a 2x2 max-pool takes the pool's
    // output gradient and mask and routes it on the fly (Winograd) or first (implicit GEMM);
    // the reference routes with candle ops and runs candle's autograd. Odd sizes leave the
    // last row and column without a pool window; 150x141 is wide enough for the vectorised
    // phase split.
    for (cin, cout, h, w) in [(16, 24, 150, 141), (24, 16, 9, 7), (5, 6, 11, 13)] {
        let x = random(&[1, cin, h, w], 31, DType::F32);
        let weight = (random(&[cout, cin, 3, 3], 32, DType::F32) - 0.5).unwrap();
        let conv = Conv2d::new(weight.clone(), None, 1, Padding::Symmetric(1)).unwrap();
        let (ho, wo) = (h / 2, w / 2);
        let grad = random(&[1, cout, ho, wo], 33, DType::F32);
        let mask = random(&[1, cout, h, w], 34, DType::F32).ge(0.5).unwrap();
        let routed = grad.upsample_nearest2d(2 * ho, 2 * wo).unwrap().pad_with_zeros(2, 0, h - 2 * ho).unwrap();
        let routed = (routed.pad_with_zeros(3, 0, w - 2 * wo).unwrap() * mask.to_dtype(DType::F32).unwrap()).unwrap();
        let expected = autograd_input_grad(&x, &routed, |t| t.conv2d(&weight, 1, 1, 1, 1).unwrap());
        let got = conv.backward_pooled(&grad, &mask, (h, w)).unwrap();
        assert!(max_rel_diff(&got, &expected) < 1e-4, "{cin}x{h}x{w} -> {cout}");
    }
}

#[test]
fn fused_cpu_kernels_match_the_reference_path_through_the_network() {
    // In F32 on the CPU, convolutions fuse with their ReLU (mask fused into the backward), and
    // before a max-pool with the pool too (its mask routes the gradient inside the
    // convolution's backward); in F64 every op is candle's. Tapping a convolution's own
    // output (features.2, features.28) keeps it unfused; odd sizes exercise the pool crops.
    // The fixture's 4-8 channel layers run as implicit GEMM, the wider networks' (16+, up to
    // VGG19's own 64-512) as Winograd.
    let wide = common::vgg_with_widths(&[16, 16, 32, 32, 32, 32, 32, 32, 48, 48, 48, 48, 48, 48, 48, 48]);
    let real = common::vgg_with_widths(&dreamvid::fixture::VGG19_WIDTHS);
    for net in [common::fixture_vgg(), wide, real] {
        let layers = ["features.2", "features.9", "features.28", "features.30", "features.36"];
        check_against_reference(&net, &layers, &[(1, 37, 42), (2, 35, 40)]);
    }
}

/// The objective and gradient of `net` in F32 against the same network in F64, for inputs of
/// the given `[n, 3, h, w]` sizes.
fn check_against_reference(net: &Network, layers: &[&str], sizes: &[(usize, usize, usize)]) {
    let reference = net.to_dtype(DType::F64).unwrap();
    for &(n, h, w) in sizes {
        let x = random(&[n, 3, h, w], 21, DType::F64);
        for &layer in layers {
            let objective = Objective::layer(net.find_tap(layer).unwrap());
            let (value, grad) = net.objective_gradient(&x.to_dtype(DType::F32).unwrap(), &objective).unwrap();
            let (expected_value, expected) = reference.objective_gradient(&x, &objective).unwrap();
            assert!((value - expected_value).abs() < 1e-5 * expected_value, "{layer}: {value} vs {expected_value}");
            let diff = max_rel_diff(&grad.to_dtype(DType::F64).unwrap(), &expected);
            assert!(diff < 1e-4, "{layer} {n}x{h}x{w}: gradient differs by {diff}");
        }
    }
}

#[test]
fn tiled_gradient_equals_the_whole_frame_gradient_where_the_halo_covers_the_receptive_field() {
    // features.9 and features.20 see at most ~30 pixels around them, less than the 64-pixel
    // halo, so tiles (at any offset) reproduce the untiled objective and gradient; the
    // two-term objective takes the path that measures the norms first.
    let net = common::fixture_vgg();
    let x = random(&[1, 3, 300, 262], 31, DType::F32);
    let (l9, l20) = (net.find_tap("features.9").unwrap(), net.find_tap("features.20").unwrap());
    let objectives =
        [Objective::layer(l9), Objective { terms: vec![(l9, 0.7), (l20, 0.3)], channels: None, guide: None }];
    for objective in &objectives {
        let (value, expected) = net.objective_gradient(&x, objective).unwrap();
        for seed in 0..3 {
            let mut rng = Rng::new(seed);
            let (tiled_value, tiled) = tiles::objective_gradient(&net, &x, objective, 128, &mut rng).unwrap();
            assert!((tiled_value - value).abs() < 1e-5 * value, "{tiled_value} vs {value}");
            let diff = max_rel_diff(&tiled, &expected);
            assert!(diff < 1e-4, "{:?} seed {seed}: tiled gradient differs by {diff}", objective.terms);
        }
    }
    // Tiling only starts above the tile size: a frame that fits is one pass.
    let mut rng = Rng::new(0);
    let (_, whole) = tiles::objective_gradient(&net, &x, &objectives[0], 300, &mut rng).unwrap();
    assert_eq!(max_rel_diff(&whole, &net.objective_gradient(&x, &objectives[0]).unwrap().1), 0.0);
}

/// A network of `ops` with one tap, `name`, at its end.
fn single_tap(ops: Vec<Op>, name: &str) -> Network {
    let end = ops.len();
    Network::new(ops, vec![Tap { name: name.into(), kind: name.into(), end }])
}

/// `(kernel, stride, padding)` of a max-pool.
type Window = (usize, usize, usize);

/// `(h, w)`.
type Size = (usize, usize);

/// Max-pool configurations `(kernel, stride, padding)` in ceil mode, with odd and even input
/// sizes `(h, w)` and the output sizes PyTorch gives them: GoogLeNet's three (floor mode would
/// drop the last row and/or column of every one but the stride-1 pool), and a padded stride-3
/// one whose last column window would start past the input and is left out (11 -> 4, not 5).
const POOLS: [(Window, Size, Size); 5] = [
    ((3, 2, 0), (14, 13), (7, 6)),
    ((3, 2, 0), (11, 12), (5, 6)),
    ((3, 1, 1), (9, 10), (9, 10)),
    ((2, 2, 0), (7, 9), (4, 5)),
    ((3, 3, 1), (10, 11), (4, 4)),
];

/// PyTorch's max-pool written out for one `h x w` plane: windows clipped to the input, the
/// first maximum in row-major window order wins. Returns the output and, per output, the
/// input index of its maximum.
fn reference_max_pool(
    plane: &[f64],
    (h, w): (usize, usize),
    (k, s, p): (usize, usize, usize),
    (ho, wo): (usize, usize),
) -> (Vec<f64>, Vec<usize>) {
    let mut out = Vec::new();
    let mut winners = Vec::new();
    for i in 0..ho {
        for j in 0..wo {
            let mut best: Option<(f64, usize)> = None;
            for r in (i * s).saturating_sub(p)..(i * s + k - p).min(h) {
                for c in (j * s).saturating_sub(p)..(j * s + k - p).min(w) {
                    let v = plane[r * w + c];
                    if best.is_none_or(|(m, _)| v > m) {
                        best = Some((v, r * w + c));
                    }
                }
            }
            let (v, at) = best.expect("every window holds an input element");
            out.push(v);
            winners.push(at);
        }
    }
    (out, winners)
}

#[test]
fn max_pool_matches_pytorch_with_ceil_mode_padding_and_ties() {
    // Inputs from four negative levels tie often: the whole gradient of an output goes to the
    // first maximum of its window (row-major), overlapping windows add up, and padding or
    // overhang never wins (a zero there would). F32 takes the CPU kernels, F64 the candle ops.
    for ((k, s, p), (h, w), (ho, wo)) in POOLS {
        let pool = MaxPool::new(k, s, p, true).unwrap();
        let net = single_tap(vec![Op::MaxPool(pool)], "pool");
        let levels = ((random(&[2, 3, h, w], 51, DType::F64) * 4.0).unwrap().floor().unwrap() - 5.0).unwrap();
        let planes = levels.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let (mut expected_y, mut winners) = (Vec::new(), Vec::new());
        for (index, plane) in planes.chunks(h * w).enumerate() {
            let (y, at) = reference_max_pool(plane, (h, w), (k, s, p), (ho, wo));
            expected_y.extend(y);
            winners.extend(at.into_iter().map(|a| index * h * w + a));
        }
        let norm = expected_y.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut expected_grad = vec![0f64; planes.len()];
        for (&at, &v) in winners.iter().zip(&expected_y) {
            expected_grad[at] += v / norm;
        }
        for dtype in [DType::F32, DType::F64] {
            let (net, x) = (net.to_dtype(dtype).unwrap(), levels.to_dtype(dtype).unwrap());
            let what = format!("{k}x{k}/{s} pad {p} on {h}x{w} in {dtype:?}");
            let y = net.activations(&x, 0).unwrap();
            assert_eq!(y.dims(), &[2, 3, ho, wo], "{what}");
            let y = y.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            assert_eq!(y, expected_y, "forward {what}");
            let grad = net.objective_gradient(&x, &Objective::layer(0)).unwrap().1;
            let grad = grad.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let worst = grad.iter().zip(&expected_grad).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-6, "backward {what}: off by {worst}");
        }
    }
}

#[test]
fn max_pool_gradient_matches_finite_differences_with_overlapping_and_overhanging_windows() {
    for ((k, s, p), (h, w), _) in POOLS {
        let net = single_tap(vec![Op::MaxPool(MaxPool::new(k, s, p, true).unwrap())], "pool");
        check_finite_differences(&net, "pool", &[1, 2, h, w], 1e-5);
    }
    // Behind a convolution, as in the network: the pool's gradient flows on into the conv.
    let conv = Conv2d::new((random(&[4, 3, 3, 3], 52, DType::F64) - 0.5).unwrap(), None, 1, Padding::Symmetric(1));
    let ops = vec![Op::Conv(conv.unwrap()), Op::Relu, Op::MaxPool(MaxPool::new(3, 2, 0, true).unwrap())];
    check_finite_differences(&single_tap(ops, "pool"), "pool", &[1, 3, 14, 13], 1e-5);
}

/// A convolution from `cin` to `cout` channels, `k x k`, padding `k / 2`, seeded `F32` weights.
fn seeded_conv(cin: usize, cout: usize, k: usize, seed: u64) -> Op {
    let weight = (random(&[cout, cin, k, k], seed, DType::F32) - 0.5).unwrap();
    let bias = (random(&[cout], seed + 1, DType::F32) - 0.3).unwrap();
    Op::Conv(Conv2d::new(weight, Some(bias), 1, Padding::Symmetric(k / 2)).unwrap())
}

#[test]
fn concat_runs_every_branch_on_the_input_and_adds_their_gradients() {
    // Branches of different widths and depths, one a plain identity; a 1x1 convolution after
    // the concatenation mixes its channels with different weights, so a gradient split at the
    // wrong channels would show, as would a wrong channel order in the chosen channels.
    let branches = vec![
        vec![seeded_conv(3, 2, 1, 60), Op::Relu],
        vec![seeded_conv(3, 3, 1, 62), Op::Relu, seeded_conv(3, 2, 3, 64), Op::Relu],
        vec![Op::MaxPool(MaxPool::new(3, 1, 1, true).unwrap()), seeded_conv(3, 2, 1, 66)],
        vec![],
    ];
    let x = random(&[1, 3, 9, 11], 68, DType::F32);
    let parts: Vec<Tensor> = branches.iter().map(|b| run_branch(b, &x)).collect();
    let taps = vec![
        Tap { name: "concat".into(), kind: "concat".into(), end: 1 },
        Tap { name: "mixed".into(), kind: "conv".into(), end: 2 },
    ];
    let net = Network::new(vec![Op::concat(branches).unwrap(), seeded_conv(9, 4, 1, 70)], taps);
    let joined = net.activations(&x, 0).unwrap();
    assert_eq!(joined.dims(), &[1, 9, 9, 11]);
    assert_eq!(max_rel_diff(&joined, &Tensor::cat(&parts, 1).unwrap()), 0.0, "branch outputs in branch order");
    let exact = net.to_dtype(DType::F64).unwrap();
    for layer in ["concat", "mixed"] {
        check_finite_differences(&exact, layer, &[1, 3, 9, 11], 1e-5);
    }
    let chosen = Objective { terms: vec![(0, 1.0)], channels: Some(vec![1, 4, 6, 8]), guide: None };
    check_objective_finite_differences(&exact, &chosen, &[1, 3, 9, 11], 1e-5);
    // In F32 on the CPU the branch gradients add up in one pass (three at a time).
    check_against_reference(&net, &["concat", "mixed"], &[(1, 9, 11), (2, 10, 7)]);
}

/// The output of one branch's ops on `x`, run as a network of its own.
fn run_branch(ops: &[Op], x: &Tensor) -> Tensor {
    if ops.is_empty() {
        return x.clone();
    }
    single_tap(ops.to_vec(), "branch").activations(x, 0).unwrap()
}

#[test]
fn googlenet_gradient_matches_finite_differences_through_ceil_mode_pools_and_inception_blocks() {
    // 61x54: every pool but the branch pools rounds up somewhere along the way (maxpool4
    // gives 2x2 from 3x3, floor mode would give 1x1).
    let net = common::fixture_googlenet().to_dtype(DType::F64).unwrap();
    for layer in ["conv1", "maxpool1", "conv3", "inception3a", "maxpool3", "inception4c", "maxpool4", "inception5b"] {
        check_finite_differences(&net, layer, &[1, 3, 61, 54], 1e-5);
    }
    let tap = |name| net.find_tap(name).unwrap();
    let several =
        Objective { terms: vec![(tap("inception3b"), 1.0), (tap("inception4c"), 0.5)], channels: None, guide: None };
    check_objective_finite_differences(&net, &several, &[1, 3, 47, 50], 1e-5);
}

#[test]
fn googlenet_cpu_kernels_match_the_reference_path() {
    // F32 on the CPU: fused convolution + ReLU kernels (7x7/2 few-channel plane passes, 1x1
    // GEMMs, 3x3 implicit GEMM or Winograd at the real widths) and the max-pool kernels; F64:
    // candle's ops throughout.
    let real = common::googlenet_with_widths(&dreamvid::fixture::googlenet::GOOGLENET_WIDTHS);
    for net in [common::fixture_googlenet(), real] {
        let layers = ["conv1", "maxpool2", "inception3b", "inception4c", "maxpool4", "inception5b"];
        check_against_reference(&net, &layers, &[(1, 61, 54), (2, 47, 50)]);
    }
}
