//! Convolutions with an explicit input-gradient backward.

use candle_core::{CustomOp2, CustomOp3, DType, Result, Tensor};

use super::cpu::{
    conv3x3_kernels, cpu_f32, Conv1x1Cpu, Conv3x3Cpu, DepthwiseCpu, MaskSlot, PackedWeights, PoolRouteCpu,
    PooledGradientCpu, UnfoldedConvCpu,
};
use super::elementwise::active_mask;
use super::padding::{dilate, output_len, pad_spatial, strided_window, Padding};

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
    /// dreamvid's own kernels for `F32` CPU tensors, for the shapes that have them; candle's
    /// ops everywhere else.
    cpu: Option<CpuKernels>,
}

/// The CPU kernels of one convolution.
#[derive(Debug, Clone)]
enum CpuKernels {
    /// 3x3, stride 1, padding 1: forward, forward fused with a ReLU, input gradient.
    Conv3x3([Conv3x3Cpu; 3]),
    /// 1x1, stride 1: GEMMs over bands of pixels, with the bias (empty: none) and the weight
    /// as the AVX2 kernel reads it.
    Conv1x1(Vec<f32>, PackedWeights),
    /// Any other square kernel with at most [`FEW_CHANNELS`] input channels (EfficientNet's
    /// 3x3/2 stem, GoogLeNet's 7x7/2 `conv1`): GEMMs over unfolded patches, with the bias
    /// (empty: none) and the weight as the AVX2 kernel reads it.
    Unfolded(Vec<f32>, PackedWeights),
}

