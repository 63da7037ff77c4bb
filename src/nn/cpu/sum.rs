//! The elementwise sum of two or three `F32` tensors of one shape in one parallel pass: the
//! input gradients of branches that read the same input. candle would take a pass per pair,
//! on its own spinning thread pool beside rayon's.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;

use super::operands::f32_data;

/// `a + b` (two operands) or `a + b + c` (three) of contiguous `F32` tensors of one shape.
#[derive(Debug, Clone, Copy)]
pub struct SumCpu;

/// Elements per parallel work item.
const CHUNK: usize = 1 << 14;

impl SumCpu {
    /// The sum of `terms` (all as long as the first), element by element.
    fn sum(terms: &[&[f32]]) -> Vec<f32> {
        let mut out = terms[0].to_vec();
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, out)| {
            for term in &terms[1..] {
                out.iter_mut().zip(&term[i * CHUNK..]).for_each(|(o, &v)| *o += v);
            }
        });
        out
    }

    /// The shape of `layouts`, which must all agree.
    fn shape(layouts: &[&Layout]) -> Result<Shape> {
        let shape = layouts[0].shape();
        if let Some(other) = layouts.iter().find(|l| l.shape() != shape) {
            candle_core::bail!("sum-cpu: shapes {:?} and {:?} differ", shape, other.shape());
        }
        Ok(shape.clone())
    }
}

impl CustomOp2 for SumCpu {
    fn name(&self) -> &'static str {
        "sum-cpu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let shape = Self::shape(&[l1, l2])?;
        let terms = [f32_data(s1, l1, "sum-cpu")?, f32_data(s2, l2, "sum-cpu")?];
        Ok((CpuStorage::F32(Self::sum(&terms)), shape))
    }
}

impl CustomOp3 for SumCpu {
    fn name(&self) -> &'static str {
        "sum-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let shape = Self::shape(&[l1, l2, l3])?;
        let terms = [f32_data(s1, l1, "sum-cpu")?, f32_data(s2, l2, "sum-cpu")?, f32_data(s3, l3, "sum-cpu")?];
        Ok((CpuStorage::F32(Self::sum(&terms)), shape))
    }
}
