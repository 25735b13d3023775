//! kao-match: face records with embeddings in; the same records with `identity` and `distance` out.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use kao_networks::Device;
use kao_pipeline::cli::{EmbedderArgs, MatchArgs};
use kao_pipeline::matching::identify::MatchStage;
use kao_record::{RecordReader, RecordWriter};

/// Name the faces in kao face records by their nearest reference photo.
///
/// Enrolls the reference photos (detect, landmarks, embed with jitters; cached by photo content
/// and model), then adds `identity` (the person whose nearest reference is within --threshold,
/// else null) and `distance` (to the nearest reference) to each face record. In a frame, a
/// person matches at most one face, the nearest.
#[derive(Parser, Debug)]
#[command(
    name = "kao-match",
    version,
    after_help = "Example: kao-decode talk.mp4 | kao-detect | kao-embed | kao-track | kao-match --ref refs/ | kao-align --out dataset/"
)]
struct Args {
    /// Face records with embeddings (.arrows, .arrow, .parquet); stdin when absent or `-`.
    input: Option<PathBuf>,
    /// Write the records here (.parquet, .arrow, .arrows) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    matching: MatchArgs,
    /// The embedder that enrolls the references: the one kao-embed used for the faces.
    #[command(flatten)]
    embedder: EmbedderArgs,
    /// Where reference enrollment runs: cpu, or cuda / cuda:N in a build with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    device: Device,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-match");
    kao_pipeline::memory::tune_malloc();
    kao_record::cli::exit("kao-match", run(&Args::parse()).map(|()| 0))
}

fn run(args: &Args) -> Result<()> {
    kao_record::cli::check_stdout(args.output.as_deref())?;
    let reader = RecordReader::open(args.input.as_deref())?;
    let (matcher, provenance) =
        args.matching
            .matcher(&args.embedder.spec()?, args.device, &mut |w| {
                eprintln!("kao-match: warning: {w}")
            })?;
    let mut stage = MatchStage::new(matcher, &provenance, &reader.schema(), reader.name())?;
    let writer = RecordWriter::create(args.output.as_deref(), stage.schema())?;
    kao_pipeline::pump(&mut stage, reader, writer)
}
