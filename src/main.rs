//! The `dreamvid` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use dreamvid::animation::{write_frames, Target};
use dreamvid::compare::compare_videos;
use dreamvid::device::{DeviceKind, Precision};
use dreamvid::dream;
use dreamvid::image_io::{check_image_path, load_image, save_image};
use dreamvid::models::ModelKind;
use dreamvid::nn::Network;
use dreamvid::pipeline::{render_video, VideoJob};
use dreamvid::plan::{camera_step, dream_params, load_preset, Purpose};
use dreamvid::preset::{check_range, FrameSettings, Preset};
use dreamvid::video::coherence::Coherence;
use dreamvid::video::EncodeSettings;
use dreamvid::zoom::{noise_image, render_zoom, ZoomJob};

/// DeepDream for videos, images and infinite-zoom animations.
///
/// Amplifies what a pretrained network sees: gradient ascent on the pixels to increase the
/// activations of one layer, over several octaves (scales). Videos keep their timing and
/// audio; each frame builds on the previous dreamed frame, carried along the optical flow, so
/// the dream sticks to moving objects instead of flickering. Settings come from presets
/// (`dreamvid presets`), which flags override.
///
/// Examples:
///   dreamvid clip.mp4 -o dream.mp4                      (preset lite0-video)
///   dreamvid clip.mp4 -o dream.mp4 --preset layer30     (VGG19, the classic look)
///   dreamvid clip.mp4 -o dream.mp4 --resume             (continue an interrupted render)
///   dreamvid image photo.jpg -o dream.png --layer blocks.6
///   dreamvid zoom --noise -o zoom.gif --frames 48 --loop
///   dreamvid layers --model vgg19
///   dreamvid compare golden.mp4 dream.mp4 --min-psnr 35
#[derive(Parser)]
#[command(
    name = "dreamvid",
    version,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    video: VideoArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Dream on one image (PNG or JPEG) and write the result.
    Image(ImageArgs),
    /// Grow an infinite-zoom animation from an image or noise (GIF, MP4 or PNG frames).
    Zoom(ZoomArgs),
    /// List a model's layers with their output shapes, to choose a --layer.
    Layers(LayersArgs),
    /// List the shipped presets.
    Presets,
    /// Compare two videos frame by frame (PSNR); fails if any frame is below --min-psnr.
    Compare(CompareArgs),
}

/// Which network, from where, on which device.
#[derive(Args)]
struct ModelArgs {
    /// Network: efficientnet-lite0 (free, scripts/fetch-weights) or vgg19 (the classic look).
    /// Default: the preset's model, else efficientnet-lite0.
    #[arg(long, value_enum)]
    model: Option<ModelKind>,
    /// Weights file (safetensors). Default: <model file> in $DREAMVID_WEIGHTS_DIR, ./weights,
    /// or the repository's weights/ folder.
    #[arg(long, value_name = "PATH")]
    weights: Option<PathBuf>,
    /// Where to compute.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
    /// Arithmetic precision; f16 and bf16 halve memory and run faster on GPUs (CUDA only).
    #[arg(long, value_enum, default_value = "f32")]
    precision: Precision,
}

impl ModelArgs {
    /// Opens the device and loads `kind` from the given or default weights at the precision.
    fn load(&self, kind: ModelKind) -> anyhow::Result<(Network, candle_core::Device, PathBuf)> {
        let weights = match &self.weights {
            Some(p) => p.clone(),
            None => kind.locate_weights()?,
        };
        let device = self.device.open()?;
        let dtype = self.precision.dtype_on(&device)?;
        let net = kind.load(&weights, &device)?.to_dtype(dtype)?;
        Ok((net, device, weights))
    }
}

