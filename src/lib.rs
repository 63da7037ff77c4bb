//! dreamvid: DeepDream for images, videos and infinite-zoom animations.
//!
//! - [`models`]: the pretrained CNNs (VGG19, EfficientNet-Lite0) and their weights files.
//! - [`nn`]: network ops with an input-only backward pass.
//! - [`dream`]: the octave gradient-ascent algorithm.
//! - [`image_io`], [`output`]: files in and out.

pub mod device;
pub mod dream;
pub mod fixture;
pub mod image_io;
pub mod models;
pub mod nn;
pub mod output;
