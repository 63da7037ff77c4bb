//! The video render end to end: timing and audio kept, golden frames, resume after a kill,
//! temporal coherence, errors, and `dreamvid compare`.

mod common;

use common::{dreamvid, fixture_weights, stderr, timeline};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::Device;
use dreamvid::cancel::{Cancel, Cancelled};
use dreamvid::compare::{frames, psnr};
use dreamvid::dream::DreamParams;
use dreamvid::fixture::clip::{moving_pattern, occlusion_scene, plain_scene, write_clip, ClipSpec};
use dreamvid::nn::Objective;
use dreamvid::pipeline::{render_video, sidecar_path, FramePlan, VideoJob};
use dreamvid::plan::{frame_seed, FrameParams};
use dreamvid::resample::CameraStep;
use dreamvid::video::coherence::{Carryover, Coherence};
use dreamvid::video::stability::Summary;
use dreamvid::video::EncodeSettings;

/// The same settings for every frame (each with its own seed), carrying over 60% of the
/// previous dream.
fn constant(params: DreamParams) -> impl Fn(usize, f64) -> anyhow::Result<FrameParams> + Sync {
    move |i, _| {
        let dream = DreamParams { seed: frame_seed(params.seed, i), ..params.clone() };
        let carryover = Carryover { blend: 0.6, carry: 0.6, temporal_weight: 0.0 };
        let camera = CameraStep { zoom: 1.0, rotate: 0.0, translate: (0.0, 0.0) };
        Ok(FrameParams { dream, carryover, frame_iterations: 0, camera, mask_weight: 1.0 })
    }
}

/// The same dream for every frame with one seed and the shipped video preset's carry-over, as
/// `dreamvid` renders videos.
fn shipped(dream: DreamParams) -> impl Fn(usize, f64) -> anyhow::Result<FrameParams> + Sync {
    let video = dreamvid::preset::Preset::find("lite0-video").unwrap().base;
    let carryover = Carryover {
        blend: video.blend as f32,
        carry: video.carry as f32,
        temporal_weight: video.temporal_weight as f32,
    };
    move |_, _| {
        let camera = CameraStep { zoom: 1.0, rotate: 0.0, translate: (0.0, 0.0) };
        Ok(FrameParams {
            dream: dream.clone(),
            carryover,
            frame_iterations: video.frame_iterations,
            camera,
            mask_weight: 1.0,
        })
    }
}

fn job<'a>(
    net: &'a dreamvid::nn::Network,
    input: PathBuf,
    output: PathBuf,
    coherence: Coherence,
    frame_params: &'a FramePlan<'a>,
) -> VideoJob<'a> {
    VideoJob {
        input,
        input_fps: None,
        output,
        net,
        device: Device::Cpu,
        frame_params,
        coherence,
        scene_cut: 0.25,
        encode: EncodeSettings { crf: 4, ..EncodeSettings::default() },
        resume: false,
        record: format!("coherence = \"{coherence:?}\"\n"),
        excerpt: Default::default(),
        span: None,
        mask: None,
        cancel: Default::default(),
    }
}

