//! Max-pool over any square window with zero or more padding and any output size (PyTorch's
//! `MaxPool2d`, ceil mode included) with the window offsets of its first maxima, and the
//! gradient routed back through them: one parallel pass over the planes of a contiguous NCHW
//! tensor each. The scan keeps [`LANES`] neighbouring outputs in registers over the padded
//! input rows, so that it vectorises, and yields the maxima and their offsets together.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::operands::{f32_data, u8_data};
use crate::nn::padding::columns;

/// A square pooling window sliding over both spatial axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Side of the window.
    pub kernel: usize,
    /// Step between neighbouring windows.
    pub stride: usize,
    /// Positions before the first row and column that belong to no input (they never win).
    pub padding: usize,
}

/// Max-pool of an `F32` NCHW tensor to an `out` (`ho x wo`) output: each element the first
/// maximum of its window, scanning row-major, windows clipped to the input (ceil mode lets the
/// last ones hang over the bottom/right edge); and, where asked, the `U8` offset of that
/// maximum inside its window (`dy * kernel + dx`, padding counted), shaped like the output:
/// what [`MaxPoolGradientCpu`] reads. See [`MaxPoolCpu::run`].
#[derive(Debug, Clone, Copy)]
pub struct MaxPoolCpu {
    /// The window.
    pub window: Window,
    /// Output size.
    pub out: (usize, usize),
}

/// Max-pool backward: an `[N, C, ho, wo]` gradient (first operand) added, element by element,
/// to the input position that [`MaxPoolCpu`]'s offsets (second operand) name, giving
/// `[N, C, h, w]`. Overlapping windows accumulate.
#[derive(Debug, Clone, Copy)]
pub struct MaxPoolGradientCpu {
    /// The window.
    pub window: Window,
    /// Spatial size of the pool's input.
    pub input: (usize, usize),
}

/// Outputs of a row one scan computes together, in registers.
const LANES: usize = 16;

/// Maxima and their offsets of [`LANES`] neighbouring windows.
type Lanes = ([f32; LANES], [f32; LANES]);

/// One window position of [`LANES`] neighbouring windows: `src[l * S]` replaces maximum `l`,
/// and `offset` its offset, where it is greater or NaN. (Offsets are held as `f32`, exact for
/// these small integers, so that both selects share one vector mask; taking and returning the
/// lanes by value keeps them in registers.)
#[inline(always)]
fn scan<const S: usize>(src: &[f32], offset: f32, (best, at): Lanes) -> Lanes {
    let src = &src[..(LANES - 1) * S + 1];
    let v: [f32; LANES] = std::array::from_fn(|l| src[l * S]);
    let take: [bool; LANES] = std::array::from_fn(|l| (v[l] > best[l]) | v[l].is_nan());
    (
        std::array::from_fn(|l| if take[l] { v[l] } else { best[l] }),
        std::array::from_fn(|l| if take[l] { offset } else { at[l] }),
    )
}

