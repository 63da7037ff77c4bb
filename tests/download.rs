//! Weights downloaded on first use, against a real HTTP server on 127.0.0.1 that each test
//! starts: a download is verified and kept, the next run does not download, a dropped
//! connection resumes with a Range request, a wrong checksum or a 404 keeps nothing, offline
//! never touches the network, two processes share one download, an unwritable cache is
//! explained. The tests that serve the real EfficientNet-Lite0 checkpoint need it in weights/
//! (scripts/fetch-weights); scripts/test runs them.

mod common;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dreamvid::models::discovery::{sha256_hex, SearchRoots};
use dreamvid::models::download::{fetch, PUBLISHED};
use dreamvid::models::ModelKind;

const LITE0: &str = "efficientnet-lite0-57934424.pth";

/// How the server misbehaves.
#[derive(Default, Clone)]
struct Faults {
    /// The first response sends this many bytes of the body, then closes the connection.
    drop_first_after: Option<usize>,
    /// Every response flips a byte of the body.
    corrupt: bool,
    /// A pause after every 1 MiB sent.
    slow: Option<Duration>,
}

/// A small HTTP/1.1 server: GET of the files it holds, with `Range: bytes=N-`; 404 otherwise.
struct Server {
    base: String,
    /// Each request: the path and the first byte asked for.
    log: Arc<Mutex<Vec<(String, u64)>>>,
}

impl Server {
    fn start(files: HashMap<String, Vec<u8>>, faults: Faults) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (files, seen) = (Arc::new(files), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (files, seen, faults) = (files.clone(), seen.clone(), faults.clone());
                std::thread::spawn(move || serve(stream, &files, &seen, &faults));
            }
        });
        Server { base, log }
    }

    fn requests(&self) -> Vec<(String, u64)> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, files: &HashMap<String, Vec<u8>>, log: &Mutex<Vec<(String, u64)>>, faults: &Faults) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    reader.read_line(&mut request).unwrap();
    let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
    let (mut from, mut to) = (0u64, None::<u64>);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap();
            from = a.parse().unwrap();
            to = b.parse().ok();
        }
    }
    let first = {
        let mut log = log.lock().unwrap();
        log.push((path.clone(), from));
        log.len() == 1
    };
    let Some(file) = files.get(&path) else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let end = to.map_or(file.len(), |t| (t as usize + 1).min(file.len()));
    let mut body = file[from as usize..end].to_vec();
    if faults.corrupt {
        let middle = body.len() / 2;
        body[middle] ^= 1;
    }
    // What the Hugging Face hub adds: the commit, and the blob's sha256 as its ETag.
    let hub = format!("X-Repo-Commit: {}\r\nETag: \"{}\"\r\n", "c0ffee".repeat(6) + "c0ff", sha256_of(file));
    let head = match (from, to) {
        (0, None) => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{hub}Connection: close\r\n\r\n", body.len()),
        _ => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\n{hub}Connection: close\r\n\r\n",
            body.len(),
            end - 1,
            file.len()
        ),
    };
    let _ = stream.write_all(head.as_bytes());
    let send = match faults.drop_first_after {
        Some(n) if first => n.min(body.len()),
        _ => body.len(),
    };
    for chunk in body[..send].chunks(1 << 20) {
        if stream.write_all(chunk).is_err() {
            return;
        }
        if let Some(pause) = faults.slow {
            std::thread::sleep(pause);
        }
    }
}

/// The sha256 of `bytes`, lowercase hex.
fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The real Lite0 checkpoint, served under its published name.
fn lite0_files() -> HashMap<String, Vec<u8>> {
    HashMap::from([(LITE0.to_string(), std::fs::read(common::lite0_pth()).unwrap())])
}

/// Download folders under `home`: torch hub's is `home/torch/hub/checkpoints`.
fn roots(home: &Path) -> SearchRoots {
    let vars: HashMap<&str, PathBuf> = HashMap::from([("HOME", home.into()), ("TORCH_HOME", home.join("torch"))]);
    SearchRoots::from_vars(|name| vars.get(name).map(|p| OsString::from(p.as_os_str())), None)
}

