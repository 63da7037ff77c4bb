//! The video pipeline, top to bottom:
//!
//! ```text
//! decode thread ──▶ flow thread ──▶ dream (this thread) ──▶ encode thread ──▶ temp file ──▶ rename
//!   frames+audio      motion,         initial image from        H.264 + copied
//!                     scene cuts      previous dream, dream,    audio packets
//!                                     checkpoint
//! ```
//!
//! Stages talk through bounded channels, so memory does not grow with the video's length.
//! Every dreamed frame is checkpointed as a PNG; `resume` reuses them, and because each frame
//! depends only on its source, the previous source and the previous (8-bit) dreamed frame,
//! with a per-frame seed, a resumed render produces exactly the frames of an uninterrupted one.

mod report;
mod span;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use ffmpeg_next::Packet;
use image::RgbImage;

use crate::cancel::{Cancel, Cancelled};
use crate::dream;
use crate::dream::mask;
use crate::image_io::{rgb_to_tensor, tensor_to_rgb};
use crate::models::discovery::sha256_hex;
use crate::nn::Network;
use crate::output::{is_folder, write_atomically, write_folder_atomically};
use crate::plan::mask::Mask;
use crate::plan::FrameParams;
use crate::resume::{Checkpoint, Checkpoints};
use crate::video::coherence::{self, Coherence, Motion};
use crate::video::encode::check_container;
use crate::video::flow::Plane;
use crate::video::{EncodeSettings, Excerpt, Item, Sink, Source, SourceFrame, VideoInfo};
pub use report::{peak_rss_bytes, FrameProgress, StageTimes, VideoReport};
use report::{Stage, StageClock};
use span::Role;
pub use span::{aside_path, checksum_path, Span};

/// The parameters of each frame: `(frame index, frames per second) -> parameters` (see
/// [`crate::plan::Plan::frame`]).
pub type FramePlan<'a> = dyn Fn(usize, f64) -> anyhow::Result<FrameParams> + Sync + 'a;

/// Everything one video render needs.
pub struct VideoJob<'a> {
    /// Input video, or frame folder (a folder or a printf pattern such as `frames/%05d.png`).
    pub input: PathBuf,
    /// Frame rate of a frame folder (else read from its `fps.txt`); `None` for videos.
    pub input_fps: Option<f64>,
    /// Output video, or folder of PNG frames (a path ending in `/`, or a folder); appears only
    /// when complete.
    pub output: PathBuf,
    /// The network to dream with.
    pub net: &'a Network,
    /// Where the network lives.
    pub device: Device,
    /// The dream settings and carry-over weight of each frame, with each frame's own seed.
    pub frame_params: &'a FramePlan<'a>,
    /// How frames build on the previous dreamed frame.
    pub coherence: Coherence,
    /// Mean luma difference above which a frame starts a new shot.
    pub scene_cut: f32,
    /// Encoder settings.
    pub encode: EncodeSettings,
    /// Reuse the checkpoints of an interrupted render with the same settings.
    pub resume: bool,
    /// The settings as text (TOML), stored beside the output and compared on resume.
    pub record: String,
    /// The part of the input to render (`--start`, `--duration`, `--frames`, previews), with
    /// its audio; [`Excerpt::default`] for all of it.
    pub excerpt: Excerpt,
    /// Render only this part of the input (a render-farm segment), without audio; `None`:
    /// the whole video (or excerpt) with its audio.
    pub span: Option<Span>,
    /// Where each frame is dreamed, and how strongly (with the frames' `mask_weight`): pixels
    /// where it is 0 are the source frame's.
    pub mask: Option<&'a Mask>,
    /// Set from another thread to stop the render before its next gradient step, with
    /// [`Cancelled`]: the output is not written, the frames dreamed so far stay checkpointed
    /// for `resume`.
    pub cancel: Cancel,
}

enum Analysed {
    Frame(SourceFrame, Option<Motion>),
    Audio(Packet, usize),
}

enum Encodable {
    Frame(i64, RgbImage),
    Audio(Packet, usize),
}

