//! The `dreamvid` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use dreamvid::compare::compare_videos;
use dreamvid::device::DeviceKind;
use dreamvid::dream::{self, DreamParams};
use dreamvid::image_io::{check_image_path, load_image, save_image};
use dreamvid::models::ModelKind;
use dreamvid::nn::Network;
use dreamvid::pipeline::{render_video, VideoJob};
use dreamvid::video::coherence::{self, Coherence};
use dreamvid::video::EncodeSettings;
use serde::Serialize;

/// DeepDream for videos and images.
///
/// Amplifies what a pretrained network sees: gradient ascent on the pixels to increase the
/// activations of one layer, over several octaves (scales). Videos keep their timing and
/// audio; each frame builds on the previous dreamed frame, carried along the optical flow, so
/// the dream sticks to moving objects instead of flickering.
///
/// Examples:
///   dreamvid clip.mp4 -o dream.mp4
///   dreamvid clip.mp4 -o dream.mp4 --model vgg19 --layer 30 --iterations 5
///   dreamvid clip.mp4 -o dream.mp4 --resume          (continue an interrupted render)
///   dreamvid image photo.jpg -o dream.png
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
    /// List a model's layers with their output shapes, to choose a --layer.
    Layers(LayersArgs),
    /// Compare two videos frame by frame (PSNR); fails if any frame is below --min-psnr.
    Compare(CompareArgs),
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
    /// (plain mix, ghosts on motion) or none (independent frames, flickers).
    #[arg(long, value_enum, default_value = "flow")]
    coherence: Coherence,
    /// Weight of the previous dream carried into the next frame (0..1).
    #[arg(long, default_value_t = 0.6)]
    blend: f64,
    /// Mean brightness change (0..1) between frames that counts as a cut: the carry-over resets.
    #[arg(long, default_value_t = coherence::DEFAULT_SCENE_CUT)]
    scene_cut: f64,
    /// FFmpeg video encoder (libx264, libx265, libvpx-vp9, mpeg4, ...).
    #[arg(long, default_value = "libx264")]
    codec: String,
    /// Quality: constant rate factor (lower = better, bigger); for encoders that have one.
    #[arg(long, default_value_t = 18)]
    crf: u32,
    /// Continue an interrupted render from its per-frame checkpoints (same options needed).
    #[arg(long)]
    resume: bool,
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

/// Which network, from where, on which device.
#[derive(Args)]
struct ModelArgs {
    /// Network to dream with. efficientnet-lite0 is freely available (scripts/fetch-weights);
    /// vgg19 gives the classic DeepDream look.
    #[arg(long, value_enum, default_value = "efficientnet-lite0")]
    model: ModelKind,
    /// Weights file (safetensors). Default: <model file> in $DREAMVID_WEIGHTS_DIR, ./weights,
    /// or the repository's weights/ folder.
    #[arg(long, value_name = "PATH")]
    weights: Option<PathBuf>,
    /// Where to compute.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
}

impl ModelArgs {
    fn weights_path(&self) -> anyhow::Result<PathBuf> {
        Ok(match &self.weights {
            Some(p) => p.clone(),
            None => self.model.locate_weights()?,
        })
    }