/// The files in `dir` (none if it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// `dreamvid` copied into `dir` (so the repository's weights/ beside the build is not found),
/// with a home, torch cache, Hugging Face cache and weights folder of its own under `dir`, and
/// nothing of the environment's download settings.
fn dreamvid_in(dir: &Path, args: &[&str]) -> Command {
    let exe = dir.join("bin/a/b/dreamvid");
    if !exe.exists() {
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_dreamvid"), &exe).unwrap();
    }
    let mut command = Command::new(&exe);
    command
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("TORCH_HOME", dir.join("torch"))
        .env("DREAMVID_WEIGHTS_DIR", dir.join("no-weights"))
        .env("HF_HUB_CACHE", dir.join("hf"));
    for var in ["DREAMVID_OFFLINE", "DREAMVID_WEIGHTS_URL", "HF_ENDPOINT", "HF_HUB_OFFLINE", "XDG_CACHE_HOME"] {
        command.env_remove(var);
    }
    command
}

/// [`dreamvid_in`] with `mirror` as `$DREAMVID_WEIGHTS_URL`, run.
fn dreamvid_at(dir: &Path, mirror: &str, args: &[&str]) -> Output {
    dreamvid_in(dir, args).env("DREAMVID_WEIGHTS_URL", mirror).output().unwrap()
}

/// A small picture to dream on, in `dir`.
fn picture(dir: &Path) -> String {
    let path = dir.join("in.png");
    image::RgbImage::from_fn(40, 32, |x, y| image::Rgb([x as u8 * 6, y as u8 * 7, 90])).save(&path).unwrap();
    path.display().to_string()
}

