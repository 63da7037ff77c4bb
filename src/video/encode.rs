//! Writing a video: RGB frames at exact timestamps through an FFmpeg encoder (H.264 by
//! default) and audio packets copied unchanged.

use std::collections::HashMap;
use std::ffi::CString;
use std::path::Path;

use anyhow::{bail, Context};
use ffmpeg::{codec, encoder, format, software::scaling, util::frame, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use super::info::VideoInfo;

/// Encoder choice and quality.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeSettings {
    /// FFmpeg encoder name, e.g. `libx264`, `libx265`, `libvpx-vp9`, `mpeg4`.
    pub codec: String,
    /// Constant rate factor (lower is better quality, larger files) for encoders that have one.
    pub crf: u32,
    /// Container metadata to store (`comment` and the like).
    pub metadata: Vec<(String, String)>,
    /// Let the encoder reorder frames (B-frames). Off for render-farm segments: every packet's
    /// decode time is then its presentation time, so segments join with increasing decode times.
    pub b_frames: bool,
}

/// The default encoder (the `codec` setting's default).
pub const DEFAULT_CODEC: &str = "libx264";

/// The default constant rate factor (the `crf` setting's default).
pub const DEFAULT_CRF: u32 = 18;

impl Default for EncodeSettings {
    /// [`DEFAULT_CODEC`] at [`DEFAULT_CRF`], with B-frames.
    fn default() -> Self {
        Self { codec: DEFAULT_CODEC.to_string(), crf: DEFAULT_CRF, metadata: Vec::new(), b_frames: true }
    }
}

/// Checks, before any work is done, that FFmpeg can write a video at `path`: its extension
/// picks the container. `frames`: the writer could write a folder of PNG frames instead (the
/// fix says so).
pub fn check_container(path: &Path, frames: bool) -> anyhow::Result<()> {
    let fix = format!(
        "end it in .mp4, .mkv or .mov (or another container FFmpeg writes){}",
        if frames { ", or in / to write PNG frames" } else { "" }
    );
    let Some(ext) = path.extension().and_then(|e| e.to_str()).filter(|e| !e.is_empty()) else {
        bail!("cannot write {}: it has no extension to choose the container by.\n  fix: {fix}", path.display());
    };
    super::init()?;
    let name = CString::new(format!("video.{ext}"))?;
    // SAFETY: av_guess_format only reads the NUL-terminated name, which outlives the call, and
    // returns null or a pointer to a static muxer description, which is not dereferenced.
    let muxer = unsafe { ffmpeg::ffi::av_guess_format(std::ptr::null(), name.as_ptr(), std::ptr::null()) };
    if muxer.is_null() {
        bail!("cannot write {}: FFmpeg has no container for .{ext}.\n  fix: {fix}", path.display());
    }
    Ok(())
}

/// An open output file.
pub struct VideoWriter {
    output: format::context::Output,
    encoder: encoder::Video,
    scaler: super::Scaler,
    video_stream: usize,
    time_base: Rational,
    /// Input audio stream index -> (output stream index, input time base).
    audio: HashMap<usize, (usize, Rational)>,
    width: u32,
    height: u32,
    /// Duration of each submitted frame by pts, applied to its packet when it comes out.
    durations: HashMap<i64, i64>,
    last: Option<(i64, RgbImage)>,
}

/// Options every encoder opens with: for libx264 on CPUs with AVX-512, its AVX-512 code is left
/// out (it reads memory it did not write, so the same frames could encode differently from run
/// to run); x264's other code paths all give the same bitstream.
pub fn encoder_options(codec: &str) -> Dictionary<'static> {
    let mut opts = Dictionary::new();
    #[cfg(target_arch = "x86_64")]
    if codec == "libx264" && std::arch::is_x86_feature_detected!("avx512f") {
        opts.set("x264-params", "asm=AVX2");
    }
    opts
}