    fn load(&self) -> anyhow::Result<(Network, candle_core::Device)> {
        let device = self.device.open()?;
        Ok((self.model.load(&self.weights_path()?, &device)?, device))
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

/// Knobs of the dream itself.
#[derive(Args)]
struct DreamArgs {
    /// Layer whose activations are amplified: a name from `dreamvid layers` (features.30,
    /// blocks.10) or its number (30). Deeper layers give more object-like patterns.
    /// Default: features.30 for vgg19, blocks.10 for efficientnet-lite0.
    #[arg(long)]
    layer: Option<String>,
    /// Number of octaves (scales); each is --octave-scale times smaller than the last.
    #[arg(long, default_value_t = 4)]
    octaves: usize,
    /// Size ratio between octaves.
    #[arg(long, default_value_t = 1.4)]
    octave_scale: f64,
    /// Gradient steps per octave.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Step size per iteration (pixel range 0..1, relative to the mean gradient).
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Largest random shift in pixels before each step (hides tiling artefacts).
    #[arg(long, default_value_t = 16)]
    jitter: usize,
    /// Gaussian smoothing of the gradient, in pixels (0 = off).
    #[arg(long, default_value_t = 0.5)]
    smooth: f64,
    /// Random seed: the same input, settings and seed give the same output.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl DreamArgs {
    fn params(&self, net: &Network, model: ModelKind) -> anyhow::Result<DreamParams> {
        let spec = self.layer.as_deref().unwrap_or(model.default_layer());
        let Some(layer) = net.find_tap(spec) else {
            let names: Vec<&str> = net.taps().iter().map(|t| t.name.as_str()).collect();
            bail!(
                "{} has no layer `{spec}`; choose one of: {}",
                model.name(),
                names.join(", ")
            );
        };
        if !(self.octave_scale.is_finite() && self.octave_scale > 1.0) {
            bail!(
                "--octave-scale must be greater than 1 (got {})",
                self.octave_scale
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a positive number (got {})", self.lr);
        }
        if !(self.smooth.is_finite() && self.smooth >= 0.0) {
            bail!("--smooth must be 0 or more (got {})", self.smooth);
        }
        Ok(DreamParams {
            layer,
            octaves: self.octaves,
            octave_scale: self.octave_scale,
            iterations: self.iterations,
            step: self.lr,
            jitter: self.jitter,
            smoothing: self.smooth,
            seed: self.seed,
        })
    }
}

#[derive(Args)]
struct LayersArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Input size (square) used to compute the output shapes.
    #[arg(long, default_value_t = 224)]
    size: usize,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Image(args)) => run_image(args),
        Some(Command::Layers(args)) => run_layers(args),
        Some(Command::Compare(args)) => run_compare(args),
        None => run_video(cli.video),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The settings of a video render as stored beside the output and checked on resume.
#[derive(Serialize)]
struct RenderRecord {
    input: String,
    model: String,
    weights: String,
    layer: String,
    octaves: usize,
    octave_scale: f64,
    iterations: usize,
    lr: f64,
    jitter: usize,
    smooth: f64,
    seed: u64,
    coherence: Coherence,
    blend: f64,
    scene_cut: f64,
    codec: String,
    crf: u32,
}

fn run_video(args: VideoArgs) -> anyhow::Result<()> {
    let (input, output) = (
        args.input.expect("required by clap"),
        args.output.expect("required by clap"),
    );
    if !(0.0..=1.0).contains(&args.blend) {
        bail!("--blend must be between 0 and 1 (got {})", args.blend);
    }
    let weights = args.model.weights_path()?;
    let (net, device) = args.model.load()?;
    let params = args.dream.params(&net, args.model.model)?;
    let record = RenderRecord {
        input: input.display().to_string(),
        model: args.model.model.name().into(),
        weights: weights
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into(),
        layer: net.taps()[params.layer].name.clone(),
        octaves: params.octaves,
        octave_scale: params.octave_scale,
        iterations: params.iterations,
        lr: params.step,
        jitter: params.jitter,
        smooth: params.smoothing,
        seed: params.seed,
        coherence: args.coherence,
        blend: args.blend,
        scene_cut: args.scene_cut,
        codec: args.codec.clone(),
        crf: args.crf,
    };
    let job = VideoJob {
        input,
        output,
        net: &net,
        device,
        dream: params,
        coherence: args.coherence,
        blend: args.blend as f32,
        scene_cut: args.scene_cut as f32,
        encode: EncodeSettings {
            codec: args.codec,
            crf: args.crf,
            metadata: Vec::new(),
        },
        resume: args.resume,
        record: toml::to_string(&record)?,
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} frames, {per_sec}, ETA {eta} {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    let report = render_video(&job, &mut |p| {
        if let Some(total) = p.total {
            bar.set_length(total as u64);
        }
        bar.set_position(p.done as u64);
        if p.resumed {
            bar.set_message("(from checkpoints)");
        } else {
            bar.set_message("");
        }
    })?;
    bar.finish();
    let outside = 1.0 - report.dreaming.as_secs_f64() / report.wall.as_secs_f64().max(1e-9);
    eprintln!(
        "wrote {} ({} frames{}, {:.2} s/frame, {:.0}% of the time outside the dream step{})",
        job.output.display(),
        report.frames,
        if report.resumed > 0 {
            format!(", {} from checkpoints", report.resumed)
        } else {
            String::new()
        },
        report.wall.as_secs_f64() / report.frames as f64,
        100.0 * outside,
        report
            .peak_rss_bytes
            .map_or(String::new(), |b| format!(", peak memory {} MiB", b >> 20)),
    );
    Ok(())
}

fn run_compare(args: CompareArgs) -> anyhow::Result<()> {
    let psnrs = compare_videos(&args.reference, &args.candidate)?;
    let mut worst = f64::INFINITY;
    for (i, p) in psnrs.iter().enumerate() {
        println!("frame {i:>6}: {p:>7.2} dB");
        worst = worst.min(*p);
    }
    println!(
        "{} frames, lowest PSNR {worst:.2} dB (threshold {:.2} dB)",
        psnrs.len(),
        args.min_psnr
    );
    if worst < args.min_psnr {
        bail!(
            "{} differs from {} beyond the threshold",
            args.candidate.display(),
            args.reference.display()
        );
    }
    Ok(())
}

fn run_image(args: ImageArgs) -> anyhow::Result<()> {
    let (net, device) = args.model.load()?;
    let params = args.dream.params(&net, args.model.model)?;
    check_image_path(&args.output)?;
    let image = load_image(&args.input, &device)?;
    let (_, _, h, w) = image.dims4()?;
    let bar = step_bar(
        dream::total_steps(h, w, &params) as u64,
        &format!("{}x{}", w, h),
    );
    let dreamed = dream::dream(&net, &image, &params, &mut |s| {
        bar.set_message(format!(
            "octave {}/{} objective {:.1}",
            s.octave + 1,
            s.octaves,
            s.objective
        ));
        bar.inc(1);
    })
    .context("dream failed")?;
    bar.finish();
    save_image(&dreamed, &args.output)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

fn run_layers(args: LayersArgs) -> anyhow::Result<()> {
    let (net, device) = args.model.load()?;
    let x = candle_core::Tensor::zeros(
        (1, 3, args.size, args.size),
        candle_core::DType::F32,
        &device,
    )?;
    let shapes = net.tap_shapes(&x)?;
    println!(
        "{:<14} {:<28} output shape for {}x{} input",
        "layer", "op", args.size, args.size
    );
    for (tap, shape) in net.taps().iter().zip(shapes) {
        println!("{:<14} {:<28} {:?}", tap.name, tap.kind, &shape[1..]);
    }
    Ok(())
}

/// A progress bar over gradient steps with rate and ETA.
fn step_bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} steps, ETA {eta} {msg}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(prefix.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
