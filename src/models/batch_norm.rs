//! Inference-time BatchNorm: per-channel scale and shift from a file's running statistics,
//! folded into the convolution before it.

use candle_core::Tensor;

use super::weights::WeightFile;
use crate::nn::{Conv2d, Padding};

/// A convolution `{conv}.weight` (no bias of its own) followed by the BatchNorm `bn` with
/// epsilon `eps`, folded into one convolution with bias. The weight's shape is checked
/// against `shape` (`[out, in, kh, kw]`, `None` accepts any size).
pub(super) fn folded_conv(
    file: &WeightFile,
    conv: &str,
    bn: &str,
    shape: [Option<usize>; 4],
    stride: usize,
    padding: Padding,
    eps: f64,
) -> anyhow::Result<Conv2d> {
    let weight = file.get(&format!("{conv}.weight"), &shape)?;
    let out = weight.dim(0)?;
    let (scale, shift) = batch_norm(file, bn, out, eps)?;
    let weight = weight.broadcast_mul(&scale.reshape((out, 1, 1, 1))?)?;
    Ok(Conv2d::new(weight, Some(shift), stride, padding)?)
}

/// Per-channel `(scale, shift)` such that `bn(x) = x * scale + shift`, from the BatchNorm
/// `bn`'s `weight`, `bias`, `running_mean` and `running_var` (`channels` each) and `eps`.
pub(super) fn batch_norm(file: &WeightFile, bn: &str, channels: usize, eps: f64) -> anyhow::Result<(Tensor, Tensor)> {
    let get = |field: &str| file.get(&format!("{bn}.{field}"), &[Some(channels)]);
    let (gamma, beta, mean, var) = (get("weight")?, get("bias")?, get("running_mean")?, get("running_var")?);
    let scale = (gamma / (var + eps)?.sqrt()?)?;
    let shift = (beta - (mean * &scale)?)?;
    Ok((scale, shift))
}
