//! `dreamvid INPUT -o OUTPUT`: dream a video, with a progress bar and a report of where the
//! time went.

use dreamvid::cancel::Cancel;
use dreamvid::output::{check_not_input, is_folder};
use dreamvid::pipeline::{render_video, StageTimes, VideoJob};
use dreamvid::plan::Purpose;
use dreamvid::preview;
use dreamvid::resume::render_record;
use dreamvid::video::coherence::Coherence;
use dreamvid::video::encode::check_container;
use dreamvid::video::{EncodeSettings, Excerpt, Limit, Source};

use super::{bar, Setup};
use crate::cli::VideoArgs;

/// `dreamvid INPUT -o OUTPUT [--start T] [--duration T | --frames N] [--preview [N]]`.
pub fn video(args: VideoArgs) -> anyhow::Result<()> {
    let (input, output) = (args.input.expect("required by clap"), args.output.expect("required by clap"));
    check_not_input(&input, &output)?;
    let written = match args.preview {
        Some(_) => preview::paths(&output).0,
        None => output.clone(),
    };
    if !is_folder(&written) {
        check_container(&written, true)?;
    }
    let s = Setup::new(&args.model, &args.dream, Purpose::Video)?;
    let (plan, mask) = s.plan(false)?;
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
        record: render_record(&input, s.session.model, &s.session.weights, &s.preset) + &excerpt.record(),
        input,
        input_fps: args.fps,
        output,
        net: &s.session.net,
        device: s.session.device.clone(),
        frame_params: &frame_params,
        coherence,
        scene_cut: base.scene_cut as f32,
        encode: EncodeSettings::from(base),
        resume: args.resume,
        excerpt,
        span: None,
        mask: mask.as_ref(),
        cancel: Cancel::new(),
    };
    run_render(&job)?;
    if let Some(sheet) = sheet {
        preview::write_sheet(&job.output, &sheet)?;
        eprintln!("wrote {} (contact sheet)", sheet.display());
    }
    Ok(())
}

/// Renders `job` with a progress bar, then says what happened.
pub(super) fn run_render(job: &VideoJob) -> anyhow::Result<()> {
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
