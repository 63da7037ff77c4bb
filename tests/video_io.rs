//! Decoding and encoding through FFmpeg: frame counts, timestamps, audio, rotation, odd sizes.

mod common;

use std::path::Path;

use dreamvid::fixture::clip::{moving_pattern, write_clip, ClipSpec};
use dreamvid::video::{EncodeSettings, Item, VideoReader, VideoWriter};
use ffmpeg_next as ffmpeg;

/// Every frame's pts and every audio packet's bytes and timestamps, in file order.
struct Contents {
    frames: Vec<(i64, image::RgbImage)>,
    audio: Vec<(Vec<u8>, Option<i64>, i64)>,
}

fn read_all(path: &Path) -> Contents {
    let mut r = VideoReader::open(path).unwrap();
    let mut c = Contents { frames: vec![], audio: vec![] };
    while let Some(item) = r.next_item().unwrap() {
        match item {
            Item::Frame(f) => c.frames.push((f.pts, f.image)),
            Item::Audio(p, _) => c.audio.push((p.data().unwrap_or(&[]).to_vec(), p.pts(), p.duration())),
        }
    }
    c
}

/// Audio packets in seconds-based form (time bases may differ between files).
fn audio_packets(path: &Path) -> Vec<(Vec<u8>, f64)> {
    let r = VideoReader::open(path).unwrap();
    let tb = r.info().audio[0].2;
    read_all(path).audio.into_iter().map(|(d, pts, _)| (d, pts.unwrap_or(0) as f64 * f64::from(tb))).collect()
}

fn copy_through(input: &Path, output: &Path) {
    let mut r = VideoReader::open(input).unwrap();
    let info = r.info().clone();
    let mut w = VideoWriter::create(output, &info, &EncodeSettings::default()).unwrap();
    let mut last = (0, 1);
    while let Some(item) = r.next_item().unwrap() {
        match item {
            Item::Frame(f) => {
                last = (f.pts, f.pts - last.0);
                w.write_frame(f.pts, f.image).unwrap();
            }
            Item::Audio(p, s) => w.write_audio(p, s).unwrap(),
        }
    }
    w.finish(last.1).unwrap();
}

#[test]
fn vfr_timestamps_frame_count_and_audio_survive_a_round_trip() {
    let dir = common::scratch("video-roundtrip");
    let input = dir.join("in.mp4");
    // Variable frame rate: gaps of 1, 2 and 3 ticks of 1/30 s.
    let pts: Vec<i64> = (0..20)
        .scan(0, |t, i| {
            let p = *t;
            *t += 1 + (i % 3);
            Some(p)
        })
        .collect();
    let spec = ClipSpec { audio: true, pts: pts.clone(), ..ClipSpec::constant(64, 48, 20, 30) };
    write_clip(&input, &spec, moving_pattern(64, 48, 2, 1)).unwrap();
    let src = read_all(&input);
    assert_eq!(src.frames.len(), 20);
    assert!(!src.audio.is_empty());
    let output = dir.join("out.mp4");
    copy_through(&input, &output);
    let out = read_all(&output);
    assert_eq!(out.frames.len(), 20, "frame count");
    let tb_in = VideoReader::open(&input).unwrap().info().time_base;
    let tb_out = VideoReader::open(&output).unwrap().info().time_base;
    let secs = |c: &Contents, tb: ffmpeg::Rational| {
        c.frames.iter().map(|(p, _)| *p as f64 * f64::from(tb)).collect::<Vec<_>>()
    };
    let (a, b) = (secs(&src, tb_in), secs(&out, tb_out));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-3, "timestamps {a:?} vs {b:?}");
    }
    assert_eq!(audio_packets(&input), audio_packets(&output), "audio packets differ");
}

#[test]
fn odd_sizes_are_padded_to_even_and_rotation_is_applied() {
    let dir = common::scratch("video-odd-rot");
    let input = dir.join("rot.mp4");
    let spec = ClipSpec { rotate: Some(90), ..ClipSpec::constant(64, 32, 3, 25) };
    // Top-left corner bright red, the rest dark.
    let frame = |_| {
        image::RgbImage::from_fn(64, 32, |x, y| {
            if x < 8 && y < 8 {
                image::Rgb([250, 0, 0])
            } else {
                image::Rgb([20, 20, 20])
            }
        })
    };
    write_clip(&input, &spec, frame).unwrap();
    let r = VideoReader::open(&input).unwrap();
    assert_eq!(r.info().rotation, 90);
    assert_eq!((r.info().width, r.info().height), (32, 64));
    let c = read_all(&input);
    let img = &c.frames[0].1;
    assert_eq!(img.dimensions(), (32, 64));
    // Rotated 90 degrees clockwise, the red corner is now top-right.
    assert!(
        img.get_pixel(28, 3)[0] > 200 && img.get_pixel(3, 3)[0] < 60,
        "{:?} {:?}",
        img.get_pixel(28, 3),
        img.get_pixel(3, 3)
    );

    let odd = dir.join("odd.mp4");
    write_clip(&odd, &ClipSpec::constant(63, 35, 4, 25), moving_pattern(63, 35, 1, 0)).unwrap();
    let c = read_all(&odd);
    assert_eq!(c.frames[0].1.dimensions(), (63, 35));
    let out = dir.join("odd-out.mp4");
    copy_through(&odd, &out);
    let o = read_all(&out);
    assert_eq!(o.frames.len(), 4);
    assert_eq!(o.frames[0].1.dimensions(), (64, 36), "4:2:0 output is padded to even sizes");
    // The padding repeats the edge: last column equals the one before it (up to coding noise).
    let px = |x, y| o.frames[0].1.get_pixel(x, y).0.map(i32::from);
    let (a, b) = (px(63, 10), px(62, 10));
    assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 24), "{a:?} vs {b:?}");
}

