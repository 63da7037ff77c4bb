//! dreamvid: DeepDream for images, videos and infinite-zoom animations.
//!
//! - [`pipeline`]: the video render, top to bottom; [`preview`]: a few frames of it, small;
//!   [`zoom`]: infinite-zoom animations;
//!   [`farm`]: a video split into segments for render farms, and joined again.
//! - [`settings`]: every setting, defined once; [`preset`], [`plan`]: TOML presets with
//!   keyframed schedules, and per-frame parameters; [`resume`]: render records and checkpoints.
//! - [`models`]: the pretrained CNNs (VGG19, EfficientNet-Lite0) and their weights files.
//! - [`nn`]: network ops with an input-only backward pass.
//! - [`dream`]: the octave gradient-ascent algorithm; [`resample`]: resizing, blur, camera warps.
//! - [`video`]: FFmpeg decode/encode, optical flow, temporal coherence.
//! - [`image_io`], [`animation`], [`output`], [`compare`]: files in and out, and checking them.

#[macro_use]
mod simd;

pub mod animation;
pub mod compare;
pub mod device;
pub mod dream;
pub mod farm;
#[cfg(feature = "fixture")]
pub mod fixture;
pub mod image_io;
pub mod models;
pub mod nn;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod preset;
pub mod preview;
pub mod resample;
pub mod resume;
pub mod runtime;
pub mod settings;
pub mod video;
pub mod zoom;
