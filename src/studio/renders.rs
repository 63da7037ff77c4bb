//! The studio's render queue: videos and zooms dreamed one after another by one worker
//! thread, each with its progress (frames, ETA, a video's stage times), its latest frame, a
//! cancel, and a resume (a video's from its checkpoints; a zoom starts again). The queue lives
//! in the server, so a reloaded page or a second tab shows the same one.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use super::lock;
use super::Studio;
use crate::animation::{write_frames, Format, Target};
use crate::cancel::{Cancel, Cancelled};
use crate::image_io::read_picture;
use crate::models::ModelKind;
use crate::pipeline::{render_video, StageTimes, VideoJob};
use crate::plan::{load_preset, open_files, Plan, Purpose};
use crate::resume::render_record;
use crate::settings::Setting;
use crate::video::{EncodeSettings, Excerpt};
use crate::zoom::{generated_frames, stream_zoom, ZoomJob};

/// Frames per second of the studio's zooms.
pub const ZOOM_FPS: u32 = 12;

/// What a render makes.
#[derive(Debug, Clone)]
pub enum What {
    /// A stored video, dreamed.
    Video(std::path::PathBuf),
    /// An infinite zoom of `frames` frames into a stored picture (at preview size).
    Zoom {
        /// The picture.
        picture: std::path::PathBuf,
        /// Frames.
        frames: usize,
    },
}

/// Where a render stands.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Status {
    /// Its number.
    pub id: usize,
    /// The video it dreams (an upload's file name) and the model.
    pub input: String,
    /// The model.
    pub model: String,
    /// The settings the page changed.
    pub settings: BTreeMap<String, String>,
    /// `queued`, `running`, `done`, `cancelled` or `failed`.
    pub state: String,
    /// Frames done.
    pub done: usize,
    /// Frames in all, when known.
    pub total: Option<usize>,
    /// Seconds left, estimated from the frames dreamed so far in this run.
    pub eta_s: Option<f64>,
    /// Seconds each stage has worked: decode, flow, dream, checkpoint, encode.
    pub stages: [f64; 5],
    /// Why it failed.
    pub error: Option<String>,
    /// The finished video's name in the renders folder.
    pub output: Option<String>,
}

/// One render of the queue.
pub struct Render {
    status: Mutex<Status>,
    cancel: Mutex<Cancel>,
    /// The last frame dreamed, as PNG.
    latest: Mutex<Option<Vec<u8>>>,
    flags: Vec<(&'static Setting, String)>,
    kind: ModelKind,
    what: What,
}

/// Every render since the studio started, and the queue of those waiting.
#[derive(Default)]
pub struct Renders {
    all: Mutex<Vec<Arc<Render>>>,
    waiting: Mutex<VecDeque<Arc<Render>>>,
    wake: Condvar,
    worker: std::sync::OnceLock<()>,
}

impl Renders {
    /// Every render's status, oldest first.
    pub fn list(&self) -> Vec<Status> {
        lock(&self.all).iter().map(|r| lock(&r.status).clone()).collect()
    }

    /// Render `id`.
    pub fn get(&self, id: usize) -> Option<Arc<Render>> {
        lock(&self.all).get(id).cloned()
    }
}

impl Render {
    /// Its latest frame, as PNG.
    pub fn latest(&self) -> Option<Vec<u8>> {
        lock(&self.latest).clone()
    }

