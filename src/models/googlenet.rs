//! GoogLeNet (Inception v1) features in torchvision's layout (`conv1` … `inception5b`).
//!
//! Every convolution is torchvision's `BasicConv2d`: a bias-free convolution with padding
//! `kernel / 2`, BatchNorm (eps 1e-3, folded into the convolution at load time) and ReLU, with
//! keys `P.conv.weight` and `P.bn.{weight,bias,running_mean,running_var}`. Max-pools round
//! their output size up (ceil mode). Each Inception block concatenates four branches; as in
//! torchvision (vision#906) the "5x5" branch is a 3x3 convolution. The auxiliary heads
//! (`aux1.*`, `aux2.*`), the classifier (`fc.*`) and `num_batches_tracked` are never read.

use candle_core::Tensor;

use super::batch_norm::folded_conv;
use super::weights::WeightFile;
use crate::nn::{MaxPool, Network, Op, Padding, Tap};

const BN_EPS: f64 = 1e-3;

/// One module of the network, under its torchvision key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    /// `BasicConv2d`: `kernel x kernel` convolution with padding `kernel / 2`, BatchNorm, ReLU.
    Conv {
        /// Side of the kernel.
        kernel: usize,
        /// Step between windows.
        stride: usize,
    },
    /// Max-pool in ceil mode (no parameters).
    Pool {
        /// Side of the window.
        kernel: usize,
        /// Step between windows.
        stride: usize,
        /// Positions outside the input before the first row and column.
        padding: usize,
    },
    /// Inception block: the [`BRANCHES`] under its key, concatenated.
    Inception,
}

/// The dreamable modules of GoogLeNet in forward order, by key; each is a layer (tap).
pub const MODULES: [(&str, Module); 16] = [
    ("conv1", Module::Conv { kernel: 7, stride: 2 }),
    ("maxpool1", Module::Pool { kernel: 3, stride: 2, padding: 0 }),
    ("conv2", Module::Conv { kernel: 1, stride: 1 }),
    ("conv3", Module::Conv { kernel: 3, stride: 1 }),
    ("maxpool2", Module::Pool { kernel: 3, stride: 2, padding: 0 }),
    ("inception3a", Module::Inception),
    ("inception3b", Module::Inception),
    ("maxpool3", Module::Pool { kernel: 3, stride: 2, padding: 0 }),
    ("inception4a", Module::Inception),
    ("inception4b", Module::Inception),
    ("inception4c", Module::Inception),
    ("inception4d", Module::Inception),
    ("inception4e", Module::Inception),
    ("maxpool4", Module::Pool { kernel: 2, stride: 2, padding: 0 }),
    ("inception5a", Module::Inception),
    ("inception5b", Module::Inception),
];

/// The four branches of an Inception block, each a sequence of modules under keys relative
/// to the block, concatenated in this order. Their convolutions, in order, have torchvision's
/// `Inception(in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)` widths.
pub const BRANCHES: [&[(&str, Module)]; 4] = [
    &[("branch1", Module::Conv { kernel: 1, stride: 1 })],
    &[("branch2.0", Module::Conv { kernel: 1, stride: 1 }), ("branch2.1", Module::Conv { kernel: 3, stride: 1 })],
    &[("branch3.0", Module::Conv { kernel: 1, stride: 1 }), ("branch3.1", Module::Conv { kernel: 3, stride: 1 })],
    &[
        ("branch4.0", Module::Pool { kernel: 3, stride: 1, padding: 1 }),
        ("branch4.1", Module::Conv { kernel: 1, stride: 1 }),
    ],
];

/// Builds GoogLeNet up to `inception5b` from torchvision-layout tensors.
///
/// Channel widths are read from the file, so narrower networks with the same layout (such as
/// the test fixture) load too; consecutive modules must agree on their channel counts.
/// Inputs in `[0, 1]` become `2x - 1`: torchvision's `transform_input` applied after the
/// ImageNet normalisation of its preset comes down to exactly that.
pub fn build(file: &WeightFile) -> Result<Network, anyhow::Error> {
    let device = file.device();
    let mean = Tensor::full(0.5f32, (1, 3, 1, 1), device)?;
    let scale = Tensor::full(2f32, (1, 3, 1, 1), device)?;
    let mut ops = vec![Op::Normalize { mean, scale }];
    let mut taps = Vec::with_capacity(MODULES.len());
    let mut channels = 3;
    for (name, module) in MODULES {
        let (module_ops, out, kind) = load(file, name, module, channels)?;
        ops.extend(module_ops);
        channels = out;
        taps.push(Tap { name: name.into(), kind, end: ops.len() });
    }
    Ok(Network::new(ops, taps))
}

/// The ops of `module` under `key`, taking `channels` channels: with its output channels and
/// a description for layer listings.
fn load(file: &WeightFile, key: &str, module: Module, channels: usize) -> anyhow::Result<(Vec<Op>, usize, String)> {
    Ok(match module {
        Module::Conv { kernel: k, stride } => {
            let shape = [None, Some(channels), Some(k), Some(k)];
            let conv = folded_conv(
                file,
                &format!("{key}.conv"),
                &format!("{key}.bn"),
                shape,
                stride,
                Padding::Symmetric(k / 2),
                BN_EPS,
            )?;
            let out = conv.weight().dim(0)?;
            let step = if stride == 1 { String::new() } else { format!("/{stride}") };
            (vec![Op::Conv(conv), Op::Relu], out, format!("conv {k}x{k}{step} {channels}->{out}"))
        }
        Module::Pool { kernel, stride, padding } => {
            let pool = MaxPool::new(kernel, stride, padding, true)?;
            (vec![Op::MaxPool(pool)], channels, pool.to_string())
        }
        Module::Inception => {
            let mut branches = Vec::with_capacity(BRANCHES.len());
            let mut out = 0;
            for branch in BRANCHES {
                let mut ops = Vec::new();
                let mut width = channels;
                for &(sub, module) in branch {
                    let (sub_ops, sub_out, _) = load(file, &format!("{key}.{sub}"), module, width)?;
                    ops.extend(sub_ops);
                    width = sub_out;
                }
                branches.push(ops);
                out += width;
            }
            (vec![Op::concat(branches)?], out, format!("inception {channels}->{out}"))
        }
    })
}
