//! kao-merge: the manifest parts of a sharded run joined into one manifest.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use kao_pipeline::cluster::cluster_folder;
use kao_pipeline::lock::OutputLock;
use kao_pipeline::parts::merge;

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
/// shards ended merges again. See docs/scale-out.md.
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
    if !args.dir.is_dir() {
        anyhow::bail!("{}: no such folder", args.dir.display());
    }
    let lock = OutputLock::acquire(&args.dir, &mut |w| eprintln!("kao-merge: warning: {w}"))?;
    let merged = merge(&lock)?;
    for video in &merged.missing {
        eprintln!("kao-merge: {video}: no part yet (its shard has not finished it)");
    }
    let clustered = cluster_folder(&lock, args.cluster_threshold).unwrap_or_else(|e| {
        eprintln!(
            "kao-merge: warning: faces without an identity not grouped: {}",
            kao_record::cli::one_line(&e)
        );
        Default::default()
    });
    if !args.quiet {
        eprintln!(
            "kao-merge: {} parts, {} faces, {} videos missing; {} unmatched tracks grouped into {} people",
            merged.parts,
            merged.rows,
            merged.missing.len(),
            clustered.tracks,
            clustered.clusters
        );
        eprintln!(
            "kao-merge: manifest: {}",
            args.dir.join(kao_pipeline::manifest::MANIFEST).display()
        );
    }
    Ok(if merged.missing.is_empty() {
        0
    } else {
        EXIT_PARTIAL
    })
}