/// A forward CPU kernel that can leave its activation's mask in a [`MaskSlot`].
enum MaskingKernel<'a> {
    /// The 1x1 kernel.
    Pointwise(Conv1x1Cpu<'a>),
    /// The unfolded kernel.
    Unfolded(UnfoldedConvCpu<'a>),
}

/// Input channels up to which a convolution without a dedicated kernel runs as GEMMs over
/// unfolded patches (their `cin * k * k` rows stay few).
const FEW_CHANNELS: usize = 4;

impl Conv2d {
    /// Wraps a `[out, in, k, k]` weight and an optional `[out]` bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>, stride: usize, padding: Padding) -> Result<Self> {
        let weight = weight.contiguous()?;
        let (_, cin, kh, kw) = weight.dims4()?;
        let bias_values = || bias.as_ref().map(|t| t.flatten_all()?.to_vec1::<f32>()).transpose();
        let cpu = if cpu_f32(&weight) {
            match (kh, kw, stride) {
                (3, 3, 1) if padding == Padding::Symmetric(1) => {
                    Some(CpuKernels::Conv3x3(conv3x3_kernels(bias_values()?)))
                }
                (1, 1, 1) if padding.amounts(1, 1, 1) == (0, 0) => {
                    Some(CpuKernels::Conv1x1(bias_values()?.unwrap_or_default(), PackedWeights::default()))
                }
                _ if kh == kw && cin <= FEW_CHANNELS => {
                    Some(CpuKernels::Unfolded(bias_values()?.unwrap_or_default(), PackedWeights::default()))
                }
                _ => None,
            }
        } else {
            None
        };
        let weight_bwd = match cpu {
            Some(_) => None,
            None => Some(weight.flip(&[2, 3])?.transpose(0, 1)?.contiguous()?),
        };
        let bias = bias.map(|b| b.reshape((1, (), 1, 1))).transpose()?;
        Ok(Self { weight, weight_bwd, bias, stride, padding, cpu })
    }

    /// `[out, in, k, k]` weight shape.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Whether this is a 1x1 convolution with stride 1 and no padding (a per-pixel linear map
    /// of the channels).
    pub fn is_pointwise(&self) -> bool {
        self.weight.dims()[2..] == [1, 1] && self.stride == 1 && self.padding.amounts(1, 1, 1) == (0, 0)
    }

    /// The convolutions `convs` (of one input width, kernel, stride and padding) as one whose
    /// output channels are theirs, in order: one GEMM instead of one per convolution, and
    /// their input gradients summed by that GEMM's backward.
    pub fn stack(convs: &[&Conv2d]) -> Result<Self> {
        let first = convs.first().ok_or_else(|| candle_core::Error::Msg("no convolutions to stack".into()))?;
        if convs.iter().any(|c| {
            (c.stride, c.padding, c.weight.dims()[1..].to_vec())
                != (first.stride, first.padding, first.weight.dims()[1..].to_vec())
        }) {
            candle_core::bail!("only convolutions of one input width, kernel, stride and padding stack");
        }
        let weight = Tensor::cat(&convs.iter().map(|c| &c.weight).collect::<Vec<_>>(), 0)?;
        let bias = if convs.iter().any(|c| c.bias.is_some()) {
            let biases = convs
                .iter()
                .map(|c| match &c.bias {
                    Some(b) => b.flatten_all(),
                    None => Tensor::zeros(c.weight.dim(0)?, c.weight.dtype(), c.weight.device()),
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        Self::new(weight, bias, first.stride, first.padding)
    }

    fn kernel(&self) -> usize {
        self.weight.dim(3).unwrap_or(1)
    }

    /// Step between neighbouring windows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The CPU kernels, when they apply to an input of `dtype`.
    fn cpu_kernels(&self, dtype: DType) -> Option<&CpuKernels> {
        self.cpu.as_ref().filter(|_| dtype == DType::F32)
    }

    /// The 1x1 kernel with `bias`, clamp, direction and the layer's packed weights.
    fn conv1x1<'a>(bias: &'a [f32], packed: &'a PackedWeights, clamp: Option<f32>, gradient: bool) -> Conv1x1Cpu<'a> {
        Conv1x1Cpu { bias: (!bias.is_empty() && !gradient).then_some(bias), clamp, gradient, mask: None, packed }
    }

    /// The geometry, bias, clamp and direction of the unfolded kernel for an `h x w` input.
    fn strided<'a>(
        &self,
        bias: &'a [f32],
        (h, w): (usize, usize),
        clamp: Option<f32>,
        gradient: bool,
    ) -> DepthwiseCpu<'a> {
        let (k, s) = (self.kernel(), self.stride);
        let ((t, b), (l, r)) = (self.padding.amounts(h, k, s), self.padding.amounts(w, k, s));
        let out = if gradient { (h, w) } else { (output_len(h + t + b, k, s), output_len(w + l + r, k, s)) };
        let bias = (!bias.is_empty() && !gradient).then_some(bias);
        DepthwiseCpu { bias, stride: s, pad: (t, l), out, clamp, gradient, mask: None }
    }

    /// The CPU kernel's result for `x` (the input, or with `gradient` the output gradient, of
    /// an input of `size`), `x` masked by `mask` where given and the forward clamped to
    /// `[0, clamp]`; `None` where no CPU kernel does that.
    fn on_cpu(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        size: (usize, usize),
        clamp: Option<f32>,
        gradient: bool,
    ) -> Option<Result<Tensor>> {
        let kernels = self.cpu_kernels(x.dtype())?;
        Some(match kernels {
            CpuKernels::Conv3x3([forward, forward_relu, backward]) => {
                let op = match (gradient, clamp) {
                    (true, _) => backward,
                    (false, None) => forward,
                    (false, Some(upper)) if upper == f32::INFINITY => forward_relu,
                    _ => return None,
                };
                apply_cpu(x, &self.weight, mask, op)
            }
            CpuKernels::Conv1x1(bias, packed) => {
                apply_cpu(x, &self.weight, mask, &Self::conv1x1(bias, packed, clamp, gradient))
            }
            CpuKernels::Unfolded(bias, packed) => {
                let conv = self.strided(bias, size, clamp, gradient);
                apply_cpu(x, &self.weight, mask, &UnfoldedConvCpu { conv, packed })
            }
        })
    }

    /// Convolves `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        if let Some(y) = self.on_cpu(x, None, (h, w), None, false) {
            return y;
        }
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

    /// `self.forward(x)` clamped to `[0, upper]` (ReLU: infinity, ReLU6: 6), in one pass on
    /// the CPU where a kernel fuses it.
    pub fn forward_activated(&self, x: &Tensor, upper: f32) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        match self.on_cpu(x, None, (h, w), Some(upper), false) {
            Some(y) => y,
            None if upper == f32::INFINITY => self.forward(x)?.relu(),
            None => self.forward(x)?.clamp(0.0, upper),
        }
    }

    /// [`Conv2d::forward_activated`] and the activation's `u8` mask (see [`active_mask`]),
    /// written by the 1x1 kernel, and by the unfolded one on AVX2 CPUs, while their output is
    /// in cache (by a pass of its own elsewhere).
    pub fn forward_activated_masked(&self, x: &Tensor, upper: f32) -> Result<(Tensor, Tensor)> {
        let (_, _, h, w) = x.dims4()?;
        let fused = match self.cpu_kernels(x.dtype()) {
            Some(CpuKernels::Conv1x1(bias, packed)) => {
                Some(MaskingKernel::Pointwise(Self::conv1x1(bias, packed, Some(upper), false)))
            }
            Some(CpuKernels::Unfolded(bias, packed)) => {
                let conv = self.strided(bias, (h, w), Some(upper), false);
                Some(MaskingKernel::Unfolded(UnfoldedConvCpu { conv, packed }))
            }
            _ => None,
        }
        .map(|kernel| {
            move |slot: &MaskSlot| match kernel {
                MaskingKernel::Pointwise(k) => apply_cpu(x, &self.weight, None, &Conv1x1Cpu { mask: Some(slot), ..k }),
                MaskingKernel::Unfolded(k) => {
                    let conv = DepthwiseCpu { mask: Some(slot), ..k.conv };
                    apply_cpu(x, &self.weight, None, &UnfoldedConvCpu { conv, ..k })
                }
            }
        });
        with_mask(fused, || self.forward_activated(x, upper), upper)
    }

    /// Gradient with respect to the input of size `(h, w)`, given the output gradient.
    pub fn backward(&self, grad: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        if let Some(g) = self.on_cpu(grad, None, (h, w), None, true) {
            return g;
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

    /// [`Conv2d::backward`] of the output gradient masked by a `u8` `mask` (the backward of the
    /// activation that followed this convolution), in one pass on the CPU.
    pub fn backward_masked(&self, grad: &Tensor, mask: &Tensor, size: (usize, usize)) -> Result<Tensor> {
        match self.on_cpu(grad, Some(mask), size, None, true) {
            Some(g) => g,
            None => self.backward(&(grad * mask.to_dtype(grad.dtype())?)?, size),
        }
    }

    /// Gradient with respect to the input of size `size` of this convolution followed by a
    /// ReLU and a 2x2 max-pool, from the pool's output gradient and the pool's mask of
    /// positive maxima (CPU `F32` tensors; the mask from `PoolMaskCpu { positive: true }`).
    /// 3x3 convolutions take it in one pass, without the routed gradient in between.
    pub fn backward_pooled(&self, grad: &Tensor, mask: &Tensor, size: (usize, usize)) -> Result<Tensor> {
        let (grad, mask) = (grad.contiguous()?, mask.contiguous()?);
        match self.cpu_kernels(grad.dtype()) {
            Some(CpuKernels::Conv3x3([.., backward])) => {
                grad.apply_op3_no_bwd(&self.weight, &mask, &PooledGradientCpu(backward))
            }
            _ => self.backward(&grad.apply_op2_no_bwd(&mask, &PoolRouteCpu)?, size),
        }
    }

    /// Converts the parameters to `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let bias = self.bias.as_ref().map(|b| b.flatten_all()?.to_dtype(dtype)).transpose()?;
        Self::new(self.weight.to_dtype(dtype)?, bias, self.stride, self.padding)
    }
}

