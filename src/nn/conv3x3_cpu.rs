//! CPU fast path for the 3x3, stride-1, padding-1 convolutions that make up VGG: an implicit
//! GEMM with no im2col buffer.
//!
//! The input is zero-padded once into planes of `(H + 2) x (W + 2)` (channel-major, as candle's
//! NCHW). For kernel tap `(dy, dx)`, the input pixels every output needs form one strided
//! matrix: `Cin` rows (one per plane) starting `dy * (W + 2) + dx` into each plane. So the
//! convolution is nine GEMMs `out[Cout, H * (W + 2)] += W_tap[Cout, Cin] * X_tap[Cin, ...]`
//! computed on the padded width; the two extra columns per row are dropped at the end.
//! The input gradient is the same operation with the flipped, transposed kernel.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape};

/// A 3x3 "same" convolution of an `F32` NCHW CPU tensor (first operand) with a contiguous
/// `[cout, cin, 3, 3]` weight (second operand), as a candle op; the weight stays in its tensor.
#[derive(Debug, Clone)]
pub struct Conv3x3Cpu {
    bias: Option<Vec<f32>>,
}

impl Conv3x3Cpu {
    /// With an optional `[cout]` bias added to the output.
    pub fn new(bias: Option<Vec<f32>>) -> Self {
        Self { bias }
    }
}

/// The contiguous `F32` data of a CPU operand.
fn f32_data<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("conv3x3-cpu: F32 operands expected");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("conv3x3-cpu: contiguous operands expected");
    };
    Ok(&data[start..end])
}

impl CustomOp2 for Conv3x3Cpu {
    fn name(&self) -> &'static str {
        "conv3x3-cpu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, weight) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        let (n, c, h, w) = l1.shape().dims4()?;
        let (cout, cin, _, _) = l2.shape().dims4()?;
        if c != cin {
            candle_core::bail!("conv3x3-cpu: {c} input channels, weight expects {cin}");
        }
        let (pw, plane) = (w + 2, (h + 2) * (w + 2) + 2);
        let m = h * pw;
        let mut out = vec![0f32; n * cout * h * w];
        let mut padded = vec![0f32; c * plane];
        let mut full = vec![0f32; cout * m];
        let threads = rayon::current_num_threads();
        for b in 0..n {
            let xb = &x[b * c * h * w..(b + 1) * c * h * w];
            for ci in 0..c {
                for y in 0..h {
                    let dst = ci * plane + (y + 1) * pw + 1;
                    padded[dst..dst + w].copy_from_slice(&xb[(ci * h + y) * w..(ci * h + y + 1) * w]);
                }
            }
            match &self.bias {
                Some(bias) => full.chunks_mut(m).zip(bias).for_each(|(row, &v)| row.fill(v)),
                None => full.fill(0.0),
            }
            for tap in 0..9 {
                let offset = (tap / 3) * pw + tap % 3;
                // SAFETY: dst is `cout x m` with row stride m; lhs reads weight[co*cin*9 + ci*9 +
                // tap] for co < cout, ci < cin; rhs reads padded[ci*plane + offset + j] for
                // j < m, and offset + m <= 2*pw + 2 + h*pw = plane, all in bounds.
                unsafe {
                    gemm::gemm(
                        cout,
                        m,
                        cin,
                        full.as_mut_ptr(),
                        1,
                        m as isize,
                        true,
                        weight.as_ptr().add(tap),
                        9,
                        (cin * 9) as isize,
                        padded.as_ptr().add(offset),
                        1,
                        plane as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(threads),
                    );
                }
            }
            let ob = &mut out[b * cout * h * w..(b + 1) * cout * h * w];
            for (co, plane_out) in ob.chunks_mut(h * w).enumerate() {
                for y in 0..h {
                    plane_out[y * w..(y + 1) * w].copy_from_slice(&full[co * m + y * pw..co * m + y * pw + w]);
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, cout, h, w))))
    }
}