/// Adds an output stream for each input stream `(index, parameters, time base)` whose packets
/// are copied as they are; returns input index -> (output index, input time base).
pub fn add_copied_streams(
    output: &mut format::context::Output,
    streams: &[(usize, codec::Parameters, Rational)],
) -> anyhow::Result<HashMap<usize, (usize, Rational)>> {
    let mut copied = HashMap::new();
    for (index, params, tb) in streams {
        let mut ost = output.add_stream(encoder::find(codec::Id::None))?;
        ost.set_parameters(params.clone());
        // SAFETY: the stream's parameters are owned by `output` and valid; a zero tag lets the
        // muxer choose the tag for its container.
        unsafe { (*ost.parameters().as_mut_ptr()).codec_tag = 0 };
        copied.insert(*index, (ost.index(), *tb));
    }
    Ok(copied)
}

/// Sets the container metadata of `output`.
pub fn set_metadata(output: &mut format::context::Output, metadata: &[(String, String)]) {
    let mut meta = Dictionary::new();
    for (k, v) in metadata {
        meta.set(k, v);
    }
    output.set_metadata(meta);
}

/// Rounds a size up to even (4:2:0 chroma needs even sizes).
pub fn even(v: u32) -> u32 {
    v + (v & 1)
}

impl VideoWriter {
    /// Creates `path` (its extension picks the container) for frames of `info`'s size and
    /// timing, with `info`'s audio streams copied.
    pub fn create(path: &Path, info: &VideoInfo, settings: &EncodeSettings) -> anyhow::Result<Self> {
        super::init()?;
        let output = format::output(path)
            .with_context(|| format!("cannot create {} (unknown container extension?)", path.display()))?;
        Self::with_output(output, path, info, settings)
    }

    /// [`VideoWriter::create`] in the container format named `format` (`matroska`, `mp4`),
    /// whatever the path's extension.
    pub fn create_as(path: &Path, format: &str, info: &VideoInfo, settings: &EncodeSettings) -> anyhow::Result<Self> {
        super::init()?;
        let output =
            format::output_as(path, format).with_context(|| format!("cannot create {} as {format}", path.display()))?;
        Self::with_output(output, path, info, settings)
    }

