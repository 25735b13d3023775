//! A shard of kao-extract writing into object storage (`--out s3://…`; feature
//! `object-store`).
//!
//! The shard runs as it does into a folder, in a private local staging folder: the align
//! stage writes each video's crops there and the part writer its part. When a video is done,
//! its crops are uploaded under the same keys as in a folder, then its part, last, so a video
//! is finished in the store exactly when its part exists there; then the local copies are
//! removed. A video that fails or is interrupted uploads nothing. Duplicate tasks of a shard
//! exclude each other per video with leases ([`Leases`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::align::manifest::MANIFEST;
use crate::scale_out::parts::{PART_FILE, PARTS_DIR, part_dir, video_key};
use crate::scale_out::store::{LEASE_FILE, Leases, RunStore};
use anyhow::{Context, Result, bail};

/// A sharded run in object storage, staged locally one video at a time.
pub struct RemoteRun {
    store: Arc<RunStore>,
    stage: tempfile::TempDir,
    leases: Option<Leases>,
}

/// `source`'s part, as a path in the run.
pub fn part_rel(source: &str) -> String {
    format!("{PARTS_DIR}/video={}/{PART_FILE}", video_key(source))
}

/// `source`'s lease, as a path in the run.
fn lease_rel(source: &str) -> String {
    format!("{PARTS_DIR}/video={}/{LEASE_FILE}", video_key(source))
}

impl RemoteRun {
    /// The run at `url`, checked to take writes, and a fresh staging folder.
    pub fn open(url: &str) -> Result<RemoteRun> {
        let store = Arc::new(RunStore::open(url)?);
        store.check_writable()?;
        let stage = tempfile::Builder::new()
            .prefix("kao-stage-")
            .tempdir()
            .context("creating a local staging folder (TMPDIR)")?;
        Ok(RemoteRun {
            store,
            stage,
            leases: None,
        })
    }

    /// The local staging folder, which the stages write into.
    pub fn stage(&self) -> &Path {
        self.stage.path()
    }

    /// The run's URL, as it may be shown.
    pub fn url(&self) -> &str {
        self.store.url()
    }

    /// The parts in the store; refuses a run holding a manifest without parts (a single run's
    /// or one written there by hand).
    pub fn finished_parts(&self) -> Result<HashSet<String>> {
        let parts: HashSet<String> = self
            .store
            .list(PARTS_DIR)?
            .into_iter()
            .map(|(rel, _)| rel)
            .filter(|rel| rel.ends_with(&format!("/{PART_FILE}")))
            .collect();
        if parts.is_empty() && self.store.exists(MANIFEST)? {
            bail!(
                "{}: holds a manifest and no parts; write a sharded run to another --out",
                self.url()
            );
        }
        Ok(parts)
    }

    /// Takes the leases of `videos` (this shard's unfinished ones); returns those still to do
    /// (a duplicate task may have finished some meanwhile).
    pub fn lease(
        &mut self,
        videos: Vec<String>,
        warn: &mut dyn FnMut(&str),
    ) -> Result<Vec<String>> {
        let rels: Vec<String> = videos.iter().map(|v| lease_rel(v)).collect();
        let leases = self.store.take_leases(&rels, warn)?;
        let finished = self.finished_parts()?;
        let (done, todo): (Vec<String>, Vec<String>) = videos
            .into_iter()
            .partition(|v| finished.contains(&part_rel(v)));
        for video in &done {
            leases.release(&lease_rel(video));
        }
        // The part writer writes into the partition folders.
        for video in &todo {
            let dir = part_dir(self.stage(), video);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
        }
        self.leases = Some(leases);
        Ok(todo)
    }

    /// The staged files of the video being processed: every file of the staging folder but
    /// hidden ones and the parts.
    fn staged(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut stack = vec![self.stage().to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let Ok(rel) = path.strip_prefix(self.stage()) else {
                    continue;
                };
                let rel = rel.to_string_lossy().replace('\\', "/");
                match entry.file_type() {
                    Ok(t) if t.is_dir() && rel != PARTS_DIR => stack.push(path),
                    Ok(t) if t.is_file() => out.push((path, rel)),
                    _ => {}
                }
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }

    /// Uploads `source`'s crops, then its part (staged by the part writer), and removes the
    /// local copies: the video is then finished in the store.
    pub fn finish_video(&self, source: &str) -> Result<()> {
        let lease = lease_rel(source);
        if self.leases.as_ref().is_some_and(|l| l.lost(&lease)) {
            self.clear(source);
            bail!(
                "{}: another task took over this video's lease (this task did not renew it in time); its part is left to that task",
                self.store.name(&part_rel(source))
            );
        }
        let crops = self.staged();
        self.store.upload(&crops)?;
        for (path, _) in &crops {
            let _ = std::fs::remove_file(path);
        }
        let part = part_rel(source);
        let local = self.stage().join(&part);
        self.store.upload(&[(local.clone(), part.clone())])?;
        let _ = std::fs::remove_file(&local);
        if let Some(leases) = &self.leases {
            leases.release(&lease);
        }
        Ok(())
    }

    /// Drops `source`'s staged crops (a video that failed or was interrupted) and its lease:
    /// nothing of it reaches the store.
    pub fn abandon_video(&self, source: &str) {
        self.clear(source);
        if let Some(leases) = &self.leases {
            leases.release(&lease_rel(source));
        }
    }

    fn clear(&self, source: &str) {
        for (path, _) in self.staged() {
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::remove_file(self.stage().join(part_rel(source)));
    }
}