/// Dream settings: a preset, and flags that override it for the whole render.
#[derive(Args)]
struct DreamArgs {
    /// Preset name (see `dreamvid presets`) or path to a .toml file. Default: lite0 for
    /// images, lite0-video for videos, zoom for zooms (layer30 / zoom-vgg with --model vgg19).
    #[arg(long)]
    preset: Option<String>,
    /// Layer to amplify: a name from `dreamvid layers` (features.30, blocks.10) or its number.
    /// Deeper layers give more object-like patterns.
    #[arg(long)]
    layer: Option<String>,
    /// Number of octaves (scales); each is --octave-scale times smaller than the last.
    #[arg(long)]
    octaves: Option<usize>,
    /// Size ratio between octaves.
    #[arg(long)]
    octave_scale: Option<f64>,
    /// Gradient steps per octave.
    #[arg(long)]
    iterations: Option<usize>,
    /// Step size per iteration (pixel range 0..1, relative to the mean gradient).
    #[arg(long)]
    lr: Option<f64>,
    /// Largest random shift in pixels before each step (hides tiling artefacts).
    #[arg(long)]
    jitter: Option<usize>,
    /// Gaussian smoothing of the gradient, in pixels (0 = off).
    #[arg(long)]
    smooth: Option<f64>,
    /// Random seed: the same input, settings and seed give the same output.
    #[arg(long)]
    seed: Option<u64>,
    /// Frames with a side longer than this many pixels get their gradients in tiles (at
    /// random offsets, so no seams), which bounds memory: at 768, a 4K frame dreams with VGG19
    /// in under 4 GB. 0 never tiles.
    #[arg(long, value_name = "PIXELS")]
    tile: Option<usize>,
}

impl DreamArgs {
    /// Applies the flags to `preset` (validated like preset values) and pins them.
    fn apply(&self, preset: &mut Preset, model: ModelKind) -> anyhow::Result<()> {
        if let Some(spec) = &self.layer {
            let Some(name) = model.resolve_layer(spec) else {
                bail!("{} has no layer `{spec}`; choose one of: {}", model.name(), model.layer_names().join(", "));
            };
            preset.base.layers = vec![(name, 1.0)];
            preset.pin("layers");
        }
        let b = &mut preset.base;
        let mut pins = Vec::new();
        let mut set = |key: &'static str, value: f64| -> anyhow::Result<f64> {
            pins.push(key);
            check_range(key, value).map_err(|m| anyhow::anyhow!("--{}", m.replace('_', "-")))
        };
        if let Some(v) = self.octaves {
            b.octaves = set("octaves", v as f64)? as usize;
        }
        if let Some(v) = self.octave_scale {
            b.octave_scale = set("octave_scale", v)?;
        }
        if let Some(v) = self.iterations {
            b.iterations = set("iterations", v as f64)? as usize;
        }
        if let Some(v) = self.lr {
            b.lr = set("lr", v)?;
        }
        if let Some(v) = self.jitter {
            b.jitter = set("jitter", v as f64)? as usize;
        }
        if let Some(v) = self.smooth {
            b.smooth = set("smooth", v)?;
        }
        for key in pins {
            preset.pin(key);
        }
        if let Some(seed) = self.seed {
            preset.fixed.seed = seed;
        }
        if let Some(tile) = self.tile {
            if tile != 0 && tile < dream::MIN_TILE {
                bail!("--tile {tile} is too small: use at least {} pixels, or 0 to never tile", dream::MIN_TILE);
            }
            preset.fixed.tile = tile;
        }
        Ok(())
    }
}

/// A preset with flags applied, the network it runs on, and where that came from.
struct Setup {
    preset: Preset,
    model: ModelKind,
    weights: PathBuf,
    net: Network,
    device: candle_core::Device,
}

fn setup(model: &ModelArgs, dream: &DreamArgs, purpose: Purpose) -> anyhow::Result<Setup> {
    let (mut preset, kind) = load_preset(dream.preset.as_deref(), purpose, model.model)?;
    dream.apply(&mut preset, kind)?;
    let (net, device, weights) = model.load(kind)?;
    Ok(Setup { preset, model: kind, weights, net, device })
}

