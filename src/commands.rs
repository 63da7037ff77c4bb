//! What each command does: load the preset and the network, run the library, show progress.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use dreamvid::animation::{write_frames, Format, Target};
use dreamvid::compare::compare_videos;
use dreamvid::dream;
use dreamvid::dream::mask;
use dreamvid::farm::{self, Job, SegmentState};
use dreamvid::image_io::{check_image_path, load_image, read_picture, write_picture};
use dreamvid::models::discovery::{self, SearchRoots};
use dreamvid::models::{ModelKind, WeightsError};
use dreamvid::nn::{Guide, Network};
use dreamvid::output::check_not_input;
use dreamvid::pipeline::{peak_rss_bytes, render_video, StageTimes, VideoJob};
use dreamvid::plan::guide::load_guide;
use dreamvid::plan::mask::Mask;
use dreamvid::plan::{load_preset, preset_source, Plan, Purpose};
use dreamvid::preset::Preset;
use dreamvid::preview;
use dreamvid::resample::resize;
use dreamvid::resume::render_record;
use dreamvid::video::coherence::Coherence;
use dreamvid::video::{EncodeSettings, Excerpt, Limit, Source};
use dreamvid::zoom::{generated_frames, noise_image, stream_zoom, ZoomJob};

use crate::cli::{
    AssembleArgs, CompareArgs, DreamArgs, ImageArgs, LayersArgs, ModelArgs, PlanArgs, RenderArgs, StabilityArgs,
    StatusArgs, VideoArgs, WeightsArgs, ZoomArgs,
};

/// A preset with flags applied, the network it runs on, and where that came from.
struct Setup {
    preset: Preset,
    model: ModelKind,
    weights: PathBuf,
    net: Network,
    device: candle_core::Device,
    guide: Option<Arc<Guide>>,
    mask: Option<Mask>,
}

impl Setup {
    fn new<const S: u8>(model: &ModelArgs, dream: &DreamArgs<S>, purpose: Purpose) -> anyhow::Result<Self> {
        let (preset, kind) = load_preset(dream.preset.as_deref(), purpose, model.model, &dream.settings.given)?;
        let (net, device, weights) = load_model(model, kind)?;
        let (guide, mask) = guide_and_mask(&preset, purpose, &device)?;
        Ok(Setup { preset, model: kind, weights, net, device, guide, mask })
    }

    fn plan(&self, vary_seed: bool) -> Plan<'_> {
        Plan { preset: &self.preset, net: &self.net, vary_seed, guide: self.guide.clone() }
    }
}

/// The guide image and the mask the preset's `guide` and `mask` name, read; a mask video only
/// for videos.
fn guide_and_mask(
    preset: &Preset,
    purpose: Purpose,
    device: &candle_core::Device,
) -> anyhow::Result<(Option<Arc<Guide>>, Option<Mask>)> {
    let base = &preset.base;
    let guide = base.guide.as_deref().map(|path| load_guide(path, device).map(Arc::new)).transpose()?;
    let video = purpose == Purpose::Video;
    let mask = base.mask.as_deref().map(|path| Mask::open(path, base.mask_feather, video, device)).transpose()?;
    Ok((guide, mask))
}

/// The weights file of `kind`: `given` (checked if it has a published name), else the first
/// one found; says on standard error which it is.
fn weights_file(given: Option<&Path>, kind: ModelKind) -> anyhow::Result<PathBuf> {
    let located = match given {
        Some(path) => discovery::given(kind, path)?,
        None => kind.locate_weights()?,
    };
    eprintln!("weights: {located}");
    Ok(located.path)
}

/// Opens the device and loads `kind` from the given or default weights at the precision.
fn load_model(args: &ModelArgs, kind: ModelKind) -> anyhow::Result<(Network, candle_core::Device, PathBuf)> {
    let weights = weights_file(args.weights.as_deref(), kind)?;
    let device = args.device.open()?;
    let dtype = args.precision.dtype_on(&device)?;
    let net = kind.load(&weights, &device)?.to_dtype(dtype)?;
    Ok((net, device, weights))
}

