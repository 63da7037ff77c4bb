//! Kernel operands: candle's CPU storage as contiguous slices, the masking rules every masked
//! kernel applies, and the epilogue of the GEMM-based forwards.

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};

/// The contiguous `F32` data of a CPU operand.
pub(super) fn f32_data<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    match storage {
        CpuStorage::F32(data) => contiguous(data, layout, op),
        _ => candle_core::bail!("{op}: F32 operand expected"),
    }
}

/// Whether `t` is an `F32` CPU tensor, which the kernels of this module (and the CPU loops
/// elsewhere) handle.
pub fn cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}

/// Calls `f` with the values of the `F32` tensor `t` in row-major order: borrowed from a
/// contiguous CPU tensor's storage, else copied out first. Spares loops that read a tensor in
/// parallel the copy `to_vec1` would make on one thread before them.
pub fn with_f32_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            return Ok(f(&data[start..end]));
        }
    }
    Ok(f(&t.flatten_all()?.to_vec1::<f32>()?))
}

/// The contiguous `U8` data of a CPU operand (a mask).
pub(super) fn u8_data<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [u8]> {
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

/// `value` where `keep` is non-zero, else 0, without a branch (the activation and pool masks
/// are unpredictable): the one rule every masked kernel applies.
#[inline(always)]
pub(super) fn masked(value: f32, keep: u8) -> f32 {
    f32::from_bits(value.to_bits() & 0u32.wrapping_sub(u32::from(keep != 0)))
}

/// 1 where `y` (an activation's output) is inside the activation's linear range `(0, upper)`,
/// else 0: the mask of a ReLU (`upper` infinite) or ReLU6 (6), the one rule every kernel that
/// writes one applies.
#[inline(always)]
pub(super) fn active(y: f32, upper: f32) -> u8 {
    u8::from(y > 0.0 && y < upper)
}

/// `dst = src` where `mask` (if given) is non-zero, 0 elsewhere: an activation's backward
/// applied on the way into a kernel.
#[inline(always)]
pub(super) fn copy_masked(dst: &mut [f32], src: &[f32], mask: Option<&[u8]>) {
    match mask {
        Some(m) => dst.iter_mut().zip(src).zip(m).for_each(|((d, &v), &keep)| *d = masked(v, keep)),
        None => dst.copy_from_slice(src),
    }
}

multiversion! {
    /// `row += bias`, then clamped to `[0, clamp]` where given, with the clamp's mask in
    /// `mask` where given: what a GEMM-based forward does to each output row of a band while
    /// the band is in cache.
    pub(super) fn epilogue(row: &mut [f32], bias: f32, clamp: Option<f32>, mask: Option<&mut [u8]>) {
        match (clamp, mask) {
            (Some(upper), Some(mask)) => row.iter_mut().zip(mask).for_each(|(v, m)| {
                *v = (*v + bias).clamp(0.0, upper);
                *m = active(*v, upper);
            }),
            (Some(upper), None) => row.iter_mut().for_each(|v| *v = (*v + bias).clamp(0.0, upper)),
            (None, _) => row.iter_mut().for_each(|v| *v += bias),
        }
    }
}
