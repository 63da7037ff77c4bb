//! CPU kernels for the layers VGG is made of, as candle custom ops on contiguous `F32` NCHW
//! tensors: 3x3 "same" convolutions as Winograd F(4x4, 3x3) or a cache-blocked implicit GEMM with bias and ReLU fused
//! into the epilogue and the ReLU mask fused into the input-gradient pass, plus parallel
//! max-pool and mask kernels. candle's own ops remain the path on every other device and
//! precision.

mod conv3x3;
mod pool;
mod winograd;

use candle_core::{CpuStorage, Layout, Result};

pub use conv3x3::{conv3x3_kernels, Conv3x3Cpu};
pub use pool::{MaxPool2Cpu, PoolMaskCpu, PoolRouteCpu, PositiveMaskCpu};

/// The contiguous `F32` data of a CPU operand.
fn f32_data<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    match storage {
        CpuStorage::F32(data) => contiguous(data, layout, op),
        _ => candle_core::bail!("{op}: F32 operand expected"),
    }
}

/// The contiguous `U8` data of a CPU operand (a mask).
fn u8_data<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [u8]> {
    match storage {
        CpuStorage::U8(data) => contiguous(data, layout, op),
        _ => candle_core::bail!("{op}: U8 mask operand expected"),
    }
}

/// The part of `data` a contiguous `layout` covers.
fn contiguous<'a, T>(data: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: contiguous operand expected"),
    }
}

/// A pointer that parallel workers write through, each to its own disjoint region.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);

impl SharedMut {
    /// The pointer (a method, so that closures capture the `Send` wrapper, not the field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: only used to hand disjoint output regions to rayon workers (see each use).
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}