/// `dreamvid INPUT -o OUTPUT [--start T] [--duration T | --frames N] [--preview [N]]`.
pub fn video(args: VideoArgs) -> anyhow::Result<()> {
    let (input, output) = (args.input.expect("required by clap"), args.output.expect("required by clap"));
    check_not_input(&input, &output)?;
    let s = Setup::new(&args.model, &args.dream, Purpose::Video)?;
    let plan = s.plan(false);
    let frame_params = |i: usize, fps: f64| plan.frame(i, fps);
    let base = &s.preset.base;
    let limit = match (args.duration, args.frames) {
        (Some(d), _) => Limit::Seconds(d),
        (_, Some(n)) => Limit::Frames(usize::try_from(n)?),
        _ => Limit::All,
    };
    let mut excerpt = Excerpt { start: args.start, limit, ..Excerpt::default() };
    let (mut coherence, mut output, mut sheet) = (base.coherence, output, None);
    if let Some(n) = args.preview {
        let mut reader = Source::open(&input, args.fps)?;
        reader.read_excerpt(&excerpt)?;
        excerpt.every = if n > 0 { n } else { preview::every(reader.info().frames) };
        excerpt.max_side = Some(preview::SIDE);
        coherence = Coherence::None; // frames far apart share no motion
        let (mp4, png) = preview::paths(&output);
        check_not_input(&input, &mp4)?;
        (output, sheet) = (mp4, Some(png));
    }
    let job = VideoJob {
        record: render_record(&input, s.model, &s.weights, &s.preset) + &excerpt.record(),
        input,
        input_fps: args.fps,
        output,
        net: &s.net,
        device: s.device.clone(),
        frame_params: &frame_params,
        coherence,
        scene_cut: base.scene_cut as f32,
        encode: EncodeSettings::from(base),
        resume: args.resume,
        excerpt,
        span: None,
        mask: s.mask.as_ref(),
    };
    run_render(&job)?;
    if let Some(sheet) = sheet {
        preview::write_sheet(&job.output, &sheet)?;
        eprintln!("wrote {} (contact sheet)", sheet.display());
    }
    Ok(())
}

/// Renders `job` with a progress bar, then says what happened.
fn run_render(job: &VideoJob) -> anyhow::Result<()> {
    let bar = bar("frames");
    let report = render_video(job, &mut |p| {
        if let Some(total) = p.total {
            bar.set_length(total as u64);
        }
        bar.set_position(p.done as u64);
        bar.set_message(if p.resumed { "(from checkpoints)" } else { "" });
    })?;
    bar.finish();
    if report.damaged_packets > 0 {
        eprintln!(
            "note: {} damaged video packets of {} were skipped, as players do",
            report.damaged_packets,
            job.input.display()
        );
    }
    if !report.redone.is_empty() {
        let frames: Vec<String> = report.redone.iter().map(usize::to_string).collect();
        eprintln!(
            "note: the checkpoints of frames {} were damaged; those frames were dreamed again",
            frames.join(", ")
        );
    }
    let outside = 1.0 - report.stages.dream.as_secs_f64() / report.wall.as_secs_f64().max(1e-9);
    eprintln!(
        "wrote {} ({} frames{}, {:.2} s/frame, {:.0}% of the time outside the dream step{})",
        job.output.display(),
        report.frames,
        if report.resumed > 0 { format!(", {} from checkpoints", report.resumed) } else { String::new() },
        report.wall.as_secs_f64() / report.frames as f64,
        100.0 * outside,
        report.peak_rss_bytes.map_or(String::new(), |b| format!(", peak memory {} MiB", b >> 20)),
    );
    let StageTimes { decode, flow, dream, checkpoint, encode } = report.stages;
    let per_frame = |d: std::time::Duration| d.as_secs_f64() / report.frames.max(1) as f64;
    eprintln!(
        "  s/frame by stage (they run at once): decode {:.3}, flow {:.3}, dream {:.3}, checkpoint {:.3}, encode {:.3}",
        per_frame(decode),
        per_frame(flow),
        per_frame(dream),
        per_frame(checkpoint),
        per_frame(encode),
    );
    Ok(())
}

