//! Render farms: `dreamvid plan`, `render`, `assemble` and `status`.

use anyhow::{bail, Context};

use dreamvid::cancel::Cancel;
use dreamvid::farm::{self, Job, SegmentState};
use dreamvid::output::check_not_input;
use dreamvid::pipeline::VideoJob;
use dreamvid::plan::{open_files, preset_source, Plan, Purpose};
use dreamvid::resume::render_record;
use dreamvid::video::encode::check_container;
use dreamvid::video::{EncodeSettings, Excerpt};

use super::video::run_render;
use super::{open_session, weights_file};
use crate::cli::{AssembleArgs, PlanArgs, RenderArgs, StatusArgs};

/// `dreamvid plan INPUT -o JOB_DIR`.
pub fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let (origin, text, model) = preset_source(args.dream.preset.as_deref(), Purpose::Video, args.model.model)?;
    let weights = weights_file(args.model.weights.as_deref(), model, args.model.offline)?;
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
    open_files(&farm::job_preset(&job)?.base, Purpose::Video, &candle_core::Device::Cpu)?;
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
    let session = open_session(&model_args, model)?;
    let weights = &session.weights;
    if farm::fingerprint(weights)? != job.weights_fingerprint {
        bail!(
            "{} is not the weights file the job was planned with ({}): give --weights PATH to that file",
            weights.display(),
            job.weights.display()
        );
    }
    let preset = farm::job_preset(&job)?;
    let (guide, mask) = open_files(&preset.base, Purpose::Video, &session.device)?;
    let plan = Plan { preset: &preset, net: &session.net, vary_seed: false, guide };
    let frame_params = |i: usize, fps: f64| plan.frame(i, fps);
    let mut encode = EncodeSettings::from(&preset.base);
    encode.metadata = tags;
    let record = format!("segment = {index}\n{}", render_record(&job.input, model, weights, &preset));
    let video = VideoJob {
        input: job.input.clone(),
        input_fps: None,
        output,
        net: &session.net,
        device: session.device.clone(),
        frame_params: &frame_params,
        coherence: preset.base.coherence,
        scene_cut: preset.base.scene_cut as f32,
        encode,
        resume: true,
        record,
        excerpt: Excerpt::default(),
        span: Some(span),
        mask: mask.as_ref(),
        cancel: Cancel::new(),
    };
    let rendered = run_render(&video);
    // A retried task whose first attempt is still alive renders beside it: whichever finishes
    // first removes the checkpoints the other one writes to, and the other one stops here.
    if rendered.is_err() && farm::assemble::check_segment(&args.job, &job, &job.segments[index]).is_ok() {
        eprintln!("segment {index} was finished by another render meanwhile: {}", video.output.display());
        return Ok(());
    }
    rendered
}

/// `dreamvid assemble JOB_DIR -o OUTPUT`.
pub fn assemble(args: AssembleArgs) -> anyhow::Result<()> {
    let job = Job::load(&args.job)?;
    check_not_input(&job.input, &args.output)?;
    check_container(&args.output, false)?;
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
            SegmentState::Stale(why) => {
                format!(
                    "stale: {why}\n    render it again: dreamvid render {} --segment {}",
                    args.job.display(),
                    s.index
                )
            }
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