    fn with_output(
        mut output: format::context::Output,
        path: &Path,
        info: &VideoInfo,
        settings: &EncodeSettings,
    ) -> anyhow::Result<Self> {
        let codec = encoder::find_by_name(&settings.codec).with_context(|| {
            format!("FFmpeg has no encoder `{}` (try libx264, libx265, libvpx-vp9 or mpeg4)", settings.codec)
        })?;
        let global_header = output.format().flags().contains(format::Flags::GLOBAL_HEADER);
        let mut stream = output.add_stream(codec)?;
        let video_stream = stream.index();
        let mut enc = codec::context::Context::new_with_codec(codec).encoder().video()?;
        let (width, height) = (even(info.width), even(info.height));
        let pixel = codec
            .video()
            .ok()
            .and_then(|v| v.formats().map(|mut f| f.any(|p| p == format::Pixel::YUV420P)))
            .map_or(format::Pixel::YUV420P, |has| if has { format::Pixel::YUV420P } else { format::Pixel::YUV444P });
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(pixel);
        enc.set_time_base(info.time_base);
        enc.set_frame_rate(Some(info.frame_rate));
        if global_header {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        if !settings.b_frames {
            enc.set_max_b_frames(0);
        }
        let mut opts = encoder_options(&settings.codec);
        opts.set("crf", &settings.crf.to_string());
        let encoder = enc
            .open_with(opts)
            .with_context(|| format!("cannot open encoder {} for {width}x{height}", settings.codec))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(info.time_base);
        let audio = add_copied_streams(&mut output, &info.audio)?;
        set_metadata(&mut output, &settings.metadata);
        output.write_header().with_context(|| {
            format!(
                "cannot write {}: the container does not accept these streams (audio codec not supported in it?)",
                path.display()
            )
        })?;
        let scaler = super::Scaler(scaling::Context::get(
            format::Pixel::RGB24,
            width,
            height,
            pixel,
            width,
            height,
            super::scale_flags(),
        )?);
        Ok(Self {
            output,
            encoder,
            scaler,
            video_stream,
            time_base: info.time_base,
            audio,
            width,
            height,
            durations: HashMap::new(),
            last: None,
        })
    }

    /// Queues a frame shown from `pts` (video time base). Frames must come in display order;
    /// each frame's duration is known when the next one arrives.
    pub fn write_frame(&mut self, pts: i64, image: RgbImage) -> anyhow::Result<()> {
        if let Some((prev_pts, prev)) = self.last.take() {
            if pts <= prev_pts {
                bail!("frame timestamps go backwards ({prev_pts} then {pts})");
            }
            self.encode(prev_pts, pts - prev_pts, &prev)?;
        }
        self.last = Some((pts, image));
        Ok(())
    }

    /// Copies an audio packet from input stream `stream`; other streams are ignored.
    pub fn write_audio(&mut self, mut packet: Packet, stream: usize) -> anyhow::Result<()> {
        let Some(&(out, in_tb)) = self.audio.get(&stream) else {
            return Ok(());
        };
        let out_tb = self.output.stream(out).expect("stream exists").time_base();
        packet.rescale_ts(in_tb, out_tb);
        packet.set_position(-1);
        packet.set_stream(out);
        packet.write_interleaved(&mut self.output).context("cannot write audio packet")?;
        Ok(())
    }

    /// Flushes the encoder (the last frame lasts `last_duration`) and finishes the file.
    pub fn finish(mut self, last_duration: i64) -> anyhow::Result<()> {
        if let Some((pts, img)) = self.last.take() {
            self.encode(pts, last_duration.max(1), &img)?;
        }
        self.encoder.send_eof()?;
        self.drain()?;
        self.output.write_trailer().context("cannot finish the output file")?;
        Ok(())
    }

    fn encode(&mut self, pts: i64, duration: i64, img: &RgbImage) -> anyhow::Result<()> {
        let padded = pad_to(img, self.width, self.height);
        let mut yuv = frame::Video::empty();
        self.scaler.0.run(&rgb_frame(&padded), &mut yuv)?;
        yuv.set_pts(Some(pts));
        self.durations.insert(pts, duration);
        self.encoder.send_frame(&yuv)?;
        self.drain()
    }

    fn drain(&mut self) -> anyhow::Result<()> {
        let out_tb = self.output.stream(self.video_stream).expect("stream exists").time_base();
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            if let Some(d) = packet.pts().and_then(|p| self.durations.remove(&p)) {
                packet.set_duration(d);
            }
            packet.set_stream(self.video_stream);
            packet.rescale_ts(self.time_base, out_tb);
            packet.write_interleaved(&mut self.output).context("cannot write video packet")?;
        }
        Ok(())
    }
}

/// An RGB24 FFmpeg frame holding `img` (FFmpeg's rows may be padded past the pixels).
pub(crate) fn rgb_frame(img: &RgbImage) -> frame::Video {
    let (w, h) = img.dimensions();
    let mut rgb = frame::Video::new(format::Pixel::RGB24, w, h);
    let stride = rgb.stride(0);
    let row = w as usize * 3;
    let data = rgb.data_mut(0);
    for (y, src) in img.as_raw().chunks_exact(row).enumerate() {
        data[y * stride..y * stride + row].copy_from_slice(src);
    }
    rgb
}

/// `img` extended to `w x h` by repeating its last row and column.
fn pad_to(img: &RgbImage, w: u32, h: u32) -> std::borrow::Cow<'_, RgbImage> {
    if img.dimensions() == (w, h) {
        return std::borrow::Cow::Borrowed(img);
    }
    let (iw, ih) = img.dimensions();
    std::borrow::Cow::Owned(RgbImage::from_fn(w, h, |x, y| *img.get_pixel(x.min(iw - 1), y.min(ih - 1))))
}
