//! Writing outputs so that a failed or interrupted run never leaves a partial file behind.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// What marks a [`temp_path`] name, between the output's name and the random part.
const PARTIAL: &str = ".dreamvid-partial-";

/// A temporary path beside `path` that keeps its extension (encoders pick formats from it),
/// new at every call: processes writing the same output at once (a render-farm task retried
/// while its first attempt still runs, on any machine sharing the folder) never write into
/// each other's file, and the last rename wins with a whole file.
pub fn temp_path(path: &Path) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // Randomly keyed per process (the standard library seeds it from the system), so that
    // processes on different machines with the same pid pick different names too.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}{PARTIAL}{:016x}.{}", hasher.finish(), extension(path)))
}

/// Whether a file name is one [`temp_path`] makes.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(PARTIAL)
}

fn extension(path: &Path) -> String {
    path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Runs `write` on a temporary file beside `path` and renames it to `path` only if `write`
/// succeeds; on failure the temporary file is removed and `path` is left untouched.
pub fn write_atomically<T>(path: &Path, write: impl FnOnce(&Path) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!("cannot write {}: folder {} does not exist (create it first)", path.display(), dir.display());
    }
    if path.is_dir() {
        bail!("cannot write {}: it is a folder; give a file name", path.display());
    }
    let tmp = temp_path(path);
    match write(&tmp) {
        Ok(v) => {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot move finished output into place at {}", path.display()))?;
            Ok(v)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Whether `path` names a folder to write frames into (it ends in `/` or is a folder).
pub fn is_folder(path: &Path) -> bool {
    path.to_string_lossy().ends_with('/') || path.is_dir()
}

/// Runs `write` on a temporary folder beside `dir` and renames it to `dir` only if `write`
/// succeeds; on failure the temporary folder is removed. `dir` must be new or empty.
pub fn write_folder_atomically<T>(dir: &Path, write: impl FnOnce(&Path) -> anyhow::Result<T>) -> anyhow::Result<T> {
    if dir.is_dir() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("folder {} is not empty; choose an empty or new folder for PNG frames", dir.display());
    }
    let dir = dir.components().as_path().to_path_buf();
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("cannot write {}: folder {} does not exist (create it first)", dir.display(), parent.display());
    }
    let name = dir.file_name().context("a frame folder needs a name")?.to_string_lossy().into_owned();
    let tmp = parent.join(format!(".{name}.dreamvid-partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    match write(&tmp) {
        Ok(v) => {
            if dir.is_dir() {
                std::fs::remove_dir(&dir)?;
            }
            std::fs::rename(&tmp, &dir)
                .with_context(|| format!("cannot move frames into place at {}", dir.display()))?;
            Ok(v)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Refuses to write `output` when it is `input`: the same path once links are resolved, or
/// another name (a hard link) of the same file. The input would be replaced by its dream.
pub fn check_not_input(input: &Path, output: &Path) -> anyhow::Result<()> {
    let same = match (std::fs::metadata(input), std::fs::metadata(output)) {
        (Ok(a), Ok(b)) => same_file(&a, &b),
        _ => {
            let resolved = |p: &Path| -> Option<PathBuf> {
                let dir = match p.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                Some(dir.canonicalize().ok()?.join(p.file_name()?))
            };
            resolved(input).is_some_and(|i| Some(i) == resolved(output))
        }
    };
    if same {
        bail!(
            "{} is the input {}: writing there would replace it with its dream; choose another output name",
            output.display(),
            input.display()
        );
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("dreamvid-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("x.png");
        let r: anyhow::Result<()> = write_atomically(&out, |tmp| {
            std::fs::write(tmp, b"half")?;
            bail!("encoder broke")
        });
        assert!(r.is_err());
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the temporary file is removed");
        write_atomically(&out, |tmp| Ok(std::fs::write(tmp, b"whole")?)).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "the output alone");
        let missing = write_atomically(&dir.join("no/such/dir.png"), |_| Ok(()));
        assert!(missing.unwrap_err().to_string().contains("does not exist"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_paths_differ_at_every_call_and_keep_the_extension() {
        let (a, b) = (temp_path(Path::new("dir/out.mkv")), temp_path(Path::new("dir/out.mkv")));
        assert_ne!(a, b);
        for t in [a, b] {
            assert_eq!(t.parent(), Some(Path::new("dir")));
            assert_eq!(t.extension().unwrap(), "mkv");
            assert!(is_temp_name(t.file_name().unwrap().to_str().unwrap()));
        }
    }

    #[test]
    fn the_input_is_never_the_output() {
        let dir = std::env::temp_dir().join(format!("dreamvid-same-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let input = dir.join("in.png");
        std::fs::write(&input, b"picture").unwrap();
        assert!(check_not_input(&input, &input).is_err());
        assert!(check_not_input(&input, &dir.join("sub/../in.png")).is_err(), "same path, spelt otherwise");
        std::fs::hard_link(&input, dir.join("link.png")).unwrap();
        assert!(check_not_input(&input, &dir.join("link.png")).is_err(), "a hard link is the same file");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&input, dir.join("sym.png")).unwrap();
        #[cfg(unix)]
        assert!(check_not_input(&input, &dir.join("sym.png")).is_err(), "a symbolic link leads to it");
        assert!(check_not_input(&input, &dir.join("out.png")).is_ok());
        std::fs::write(dir.join("other.png"), b"picture").unwrap();
        assert!(check_not_input(&input, &dir.join("other.png")).is_ok(), "an equal file is another file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
