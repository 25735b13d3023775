//! kao-track: face records with embeddings in; the same records with `track_id` out.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use kao_pipeline::track::TrackOptions;
use kao_pipeline::track::TrackStage;
use kao_record::{RecordReader, RecordWriter};

/// Link the faces of consecutive frames into tracks.
///
/// A face continues a track of the same video and shot (the `shot` column kao-detect adds from
/// colour-histogram cuts) when the track's last face was at most --max-gap seconds earlier,
/// their boxes overlap by --min-iou and their embeddings are within --link-distance. The best
/// pairs link first; other faces start new tracks. Adds `track_id`; kao-match then decides
/// identities per track.
#[derive(Parser, Debug)]
#[command(
    name = "kao-track",
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
    track: TrackOptions,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-track");
    kao_record::cli::exit("kao-track", run(&Args::parse()).map(|()| 0))
}

fn run(args: &Args) -> Result<()> {
    kao_record::cli::check_stdout(args.output.as_deref())?;
    let reader = RecordReader::open(args.input.as_deref())?;
    let mut stage = TrackStage::new(args.track, &reader.schema(), reader.name())?;
    let writer = RecordWriter::create(args.output.as_deref(), stage.schema())?;
    kao_pipeline::pump(&mut stage, reader, writer)
}