/// `dreamvid plan INPUT -o JOB_DIR`.
pub fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let (origin, text, model) = preset_source(args.dream.preset.as_deref(), Purpose::Video, args.model.model)?;
    let weights = weights_file(args.model.weights.as_deref(), model)?;
    if !(args.segment_seconds.is_finite() && args.segment_seconds >= 0.5) {
        bail!("--segment-seconds must be at least 0.5 (got {})", args.segment_seconds);
    }
    let job = farm::plan(
        &args.input,
        (&origin, &text, &args.dream.settings.given),
        (model, &weights),
        args.segment_seconds,
        (args.warmup, args.crossfade),
    )?;
    // The guide and the mask are read at every render; check them now.
    guide_and_mask(&farm::job_preset(&job)?, Purpose::Video, &candle_core::Device::Cpu)?;
    match Job::load(&args.job) {
        Ok(existing) if existing == job => {
            eprintln!("{} already holds this job", args.job.display());
        }
        Ok(_) => bail!(
            "{} holds another job (other input, settings or segments): choose another folder, or delete it",
            args.job.display()
        ),
        Err(_) if Job::path(&args.job).exists() => {
            bail!("{} is damaged: delete the folder and plan again", Job::path(&args.job).display())
        }
        Err(_) => {
            std::fs::create_dir_all(Job::segments_dir(&args.job))
                .with_context(|| format!("cannot create {}", args.job.display()))?;
            job.save(&args.job)?;
        }
    }
    let warmed = job.segments.iter().filter(|s| s.warmup > 0).count();
    println!("{}: {} frames", job.input.display(), job.frames);
    println!("{:>8} {:>8} {:>8} {:>8} {:>8}", "segment", "first", "frames", "warm-up", "fade-in");
    for s in &job.segments {
        println!("{:>8} {:>8} {:>8} {:>8} {:>8}", s.index, s.first, s.frames, s.warmup, s.fade_in);
    }
    println!("({} start at a cut or the start, {warmed} inside a shot)", job.segments.len() - warmed);
    println!("{} segments", job.segments.len());
    Ok(())
}

/// `dreamvid render JOB_DIR [--segment I]`.
pub fn render(args: RenderArgs) -> anyhow::Result<()> {
    let job = Job::load(&args.job)?;
    let index = farm::segment_index(args.segment)?;
    let farm::SegmentRender { output, span, tags } = farm::segment_render(&args.job, &job, index)?;
    std::fs::create_dir_all(&span.aside).with_context(|| format!("cannot create {}", span.aside.display()))?;
    if output.exists() && farm::assemble::check_segment(&args.job, &job, &job.segments[index]).is_ok() {
        eprintln!("segment {index} is already rendered: {}", output.display());
        return Ok(());
    }
    job.check_input()?;
    let model = job.model_kind()?;
    if args.model.model.is_some_and(|m| m != model) {
        bail!("the job renders with {}; leave out --model", model.name());
    }
    let mut model_args = args.model;
    if model_args.weights.is_none() && job.weights.is_file() {
        model_args.weights = Some(job.weights.clone());
    }
    let (net, device, weights) = load_model(&model_args, model)?;
    if farm::fingerprint(&weights)? != job.weights_fingerprint {
        bail!(
            "{} is not the weights file the job was planned with ({}): give --weights PATH to that file",
            weights.display(),
            job.weights.display()
        );
    }
    let preset = farm::job_preset(&job)?;
    let (guide, mask) = guide_and_mask(&preset, Purpose::Video, &device)?;
    let plan = Plan { preset: &preset, net: &net, vary_seed: false, guide };
    let frame_params = |i: usize, fps: f64| plan.frame(i, fps);
    let mut encode = EncodeSettings::from(&preset.base);
    encode.metadata = tags;
    let record = format!("segment = {index}\n{}", render_record(&job.input, model, &weights, &preset));
    let video = VideoJob {
        input: job.input.clone(),
        input_fps: None,
        output,
        net: &net,
        device,
        frame_params: &frame_params,
        coherence: preset.base.coherence,
        scene_cut: preset.base.scene_cut as f32,
        encode,
        resume: true,
        record,
        excerpt: Excerpt::default(),
        span: Some(span),
        mask: mask.as_ref(),
    };
    run_render(&video)
}

/// `dreamvid assemble JOB_DIR -o OUTPUT`.
pub fn assemble(args: AssembleArgs) -> anyhow::Result<()> {
    let job = Job::load(&args.job)?;
    check_not_input(&job.input, &args.output)?;
    let frames = farm::assemble::assemble(&args.job, &job, &args.output)?;
    eprintln!("wrote {} ({frames} frames from {} segments)", args.output.display(), job.segments.len());
    Ok(())
}

/// `dreamvid status JOB_DIR`.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let job = Job::load(&args.job)?;
    if args.count {
        println!("{}", job.segments.len());
        return Ok(());
    }
    let states = farm::status(&args.job, &job);
    let mut todo = Vec::new();
    for (s, state) in job.segments.iter().zip(&states) {
        let text = match state {
            SegmentState::Done => "done".to_string(),
            SegmentState::Missing => "missing".to_string(),
            SegmentState::Stale(why) => format!("stale: {why}"),
        };
        if *state != SegmentState::Done {
            todo.push(s.index);
        }
        println!("segment {:>4} (frames {}-{}): {text}", s.index, s.first, s.first + s.frames - 1);
    }
    let done = states.len() - todo.len();
    println!("{done} of {} segments done", states.len());
    if !todo.is_empty() {
        println!("render the rest: dreamvid render {} --segment I, for I in {todo:?}", args.job.display());
    }
    Ok(())
}