#[test]
#[ignore = "serves the real EfficientNet-Lite0 checkpoint (scripts/fetch-weights); scripts/test runs it"]
fn first_use_downloads_verifies_and_the_next_run_does_not() {
    let dir = common::scratch("download-first-use");
    let server = Server::start(lite0_files(), Faults::default());
    let input = picture(&dir);
    for run in ["out1.png", "out2.png"] {
        let o = dreamvid_at(&dir, &server.base, &["image", &input, "-o", run]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        assert!(dir.join(run).is_file());
    }
    let o = dreamvid_at(&dir, &server.base, &["weights", "--fetch", "--model", "efficientnet-lite0"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(server.requests(), [(LITE0.to_string(), 0)], "one download, then the cache");
    let cache = dir.join("torch/hub/checkpoints");
    assert_eq!(listing(&cache), [LITE0], "the file and nothing else");
    assert_eq!(sha256_hex(&cache.join(LITE0)).unwrap(), PUBLISHED[0].sha256);
}

#[test]
#[ignore = "serves the real EfficientNet-Lite0 checkpoint (scripts/fetch-weights); scripts/test runs it"]
fn a_dropped_download_resumes_with_a_range_request() {
    let home = common::scratch("download-resume");
    let faults = Faults { drop_first_after: Some(5 << 20), ..Faults::default() };
    let server = Server::start(lite0_files(), faults);
    let path = fetch(ModelKind::EfficientNetLite0, &roots(&home), Some(&server.base), &mut |_| {}).unwrap();
    assert_eq!(sha256_hex(&path).unwrap(), PUBLISHED[0].sha256);
    assert_eq!(server.requests(), [(LITE0.to_string(), 0), (LITE0.to_string(), 5 << 20)]);
    assert_eq!(listing(path.parent().unwrap()), [LITE0]);
}

#[test]
#[ignore = "serves the real EfficientNet-Lite0 checkpoint (scripts/fetch-weights); scripts/test runs it"]
fn a_wrong_checksum_keeps_nothing() {
    let home = common::scratch("download-mismatch");
    let server = Server::start(lite0_files(), Faults { corrupt: true, ..Faults::default() });
    let err = fetch(ModelKind::EfficientNetLite0, &roots(&home), Some(&server.base), &mut |_| {}).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("sha256") && text.contains("not kept") && text.contains(&server.base), "{text}");
    let cache = home.join("torch/hub/checkpoints");
    assert!(listing(&cache).iter().all(|n| n.ends_with(".lock")), "{:?}", listing(&cache));
}

#[test]
fn a_missing_file_names_the_url_and_the_fix() {
    let home = common::scratch("download-404");
    let server = Server::start(HashMap::new(), Faults::default());
    let err = fetch(ModelKind::Vgg19, &roots(&home), Some(&server.base), &mut |_| {}).unwrap_err();
    let text = format!("{err:#}");
    let url = format!("{}/vgg19-dcbb9e9d.pth", server.base);
    assert!(text.contains(&url) && text.contains("404") && text.contains("fix:"), "{text}");
    assert_eq!(server.requests().len(), 1, "a 404 is not retried");
    let cache = home.join("torch/hub/checkpoints");
    assert!(listing(&cache).iter().all(|n| n.ends_with(".lock")), "{:?}", listing(&cache));
}

#[test]
fn offline_never_touches_the_network() {
    let dir = common::scratch("download-offline");
    let server = Server::start(HashMap::new(), Faults::default());
    let input = picture(&dir);
    let o = dreamvid_at(&dir, &server.base, &["image", &input, "-o", "out.png", "--offline"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stderr(&o).contains("downloads are off"), "{}", common::stderr(&o));
    let o = dreamvid_in(&dir, &["image", &input, "-o", "out.png"])
        .env("DREAMVID_WEIGHTS_URL", &server.base)
        .env("DREAMVID_OFFLINE", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stderr(&o).contains("downloads are off"), "{}", common::stderr(&o));
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(!dir.join("out.png").exists());
}

#[test]
#[ignore = "serves the real EfficientNet-Lite0 checkpoint (scripts/fetch-weights); scripts/test runs it"]
fn two_processes_share_one_download() {
    let dir = common::scratch("download-concurrent");
    let server = Server::start(lite0_files(), Faults { slow: Some(Duration::from_millis(40)), ..Faults::default() });
    let input = picture(&dir);
    dreamvid_at(&dir, &server.base, &["--version"]); // puts the binary in place
    let runs: Vec<_> = ["a.png", "b.png"]
        .map(|out| {
            let (dir, base, input) = (dir.clone(), server.base.clone(), input.clone());
            std::thread::spawn(move || dreamvid_at(&dir, &base, &["image", &input, "-o", out]))
        })
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for o in &runs {
        assert!(o.status.success(), "{}", common::stderr(o));
    }
    assert_eq!(server.requests().len(), 1, "the second process waits for the first one's download");
    let cache = dir.join("torch/hub/checkpoints");
    assert_eq!(listing(&cache), [LITE0]);
    assert_eq!(sha256_hex(&cache.join(LITE0)).unwrap(), PUBLISHED[0].sha256);
}

#[test]
fn hugging_face_files_come_through_hf_hub_from_hf_endpoint() {
    let dir = common::scratch("download-hub");
    let weights = dir.join("served.safetensors");
    dreamvid::fixture::write_tiny_vgg19(&weights, 7).unwrap();
    let served = "timm/vgg19.tv_in1k/resolve/main/model.safetensors".to_string();
    let server = Server::start(HashMap::from([(served.clone(), std::fs::read(&weights).unwrap())]), Faults::default());
    let input = picture(&dir);
    for out in ["a.png", "b.png"] {
        let args = ["image", &input, "-o", out, "--model", "vgg19", "--iterations", "1"];
        let o = dreamvid_in(&dir, &args).env("HF_ENDPOINT", &server.base).output().unwrap();
        assert!(o.status.success(), "{}", common::stderr(&o));
        assert!(common::stderr(&o).contains("sha256 verified"), "{}", common::stderr(&o));
    }
    let requests = server.requests();
    assert!(requests.iter().all(|(path, _)| *path == served), "{requests:?}");
    assert_eq!(requests.len(), 2, "the hub's metadata and the file, once: {requests:?}");
    let blobs = dir.join("hf/models--timm--vgg19.tv_in1k/blobs");
    let kept: Vec<String> = listing(&blobs).into_iter().filter(|n| !n.ends_with(".lock")).collect();
    assert_eq!(kept, [sha256_hex(&weights).unwrap()], "the blob, named by its sha256, and no partial file");
}

#[test]
fn an_unwritable_cache_is_explained() {
    let home = common::scratch("download-read-only");
    let server = Server::start(HashMap::new(), Faults::default());
    // A folder nobody may create files in: one made read-only, or (for root, whom permissions
    // do not stop) one under /proc.
    let locked = home.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    let mut perms = std::fs::metadata(&locked).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&locked, perms).unwrap();
    let torch = match std::fs::File::create(locked.join("probe")) {
        Err(_) => locked.join("torch"),
        Ok(_) => PathBuf::from("/proc/dreamvid-no-such-cache"),
    };
    let vars: HashMap<&str, PathBuf> = HashMap::from([("HOME", home.clone()), ("TORCH_HOME", torch.clone())]);
    let roots = SearchRoots::from_vars(|name| vars.get(name).map(|p| OsString::from(p.as_os_str())), None);
    let err = fetch(ModelKind::Vgg19, &roots, Some(&server.base), &mut |_| {}).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("cannot download into") && text.contains("TORCH_HOME"), "{text}");
    assert!(server.requests().is_empty(), "nothing is fetched that could not be kept");
}