/// Dreaming a video (the default command).
#[derive(Args)]
struct VideoArgs {
    /// Video to dream on (any container and codec FFmpeg reads).
    #[arg(required = true)]
    input: Option<PathBuf>,
    /// Where to write the dreamed video; the extension picks the container (.mp4, .mkv, .mov).
    #[arg(short, long, required = true)]
    output: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    dream: DreamArgs,
    /// How each frame builds on the previous dreamed frame: flow (follow the motion), blend
    /// (plain mix, ghosts on motion) or none (independent frames, flickers). Default: preset's.
    #[arg(long, value_enum)]
    coherence: Option<Coherence>,
    /// Weight of the previous dream carried into the next frame (0..1). Default: preset's.
    #[arg(long)]
    blend: Option<f64>,
    /// Mean brightness change (0..1) between frames that counts as a cut: the carry-over resets.
    #[arg(long)]
    scene_cut: Option<f64>,
    #[command(flatten)]
    encode: EncodeArgs,
    /// Continue an interrupted render from its per-frame checkpoints (same options needed).
    #[arg(long)]
    resume: bool,
}

/// Video encoding.
#[derive(Args)]
struct EncodeArgs {
    /// FFmpeg video encoder (libx264, libx265, libvpx-vp9, mpeg4, ...).
    #[arg(long, default_value = "libx264")]
    codec: String,
    /// Quality: constant rate factor (lower = better, bigger); for encoders that have one.
    #[arg(long, default_value_t = 18)]
    crf: u32,
}

impl EncodeArgs {
    fn settings(&self) -> EncodeSettings {
        EncodeSettings { codec: self.codec.clone(), crf: self.crf, metadata: Vec::new() }
    }
}

#[derive(Args)]
struct ImageArgs {
    /// Image to dream on.
    input: PathBuf,
    /// Where to write the dreamed image (.png or .jpg).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    dream: DreamArgs,
}

#[derive(Args)]
struct ZoomArgs {
    /// Image to start from (omit with --noise).
    seed_image: Option<PathBuf>,
    /// Start from noise instead of an image.
    #[arg(long, conflicts_with = "seed_image")]
    noise: bool,
    /// Output: .gif (looping), .mp4/.mkv/.mov/.webm, or a folder ending in / for PNG frames.
    #[arg(short, long)]
    output: PathBuf,
    /// Number of frames.
    #[arg(long, default_value_t = 48)]
    frames: usize,
    /// Frames per second (also what keyframe `seconds` are measured in).
    #[arg(long, default_value_t = 12)]
    fps: u32,
    /// Frame size WIDTHxHEIGHT (default: the seed image's size, or 256x256 for noise).
    #[arg(long, value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// Make the last frame lead seamlessly into the first (for endless playback).
    #[arg(long = "loop")]
    looped: bool,
    /// Zoom factor per frame (> 1 zooms in). Default: preset's.
    #[arg(long)]
    zoom: Option<f64>,
    /// Rotation per frame in degrees, clockwise. Default: preset's.
    #[arg(long)]
    rotate: Option<f64>,
    /// GIF palette quality: 1 (best, slowest) to 30 (fastest).
    #[arg(long, default_value_t = 10)]
    gif_quality: i32,
    #[command(flatten)]
    encode: EncodeArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    dream: DreamArgs,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once('x').ok_or("expected WIDTHxHEIGHT, e.g. 320x240")?;
    let (w, h) = (w.parse::<usize>().map_err(|e| e.to_string())?, h.parse::<usize>().map_err(|e| e.to_string())?);
    if !(16..=4096).contains(&w) || !(16..=4096).contains(&h) {
        return Err("width and height must be between 16 and 4096".into());
    }
    Ok((w, h))
}

#[derive(Args)]
struct LayersArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Input size (square) used to compute the output shapes.
    #[arg(long, default_value_t = 224)]
    size: usize,
}

#[derive(Args)]
struct CompareArgs {
    /// Reference video.
    reference: PathBuf,
    /// Video to check against it.
    candidate: PathBuf,
    /// Lowest acceptable PSNR of any frame, in dB.
    #[arg(long, default_value_t = 30.0)]
    min_psnr: f64,
}

fn main() {
    dreamvid::allocator::keep_freed_buffers();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Image(args)) => run_image(args),
        Some(Command::Zoom(args)) => run_zoom(args),
        Some(Command::Layers(args)) => run_layers(args),
        Some(Command::Presets) => run_presets(),
        Some(Command::Compare(args)) => run_compare(args),
        None => run_video(cli.video),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The settings of a render as stored beside the output and checked on resume.
