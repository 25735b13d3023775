//! kao-merge: the manifest parts of a sharded run joined into one manifest.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use kao_pipeline::align::lock::OutputLock;
use kao_pipeline::cluster::{Clustered, cluster_folder};
use kao_pipeline::scale_out::parts::{Merged, merge};

/// Exit status when videos of the run's list have no part yet, as a partial decode.
const EXIT_PARTIAL: u8 = 3;

/// Join the manifest parts of a sharded kao-extract run into DIR/manifest.parquet.
///
/// Checks that every part (manifest/video=KEY/part-0.parquet) has the same columns and
/// options, holds one video and repeats no face; orders the videos as the run's list does and
/// numbers their tracks on, as one machine would have; then groups the faces without an
/// identity into people across all videos (cluster_id, crops under unknown/CLUSTER/), as
/// kao-extract does at the end of a run without shards. Videos of the list without a part
/// (not done yet, or failed) are named on stderr and the exit status is 3; the manifest then
/// holds the others. Refuses while a shard still writes into DIR. Running it again after more
/// shards ended merges again. In a build with the `object-store` feature, DIR may be a run in
/// object storage (s3://BUCKET/PREFIX, gs://, az://, file://). See docs/scale-out.md.
#[derive(Parser, Debug)]
#[command(
    name = "kao-merge",
    version,
    after_help = "Example: kao-extract --list videos.txt --shard 0/4 --ref refs/ --out run/ (one per task), then: kao-merge run/"
)]
struct Args {
    /// The run folder the shards wrote into (their --out).
    dir: PathBuf,
    /// Link unknown people's tracks nearer than this [default: the embedder's matching
    /// threshold, as kao-extract].
    #[arg(long, value_name = "D")]
    cluster_threshold: Option<f32>,
    /// No summary (warnings and errors still go to stderr).
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-merge");
    kao_record::cli::exit("kao-merge", run(&Args::parse()))
}

fn run(args: &Args) -> Result<u8> {
    if let Some(url) = args
        .dir
        .to_str()
        .filter(|d| kao_pipeline::scale_out::remote::is_url(d))
    {
        #[cfg(feature = "object-store")]
        return remote::run(url, args);
        #[cfg(not(feature = "object-store"))]
        return Err(kao_pipeline::scale_out::remote::needs_feature(
            url,
            "kao-merge",
        ));
    }
    if !args.dir.is_dir() {
        anyhow::bail!("{}: no such folder", args.dir.display());
    }
    let lock = OutputLock::acquire(&args.dir, &mut |w| eprintln!("kao-merge: warning: {w}"))?;
    let merged = merge(&lock)?;
    let clustered = cluster(&merged, cluster_folder(&lock, args.cluster_threshold));
    summary(
        args,
        &merged,
        &clustered,
        &args
            .dir
            .join(kao_pipeline::align::manifest::MANIFEST)
            .display()
            .to_string(),
    );
    Ok(if merged.missing.is_empty() {
        0
    } else {
        EXIT_PARTIAL
    })
}

/// Names the missing videos; a failed clustering is a warning (the manifest is complete).
fn cluster(merged: &Merged, clustered: Result<Clustered>) -> Clustered {
    for video in &merged.missing {
        eprintln!("kao-merge: {video}: no part yet (its shard has not finished it)");
    }
    clustered.unwrap_or_else(|e| {
        eprintln!(
            "kao-merge: warning: faces without an identity not grouped: {}",
            kao_record::cli::one_line(&e)
        );
        Default::default()
    })
}

fn summary(args: &Args, merged: &Merged, clustered: &Clustered, manifest: &str) {
    if !args.quiet {
        eprintln!(
            "kao-merge: {} parts, {} faces, {} videos missing; {} unmatched tracks grouped into {} people",
            merged.parts,
            merged.rows,
            merged.missing.len(),
            clustered.tracks,
            clustered.clusters
        );
        eprintln!("kao-merge: manifest: {manifest}");
    }
}

/// kao-merge on a run in object storage.
#[cfg(feature = "object-store")]
mod remote {
    use std::cell::RefCell;
    use std::collections::HashSet;

