//! Render farms: a video split into segments that any number of machines render at once
//! (Slurm job arrays, Kubernetes Indexed Jobs), then joined without re-encoding.
//!
//! ```text
//! dreamvid plan IN -o JOB ──▶ JOB/job.toml ──▶ dreamvid render JOB --segment I (any machine,
//!   decodes once, finds shots,   settings,        any order) ──▶ JOB/segments/I.mkv
//!   cuts segments at shots and   segments     ──▶ dreamvid assemble JOB -o OUT: checks every
//!   every --segment-seconds                       segment, joins the packets, copies the audio
//! ```
//!
//! Segments start at cuts where they can (a cut resets the carried dream, so such a segment
//! is the very frames a single render makes); a segment inside a long shot first dreams a
//! warm-up of frames it throws away, so that the dream carried over has built up at the seam.
//! Nothing is locked: every file appears by an atomic rename in its own folder, so `JOB` may
//! live on NFS.

pub mod assemble;
pub mod segments;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

pub use segments::{plan_segments, Cutting, Segment};

use crate::models::ModelKind;
use crate::output::write_atomically;
use crate::pipeline::Span;
use crate::preset::Preset;
use crate::settings::{self, Setting};

/// Version of the job file's layout.
pub const JOB_VERSION: u32 = 1;

/// A planned render: `JOB_DIR/job.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// [`JOB_VERSION`] of the file.
    pub version: u32,
    /// dreamvid version that planned it.
    pub dreamvid: String,
    /// The input video (absolute path).
    pub input: PathBuf,
    /// [`fingerprint`] of the input when it was planned.
    pub input_fingerprint: String,
    /// Frames of the input.
    pub frames: usize,
    /// Its video time base, `[numerator, denominator]`.
    pub time_base: [i32; 2],
    /// Model name (`dreamvid layers`).
    pub model: String,
    /// The weights file the plan was made with (absolute; renders use it where it is reachable,
    /// else find a file of that name as `dreamvid` does).
    pub weights: PathBuf,
    /// [`fingerprint`] of the weights.
    pub weights_fingerprint: String,
    /// Where the preset came from (`preset NAME` or a path).
    pub preset_origin: String,
    /// The preset's TOML text, so every machine resolves the same settings.
    pub preset: String,
    /// Flags given with the plan, `[name, value]` as typed (see `dreamvid settings`).
    pub flags: Vec<[String; 2]>,
    /// Hash of everything that decides the frames; every segment file carries it.
    pub settings_hash: String,
    /// Segments in order.
    pub segments: Vec<Segment>,
}

