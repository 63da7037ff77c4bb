//! CPU kernels for the layers VGG, EfficientNet-Lite0 and GoogLeNet are made of, as candle
//! custom ops on contiguous `F32` NCHW tensors: 3x3 "same" convolutions as Winograd F(4x4, 3x3)
//! or a cache-blocked implicit GEMM, 1x1 convolutions as GEMMs over bands of pixels, depthwise
//! convolutions as plane passes, convolutions of few input channels as GEMMs over unfolded
//! patches, with bias and activation fused into the output and the activation's mask into the
//! input-gradient pass; plus parallel max-pool (2x2, and any window with padding and ceil
//! mode), mask and sum kernels. candle's own ops remain the path on every other device and
//! precision.
//!
//! [`operands`] reads candle's storage and holds the masking rules and the GEMM epilogue;
//! [`buffers`] holds the per-thread work buffers, uncleared outputs, the slot fused masks are
//! left in and the pointer parallel workers write through.

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
                self.compute(
                    super::operands::f32_data(s1, l1, $name)?,
                    None,
                    l1,
                    super::operands::f32_data(s2, l2, $name)?,
                    l2,
                )
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
                let mask = super::operands::u8_data(s3, l3, $name)?;
                self.compute(
                    super::operands::f32_data(s1, l1, $name)?,
                    Some(mask),
                    l1,
                    super::operands::f32_data(s2, l2, $name)?,
                    l2,
                )
            }
        }
    };
}

mod buffers;
mod conv1x1;
mod conv3x3;
mod depthwise;
mod max_pool;
mod operands;
mod pointwise_avx2;
mod pool;
mod sum;
mod unfolded;
mod winograd;

pub use buffers::MaskSlot;
pub(crate) use buffers::{assume_init, uninit};
pub use conv1x1::Conv1x1Cpu;
pub use conv3x3::{conv3x3_kernels, Conv3x3Cpu, PooledGradientCpu};
pub use depthwise::DepthwiseCpu;
pub use max_pool::{MaxPoolCpu, MaxPoolGradientCpu, Window};
pub use operands::{cpu_f32, with_f32_values};
pub use pointwise_avx2::PackedWeights;
pub use pool::{ActiveMaskCpu, MaxPool2Cpu, PoolMaskCpu, PoolRouteCpu};
pub use sum::SumCpu;
pub use unfolded::UnfoldedConvCpu;