    use anyhow::{Context, Result, bail};
    use kao_pipeline::align::lock::OutputLock;
    use kao_pipeline::align::manifest::MANIFEST;
    use kao_pipeline::cluster::cluster_with;
    use kao_pipeline::scale_out::parts::{PART_FILE, PARTS_DIR, RunFiles, merge_with};
    use kao_pipeline::scale_out::store::{LEASE_FILE, RunStore, lease_ttl};

    use super::{Args, EXIT_PARTIAL, cluster, summary};

    /// The crops of a run in object storage: `unknown/` listed once, moves as copy + delete.
    struct StoreFiles<'a> {
        store: &'a RunStore,
        unknown: RefCell<HashSet<String>>,
    }

    impl RunFiles for StoreFiles<'_> {
        fn exists(&self, rel: &str) -> Result<bool> {
            if rel.starts_with("unknown/") {
                return Ok(self.unknown.borrow().contains(rel));
            }
            self.store.exists(rel)
        }

        fn list(&self, rel: &str) -> Result<Vec<String>> {
            if rel == "unknown" {
                return Ok(self.unknown.borrow().iter().cloned().collect());
            }
            Ok(self.store.list(rel)?.into_iter().map(|(r, _)| r).collect())
        }

        fn rename(&self, from: &str, to: &str) -> Result<()> {
            self.store.rename(from, to)?;
            let mut unknown = self.unknown.borrow_mut();
            unknown.remove(from);
            unknown.insert(to.to_string());
            Ok(())
        }

        fn remove(&self, rel: &str) {
            if self.store.delete(rel).is_ok() {
                self.unknown.borrow_mut().remove(rel);
            }
        }
    }

    /// Downloads the parts into a local folder, merges and clusters there (moving crops in
    /// the store), then puts `manifest.parquet` into the store in one piece.
    pub fn run(url: &str, args: &Args) -> Result<u8> {
        let store = RunStore::open(url)?;
        let objects = store.list(PARTS_DIR)?;
        // Shards still running hold leases; a lease untouched for twice its time to live
        // belongs to a task that was killed.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let live = 2 * lease_ttl().as_secs() as i64;
        let running: Vec<&String> = objects
            .iter()
            .filter(|(rel, changed)| {
                rel.ends_with(&format!("/{LEASE_FILE}")) && now - changed < live
            })
            .map(|(rel, _)| rel)
            .collect();
        if let Some(first) = running.first() {
            bail!(
                "{}: the shards of a sharded run are writing into this run ({} video leases held, e.g. {}); wait for every task to end",
                store.url(),
                running.len(),
                store.name(first)
            );
        }
        let parts: Vec<&String> = objects
            .iter()
            .map(|(rel, _)| rel)
            .filter(|rel| rel.ends_with(&format!("/{PART_FILE}")))
            .collect();
        if parts.is_empty() {
            bail!(
                "{}: no manifest parts ({PARTS_DIR}/video=*/{PART_FILE}); kao-merge reads the run of a sharded kao-extract",
                store.url()
            );
        }
        let local = tempfile::Builder::new()
            .prefix("kao-merge-")
            .tempdir()
            .context("creating a local folder for the parts (TMPDIR)")?;
        let downloads: Vec<(String, std::path::PathBuf)> = parts
            .iter()
            .map(|rel| ((*rel).clone(), local.path().join(rel)))
            .collect();
        store.download(&downloads)?;
        let unknown: HashSet<String> = store
            .list("unknown")?
            .into_iter()
            .map(|(rel, _)| rel)
            .collect();
        let files = StoreFiles {
            store: &store,
            unknown: RefCell::new(unknown),
        };
        let lock = OutputLock::acquire(local.path(), &mut |_| {})?;
        let merged = merge_with(&lock, &files, store.url())?;
        let clustered = cluster(&merged, cluster_with(&lock, args.cluster_threshold, &files));
        store.upload(&[(local.path().join(MANIFEST), MANIFEST.to_string())])?;
        summary(args, &merged, &clustered, &store.name(MANIFEST));
        Ok(if merged.missing.is_empty() {
            0
        } else {
            EXIT_PARTIAL
        })
    }
}
