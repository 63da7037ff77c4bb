//! The commands that look rather than dream: `layers`, `weights`, `presets`, `compare`,
//! `stability`.

use anyhow::bail;

use dreamvid::compare::compare_videos;
use dreamvid::models::discovery::{self, SearchRoots};
use dreamvid::models::{ModelKind, WeightsError};
use dreamvid::preset::Preset;

use super::{open_session, weights_file};
use crate::cli::{CompareArgs, LayersArgs, StabilityArgs, WeightsArgs};

/// `dreamvid layers`: the layers of the weights given or found; without any, of the model's
/// architecture (the shapes are the same).
pub fn layers(args: LayersArgs) -> anyhow::Result<()> {
    let kind = args.model.model.unwrap_or(ModelKind::EfficientNetLite0);
    // Found weights are read (and checked) once, by the session.
    let none_found = args.model.weights.is_none() && !SearchRoots::from_env().has_any(kind);
    let (net, device) = match none_found {
        true => {
            eprintln!("weights: none found, and none needed: the layers of {}'s architecture", kind.name());
            let device = args.model.device.open()?;
            (kind.architecture(&device)?.to_dtype(args.model.precision.dtype_on(&device)?)?, device)
        }
        false => {
            let session = open_session(&args.model, kind)?;
            (session.net, session.device)
        }
    };
    let x = candle_core::Tensor::zeros((1, 3, args.size, args.size), net.dtype(), &device)?;
    let shapes = net.tap_shapes(&x)?;
    println!("{:<14} {:<28} output shape for {}x{} input", "layer", "op", args.size, args.size);
    for (tap, shape) in net.taps().iter().zip(shapes) {
        println!("{:<14} {:<28} {:?}", tap.name, tap.kind, &shape[1..]);
    }
    Ok(())
}

/// `dreamvid weights`.
pub fn weights(args: WeightsArgs) -> anyhow::Result<()> {
    let models = args.model.map_or(ModelKind::ALL.to_vec(), |m| vec![m]);
    if args.fetch {
        for &model in &models {
            weights_file(None, model, false)?;
        }
    }
    let roots = SearchRoots::from_env();
    println!("Weights are looked for in this order; the first file found is used (--weights PATH overrides):");
    for (i, root) in roots.roots.iter().enumerate() {
        let dir = root.dir.as_ref().map_or("(not set)".to_string(), |d| d.display().to_string());
        println!("  {}. {:<38} {dir}", i + 1, root.label);
    }
    for model in models {
        println!("\n{}", model.name());
        let survey = discovery::survey(model, &roots);
        let first = survey.iter().position(|(_, found)| found.is_some());
        for (i, (candidate, found)) in survey.iter().enumerate() {
            let mark = if Some(i) == first { '*' } else { ' ' };
            println!("  {mark} {}  [{}]", candidate.path.display(), candidate.place);
            match found {
                None => println!("      not there"),
                Some(Ok(located)) => {
                    let format = located.format.map_or("not a weights file".to_string(), |f| f.to_string());
                    println!("      {format}, {}", located.verification);
                }
                Some(Err(e)) => println!("      {}", format!("{e}").replace('\n', "\n      ")),
            }
        }
        match model.locate_weights() {
            Ok(located) => println!("  uses {}", located.path.display()),
            Err(WeightsError::Missing { .. }) => println!("  none found: {}", model.fetch_hint()),
            Err(e) => println!("  {}", format!("{e}").replace('\n', "\n  ")),
        }
    }
    Ok(())
}

/// `dreamvid presets`.
pub fn presets() -> anyhow::Result<()> {
    for (name, description) in Preset::shipped_descriptions() {
        println!("{name:<16} {description}");
    }
    println!("\nUse one with --preset NAME, or write your own (see presets/README.md) and pass --preset FILE.toml.");
    Ok(())
}

/// `dreamvid compare REFERENCE CANDIDATE`.
pub fn compare(args: CompareArgs) -> anyhow::Result<()> {
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

/// `dreamvid stability SOURCE DREAMED`.
pub fn stability(args: StabilityArgs) -> anyhow::Result<()> {
    let s = dreamvid::video::stability::measure(&args.source, &args.dreamed, args.scene_cut as f32)?;
    if args.json {
        println!("{}", s.json());
        return Ok(());
    }
    // NaN (no pair to average) as a dash.
    let cell = |x: f64, digits: usize| if x.is_finite() { format!("{x:.digits$}") } else { "-".into() };
    println!("{:<14} {:>26}   {:>36}", "", "E_warp (Farneback flow)", "static-pixel flicker");
    println!(
        "{:<14} {:>8} {:>8} {:>8}   {:>8} {:>8} {:>7} {:>10} {:>9} {:>7}",
        "", "source", "dreamed", "added", "source", "dreamed", "ratio", "static %", "strength", "drift"
    );
    for r in s.summary() {
        println!(
            "{:<14} {:>8} {:>8} {:>8}   {:>8} {:>8} {:>7} {:>10} {:>9} {:>7}",
            r.scope,
            cell(1e3 * r.source, 3),
            cell(1e3 * r.dreamed, 3),
            cell(1e3 * r.added(), 3),
            cell(1e3 * r.static_source, 4),
            cell(1e3 * r.static_dreamed, 4),
            cell(r.static_ratio(), 2),
            cell(100.0 * r.static_share, 1),
            cell(r.strength, 2),
            if r.drift.is_finite() { format!("{:+.2}", r.drift) } else { "-".into() },
        );
    }
    println!("(E_warp, added and static-pixel flicker x 1e-3, RGB in 0..1; strength and drift in 0..255)");
    Ok(())
}
