//! CPU fast path for the 3x3, stride-1, padding-1 convolutions that make up VGG: an implicit
//! GEMM with no im2col buffer.
//!
//! The input is zero-padded once into planes of `(H + 2) x (W + 2)` (channel-major, as candle's
//! NCHW). For kernel tap `(dy, dx)`, the input pixels every output needs form one strided
//! matrix: `Cin` rows (one per plane) starting `dy * (W + 2) + dx` into each plane. So the
//! convolution is nine GEMMs `out[Cout, H * (W + 2)] += W_tap[Cout, Cin] * X_tap[Cin, ...]`
//! computed on the padded width; the two extra columns per row are dropped at the end.
//! The input gradient is the same operation with the flipped, transposed kernel.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};

/// A 3x3 "same" convolution on `F32` NCHW CPU tensors, as a candle op.
#[derive(Debug, Clone)]
pub struct Conv3x3Cpu {
    /// `[cout, cin, 3, 3]` weights, row-major.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    cin: usize,
    cout: usize,
}

impl Conv3x3Cpu {
    /// From a `[cout, cin, 3, 3]` weight and an optional `[cout]` bias.
    pub fn new(weight: Vec<f32>, bias: Option<Vec<f32>>, cout: usize, cin: usize) -> Self {
        Self { weight, bias, cin, cout }
    }
}

impl CustomOp1 for Conv3x3Cpu {
    fn name(&self) -> &'static str {
        "conv3x3-cpu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("conv3x3-cpu: F32 input expected");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("conv3x3-cpu: contiguous input expected");
        };
        let (n, c, h, w) = layout.shape().dims4()?;
        if c != self.cin {
            candle_core::bail!("conv3x3-cpu: {c} input channels, weight expects {}", self.cin);
        }
        let x = &data[start..end];
        let (pw, plane) = (w + 2, (h + 2) * (w + 2) + 2);
        let m = h * pw;
        let mut out = vec![0f32; n * self.cout * h * w];
        let mut padded = vec![0f32; c * plane];
        let mut full = vec![0f32; self.cout * m];
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
                        self.cout,
                        m,
                        self.cin,
                        full.as_mut_ptr(),
                        1,
                        m as isize,
                        true,
                        self.weight.as_ptr().add(tap),
                        9,
                        (self.cin * 9) as isize,
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
            let ob = &mut out[b * self.cout * h * w..(b + 1) * self.cout * h * w];
            for (co, plane_out) in ob.chunks_mut(h * w).enumerate() {
                for y in 0..h {
                    plane_out[y * w..(y + 1) * w].copy_from_slice(&full[co * m + y * pw..co * m + y * pw + w]);
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, self.cout, h, w))))
    }
}