multiversion! {
    /// Output row `i` of the max-pool with `window` `(kernel, stride, padding)` of a plane of
    /// `h` rows, given as `padded`: rows of `pw` values (`size`: `(h, pw)`), each the input row
    /// behind `padding` negative infinities and followed by more, up to what `best.len()`
    /// outputs rounded up to [`LANES`] read. Writes the first maximum of each window in
    /// row-major order to `best` and its offset in the window to `at`. Like PyTorch, a later
    /// element wins when it is greater or NaN, padding never wins, and a window of negative
    /// infinities keeps its first position inside the input.
    pub fn pool_row(
        padded: &[f32],
        size: (usize, usize),
        window: (usize, usize, usize),
        i: usize,
        best: &mut [f32],
        at: &mut [u32],
    ) {
        let ((h, pw), (kernel, stride, padding)) = (size, window);
        let first_row = padding.saturating_sub(i * stride);
        for (chunk, (best, at)) in best.chunks_mut(LANES).zip(at.chunks_mut(LANES)).enumerate() {
            let j0 = chunk * LANES;
            let mut lanes: Lanes = ([f32::NEG_INFINITY; LANES], [(first_row * kernel) as f32; LANES]);
            // Windows starting in the left padding start inside the input further right.
            for (l, a) in lanes.1.iter_mut().enumerate().take(padding.div_ceil(stride).saturating_sub(j0)) {
                *a += (padding - (j0 + l) * stride) as f32;
            }
            for dy in 0..kernel {
                let Some(r) = (i * stride + dy).checked_sub(padding).filter(|&r| r < h) else {
                    continue;
                };
                let row = &padded[r * pw..][..pw];
                for dx in 0..kernel {
                    let offset = (dy * kernel + dx) as f32;
                    let src = &row[j0 * stride + dx..];
                    // Constant strides let the compiler drop the bounds checks and vectorise.
                    lanes = match stride {
                        1 => scan::<1>(src, offset, lanes),
                        2 => scan::<2>(src, offset, lanes),
                        _ => {
                            let picked: [f32; LANES] = std::array::from_fn(|l| src[l * stride]);
                            scan::<1>(&picked, offset, lanes)
                        }
                    };
                }
            }
            let (b, a) = lanes;
            best.copy_from_slice(&b[..best.len()]);
            at.iter_mut().zip(a).for_each(|(at, a)| *at = a as u32);
        }
    }
}

multiversion! {
    /// Adds output row `i` of a stride-1 max-pool's gradient, `g` (`wo` long), to the input
    /// positions of an `h x w` (`size`) gradient plane `dx` that its window `offsets` name, for
    /// a `kernel x kernel` window with `padding`: one pass per window position over the whole
    /// row, which vectorises. `columns[dx]` are the outputs whose window column `dx` lies
    /// inside the input.
    pub fn route_row(
        g: &[f32],
        offsets: &[u8],
        size: (usize, usize),
        window: (usize, usize),
        columns: &[std::ops::Range<usize>],
        i: usize,
        dx: &mut [f32],
    ) {
        let ((h, w), (kernel, padding)) = (size, window);
        for dy in 0..kernel {
            let Some(r) = (i + dy).checked_sub(padding).filter(|&r| r < h) else {
                continue;
            };
            let row = &mut dx[r * w..][..w];
            for (dxk, js) in columns.iter().enumerate() {
                let offset = (dy * kernel + dxk) as u8;
                let dst = &mut row[js.start + dxk - padding..][..js.len()];
                let (g, offsets) = (&g[js.clone()], &offsets[js.clone()]);
                for (d, (&v, &o)) in dst.iter_mut().zip(g.iter().zip(offsets)) {
                    *d += if o == offset { v } else { 0.0 };
                }
            }
        }
    }
}

impl Window {
    /// Calls `visit(output, input)` for every element `output` of an `ho x wo` plane, with the
    /// position `input` (in an `h x w` plane) that its offset in `offsets` names. The forward
    /// only picks positions inside the input; one outside (a damaged offset) is skipped.
    fn positions(
        &self,
        offsets: &[u8],
        (ho, wo): (usize, usize),
        (h, w): (usize, usize),
        mut visit: impl FnMut(usize, usize),
    ) {
        let (k, s, p) = (self.kernel, self.stride as isize, self.padding as isize);
        let table: Vec<(isize, isize)> = (0..k * k).map(|o| ((o / k) as isize, (o % k) as isize)).collect();
        for i in 0..ho {
            let top = i as isize * s - p;
            for (j, &offset) in offsets[i * wo..][..wo].iter().enumerate() {
                let (dy, dx) = table[usize::from(offset)];
                let (r, c) = (top + dy, j as isize * s - p + dx);
                if (0..h as isize).contains(&r) && (0..w as isize).contains(&c) {
                    visit(i * wo + j, r as usize * w + c as usize);
                }
            }
        }
    }
}