    /// Its status.
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// Stops it before its next gradient step (its checkpoints are kept for a resume), or
    /// takes it off the queue.
    pub fn cancel(&self) {
        lock(&self.cancel).cancel();
        let mut status = lock(&self.status);
        if status.state == "queued" {
            status.state = "cancelled".into();
        }
    }
}

/// Queues `what` on `kind` with `flags`; returns its number.
pub fn queue(studio: &Arc<Studio>, what: What, kind: ModelKind, flags: Vec<(&'static Setting, String)>) -> usize {
    let mut all = lock(&studio.renders.all);
    let id = all.len();
    let input = match &what {
        What::Video(path) => path.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        What::Zoom { picture, frames } => {
            format!("zoom of {frames} frames into {}", picture.file_name().unwrap_or_default().to_string_lossy())
        }
    };
    let status = Status {
        id,
        input,
        model: kind.name().into(),
        settings: flags.iter().map(|(r, v)| (r.name.to_string(), v.clone())).collect(),
        state: "queued".into(),
        ..Status::default()
    };
    let render = Arc::new(Render {
        status: Mutex::new(status),
        cancel: Mutex::new(Cancel::new()),
        latest: Mutex::new(None),
        flags,
        kind,
        what,
    });
    all.push(render.clone());
    drop(all);
    enqueue(studio, render);
    id
}

/// Queues a cancelled or failed render again: it resumes from its checkpoints.
pub fn resume(studio: &Arc<Studio>, render: Arc<Render>) -> bool {
    {
        let mut status = lock(&render.status);
        if !matches!(status.state.as_str(), "cancelled" | "failed") {
            return false;
        }
        status.state = "queued".into();
        status.error = None;
    }
    *lock(&render.cancel) = Cancel::new();
    enqueue(studio, render);
    true
}

fn enqueue(studio: &Arc<Studio>, render: Arc<Render>) {
    lock(&studio.renders.waiting).push_back(render);
    studio.renders.wake.notify_one();
    let worker = studio.clone();
    studio.renders.worker.get_or_init(move || {
        std::thread::spawn(move || work(&worker));
    });
}

/// The worker: renders the queue one by one, for as long as the studio runs.
fn work(studio: &Studio) {
    loop {
        let render = {
            let mut waiting = lock(&studio.renders.waiting);
            loop {
                match waiting.pop_front() {
                    Some(r) => break r,
                    None => {
                        waiting = studio.renders.wake.wait(waiting).unwrap_or_else(std::sync::PoisonError::into_inner)
                    }
                }
            }
        };
        if render.status().state != "queued" {
            continue; // cancelled while it waited
        }
        lock(&render.status).state = "running".into();
        let result = super::contained(|| run(studio, &render));
        let mut status = lock(&render.status);
        match result {
            Ok(name) => {
                status.state = "done".into();
                status.output = Some(name);
                status.eta_s = None;
            }
            Err(e) if e.is::<Cancelled>() => status.state = "cancelled".into(),
            Err(e) => {
                status.state = "failed".into();
                status.error = Some(format!("{e:#}"));
            }
        }
    }
}

/// Renders one video or zoom into the renders folder; returns the output's file name.
fn run(studio: &Studio, render: &Render) -> anyhow::Result<String> {
    let name = format!("render-{}-{}.mp4", studio.run, render.status().id);
    let output = studio.files.render(&name);
    match &render.what {
        What::Video(input) => run_video(studio, render, input, output)?,
        What::Zoom { picture, frames } => run_zoom(studio, render, (picture, *frames), &output)?,
    }
    Ok(name)
}

/// Updates `render`'s frame count and ETA (`first`: frames done and time when this run's first
/// frame was counted).
fn count(render: &Render, first: &mut Option<(usize, Instant)>, done: usize, total: Option<usize>) {
    let mut status = lock(&render.status);
    status.done = done;
    status.total = total;
    // The ETA counts the frames dreamed in this run (a video's checkpointed ones come at once).
    let (done_at_start, t0) = *first.get_or_insert((done, Instant::now()));
    let dreamed = done.saturating_sub(done_at_start);
    status.eta_s = total
        .filter(|_| dreamed > 0)
        .map(|total| t0.elapsed().as_secs_f64() / dreamed as f64 * total.saturating_sub(done) as f64);
}

/// Keeps `image` as the render's latest frame, at most twice a second (encoding it costs).
fn show(render: &Render, shown: &mut Option<Instant>, image: &RgbImage) {
    if shown.is_none_or(|t| t.elapsed().as_secs_f64() > 0.5) {
        *shown = Some(Instant::now());
        *lock(&render.latest) = png(image);
    }
}

/// A zoom of `frames` frames into `picture`, as the MP4 `output`; a cancel stops it before
/// its next frame.
fn run_zoom(
    studio: &Studio,
    render: &Render,
    (picture, frames): (&std::path::Path, usize),
    output: &std::path::Path,
) -> anyhow::Result<()> {
    let session = studio.session(render.kind)?;
    let (preset, _) = load_preset(None, Purpose::Zoom, Some(render.kind), &render.flags)?;
    let (guide, mask) = open_files(&preset.base, Purpose::Zoom, &session.device)?;
    let plan = Plan { preset: &preset, net: &session.net, vary_seed: true, guide };
    let frame_settings = |i: usize| plan.frame(i, f64::from(ZOOM_FPS));
    let seed_image = read_picture(picture, &session.device)?.rgb;
    let job = ZoomJob {
        net: &session.net,
        seed_image,
        frames,
        looped: false,
        frame_settings: &frame_settings,
        mask: mask.as_ref(),
    };
    let format = Format { fps: ZOOM_FPS, gif_quality: 10, codec: EncodeSettings::from(&preset.base) };
    let cancel = lock(&render.cancel).clone();
    let total = generated_frames(frames, false);
    let (mut first, mut shown) = (None, None::<Instant>);
    write_frames(&Target::for_path(output)?, &format, |sink| {
        let mut emit = |frame: RgbImage| {
            cancel.check()?;
            show(render, &mut shown, &frame);
            sink(frame)
        };
        stream_zoom(&job, &mut emit, &mut |done| count(render, &mut first, done, Some(total)))
    })?;
    Ok(())
}

/// A video, dreamed into `output` with a video preset's coherence; a cancel keeps its
/// checkpoints.
fn run_video(studio: &Studio, render: &Render, input: &std::path::Path, output: PathBuf) -> anyhow::Result<()> {
    let session = studio.session(render.kind)?;
    let (preset, _) = load_preset(None, Purpose::Video, Some(render.kind), &render.flags)?;
    let (guide, mask) = open_files(&preset.base, Purpose::Video, &session.device)?;
    let plan = Plan { preset: &preset, net: &session.net, vary_seed: false, guide };
    let frame_params = |i: usize, fps: f64| plan.frame(i, fps);
    let cancel = lock(&render.cancel).clone();
    let job = VideoJob {
        record: render_record(input, render.kind, &session.weights, &preset),
        input: input.to_path_buf(),
        input_fps: None,
        output,
        net: &session.net,
        device: session.device.clone(),
        frame_params: &frame_params,
        coherence: preset.base.coherence,
        scene_cut: preset.base.scene_cut as f32,
        encode: EncodeSettings::from(&preset.base),
        resume: true,
        excerpt: Excerpt::default(),
        span: None,
        mask: mask.as_ref(),
        cancel,
    };
    let (mut first, mut shown) = (None, None::<Instant>);
    render_video(&job, &mut |p| {
        count(render, &mut first, p.done, p.total);
        let StageTimes { decode, flow, dream, checkpoint, encode } = p.stages;
        lock(&render.status).stages = [decode, flow, dream, checkpoint, encode].map(|d| d.as_secs_f64());
        show(render, &mut shown, p.image);
    })?;
    Ok(())
}

fn png(img: &RgbImage) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).ok()?;
    Some(out)
}
