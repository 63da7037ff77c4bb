//! CPU kernels for the layers VGG and EfficientNet-Lite0 are made of, as candle custom ops on
//! contiguous `F32` NCHW tensors: 3x3 "same" convolutions as Winograd F(4x4, 3x3) or a
//! cache-blocked implicit GEMM, 1x1 convolutions as one GEMM, depthwise and few-channel
//! convolutions as plane passes, with bias and activation fused into the output and the
//! activation's mask into the input-gradient pass; plus parallel max-pool and mask kernels.
//! candle's own ops remain the path on every other device and precision.

/// Compiles `$name` three times (AVX-512, AVX2+FMA, baseline) and picks the best the CPU
/// running it supports; kernels are plain loops (over fixed-size arrays where they can be)
/// that the compiler vectorises to the width it is allowed.
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512($($arg: $ty),*) {
                generic($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) {
                generic($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the features `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for `avx2`.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

/// Implements candle's `CustomOp2` (input, weight) and `CustomOp3` (input, weight, `U8` mask
/// shaped like the input) for a kernel type with an inherent
/// `compute(&self, x, mask, input_layout, weight, weight_layout)`.
macro_rules! masked_op {
    ($ty:ty, $name:literal) => {
        impl candle_core::CustomOp2 for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                self.compute(super::f32_data(s1, l1, $name)?, None, l1, super::f32_data(s2, l2, $name)?, l2)
            }
        }

        impl candle_core::CustomOp3 for $ty {
            fn name(&self) -> &'static str {
                concat!($name, "-masked")
            }

            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
                s3: &candle_core::CpuStorage,
                l3: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                if l3.shape() != l1.shape() {
                    candle_core::bail!("{}: mask {:?} differs from input {:?}", $name, l3.shape(), l1.shape());
                }
                let mask = super::u8_data(s3, l3, $name)?;
                self.compute(super::f32_data(s1, l1, $name)?, Some(mask), l1, super::f32_data(s2, l2, $name)?, l2)
            }
        }
    };
}

mod conv1x1;
mod conv3x3;
mod depthwise;
mod pool;
mod winograd;

use candle_core::{CpuStorage, Layout, Result};

pub use conv1x1::Conv1x1Cpu;
pub use conv3x3::{conv3x3_kernels, Conv3x3Cpu, PooledGradientCpu};
pub use depthwise::{DepthwiseCpu, FewChannelConvCpu};
pub use pool::{ActiveMaskCpu, MaxPool2Cpu, PoolMaskCpu, PoolRouteCpu};

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

/// `value` where `keep` is non-zero, else 0, without a branch (the activation and pool masks
/// are unpredictable): the one rule every masked kernel applies.
#[inline(always)]
fn masked(value: f32, keep: u8) -> f32 {
    f32::from_bits(value.to_bits() & 0u32.wrapping_sub(u32::from(keep != 0)))
}

/// `dst = src` where `mask` (if given) is non-zero, 0 elsewhere: an activation's backward
/// applied on the way into a kernel.
#[inline(always)]
fn copy_masked(dst: &mut [f32], src: &[f32], mask: Option<&[u8]>) {
    match mask {
        Some(m) => dst.iter_mut().zip(src).zip(m).for_each(|((d, &v), &keep)| *d = masked(v, keep)),
        None => dst.copy_from_slice(src),
    }
}

thread_local! {
    /// Buffers [`Scratch`] returned on this thread, for the next one to reuse.
    static SPARE: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per thread for reuse.
const SPARE_BUFFERS: usize = 4;

/// A work buffer of unspecified contents, reused from the thread's spare buffers when one is
/// there (a fresh buffer is zeroed once): kernels that run for every band of every layer need
/// no allocation or clearing of their buffers. Goes back to the spares of the thread that
/// drops it.
struct Scratch(Vec<f32>);

impl Scratch {
    /// A buffer of `len` elements.
    fn new(len: usize) -> Self {
        let spare = SPARE.with(|spare| spare.borrow_mut().pop());
        // A spare twice as large as needed is let go, so that big buffers of wide layers are
        // not held through the rest of the network.
        let mut buffer = spare.filter(|b| b.capacity() <= 2 * len).unwrap_or_default();
        buffer.resize(len, 0.0);
        Self(buffer)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Vec<f32>;

    fn deref(&self) -> &Vec<f32> {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut Vec<f32> {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_BUFFERS {
                spare.push(buffer);
            }
        });
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
