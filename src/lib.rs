//! dreamvid: DeepDream for images, videos and infinite-zoom animations.
//!
//! The library is built in layers, and every import points down: a module uses only the
//! modules in rows below its own (modules of one row do not use each other). The binary
//! (`src/main.rs`, `cli.rs`, `commands/`) stands on top. `tests/layers.rs` checks this
//! diagram against the sources, and that no files import each other in a circle.
//!
//! ```text
//! studio                       the studio: a local web app on the library
//! farm · atlas                 render farms: plan segments, render them, join them; layer atlases
//! pipeline · zoom · session    the video render; infinite zoom; a model opened once
//! plan                         settings -> DreamParams, EncodeSettings, CameraStep; masks, guides
//! resume                       render records and checkpoints
//! preset                       TOML presets with keyframed schedules
//! settings                     every setting, defined once; keyframe interpolation
//! animation · preview          rendered frames as GIF, MP4 or folder; contact sheets
//! compare · fixture            PSNR of videos; test models and clips (feature `fixture`)
//! video                        FFmpeg decode/encode, optical flow, temporal coherence
//! dream                        the octave gradient-ascent algorithm
//! image_io · resample          pictures in and out; resizing, blur, camera warps
//! models                       the pretrained CNNs and their weights files
//! nn                           network ops with an input-only backward pass
//! cancel · device · output · runtime · simd    stopping, devices, atomic writes, start-up, SIMD
//! ```
//!
//! The algorithm ([`dream`]) knows no file, setting or video: it takes [`dream::DreamParams`],
//! a per-pixel weight tensor and a progress callback. [`plan`] is the one place the settings
//! table becomes those parameters. [`session`] is the API a front end needs: a model opened
//! once, images dreamed with any settings, renders with progress events and cancellation.

#[macro_use]
mod simd;

pub mod animation;
pub mod atlas;
pub mod cancel;
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
pub mod session;
pub mod settings;
pub mod studio;
pub mod video;
pub mod zoom;
