//! Max-pooling over any square window, stride and padding, in floor or ceil mode (PyTorch's
//! `MaxPool2d`), with an input-gradient backward that routes each output's gradient to the
//! first maximum of its window in row-major scan order, as PyTorch does; overlapping windows
//! add up.

use candle_core::{DType, Result, Tensor};

use super::cpu::{cpu_f32, MaxPoolCpu, MaxPoolGradientCpu, Window};
use super::padding::{dilate, pad_spatial, pad_spatial_neg_inf, strided_window};

/// A max-pool layer. Padding and the part of a ceil-mode window that hangs over the input's
/// bottom/right edge hold no values: they never win (as if they were negative infinity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool {
    window: Window,
    ceil: bool,
}

impl MaxPool {
    /// A `kernel x kernel` window moved by `stride`, `padding` positions before the first
    /// row/column, and with `ceil` the output size rounded up rather than down. Like PyTorch,
    /// the padding may be at most half the kernel.
    pub fn new(kernel: usize, stride: usize, padding: usize, ceil: bool) -> Result<Self> {
        // Window offsets are recorded as `u8`.
        if !(1..=16).contains(&kernel) || stride == 0 || padding > kernel / 2 {
            candle_core::bail!(
                "max-pool {kernel}x{kernel}/{stride} with padding {padding}: the kernel must be 1 to 16, the \
                 stride positive and the padding at most half the kernel"
            );
        }
        Ok(Self { window: Window { kernel, stride, padding }, ceil })
    }

    /// Step between neighbouring windows.
    pub fn stride(&self) -> usize {
        self.window.stride
    }

    /// Output length along an axis of `len` input elements (PyTorch's `pooling_output_shape`):
    /// in ceil mode a last, partial window counts as long as it starts inside the input or
    /// its left padding. 0 when not even one window fits.
    pub fn output_len(&self, len: usize) -> usize {
        let Window { kernel, stride, padding } = self.window;
        let extra = if self.ceil { stride - 1 } else { 0 };
        // Floor division of a possibly negative span, as PyTorch's `div_rtn`.
        let windows = (len + 2 * padding + extra) as isize - kernel as isize;
        let out = (windows.div_euclid(stride as isize) + 1).max(0) as usize;
        if self.ceil && out > 0 && (out - 1) * stride >= len + padding {
            out - 1
        } else {
            out
        }
    }

    /// Output size for an `h x w` input, or an error saying the input is too small.
    fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let (ho, wo) = (self.output_len(h), self.output_len(w));
        if ho == 0 || wo == 0 {
            candle_core::bail!("{self}: a {h}x{w} input is smaller than one window; give the network a larger image");
        }
        Ok((ho, wo))
    }

    /// Pools `x`; with `record`, also returns the `u8` offset of each output's maximum inside
    /// its window (`dy * kernel + dx`), which [`MaxPool::backward`] routes the gradient by.
    pub(super) fn forward(&self, x: &Tensor, record: bool) -> Result<(Tensor, Option<Tensor>)> {
        let (_, _, h, w) = x.dims4()?;
        let out = self.output_size(h, w)?;
        if cpu_f32(x) {
            return MaxPoolCpu { window: self.window, out }.run(x, record);
        }
        let Window { kernel: k, stride: s, padding: p } = self.window;
        // Negative infinity around the input, far enough that every window (and the `s - 1`
        // elements the strided cut needs past the last one) lies inside.
        let (rows, cols) = (k - 1 + s * out.0, k - 1 + s * out.1);
        let padded = pad_spatial_neg_inf(x, p, rows.saturating_sub(p + h), p, cols.saturating_sub(p + w))?
            .narrow(2, 0, rows)?
            .narrow(3, 0, cols)?;
        let windows =
            (0..k * k).map(|o| strided_window(&padded, (o / k, o % k), s, out)).collect::<Result<Vec<_>>>()?;
        let mut y = windows[0].clone();
        for window in &windows[1..] {
            y = y.maximum(window)?;
        }
        let offsets = if record {
            // Walking the offsets backwards, the first maximum in scan order is written last.
            let mut offsets = y.zeros_like()?.to_dtype(DType::U8)?;
            for (o, window) in windows.iter().enumerate().rev() {
                let o = Tensor::new(o as u8, y.device())?.broadcast_as(y.shape())?;
                offsets = window.eq(&y)?.where_cond(&o, &offsets)?;
            }
            Some(offsets)
        } else {
            None
        };
        Ok((y, offsets))
    }

    /// Gradient with respect to the input of size `(h, w)`, from the output gradient and the
    /// offsets [`MaxPool::forward`] recorded.
    pub(super) fn backward(&self, grad: &Tensor, offsets: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        if cpu_f32(grad) {
            let op = MaxPoolGradientCpu { window: self.window, input: (h, w) };
            return grad.contiguous()?.apply_op2_no_bwd(&offsets.contiguous()?, &op);
        }
        let Window { kernel: k, stride: s, padding: p } = self.window;
        let (_, _, ho, wo) = grad.dims4()?;
        // The gradient of each window offset, spread to its input positions over the rows and
        // columns all windows cover (starting at the padding).
        let mut covered: Option<Tensor> = None;
        for o in 0..k * k {
            let (dy, dx) = (o / k, o % k);
            let part = dilate(&(grad * offsets.eq(o as f64)?.to_dtype(grad.dtype())?)?, s)?;
            let part = pad_spatial(&part, dy, k - 1 - dy, dx, k - 1 - dx)?;
            covered = Some(match covered {
                Some(sum) => (sum + part)?,
                None => part,
            });
        }
        let covered = covered.expect("a window has at least one position");
        let (rows, cols) = ((ho - 1) * s + k, (wo - 1) * s + k);
        let covered = pad_spatial(&covered, 0, (p + h).saturating_sub(rows), 0, (p + w).saturating_sub(cols))?;
        covered.narrow(2, p, h)?.narrow(3, p, w)
    }
}

impl std::fmt::Display for MaxPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Window { kernel, stride, padding } = self.window;
        write!(f, "maxpool {kernel}x{kernel}/{stride}")?;
        if padding > 0 {
            write!(f, " pad {padding}")?;
        }
        if self.ceil {
            write!(f, " ceil")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_follow_pytorch_in_floor_and_ceil_mode() {
        let pool = |k, s, p, ceil| MaxPool::new(k, s, p, ceil).unwrap();
        // Ceil mode keeps a last, partial window that floor mode drops.
        assert_eq!(pool(3, 2, 0, true).output_len(90), 45);
        assert_eq!(pool(3, 2, 0, false).output_len(90), 44);
        assert_eq!(pool(3, 2, 0, true).output_len(114), 57);
        assert_eq!(pool(3, 2, 0, false).output_len(114), 56);
        assert_eq!(pool(2, 2, 0, true).output_len(7), 4);
        assert_eq!(pool(2, 2, 0, false).output_len(7), 3);
        // ... but not one that would start past the input.
        assert_eq!(pool(3, 2, 0, true).output_len(112), 56);
        assert_eq!(pool(3, 1, 1, true).output_len(28), 28);
        assert_eq!(pool(3, 2, 1, true).output_len(5), 3);
        assert_eq!(pool(3, 2, 0, true).output_len(1), 0);
        assert_eq!(pool(3, 2, 0, true).output_len(2), 1);
        assert!(MaxPool::new(3, 2, 2, true).is_err(), "padding over half the kernel");
        assert!(MaxPool::new(17, 1, 0, true).is_err(), "offsets must fit a u8");
    }
}
