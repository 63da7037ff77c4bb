//! 2x2 max-pool forward and backward and the activation masks, one parallel pass each over the planes
//! of a contiguous NCHW tensor.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape};
use rayon::prelude::*;

use super::operands::{active, f32_data, masked, u8_data};

/// 2x2 max-pool with stride 2, floor mode (odd trailing rows/columns are dropped), of an `F32`
/// NCHW tensor.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2Cpu;

/// The `U8` mask, shaped like the input, of the elements a [`MaxPool2Cpu`] picks: every
/// element equal to its window's maximum (dropped trailing rows/columns are zero).
#[derive(Debug, Clone, Copy)]
pub struct PoolMaskCpu {
    /// Only maxima above 0 count: applied to a ReLU's output, the mask then also stands for
    /// the ReLU's own mask (a zero maximum's gradient stops at the ReLU anyway).
    pub positive: bool,
}

/// Max-pool backward: an `[N, C, H/2, W/2]` gradient (first operand) routed in full to every
/// element of the [`PoolMaskCpu`] mask (second operand), giving `[N, C, H, W]`.
#[derive(Debug, Clone, Copy)]
pub struct PoolRouteCpu;

/// The `U8` mask of the elements of an `F32` tensor strictly between 0 and `upper`: the
/// backward of a ReLU (`upper` infinite) or ReLU6 (6) read off its output.
#[derive(Debug, Clone, Copy)]
pub struct ActiveMaskCpu {
    /// Upper end of the activation's linear range.
    pub upper: f32,
}

/// Window maxima of rows `2i, 2i + 1` of one plane, written to `out` (`w / 2` long).
fn pool_row(plane: &[f32], w: usize, i: usize, out: &mut [f32]) {
    let (top, bottom) = (&plane[2 * i * w..][..w], &plane[(2 * i + 1) * w..][..w]);
    for (j, o) in out.iter_mut().enumerate() {
        *o = top[2 * j].max(top[2 * j + 1]).max(bottom[2 * j]).max(bottom[2 * j + 1]);
    }
}

/// The `[n, c, h, w]` routing of the `[n, c, h/2, w/2]` pooled gradient `grad` to the
/// elements the pool's `[n, c, h, w]` `mask` marks (zero elsewhere).
pub fn route(grad: &[f32], mask: &[u8], (h, w): (usize, usize)) -> Vec<f32> {
    let mut out = vec![0f32; mask.len()];
    let pooled = (h / 2) * (w / 2);
    if pooled > 0 {
        out.par_chunks_mut(h * w)
            .zip(mask.par_chunks(h * w))
            .zip(grad.par_chunks(pooled))
            .for_each(|((o, m), g)| route_plane(g, m, (h, w), o));
    }
    out
}

/// Routes the pooled gradient plane `g` (`h/2 x w/2`) to the elements of the `h x w` plane
/// `o` that the pool `mask` marks (the rest of `o` is left alone).
fn route_plane(g: &[f32], mask: &[u8], (h, w): (usize, usize), o: &mut [f32]) {
    let wo = w / 2;
    for r in 0..h / 2 * 2 {
        let g_row = &g[(r / 2) * wo..][..wo];
        let (o_row, m_row) = (&mut o[r * w..][..2 * wo], &mask[r * w..][..2 * wo]);
        for ((pair, keep), &v) in o_row.chunks_exact_mut(2).zip(m_row.chunks_exact(2)).zip(g_row) {
            pair[0] = masked(v, keep[0]);
            pair[1] = masked(v, keep[1]);
        }
    }
}

impl CustomOp1 for MaxPool2Cpu {
    fn name(&self) -> &'static str {
        "maxpool2-cpu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l, self.name())?;
        let (n, c, h, w) = l.shape().dims4()?;
        let (ho, wo) = (h / 2, w / 2);
        let mut y = vec![0f32; n * c * ho * wo];
        if ho * wo > 0 {
            y.par_chunks_mut(ho * wo).zip(x.par_chunks(h * w)).for_each(|(out, plane)| {
                for (i, row) in out.chunks_mut(wo).enumerate() {
                    pool_row(plane, w, i, row);
                }
            });
        }
        Ok((CpuStorage::F32(y), Shape::from((n, c, ho, wo))))
    }
}

impl CustomOp1 for PoolMaskCpu {
    fn name(&self) -> &'static str {
        "maxpool2-mask-cpu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l, self.name())?;
        let (_, _, h, w) = l.shape().dims4()?;
        let mut mask = vec![0u8; x.len()];
        if h * w > 0 {
            mask.par_chunks_mut(h * w).zip(x.par_chunks(h * w)).for_each_with(
                vec![0f32; w / 2],
                |row_max, (m, plane)| {
                    for i in 0..h / 2 {
                        pool_row(plane, w, i, row_max);
                        for r in 2 * i..2 * i + 2 {
                            for (j, &v) in row_max.iter().enumerate() {
                                let counts = !self.positive || v > 0.0;
                                m[r * w + 2 * j] = u8::from(plane[r * w + 2 * j] == v && counts);
                                m[r * w + 2 * j + 1] = u8::from(plane[r * w + 2 * j + 1] == v && counts);
                            }
                        }
                    }
                },
            );
        }
        Ok((CpuStorage::U8(mask), l.shape().clone()))
    }
}

impl CustomOp2 for PoolRouteCpu {
    fn name(&self) -> &'static str {
        "maxpool2-backward-cpu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let grad = f32_data(s1, l1, self.name())?;
        let mask = u8_data(s2, l2, self.name())?;
        let (n, c, ho, wo) = l1.shape().dims4()?;
        let (_, _, h, w) = l2.shape().dims4()?;
        if l2.shape().dims()[..2] != [n, c] || (h / 2, w / 2) != (ho, wo) {
            candle_core::bail!("maxpool2-backward-cpu: gradient {:?} does not match mask {:?}", l1.shape(), l2.shape());
        }
        Ok((CpuStorage::F32(route(grad, mask, (h, w))), l2.shape().clone()))
    }
}

impl CustomOp1 for ActiveMaskCpu {
    fn name(&self) -> &'static str {
        "active-mask-cpu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l, self.name())?;
        let mut mask = vec![0u8; x.len()];
        mask.par_chunks_mut(1 << 14).zip(x.par_chunks(1 << 14)).for_each(|(m, v)| {
            m.iter_mut().zip(v).for_each(|(m, &v)| *m = active(v, self.upper));
        });
        Ok((CpuStorage::U8(mask), l.shape().clone()))
    }
}
