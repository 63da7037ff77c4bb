//! Times each distinct 3x3 convolution of VGG19 `features[:31]` on the CPU: forward (fused
//! with its ReLU) and input gradient (masked by a ReLU mask), fastest of RUNS calls each.
//! Prints milliseconds, GFLOP/s (direct-convolution FLOPs, so Winograd can exceed the GEMM
//! peak) and that rate against the sgemm peak measured in the same run, then the whole
//! network's convolution time (repeated layers counted). With `lite0`, the same for every 1x1
//! and depthwise convolution of EfficientNet-Lite0 up to blocks.10 (the default layer) at a
//! frame size, forward fused with its ReLU6 where the network has one, the gradient masked
//! likewise, each layer as often as the network has it, and the totals per kind.
//!
//!   cargo bench --bench conv_layers [-- SIZE [RUNS]]      (defaults: 224, 10)
//!   cargo bench --bench conv_layers -- lite0 [WIDTH HEIGHT [RUNS]]  (defaults: 640 360 10)

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dreamvid::nn::{Conv2d, DepthwiseConv2d, Padding};

/// `(input channels, output channels, side divisor, layers of this shape)` of VGG19's
/// `features[:31]`.
const LAYERS: [(usize, usize, usize, usize); 9] = [
    (3, 64, 1, 1),
    (64, 64, 1, 1),
    (64, 128, 2, 1),
    (128, 128, 2, 1),
    (128, 256, 4, 1),
    (256, 256, 4, 3),
    (256, 512, 8, 1),
    (512, 512, 8, 3),
    (512, 512, 16, 2),
];