impl Job {
    /// The job file of a job folder.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("job.toml")
    }

    /// Reads `dir/job.toml`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read {} (make it with `dreamvid plan INPUT -o {}`)", path.display(), dir.display())
        })?;
        Self::parse(&text, &path)
    }

    /// Reads a job file's text (`path` names it in errors): a job of this version whose
    /// segments are consistent with each other and with the input's frames.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let job: Job =
            toml::from_str(text).with_context(|| format!("{} is not a dreamvid job file", path.display()))?;
        if job.version != JOB_VERSION {
            bail!(
                "{} is a version {} job; this dreamvid reads version {JOB_VERSION}: plan it again",
                path.display(),
                job.version
            );
        }
        job.check_segments().map_err(|why| {
            anyhow::anyhow!("{} is damaged ({why}): delete the folder and plan again", path.display())
        })?;
        Ok(job)
    }

    /// What is wrong with the segment list, if anything: every segment in order, inside the
    /// input, its warm-up and cross-fades inside it as [`plan_segments`] makes them.
    fn check_segments(&self) -> Result<(), String> {
        if self.time_base[0] <= 0 || self.time_base[1] <= 0 {
            return Err(format!("time base {}/{}", self.time_base[0], self.time_base[1]));
        }
        let mut next = 0;
        for (i, s) in self.segments.iter().enumerate() {
            let end = s.first.checked_add(s.frames).and_then(|e| e.checked_add(s.fade_out));
            // A segment fades in over as many frames as the one before it dreamed past its end.
            let fade_before = if i == 0 { 0 } else { self.segments[i - 1].fade_out };
            let fits = s.index == i
                && s.first == next
                && s.warmup <= s.first
                && s.fade_in < s.frames
                && s.fade_in == fade_before
                && s.fade_pts.len() == s.fade_in
                && end.is_some_and(|e| e <= self.frames);
            if !fits {
                return Err(format!("segment {i} does not fit the plan's frames"));
            }
            next = s.first + s.frames;
        }
        if self.segments.last().is_some_and(|s| s.fade_out > 0) {
            return Err("the last segment fades into nothing".into());
        }
        if next != self.frames {
            return Err(format!("its segments cover {next} of {} frames", self.frames));
        }
        Ok(())
    }

    /// Writes `dir/job.toml` atomically.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let text = toml::to_string(self)?;
        write_atomically(&Self::path(dir), |tmp| Ok(std::fs::write(tmp, text)?))
    }

    /// The settings flags, as setting rows and values.
    pub fn setting_flags(&self) -> anyhow::Result<Vec<(&'static Setting, String)>> {
        self.flags
            .iter()
            .map(|[name, value]| {
                let row = settings::find(name).with_context(|| format!("the job names an unknown setting `{name}`"))?;
                Ok((row, value.clone()))
            })
            .collect()
    }

    /// The model the job renders with.
    pub fn model_kind(&self) -> anyhow::Result<ModelKind> {
        self.model.parse().map_err(anyhow::Error::msg)
    }

    /// The folder of the segment files.
    pub fn segments_dir(dir: &Path) -> PathBuf {
        dir.join("segments")
    }

    /// Where segment `index` is written.
    pub fn segment_path(dir: &Path, index: usize) -> PathBuf {
        Self::segments_dir(dir).join(format!("{index}.mkv"))
    }

    /// The folder of segment `index`'s checksum records: a file named by the sha256 of each
    /// segment file a render completed (written just before the file).
    pub fn checksums_dir(dir: &Path, index: usize) -> PathBuf {
        Self::segments_dir(dir).join(format!("{index}.checksums"))
    }

    /// Where segment `index` sets aside the frames it cross-fades with its neighbours.
    pub fn fade_dir(dir: &Path, index: usize) -> PathBuf {
        Self::segments_dir(dir).join(format!("{index}.fade"))
    }

    /// Fails unless the input is the file the plan was made from.
    pub fn check_input(&self) -> anyhow::Result<()> {
        let now = fingerprint(&self.input)
            .with_context(|| format!("the job's input {} cannot be read", self.input.display()))?;
        if now != self.input_fingerprint {
            bail!(
                "{} changed since the job was planned (plan from another input?): plan it again",
                self.input.display()
            );
        }
        Ok(())
    }
}

/// The hash every segment file of a job carries: of the settings record (input, model,
/// weights, preset and every setting) and the job's segment list.
pub fn settings_hash(record: &str, segments: &[Segment]) -> String {
    let text =
        format!("{record}\n{}", toml::to_string(&SegmentList { segment: segments.to_vec() }).unwrap_or_default());
    format!("{:016x}", crate::preset::text_hash(&text))
}

#[derive(Serialize)]
struct SegmentList {
    segment: Vec<Segment>,
}

/// A quick identity of a file: its size and a hash of its first and last MiB (reading a whole
/// video on every machine would cost more than it protects).
pub fn fingerprint(path: &Path) -> anyhow::Result<String> {
    use std::io::{Seek, SeekFrom};
    const PART: u64 = 1 << 20;
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = f.metadata()?.len();
    let mut bytes = Vec::new();
    f.by_ref().take(PART).read_to_end(&mut bytes)?;
    if size > PART {
        f.seek(SeekFrom::Start(size.saturating_sub(PART).max(PART)))?;
        f.read_to_end(&mut bytes)?;
    }
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    Ok(format!("{size}-{hash:016x}"))
}

