//! Joining a job's segments into one video: every segment is checked against the plan, its
//! packets are copied as they are (no re-encoding; only the cross-fades where segments meet
//! inside a shot are encoded), and the input's audio is copied once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ffmpeg::{format, media, Packet, Rational};
use ffmpeg_next as ffmpeg;

use super::{Job, Segment};
use crate::models::discovery::sha256_hex;
use crate::output::{is_temp_name, write_atomically};
use crate::pipeline::{aside_path, checksum_path};
use crate::video::encode::{add_copied_streams, set_metadata};
use crate::video::{EncodeSettings, VideoReader, VideoWriter};

/// Container metadata keys every segment file carries.
pub const JOB_KEY: &str = "dreamvid_job";
/// See [`JOB_KEY`].
pub const SEGMENT_KEY: &str = "dreamvid_segment";

/// A video file whose packets go into the joined video.
pub struct PacketSource {
    path: PathBuf,
    stream: usize,
    time_base: Rational,
    parameters: ffmpeg::codec::Parameters,
}

/// Opens `path`'s video stream and checks that it holds `frames` frames from `pts[0]` to
/// `pts[1]` (in the input's time base).
fn open_checked(path: &Path, job: &Job, frames: usize, pts: [i64; 2]) -> anyhow::Result<PacketSource> {
    crate::video::init()?;
    let mut input = format::input(path).with_context(|| format!("{} is not a readable video", path.display()))?;
    let stream =
        input.streams().best(media::Type::Video).with_context(|| format!("{} has no video", path.display()))?;
    let (index, time_base, parameters) = (stream.index(), stream.time_base(), stream.parameters());
    let (mut count, mut first, mut last) = (0usize, None, None);
    for (st, packet) in input.packets() {
        if st.index() == index {
            count += 1;
            let pts = packet.pts().with_context(|| format!("{}: a packet has no timestamp", path.display()))?;
            let pts = rescale(pts, time_base, source_tb(job));
            first = first.min(Some(pts)).or(Some(pts));
            last = last.max(Some(pts));
        }
    }
    if count != frames || first != Some(pts[0]) || last != Some(pts[1]) {
        bail!(
            "{} holds {count} frames from pts {first:?} to {last:?}; the plan says {frames} from {} to {} \
             (an interrupted or damaged render)",
            path.display(),
            pts[0],
            pts[1]
        );
    }
    Ok(PacketSource { path: path.into(), stream: index, time_base, parameters })
}