/// An activated output and the `u8` mask of its activation's linear range `(0, upper)`: from
/// `fused` (a forward kernel that leaves the mask in the [`MaskSlot`] it is given) where there
/// is one, else from `plain` with [`active_mask`] after it.
fn with_mask(
    fused: Option<impl FnOnce(&MaskSlot) -> Result<Tensor>>,
    plain: impl FnOnce() -> Result<Tensor>,
    upper: f32,
) -> Result<(Tensor, Tensor)> {
    let slot = MaskSlot::default();
    let y = match fused {
        Some(run) => run(&slot)?,
        None => plain()?,
    };
    let mask = match slot.take() {
        Some(mask) => Tensor::from_vec(mask, y.shape(), y.device())?,
        None => active_mask(&y, upper)?,
    };
    Ok((y, mask))
}

/// Runs a CPU kernel on the contiguous `x` and `weight`, with `mask` (shaped like `x`) as its
/// third operand where given.
fn apply_cpu<C: CustomOp2 + CustomOp3>(x: &Tensor, weight: &Tensor, mask: Option<&Tensor>, op: &C) -> Result<Tensor> {
    let x = x.contiguous()?;
    match mask {
        Some(mask) => x.apply_op3_no_bwd(weight, &mask.contiguous()?, op),
        None => x.apply_op2_no_bwd(weight, op),
    }
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
/// which vectorises well on every device. On the CPU in `F32` it runs as one fused kernel
/// instead ([`super::cpu`]).
#[derive(Debug, Clone)]
pub struct DepthwiseConv2d {
    /// `[C, 1, k, k]`, contiguous.
    weight: Tensor,
    /// `k * k` tensors of shape `[1, C, 1, 1]`, row-major over the kernel window.
    taps: Vec<Tensor>,
    bias: Option<Tensor>,
    /// The bias for the CPU kernel, when the weight is an `F32` CPU tensor (empty: no bias).
    cpu_bias: Option<Vec<f32>>,
    kernel: usize,
    stride: usize,
    padding: Padding,
}

impl DepthwiseConv2d {
    /// Wraps a `[C, 1, k, k]` weight and an optional `[C]` bias.
    pub fn new(weight: &Tensor, bias: Option<Tensor>, stride: usize, padding: Padding) -> Result<Self> {
        let weight = weight.contiguous()?;
        let (c, _, k, _) = weight.dims4()?;
        let flat = weight.reshape((c, k * k))?;
        let taps = (0..k * k).map(|i| flat.narrow(1, i, 1)?.reshape((1, c, 1, 1))).collect::<Result<Vec<_>>>()?;
        let cpu_bias = if cpu_f32(&weight) {
            Some(bias.as_ref().map(|b| b.flatten_all()?.to_vec1::<f32>()).transpose()?.unwrap_or_default())
        } else {
            None
        };
        let bias = bias.map(|b| b.reshape((1, (), 1, 1))).transpose()?;
        Ok(Self { weight, taps, bias, cpu_bias, kernel: k, stride, padding })
    }

    /// Step between neighbouring windows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Zeros before and after the rows and columns of an `h x w` input, and the output size.
    fn geometry(&self, h: usize, w: usize) -> ((usize, usize), (usize, usize), (usize, usize)) {
        let (k, s) = (self.kernel, self.stride);
        let ((t, b), (l, r)) = (self.padding.amounts(h, k, s), self.padding.amounts(w, k, s));
        ((t, b), (l, r), (output_len(h + t + b, k, s), output_len(w + l + r, k, s)))
    }

    /// The CPU kernel for `F32` tensors, when this layer has one.
    fn cpu_kernel(&self, dtype: DType, (h, w): (usize, usize), gradient: bool) -> Option<DepthwiseCpu<'_>> {
        let bias = self.cpu_bias.as_ref().filter(|_| dtype == DType::F32)?;
        let ((t, _), (l, _), out) = self.geometry(h, w);
        Some(DepthwiseCpu {
            bias: (!bias.is_empty() && !gradient).then_some(&bias[..]),
            stride: self.stride,
            pad: (t, l),
            out: if gradient { (h, w) } else { out },
            clamp: None,
            gradient,
            mask: None,
        })
    }

    /// Convolves `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        if let Some(kernel) = self.cpu_kernel(x.dtype(), (h, w), false) {
            return apply_cpu(x, &self.weight, None, &kernel);
        }
        let (k, s) = (self.kernel, self.stride);
        let ((t, b), (l, r), (ho, wo)) = self.geometry(h, w);
        // `s` spare zeros at the end let every strided window be cut with a plain reshape.
        let xp = pad_spatial(x, t, b + s, l, r + s)?;
        let y = correlate(&xp, self.taps.iter(), k, s, ho, wo)?;
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }

    /// `self.forward(x)` clamped to `[0, upper]` (ReLU6: 6), in one pass on the CPU.
    pub fn forward_clamped(&self, x: &Tensor, upper: f32) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        match self.cpu_kernel(x.dtype(), (h, w), false) {
            Some(kernel) => apply_cpu(x, &self.weight, None, &DepthwiseCpu { clamp: Some(upper), ..kernel }),
            None => self.forward(x)?.clamp(0.0, upper),
        }
    }

    /// [`DepthwiseConv2d::forward_clamped`] and the clamp's `u8` mask (see [`active_mask`]),
    /// written by the CPU kernel while its output is in cache.
    pub fn forward_clamped_masked(&self, x: &Tensor, upper: f32) -> Result<(Tensor, Tensor)> {
        let (_, _, h, w) = x.dims4()?;
        let fused = self.cpu_kernel(x.dtype(), (h, w), false).map(|kernel| {
            move |slot: &MaskSlot| {
                apply_cpu(x, &self.weight, None, &DepthwiseCpu { clamp: Some(upper), mask: Some(slot), ..kernel })
            }
        });
        with_mask(fused, || self.forward_clamped(x, upper), upper)
    }

    /// Gradient with respect to the input of size `(h, w)`, given the output gradient.
    pub fn backward(&self, grad: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        if let Some(kernel) = self.cpu_kernel(grad.dtype(), (h, w), true) {
            return apply_cpu(grad, &self.weight, None, &kernel);
        }
        let (k, s) = (self.kernel, self.stride);
        let ((t, b), (l, r), _) = self.geometry(h, w);
        let (hp, wp) = (h + t + b, w + l + r);
        let full = transposed_padding(grad, hp, wp, k, s)?;
        correlate(&full, self.taps.iter().rev(), k, 1, hp, wp)?.narrow(2, t, h)?.narrow(3, l, w)
    }

    /// [`DepthwiseConv2d::backward`] of the output gradient masked by a `u8` `mask` (the
    /// backward of the clamp that followed this convolution), in one pass on the CPU.
    pub fn backward_masked(&self, grad: &Tensor, mask: &Tensor, size: (usize, usize)) -> Result<Tensor> {
        match self.cpu_kernel(grad.dtype(), size, true) {
            Some(kernel) => apply_cpu(grad, &self.weight, Some(mask), &kernel),
            None => self.backward(&(grad * mask.to_dtype(grad.dtype())?)?, size),
        }
    }

    /// Converts the parameters to `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let bias = self.bias.as_ref().map(|b| b.flatten_all()?.to_dtype(dtype)).transpose()?;
        Self::new(&self.weight.to_dtype(dtype)?, bias, self.stride, self.padding)
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
    let mut acc: Option<Tensor> = None;
    for (i, tap) in taps.enumerate() {
        let window = strided_window(x, (i / k, i % k), s, (ho, wo))?;
        let term = window.broadcast_mul(tap)?;
        acc = Some(match acc {
            Some(a) => (a + term)?,
            None => term,
        });
    }
    acc.ok_or_else(|| candle_core::Error::Msg("depthwise kernel has no taps".into()))
}
