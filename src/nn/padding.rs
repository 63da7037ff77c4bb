//! Spatial padding rules, the zero-insertion used by strided backward passes, strided window
//! views, and which windows of a padded row read inside it.

use candle_core::{Result, Tensor};

/// How a convolution pads its input before sliding the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// The same number of zeros on every side (PyTorch style).
    Symmetric(usize),
    /// TensorFlow "SAME": output size is `ceil(input / stride)`, the odd extra zero goes to the
    /// bottom/right side.
    Same,
}

impl Padding {
    /// `(before, after)` zeros along one axis of length `size` for a kernel and stride.
    pub fn amounts(self, size: usize, kernel: usize, stride: usize) -> (usize, usize) {
        match self {
            Padding::Symmetric(p) => (p, p),
            Padding::Same => {
                let out = size.div_ceil(stride);
                let total = ((out - 1) * stride + kernel).saturating_sub(size);
                (total / 2, total - total / 2)
            }
        }
    }
}

/// Output length of a strided window over `padded` elements.
pub fn output_len(padded: usize, kernel: usize, stride: usize) -> usize {
    (padded - kernel) / stride + 1
}

/// Output columns `j` (of `wo`, windows `stride` apart after `left` zeros) whose tap at column
/// offset `dx` reads an input column inside `0..w`.
pub(super) fn columns(dx: usize, (stride, left): (usize, usize), w: usize, wo: usize) -> std::ops::Range<usize> {
    let lo = left.saturating_sub(dx).div_ceil(stride);
    let hi = if w + left > dx { ((w + left - dx - 1) / stride + 1).min(wo) } else { 0 };
    lo..hi.max(lo)
}

/// Zero-pads the two spatial dimensions of an NCHW tensor.
pub fn pad_spatial(x: &Tensor, top: usize, bottom: usize, left: usize, right: usize) -> Result<Tensor> {
    x.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)
}

/// Pads the two spatial dimensions of an NCHW tensor with negative infinity: positions no
/// maximum is ever taken from.
pub fn pad_spatial_neg_inf(x: &Tensor, top: usize, bottom: usize, left: usize, right: usize) -> Result<Tensor> {
    let fill = |x: &Tensor, dim: usize, len: usize| {
        let mut dims = x.dims().to_vec();
        dims[dim] = len;
        Tensor::full(f32::NEG_INFINITY, dims, x.device())?.to_dtype(x.dtype())
    };
    let pad = |x: Tensor, dim: usize, before: usize, after: usize| -> Result<Tensor> {
        if before + after == 0 {
            return Ok(x);
        }
        Tensor::cat(&[fill(&x, dim, before)?, x.clone(), fill(&x, dim, after)?], dim)
    };
    pad(pad(x.clone(), 2, top, bottom)?, 3, left, right)
}

/// The `ho x wo` elements `x[.., dy + s * i, dx + s * j]` of an NCHW tensor: the input of window
/// offset `(dy, dx)` of a strided sliding window. `x` must extend to row `dy + s * ho` and
/// column `dx + s * wo` (exclusive), i.e. `s - 1` elements past the last window, so that the
/// stride can be cut with a plain reshape.
pub fn strided_window(x: &Tensor, (dy, dx): (usize, usize), s: usize, (ho, wo): (usize, usize)) -> Result<Tensor> {
    if s == 1 {
        return x.narrow(2, dy, ho)?.narrow(3, dx, wo);
    }
    let (n, c, _, wp) = x.dims4()?;
    x.narrow(2, dy, s * ho)?
        .reshape((n, c, ho, s, wp))?
        .narrow(3, 0, 1)?
        .squeeze(3)?
        .narrow(3, dx, s * wo)?
        .reshape((n, c, ho, wo, s))?
        .narrow(4, 0, 1)?
        .squeeze(4)
}

/// Inserts `stride - 1` zeros between neighbouring pixels of an NCHW tensor (both spatial axes),
/// turning the gradient of a strided op into the gradient of its stride-1 equivalent.
pub fn dilate(x: &Tensor, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.clone());
    }
    let (n, c, h, w) = x.dims4()?;
    let rows = x.unsqueeze(3)?.pad_with_zeros(3, 0, stride - 1)?.reshape((n, c, h * stride, w))?.narrow(
        2,
        0,
        (h - 1) * stride + 1,
    )?;
    let h2 = (h - 1) * stride + 1;
    rows.unsqueeze(4)?.pad_with_zeros(4, 0, stride - 1)?.reshape((n, c, h2, w * stride))?.narrow(
        3,
        0,
        (w - 1) * stride + 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn same_padding_matches_tensorflow() {
        // stride 2, kernel 3 on an even size: one zero, at the end.
        assert_eq!(Padding::Same.amounts(224, 3, 2), (0, 1));
        // odd size: one zero each side.
        assert_eq!(Padding::Same.amounts(225, 3, 2), (1, 1));
        assert_eq!(Padding::Same.amounts(56, 5, 1), (2, 2));
        assert_eq!(Padding::Same.amounts(28, 5, 2), (1, 2));
        assert_eq!(Padding::Symmetric(1).amounts(7, 3, 1), (1, 1));
    }

    #[test]
    fn dilate_inserts_zeros() -> Result<()> {
        let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu)?;
        let d = dilate(&x, 2)?;
        assert_eq!(
            d.squeeze(0)?.squeeze(0)?.to_vec2::<f32>()?,
            vec![vec![1., 0., 2.], vec![0., 0., 0.], vec![3., 0., 4.]]
        );
        Ok(())
    }
}
