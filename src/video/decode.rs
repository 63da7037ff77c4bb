//! Reading a video: frames as upright RGB images with their timestamps, and the audio packets
//! to copy, in file order.

use std::path::Path;

use anyhow::{bail, Context};
use ffmpeg::codec::packet::side_data::Type as SideDataType;
use ffmpeg::{format, media, software::scaling, util::frame, Packet};
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use super::excerpt::{Excerpt, Window};
use super::info::VideoInfo;

/// A decoded video frame.
pub struct SourceFrame {
    /// 0-based position in display order.
    pub index: usize,
    /// Presentation timestamp in the video stream's time base.
    pub pts: i64,
    /// Upright RGB pixels (rotation metadata already applied).
    pub image: RgbImage,
}

/// What the reader yields, in file order.
pub enum Item {
    /// The next video frame.
    Frame(SourceFrame),
    /// A packet of a copied (audio) stream, with its input stream index.
    Audio(Packet, usize),
}

/// Decodes the best video stream of a file.
pub struct VideoReader {
    input: format::context::Input,
    info: VideoInfo,
    stream: usize,
    decoder: ffmpeg::decoder::Video,
    scaler: Option<(super::Scaler, (ffmpeg::format::Pixel, u32, u32))>,
    next_index: usize,
    eof_sent: bool,
    pending: std::collections::VecDeque<Item>,
    damaged: usize,
    /// After a seek: frames before this pts are decoded and dropped; `true`: a frame at exactly
    /// this pts must follow.
    skip_before: Option<(i64, bool)>,
    /// Timestamp of the stream's first frame.
    stream_start: i64,
    /// The part of the input read, once [`VideoReader::read_excerpt`] was called.
    window: Option<Window>,
}

