//! Infinite zoom: GIF/MP4/PNG outputs, a seamless loop, and golden first frames.

mod common;

use common::fixture_weights;

use std::process::Command;

use candle_core::Device;
use dreamvid::compare::psnr;
use dreamvid::dream::DreamParams;
use dreamvid::nn::Objective;
use dreamvid::plan::FrameParams;
use dreamvid::resample::CameraStep;
use dreamvid::video::coherence::Carryover;
use dreamvid::zoom::{noise_image, render_zoom, ZoomJob};
use image::RgbImage;

fn zoom_cli(dir: &std::path::Path, out: &str, extra: &[&str]) -> std::process::Output {
    let weights = fixture_weights(dir);
    Command::new(env!("CARGO_BIN_EXE_dreamvid"))
        .args([
            "zoom",
            "--noise",
            "-o",
            out,
            "--frames",
            "6",
            "--size",
            "48x40",
            "--model",
            "vgg19",
            "--weights",
            &weights,
        ])
        .args(["--iterations", "1", "--octaves", "1"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn zoom_gif_has_the_requested_frames_size_and_loops_forever() {
    let dir = common::scratch("zoom-gif");
    let out = dir.join("z.gif");
    let o = zoom_cli(&dir, out.to_str().unwrap(), &["--preset", "zoom-vgg"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options.read_info(std::fs::File::open(&out).unwrap()).unwrap();
    assert_eq!((decoder.width(), decoder.height()), (48, 40));
    let mut frames = 0;
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        assert_eq!((frame.width, frame.height), (48, 40));
        assert!(frame.delay > 0);
        frames += 1;
    }
    assert_eq!(frames, 6);
    assert_eq!(decoder.repeat(), gif::Repeat::Infinite);
}

#[test]
fn zoom_writes_mp4_and_png_frames_too() {
    let dir = common::scratch("zoom-formats");
    let mp4 = dir.join("z.mp4");
    let o = zoom_cli(&dir, mp4.to_str().unwrap(), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let frames = dreamvid::compare::frames(&mp4).unwrap();
    assert_eq!(frames.len(), 6);
    assert_eq!(frames[0].dimensions(), (48, 40));
    let pngs = dir.join("pngs/");
    let o = zoom_cli(&dir, pngs.to_str().unwrap(), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names: Vec<_> =
        std::fs::read_dir(&pngs).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, (0..6).map(|i| format!("frame_{i:05}.png")).collect::<Vec<_>>());
    let bad = zoom_cli(&dir, dir.join("z.bmp").to_str().unwrap(), &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains(".gif"));
}

/// Peak memory in MiB of a `--frames N` zoom to MP4 at 512x512, as the command reports it (its
/// `VmHWM` at the end). No gradient steps (`--iterations 0`): the frames still go through the
/// dream, the camera move and the encoder, at the least cost per frame.
fn zoom_peak_mib(dir: &std::path::Path, weights: &str, frames: usize) -> u64 {
    let out = dir.join(format!("z{frames}.mp4"));
    let frames = frames.to_string();
    let o = common::dreamvid(&[
        "zoom",
        "--noise",
        "-o",
        out.to_str().unwrap(),
        "--frames",
        &frames,
        "--size",
        "512x512",
        "--model",
        "vgg19",
        "--weights",
        weights,
        "--iterations",
        "0",
        "--octaves",
        "1",
    ]);
    let stderr = common::stderr(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("({frames} frames at")), "{stderr}");
    assert!(out.is_file());
    let peak = stderr.split("peak memory ").nth(1).and_then(|rest| rest.split(' ').next());
    peak.and_then(|mib| mib.parse().ok()).unwrap_or_else(|| panic!("no peak memory in: {stderr}"))
}

#[test]
fn long_zoom_to_mp4_streams_in_flat_memory() {
    // Each 512x512 frame is 0.75 MiB: held in memory, 300 frames would add 190 MiB to the
    // about 150 MiB of the 50-frame render (the frames all in memory took 1.8x at 200 frames).
    let dir = common::scratch("zoom-memory");
    let weights = fixture_weights(&dir);
    let short = zoom_peak_mib(&dir, &weights, 50);
    let long = zoom_peak_mib(&dir, &weights, 300);
    assert!(long as f64 <= 1.2 * short as f64, "peak memory {long} MiB for 300 frames, {short} MiB for 50");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum::<f64>() / a.as_raw().len() as f64
}

fn fixture_zoom(frames: usize, looped: bool) -> Vec<RgbImage> {
    let net = common::fixture_vgg();
    let layer = net.find_tap("features.20").unwrap();
    let settings = move |i: usize| {
        let params = DreamParams {
            objective: Objective::layer(layer),
            octaves: 2,
            iterations: 2,
            lr: 0.02,
            jitter: 4,
            seed: i as u64,
            ..DreamParams::default()
        };
        Ok(FrameParams {
            dream: params,
            carryover: Carryover { blend: 0.0, carry: 0.0, temporal_weight: 0.0 },
            frame_iterations: 0,
            camera: CameraStep { zoom: 1.05, rotate: 0.5, translate: (0.0, 0.0) },
            mask_weight: 1.0,
        })
    };
    let job = ZoomJob {
        net: &net,
        seed_image: noise_image(64, 64, 5, &Device::Cpu).unwrap(),
        frames,
        looped,
        frame_settings: &settings,
        mask: None,
    };
    render_zoom(&job, &mut |_| {}).unwrap()
}

#[test]
fn looping_zoom_has_no_seam() {
    let frames = fixture_zoom(15, true);
    assert_eq!(frames.len(), 15);
    let mut steps: Vec<f64> = frames.windows(2).map(|w| mean_abs_diff(&w[0], &w[1])).collect();
    let seam = mean_abs_diff(&frames[14], &frames[0]);
    steps.sort_by(f64::total_cmp);
    let typical = steps[steps.len() / 2];
    assert!(seam <= 1.5 * typical, "seam {seam:.2} vs typical step {typical:.2}");
    let open = fixture_zoom(15, false);
    let open_seam = mean_abs_diff(&open[14], &open[0]);
    assert!(open_seam > 2.0 * seam, "without --loop the jump ({open_seam:.2}) should be visible");
}

#[test]
fn first_zoom_frames_match_goldens() {
    let frames = fixture_zoom(3, false);
    let dir = common::repo().join("tests/golden/zoom");
    if std::env::var_os("DREAMVID_REGEN_GOLDENS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, f) in frames.iter().enumerate() {
            f.save(dir.join(format!("frame_{i:02}.png"))).unwrap();
        }
        return;
    }
    for (i, f) in frames.iter().enumerate() {
        let golden = image::open(dir.join(format!("frame_{i:02}.png"))).unwrap().to_rgb8();
        assert_eq!(f.dimensions(), golden.dimensions());
        let p = psnr(f, &golden);
        assert!(p >= 40.0, "zoom frame {i}: PSNR {p:.1} dB against its golden");
    }
}