#[derive(Serialize)]
struct RenderRecord {
    dreamvid: String,
    input: String,
    model: String,
    weights: String,
    preset: String,
    preset_hash: String,
    keyframes: usize,
    seed: u64,
    coherence: Coherence,
    scene_cut: f64,
    codec: String,
    crf: u32,
    first_frame: FrameSettings,
}

fn run_video(args: VideoArgs) -> anyhow::Result<()> {
    let (input, output) = (args.input.expect("required by clap"), args.output.expect("required by clap"));
    let mut s = setup(&args.model, &args.dream, Purpose::Video)?;
    if let Some(c) = args.coherence {
        s.preset.fixed.coherence = c;
    }
    if let Some(b) = args.blend {
        s.preset.base.blend = check_range("blend", b).map_err(|m| anyhow::anyhow!("--{m}"))?;
        s.preset.pin("blend");
    }
    if let Some(c) = args.scene_cut {
        s.preset.fixed.scene_cut =
            check_range("scene_cut", c).map_err(|m| anyhow::anyhow!("--{}", m.replace('_', "-")))?;
    }
    let record = RenderRecord {
        dreamvid: env!("CARGO_PKG_VERSION").into(),
        input: input.display().to_string(),
        model: s.model.name().into(),
        weights: s.weights.file_name().unwrap_or_default().to_string_lossy().into(),
        preset: s.preset.origin.clone(),
        preset_hash: format!("{:016x}", s.preset.source_hash),
        keyframes: s.preset.keyframes.len(),
        seed: s.preset.fixed.seed,
        coherence: s.preset.fixed.coherence,
        scene_cut: s.preset.fixed.scene_cut,
        codec: args.encode.codec.clone(),
        crf: args.encode.crf,
        // Frame 0 is at 0 s whatever the frame rate.
        first_frame: s.preset.at(0, 25.0),
    };
    let (preset, net, seed) = (&s.preset, &s.net, s.preset.fixed.seed);
    let frame_params = move |i: usize, fps: f64| -> anyhow::Result<(dream::DreamParams, f32)> {
        let settings = preset.at(i, fps);
        Ok((dream_params(net, &settings, seed, preset.fixed.tile)?, settings.blend as f32))
    };
    let job = VideoJob {
        input,
        output,
        net: &s.net,
        device: s.device.clone(),
        frame_params: &frame_params,
        coherence: s.preset.fixed.coherence,
        scene_cut: s.preset.fixed.scene_cut as f32,
        encode: args.encode.settings(),
        resume: args.resume,
        record: toml::to_string(&record)?,
    };
    let bar = bar("frames");
    let report = render_video(&job, &mut |p| {
        if let Some(total) = p.total {
            bar.set_length(total as u64);
        }
        bar.set_position(p.done as u64);
        bar.set_message(if p.resumed { "(from checkpoints)" } else { "" });
    })?;
    bar.finish();
    let outside = 1.0 - report.dreaming.as_secs_f64() / report.wall.as_secs_f64().max(1e-9);
    eprintln!(
        "wrote {} ({} frames{}, {:.2} s/frame, {:.0}% of the time outside the dream step{})",
        job.output.display(),
        report.frames,
        if report.resumed > 0 { format!(", {} from checkpoints", report.resumed) } else { String::new() },
        report.wall.as_secs_f64() / report.frames as f64,
        100.0 * outside,
        report.peak_rss_bytes.map_or(String::new(), |b| format!(", peak memory {} MiB", b >> 20)),
    );
    Ok(())
}

