//! Times each distinct 3x3 convolution of VGG19 `features[:31]` on the CPU: forward (fused
//! with its ReLU) and input gradient (masked by a ReLU mask), fastest of RUNS calls each.
//! Prints milliseconds, GFLOP/s (direct-convolution FLOPs, so Winograd can exceed the GEMM
//! peak) and that rate against the sgemm peak measured in the same run, then the whole
//! network's convolution time (repeated layers counted).
//!
//!   cargo bench --bench conv_layers [-- SIZE [RUNS]]      (defaults: 224, 10)

use std::time::Instant;

use candle_core::{Device, Tensor};
use dreamvid::nn::{Conv2d, Padding};

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

fn main() -> candle_core::Result<()> {
    dreamvid::runtime::configure();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let size = args.first().and_then(|s| s.parse().ok()).unwrap_or(224);
    let runs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let dev = Device::Cpu;
    let n = 2048;
    let (a, b) = (Tensor::randn(0f32, 1.0, (n, n), &dev)?, Tensor::randn(0f32, 1.0, (n, n), &dev)?);
    let peak = 2.0 * (n as f64).powi(3) / fastest(5, || drop(a.matmul(&b))) / 1e9;
    println!("sgemm peak {peak:.0} GFLOP/s ({n}^3), VGG19 convolutions at {size}x{size}, fastest of {runs}");
    println!(
        "{:>16} {:>6} {:>10} {:>8} {:>7} {:>10} {:>8} {:>7}",
        "layer", "side", "fwd ms", "GFLOP/s", "/peak", "grad ms", "GFLOP/s", "/peak"
    );
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
        let gflop = 2.0 * (cin * cout * 9 * side * side) as f64 / 1e9;
        let name = format!("{cin}->{cout} x{count}");
        println!(
            "{name:>16} {side:>6} {:>10.2} {:>8.0} {:>7.2} {:>10.2} {:>8.0} {:>7.2}",
            f * 1e3,
            gflop / f,
            gflop / f / peak,
            g * 1e3,
            gflop / g,
            gflop / g / peak
        );
        forward += f * count as f64;
        gradient += g * count as f64;
    }
    println!("all convolutions: forward {:.1} ms, gradient {:.1} ms", forward * 1e3, gradient * 1e3);
    Ok(())
}
