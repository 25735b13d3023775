//! kao-cluster: the unmatched faces of an output folder grouped into people.
// The option docs are clap's --help text, where `<name>` placeholders read as they should.
#![allow(rustdoc::invalid_html_tags)]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use kao_pipeline::align::lock::OutputLock;
use kao_pipeline::cluster::cluster_folder;

/// Group the faces of a kao output folder that matched no reference into people.
///
/// Each unmatched track's faces are averaged into one embedding, and tracks nearer than the
/// threshold are grouped with Chinese whispers (across all videos of the folder). Every face
/// without an identity gets a `cluster_id` (largest cluster 0); crops written with `--all`
/// move from unknown/ to unknown/<cluster>/. kao-extract does this at the end of each run;
/// after a pipe, run it on kao-align's folder. Name a cluster with kao-name.
#[derive(Parser, Debug)]
#[command(
    name = "kao-cluster",
    version,
    after_help = "Example: kao-decode talk.mp4 | kao-detect | kao-embed | kao-track | kao-match --ref refs/ | kao-align --all --out dataset/ && kao-cluster dataset/"
)]
struct Args {
    /// The output folder (kao-align's or kao-extract's --out).
    dir: PathBuf,
    /// Link tracks whose mean embeddings are nearer than this [default: the embedder's
    /// matching threshold, 0.48 for dlib's ResNet].
    #[arg(long, value_name = "D")]
    cluster_threshold: Option<f32>,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-cluster");
    kao_record::cli::exit("kao-cluster", run(&Args::parse()).map(|()| 0))
}

fn run(args: &Args) -> Result<()> {
    if !args
        .dir
        .join(kao_pipeline::align::manifest::MANIFEST)
        .is_file()
    {
        anyhow::bail!(
            "{}: no manifest.parquet (is this a kao output folder?)",
            args.dir.display()
        );
    }
    let lock = OutputLock::acquire(&args.dir, &mut |w| eprintln!("kao-cluster: warning: {w}"))?;
    let done = cluster_folder(&lock, args.cluster_threshold)?;
    eprintln!(
        "kao-cluster: {} unmatched tracks grouped into {} people; {} crops moved",
        done.tracks, done.clusters, done.crops_moved
    );
    Ok(())
}