/// Audio packets per input stream: (stream position among the audio streams, bytes).
fn audio_by_stream(path: &Path) -> Vec<(usize, Vec<u8>)> {
    let mut r = VideoReader::open(path).unwrap();
    let streams: Vec<usize> = r.info().audio.iter().map(|(i, _, _)| *i).collect();
    let mut out = vec![];
    while let Some(item) = r.next_item().unwrap() {
        if let Item::Audio(p, s) = item {
            out.push((streams.iter().position(|&i| i == s).unwrap(), p.data().unwrap_or(&[]).to_vec()));
        }
    }
    out
}

#[test]
fn ten_bit_video_and_several_audio_tracks_survive_a_round_trip() {
    let dir = common::scratch("video-10bit");
    let input = dir.join("deep.mkv");
    let spec = ClipSpec { ten_bit: true, audio: true, audio_tracks: 3, ..ClipSpec::constant(64, 48, 6, 25) };
    let pattern = moving_pattern(64, 48, 2, 1);
    write_clip(&input, &spec, &pattern).unwrap();
    let c = read_all(&input);
    assert_eq!(c.frames.len(), 6);
    for (i, (_, img)) in c.frames.iter().enumerate() {
        let p = dreamvid::compare::psnr(img, &pattern(i));
        assert!(p > 25.0, "10-bit frame {i} decodes to {p:.1} dB of what was written (4:2:0 blurs the edges)");
    }
    let output = dir.join("out.mkv");
    copy_through(&input, &output);
    let (a, b) = (audio_by_stream(&input), audio_by_stream(&output));
    assert_eq!(a.iter().map(|(s, _)| *s).max(), Some(2), "three audio tracks written");
    let per_stream = |v: &[(usize, Vec<u8>)], s: usize| {
        v.iter().filter(|(t, _)| *t == s).map(|(_, d)| d.clone()).collect::<Vec<_>>()
    };
    for s in 0..3 {
        assert_eq!(per_stream(&a, s), per_stream(&b, s), "audio track {s} must be copied packet for packet");
    }
}

#[test]
fn every_rotation_is_applied() {
    let dir = common::scratch("video-rotations");
    // Top-left corner bright red, the rest dark; where it lands after each clockwise turn.
    let frame =
        |_| image::RgbImage::from_fn(64, 32, |x, y| image::Rgb(if x < 8 && y < 8 { [250, 0, 0] } else { [20; 3] }));
    for (turn, size, corner) in [(180, (64, 32), (60, 28)), (270, (32, 64), (3, 60))] {
        let input = dir.join(format!("rot{turn}.mp4"));
        write_clip(&input, &ClipSpec { rotate: Some(turn), ..ClipSpec::constant(64, 32, 2, 25) }, frame).unwrap();
        let c = read_all(&input);
        let img = &c.frames[0].1;
        assert_eq!(img.dimensions(), size, "{turn}");
        assert!(
            img.get_pixel(corner.0, corner.1)[0] > 200 && img.get_pixel(30, 30)[0] < 60,
            "{turn}: corner not moved"
        );
    }
}

#[test]
fn a_resolution_change_midway_keeps_the_first_size() {
    let dir = common::scratch("video-resize");
    let input = dir.join("resize.mkv");
    let frames: Vec<_> = [(64, 48), (64, 48), (96, 80), (32, 24)]
        .into_iter()
        .map(|(w, h)| image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 90])))
        .collect();
    dreamvid::fixture::clip::write_resizing_clip(&input, &frames).unwrap();
    let c = read_all(&input);
    assert_eq!(c.frames.len(), 4);
    for (_, img) in &c.frames {
        assert_eq!(img.dimensions(), (64, 48));
        // Scaled, not cropped: the ramps still run corner to corner.
        assert!(img.get_pixel(62, 2)[0] > 200 && img.get_pixel(2, 46)[1] > 200, "{:?}", img.get_pixel(62, 2));
    }
}
