//! Writing outputs so that a failed or interrupted run never leaves a partial file behind.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Temporary path beside `path` that keeps its extension (encoders pick formats from it).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.dreamvid-partial.{}", extension(path)))
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
        assert!(!temp_path(&out).exists());
        write_atomically(&out, |tmp| Ok(std::fs::write(tmp, b"whole")?)).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"whole");
        let missing = write_atomically(&dir.join("no/such/dir.png"), |_| Ok(()));
        assert!(missing.unwrap_err().to_string().contains("does not exist"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