/// What `dreamvid status` shows of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentState {
    /// Its file is there and belongs to this job.
    Done,
    /// Not rendered yet.
    Missing,
    /// A file is there but of another plan or damaged: render it again.
    Stale(String),
}

/// The state of every segment of the job in `dir`.
pub fn status(dir: &Path, job: &Job) -> Vec<SegmentState> {
    job.segments
        .iter()
        .map(|s| {
            if !Job::segment_path(dir, s.index).exists() {
                return SegmentState::Missing;
            }
            match assemble::check_segment(dir, job, s) {
                Ok(_) => SegmentState::Done,
                Err(e) => SegmentState::Stale(format!("{e:#}")),
            }
        })
        .collect()
}

/// Plans the render of `input` with `preset` (from `preset_origin`'s text `preset_text` and
/// `flags`) on `model` with the weights at `weights`: finds the shots and cuts the video into
/// segments of at most `segment_seconds` (warmed up by `warmup` frames inside shots).
pub fn plan(
    input: &Path,
    (preset_origin, preset_text, flags): (&str, &str, &[(&'static Setting, String)]),
    (model, weights): (ModelKind, &Path),
    segment_seconds: f64,
    (warmup, crossfade): (usize, usize),
) -> anyhow::Result<Job> {
    let input = input.canonicalize().with_context(|| format!("input video {} does not exist", input.display()))?;
    let (preset, _) = crate::plan::resolve_preset(preset_origin, preset_text, Some(model), flags)?;
    let info = crate::video::VideoReader::open(&input)?.info().clone();
    let scan = crate::video::shots::scan(&input, preset.base.scene_cut as f32)?;
    let fps = f64::from(info.frame_rate).max(1e-3);
    let cutting = Cutting {
        max_frames: (segment_seconds * fps).round().max(1.0) as usize,
        min_frames: (fps / 2.0).round().max(1.0) as usize,
        warmup,
        crossfade,
    };
    let segments = plan_segments(&scan.pts, &scan.cuts, cutting);
    let record = crate::resume::render_record(&input, model, weights, &preset);
    Ok(Job {
        version: JOB_VERSION,
        dreamvid: env!("CARGO_PKG_VERSION").into(),
        input_fingerprint: fingerprint(&input)?,
        input,
        frames: scan.pts.len(),
        time_base: [info.time_base.numerator(), info.time_base.denominator()],
        model: model.name().into(),
        weights: weights
            .canonicalize()
            .with_context(|| format!("weights file {} does not exist", weights.display()))?,
        weights_fingerprint: fingerprint(weights)?,
        preset_origin: preset_origin.into(),
        preset: preset_text.into(),
        flags: flags.iter().map(|(row, v)| [row.name.to_string(), v.clone()]).collect(),
        settings_hash: settings_hash(&record, &segments),
        segments,
    })
}

/// What rendering one segment writes: a [`crate::pipeline::VideoJob`]'s segment-specific parts.
pub struct SegmentRender {
    /// Where the encoded segment goes.
    pub output: PathBuf,
    /// The frames to decode, dream, keep and set aside.
    pub span: Span,
    /// Metadata tags that tie the file to its job and index (checked by `assemble`).
    pub tags: Vec<(String, String)>,
}

/// The render of segment `index` of the job in `dir`.
pub fn segment_render(dir: &Path, job: &Job, index: usize) -> anyhow::Result<SegmentRender> {
    let s = job.segments.get(index).with_context(|| {
        format!("the job in {} has segments 0 to {}, not {index}", dir.display(), job.segments.len().saturating_sub(1))
    })?;
    let span = Span {
        start: s.first - s.warmup,
        start_pts: s.start_pts,
        warmup: s.warmup,
        head: s.fade_in,
        frames: s.frames - s.fade_in,
        tail: s.fade_out,
        aside: Job::fade_dir(dir, index),
        checksums: Job::checksums_dir(dir, index),
    };
    let tags = vec![
        (assemble::JOB_KEY.to_string(), job.settings_hash.clone()),
        (assemble::SEGMENT_KEY.to_string(), index.to_string()),
    ];
    Ok(SegmentRender { output: Job::segment_path(dir, index), span, tags })
}

/// The segment index a render was asked for: `flag`, else Slurm's `SLURM_ARRAY_TASK_ID`, else
/// Kubernetes' `JOB_COMPLETION_INDEX`.
pub fn segment_index(flag: Option<usize>) -> anyhow::Result<usize> {
    if let Some(i) = flag {
        return Ok(i);
    }
    for var in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] {
        if let Ok(v) = std::env::var(var) {
            return v.trim().parse().with_context(|| format!("{var}={v} is not a segment number"));
        }
    }
    bail!("which segment? give --segment I (or run as a Slurm array task or a Kubernetes Indexed Job)")
}

/// The preset as the job resolves it (the same on every machine).
pub fn job_preset(job: &Job) -> anyhow::Result<Preset> {
    let flags = job.setting_flags()?;
    let (preset, _) = crate::plan::resolve_preset(&job.preset_origin, &job.preset, Some(job.model_kind()?), &flags)?;
    Ok(preset)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job of 100 frames: a shot of 40, then one of 60 split in two with a warm-up.
    fn job() -> Job {
        let pts: Vec<i64> = (0..100).map(|i| 512 * i).collect();
        let cutting = Cutting { max_frames: 40, min_frames: 5, warmup: 12, crossfade: 4 };
        Job {
            version: JOB_VERSION,
            dreamvid: "0".into(),
            input: "in.mp4".into(),
            input_fingerprint: "1-0".into(),
            frames: 100,
            time_base: [1, 12800],
            model: "vgg19".into(),
            weights: "w.safetensors".into(),
            weights_fingerprint: "1-0".into(),
            preset_origin: "preset layer20".into(),
            preset: String::new(),
            flags: vec![],
            settings_hash: "0".into(),
            segments: plan_segments(&pts, &[40], cutting),
        }
    }

    #[test]
    fn a_job_file_whose_segments_do_not_fit_is_damaged() {
        let path = Path::new("JOB/job.toml");
        let good = job();
        assert_eq!(good.segments.iter().map(|s| (s.first, s.warmup)).collect::<Vec<_>>(), [(0, 0), (40, 0), (70, 12)]);
        assert_eq!(Job::parse(&toml::to_string(&good).unwrap(), path).unwrap(), good);
        // Each of these would have made `render` compute frame numbers below 0 or past the
        // input, or left frames out.
        type Break = (&'static str, fn(&mut Job));
        let breaks: [Break; 9] = [
            ("warm-up before the input", |j| j.segments[2].warmup = 71),
            ("cross-fade longer than the segment", |j| j.segments[2].fade_in = 30),
            ("a fade into the first segment", |j| j.segments[0].fade_in = 1),
            ("fades that do not meet", |j| j.segments[1].fade_out = 3),
            ("fade timestamps missing", |j| j.segments[2].fade_pts.clear()),
            ("past the input", |j| j.frames = 90),
            ("a gap", |j| j.segments[1].first = 41),
            ("out of order", |j| j.segments.swap(0, 1)),
            ("no time base", |j| j.time_base = [1, 0]),
        ];
        for (what, change) in breaks {
            let mut bad = good.clone();
            change(&mut bad);
            let err = Job::parse(&toml::to_string(&bad).unwrap(), path).unwrap_err().to_string();
            assert!(err.contains("JOB/job.toml is damaged") && err.contains("plan again"), "{what}: {err}");
        }
    }
}
