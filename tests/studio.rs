//! The studio against the real binary: its token, its address, its uploads and folder, its
//! atlas, previews and exports (which the command line reproduces byte for byte), and, in
//! headless Chromium, the page itself.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{dreamvid, dreamvid_command, fixture_weights, repo, stderr};

/// A running `dreamvid studio`, stopped when dropped.
struct Studio {
    child: Child,
    base: String,
    token: String,
    dir: PathBuf,
}

impl Studio {
    /// Starts the studio on a free port with `args`, in `dir/work`.
    fn start(dir: &Path, args: &[&str]) -> Self {
        let work = dir.join("work");
        let mut all = vec!["studio", "--port", "0", "--dir", work.to_str().unwrap()];
        all.extend(args);
        let mut child = dreamvid_command(&all).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url =
            line.trim().strip_prefix("dreamvid studio: ").unwrap_or_else(|| panic!("no URL in `{line}`")).to_string();
        let (base, token) = url.split_once("/?token=").unwrap();
        Studio { child, base: base.into(), token: token.into(), dir: work }
    }

    /// `dreamvid studio` with the fixture VGG19 (no real weights needed).
    fn fixture(name: &str) -> (Self, PathBuf) {
        let dir = common::scratch(name);
        let weights = fixture_weights(&dir);
        (Self::start(&dir, &["--model", "vgg19", "--weights", &weights]), dir)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> ureq::Response {
        ureq::get(&self.url(path)).set("x-dreamvid-token", &self.token).call().unwrap_or_else(status_only)
    }

    fn post(&self, path: &str, body: &[u8]) -> ureq::Response {
        ureq::post(&self.url(path)).set("x-dreamvid-token", &self.token).send_bytes(body).unwrap_or_else(status_only)
    }

    fn post_json(&self, path: &str, json: serde_json::Value) -> ureq::Response {
        ureq::post(&self.url(path)).set("x-dreamvid-token", &self.token).send_json(json).unwrap_or_else(status_only)
    }

    /// Uploads a picture; returns its id.
    fn upload(&self, path: &Path) -> String {
        let r = self.post("/api/pictures", &std::fs::read(path).unwrap());
        assert_eq!(r.status(), 200);
        json(r)["id"].as_str().unwrap().to_string()
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response with an error status, as a response.
fn status_only(e: ureq::Error) -> ureq::Response {
    match e {
        ureq::Error::Status(_, r) => r,
        other => panic!("{other}"),
    }
}

fn json(r: ureq::Response) -> serde_json::Value {
    r.into_json().unwrap()
}

fn bytes(r: ureq::Response) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut out).unwrap();
    out
}

fn chelsea() -> PathBuf {
    repo().join("assets/chelsea.png")
}

#[test]
fn requests_without_the_token_are_refused() {
    let (studio, _) = Studio::fixture("studio-token");
    for path in ["/", "/api/models", "/api/settings?model=vgg19", "/api/pictures/0123456789abcdef"] {
        let r = ureq::get(&studio.url(path)).call().unwrap_or_else(status_only);
        assert_eq!(r.status(), 403, "{path} without a token");
        let r = ureq::get(&studio.url(path))
            .set("x-dreamvid-token", "0".repeat(32).as_str())
            .call()
            .unwrap_or_else(status_only);
        assert_eq!(r.status(), 403, "{path} with another token");
        let r = ureq::get(&studio.url(&format!(
            "{path}{}token={}",
            if path.contains('?') { '&' } else { '?' },
            &studio.token[..31]
        )))
        .call()
        .unwrap_or_else(status_only);
        assert_eq!(r.status(), 403, "{path} with a token one digit short");
    }
    // (A small picture: the server answers without reading the body, and closes the
    // connection, which a client still writing a large body sees as a broken pipe.)
    let mut png = Vec::new();
    image::RgbImage::new(2, 2).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let r = ureq::post(&studio.url("/api/pictures")).send_bytes(&png).unwrap_or_else(status_only);
    assert_eq!(r.status(), 403, "an upload without a token");
    assert_eq!(std::fs::read_dir(studio.dir.join("pictures")).unwrap().count(), 0, "and nothing was stored");
    // With the token: the page, in the query (as the printed URL has it) or the header.
    let page = ureq::get(&studio.url(&format!("/?token={}", studio.token))).call().unwrap();
    assert!(page.into_string().unwrap().contains("dreamvid studio"));
    assert_eq!(studio.get("/api/models").status(), 200);
    assert_eq!(studio.token.len(), 32, "128 random bits");
}

#[test]
fn the_studio_listens_on_this_machine_only_unless_told() {
    let (studio, dir) = Studio::fixture("studio-host");
    assert!(studio.base.starts_with("http://127.0.0.1:"), "{}", studio.base);
    // 127.0.0.2 is this machine too, but not the address the studio listens on.
    let port = studio.base.rsplit(':').next().unwrap();
    assert!(std::net::TcpStream::connect(format!("127.0.0.2:{port}")).is_err(), "reachable on another address");
    drop(studio);
    // --host 0.0.0.0 says what it means.
    let mut child =
        dreamvid_command(&["studio", "--port", "0", "--host", "0.0.0.0", "--dir", dir.join("w").to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.contains("warning") && line.contains("other machines") && line.contains("token"), "{line}");
}

#[test]
fn uploads_are_checked_like_every_input_and_stay_in_the_folder() {
    let (studio, dir) = Studio::fixture("studio-upload");
    // Too large: refused before it is read.
    let r = studio.post("/api/pictures", &vec![0u8; (32 << 20) + 1]);
    assert_eq!(r.status(), 413);
    // Not a picture.
    let r = studio.post("/api/pictures", b"#!/bin/sh\nrm -rf /\n");
    assert_eq!(r.status(), 400);
    assert!(r.into_string().unwrap().contains("not a PNG, JPEG, WebP, TIFF or BMP"));
    // A PNG that claims 100000 x 100000 pixels: refused by the size limit every input has.
    let mut png = std::fs::read(chelsea()).unwrap();
    png[16..24].copy_from_slice(&[0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0]);
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let r = studio.post("/api/pictures", &png);
    assert_eq!(r.status(), 400);
    assert!(r.into_string().unwrap().contains("megapixels"));
    // A good one, twice: one picture, kept under the folder.
    let id = studio.upload(&chelsea());
    assert_eq!(studio.upload(&chelsea()), id);
    assert_eq!(studio.get(&format!("/api/pictures/{id}")).status(), 200);
    // Names the page sends are identifiers, never paths.
    for bad in ["..%2F..%2Fetc%2Fpasswd", "0123456789ABCDEF", "0123456789abcde", "%2Fetc%2Fpasswd"] {
        let r = studio.get(&format!("/api/pictures/{bad}"));
        assert!(r.status() == 400 || r.status() == 404, "{bad}: {}", r.status());
        let r = studio.get(&format!("/api/atlas?picture={bad}&model=vgg19"));
        assert!(r.status() == 400 || r.status() == 404, "{bad}: {}", r.status());
    }
    let look = serde_json::json!({ "picture": id, "model": "vgg19", "settings": { "guide": "/etc/passwd" } });
    let r = studio.post_json("/api/preview", look);
    assert_eq!(r.status(), 400, "file settings are not the page's to give");
    let mut files = Vec::new();
    for entry in walk(&dir) {
        files.push(entry.strip_prefix(&dir).unwrap().display().to_string());
    }
    assert!(files.iter().all(|f| f.starts_with("work/") || f == "vgg19.safetensors"), "{files:?}");
    assert_eq!(files.iter().filter(|f| f.starts_with("work/pictures/")).count(), 2, "{files:?}");
}

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn previews_follow_the_settings_and_exports_reproduce_them_byte_for_byte() {
    let (studio, dir) = Studio::fixture("studio-preview");
    let id = studio.upload(&chelsea());
    let rows = json(studio.get("/api/settings?model=vgg19"));
    let names: Vec<&str> = rows["settings"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    let offered: Vec<&str> = dreamvid::settings::TABLE
        .iter()
        .filter(|r| r.section == dreamvid::settings::Section::Dream && r.shape != "PATH")
        .map(|r| r.name)
        .collect();
    assert_eq!(names, offered, "the controls are the settings table's dream rows");
    assert!(rows["settings"][0]["help"].as_str().unwrap().contains("Layer(s) to amplify"));
    let preview = |settings: serde_json::Value| {
        let r = studio
            .post_json("/api/preview", serde_json::json!({ "picture": id, "model": "vgg19", "settings": settings }));
        assert_eq!(r.status(), 200);
        bytes(r)
    };
    let a = preview(serde_json::json!({ "layers": "20", "iterations": "3" }));
    let b = preview(serde_json::json!({ "layers": "20", "iterations": "3", "lr": "0.05" }));
    assert_ne!(a, b, "a moved control changes the preview");
    assert_eq!(
        preview(serde_json::json!({ "layers": "20", "iterations": "3" })),
        a,
        "the same settings, the same preview"
    );
    // The exported command and preset give the preview's very bytes.
    let look = serde_json::json!({ "picture": id, "model": "vgg19", "settings": { "layers": "20", "iterations": "3", "lr": "0.05" } });
    let e = json(studio.post_json("/api/export", look));
    let weights = dir.join("vgg19.safetensors");
    let run = |command: &str, out: &Path| {
        let words = shell_words(command);
        assert_eq!(words[..2], ["dreamvid", "image"]);
        let mut args: Vec<String> = words[1..].to_vec();
        let o = args.iter().position(|w| w == "-o").unwrap();
        args[o + 1] = out.display().to_string();
        args.extend(["--weights".into(), weights.display().to_string()]);
        let o = dreamvid(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{command}: {}", stderr(&o));
        std::fs::read(out).unwrap()
    };
    assert!(
        run(e["command"].as_str().unwrap(), &dir.join("flags.png")) == b,
        "the command line differs from the preview"
    );
    std::fs::write(dir.join("dream.toml"), e["preset"].as_str().unwrap()).unwrap();
    let command = e["preset_command"].as_str().unwrap().replace("dream.toml", dir.join("dream.toml").to_str().unwrap());
    assert!(run(&command, &dir.join("preset.png")) == b, "the preset differs from the preview");
}

/// Splits a command line as a POSIX shell would (plain words and single quotes).
fn shell_words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => word.push(c),
        }
    }
    if any || !word.is_empty() {
        out.push(word);
    }
    out
}

#[test]
fn the_atlas_fills_in_and_a_newer_preview_stops_an_older_one() {
    let (studio, _) = Studio::fixture("studio-atlas");
    let id = studio.upload(&chelsea());
    let start = Instant::now();
    let progress = loop {
        let p = json(studio.get(&format!("/api/atlas?picture={id}&model=vgg19")));
        assert!(p["error"].is_null(), "{p}");
        let n = p["labels"].as_array().unwrap().len();
        if n > 0 && p["done"].as_u64() == Some(n as u64) {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the atlas is not done: {p}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let labels = progress["labels"].as_array().unwrap();
    assert_eq!(labels.len(), dreamvid::models::ModelKind::Vgg19.layer_names().len(), "one tile per layer");
    let tile = studio.get(&format!("/api/atlas/vgg19/{id}/3"));
    assert_eq!(tile.header("content-type"), Some("image/png"));
    assert!(image::load_from_memory(&bytes(tile)).unwrap().width() <= dreamvid::atlas::DEFAULT_TILE);
    // A layer's channels: the most active ones (the fixture's layer 20 has 8), `layer:channel`.
    let channels = loop {
        let p = json(studio.get(&format!("/api/atlas?picture={id}&model=vgg19&layer=features.20")));
        if p["labels"].as_array().is_some_and(|l| !l.is_empty()) && p["done"] == p["labels"].as_array().unwrap().len() {
            break p;
        }
        assert!(p["error"].is_null() && start.elapsed() < Duration::from_secs(120), "{p}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let labels = channels["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 8);
    assert!(labels.iter().all(|l| l.as_str().unwrap().starts_with("features.20:")), "{labels:?}");
    assert_eq!(studio.get(&format!("/api/atlas/vgg19/{id}/7?layer=features.20")).status(), 200);
    for bad in ["..%2F..%2Fpictures", "features.99", "%2Fetc"] {
        assert_eq!(studio.get(&format!("/api/atlas?picture={id}&model=vgg19&layer={bad}")).status(), 400, "{bad}");
        assert_eq!(studio.get(&format!("/api/atlas/vgg19/{id}/0?layer={bad}")).status(), 400, "{bad}");
    }
    // A long preview, then another: the first stops with 409.
    let slow =
        serde_json::json!({ "picture": id, "model": "vgg19", "settings": { "iterations": "400", "octaves": "6" } });
    let (base, token) = (studio.base.clone(), studio.token.clone());
    let first = std::thread::spawn(move || {
        ureq::post(&format!("{base}/api/preview"))
            .set("x-dreamvid-token", &token)
            .send_json(slow)
            .unwrap_or_else(status_only)
    });
    std::thread::sleep(Duration::from_millis(500));
    let second = studio.post_json(
        "/api/preview",
        serde_json::json!({ "picture": id, "model": "vgg19", "settings": { "iterations": "1" } }),
    );
    assert_eq!(second.status(), 200);
    let first = first.join().unwrap();
    assert_eq!(first.status(), 409, "the older preview was stopped");
}

/// Waits until render `id` is in `state`; returns its status.
fn wait_render(studio: &Studio, id: u64, state: &str, limit: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let list = json(studio.get("/api/renders"));
        let r = list.as_array().unwrap().iter().find(|r| r["id"] == id).cloned().unwrap();
        if r["state"] == state {
            return r;
        }
        assert!(r["state"] != "failed" && start.elapsed() < limit, "render {id} is not {state}: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn renders_queued_from_the_studio_report_progress_cancel_resume_and_download() {
    use dreamvid::fixture::clip::{moving_pattern, write_clip, ClipSpec};
    let (studio, dir) = Studio::fixture("studio-render");
    let clip = dir.join("clip.mp4");
    write_clip(&clip, &ClipSpec::constant(96, 64, 24, 25), moving_pattern(96, 64, 2, 1)).unwrap();
    let upload = |name: &str, body: &[u8]| {
        ureq::post(&studio.url("/api/videos"))
            .set("x-dreamvid-token", &studio.token)
            .set("x-file-name", name)
            .send_bytes(body)
            .unwrap_or_else(status_only)
    };
    // Videos are checked like every input.
    assert_eq!(upload("clip.exe", b"MZ").status(), 400);
    let r = upload("clip.mp4", b"not a video at all");
    assert_eq!(r.status(), 400, "{}", r.into_string().unwrap());
    let video = json(upload("clip.mp4", &std::fs::read(&clip).unwrap()));
    assert_eq!(video["frames"], 24);
    let id = video["id"].as_str().unwrap();
    let start = |settings: serde_json::Value| {
        let body = serde_json::json!({ "video": id, "model": "vgg19", "settings": settings });
        json(studio.post_json("/api/renders", body))["id"].as_u64().unwrap()
    };
    // One render to the end: progress, the latest frame, and the video to download.
    let quick = start(serde_json::json!({ "layers": "20", "iterations": "2", "octaves": "2" }));
    let done = wait_render(&studio, quick, "done", Duration::from_secs(120));
    assert_eq!((done["done"].as_u64(), done["total"].as_u64()), (Some(24), Some(24)), "{done}");
    assert!(done["stages"][2].as_f64().unwrap() > 0.0, "the dream stage's time: {done}");
    assert_eq!(studio.get(&format!("/api/renders/{quick}/frame")).header("content-type"), Some("image/png"));
    let download = studio.get(&format!("/api/renders/{quick}/output"));
    assert!(download.header("content-disposition").unwrap().starts_with("attachment"));
    std::fs::write(dir.join("download.mp4"), bytes(download)).unwrap();
    assert_eq!(dreamvid::compare::frames(&dir.join("download.mp4")).unwrap().len(), 24);
    // A slow one, cancelled once it has frames, then resumed to the end.
    let slow = start(serde_json::json!({ "layers": "20", "iterations": "100", "octaves": "3" }));
    let start_wait = Instant::now();
    while json(studio.get("/api/renders"))[slow as usize]["done"].as_u64() < Some(2) {
        assert!(start_wait.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(studio.post(&format!("/api/renders/{slow}/cancel"), b"").status(), 204);
    let cancelled = wait_render(&studio, slow, "cancelled", Duration::from_secs(60));
    assert_eq!(
        studio.post(&format!("/api/renders/{quick}/resume"), b"").status(),
        409,
        "a finished render does not resume"
    );
    assert_eq!(studio.post(&format!("/api/renders/{slow}/resume"), b"").status(), 204);
    let resumed = wait_render(&studio, slow, "done", Duration::from_secs(300));
    assert_eq!(resumed["done"], 24);
    println!("cancelled at {}, resumed to {}", cancelled["done"], resumed["done"]);
    // A zoom into a stored picture.
    let picture = studio.upload(&chelsea());
    let body = serde_json::json!({ "zoom": picture, "frames": 6, "model": "vgg19", "settings": { "iterations": "2", "octaves": "2" } });
    let zoom = json(studio.post_json("/api/renders", body))["id"].as_u64().unwrap();
    let done = wait_render(&studio, zoom, "done", Duration::from_secs(120));
    assert_eq!(done["done"], 6, "{done}");
    std::fs::write(dir.join("zoom.mp4"), bytes(studio.get(&format!("/api/renders/{zoom}/output")))).unwrap();
    assert_eq!(dreamvid::compare::frames(&dir.join("zoom.mp4")).unwrap().len(), 6);
    let body = serde_json::json!({ "zoom": picture, "frames": 0, "model": "vgg19", "settings": {} });
    assert_eq!(studio.post_json("/api/renders", body).status(), 400);
    // The queue is the server's: a second client sees the same.
    let list = json(ureq::get(&studio.url("/api/renders")).set("x-dreamvid-token", &studio.token).call().unwrap());
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(list.as_array().unwrap().iter().all(|r| r["state"] == "done"));
    assert_eq!(studio.get("/api/renders/7/frame").status(), 404);
}

/// chromedriver on a free port, stopped when dropped.
struct Driver(Child, u16);

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/setup installs it)");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver(child, port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `script` (a JavaScript expression) in the page until it is truthy; returns its value.
async fn until(client: &fantoccini::Client, script: &str, what: &str, limit: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = client.execute(&format!("return {script};"), vec![]).await.unwrap();
        if !(v.is_null() || v == false || v == 0 || v == "") {
            return v;
        }
        let error = client.execute("return document.getElementById('error').textContent;", vec![]).await.unwrap();
        assert!(start.elapsed() < limit, "{what}: not after {limit:?} (page error: {error})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bytes of the picture the preview shows.
async fn preview_bytes(client: &fantoccini::Client) -> Vec<u8> {
    let script = "const done = arguments[arguments.length - 1];
        fetch(document.getElementById('preview-img').src).then(r => r.arrayBuffer())
            .then(b => done(Array.from(new Uint8Array(b))));";
    let v = client.execute_async(script, vec![]).await.unwrap();
    v.as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect()
}

#[test]
#[ignore = "drives Debian's chromium (chromium-driver) with the real EfficientNet-Lite0 weights: scripts/test installs the browser and runs it"]
fn the_page_in_headless_chromium_picks_a_layer_and_channel_tunes_exports_and_renders() {
    let dir = common::scratch("studio-browser");
    let weights = common::lite0_weights();
    let studio = Studio::start(&dir, &["--model", "efficientnet-lite0", "--weights", weights.to_str().unwrap()]);
    let driver = Driver::start();
    let shots = std::env::var_os("DREAMVID_SCREENSHOTS").map(PathBuf::from);
    let downloads = dir.join("downloads");
    let clip = dir.join("clip.mp4");
    use dreamvid::fixture::clip::{moving_pattern, write_clip, ClipSpec};
    write_clip(&clip, &ClipSpec::constant(128, 96, 12, 25), moving_pattern(128, 96, 2, 1)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut caps = serde_json::Map::new();
        let args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,1150"];
        let prefs = serde_json::json!({ "download.default_directory": downloads, "download.prompt_for_download": false });
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": args, "prefs": prefs }),
        );
        let http = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = fantoccini::ClientBuilder::new(http)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.1))
            .await
            .expect("a chromium session");
        client.goto(&format!("{}/?token={}", studio.base, studio.token)).await.unwrap();
        until(&client, "document.querySelectorAll('#model option').length >= 3", "the models listed", Duration::from_secs(20)).await;
        until(&client, "document.getElementById('setting-lr')", "the controls from the settings table", Duration::from_secs(20)).await;
        // Upload a picture: the atlas fills in, and the first preview appears.
        let t = Instant::now();
        client.find(fantoccini::Locator::Id("file")).await.unwrap().send_keys(chelsea().to_str().unwrap()).await.unwrap();
        until(&client, "document.querySelectorAll('#atlas .tile').length", "atlas tiles", Duration::from_secs(30)).await;
        until(&client, "document.getElementById('preview-img')", "the first preview", Duration::from_secs(60)).await;
        let tiles = until(
            &client,
            "(n => n >= 10 && n)(document.querySelectorAll('#atlas .tile:not(.pending)').length)",
            "ten atlas tiles",
            Duration::from_secs(60),
        )
        .await;
        println!("{tiles} atlas tiles and the first preview {:.1} s after the upload", t.elapsed().as_secs_f64());
        // A click on a tile picks its layer; the preview follows.
        let before = client.execute("return document.getElementById('preview-img').src;", vec![]).await.unwrap();
        client.find(fantoccini::Locator::Css(".tile[data-layer='blocks.6']")).await.unwrap().click().await.unwrap();
        let layer = client.execute("return document.getElementById('setting-layers').value;", vec![]).await.unwrap();
        assert_eq!(layer, "blocks.6");
        let changed = format!("document.getElementById('preview-img').src !== {before}");
        until(&client, &changed, "a new preview for the picked layer", Duration::from_secs(30)).await;
        let picked = preview_bytes(&client).await;
        // Move a control: the preview changes again.
        let before = client.execute("return document.getElementById('preview-img').src;", vec![]).await.unwrap();
        client
            .execute("const i = document.getElementById('setting-lr'); i.value = '0.02'; i.dispatchEvent(new Event('input'));", vec![])
            .await
            .unwrap();
        let changed = format!("document.getElementById('preview-img').src !== {before}");
        until(&client, &changed, "a new preview for the moved control", Duration::from_secs(30)).await;
        let status = client.execute("return document.getElementById('status').textContent;", vec![]).await.unwrap();
        println!("{status}");
        let tuned = preview_bytes(&client).await;
        assert_ne!(picked, tuned, "the moved control changed the preview");
        client.find(fantoccini::Locator::Id("pin")).await.unwrap().click().await.unwrap();
        until(&client, "document.querySelectorAll('#pins .pin').length === 1", "a pinned result", Duration::from_secs(5)).await;
        // Export: the command line reproduces the preview byte for byte.
        client.find(fantoccini::Locator::Id("export")).await.unwrap().click().await.unwrap();
        let command = until(&client, "document.getElementById('command').textContent", "the exported command", Duration::from_secs(10)).await;
        let mut words = shell_words(command.as_str().unwrap());
        let o = words.iter().position(|w| w == "-o").unwrap();
        words[o + 1] = dir.join("cli.png").display().to_string();
        words.extend(["--weights".into(), weights.display().to_string()]);
        let out = dreamvid(&words[1..].iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(std::fs::read(dir.join("cli.png")).unwrap() == tuned, "the exported command does not reproduce the preview");
        until(&client, "document.querySelectorAll('#atlas .tile.pending').length === 0", "the whole atlas", Duration::from_secs(60)).await;
        if let Some(shots) = &shots {
            std::fs::create_dir_all(shots).unwrap();
            std::fs::write(shots.join("studio.png"), client.screenshot().await.unwrap()).unwrap();
        }
        // A layer's channels: its atlas of the most active ones, and a click picks one.
        let channels = "button.channels";
        let button = client.find(fantoccini::Locator::Css(&format!(".tile[data-layer='blocks.10'] {channels}"))).await.unwrap();
        button.click().await.unwrap();
        let ready = "document.querySelectorAll(\"#atlas .tile[data-layer^='blocks.10:']:not(.pending)\").length >= 4";
        until(&client, ready, "channel tiles", Duration::from_secs(60)).await;
        let before = client.execute("return document.getElementById('preview-img').src;", vec![]).await.unwrap();
        client.find(fantoccini::Locator::Css("#atlas .tile:not(.pending)")).await.unwrap().click().await.unwrap();
        let picked = client
            .execute("return [document.getElementById('setting-layers').value, document.getElementById('setting-channels').value];", vec![])
            .await
            .unwrap();
        assert_eq!(picked[0], "blocks.10", "{picked}");
        assert!(picked[1].as_str().unwrap().parse::<usize>().is_ok(), "a channel: {picked}");
        let changed = format!("document.getElementById('preview-img').src !== {before}");
        until(&client, &changed, "a new preview for the picked channel", Duration::from_secs(30)).await;
        if let Some(shots) = &shots {
            std::fs::write(shots.join("studio-channels.png"), client.screenshot().await.unwrap()).unwrap();
        }
        // Render a short video with these settings, and download it.
        client.find(fantoccini::Locator::Id("file")).await.unwrap().send_keys(clip.to_str().unwrap()).await.unwrap();
        until(&client, "!document.getElementById('render').disabled", "the render button", Duration::from_secs(10)).await;
        client.find(fantoccini::Locator::Id("render")).await.unwrap().click().await.unwrap();
        until(&client, "document.querySelector('#renders tr[data-state=done] a.download')", "a finished render", Duration::from_secs(120)).await;
        let progress = client.execute("return document.querySelector('#renders .progress div').textContent;", vec![]).await.unwrap();
        println!("render: {progress}");
        if let Some(shots) = &shots {
            client.execute("document.getElementById('pins').scrollIntoView();", vec![]).await.unwrap();
            std::fs::write(shots.join("studio-render.png"), client.screenshot().await.unwrap()).unwrap();
        }
        client.find(fantoccini::Locator::Css("#renders a.download")).await.unwrap().click().await.unwrap();
        let start = Instant::now();
        let downloaded = || {
            let files = std::fs::read_dir(&downloads).into_iter().flatten().filter_map(Result::ok);
            files.map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "mp4"))
        };
        while downloaded().is_none_or(|f| dreamvid::compare::frames(&f).map_or(true, |f| f.len() != 12)) {
            assert!(start.elapsed() < Duration::from_secs(30), "no 12-frame MP4 downloaded into {}", downloads.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And a zoom into the picture.
        client.execute("document.getElementById('zoom-frames').value = '6';", vec![]).await.unwrap();
        client.find(fantoccini::Locator::Id("zoom")).await.unwrap().click().await.unwrap();
        until(&client, "document.querySelectorAll('#renders tr[data-state=done]').length === 2", "a finished zoom", Duration::from_secs(120)).await;
        client.close().await.unwrap();
    });
}
