//! Writing a file so that it is either whole or absent, whatever stops the process.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

/// Tells temporary files of one process apart.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` so that `path` either keeps its old content or holds all of
/// `bytes`: creates the parent folders, writes a hidden temporary file
/// (`.kao-<name>.<pid>-<n>.part`, the pattern kao-pipeline's output lock sweeps up after
/// a kill) in the same folder and renames it over `path`. On error the
/// temporary file is removed. The data is not fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_inner(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// [`write_atomic`] without the path in the error context.
fn write_atomic_inner(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = temp_path(path)?;
    let dir = temp.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating folder {}", dir.display()))?;
    let result = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut file| file.write_all(bytes))
        .with_context(|| format!("writing temporary file {}", temp.display()))
        .and_then(|()| {
            fs::rename(&temp, path)
                .with_context(|| format!("renaming {} into place", temp.display()))
        });
    if result.is_err() {
        // Best effort: the temporary file may not exist (e.g. if creating it failed).
        let _ = fs::remove_file(&temp);
    }
    result
}

/// A fresh temporary name beside `path` for writing it atomically:
/// `.kao-<name>.<pid>-<n>.part` in the same folder (the pattern kao-pipeline's output lock
/// sweeps up after a kill), for writers that need a file name rather than bytes (an FFmpeg
/// muxer). The caller renames it over `path` when complete, and removes it on failure.
pub fn temp_path(path: &Path) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .context("the path does not end in a file name")?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Keep the temporary name within common file-name limits for long final names.
    let name = name.to_string_lossy();
    let mut cut = name.len().min(200);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    Ok(dir.join(format!(
        ".kao-{}.{}-{}.part",
        &name[..cut],
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id").join("新垣結衣").join("a.png");
        write_atomic(&path, b"first").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.png")]);
    }

    #[test]
    fn write_atomic_errors_name_the_path_and_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty folder: the rename fails.
        let target = dir.path().join("taken");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"x").unwrap();
        let err = write_atomic(&target, b"data").unwrap_err();
        assert!(
            format!("{err:#}").contains(&target.display().to_string()),
            "{err:#}"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("taken")]);
        // A parent that is a file: creating the folder fails.
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = write_atomic(&file.join("a.png"), b"data").unwrap_err();
        assert!(format!("{err:#}").contains("a.png"), "{err:#}");
        // No file name at all.
        assert!(write_atomic(Path::new("/"), b"data").is_err());
    }
}