impl VideoReader {
    /// Opens `path`, failing with a clear message if it is missing or has no decodable video.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        super::init()?;
        if !path.is_file() {
            bail!("input video {} does not exist", path.display());
        }
        let input = format::input(path)
            .with_context(|| format!("cannot read {} as a video (unknown or corrupt container)", path.display()))?;
        let stream = input
            .streams()
            .best(media::Type::Video)
            .with_context(|| format!("{} has no video stream", path.display()))?;
        let index = stream.index();
        let time_base = stream.time_base();
        let ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())?;
        let decoder = ctx.decoder().video().with_context(|| {
            format!(
                "{}: no decoder for video codec {:?} in this FFmpeg build",
                path.display(),
                stream.parameters().id()
            )
        })?;
        let rotation = rotation_of(&stream);
        let stream_start = Some(stream.start_time()).filter(|&t| t != ffmpeg::ffi::AV_NOPTS_VALUE).unwrap_or(0);
        let (w, h) = (decoder.width(), decoder.height());
        if w == 0 || h == 0 {
            bail!("{}: video stream has no frame size (corrupt header?)", path.display());
        }
        let (width, height) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
        let rate = stream.avg_frame_rate();
        let frame_rate = if rate.numerator() > 0 && rate.denominator() > 0 { rate } else { stream.rate() };
        let frames = usize::try_from(stream.frames()).ok().filter(|&n| n > 0);
        let audio = input
            .streams()
            .filter(|s| s.parameters().medium() == media::Type::Audio)
            .map(|s| (s.index(), s.parameters(), s.time_base()))
            .collect();
        let info = VideoInfo { path: path.into(), width, height, time_base, frame_rate, frames, rotation, audio };
        Ok(Self {
            input,
            info,
            stream: index,
            decoder,
            scaler: None,
            next_index: 0,
            eof_sent: false,
            pending: Default::default(),
            damaged: 0,
            skip_before: None,
            stream_start,
            window: None,
        })
    }

    /// Reads only `excerpt` of the input from here on: seeks to its start (the keyframe
    /// before, then decoding forward to the first frame at or after it), and updates
    /// [`VideoReader::info`] to the excerpt's frame size and frame count.
    pub fn read_excerpt(&mut self, excerpt: &Excerpt) -> anyhow::Result<()> {
        let window = Window::new(excerpt, &mut self.info, self.stream_start);
        if let Some(target) = window.seek_pts {
            self.seek_to(target, window.first_index)?;
            self.skip_before = Some((target, false));
        }
        self.window = Some(window);
        Ok(())
    }

    /// Moves to the frame with presentation timestamp `pts` (stream time base), which is frame
    /// `index` of the stream: seeks to the keyframe at or before it, then decodes forward and
    /// drops the frames before it, so the next frame is exactly that one. Audio packets follow
    /// from the keyframe on.
    pub fn seek(&mut self, pts: i64, index: usize) -> anyhow::Result<()> {
        self.seek_to(pts, index)?;
        self.skip_before = Some((pts, true));
        Ok(())
    }

    /// Seeks to the keyframe at or before `pts`; the next frame counts as frame `index`.
    fn seek_to(&mut self, pts: i64, index: usize) -> anyhow::Result<()> {
        let tb = self.info.time_base;
        let micros = (i128::from(pts) * 1_000_000 * i128::from(tb.numerator()) / i128::from(tb.denominator())) as i64;
        self.input
            .seek(micros, ..micros)
            .with_context(|| format!("cannot seek in {} to {:.3} s", self.info.path.display(), micros as f64 / 1e6))?;
        self.decoder.flush();
        self.pending.clear();
        self.eof_sent = false;
        self.next_index = index;
        Ok(())
    }

    /// Video packets the decoder refused so far (damaged data, skipped as players do).
    pub fn damaged(&self) -> usize {
        self.damaged
    }

    /// What was learned when opening.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// The next frame or audio packet; `None` at the end.
    pub fn next_item(&mut self) -> anyhow::Result<Option<Item>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(item));
            }
            if self.eof_sent || self.window.as_ref().is_some_and(|w| w.done) {
                return Ok(None);
            }
            let mut packet = Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    let s = packet.stream();
                    if s == self.stream {
                        // A damaged packet is skipped, as players do; a file of nothing but
                        // damage ends with zero frames, which the caller reports.
                        if self.decoder.send_packet(&packet).is_ok() {
                            self.drain()?;
                        } else {
                            self.damaged += 1;
                        }
                    } else if let Some((_, _, tb)) = self.info.audio.iter().find(|(i, _, _)| *i == s) {
                        let tb = f64::from(*tb);
                        let kept = match &self.window {
                            Some(w) => w.admit_audio(packet, tb),
                            None => Some(packet),
                        };
                        if let Some(packet) = kept {
                            self.pending.push_back(Item::Audio(packet, s));
                        }
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    self.decoder.send_eof()?;
                    self.eof_sent = true;
                    self.drain()?;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("error reading {} (truncated or corrupt?)", self.info.path.display()))
                }
            }
        }
    }

    fn drain(&mut self) -> anyhow::Result<()> {
        let mut decoded = frame::Video::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let pts = decoded.timestamp().or(decoded.pts()).unwrap_or(self.next_index as i64);
            if let Some((target, exact)) = self.skip_before {
                if pts < target {
                    continue;
                }
                if !exact {
                    let seconds = (pts - self.stream_start) as f64 * f64::from(self.info.time_base);
                    self.next_index = (seconds * f64::from(self.info.frame_rate)).round() as usize;
                } else if pts > target {
                    bail!(
                        "{}: seeking to pts {target} landed on pts {pts}; this file cannot be cut at frame {} \
                         (render it whole instead)",
                        self.info.path.display(),
                        self.next_index
                    );
                }
                self.skip_before = None;
            }
            let index = self.next_index;
            self.next_index += 1;
            let pts = match self.window.as_mut() {
                Some(w) => match w.admit(index, pts) {
                    Some(pts) => pts,
                    None => continue,
                },
                None => pts,
            };
            let image = self.convert_to_rgb(&decoded)?;
            self.pending.push_back(Item::Frame(SourceFrame { index, pts, image }));
        }
        Ok(())
    }

    /// The frame as upright RGB at the stream's size: frames of a stream whose resolution
    /// changes midway are scaled to the size it started with.
    fn convert_to_rgb(&mut self, decoded: &frame::Video) -> anyhow::Result<RgbImage> {
        let key = (decoded.format(), decoded.width(), decoded.height());
        let (w, h) = if self.info.rotation % 180 == 90 {
            (self.info.height, self.info.width)
        } else {
            (self.info.width, self.info.height)
        };
        if self.scaler.as_ref().is_none_or(|(_, k)| *k != key) {
            let ctx = scaling::Context::get(key.0, key.1, key.2, format::Pixel::RGB24, w, h, super::scale_flags())
                .context("cannot convert the video's pixel format to RGB")?;
            self.scaler = Some((super::Scaler(ctx), key));
        }
        let mut rgb = frame::Video::empty();
        self.scaler.as_mut().expect("set above").0 .0.run(decoded, &mut rgb)?;
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let stride = rgb.stride(0);
        let data = rgb.data(0);
        let mut pixels = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            pixels.extend_from_slice(&data[y * stride..y * stride + w * 3]);
        }
        let img = RgbImage::from_raw(w as u32, h as u32, pixels).expect("w*h*3 bytes");
        Ok(match self.info.rotation {
            90 => image::imageops::rotate90(&img),
            180 => image::imageops::rotate180(&img),
            270 => image::imageops::rotate270(&img),
            _ => img,
        })
    }
}

/// Clockwise rotation (0/90/180/270) that displays the stream upright, from its display
/// matrix or, in older files, its `rotate` tag.
fn rotation_of(stream: &format::stream::Stream) -> u32 {
    let from_matrix = stream.side_data().find(|sd| sd.kind() == SideDataType::DisplayMatrix).and_then(|sd| {
        let d = sd.data();
        (d.len() >= 36).then(|| {
            let m = |i: usize| i32::from_le_bytes([d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]]) as f64;
            // Players rotate by -av_display_rotation_get(m), which is this angle, clockwise.
            (m(1) / m(1).hypot(m(4))).atan2(m(0) / m(0).hypot(m(3))).to_degrees()
        })
    });
    let from_tag = || stream.metadata().get("rotate").and_then(|r| r.parse::<f64>().ok());
    let degrees = from_matrix.or_else(from_tag).unwrap_or(0.0);
    ((degrees / 90.0).round() as i64).rem_euclid(4) as u32 * 90
}
