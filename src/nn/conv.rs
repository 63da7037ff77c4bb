//! Convolutions with an explicit input-gradient backward.

use candle_core::{DType, Result, Tensor};

use super::cpu::{conv3x3_kernels, Conv3x3Cpu};
use super::padding::{dilate, output_len, pad_spatial, Padding};

/// A dense 2-D convolution (`groups == 1`) over NCHW tensors.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    /// The weight flipped spatially with input/output channels swapped: the kernel of the
    /// transposed convolution that computes the input gradient (the CPU kernels read it from
    /// `weight` instead).
    weight_bwd: Option<Tensor>,
    bias: Option<Tensor>,
    stride: usize,
    padding: Padding,
    /// Implicit-GEMM kernels for F32 3x3 stride-1 "same" convolutions on the CPU; candle's
    /// own ops everywhere else.
    cpu3x3: Option<Cpu3x3>,
}

impl Conv2d {
    /// Wraps a `[out, in, k, k]` weight and an optional `[out]` bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>, stride: usize, padding: Padding) -> Result<Self> {
        let weight = weight.contiguous()?;
        let (_, _, kh, kw) = weight.dims4()?;
        let fast = weight.device().is_cpu()
            && weight.dtype() == DType::F32
            && (kh, kw, stride, padding) == (3, 3, 1, Padding::Symmetric(1));
        let (cpu3x3, weight_bwd) = if fast {
            let b = bias.as_ref().map(|t| t.flatten_all()?.to_vec1::<f32>()).transpose()?;
            let [forward, forward_relu, backward] = conv3x3_kernels(b);
            (Some(Cpu3x3 { forward, forward_relu, backward }), None)
        } else {
            (None, Some(weight.flip(&[2, 3])?.transpose(0, 1)?.contiguous()?))
        };
        let bias = bias.map(|b| b.reshape((1, (), 1, 1))).transpose()?;
        Ok(Self { weight, weight_bwd, bias, stride, padding, cpu3x3 })
    }

    /// `[out, in, k, k]` weight shape.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    fn kernel(&self) -> usize {
        self.weight.dim(3).unwrap_or(1)
    }

    /// Step between neighbouring windows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The CPU kernels, when they apply to an input of `dtype`.
    fn cpu_kernels(&self, dtype: DType) -> Option<&Cpu3x3> {
        self.cpu3x3.as_ref().filter(|_| dtype == DType::F32)
    }

    /// Convolves `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(k) = self.cpu_kernels(x.dtype()) {
            return x.contiguous()?.apply_op2_no_bwd(&self.weight, &k.forward);
        }
        let (_, _, h, w) = x.dims4()?;
        let k = self.kernel();
        let y = match self.padding {
            Padding::Symmetric(p) => x.conv2d(&self.weight, p, self.stride, 1, 1)?,
            Padding::Same => {
                let (t, b) = self.padding.amounts(h, k, self.stride);
                let (l, r) = self.padding.amounts(w, k, self.stride);
                pad_spatial(x, t, b, l, r)?.conv2d(&self.weight, 0, self.stride, 1, 1)?
            }
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// `max(0, self.forward(x))`, in one pass on the CPU.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        match self.cpu_kernels(x.dtype()) {
            Some(k) => x.contiguous()?.apply_op2_no_bwd(&self.weight, &k.forward_relu),
            None => self.forward(x)?.relu(),
        }
    }

    /// Gradient with respect to the input of size `(h, w)`, given the output gradient.
    pub fn backward(&self, grad: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        if let Some(k) = self.cpu_kernels(grad.dtype()) {
            return grad.contiguous()?.apply_op2_no_bwd(&self.weight, &k.backward);
        }
        let weight_bwd = self.weight_bwd.as_ref().expect("kept for every layer without CPU kernels");
        let k = self.kernel();
        if let (1, Padding::Symmetric(p)) = (self.stride, self.padding) {
            if p < k {
                return grad.conv2d(weight_bwd, k - 1 - p, 1, 1, 1);
            }
        }
        let (t, b) = self.padding.amounts(h, k, self.stride);
        let (l, r) = self.padding.amounts(w, k, self.stride);
        let full = transposed_padding(grad, h + t + b, w + l + r, k, self.stride)?;
        full.conv2d(weight_bwd, 0, 1, 1, 1)?.narrow(2, t, h)?.narrow(3, l, w)
    }

    /// [`Conv2d::backward`] of the output gradient masked by a `u8` `mask` (the backward of a
    /// ReLU that followed this convolution), in one pass on the CPU.
    pub fn backward_masked(&self, grad: &Tensor, mask: &Tensor, size: (usize, usize)) -> Result<Tensor> {
        match self.cpu_kernels(grad.dtype()) {
            Some(k) => grad.contiguous()?.apply_op3_no_bwd(&self.weight, &mask.contiguous()?, &k.backward),
            None => self.backward(&(grad * mask.to_dtype(grad.dtype())?)?, size),
        }
    }

    /// Converts the parameters to `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let bias = self.bias.as_ref().map(|b| b.flatten_all()?.to_dtype(dtype)).transpose()?;
        Self::new(self.weight.to_dtype(dtype)?, bias, self.stride, self.padding)
    }
}