#[test]
fn render_keeps_frame_count_timestamps_and_audio() {
    let dir = common::scratch("pipeline-timing");
    let input = dir.join("in.mp4");
    let pts: Vec<i64> = (0..16)
        .scan(0, |t, i| {
            let p = *t;
            *t += 1 + (i % 3);
            Some(p)
        })
        .collect();
    write_clip(
        &input,
        &ClipSpec { audio: true, pts, ..ClipSpec::constant(64, 48, 16, 24) },
        moving_pattern(64, 48, 2, 1),
    )
    .unwrap();
    let output = dir.join("out.mp4");
    let weights = fixture_weights(&dir);
    let o = dreamvid(&[
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--model",
        "vgg19",
        "--weights",
        &weights,
        "--layer",
        "20",
        "--octaves",
        "2",
        "--iterations",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ((v_in, a_in), (v_out, a_out)) = (timeline(&input), timeline(&output));
    assert_eq!(v_out.len(), 16, "frame count");
    for (x, y) in v_in.iter().zip(&v_out) {
        assert!((x - y).abs() < 1e-3, "timestamps {v_in:?} vs {v_out:?}");
    }
    assert!(!a_in.is_empty());
    assert_eq!(a_in, a_out, "audio packets must be copied bit for bit");
    let sidecar = std::fs::read_to_string(sidecar_path(&output)).unwrap();
    assert!(sidecar.contains("[\"features.20\", 1.0]") && sidecar.contains("coherence = \"flow\""), "{sidecar}");
    let meta = ffmpeg_next::format::input(&output).unwrap().metadata().get("comment").map(str::to_owned);
    assert!(meta.is_some_and(|c| c.contains("dreamvid") && c.contains("features.20")));
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_render_reports_each_frame_and_stops_when_cancelled() {
    let dir = common::scratch("pipeline-cancel");
    let input = dir.join("in.mp4");
    write_clip(&input, &ClipSpec::constant(48, 40, 8, 25), moving_pattern(48, 40, 1, 1)).unwrap();
    let net = common::fixture_vgg();
    let params = constant(golden_params(&net));
    let output = dir.join("out.mp4");
    let mut render = job(&net, input, output.clone(), Coherence::Flow, &params);
    render.cancel = Cancel::new();
    let cancel = render.cancel.clone();
    let mut seen = Vec::new();
    let err = render_video(&render, &mut |p| {
        assert_eq!(p.image.dimensions(), (48, 40), "each event carries the dreamed frame");
        assert!(!p.stages.dream.is_zero(), "stage times so far come with each frame");
        seen.push((p.index, p.done));
        if p.done == 3 {
            cancel.cancel();
        }
    })
    .unwrap_err();
    assert!(err.is::<Cancelled>(), "{err:#}");
    assert_eq!(seen, [(0, 1), (1, 2), (2, 3)], "the render stops before the frame after the cancel");
    assert!(!output.exists(), "a cancelled render writes no output");
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(format!("{err:#}").contains("--resume"), "the frames dreamed so far are kept: {err:#} {names:?}");
}

fn golden_params(net: &dreamvid::nn::Network) -> DreamParams {
    DreamParams {
        objective: Objective::layer(net.find_tap("features.20").unwrap()),
        octaves: 2,
        iterations: 3,
        lr: 0.02,
        jitter: 4,
        seed: 3,
        ..DreamParams::default()
    }
}

#[test]
fn dreamed_frames_match_goldens() {
    let dir = common::scratch("pipeline-golden");
    let input = dir.join("in.mp4");
    write_clip(&input, &ClipSpec::constant(80, 56, 6, 25), moving_pattern(80, 56, 2, 1)).unwrap();
    let net = common::fixture_vgg();
    let output = dir.join("out.mp4");
    let params = constant(golden_params(&net));
    let report =
        render_video(&job(&net, input.clone(), output.clone(), Coherence::Flow, &params), &mut |_| {}).unwrap();
    let s = report.stages;
    for (stage, busy) in
        [("decode", s.decode), ("flow", s.flow), ("dream", s.dream), ("checkpoint", s.checkpoint), ("encode", s.encode)]
    {
        assert!(!busy.is_zero() && busy <= report.wall, "{stage} took {busy:?} of the {:?} render", report.wall);
    }
    let got = frames(&output).unwrap();
    assert_eq!(got.len(), 6);
    let golden_dir = common::repo().join("tests/golden/video");
    if std::env::var_os("DREAMVID_REGEN_GOLDENS").is_some() {
        std::fs::create_dir_all(&golden_dir).unwrap();
        for (i, f) in got.iter().enumerate() {
            f.save(golden_dir.join(format!("frame_{i:02}.png"))).unwrap();
        }
        return;
    }
    // Every frame after the first dreams on top of the previous dream, which amplifies
    // rounding: a kernel that sums in another order (a new convolution algorithm) moves later
    // frames well below this threshold while frame 0 stays near 55 dB. After such an intended
    // change, check frame 0 still matches, then run scripts/regen-goldens.
    let source = frames(&input).unwrap();
    for (i, f) in got.iter().enumerate() {
        let golden = image::open(golden_dir.join(format!("frame_{i:02}.png"))).unwrap().to_rgb8();
        assert_eq!(f.dimensions(), golden.dimensions());
        let p = psnr(f, &golden);
        assert!(p >= 35.0, "frame {i}: PSNR {p:.1} dB against its golden");
        assert!(psnr(f, &source[i]) < 30.0, "frame {i} is barely dreamed");
    }
}

#[test]
fn resume_after_kill_gives_the_uninterrupted_frames() {
    let dir = common::scratch("pipeline-resume");
    let input = dir.join("in.mp4");
    write_clip(&input, &ClipSpec::constant(96, 64, 40, 25), moving_pattern(96, 64, 2, 0)).unwrap();
    let weights = fixture_weights(&dir);
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            input.to_str().unwrap().to_string(),
            "-o".into(),
            out.to_str().unwrap().into(),
            "--model".into(),
            "vgg19".into(),
            "--weights".into(),
            weights.clone(),
            "--layer".into(),
            "20".into(),
            "--octaves".into(),
            "1".into(),
            "--iterations".into(),
            "25".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_dreamvid")).args(&args).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    let full = dir.join("full.mp4");
    assert!(run(&full, &[]).wait_with_output().unwrap().status.success());

    let resumed = dir.join("resumed.mp4");
    let checkpoints = dir.join(".resumed.mp4.dreamvid-frames");
    let mut child = run(&resumed, &[]);
    let start = Instant::now();
    let count = || {
        std::fs::read_dir(&checkpoints)
            .map(|d| d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png")).count())
            .unwrap_or(0)
    };
    while count() < 8 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        assert!(child.try_wait().unwrap().is_none(), "render finished before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!resumed.exists(), "a killed render must not leave an output");
    let out = run(&resumed, &["--resume"]).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("from checkpoints"));
    let (a, b) = (frames(&full).unwrap(), frames(&resumed).unwrap());
    assert_eq!(a.len(), 40);
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x == y, "frame {i} differs after resume (PSNR {:.1} dB)", psnr(x, y));
    }
    assert!(!checkpoints.exists());
}

/// Mean absolute difference between consecutive output frames after moving the earlier one
/// by the clip's known motion (dx, 0), over the interior.
fn warping_error(frames: &[image::RgbImage], dx: u32) -> f64 {
    let (w, h) = frames[0].dimensions();
    let margin = 8;
    let (mut total, mut n) = (0.0, 0usize);
    for pair in frames.windows(2) {
        for y in margin..h - margin {
            for x in margin + dx..w - margin {
                let (a, b) = (pair[0].get_pixel(x - dx, y), pair[1].get_pixel(x, y));
                total += (0..3).map(|c| (a[c] as f64 - b[c] as f64).abs()).sum::<f64>();
                n += 3;
            }
        }
    }
    total / n as f64
}

#[test]
fn flow_coherence_follows_motion_better_than_blending_or_independent_frames() {
    let dir = common::scratch("pipeline-temporal");
    let input = dir.join("in.mp4");
    let dx = 3;
    write_clip(&input, &ClipSpec::constant(96, 64, 10, 25), moving_pattern(96, 64, dx as i32, 0)).unwrap();
    let net = common::fixture_vgg();
    let params = DreamParams {
        objective: Objective::layer(net.find_tap("features.20").unwrap()),
        octaves: 2,
        iterations: 4,
        lr: 0.02,
        jitter: 6,
        ..DreamParams::default()
    };
    let params = shipped(params);
    let error = |mode: Coherence| {
        let out = dir.join(format!("{mode:?}.mp4"));
        render_video(&job(&net, input.clone(), out.clone(), mode, &params), &mut |_| {}).unwrap();
        warping_error(&frames(&out).unwrap(), dx)
    };
    let (flow, blend, none) = (error(Coherence::Flow), error(Coherence::Blend), error(Coherence::None));
    eprintln!("warping error: flow {flow:.2}, blend {blend:.2}, none {none:.2}");
    assert!(flow < 0.5 * blend, "flow {flow:.2} vs blend {blend:.2}");
    assert!(flow < 0.75 * none, "flow {flow:.2} vs independent {none:.2}");
}

#[test]
fn bad_inputs_and_outputs_fail_cleanly() {
    let dir = common::scratch("pipeline-errors");
    let weights = fixture_weights(&dir);
    let good = dir.join("good.mp4");
    write_clip(&good, &ClipSpec { audio: true, ..ClipSpec::constant(64, 48, 8, 25) }, moving_pattern(64, 48, 1, 0))
        .unwrap();
    let garbage = dir.join("garbage.mp4");
    std::fs::write(&garbage, vec![0x42u8; 5000]).unwrap();
    let truncated = dir.join("truncated.mp4");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let zero = dir.join("zero.mkv");
    write_clip(
        &zero,
        &ClipSpec { audio: true, pts: vec![], ..ClipSpec::constant(64, 48, 0, 25) },
        moving_pattern(64, 48, 1, 0),
    )
    .unwrap();
    let out = dir.join("out.mp4");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![dir.join("missing.mp4").display().to_string()], "does not exist"),
        (vec![garbage.display().to_string()], "garbage.mp4"),
        (vec![truncated.display().to_string()], "truncated.mp4"),
        (vec![zero.display().to_string()], "no video frames"),
        (vec![good.display().to_string(), "--codec".into(), "no-such-codec".into()], "no-such-codec"),
    ];
    for (args, expected) in cases {
        let mut full = args.clone();
        full.extend(["-o", out.to_str().unwrap(), "--model", "vgg19", "--weights", &weights].map(String::from));
        let o = Command::new(env!("CARGO_BIN_EXE_dreamvid")).args(&full).output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: expected `{expected}` in: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "{args:?} left an output");
    }
    let unwritable = dir.join("no/such/dir/out.mp4");
    let o = dreamvid(&[
        good.to_str().unwrap(),
        "-o",
        unwritable.to_str().unwrap(),
        "--model",
        "vgg19",
        "--weights",
        &weights,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "left behind: {stray:?}");
}

