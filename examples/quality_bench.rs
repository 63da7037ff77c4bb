//! The dreaming side of `scripts/quality-bench`: dreams photos with a preset and settings, writes
//! each source (resized) and dream as PNG, and prints the objective reached and the time.
//!
//!   quality_bench --model M [--weights PATH] [--preset NAME] --out DIR [--max-side N]
//!                 [--set KEY=VALUE]... PHOTO...
//!
//! Without --weights the model's weights are looked for as `dreamvid` does (exit status 2 when
//! there are none); without --preset the model's default preset for images is used. Photos
//! are shrunk to at most --max-side pixels (640) on their longer side.
//!
//! For every photo it prints `RESULT NAME OBJECTIVE_BEFORE OBJECTIVE_AFTER SECONDS`: the
//! preset's objective (the weighted L2 norms of its layers' activations) on the source and on
//! the dream, each over the whole picture without jitter, and the time the dream took.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use dreamvid::dream;
use dreamvid::image_io::{load_image, save_image};
use dreamvid::models::ModelKind;
use dreamvid::nn::{Network, Objective};
use dreamvid::plan::{default_preset, load_preset, Plan, Purpose};
use dreamvid::resample::resize;
use dreamvid::settings::find;

struct Args {
    model: ModelKind,
    weights: Option<PathBuf>,
    preset: Option<String>,
    out: PathBuf,
    max_side: usize,
    set: Vec<(String, String)>,
    photos: Vec<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let (mut model, mut weights, mut preset, mut out) = (None, None, None, None);
    let (mut max_side, mut set, mut photos) = (640, Vec::new(), Vec::new());
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = Some(value()?.parse::<ModelKind>().map_err(anyhow::Error::msg)?),
            "--weights" => weights = Some(PathBuf::from(value()?)),
            "--preset" => preset = Some(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--max-side" => max_side = value()?.parse()?,
            "--set" => {
                let v = value()?;
                let (k, v) = v.split_once('=').with_context(|| format!("--set {v}: expected KEY=VALUE"))?;
                set.push((k.to_string(), v.to_string()));
            }
            _ if a.starts_with("--") => bail!("unknown option {a}"),
            _ => photos.push(PathBuf::from(a)),
        }
    }
    Ok(Args {
        model: model.context("--model is required")?,
        weights,
        preset,
        out: out.context("--out is required")?,
        max_side,
        set,
        photos,
    })
}

/// The objective of `x` over the whole picture, in one pass.
fn objective(net: &Network, x: &Tensor, objective: &Objective) -> anyhow::Result<f32> {
    Ok(net.objective_gradient(x, objective)?.0)
}

/// `x` shrunk so that its longer side is at most `max_side`.
fn fit(x: Tensor, max_side: usize) -> anyhow::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let scale = max_side as f64 / h.max(w) as f64;
    if scale >= 1.0 {
        return Ok(x);
    }
    Ok(resize(&x, (h as f64 * scale).round() as usize, (w as f64 * scale).round() as usize)?)
}

fn stem(path: &Path) -> anyhow::Result<String> {
    Ok(path.file_stem().with_context(|| format!("{} has no file name", path.display()))?.to_string_lossy().into())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let flags = args
        .set
        .iter()
        .map(|(k, v)| Ok((find(k).with_context(|| format!("no setting `{k}` (see `dreamvid settings`)"))?, v.clone())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec = args.preset.as_deref().unwrap_or_else(|| default_preset(Purpose::Image, args.model));
    let (preset, _) = load_preset(Some(spec), Purpose::Image, Some(args.model), &flags)?;
    let weights = match args.weights {
        Some(path) => path,
        None => match args.model.locate_weights() {
            Ok(found) => found.path,
            Err(e) => {
                eprintln!("no weights for {}: {e}", args.model.name());
                std::process::exit(2);
            }
        },
    };
    let device = Device::Cpu;
    let net = args.model.load(&weights, &device)?;
    let guide = preset
        .base
        .guide
        .as_deref()
        .map(|p| dreamvid::plan::guide::load_guide(p, &device).map(Arc::new))
        .transpose()?;
    let params = Plan { preset: &preset, net: &net, vary_seed: false, guide }.still()?;
    std::fs::create_dir_all(args.out.join("source"))
        .with_context(|| format!("cannot create {}", args.out.join("source").display()))?;
    for photo in &args.photos {
        let name = stem(photo)?;
        let source = fit(load_image(photo, &device)?, args.max_side)?;
        save_image(&source, &args.out.join("source").join(format!("{name}.png")))?;
        let t = Instant::now();
        let dreamed = dream::dream(&net, &source, &params, &mut |_| {})?;
        let seconds = t.elapsed().as_secs_f64();
        save_image(&dreamed, &args.out.join(format!("{name}.png")))?;
        let (before, after) =
            (objective(&net, &source, &params.objective)?, objective(&net, &dreamed, &params.objective)?);
        println!("RESULT {name} {before} {after} {seconds:.3}");
    }
    Ok(())
}