/// The CPU kernels of one convolution.
#[derive(Debug, Clone)]
struct Cpu3x3 {
    forward: Conv3x3Cpu,
    /// Forward with the following ReLU fused into it.
    forward_relu: Conv3x3Cpu,
    /// Input gradient (with the flipped, transposed weight), optionally masked.
    backward: Conv3x3Cpu,
}

/// Dilates an output gradient by the stride and zero-pads it so that a stride-1 "valid"
/// correlation with the flipped kernel yields the gradient of the padded input
/// (`padded_h x padded_w`).
fn transposed_padding(grad: &Tensor, padded_h: usize, padded_w: usize, k: usize, stride: usize) -> Result<Tensor> {
    let (_, _, ho, wo) = grad.dims4()?;
    let extra_h = padded_h - ((ho - 1) * stride + k);
    let extra_w = padded_w - ((wo - 1) * stride + k);
    pad_spatial(&dilate(grad, stride)?, k - 1, k - 1 + extra_h, k - 1, k - 1 + extra_w)
}

/// A depthwise convolution (`groups == channels`, one `k x k` filter per channel).
///
/// candle runs grouped convolutions as one convolution per group, which is slow for hundreds
/// of channels; here the op is a sum of `k * k` shifted, per-channel scaled copies of the input,
/// which vectorises well on every device.
#[derive(Debug, Clone)]
pub struct DepthwiseConv2d {
    /// `k * k` tensors of shape `[1, C, 1, 1]`, row-major over the kernel window.
    taps: Vec<Tensor>,
    bias: Option<Tensor>,
    kernel: usize,
    stride: usize,
    padding: Padding,
}

impl DepthwiseConv2d {
    /// Wraps a `[C, 1, k, k]` weight and an optional `[C]` bias.
    pub fn new(weight: &Tensor, bias: Option<Tensor>, stride: usize, padding: Padding) -> Result<Self> {
        let (c, _, k, _) = weight.dims4()?;
        let flat = weight.reshape((c, k * k))?;
        let taps = (0..k * k).map(|i| flat.narrow(1, i, 1)?.reshape((1, c, 1, 1))).collect::<Result<Vec<_>>>()?;
        let bias = bias.map(|b| b.reshape((1, (), 1, 1))).transpose()?;
        Ok(Self { taps, bias, kernel: k, stride, padding })
    }

    /// Step between neighbouring windows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Convolves `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (k, s) = (self.kernel, self.stride);
        let (t, b) = self.padding.amounts(h, k, s);
        let (l, r) = self.padding.amounts(w, k, s);
        let (ho, wo) = (output_len(h + t + b, k, s), output_len(w + l + r, k, s));
        // `s` spare zeros at the end let every strided window be cut with a plain reshape.
        let xp = pad_spatial(x, t, b + s, l, r + s)?;
        let y = correlate(&xp, self.taps.iter(), k, s, ho, wo)?;
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }

    /// Gradient with respect to the input of size `(h, w)`, given the output gradient.
    pub fn backward(&self, grad: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let (k, s) = (self.kernel, self.stride);
        let (t, b) = self.padding.amounts(h, k, s);
        let (l, r) = self.padding.amounts(w, k, s);
        let (hp, wp) = (h + t + b, w + l + r);
        let full = transposed_padding(grad, hp, wp, k, s)?;
        correlate(&full, self.taps.iter().rev(), k, 1, hp, wp)?.narrow(2, t, h)?.narrow(3, l, w)
    }

    /// Converts the parameters to `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            taps: self.taps.iter().map(|t| t.to_dtype(dtype)).collect::<Result<_>>()?,
            bias: self.bias.as_ref().map(|b| b.to_dtype(dtype)).transpose()?,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
        })
    }
}

/// `sum over (dy, dx) of taps[dy * k + dx] * x[.., dy + s * i, dx + s * j]` for an output of
/// `ho x wo`; `x` must extend at least `s - 1` elements past the last window.
fn correlate<'a>(
    x: &Tensor,
    taps: impl Iterator<Item = &'a Tensor>,
    k: usize,
    s: usize,
    ho: usize,
    wo: usize,
) -> Result<Tensor> {
    let (n, c, _, wp) = x.dims4()?;
    let mut acc: Option<Tensor> = None;
    for (i, tap) in taps.enumerate() {
        let (dy, dx) = (i / k, i % k);
        let window = if s == 1 {
            x.narrow(2, dy, ho)?.narrow(3, dx, wo)?
        } else {
            x.narrow(2, dy, s * ho)?
                .reshape((n, c, ho, s, wp))?
                .narrow(3, 0, 1)?
                .squeeze(3)?
                .narrow(3, dx, s * wo)?
                .reshape((n, c, ho, wo, s))?
                .narrow(4, 0, 1)?
                .squeeze(4)?
        };
        let term = window.broadcast_mul(tap)?;
        acc = Some(match acc {
            Some(a) => (a + term)?,
            None => term,
        });
    }
    acc.ok_or_else(|| candle_core::Error::Msg("depthwise kernel has no taps".into()))
}
