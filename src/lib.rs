//! dreamvid: DeepDream for images, videos and infinite-zoom animations.
//!
//! - [`pipeline`]: the video render, top to bottom.
//! - [`models`]: the pretrained CNNs (VGG19, EfficientNet-Lite0) and their weights files.
//! - [`nn`]: network ops with an input-only backward pass.
//! - [`dream`]: the octave gradient-ascent algorithm.
//! - [`video`]: FFmpeg decode/encode, optical flow, temporal coherence.
//! - [`image_io`], [`output`], [`compare`]: files in and out, and checking them.

pub mod compare;
pub mod device;
pub mod dream;
pub mod fixture;
pub mod image_io;
pub mod models;
pub mod nn;
pub mod output;
pub mod pipeline;
pub mod video;
