//! kao-align: matched face records in; aligned crops and `DIR/manifest.parquet` out.
// The option docs are clap's --help text, where `<name>` placeholders read as they should.
#![allow(rustdoc::invalid_html_tags)]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use kao_pipeline::HoldingStage;
use kao_pipeline::align::AlignOptions;
use kao_pipeline::align::AlignStage;
use kao_pipeline::align::lock::OutputLock;
use kao_pipeline::align::manifest::{
    META_FRAMES_PROCESSED, ManifestWriter, frames_processed, with_metadata,
};
use kao_record::RecordReader;
use kao_record::schema::provenance;

/// Write aligned crops of the matched faces and the run's manifest.
///
/// Cuts dlib's 5-point aligned crop (FACE01's aligner: --size 400, --padding 0.1) of each
/// matched face from its native-resolution patch, without detecting again, and writes it to
/// DIR/<identity>/<video-stem>_f<frame:06>_<face>.<ext> (a later video of an earlier one's name
/// adds its path's hash to the stem). Writes DIR/manifest.parquet: every face
/// record (matched or not) without its patch, with `crop_path` where a crop was written. Rows of
/// other videos from earlier runs into DIR with the same options are kept; rows of the videos
/// in this input replace theirs. Every file is written under a temporary name and renamed.
#[derive(Parser, Debug)]
#[command(
    name = "kao-align",
    version,
    after_help = "Example: kao-decode talk.mp4 | kao-detect | kao-embed | kao-track | kao-match --ref refs/ | kao-align --out dataset/"
)]
struct Args {
    /// Face records with `identity` (.arrows, .arrow, .parquet); stdin when absent or `-`.
    input: Option<PathBuf>,
    /// Output folder for the crops and manifest.parquet.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    align: AlignOptions,
    /// Print a summary (faces, crops, manifest path) on stderr.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-align");
    kao_record::cli::exit("kao-align", run(&Args::parse()).map(|()| 0))
}

fn run(args: &Args) -> Result<()> {
    let lock = OutputLock::acquire(&args.out, &mut |w| eprintln!("kao-align: warning: {w}"))?;
    let reader = RecordReader::open(args.input.as_deref())?;
    let mut stage = AlignStage::new(
        args.align.clone(),
        &reader.schema(),
        reader.name(),
        &args.out,
    )?;
    let mut schema = stage.schema().clone();
    let history = provenance(&schema)?;
    if let Some(spec) = frames_processed(&history) {
        schema = with_metadata(&schema, META_FRAMES_PROCESSED, &spec);
    }
    let mut manifest = ManifestWriter::create(lock, &schema)?;
    stage.claim_sources(manifest.previous_sources());
    let mut faces = 0u64;
    for batch in reader {
        let batch = batch?;
        faces += batch.num_rows() as u64;
        for rows in stage.push(batch)? {
            manifest.write(&rows)?;
        }
    }
    for rows in stage.finish()? {
        manifest.write(&rows)?;
    }
    let crops = stage.crops_written();
    let (path, _lock) = manifest.finish()?;
    if args.verbose {
        eprintln!(
            "kao-align: {faces} faces, {crops} crops written; manifest {}",
            path.display()
        );
    }
    Ok(())
}
