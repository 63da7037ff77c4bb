//! Render farms: plan, render segments and assemble as separate processes give the single
//! render's video; bad jobs fail clearly and write nothing.

mod common;

use common::{dreamvid, dreamvid_command, fixture_weights, stderr, timeline};

use std::path::{Path, PathBuf};

use dreamvid::compare::{frames, psnr};
use dreamvid::farm::Job;
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
        self.render_command(job, segment).output().unwrap()
    }

    /// `dreamvid render JOB --segment I`, to start.
    fn render_command(&self, job: &Path, segment: usize) -> std::process::Command {
        let (job, seg) = (job.display().to_string(), segment.to_string());
        let mut c = dreamvid_command(&["render", &job, "--segment", &seg, "--weights", &self.weights]);
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        c
    }

    /// A planned job in `name` whose segment [`WARM`] is rendered uninterrupted: the frames the
    /// fault tests compare with.
    fn reference(&self, name: &str) -> PathBuf {
        let job = self.dir.join(name);
        assert!(self.plan(&job).status.success());
        let o = self.render(&job, WARM);
        assert!(o.status.success(), "{}", stderr(&o));
        job
    }

    /// A farm in `name` with a [`Farm::reference`] job, and another job planned in `job`.
    fn with_reference(name: &str) -> (Self, PathBuf, PathBuf) {
        let f = Farm::new(name);
        let (reference, job) = (f.reference("reference"), f.dir.join("job"));
        assert!(f.plan(&job).status.success());
        (f, reference, job)
    }
}

/// The segment inside the long shot: warm-up, cross-fade frames set aside, frames written.
const WARM: usize = 2;

/// The frames of segment `i` of the job in `dir`: its video's and those it set aside.
fn segment_frames(dir: &Path, i: usize) -> (Vec<image::RgbImage>, Vec<(String, Vec<u8>)>) {
    let mut aside: Vec<(String, Vec<u8>)> = std::fs::read_dir(Job::fade_dir(dir, i))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !dreamvid::output::is_temp_name(&e.file_name().to_string_lossy()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), image::open(e.path()).unwrap().to_rgb8().into_raw()))
        .collect();
    aside.sort();
    (frames(&Job::segment_path(dir, i)).unwrap(), aside)
}

/// Files in the job's segments folder that are neither segments nor their companions (left
/// over by an interrupted or duplicated render).
fn litter(dir: &Path) -> Vec<String> {
    let folders = std::iter::once(Job::segments_dir(dir)).chain((0..3).map(|i| Job::fade_dir(dir, i)));
    folders
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with('.') && !n.ends_with(".dreamvid-frames"))
        .collect()
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

