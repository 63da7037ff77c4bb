//! Render farms: plan, render segments and assemble as separate processes give the single
//! render's video; bad jobs fail clearly and write nothing.

mod common;

use common::{dreamvid, fixture_weights, stderr, timeline};

use std::path::{Path, PathBuf};

use dreamvid::compare::{frames, psnr};
use dreamvid::fixture::clip::{moving_pattern, occlusion_scene, write_clip, ClipSpec};

/// A clip with a cut at frame 24 and a long second shot (40 frames), with audio.
fn clip_with_a_cut(path: &Path) {
    let (a, b) = (moving_pattern(96, 64, 2, 1), occlusion_scene(96, 64));
    let spec = ClipSpec { audio: true, ..ClipSpec::constant(96, 64, 64, 25) };
    write_clip(path, &spec, |i| if i < 24 { a(i) } else { b(i - 24) }).unwrap();
}

struct Farm {
    dir: PathBuf,
    input: PathBuf,
    weights: String,
}

impl Farm {
    fn new(name: &str) -> Self {
        let dir = common::scratch(name);
        let input = dir.join("in.mp4");
        clip_with_a_cut(&input);
        let weights = fixture_weights(&dir);
        Farm { dir, input, weights }
    }

    /// The dream settings shared by the single render and the plan (lossless output, so that
    /// equal dreams decode to equal frames).
    fn settings(&self) -> Vec<String> {
        ["--model", "vgg19", "--weights", &self.weights, "--layer", "20", "--octaves", "2", "--iterations", "2"]
            .into_iter()
            .chain(["--crf", "0"])
            .map(String::from)
            .collect()
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        dreamvid(args)
    }

    fn plan(&self, job: &Path) -> std::process::Output {
        let mut a = vec!["plan".to_string(), self.input.display().to_string(), "-o".into(), job.display().to_string()];
        a.extend(["--segment-seconds", "1", "--warmup", "12"].map(String::from));
        a.extend(self.settings());
        self.run(&a.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn render(&self, job: &Path, segment: usize) -> std::process::Output {
        let (job, seg) = (job.display().to_string(), segment.to_string());
        self.run(&["render", &job, "--segment", &seg, "--weights", &self.weights])
    }
}

#[test]
fn segments_rendered_apart_assemble_into_the_single_render() {
    let f = Farm::new("farm-assemble");
    let single = f.dir.join("single.mp4");
    let mut a = vec![f.input.display().to_string(), "-o".into(), single.display().to_string()];
    a.extend(f.settings());
    let o = f.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));

