//! Records what `dreamvid --version` says: the version, the git commit the binary was built
//! from (when built from a git checkout) and the enabled features.

use std::path::Path;
use std::process::Command;

/// `git args...` in the package folder, trimmed; `None` when git or the checkout is missing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn main() {
    let commit =
        git(&["rev-parse", "--short=12", "HEAD"]).map_or("not built from git".to_string(), |c| format!("commit {c}"));
    let features: Vec<&str> = [("CARGO_FEATURE_CUDA", "cuda"), ("CARGO_FEATURE_CUDNN", "cudnn")]
        .into_iter()
        .filter(|(var, _)| std::env::var_os(var).is_some())
        .map(|(_, name)| name)
        .collect();
    let features = if features.is_empty() { "CPU only".to_string() } else { features.join(", ") };
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets it");
    println!("cargo:rustc-env=DREAMVID_VERSION={version} ({commit}; features: {features})");
    // Run again when the checkout moves to another commit (not on every edit: the commit is
    // the one the sources were last checked out or committed at).
    for dir in [git(&["rev-parse", "--git-dir"]), git(&["rev-parse", "--git-common-dir"])].into_iter().flatten() {
        for file in ["HEAD", "refs", "packed-refs"] {
            let path = Path::new(&dir).join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