#[test]
fn a_render_killed_at_random_points_resumes_to_the_uninterrupted_frames() {
    let (f, reference, job) = Farm::with_reference("farm-kill");
    // Three SIGKILLs at seeded random points: once a random number of the segment's 32
    // dreamed frames are checkpointed (the first may be before any), plus 0-30 ms.
    let checkpoints = Job::segments_dir(&job).join(format!(".{WARM}.mkv.dreamvid-frames"));
    let saved = || {
        let frame = |n: &str| n.ends_with(".png") && !dreamvid::output::is_temp_name(n);
        std::fs::read_dir(&checkpoints)
            .map_or(0, |d| d.filter(|e| frame(&e.as_ref().unwrap().file_name().to_string_lossy())).count())
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut kept = Vec::new();
    let mut target = 0;
    for step in [6, 10, 8] {
        target += random(step) as usize + usize::from(target > 0);
        let mut child = f.render_command(&job, WARM).spawn().unwrap();
        while saved() < target && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(random(30)));
        assert!(child.try_wait().unwrap().is_none(), "the render ended before the kill at {target}");
        child.kill().unwrap();
        child.wait().unwrap();
        kept.push((target, saved()));
    }
    assert!(kept.last().is_some_and(|&(_, n)| n > 1), "the kills left checkpoints to resume from: {kept:?}");
    let o = f.render(&job, WARM);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("from checkpoints"), "the rerun resumed: {}", stderr(&o));
    assert!(
        segment_frames(&job, WARM) == segment_frames(&reference, WARM),
        "frames differ from the uninterrupted render"
    );
    // The kills' partial files are gone once the job is assembled.
    for i in (0..3).filter(|&i| i != WARM) {
        assert!(f.render(&job, i).status.success());
    }
    let out = f.dir.join("out.mp4");
    let o = f.run(&["assemble", job.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(litter(&job), Vec::<String>::new());
}

#[test]
fn one_segment_rendered_twice_at_once_ends_as_one_valid_segment() {
    let (f, reference, job) = Farm::with_reference("farm-twice");
    // A retried task whose first attempt is still alive: two processes, the same segment.
    let (a, b) = (f.render_command(&job, WARM).spawn().unwrap(), f.render_command(&job, WARM).spawn().unwrap());
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        println!(
            "{}",
            stderr(&o)
                .lines()
                .filter(|l| l.contains("segment") || l.starts_with("wrote"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(segment_frames(&job, WARM) == segment_frames(&reference, WARM), "frames differ from a single render");
    let status = String::from_utf8_lossy(&f.run(&["status", job.to_str().unwrap()]).stdout).into_owned();
    assert!(status.contains(&format!("segment {WARM:>4} (frames 44-63): done")), "{status}");
    assert_eq!(litter(&job), Vec::<String>::new(), "no partial file left");
}

#[test]
fn assemble_refuses_a_truncated_or_bit_flipped_segment_and_status_says_how_to_redo_it() {
    let f = Farm::new("farm-damaged");
    let job = f.dir.join("job");
    assert!(f.plan(&job).status.success());
    for i in 0..3 {
        assert!(f.render(&job, i).status.success());
    }
    let (good0, good1) = (segment_frames(&job, 0), segment_frames(&job, 1));
    // Segment 0 loses its last third; segment 1 has one bit flipped in its middle (a packet's
    // payload: the container still reads, with every frame and timestamp in place).
    let seg = |i| Job::segment_path(&job, i);
    let bytes = std::fs::read(seg(0)).unwrap();
    std::fs::write(seg(0), &bytes[..bytes.len() * 2 / 3]).unwrap();
    let mut bytes = std::fs::read(seg(1)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(seg(1), &bytes).unwrap();
    let out = f.dir.join("out.mp4");
    let o = f.run(&["assemble", job.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for i in [0, 1] {
        assert!(err.contains(&format!("segment {i} must be rendered again")), "{err}");
        assert!(err.contains(&format!("dreamvid render {} --segment {i}", job.display())), "{err}");
    }
    assert!(err.contains("1.mkv is damaged"), "the flipped bit is found: {err}");
    assert!(!out.exists());
    let status = String::from_utf8_lossy(&f.run(&["status", job.to_str().unwrap()]).stdout).into_owned();
    for i in [0, 1] {
        assert!(
            status.contains(&format!("render it again: dreamvid render {} --segment {i}", job.display())),
            "{status}"
        );
    }
    assert!(status.contains("1 of 3 segments done"), "{status}");
    // Rendered again, they are the frames they were, and the job assembles.
    for i in [0, 1] {
        let o = f.render(&job, i);
        assert!(o.status.success() && !stderr(&o).contains("already rendered"), "{}", stderr(&o));
    }
    assert!(segment_frames(&job, 0) == good0 && segment_frames(&job, 1) == good1);
    assert!(f.run(&["assemble", job.to_str().unwrap(), "-o", out.to_str().unwrap()]).status.success());
}

/// A tmpfs mounted for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs", at.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "mounting a tmpfs needs root: {}", stderr(&o));
        Tmpfs(at.into())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "mounts a tmpfs, which needs root: scripts/test runs it as root"]
fn a_full_job_folder_fails_the_task_clearly_and_the_retry_finishes_once_there_is_room() {
    let f = Farm::new("farm-full");
    let reference = f.reference("reference");
    let job = f.dir.join("job");
    let _fs = Tmpfs::mount(&job, 4 << 20);
    assert!(f.plan(&job).status.success());
    // Fill the folder to 96 KiB of room: enough to start, not to finish.
    let filler = job.join("filler");
    let free = || {
        let o = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(&job).output().unwrap();
        String::from_utf8_lossy(&o.stdout).lines().last().unwrap().trim().parse::<u64>().unwrap()
    };
    std::fs::write(&filler, vec![1u8; (free() - (96 << 10)) as usize]).unwrap();
    let o = f.render(&job, WARM);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("run the same command again") && !err.contains("panicked"), "{err}");
    assert!(!Job::segment_path(&job, WARM).exists(), "no half-written segment");
    assert_eq!(litter(&job), Vec::<String>::new(), "no partial file left");
    // Room again: the retry resumes and finishes with the frames of an uninterrupted render.
    std::fs::remove_file(&filler).unwrap();
    let o = f.render(&job, WARM);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("from checkpoints"), "{}", stderr(&o));
    assert!(segment_frames(&job, WARM) == segment_frames(&reference, WARM));
}