/// Renders `job`, calling `progress` after every frame.
pub fn render_video(job: &VideoJob, progress: &mut dyn FnMut(FrameProgress<'_>)) -> anyhow::Result<VideoReport> {
    let start = Instant::now();
    let folder = is_folder(&job.output);
    if !folder {
        check_container(&job.output, true)?;
    }
    let mut reader = Source::open(&job.input, job.input_fps)?;
    if !job.excerpt.is_whole() {
        if job.span.is_some() {
            bail!("a render-farm segment is a part of the video already; it cannot take an excerpt too");
        }
        reader.read_excerpt(&job.excerpt)?;
    }
    let mut info = reader.info().clone();
    let checkpoints = Checkpoints::prepare(&job.output, &job.record, job.resume)?;
    let mut encode = job.encode.clone();
    if job.span.is_some() {
        info.audio.clear(); // the whole video's audio is copied once, when the spans are joined
        encode.b_frames = false;
    }
    encode
        .metadata
        .push(("comment".into(), format!("dreamvid {}: {}", env!("CARGO_PKG_VERSION"), one_line(&job.record))));
    let ticks_per_frame = (1.0 / (f64::from(info.frame_rate) * f64::from(info.time_base))).round().max(1.0) as i64;

    let clock = StageClock::default();
    let render = |tmp: &Path| {
        let writer = Sink::create(tmp, folder, &info, &encode)?;
        std::thread::scope(|s| {
            let (to_flow, from_decode) = sync_channel(8);
            let (to_dream, from_flow) = sync_channel(4);
            let (to_encode, from_dream) = sync_channel(8);
            let span = job.span.clone();
            let clock = &clock;
            let decoder = s.spawn(move || decode_stage(reader, to_flow, span, clock));
            let (analysis, skip) = ((job.coherence, job.scene_cut), checkpoints.saved());
            let flow = s.spawn(move || flow_stage(from_decode, to_dream, analysis, skip, clock));
            let encoder = s.spawn(move || encode_stage(writer, from_dream, ticks_per_frame, clock));
            let dreamed = dream_stage(job, &checkpoints, &info, (from_flow, to_encode), clock, progress);
            // The first failure in pipeline order is the cause; later ones are its echoes (the
            // dream stage stops when the encoder has, which only the encoder can explain).
            fn joined<T>(h: std::thread::ScopedJoinHandle<'_, anyhow::Result<T>>, name: &str) -> anyhow::Result<T> {
                h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the {name} thread panicked")))
            }
            let (d, f, e) = (joined(decoder, "decode"), joined(flow, "flow"), joined(encoder, "encode"));
            let damaged_packets = d?;
            f?;
            let stats = match dreamed {
                Err(echo) if echo.is::<EncoderStopped>() => return Err(e.err().unwrap_or(echo)),
                result => result?,
            };
            e?;
            if let Some(span) = job.span.as_ref().filter(|s| s.frames != stats.frames) {
                bail!(
                    "{} ended after {} of the {} frames from frame {}: the input changed since the plan",
                    job.input.display(),
                    stats.frames,
                    span.frames,
                    span.start + span.warmup + span.head
                );
            }
            Ok(DreamStats { damaged_packets, ..stats })
        })
    };
    let rendered = match folder {
        true => write_folder_atomically(&job.output, render),
        false => write_atomically(&job.output, |tmp| {
            let stats = render(tmp)?;
            if let Some(span) = &job.span {
                let sum = sha256_hex(tmp).with_context(|| format!("cannot read back {}", tmp.display()))?;
                std::fs::create_dir_all(&span.checksums)
                    .with_context(|| format!("cannot create {}", span.checksums.display()))?;
                let record = checksum_path(&span.checksums, &sum);
                write_atomically(&record, |t| Ok(std::fs::write(t, format!("{sum}\n"))?))?;
            }
            Ok(stats)
        }),
    };
    let stats = match rendered {
        Ok(stats) => stats,
        Err(e) => {
            return Err(match checkpoints.saved_frames() {
                // A render that resumes may share its checkpoints with another process (a
                // retried render-farm task): the folder is left for it.
                0 if !job.resume => {
                    checkpoints.remove();
                    e
                }
                0 => e,
                n => e.context(format!(
                    "{n} dreamed frames are kept in {}; {} to continue",
                    checkpoints.dir.display(),
                    match job.resume {
                        true => "run the same command again",
                        false => "rerun with --resume",
                    }
                )),
            });
        }
    };
    std::fs::write(sidecar_path(&job.output), &job.record)
        .with_context(|| format!("cannot write {}", sidecar_path(&job.output).display()))?;
    checkpoints.remove();
    Ok(VideoReport {
        frames: stats.frames,
        resumed: stats.resumed,
        redone: stats.redone,
        damaged_packets: stats.damaged_packets,
        wall: start.elapsed(),
        stages: clock.times(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// `out.mp4` -> `out.mp4.dreamvid.toml`, the settings a render used.
pub fn sidecar_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".dreamvid.toml");
    output.with_file_name(name)
}

fn one_line(toml: &str) -> String {
    toml.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('[')).collect::<Vec<_>>().join("; ")
}

/// Decodes the whole video, or only `span`'s frames (no audio); returns how many damaged video
/// packets were skipped.
fn decode_stage(
    mut reader: Source,
    out: SyncSender<Item>,
    span: Option<Span>,
    clock: &StageClock,
) -> anyhow::Result<usize> {
    if let Some(s) = &span {
        let t = Instant::now();
        reader.seek(s.start_pts, s.start)?;
        clock.since(Stage::Decode, t);
    }
    let mut frames = 0;
    loop {
        let t = Instant::now();
        let next = reader.next_item()?;
        clock.since(Stage::Decode, t);
        let Some(item) = next else { break };
        match item {
            Item::Frame(_) if span.as_ref().is_some_and(|s| frames == s.dreamed()) => break,
            Item::Frame(_) => frames += 1,
            Item::Audio(..) if span.is_some() => continue,
            Item::Audio(..) => {}
        }
        if out.send(item).is_err() {
            break; // a later stage stopped; it reports why
        }
    }
    Ok(reader.damaged())
}

/// Analyses the motion into every frame but those in `skip` (checkpointed: the dream stage
/// analyses one itself should its checkpoint turn out damaged).
fn flow_stage(
    input: Receiver<Item>,
    out: SyncSender<Analysed>,
    (mode, scene_cut): (Coherence, f32),
    skip: HashSet<usize>,
    clock: &StageClock,
) -> anyhow::Result<()> {
    let mut previous: Option<Plane> = None;
    for item in input {
        let analysed = match item {
            Item::Audio(p, s) => Analysed::Audio(p, s),
            Item::Frame(frame) => {
                let t = Instant::now();
                let luma = Plane::luma(&frame.image);
                let motion = match skip.contains(&frame.index) {
                    true => None,
                    false => previous.as_ref().map(|prev| coherence::motion(prev, &luma, mode, scene_cut)),
                };
                previous = Some(luma);
                clock.since(Stage::Flow, t);
                Analysed::Frame(frame, motion)
            }
        };
        if out.send(analysed).is_err() {
            break;
        }
    }
    Ok(())
}

/// Encodes what the dream stage hands on.
fn encode_stage(
    mut writer: Sink,
    input: Receiver<Encodable>,
    ticks_per_frame: i64,
    clock: &StageClock,
) -> anyhow::Result<()> {
    let mut last: Option<i64> = None;
    let mut last_duration = ticks_per_frame;
    for item in input {
        let t = Instant::now();
        match item {
            Encodable::Audio(p, s) => writer.write_audio(p, s)?,
            Encodable::Frame(pts, img) => {
                if let Some(prev) = last {
                    last_duration = pts - prev;
                }
                last = Some(pts);
                writer.write_frame(pts, img)?;
            }
        }
        clock.since(Stage::Encode, t);
    }
    if last.is_none() {
        return Ok(()); // nothing decoded; the dream stage reports it
    }
    let t = Instant::now();
    writer.finish(last_duration)?;
    clock.since(Stage::Encode, t);
    Ok(())
}

/// What the dream stage did (and the decoder, once joined).
#[derive(Default)]
struct DreamStats {
    frames: usize,
    resumed: usize,
    redone: Vec<usize>,
    damaged_packets: usize,
}

/// The dream stage could not hand a frame on: the encoder stopped, and says why.
#[derive(Debug, thiserror::Error)]
#[error("the encoder stopped early")]
struct EncoderStopped;

fn dream_stage(
    job: &VideoJob,
    checkpoints: &Checkpoints,
    info: &VideoInfo,
    (input, out): (Receiver<Analysed>, SyncSender<Encodable>),
    clock: &StageClock,
    progress: &mut dyn FnMut(FrameProgress<'_>),
) -> anyhow::Result<DreamStats> {
    let total = job.span.as_ref().map(Span::dreamed).or(info.frames);
    let fps = f64::from(info.frame_rate);
    let mut processed = 0;
    let mut previous: Option<(RgbImage, RgbImage)> = None;
    let mut stats = DreamStats::default();
    let stopped = || anyhow::Error::new(EncoderStopped);
    for item in input {
        job.cancel.check()?;
        let frame = match item {
            Analysed::Audio(p, s) => {
                out.send(Encodable::Audio(p, s)).map_err(|_| stopped())?;
                continue;
            }
            Analysed::Frame(frame, motion) => (frame, motion),
        };
        let (source, motion) = frame;
        let from_checkpoint = match job.resume {
            true => checkpoints.load(source.index, source.image.dimensions()),
            false => Checkpoint::Missing,
        };
        let dreamed = match from_checkpoint {
            Checkpoint::Found(img) => {
                stats.resumed += 1;
                img
            }
            missing_or_broken => {
                if matches!(missing_or_broken, Checkpoint::Unreadable) {
                    stats.redone.push(source.index);
                }
                let t = Instant::now();
                let prev = previous.as_ref().map(|(s, d)| (s, d));
                // A damaged checkpoint's frame was not analysed: do it here.
                let motion = motion.or_else(|| {
                    let prev = previous.as_ref()?;
                    let (a, b) = (Plane::luma(&prev.0), Plane::luma(&source.image));
                    Some(coherence::motion(&a, &b, job.coherence, job.scene_cut))
                });
                let mut params = (job.frame_params)(source.index, fps)?;
                // A frame that continues a shot starts from the carried dream and takes fewer
                // steps; still content holds its dream while the settings stay the same.
                let continues =
                    prev.is_some() && job.coherence != Coherence::None && !motion.as_ref().is_some_and(|m| m.cut);
                let new_share = motion.as_ref().map_or(0.0, Motion::new_share);
                let steps =
                    coherence::frame_steps(params.dream.iterations, params.frame_iterations, continues, new_share);
                let hold_still = match source.index.checked_sub(1) {
                    Some(before) if continues => (job.frame_params)(before, fps)?.dream == params.dream,
                    _ => false,
                };
                params.dream.iterations = steps;
                let start =
                    coherence::start(&source.image, prev, motion.as_ref(), job.coherence, params.carryover, hold_still);
                let (w, h) = (source.image.width() as usize, source.image.height() as usize);
                let x = Tensor::from_vec(start.image, (1, 3, h, w), &job.device)?;
                // The carried or blended dream brings the previous frame's colours: start from
                // this frame's own, which the dream then keeps.
                let x = match params.dream.keep_colors {
                    true => dream::color::keep_colors(&rgb_to_tensor(&source.image, &job.device)?, &x)?,
                    false => x,
                };
                // Held pixels (step weight 0) keep the start image bit for bit: the clamping of
                // the octave pyramid's smaller copies would otherwise nudge them a little every
                // frame, and on a held dream the nudges add up.
                let held = match &start.step_weight {
                    Some(weights) if weights.contains(&0.0) => Some(tensor_to_rgb(&x)?),
                    _ => None,
                };
                let weight = start
                    .step_weight
                    .as_deref()
                    .map(|m| Tensor::from_slice(m, (1, 1, h, w), &job.device))
                    .transpose()?;
                let mask = job.mask.map(|m| m.frame(source.index, h, w)).transpose()?;
                let strength = mask::strength(mask.as_ref(), (h, w), params.mask_weight, &job.device)?;
                let img = match &strength {
                    None => tensor_to_rgb(
                        &dream::dream_until(job.net, &x, &params.dream, weight.as_ref(), &mut |_| job.cancel.flow())?
                            .ok_or(Cancelled)?,
                    )?,
                    Some(m) if mask::is_zero(m)? => source.image.clone(),
                    Some(m) => {
                        let weight = match weight {
                            Some(w) => (w * m)?,
                            None => m.clone(),
                        };
                        let dreamed =
                            dream::dream_until(job.net, &x, &params.dream, Some(&weight), &mut |_| job.cancel.flow())?
                                .ok_or(Cancelled)?;
                        mask::composite_rgb(&tensor_to_rgb(&dreamed)?, &source.image, &m.flatten_all()?.to_vec1()?)
                    }
                };
                let img = match (held, &start.step_weight) {
                    (Some(held), Some(weights)) => mask::composite_rgb(&img, &held, weights),
                    _ => img,
                };
                clock.since(Stage::Dream, t);
                let t = Instant::now();
                checkpoints.save(source.index, &img)?;
                clock.since(Stage::Checkpoint, t);
                img
            }
        };
        match job.span.as_ref().map_or(Role::Written, |s| s.role(source.index)) {
            Role::Warmup => {}
            Role::Aside => {
                let dir = &job.span.as_ref().expect("spans set frames aside").aside;
                let path = aside_path(dir, source.index);
                write_atomically(&path, |tmp| Ok(dreamed.save_with_format(tmp, image::ImageFormat::Png)?))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Role::Written => {
                out.send(Encodable::Frame(source.pts, dreamed.clone())).map_err(|_| stopped())?;
                stats.frames += 1;
            }
        }
        processed += 1;
        let all_resumed = stats.resumed > 0 && stats.resumed == processed;
        let stages = clock.times();
        progress(FrameProgress {
            done: processed,
            total,
            resumed: all_resumed,
            index: source.index,
            image: &dreamed,
            stages,
        });
        previous = Some((source.image, dreamed));
    }
    if stats.frames == 0 && !job.excerpt.is_whole() {
        bail!("{} has no frames in the part asked for (is --start past its end?)", job.input.display());
    }
    if stats.frames == 0 {
        bail!("no video frames could be decoded from {} (empty or corrupt video stream)", job.input.display());
    }
    Ok(stats)
}