#[test]
fn compare_passes_identical_videos_and_fails_different_ones() {
    let dir = common::scratch("pipeline-compare");
    let (a, b) = (dir.join("a.mp4"), dir.join("b.mp4"));
    write_clip(&a, &ClipSpec::constant(64, 48, 5, 25), moving_pattern(64, 48, 1, 0)).unwrap();
    write_clip(&b, &ClipSpec::constant(64, 48, 5, 25), moving_pattern(64, 48, 4, 2)).unwrap();
    let same = dreamvid(&["compare", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(same.status.success());
    let text = String::from_utf8_lossy(&same.stdout);
    assert_eq!(text.lines().filter(|l| l.starts_with("frame")).count(), 5);
    assert!(text.contains("inf dB"), "{text}");
    let diff = dreamvid(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--min-psnr", "30"]);
    assert_eq!(diff.status.code(), Some(1));
    assert!(stderr(&diff).contains("beyond the threshold"));
}

/// The flicker a render adds (`E_warp` dreamed - source, Farneback's flow) and its strength.
fn added_flicker(source: &Path, dreamed: &Path) -> (f64, f64) {
    let s = dreamvid::video::stability::measure(source, dreamed, 0.3).unwrap();
    let clip = &s.summary()[0];
    (clip.added(), clip.strength)
}

/// Renders `input` into `dir` in `mode` with the shipped video preset's carry-over and `dream`,
/// and measures the render against its source: the clip's row of `stability`.
fn render_and_measure(
    net: &dreamvid::nn::Network,
    dir: &Path,
    input: &Path,
    dream: &DreamParams,
    mode: Coherence,
) -> Summary {
    let frame_params = shipped(dream.clone());
    let out = dir.join(format!("{mode:?}.mp4"));
    render_video(&job(net, input.to_path_buf(), out.clone(), mode, &frame_params), &mut |_| {}).unwrap();
    dreamvid::video::stability::measure(input, &out, 0.3).unwrap().summary().remove(0)
}

#[test]
fn flow_coherence_holds_through_occlusion_and_zoom() {
    let dir = common::scratch("pipeline-occlusion");
    let input = dir.join("in.mp4");
    write_clip(&input, &ClipSpec::constant(112, 80, 20, 25), occlusion_scene(112, 80)).unwrap();
    let net = common::fixture_vgg();
    let dream = DreamParams { seed: 5, ..golden_params(&net) };
    let measure = |mode: Coherence| {
        let clip = render_and_measure(&net, &dir, &input, &dream, mode);
        (clip.added(), clip.strength)
    };
    let ((flow, flow_strength), (blend, _), (none, none_strength)) =
        (measure(Coherence::Flow), measure(Coherence::Blend), measure(Coherence::None));
    eprintln!("added flicker x1e3: flow {:.2}, blend {:.2}, none {:.2}", 1e3 * flow, 1e3 * blend, 1e3 * none);
    eprintln!("strength: flow {flow_strength:.1}, none {none_strength:.1}");
    assert!(flow < 0.3 * none, "flow {flow:.5} vs independent frames {none:.5}");
    assert!(flow < 0.5 * blend, "flow {flow:.5} vs blending {blend:.5}");
    assert!(flow_strength > 0.9 * none_strength, "a weaker dream must not pass for a steadier one");
}

#[test]
fn plain_regions_hold_still_where_the_source_does() {
    let dir = common::scratch("pipeline-plain");
    let input = dir.join("in.mp4");
    write_clip(&input, &ClipSpec::constant(128, 80, 16, 25), plain_scene(128, 80)).unwrap();
    let net = common::fixture_vgg();
    let dream = DreamParams { iterations: 4, seed: 2, ..golden_params(&net) };
    let measure = |mode: Coherence| render_and_measure(&net, &dir, &input, &dream, mode);
    let (flow, none) = (measure(Coherence::Flow), measure(Coherence::None));
    eprintln!(
        "static-pixel flicker x1e3: source {:.3}, flow {:.3}, none {:.3} (static share {:.2}); strength flow {:.1}, none {:.1}",
        1e3 * flow.static_source,
        1e3 * flow.static_dreamed,
        1e3 * none.static_dreamed,
        flow.static_share,
        flow.strength,
        none.strength
    );
    assert!(flow.static_share > 0.5, "most of the wall stands still: {}", flow.static_share);
    assert!(none.static_ratio() > 10.0, "independent dreams boil on the plain wall: {}", none.static_ratio());
    assert!(flow.static_ratio() <= 3.0, "the carried dream holds still where the source does: {}", flow.static_ratio());
    assert!(flow.added() < 0.25 * none.added(), "flow {:.5} vs independent frames {:.5}", flow.added(), none.added());
    assert!(flow.strength > none.strength, "held, not faded: {} vs {}", flow.strength, none.strength);
}

#[test]
fn stability_measures_the_flicker_a_dream_adds() {
    let dir = common::scratch("pipeline-stability");
    let (input, dreamed) = (dir.join("in.mp4"), dir.join("dreamed.mp4"));
    write_clip(&input, &ClipSpec::constant(96, 64, 8, 25), occlusion_scene(96, 64)).unwrap();
    let weights = fixture_weights(&dir);
    let o = dreamvid(
        &[input.to_str().unwrap(), "-o", dreamed.to_str().unwrap(), "--model", "vgg19"]
            .into_iter()
            .chain([
                "--weights",
                &weights,
                "--layer",
                "20",
                "--octaves",
                "1",
                "--iterations",
                "4",
                "--coherence",
                "none",
            ])
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let same = dreamvid(&["stability", input.to_str().unwrap(), input.to_str().unwrap()]);
    assert!(same.status.success(), "{}", stderr(&same));
    let text = String::from_utf8_lossy(&same.stdout).into_owned();
    let clip: Vec<f64> = text
        .lines()
        .find(|l| l.starts_with("clip"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| if v == "-" { f64::NAN } else { v.parse().unwrap() })
        .collect();
    // E_warp source, dreamed, added; static-pixel flicker source, dreamed, ratio, static %;
    // strength, drift.
    assert_eq!(clip.len(), 9, "{text}");
    assert_eq!((clip[2], clip[7]), (0.0, 0.0), "a video adds no flicker to itself: {text}");
    assert_eq!(clip[3], clip[4], "{text}");
    assert!(clip[0] > 0.0, "the source has its own warping error: {text}");
    let (added, strength) = added_flicker(&input, &dreamed);
    assert!(added > 1e-4 && strength > 1.0, "independent dreams flicker: {added} {strength}");
    let other = dir.join("short.mp4");
    write_clip(&other, &ClipSpec::constant(96, 64, 5, 25), occlusion_scene(96, 64)).unwrap();
    let o = dreamvid(&["stability", input.to_str().unwrap(), other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("different frame counts"), "{}", stderr(&o));
}

/// One figure of the clip row of `dreamvid stability --json`'s output.
fn json_figure(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\": ")).unwrap_or_else(|| panic!("no {key} in {json}")) + key.len() + 4;
    let value = json[at..].split([',', '}']).next().unwrap();
    (value != "null").then(|| value.parse().unwrap())
}

#[test]
fn static_pixel_flicker_finds_a_dream_flickering_where_the_source_stands_still() {
    let dir = common::scratch("pipeline-static-flicker");
    let (w, h) = (96u32, 64u32);
    // A plain grey left half with a little noise beside a texture moving 2 pixels a frame.
    let source = |t: usize| {
        image::RgbImage::from_fn(w, h, |x, y| {
            let hash = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ (t as u32).wrapping_mul(83_492_791))
                .wrapping_mul(2_654_435_761);
            let noise = (hash >> 30) as f32 - 1.5;
            let v = if x < w / 2 { 110.0 } else { 128.0 + 60.0 * ((x as f32 - 2.0 * t as f32) * 0.3).sin() };
            let v = (v + noise).round() as u8;
            image::Rgb([v, v, v])
        })
    };
    // Its dream: a pattern on the grey half that changes every frame.
    let flickering = |t: usize| {
        let mut d = source(t);
        for (x, y, p) in d.enumerate_pixels_mut() {
            if x < w / 2 && (x / 4 + y / 4 + t as u32).is_multiple_of(2) {
                p.0 = p.0.map(|v| v + 40);
            }
        }
        d
    };
    let write = |name: &str, frame: &dyn Fn(usize) -> image::RgbImage| {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        for t in 0..6 {
            frame(t).save(folder.join(format!("{t:03}.png"))).unwrap();
        }
        folder
    };
    let (src, dream) = (write("source", &source), write("dream", &flickering));
    let measure = |dreamed: &Path| {
        let o = dreamvid(&["stability", src.to_str().unwrap(), dreamed.to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let json = String::from_utf8(o.stdout).unwrap();
        assert!(
            json.starts_with("{\"flow\": \"farneback\", \"rows\": [{\"scope\": \"clip\", \"first\": 0, \"last\": 5")
        );
        json
    };
    let same = measure(&src);
    let (source_flicker, share) = (json_figure(&same, "static_source"), json_figure(&same, "static_share").unwrap());
    assert!(source_flicker.is_some_and(|f| f > 0.0), "the source's noise: {same}");
    assert_eq!(json_figure(&same, "static_dreamed"), source_flicker, "{same}");
    assert!((0.35..0.6).contains(&share), "the grey half stands still: {same}");
    let flickers = measure(&dream);
    assert_eq!(json_figure(&flickers, "static_source"), source_flicker, "{flickers}");
    let dreamed = json_figure(&flickers, "static_dreamed").unwrap();
    assert!(dreamed > 50.0 * source_flicker.unwrap(), "{flickers}");
}

#[test]
fn odd_tiny_and_audio_only_inputs_are_handled_or_refused() {
    let dir = common::scratch("pipeline-odd-inputs");
    let weights = fixture_weights(&dir);
    let render = |input: &Path, out: &Path| {
        dreamvid(&[input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "vgg19", "--weights", &weights])
    };
    // A 1x1 video dreams (the dream extends its edges); 4:2:0 output is padded to 2x2.
    let tiny = dir.join("tiny.mkv");
    write_clip(&tiny, &ClipSpec::constant(1, 1, 3, 25), moving_pattern(1, 1, 0, 0)).unwrap();
    let out = dir.join("tiny-out.mp4");
    let o = render(&tiny, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(frames(&out).unwrap().len(), 3);
    // A sound file has no video.
    let wav = dir.join("tone.wav");
    let samples: Vec<u8> = (0..8000).flat_map(|i| (((i as f32 * 0.05).sin() * 8000.0) as i16).to_le_bytes()).collect();
    let mut bytes = b"RIFF".to_vec();
    bytes.extend((36 + samples.len() as u32).to_le_bytes());
    bytes.extend(b"WAVEfmt ");
    bytes.extend([16, 0, 0, 0, 1, 0, 1, 0]);
    bytes.extend(8000u32.to_le_bytes());
    bytes.extend(16000u32.to_le_bytes());
    bytes.extend([2, 0, 16, 0]);
    bytes.extend(b"data");
    bytes.extend((samples.len() as u32).to_le_bytes());
    bytes.extend(samples);
    std::fs::write(&wav, bytes).unwrap();
    let out = dir.join("wav-out.mp4");
    let o = render(&wav, &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("tone.wav has no video stream"), "{}", stderr(&o));
    assert!(!out.exists());
    // The output may not be the input.
    let clip = dir.join("clip.mp4");
    write_clip(&clip, &ClipSpec::constant(48, 32, 2, 25), moving_pattern(48, 32, 1, 0)).unwrap();
    let before = std::fs::read(&clip).unwrap();
    let o = render(&clip, &clip);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("replace it with its dream"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&clip).unwrap(), before);
}

#[test]
fn resume_refuses_other_settings_and_dreams_damaged_checkpoints_again() {
    let dir = common::scratch("pipeline-resume-checks");
    let input = dir.join("in.mp4");
    write_clip(&input, &ClipSpec::constant(96, 64, 24, 25), moving_pattern(96, 64, 2, 0)).unwrap();
    let weights = fixture_weights(&dir);
    let args = |out: &Path, iterations: &str, extra: &[&str]| {
        let mut a: Vec<String> = [input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "vgg19"]
            .into_iter()
            .chain(["--weights", &weights, "--layer", "20", "--octaves", "1", "--iterations", iterations])
            .map(String::from)
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let full = dir.join("full.mp4");
    assert!(dreamvid(&args(&full, "25", &[]).iter().map(String::as_str).collect::<Vec<_>>()).status.success());
    let out = dir.join("out.mp4");
    let checkpoints = dir.join(".out.mp4.dreamvid-frames");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dreamvid"))
        .args(args(&out, "25", &[]))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let saved = || std::fs::read_dir(&checkpoints).map(|d| d.count()).unwrap_or(0);
    while saved() < 6 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        assert!(child.try_wait().unwrap().is_none(), "render finished before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let run = |iterations: &str| {
        dreamvid(&args(&out, iterations, &["--resume"]).iter().map(String::as_str).collect::<Vec<_>>())
    };
    let o = run("3");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("other settings"), "{}", stderr(&o));
    assert!(checkpoints.join("000002.png").is_file(), "a refused resume keeps the checkpoints");
    std::fs::write(checkpoints.join("000002.png"), b"\x89PNG damaged").unwrap();
    let o = run("25");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("frames 2 were damaged"), "{}", stderr(&o));
    let (a, b) = (frames(&full).unwrap(), frames(&out).unwrap());
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x == y, "frame {i} differs from the uninterrupted render (PSNR {:.1} dB)", psnr(x, y));
    }
}

/// Runs `dreamvid args` as a process that may write no file larger than `limit` bytes (a full
/// disk, as far as the files it writes can tell: writes past the limit fail with EFBIG).
#[cfg(target_os = "linux")]
fn dreamvid_with_file_limit(args: &[&str], limit: u64) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dreamvid"));
    cmd.args(args).env_remove("DREAMVID_WEIGHTS_DIR");
    // SAFETY: between fork and exec the closure only calls setrlimit and signal, which are
    // async-signal-safe, and touches no memory the parent's threads could hold locked.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    cmd.output().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_reported_and_the_render_resumes_when_there_is_room() {
    let dir = common::scratch("pipeline-disk-full");
    let input = dir.join("in.mp4");
    write_clip(&input, &ClipSpec::constant(128, 96, 24, 25), moving_pattern(128, 96, 2, 0)).unwrap();
    let weights = fixture_weights(&dir);
    let out = dir.join("out.mp4");
    let args = |resume: bool| {
        let mut a = vec![input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "vgg19"];
        a.extend(["--weights", &weights, "--layer", "20", "--octaves", "1", "--iterations", "2", "--crf", "0"]);
        if resume {
            a.push("--resume");
        }
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |resume: bool, limit: Option<u64>| {
        let a = args(resume);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        limit.map_or_else(|| dreamvid(&a), |l| dreamvid_with_file_limit(&a, l))
    };
    // A limit of half the finished video, and above any checkpoint: the encoder fails midway.
    let o = run(false, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = std::fs::metadata(&out).unwrap().len();
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(sidecar_path(&out)).unwrap();
    let o = run(false, Some(whole / 2));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("File too large") || err.contains("No space left"), "{err}");
    assert!(err.contains("--resume") && !err.contains("panicked"), "{err}");
    assert!(!out.exists(), "no half-written output");
    let checkpoints = dir.join(".out.mp4.dreamvid-frames");
    let saved = std::fs::read_dir(&checkpoints).unwrap().count();
    assert!(saved > 2, "the frames dreamed before the failure are kept ({saved})");
    // Room again: the render resumes and finishes.
    let o = run(true, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("from checkpoints"), "{}", stderr(&o));
    assert_eq!(frames(&out).unwrap().len(), 24);
    // A checkpoint that cannot be written stops the render as clearly.
    std::fs::remove_file(&out).unwrap();
    let o = run(false, Some(2_000));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("checkpoint") && !stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn start_duration_frames_and_preview_cut_video_and_audio_frame_accurately() {
    let dir = common::scratch("pipeline-excerpt");
    let input = dir.join("in.mp4");
    let (w, h) = (64, 48);
    write_clip(&input, &ClipSpec { audio: true, ..ClipSpec::constant(w, h, 48, 24) }, moving_pattern(w, h, 3, 0))
        .unwrap();
    let weights = fixture_weights(&dir);
    let run = |output: &Path, extra: &[&str]| {
        let mut args = vec![input.to_str().unwrap(), "-o", output.to_str().unwrap(), "--model", "vgg19"];
        args.extend(["--weights", &weights, "--iterations", "0"]);
        args.extend(extra);
        dreamvid(&args)
    };
    let (v_in, a_in) = timeline(&input);
    let source = frames(&input).unwrap();

    // --start 0.5 --duration 1: the frames shown from 0.5 s to before 1.5 s, starting at 0.
    let out = dir.join("part.mp4");
    let o = run(&out, &["--start", "0.5", "--duration", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (v_out, a_out) = timeline(&out);
    let kept: Vec<f64> = v_in.iter().filter(|&&t| (0.5..1.5).contains(&t)).map(|t| t - 0.5).collect();
    assert_eq!(v_out.len(), 24);
    assert!(v_out.iter().zip(&kept).all(|(a, b)| (a - b).abs() < 1e-3), "{v_out:?} vs {kept:?}");
    // Frame-accurate: each frame is its source frame (the pattern moves 3 px per frame).
    let dreamed = frames(&out).unwrap();
    for (k, f) in dreamed.iter().enumerate() {
        let (own, next) = (psnr(f, &source[12 + k]), psnr(f, &source[13 + k]));
        assert!(own > next + 3.0, "frame {k}: {own:.1} dB to its source, {next:.1} dB to the next");
    }
    let audio: Vec<(Vec<u8>, f64)> =
        a_in.iter().filter(|(_, t)| (0.5 - 1e-6..1.5 - 1e-6).contains(t)).map(|(d, t)| (d.clone(), t - 0.5)).collect();
    assert!(!audio.is_empty() && audio.len() < a_in.len() / 2);
    assert_eq!(a_out.len(), audio.len(), "audio packets from 0.5 s to 1.5 s");
    for ((d, t), (d_want, t_want)) in a_out.iter().zip(&audio) {
        assert!(d == d_want && (t - t_want).abs() < 1e-3, "audio packet at {t} (want {t_want})");
    }

    // --frames N counts frames; 1:00-style times parse.
    let out = dir.join("frames.mp4");
    let o = run(&out, &["--start", "0:00.25", "--frames", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(timeline(&out).0.len(), 5);
    assert!(psnr(&frames(&out).unwrap()[0], &source[6]) > 35.0);

    // --preview: every 8th frame, a short MP4 and a contact sheet beside the output's name.
    let out = dir.join("look.mp4");
    let o = run(&out, &["--preview", "8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.exists(), "a preview does not write the output itself");
    let preview = dir.join("look.preview.mp4");
    let shown = frames(&preview).unwrap();
    assert_eq!(shown.len(), 6);
    assert!(psnr(&shown[1], &source[8]) > 35.0, "the second preview frame is source frame 8");
    let sheet = image::open(dir.join("look.preview.png")).unwrap();
    assert_eq!((sheet.width(), sheet.height()), (4 * w + 5 * 4, 2 * h + 3 * 4));

    // Past the end: a clear error, nothing written.
    let out = dir.join("none.mp4");
    let o = run(&out, &["--start", "5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--start past its end"), "{}", stderr(&o));
    assert!(!out.exists());
    let o = run(&out, &["--start", "1:75"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn frame_folders_in_and_out_keep_order_rate_and_atomicity() {
    let dir = common::scratch("pipeline-frame-folders");
    let (w, h) = (48, 32);
    let pattern = moving_pattern(w, h, 3, 1);
    let source: Vec<image::RgbImage> = (0..12).map(&pattern).collect();
    // Unpadded names: natural order puts frame10 after frame9.
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for (i, f) in source.iter().enumerate() {
        f.save(input.join(format!("frame{}.png", i + 1))).unwrap();
    }
    std::fs::write(input.join("fps.txt"), "12\n").unwrap();
    let weights = fixture_weights(&dir);
    let run = |input: &Path, output: &Path, extra: &[&str]| {
        let mut args = vec![input.to_str().unwrap(), "-o", output.to_str().unwrap(), "--model", "vgg19"];
        args.extend(["--weights", &weights, "--iterations", "0"]);
        args.extend(extra);
        dreamvid(&args)
    };

    let video = dir.join("out.mp4");
    let o = run(&input, &video, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (times, _) = timeline(&video);
    assert_eq!(times.len(), 12);
    assert!(times.iter().enumerate().all(|(i, t)| (t - i as f64 / 12.0).abs() < 1e-3), "{times:?}");
    let shown = frames(&video).unwrap();
    for (k, f) in shown.iter().enumerate() {
        let best = (0..12).max_by(|&a, &b| psnr(f, &source[a]).total_cmp(&psnr(f, &source[b]))).unwrap();
        assert_eq!(best, k, "frame {k} of the video is source frame {best}");
    }

    // A video into a PNG folder, and that folder (a printf pattern) back in at its fps.txt rate.
    let pngs = dir.join("pngs/");
    let o = run(&video, &pngs, &["--frames", "6"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(pngs.join("fps.txt")).unwrap().trim(), "12");
    let names: Vec<String> = {
        let mut n: Vec<String> =
            std::fs::read_dir(&pngs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        n.sort();
        n
    };
    assert_eq!(names.len(), 7, "{names:?}");
    assert_eq!(
        (names[0].as_str(), names[1].as_str(), names[6].as_str()),
        ("fps.txt", "frame_00000.png", "frame_00005.png")
    );
    let again = dir.join("again.mp4");
    let o = run(&pngs.join("frame_%05d.png"), &again, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(timeline(&again).0.len(), 6);

    // Into a folder that is not empty: refused, nothing touched.
    let o = run(&video, &input, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read_dir(&input).unwrap().count(), 13);

    // A gap in a pattern, a frame of another size, a damaged frame: clear errors, nothing written.
    std::fs::remove_file(pngs.join("frame_00003.png")).unwrap();
    let o = run(&pngs.join("frame_%05d.png"), &dir.join("gap.mp4"), &[]);
    assert!(stderr(&o).contains("frame 3 is missing"), "{}", stderr(&o));
    image::RgbImage::new(w + 2, h).save(input.join("frame4.png")).unwrap();
    let o = run(&input, &dir.join("sizes/"), &[]);
    assert!(stderr(&o).contains("frame4.png is 50x32"), "{}", stderr(&o));
    std::fs::write(input.join("frame4.png"), b"not a picture").unwrap();
    let o = run(&input, &dir.join("damaged/"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("frame4.png"), "{}", stderr(&o));
    let o = run(&input, &dir.join("norate.mp4"), &["--fps", "0"]);
    assert_eq!(o.status.code(), Some(1));
    for name in ["gap.mp4", "sizes", "damaged", "norate.mp4", ".sizes.dreamvid-partial", ".damaged.dreamvid-partial"] {
        assert!(!dir.join(name).exists(), "{name} was left behind");
    }
}