impl MaxPoolCpu {
    /// The max-pool of the `F32` CPU tensor `x` and, with `offsets`, the offsets of its maxima,
    /// from one scan (a custom op would give one tensor, so this reads `x`'s storage itself).
    pub fn run(&self, x: &Tensor, offsets: bool) -> Result<(Tensor, Option<Tensor>)> {
        let x = x.contiguous()?;
        let (n, c, h, w) = x.dims4()?;
        if self.window.kernel * self.window.kernel > usize::from(u8::MAX) + 1 {
            candle_core::bail!("maxpool-cpu: a {0}x{0} window has too many offsets for a u8", self.window.kernel);
        }
        let (values, at) = {
            let (storage, layout) = x.storage_and_layout();
            let Storage::Cpu(storage) = &*storage else { candle_core::bail!("maxpool-cpu: CPU tensor expected") };
            self.pooled(f32_data(storage, layout, "maxpool-cpu")?, n * c, (h, w))
        };
        let shape = (n, c, self.out.0, self.out.1);
        let at = offsets.then(|| Tensor::from_vec(at, shape, x.device())).transpose()?;
        Ok((Tensor::from_vec(values, shape, x.device())?, at))
    }

    /// The first maximum of every output's window and its offset, for the `planes` planes of
    /// `h x w` in `x`.
    fn pooled(&self, x: &[f32], planes: usize, (h, w): (usize, usize)) -> (Vec<f32>, Vec<u8>) {
        let (ho, wo) = self.out;
        let Window { kernel, stride, padding } = self.window;
        let mut values = vec![0f32; planes * ho * wo];
        let mut offsets = vec![0u8; planes * ho * wo];
        if ho * wo > 0 && h * w > 0 {
            // Rows padded with negative infinity: before them, and after them as far as the
            // last output rounded up to whole scans reads.
            let pw = wo.div_ceil(LANES) * LANES * stride + kernel;
            let buffers = (vec![0f32; h * pw], vec![0u32; wo]);
            values.par_chunks_mut(ho * wo).zip(offsets.par_chunks_mut(ho * wo)).zip(x.par_chunks(h * w)).for_each_with(
                buffers,
                |(padded, at), ((v, o), plane)| {
                    padded.fill(f32::NEG_INFINITY);
                    for (dst, src) in padded.chunks_exact_mut(pw).zip(plane.chunks_exact(w)) {
                        dst[padding..padding + w].copy_from_slice(src);
                    }
                    for (i, (v, o)) in v.chunks_exact_mut(wo).zip(o.chunks_exact_mut(wo)).enumerate() {
                        pool_row(padded, (h, pw), (kernel, stride, padding), i, v, at);
                        o.iter_mut().zip(at.iter()).for_each(|(o, &a)| *o = a as u8);
                    }
                },
            );
        }
        (values, offsets)
    }
}

impl CustomOp2 for MaxPoolGradientCpu {
    fn name(&self) -> &'static str {
        "maxpool-backward-cpu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let grad = f32_data(s1, l1, self.name())?;
        let offsets = u8_data(s2, l2, self.name())?;
        let (n, c, ho, wo) = l1.shape().dims4()?;
        if l2.shape() != l1.shape() {
            candle_core::bail!("{}: gradient {:?} does not match offsets {:?}", self.name(), l1.shape(), l2.shape());
        }
        let (h, w) = self.input;
        let Window { kernel, stride, padding } = self.window;
        let mut out = vec![0f32; n * c * h * w];
        let inside: Vec<_> = (0..kernel).map(|dx| columns(dx, (stride, padding), w, wo)).collect();
        if ho * wo > 0 && h * w > 0 {
            out.par_chunks_mut(h * w).zip(grad.par_chunks(ho * wo).zip(offsets.par_chunks(ho * wo))).for_each(
                |(o, (g, offsets))| {
                    if stride > 1 {
                        // Windows barely overlap: one scattered add per output beats a pass
                        // per window position.
                        self.window.positions(offsets, (ho, wo), (h, w), |output, input| o[input] += g[output]);
                        return;
                    }
                    for (i, (g, offsets)) in g.chunks_exact(wo).zip(offsets.chunks_exact(wo)).enumerate() {
                        route_row(g, offsets, (h, w), (kernel, padding), &inside, i, o);
                    }
                },
            );
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c, h, w))))
    }
}