/// Checks segment `s` of the job in `dir` at `path`: made for this job and segment, the planned
/// frames and timestamps, and the frames it set aside for its cross-fades.
pub fn check_segment(dir: &Path, job: &Job, s: &Segment) -> anyhow::Result<PacketSource> {
    let path = Job::segment_path(dir, s.index);
    crate::video::init()?;
    let input = format::input(&path).with_context(|| format!("{} is not a readable video", path.display()))?;
    let meta = |k: &str| input.metadata().get(k).map(str::to_owned);
    if meta(JOB_KEY).as_deref() != Some(job.settings_hash.as_str()) {
        bail!("{} was rendered for another plan or with other settings", path.display());
    }
    if meta(SEGMENT_KEY) != Some(s.index.to_string()) {
        bail!("{} is not segment {}", path.display(), s.index);
    }
    let sum = sha256_hex(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let checksums = Job::checksums_dir(dir, s.index);
    if !checksum_path(&checksums, &sum).is_file() {
        bail!(
            "{} is damaged (truncated or changed since its render: no render recorded its sha256 in {})",
            path.display(),
            checksums.display()
        );
    }
    let source = open_checked(&path, job, s.frames - s.fade_in, s.pts)?;
    let set_aside = (s.first..s.first + s.fade_in).chain(s.first + s.frames..s.first + s.frames + s.fade_out);
    for frame in set_aside {
        let aside = aside_path(&Job::fade_dir(dir, s.index), frame);
        if !aside.is_file() {
            bail!("{} is missing: the cross-fade frames of segment {} are incomplete", aside.display(), s.index);
        }
    }
    Ok(source)
}

fn source_tb(job: &Job) -> Rational {
    Rational::new(job.time_base[0], job.time_base[1])
}

fn rescale(v: i64, from: Rational, to: Rational) -> i64 {
    let num = i128::from(v) * i128::from(from.numerator()) * i128::from(to.denominator());
    let den = i128::from(from.denominator()) * i128::from(to.numerator());
    (num as f64 / den as f64).round() as i64
}

/// The commands that render the segments named.
fn render_hint(dir: &Path, indices: &[usize]) -> String {
    indices.iter().map(|i| format!("  dreamvid render {} --segment {i}", dir.display())).collect::<Vec<_>>().join("\n")
}

/// Joins the segments of the job in `dir` into `output` (atomically): checks every segment
/// first and names the missing or stale ones with the commands that render them. Returns the
/// number of frames written.
pub fn assemble(dir: &Path, job: &Job, output: &Path) -> anyhow::Result<usize> {
    job.check_input()?;
    let mut files = Vec::new();
    let (mut missing, mut stale) = (Vec::new(), Vec::new());
    for s in &job.segments {
        if !Job::segment_path(dir, s.index).exists() {
            missing.push(s.index);
            continue;
        }
        match check_segment(dir, job, s) {
            Ok(f) => files.push(f),
            Err(e) => stale.push((s.index, format!("{e:#}"))),
        }
    }
    if !missing.is_empty() || !stale.is_empty() {
        let mut msg = String::new();
        if !missing.is_empty() {
            msg += &format!("segments not rendered yet: {missing:?}\n");
        }
        for (i, why) in &stale {
            msg += &format!("segment {i} must be rendered again: {why}\n");
        }
        let redo: Vec<usize> = missing.iter().copied().chain(stale.iter().map(|(i, _)| *i)).collect();
        bail!("cannot assemble {}:\n{msg}render them with:\n{}", output.display(), render_hint(dir, &redo));
    }
    // Where segments meet inside a shot, their cross-fade goes between them.
    let mut sources = Vec::with_capacity(2 * files.len());
    for (k, file) in files.into_iter().enumerate() {
        let s = &job.segments[k];
        if s.fade_in > 0 {
            sources.push(encode_seam(dir, job, &job.segments[k - 1], s)?);
        }
        sources.push(file);
    }
    let joined = write_atomically(output, |tmp| join(&sources, job, tmp));
    for seam in sources.iter().filter(|s| s.path.extension().is_some_and(|e| e == "seam")) {
        let _ = std::fs::remove_file(&seam.path);
    }
    if joined.is_ok() {
        remove_partial_files(dir, job);
    }
    joined
}

/// Removes the temporary files that killed renders left in the job's segments folder and its
/// cross-fade folders. A render still running (a duplicate of a finished task) whose file
/// goes finds its segment done and stops.
fn remove_partial_files(dir: &Path, job: &Job) {
    let folders =
        std::iter::once(Job::segments_dir(dir)).chain(job.segments.iter().map(|s| Job::fade_dir(dir, s.index)));
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.filter_map(Result::ok) {
            if is_temp_name(&entry.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Encodes the cross-fade where segment `a` meets segment `b` inside a shot: `b`'s first
/// `fade_in` frames, blending from `a`'s dream (dreamed past its end) into `b`'s own, with the
/// segments' encoder settings.
fn encode_seam(dir: &Path, job: &Job, a: &Segment, b: &Segment) -> anyhow::Result<PacketSource> {
    let mut info = VideoReader::open(&job.input)?.info().clone();
    info.audio.clear();
    let mut encode = EncodeSettings::from(&super::job_preset(job)?.base);
    encode.b_frames = false;
    // Matroska, whatever the extension says (`.seam` marks the file as temporary).
    let path = Job::segments_dir(dir).join(format!("{}.mkv.seam", b.index));
    let read = |segment: &Segment, frame: usize| -> anyhow::Result<image::RgbImage> {
        let p = aside_path(&Job::fade_dir(dir, segment.index), frame);
        Ok(image::open(&p).with_context(|| format!("cannot read {}", p.display()))?.to_rgb8())
    };
    let k = b.fade_in;
    let mut writer = VideoWriter::create_as(&path, "matroska", &info, &encode)?;
    for (j, &pts) in b.fade_pts.iter().enumerate() {
        let (from, to) = (read(a, b.first + j)?, read(b, b.first + j)?);
        if from.dimensions() != to.dimensions() {
            bail!("the cross-fade frames of segments {} and {} differ in size", a.index, b.index);
        }
        let t = (j + 1) as f32 / (k + 1) as f32;
        let mut blend = to.clone();
        for (o, (x, y)) in blend.iter_mut().zip(from.iter().zip(to.iter())) {
            *o = ((1.0 - t) * f32::from(*x) + t * f32::from(*y)).round() as u8;
        }
        writer.write_frame(pts, blend)?;
    }
    writer.finish(b.pts[0] - b.fade_pts[k - 1])?;
    open_checked(&path, job, k, [b.fade_pts[0], b.fade_pts[k - 1]])
}

/// Writes the video packets of `sources` in order, interleaved with the input's audio packets.
fn join(sources: &[PacketSource], job: &Job, path: &Path) -> anyhow::Result<usize> {
    let first = sources.first().context("the job has no segments")?;
    let mut input = format::input(&job.input).with_context(|| format!("cannot read {}", job.input.display()))?;
    let audio_in: Vec<(usize, ffmpeg::codec::Parameters, Rational)> = input
        .streams()
        .filter(|s| s.parameters().medium() == media::Type::Audio)
        .map(|s| (s.index(), s.parameters(), s.time_base()))
        .collect();
    let mut output = format::output(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut video = output.add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))?;
    video.set_parameters(first.parameters.clone());
    // SAFETY: the stream's parameters are owned by `output` and valid; a zero tag lets the muxer
    // choose the tag for its container.
    unsafe { (*video.parameters().as_mut_ptr()).codec_tag = 0 };
    video.set_time_base(source_tb(job));
    let video_out = video.index();
    let audio = add_copied_streams(&mut output, &audio_in)?;
    let comment = format!("dreamvid {}: render-farm job {}", env!("CARGO_PKG_VERSION"), job.settings_hash);
    set_metadata(&mut output, &[("comment".into(), comment)]);
    output.write_header().with_context(|| format!("cannot write {}", path.display()))?;
    let video_tb = output.stream(video_out).expect("added").time_base();
    let tb = source_tb(job);
    let seconds = |p: &Packet, tb: Rational| p.dts().or(p.pts()).unwrap_or(0) as f64 * f64::from(tb);
    // Audio in file order; each video packet goes out once the audio before it in time has, and
    // with its duration (the next packet's start), which MP4 needs for the last frame.
    let mut audio_packets = input.packets().filter(|(s, _)| audio.contains_key(&s.index()));
    let mut next_audio = audio_packets.next().map(|(s, p)| (s.index(), p));
    let mut held: Option<Packet> = None;
    let mut frames = 0;
    let mut put_video = |mut p: Packet, end: i64, out: &mut format::context::Output| -> anyhow::Result<()> {
        p.set_duration(end - p.pts().unwrap_or(end));
        p.set_stream(video_out);
        p.set_position(-1);
        p.rescale_ts(tb, video_tb);
        frames += 1;
        p.write_interleaved(out).context("cannot write a video packet")
    };
    for source in sources {
        let mut file = format::input(&source.path).with_context(|| format!("cannot read {}", source.path.display()))?;
        for (s, mut packet) in file.packets() {
            if s.index() != source.stream {
                continue;
            }
            packet.rescale_ts(source.time_base, tb);
            let now = seconds(&packet, tb);
            while let Some((s, p)) = next_audio.take_if(|(s, p)| seconds(p, audio[s].1) <= now) {
                copy_audio(&mut output, p, s, &audio)?;
                next_audio = audio_packets.next().map(|(s, p)| (s.index(), p));
            }
            if let Some(prev) = held.replace(packet.clone()) {
                put_video(prev, packet.pts().unwrap_or(0), &mut output)?;
            }
        }
    }
    if let Some(last) = held {
        let end = last.pts().unwrap_or(0) + last.duration().max(1);
        put_video(last, end, &mut output)?;
    }
    for (s, p) in next_audio.into_iter().chain(audio_packets.map(|(s, p)| (s.index(), p))) {
        copy_audio(&mut output, p, s, &audio)?;
    }
    output.write_trailer().context("cannot finish the output")?;
    Ok(frames)
}

fn copy_audio(
    output: &mut format::context::Output,
    mut packet: Packet,
    stream: usize,
    audio: &HashMap<usize, (usize, Rational)>,
) -> anyhow::Result<()> {
    let (out, tb) = audio[&stream];
    let out_tb = output.stream(out).expect("added").time_base();
    packet.rescale_ts(tb, out_tb);
    packet.set_position(-1);
    packet.set_stream(out);
    packet.write_interleaved(output).context("cannot write an audio packet")
}
