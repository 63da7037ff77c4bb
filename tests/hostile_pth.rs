//! Untrusted checkpoints stay data: hostile `.pth` files (pickles that would run commands under
//! `torch.load`, bombs of nesting, memo and size, zip bombs, records named outside the
//! archive) are refused by the real binary with a clear error, within 10 s and within
//! 2 x the file's size + 64 MiB of memory, and nothing they name is run or written.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::dreamvid_command;

/// A pickle (protocol 2) from opcodes and their arguments, as bytes.
fn pickle(body: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0x80, 2];
    for part in body {
        out.extend_from_slice(part);
    }
    out.push(b'.');
    out
}

/// BINUNICODE of `s`.
fn text(s: &str) -> Vec<u8> {
    let mut out = vec![b'X'];
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out
}

/// GLOBAL `module.name`.
fn global(module: &str, name: &str) -> Vec<u8> {
    format!("c{module}\n{name}\n").into_bytes()
}

/// A zip checkpoint with these records (stored, as torch writes them, but those named in
/// `deflate`).
fn zip_pth(path: &Path, records: &[(&str, &[u8])], deflate: &[&str]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, data) in records {
        let method = match deflate.contains(name) {
            true => zip::CompressionMethod::Deflated,
            false => zip::CompressionMethod::Stored,
        };
        let options = zip::write::SimpleFileOptions::default().compression_method(method).large_file(true);
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

/// A legacy checkpoint: the magic number, the protocol, the system info, then `state`.
fn legacy_pth(path: &Path, state: &[u8]) {
    let mut out = pickle(&[b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"]);
    out.extend(pickle(&[b"M\xe9\x03"]));
    out.extend(pickle(&[b"}(", &text("little_endian"), b"\x88u"]));
    out.extend_from_slice(state);
    std::fs::write(path, out).unwrap();
}

/// The state dict `{'features.0.weight': tensor}` whose tensor is rebuilt from storage `0`
/// (`numel` floats) with `size` and `stride`.
fn state_dict(numel: u64, size: [u64; 4], stride: [u64; 4]) -> Vec<u8> {
    let tuple4 = |v: [u64; 4]| {
        let mut out = vec![b'('];
        for x in v {
            out.push(0x8a);
            out.push(8);
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.push(b't');
        out
    };
    let mut storage = vec![b'('];
    storage.extend(text("storage"));
    storage.extend(global("torch", "FloatStorage"));
    storage.extend(text("0"));
    storage.extend(text("cpu"));
    storage.extend([0x8a, 8]);
    storage.extend_from_slice(&numel.to_le_bytes());
    storage.extend(b"tQ");
    pickle(&[
        b"}",
        &text("features.0.weight"),
        &global("torch._utils", "_rebuild_tensor_v2"),
        b"(",
        &storage,
        b"K\x00",
        &tuple4(size),
        &tuple4(stride),
        b"\x89",
        &global("collections", "OrderedDict"),
        b")Rt",
        b"R",
        b"s",
    ])
}

/// What a run of the binary did.
struct Run {
    code: Option<i32>,
    stderr: String,
    took: Duration,
    peak_rss: u64,
}

/// Runs `dreamvid layers --model vgg19 --weights FILE` and measures its peak memory (the
/// kernel's ru_maxrss of that child, through wait4) and time.
fn refuse(file: &Path) -> Run {
    let start = Instant::now();
    let mut command = dreamvid_command(&["layers", "--model", "vgg19", "--weights", file.to_str().unwrap()]);
    // SAFETY: between fork and exec the closure makes only async-signal-safe calls (open,
    // write, close) on a path and bytes that live in the parent's memory.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            // The forked child inherits the test process's peak memory, which the exec would
            // carry into the binary's; reset it to the child's current size (Linux: "5" to
            // clear_refs resets the peak resident set).
            let fd = libc::open(c"/proc/self/clear_refs".as_ptr(), libc::O_WRONLY);
            if fd >= 0 {
                libc::write(fd, c"5".as_ptr().cast(), 1);
                libc::close(fd);
            }
            Ok(())
        });
    }
    #[allow(clippy::zombie_processes)] // reaped by the wait4 below, which also gives its usage
    let mut child = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, not yet waited for (`child` is never waited on after);
    // both out-pointers are valid for writes for the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Run { code, stderr, took: start.elapsed(), peak_rss: usage.ru_maxrss as u64 * 1024 }
}

/// A hostile file: its name, how to make it, and what the error must say.
struct Case {
    name: &'static str,
    make: fn(&Path, &Path),
    says: &'static str,
}

/// The marker file a command in a hostile pickle would create.
fn marker(dir: &Path) -> PathBuf {
    dir.join("PWNED")
}

fn touch(dir: &Path) -> String {
    format!("touch {}", marker(dir).display())
}

const CASES: &[Case] = &[
    Case {
        name: "reduce-os-system.pth",
        make: |p, dir| {
            zip_pth(p, &[("a/data.pkl", &pickle(&[&global("posix", "system"), &text(&touch(dir)), b"\x85R"]))], &[])
        },
        says: "a pickled posix.system object",
    },
    Case {
        name: "reduce-os-system-legacy.pth",
        make: |p, dir| {
            std::fs::write(p, pickle(&[&global("os", "system"), &text(&touch(dir)), b"\x85R"])).unwrap();
        },
        says: "not a PyTorch checkpoint (no torch magic number)",
    },
    Case {
        name: "eval-in-state-dict.pth",
        make: |p, dir| {
            let code = format!("__import__('os').system('{}')", touch(dir));
            let dict =
                pickle(&[b"}", &text("features.0.weight"), &global("builtins", "eval"), &text(&code), b"\x85Rs"]);
            zip_pth(p, &[("a/data.pkl", &dict)], &[])
        },
        says: "a dict without tensors",
    },
    Case {
        name: "eval-as-magic-legacy.pth",
        make: |p, dir| {
            let code = format!("__import__('os').system('{}')", touch(dir));
            let mut out = pickle(&[&global("__builtin__", "eval"), &text(&code), b"\x85R"]);
            out.extend(pickle(&[b"}"]));
            std::fs::write(p, out).unwrap();
        },
        says: "not a PyTorch checkpoint (no torch magic number)",
    },
    Case {
        name: "nested-tuples.pth",
        make: |p, _| zip_pth(p, &[("a/data.pkl", &pickle(&[b"N", &[0x85; 200_000]]))], &[]),
        says: "nested more than 100 deep",
    },
    Case {
        name: "a-million-marks.pth",
        make: |p, _| legacy_pth(p, &pickle(&[&[b'('; 1_000_000]])),
        says: "pickle is damaged",
    },
    Case {
        name: "memo-billion-laughs.pth",
        // A list of ten references to the last list, 90 times over: 10^90 leaves unshared.
        make: |p, _| {
            let mut body = b"]q\x00".to_vec();
            for _ in 0..90 {
                body.push(b'(');
                body.extend_from_slice(&b"h\x00".repeat(10));
                body.extend_from_slice(b"lq\x00");
            }
            zip_pth(p, &[("a/data.pkl", &pickle(&[&body]))], &[])
        },
        says: "not a state dict",
    },
    Case {
        name: "memo-quadratic-append.pth",
        // Appending to a list the memo shares copies it; doing it 300,000 times would copy
        // 45 billion items.
        make: |p, _| zip_pth(p, &[("a/data.pkl", &pickle(&[b"]q\x00", &b"Naq\x00".repeat(300_000)]))], &[]),
        says: "adding to shared containers",
    },
    Case {
        name: "a-million-opcodes.pth",
        make: |p, _| zip_pth(p, &[("a/data.pkl", &pickle(&[b"]", &b"Na".repeat(1_000_000)]))], &[]),
        says: "more than 524288 opcodes",
    },
    Case {
        name: "huge-string.pth",
        make: |p, _| {
            let mut op = vec![0x8d];
            op.extend_from_slice(&(1u64 << 62).to_le_bytes());
            zip_pth(p, &[("a/data.pkl", &pickle(&[&op, b"abc"]))], &[])
        },
        says: "the file ends inside the data.pkl pickle",
    },
    Case {
        name: "long-global-line.pth",
        make: |p, _| zip_pth(p, &[("a/data.pkl", &pickle(&[b"c", &[b'a'; 1 << 20]]))], &[]),
        says: "a text line longer than 4096 bytes",
    },
    Case {
        name: "huge-storage-declared.pth",
        make: |p, _| {
            let dict = state_dict(1 << 60, [64, 3, 3, 3], [27, 9, 3, 1]);
            zip_pth(p, &[("a/data.pkl", &dict), ("a/data/0", &[0; 64])], &[])
        },
        says: "holds more elements than its storage 0",
    },
    Case {
        name: "broadcast-view.pth",
        // One float seen as 64x3x3x3 through strides of 0.
        make: |p, _| {
            let dict = state_dict(1, [64, 3, 3, 3], [0, 0, 0, 0]);
            zip_pth(p, &[("a/data.pkl", &dict), ("a/data/0", &[0; 4])], &[])
        },
        says: "holds more elements than its storage 0",
    },
    Case {
        name: "huge-shape.pth",
        make: |p, _| {
            let dict = state_dict(1, [1 << 40, 3, 3, 3], [0, 0, 0, 0]);
            zip_pth(p, &[("a/data.pkl", &dict), ("a/data/0", &[0; 4])], &[])
        },
        says: "its shape [1099511627776, 3, 3, 3] holds more elements than its storage 0",
    },
    Case {
        name: "zip-bomb-pickle.pth",
        // 256 MiB of NONE opcodes, deflated to some 250 KB.
        make: |p, _| zip_pth(p, &[("a/data.pkl", &vec![b'N'; 256 << 20])], &["a/data.pkl"]),
        says: "data.pkl is compressed",
    },
    Case {
        name: "zip-bomb-storage.pth",
        make: |p, _| {
            let dict = state_dict(64 << 20, [64, 3, 3, 3], [27, 9, 3, 1]);
            zip_pth(p, &[("a/data.pkl", &dict), ("a/data/0", &vec![0; 256 << 20])], &["a/data/0"])
        },
        says: "the storage record a/data/0 is compressed",
    },
    Case {
        name: "path-traversal.pth",
        make: |p, dir| {
            let dict = state_dict(1728, [64, 3, 3, 3], [27, 9, 3, 1]);
            let name = format!("../../{}/evil/data.pkl", dir.file_name().unwrap().to_str().unwrap());
            zip_pth(p, &[(&name, &dict), ("a/data/0", &[0; 1728 * 4])], &[])
        },
        says: "outside the archive",
    },
    Case {
        name: "absolute-name.pth",
        make: |p, dir| {
            let dict = state_dict(1728, [64, 3, 3, 3], [27, 9, 3, 1]);
            let name = format!("{}/evil/data.pkl", dir.display());
            zip_pth(p, &[(&name, &dict)], &[])
        },
        says: "outside the archive",
    },
];

#[test]
fn hostile_checkpoints_are_refused_clearly_within_time_and_memory() {
    let dir = common::scratch("hostile-pth");
    let mut runs = Vec::new();
    for case in CASES {
        let path = dir.join(case.name);
        (case.make)(&path, &dir);
        let size = std::fs::metadata(&path).unwrap().len();
        let run = refuse(&path);
        println!(
            "{:<28} {:>10} B  exit {:?}  {:>5.2} s  {:>4} MiB peak (bound {} MiB)  {}",
            case.name,
            size,
            run.code,
            run.took.as_secs_f64(),
            run.peak_rss >> 20,
            (2 * size + (64 << 20)) >> 20,
            run.stderr.lines().find(|l| l.starts_with("error:")).unwrap_or("(no error line)")
        );
        runs.push((case, size, run));
    }
    for (case, size, run) in runs {
        let bound = 2 * size + (64 << 20);
        assert_eq!(run.code, Some(1), "{}: {}", case.name, run.stderr);
        let error = run.stderr.lines().skip_while(|l| !l.starts_with("error:")).collect::<Vec<_>>().join("\n");
        assert!(error.contains(case.name) && error.contains(case.says), "{}: {}", case.name, run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}: {}", case.name, run.stderr);
        assert!(run.took < Duration::from_secs(10), "{} took {:?}", case.name, run.took);
        assert!(run.peak_rss <= bound, "{} took {} MiB, above {} MiB", case.name, run.peak_rss >> 20, bound >> 20);
    }
    assert!(!marker(&dir).exists(), "a hostile file ran a command");
    assert!(!dir.join("evil").exists(), "a hostile file wrote outside its archive");
}
