//! kao-name: a cluster of unknown faces becomes a named identity.
// The option docs are clap's --help text, where `<name>` placeholders read as they should.
#![allow(rustdoc::invalid_html_tags)]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use kao_pipeline::align::lock::OutputLock;
use kao_pipeline::cluster::name_cluster;

/// Turn a cluster of an output folder into a person: its faces get `identity = NAME` and its
/// crops move from unknown/<cluster>/ to NAME/.
///
/// Look at the clusters first (kao-report's cluster sheets, or the folders under unknown/).
/// The named crops can serve as references for the next run: `--ref NAME=DIR/NAME`.
#[derive(Parser, Debug)]
#[command(
    name = "kao-name",
    version,
    after_help = "Example: kao-name dataset/ --cluster 2 --as alice && kao-extract next.mp4 --ref alice=dataset/alice --out more/"
)]
struct Args {
    /// The output folder.
    dir: PathBuf,
    /// The cluster (`cluster_id`, the folder name under unknown/).
    #[arg(long, value_name = "C")]
    cluster: u32,
    /// The person's name.
    #[arg(long = "as", value_name = "NAME")]
    name: String,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-name");
    kao_record::cli::exit("kao-name", run(&Args::parse()).map(|()| 0))
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
    let lock = OutputLock::acquire(&args.dir, &mut |w| eprintln!("kao-name: warning: {w}"))?;
    let done = name_cluster(&lock, args.cluster, &args.name)?;
    eprintln!(
        "kao-name: cluster {} is now {}: {} faces, {} crops moved to {}",
        args.cluster,
        args.name,
        done.faces,
        done.crops_moved,
        args.dir.join(&args.name).display()
    );
    Ok(())
}