/// Fastest of `runs` calls of `f`, in seconds.
fn fastest(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

/// `(kernel side, stride, expansion, output channels)` of EfficientNet-Lite0's MBConv blocks 0
/// to 10, after its 3x3/2 stem of 32 channels.
const LITE0_BLOCKS: [(usize, usize, usize, usize); 11] = [
    (3, 1, 1, 16),
    (3, 2, 6, 24),
    (3, 1, 6, 24),
    (5, 2, 6, 40),
    (5, 1, 6, 40),
    (3, 2, 6, 80),
    (3, 1, 6, 80),
    (3, 1, 6, 80),
    (5, 1, 6, 112),
    (5, 1, 6, 112),
    (5, 1, 6, 112),
];

/// Side of the square matrices [`sgemm_peak`] multiplies.
const SGEMM_SIDE: usize = 2048;

/// The sgemm peak of this machine in GFLOP/s (candle's matmul of two [`SGEMM_SIDE`]-square
/// matrices).
fn sgemm_peak() -> candle_core::Result<f64> {
    let n = SGEMM_SIDE;
    let dev = Device::Cpu;
    let (a, b) = (Tensor::randn(0f32, 1.0, (n, n), &dev)?, Tensor::randn(0f32, 1.0, (n, n), &dev)?);
    Ok(2.0 * (n as f64).powi(3) / fastest(5, || drop(a.matmul(&b))) / 1e9)
}

/// The column heads of [`print_row`]'s table.
fn print_header() {
    println!(
        "{:>24} {:>8} {:>9} {:>8} {:>6} {:>9} {:>8} {:>6}",
        "layer", "size", "fwd ms", "GFLOP/s", "/peak", "grad ms", "GFLOP/s", "/peak"
    );
}

/// One layer's row: its input size, forward and gradient seconds, FLOPs (2 per multiply-add).
fn print_row(name: &str, (h, w): (usize, usize), (f, g): (f64, f64), flop: f64, peak: f64) {
    let rate = |t: f64| flop / t / 1e9;
    println!(
        "{name:>24} {:>8} {:>9.3} {:>8.0} {:>6.2} {:>9.3} {:>8.0} {:>6.2}",
        format!("{w}x{h}"),
        f * 1e3,
        rate(f),
        rate(f) / peak,
        g * 1e3,
        rate(g),
        rate(g) / peak
    );
}

/// Forward and gradient seconds of a 1x1 convolution `cin -> cout` on a `size` input, with a
/// ReLU6 after it (fused, and masking the gradient) or none.
fn time_pointwise(
    cin: usize,
    cout: usize,
    size: (usize, usize),
    relu6: bool,
    runs: usize,
) -> candle_core::Result<(f64, f64)> {
    let dev = Device::Cpu;
    let weight = Tensor::randn(0f32, 0.1, (cout, cin, 1, 1), &dev)?;
    let conv = Conv2d::new(weight, Some(Tensor::zeros(cout, DType::F32, &dev)?), 1, Padding::Same)?;
    let x = Tensor::randn(0f32, 1.0, (1, cin, size.0, size.1), &dev)?;
    let grad = Tensor::randn(0f32, 1.0, (1, cout, size.0, size.1), &dev)?;
    Ok(if relu6 {
        let (_, mask) = conv.forward_activated_masked(&x, 6.0)?;
        let f = fastest(runs, || drop(conv.forward_activated_masked(&x, 6.0).unwrap()));
        (f, fastest(runs, || drop(conv.backward_masked(&grad, &mask, size).unwrap())))
    } else {
        (fastest(runs, || drop(conv.forward(&x).unwrap())), fastest(runs, || drop(conv.backward(&grad, size).unwrap())))
    })
}

/// Forward and gradient seconds of a `k x k` depthwise convolution of `channels` with
/// `stride` and a ReLU6 (fused, and masking the gradient) on a `size` input, and its output size.
fn time_depthwise(
    channels: usize,
    (k, stride): (usize, usize),
    size: (usize, usize),
    runs: usize,
) -> candle_core::Result<((f64, f64), (usize, usize))> {
    let dev = Device::Cpu;
    let taps = Tensor::randn(0f32, 0.3, (channels, 1, k, k), &dev)?;
    let conv = DepthwiseConv2d::new(&taps, Some(Tensor::zeros(channels, DType::F32, &dev)?), stride, Padding::Same)?;
    let x = Tensor::randn(0f32, 1.0, (1, channels, size.0, size.1), &dev)?;
    let (y, mask) = conv.forward_clamped_masked(&x, 6.0)?;
    let grad = Tensor::randn(0f32, 1.0, y.dims(), &dev)?;
    let f = fastest(runs, || drop(conv.forward_clamped_masked(&x, 6.0).unwrap()));
    let g = fastest(runs, || drop(conv.backward_masked(&grad, &mask, size).unwrap()));
    let (_, _, ho, wo) = y.dims4()?;
    Ok(((f, g), (ho, wo)))
}

/// Every 1x1 and depthwise convolution of Lite0 up to blocks.10 on an `h x w` frame.
fn lite0(h: usize, w: usize, runs: usize) -> candle_core::Result<()> {
    let peak = sgemm_peak()?;
    println!("sgemm peak {peak:.0} GFLOP/s, EfficientNet-Lite0 1x1 and depthwise convolutions (to blocks.10) at {w}x{h}, fastest of {runs}");
    print_header();
    let (mut size, mut channels) = ((h.div_ceil(2), w.div_ceil(2)), 32);
    // (forward, gradient) seconds of the 1x1 and of the depthwise convolutions.
    let (mut pointwise, mut depthwise) = ((0.0, 0.0), (0.0, 0.0));
    let add = |total: &mut (f64, f64), (f, g): (f64, f64)| {
        total.0 += f;
        total.1 += g;
    };
    for (b, &(k, stride, expansion, out)) in LITE0_BLOCKS.iter().enumerate() {
        // The expansion (ReLU6 after it), the depthwise convolution (ReLU6), the projection.
        let wide = channels * expansion;
        if expansion != 1 {
            let times = time_pointwise(channels, wide, size, true, runs)?;
            let flop = 2.0 * (channels * wide * size.0 * size.1) as f64;
            print_row(&format!("b{b} expand {channels}->{wide}"), size, times, flop, peak);
            add(&mut pointwise, times);
        }
        let (times, out_size) = time_depthwise(wide, (k, stride), size, runs)?;
        let flop = 2.0 * (wide * out_size.0 * out_size.1 * k * k) as f64;
        print_row(&format!("b{b} depthwise {k}x{k}/{stride} {wide}"), size, times, flop, peak);
        add(&mut depthwise, times);
        size = out_size;
        let times = time_pointwise(wide, out, size, false, runs)?;
        print_row(
            &format!("b{b} project {wide}->{out}"),
            size,
            times,
            2.0 * (wide * out * size.0 * size.1) as f64,
            peak,
        );
        add(&mut pointwise, times);
        channels = out;
    }
    println!(
        "1x1: forward {:.1} ms, gradient {:.1} ms; depthwise: forward {:.1} ms, gradient {:.1} ms",
        pointwise.0 * 1e3,
        pointwise.1 * 1e3,
        depthwise.0 * 1e3,
        depthwise.1 * 1e3
    );
    Ok(())
}

fn main() -> candle_core::Result<()> {
    dreamvid::runtime::configure();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if args.first().map(String::as_str) == Some("lite0") {
        let number = |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
        return lite0(number(2, 360), number(1, 640), number(3, 10));
    }
    let size = args.first().and_then(|s| s.parse().ok()).unwrap_or(224);
    let runs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let dev = Device::Cpu;
    let peak = sgemm_peak()?;
    println!("sgemm peak {peak:.0} GFLOP/s ({SGEMM_SIDE}^3), VGG19 convolutions at {size}x{size}, fastest of {runs}");
    print_header();
    let (mut forward, mut gradient) = (0.0, 0.0);
    for (cin, cout, div, count) in LAYERS {
        let side = size / div;
        let weight = (Tensor::randn(0f32, 0.05, (cout, cin, 3, 3), &dev))?;
        let conv =
            Conv2d::new(weight, Some(Tensor::zeros(cout, candle_core::DType::F32, &dev)?), 1, Padding::Symmetric(1))?;
        let x = Tensor::randn(0f32, 1.0, (1, cin, side, side), &dev)?;
        let grad = Tensor::randn(0f32, 1.0, (1, cout, side, side), &dev)?;
        let mask = grad.ge(0.0)?;
        let f = fastest(runs, || drop(conv.forward_activated(&x, f32::INFINITY).unwrap()));
        let g = fastest(runs, || drop(conv.backward_masked(&grad, &mask, (side, side)).unwrap()));
        let flop = 2.0 * (cin * cout * 9 * side * side) as f64;
        print_row(&format!("{cin}->{cout} x{count}"), (side, side), (f, g), flop, peak);
        forward += f * count as f64;
        gradient += g * count as f64;
    }
    println!("all convolutions: forward {:.1} ms, gradient {:.1} ms", forward * 1e3, gradient * 1e3);
    Ok(())
}