/// `dreamvid image INPUT -o OUTPUT`.
pub fn image(args: ImageArgs) -> anyhow::Result<()> {
    check_image_path(&args.output)?;
    check_not_input(&args.input, &args.output)?;
    let s = Setup::new(&args.model, &args.dream, Purpose::Image)?;
    let params = s.plan(false).still()?;
    let picture = read_picture(&args.input, &s.device)?;
    let (_, _, h, w) = picture.rgb.dims4()?;
    let bar = bar("steps");
    bar.set_length(dream::total_steps(h, w, &params) as u64);
    bar.set_prefix(format!("{w}x{h}"));
    let mask = s.mask.as_ref().map(|m| m.frame(0, h, w)).transpose()?;
    let strength = mask::strength(mask.as_ref(), (h, w), s.preset.at(0, 25.0).mask_weight, &s.device)?;
    let dreamed = match &strength {
        Some(m) if mask::is_zero(m)? => picture.rgb.clone(),
        _ => dream::dream_weighted(&s.net, &picture.rgb, &params, strength.as_ref(), &mut |st| {
            bar.set_message(format!("octave {}/{} objective {:.1}", st.octave + 1, st.octaves, st.objective));
            bar.inc(1);
        })
        .context("dream failed")?,
    };
    let dreamed = match &strength {
        Some(m) => mask::composite(&dreamed, &picture.rgb, m)?,
        None => dreamed,
    };
    bar.finish();
    if let Some(note) = write_picture(&dreamed, &picture, &args.output)? {
        eprintln!("note: {note}");
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// `dreamvid zoom [SEED_IMAGE | --noise] -o OUTPUT`.
pub fn zoom(args: ZoomArgs) -> anyhow::Result<()> {
    let target = Target::for_path(&args.output)?;
    if let Some(seed) = &args.seed_image {
        check_not_input(seed, &args.output)?;
    }
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    if args.fps == 0 || args.fps > 100 {
        bail!("--fps must be between 1 and 100 (got {})", args.fps);
    }
    let s = Setup::new(&args.model, &args.dream, Purpose::Zoom)?;
    let seed_image = match (&args.seed_image, args.noise) {
        (Some(path), _) => {
            let img = load_image(path, &s.device)?;
            match args.size {
                Some((w, h)) => resize(&img, h, w)?,
                None => img,
            }
        }
        (None, true) => {
            let (w, h) = args.size.unwrap_or((256, 256));
            noise_image(h, w, s.preset.base.seed, &s.device)?
        }
        (None, false) => bail!("give a seed image, or --noise to start from noise"),
    };
    let (plan, fps) = (s.plan(true), f64::from(args.fps));
    let frame_settings = |i: usize| plan.frame(i, fps);
    let job = ZoomJob {
        net: &s.net,
        seed_image,
        frames: args.frames,
        looped: args.looped,
        frame_settings: &frame_settings,
        mask: s.mask.as_ref(),
    };
    let bar = bar("frames");
    bar.set_length(generated_frames(args.frames, args.looped) as u64);
    let format = Format { fps: args.fps, gif_quality: args.gif_quality, codec: EncodeSettings::from(&s.preset.base) };
    let written =
        write_frames(&target, &format, |sink| stream_zoom(&job, sink, &mut |done| bar.set_position(done as u64)))?;
    bar.finish();
    eprintln!(
        "wrote {} ({written} frames at {} fps{}{})",
        args.output.display(),
        args.fps,
        if args.looped { ", looping" } else { "" },
        peak_rss_bytes().map_or(String::new(), |b| format!(", peak memory {} MiB", b >> 20)),
    );
    Ok(())
}

/// `dreamvid layers`.
pub fn layers(args: LayersArgs) -> anyhow::Result<()> {
    let (net, device, _) = load_model(&args.model, args.model.model.unwrap_or(ModelKind::EfficientNetLite0))?;
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
    let roots = SearchRoots::from_env();
    println!("Weights are looked for in this order; the first file found is used (--weights PATH overrides):");
    for (i, root) in roots.roots.iter().enumerate() {
        let dir = root.dir.as_ref().map_or("(not set)".to_string(), |d| d.display().to_string());
        println!("  {}. {:<38} {dir}", i + 1, root.label);
    }
    let models = args.model.map_or(ModelKind::ALL.to_vec(), |m| vec![m]);
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
