//! One writer per output folder: an advisory lock on `DIR/.kao-lock` naming its holder.
//!
//! `kao-extract` and `kao-align` take the lock before they read anything of the folder and
//! hold it until they exit, so a second run into the same folder stops with one line instead
//! of silently losing the first run's rows. The lock is the kernel's (`flock`), so a run that
//! dies, even by SIGKILL, releases it; the holder's PID and host stay in the file, and the
//! next run says it took over from a run that did not finish. Taking the lock also removes the
//! temporary files (`.kao-*.part`) such a run left behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// File name of the lock inside the output folder.
pub const LOCK_FILE: &str = ".kao-lock";

/// The held lock of an output folder; released (and, held alone, its file removed) when
/// dropped.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
    dir: PathBuf,
    /// Held with other shards of one run ([`OutputLock::acquire_shared`]).
    shared: bool,
}

/// This machine's host name, for the lock file.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

impl OutputLock {
    /// Takes the lock of `dir` (created if needed), or fails with one line naming the run
    /// that holds it. `warn` hears about a lock taken over from a run that did not finish.
    pub fn acquire(dir: &Path, warn: &mut dyn FnMut(&str)) -> Result<OutputLock> {
        if dir.exists() && !dir.is_dir() {
            bail!("{}: is a file; the output must be a folder", dir.display());
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = Self::lock_file(dir, &path, false)?;
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        if !holder.trim().is_empty() {
            warn(&format!(
                "{}: taking over from a run that did not finish ({}); its unfinished videos are done again",
                dir.display(),
                holder.trim()
            ));
        }
        let me = format!("PID {} on {}\n", std::process::id(), host_name());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.as_bytes()))
            .and_then(|()| file.flush())
            .with_context(|| format!("{}: cannot write the lock", path.display()))?;
        let lock = OutputLock {
            file,
            path,
            dir: dir.to_path_buf(),
            shared: false,
        };
        lock.remove_leftovers();
        Ok(lock)
    }

    /// Takes the lock of `dir` (created if needed) together with the other shards of a
    /// sharded run: any number of shards hold it at once, while a run that writes the whole
    /// folder (kao-extract without shards, kao-align, kao-merge, kao-cluster) holds it alone,
    /// so neither starts while the other runs. Shards exclude each other per video, with the
    /// exclusive lock of the video's partition folder; this lock sweeps nothing, as other
    /// shards' temporary files are in use.
    pub fn acquire_shared(dir: &Path) -> Result<OutputLock> {
        if dir.exists() && !dir.is_dir() {
            bail!("{}: is a file; the output must be a folder", dir.display());
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let file = Self::lock_file(dir, &path, true)?;
        Ok(OutputLock {
            file,
            path,
            dir: dir.to_path_buf(),
            shared: true,
        })
    }

    /// Opens and locks `path`, or fails naming the holder. Retries when the file was replaced
    /// between opening and locking (a run that finished removes it).
    fn lock_file(dir: &Path, path: &Path, shared: bool) -> Result<File> {
        use std::os::unix::fs::MetadataExt;
        for _ in 0..8 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .with_context(|| {
                    format!("{}: cannot open the output folder's lock", path.display())
                })?;
            let locked = if shared {
                file.try_lock_shared()
            } else {
                file.try_lock()
            };
            match locked {
                Ok(()) => {
                    let same = match (file.metadata(), std::fs::metadata(path)) {
                        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                        _ => false,
                    };
                    if same {
                        return Ok(file);
                    }
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    if holder.is_empty() {
                        bail!(
                            "{}: the shards of a sharded run are writing into this folder; wait for every task to end (then kao-merge it) or choose another --out",
                            dir.display()
                        );
                    }
                    bail!(
                        "{}: another kao run is writing into this folder ({}); wait for it to finish or choose another --out",
                        dir.display(),
                        holder
                    );
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| {
                        format!("{}: cannot lock the output folder", path.display())
                    });
                }
            }
        }
        bail!(
            "{}: the output folder's lock keeps changing; is another kao run starting?",
            dir.display()
        )
    }

    /// The locked folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the temporary files (`.kao-*.part`) a killed run left in the folder and in its
    /// sub-folders, two levels deep (`person/`, `unknown/cluster/`).
    fn remove_leftovers(&self) {
        fn sweep(dir: &Path, depth: u32) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_file() && name.starts_with(".kao-") && name.ends_with(".part") {
                    let _ = std::fs::remove_file(entry.path());
                } else if kind.is_dir() && depth > 0 {
                    sweep(&entry.path(), depth - 1);
                }
            }
        }
        sweep(&self.dir, 2);
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        if self.shared {
            // Other shards may hold it still; the file stays (empty: it names nobody).
            let _ = self.file.unlock();
            return;
        }
        // Empty first: a run that cannot remove the file still leaves no holder named.
        let _ = self.file.set_len(0);
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut warnings = Vec::new();
        let first = OutputLock::acquire(dir.path(), &mut |w| warnings.push(w.to_string())).unwrap();
        let e = OutputLock::acquire(dir.path(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("another kao run is writing into this folder"),
            "{e}"
        );
        assert!(e.contains(&format!("PID {}", std::process::id())), "{e}");
        assert!(!e.contains('\n'));
        drop(first);
        assert!(!dir.path().join(LOCK_FILE).exists());
        let _again =
            OutputLock::acquire(dir.path(), &mut |w| warnings.push(w.to_string())).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_file_is_no_output_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out");
        std::fs::write(&file, b"").unwrap();
        let e = OutputLock::acquire(&file, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("is a file; the output must be a folder"), "{e}");
    }

    #[test]
    fn a_dead_runs_lock_and_leftovers_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // What a SIGKILLed run leaves: its PID in the lock file, temporary files.
        std::fs::write(dir.path().join(LOCK_FILE), "PID 4000000 on elsewhere\n").unwrap();
        std::fs::create_dir_all(dir.path().join("ann")).unwrap();
        std::fs::write(dir.path().join(".kao-abc.part"), b"").unwrap();
        std::fs::write(dir.path().join("ann/.kao-x.png.1-0.part"), b"").unwrap();
        std::fs::write(dir.path().join("ann/keep.png"), b"").unwrap();
        let mut warnings = Vec::new();
        let _lock = OutputLock::acquire(dir.path(), &mut |w| warnings.push(w.to_string())).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("PID 4000000 on elsewhere"),
            "{warnings:?}"
        );
        assert!(!dir.path().join(".kao-abc.part").exists());
        assert!(!dir.path().join("ann/.kao-x.png.1-0.part").exists());
        assert!(dir.path().join("ann/keep.png").exists());
    }
}