    let job = f.dir.join("job");
    let o = f.plan(&job);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.trim_end().ends_with("3 segments"), "{text}");
    let count = f.run(&["status", job.to_str().unwrap(), "--count"]);
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "3");
    let plan = dreamvid::farm::Job::load(&job).unwrap();
    let spans: Vec<_> = plan.segments.iter().map(|s| (s.first, s.frames, s.warmup, s.fade_in)).collect();
    assert_eq!(spans, vec![(0, 24, 0, 0), (24, 20, 0, 0), (44, 20, 12, 10)], "at the cut, and inside the long shot");
    // Planning again with the same input and settings keeps the job.
    assert!(f.plan(&job).status.success());

    // Segments in any order, each by its own process (the second time: already done).
    for i in [2, 0, 1, 1] {
        let o = f.render(&job, i);
        assert!(o.status.success(), "segment {i}: {}", stderr(&o));
    }
    let status = f.run(&["status", job.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("3 of 3 segments done"));
    let out = f.dir.join("assembled.mp4");
    let o = f.run(&["assemble", job.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let ((v_single, a_single), (v_out, a_out), (v_in, a_in)) = (timeline(&single), timeline(&out), timeline(&f.input));
    assert_eq!(v_out.len(), 64, "frame count");
    assert_eq!(v_out, v_single, "timestamps");
    assert_eq!(v_out, v_in);
    assert_eq!(a_out, a_in, "the source's audio, copied once");
    assert_eq!(a_out, a_single);
    let (s, o) = (frames(&single).unwrap(), frames(&out).unwrap());
    // Segments that start at a cut (or the start) are the single render's frames, bit for bit.
    for i in 0..44 {
        assert!(s[i] == o[i], "frame {i} differs from the single render (PSNR {:.1} dB)", psnr(&s[i], &o[i]));
    }
    // The seam inside the long shot (frames 43 -> 44, where the cross-fade begins) flickers
    // within the spread of the shot's other frame pairs (mean + 3 standard deviations).
    let stab = dreamvid::video::stability::measure(&f.input, &out, 0.3).unwrap();
    let pair = |t: usize| {
        let warp = stab.pairs[t].unwrap().warp.unwrap();
        warp.dreamed - warp.source
    };
    let others: Vec<f64> = (24..63).filter(|&t| t != 43).map(pair).collect();
    let mean = others.iter().sum::<f64>() / others.len() as f64;
    let sd = (others.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / others.len() as f64).sqrt();
    assert!(pair(43) <= mean + 3.0 * sd, "seam pair adds {:.5}; the shot's others {mean:.5} +- {sd:.5}", pair(43));
}

#[test]
fn bad_jobs_fail_clearly_and_write_nothing() {
    let f = Farm::new("farm-errors");
    let job = f.dir.join("job");
    assert!(f.plan(&job).status.success());
    assert!(f.render(&job, 0).status.success());
    let out = f.dir.join("out.mp4");
    let assemble = || f.run(&["assemble", job.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    // Missing segments: named, with the command that renders them.
    let o = assemble();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not rendered yet: [1, 2]"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("dreamvid render {} --segment 2", job.display())), "{}", stderr(&o));
    assert!(!out.exists());
    // A segment number past the plan.
    let o = f.render(&job, 3);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("segments 0 to 2"), "{}", stderr(&o));
    // A segment of another plan (other settings) in its place.
    let other = f.dir.join("other");
    let mut a = vec!["plan".to_string(), f.input.display().to_string(), "-o".into(), other.display().to_string()];
    a.extend(["--segment-seconds", "1"].map(String::from));
    a.extend(f.settings());
    a.extend(["--lr", "0.05"].map(String::from));
    assert!(f.run(&a.iter().map(String::as_str).collect::<Vec<_>>()).status.success());
    assert!(f.render(&other, 1).status.success());
    let seg = |dir: &Path, i: usize| dreamvid::farm::Job::segment_path(dir, i);
    std::fs::copy(seg(&other, 1), seg(&job, 1)).unwrap();
    // A damaged segment file.
    std::fs::write(seg(&job, 2), b"not a video").unwrap();
    let o = assemble();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("segment 1 must be rendered again") && err.contains("another plan"), "{err}");
    assert!(err.contains("segment 2 must be rendered again"), "{err}");
    assert!(!out.exists());
    let status = String::from_utf8_lossy(&f.run(&["status", job.to_str().unwrap()]).stdout).into_owned();
    assert!(status.contains("1 of 3 segments done") && status.contains("stale"), "{status}");
    // Another plan in the same folder is refused; a changed input is noticed.
    let o = f.run(
        &a.iter()
            .map(|s| if s == other.to_str().unwrap() { job.to_str().unwrap() } else { s.as_str() })
            .collect::<Vec<_>>(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("holds another job"), "{}", stderr(&o));
    write_clip(&f.input, &ClipSpec::constant(96, 64, 64, 25), moving_pattern(96, 64, 1, 1)).unwrap();
    let o = f.render(&job, 1);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("changed since the job was planned"), "{}", stderr(&o));
    let o = assemble();
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.exists());
    // No job at all.
    let o = f.run(&["status", f.dir.join("nothing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("dreamvid plan"), "{}", stderr(&o));
}
