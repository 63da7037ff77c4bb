//! The `dreamvid` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use dreamvid::device::DeviceKind;
use dreamvid::dream::{self, DreamParams};
use dreamvid::image_io::{check_image_path, load_image, save_image};
use dreamvid::models::ModelKind;
use dreamvid::nn::Network;

/// DeepDream for images and videos.
///
/// Amplifies what a pretrained network sees in a picture: gradient ascent on the pixels to
/// increase the activations of one layer, over several octaves (scales).
///
/// Examples:
///   dreamvid image photo.jpg -o dream.png
///   dreamvid image photo.jpg -o dream.png --model vgg19 --layer 30 --iterations 20
///   dreamvid layers --model vgg19
#[derive(Parser)]
#[command(name = "dreamvid", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dream on one image (PNG or JPEG) and write the result.
    Image(ImageArgs),
    /// List a model's layers with their output shapes, to choose a --layer.
    Layers(LayersArgs),
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
    fn load(&self) -> anyhow::Result<(Network, candle_core::Device)> {
        let device = self.device.open()?;
        let path = match &self.weights {
            Some(p) => p.clone(),
            None => self.model.locate_weights()?,
        };
        Ok((self.model.load(&path, &device)?, device))
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
        Command::Image(args) => run_image(args),
        Command::Layers(args) => run_layers(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
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
