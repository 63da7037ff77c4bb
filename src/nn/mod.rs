//! Network building blocks with a hand-written, input-only backward pass.
//!
//! DeepDream needs the gradient of an objective with respect to the *input image* and nothing
//! else. candle's autograd would also compute every weight gradient, and its max-pool backward
//! scales the gradient by the fraction of tied maxima instead of routing it, so the ops here
//! record only what their input gradient needs (compact `u8` masks for activations and pools)
//! and run their backward explicitly. Everything is written with candle tensor ops, so the same
//! code runs on CPU and CUDA; on the CPU, `F32` convolutions, ReLUs and pools take the fused
//! kernels of [`cpu`] instead.

mod conv;
pub(crate) mod cpu;
mod elementwise;
pub mod guide;
mod network;
mod ops;
mod padding;
mod pool;

pub use conv::{Conv2d, DepthwiseConv2d};
pub use guide::{Guide, GuideTerm};
pub use network::{match_layer, Network, Objective, Region, Tap, TermStats};
pub use ops::Op;
pub use padding::Padding;
pub use pool::MaxPool;
