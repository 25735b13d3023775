//! kao-detect: frame records in; one face record per detected face out.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use kao_networks::Device;
use kao_pipeline::cli::DetectArgs;
use kao_pipeline::detect::follow::Follower;
use kao_pipeline::detect::{DetectStage, Finder};
use kao_record::{RecordReader, RecordWriter};

/// Detect faces in kao frame records and write one face record per face.
///
/// Each face record keeps the frame's columns (but not its pixels) and adds the box, the
/// detector's score, dlib's 5 landmarks (from the 5-point shape predictor on the native
/// frame, whichever detector found the face) and a native-resolution `patch` of the frame
/// around the face, large enough for every aligned crop cut downstream at up to
/// --patch-padding.
#[derive(Parser, Debug)]
#[command(
    name = "kao-detect",
    version,
    after_help = "Example: kao-decode talk.mp4 --fps 5 | kao-detect --detector mmod | kao-embed"
)]
struct Args {
    /// Frame records to read (.arrows, .arrow, .parquet); stdin when absent or `-`.
    input: Option<PathBuf>,
    /// Write the face records here (.parquet, .arrow, .arrows) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    detect: DetectArgs,
    /// Where the network runs: cpu, or cuda / cuda:N in a build with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    device: Device,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-detect");
    kao_pipeline::memory::tune_malloc();
    kao_record::cli::exit("kao-detect", run(&Args::parse()).map(|()| 0))
}

fn run(args: &Args) -> Result<()> {
    kao_record::cli::check_stdout(args.output.as_deref())?;
    let finder = Finder::load(args.detect.options(args.device))?;
    let reader = RecordReader::open(args.input.as_deref())?;
    let stage = DetectStage::new(finder, &reader.schema(), reader.name())?;
    let mut writer = RecordWriter::create(args.output.as_deref(), stage.schema())?;
    let mut shots = stage.finder().shots();
    let mut follower = Follower::new();
    let mut row = 0u64;
    for batch in reader {
        let batch = batch?;
        let frame_shots = stage.observe_shots(&batch, &mut shots)?;
        for faces in stage.process(&batch, row, &frame_shots, &mut follower)? {
            writer.write(&faces)?;
        }
        row += batch.num_rows() as u64;
    }
    writer.finish()?;
    Ok(())
}