fn run_image(args: ImageArgs) -> anyhow::Result<()> {
    check_image_path(&args.output)?;
    let s = setup(&args.model, &args.dream, Purpose::Image)?;
    let params = dream_params(&s.net, &s.preset.at(0, 25.0), s.preset.fixed.seed, s.preset.fixed.tile)?;
    let image = load_image(&args.input, &s.device)?;
    let (_, _, h, w) = image.dims4()?;
    let bar = bar("steps");
    bar.set_length(dream::total_steps(h, w, &params) as u64);
    bar.set_prefix(format!("{w}x{h}"));
    let dreamed = dream::dream(&s.net, &image, &params, &mut |st| {
        bar.set_message(format!("octave {}/{} objective {:.1}", st.octave + 1, st.octaves, st.objective));
        bar.inc(1);
    })
    .context("dream failed")?;
    bar.finish();
    save_image(&dreamed, &args.output)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

fn run_zoom(args: ZoomArgs) -> anyhow::Result<()> {
    let target = Target::for_path(&args.output)?;
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    if args.fps == 0 || args.fps > 100 {
        bail!("--fps must be between 1 and 100 (got {})", args.fps);
    }
    let mut s = setup(&args.model, &args.dream, Purpose::Zoom)?;
    if let Some(z) = args.zoom {
        s.preset.base.zoom = check_range("zoom", z).map_err(|m| anyhow::anyhow!("--{m}"))?;
        s.preset.pin("zoom");
    }
    if let Some(r) = args.rotate {
        s.preset.base.rotate = check_range("rotate", r).map_err(|m| anyhow::anyhow!("--{m}"))?;
        s.preset.pin("rotate");
    }
    let seed = s.preset.fixed.seed;
    let seed_image = match (&args.seed_image, args.noise) {
        (Some(path), _) => {
            let img = load_image(path, &s.device)?;
            match args.size {
                Some((w, h)) => dream::resample::resize(&img, h, w)?,
                None => img,
            }
        }
        (None, true) => {
            let (w, h) = args.size.unwrap_or((256, 256));
            noise_image(h, w, seed, &s.device)?
        }
        (None, false) => bail!("give a seed image, or --noise to start from noise"),
    };
    let (preset, net, fps) = (&s.preset, &s.net, f64::from(args.fps));
    let settings = move |i: usize| {
        let fs = preset.at(i, fps);
        let params = dream_params(net, &fs, dreamvid::pipeline::frame_seed(seed, i), preset.fixed.tile)
            .expect("layers were validated");
        (params, camera_step(&fs))
    };
    let job = ZoomJob { net: &s.net, seed_image, frames: args.frames, looped: args.looped, frame_settings: &settings };
    let bar = bar("frames");
    bar.set_length(dreamvid::zoom::generated_frames(args.frames, args.looped) as u64);
    let frames = render_zoom(&job, &mut |done| bar.set_position(done as u64))?;
    bar.finish();
    write_frames(&target, &frames, args.fps, args.gif_quality, &args.encode.settings())?;
    eprintln!(
        "wrote {} ({} frames at {} fps{})",
        args.output.display(),
        frames.len(),
        args.fps,
        if args.looped { ", looping" } else { "" }
    );
    Ok(())
}

fn run_layers(args: LayersArgs) -> anyhow::Result<()> {
    let (net, device, _) = args.model.load(args.model.model.unwrap_or(ModelKind::EfficientNetLite0))?;
    let x = candle_core::Tensor::zeros((1, 3, args.size, args.size), net.dtype(), &device)?;
    let shapes = net.tap_shapes(&x)?;
    println!("{:<14} {:<28} output shape for {}x{} input", "layer", "op", args.size, args.size);
    for (tap, shape) in net.taps().iter().zip(shapes) {
        println!("{:<14} {:<28} {:?}", tap.name, tap.kind, &shape[1..]);
    }
    Ok(())
}

fn run_presets() -> anyhow::Result<()> {
    for (name, description) in Preset::shipped_descriptions() {
        println!("{name:<16} {description}");
    }
    println!("\nUse one with --preset NAME, or write your own (see presets/README.md) and pass --preset FILE.toml.");
    Ok(())
}

fn run_compare(args: CompareArgs) -> anyhow::Result<()> {
    let psnrs = compare_videos(&args.reference, &args.candidate)?;
    let mut worst = f64::INFINITY;
    for (i, p) in psnrs.iter().enumerate() {
        println!("frame {i:>6}: {p:>7.2} dB");
        worst = worst.min(*p);
    }
    println!("{} frames, lowest PSNR {worst:.2} dB (threshold {:.2} dB)", psnrs.len(), args.min_psnr);
    if worst < args.min_psnr {
        bail!("{} differs from {} beyond the threshold", args.candidate.display(), args.reference.display());
    }
    Ok(())
}

/// A progress bar with rate and ETA; the length is set by the caller.
fn bar(unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit}, {{per_sec}}, ETA {{eta}} {{msg}}"
        ))
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
