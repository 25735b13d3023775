//! kao-decode: videos, images, URLs and cameras in; frame records (Arrow IPC) out.

#![forbid(unsafe_code)]

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use kao_pipeline::cli::DecodeArgs;
use kao_record::schema::{FrameRow, Schema, frame_batch, frame_fields, stage_schema};
use kao_record::{Provenance, RecordError, RecordWriter};
use kao_video::{DecodeError, FfmpegLogLevel};

/// Exit status when some input decoded only in part (truncated or corrupt).
const EXIT_PARTIAL: u8 = 3;

/// Decode videos, still images, http(s)/rtsp URLs and v4l2 cameras into kao frame records.
///
/// Writes one record per kept frame (source, frame_index, pts, width, height, RGB24 pixels) as
/// an Arrow IPC stream on stdout, or to --output (.parquet, .arrow or .arrows). Frames stream out
/// as they decode. Exit status: 0 success, 1 an input failed (with --output, no file is
/// written), 2 usage error, 3 an input was truncated or corrupt (its decodable frames were written).
#[derive(Parser, Debug)]
#[command(
    name = "kao-decode",
    version,
    after_help = "Example: kao-decode interview.mp4 --fps 5 | kao-detect | …"
)]
struct Args {
    /// Video files, images (png/jpg/webp/avif), URLs (http, https, rtsp), devices (/dev/video0), or
    /// `-`: a video on standard input.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// Write records to this file instead of stdout (.parquet, .arrow, or .arrows for an IPC stream).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    decode: DecodeArgs,
    /// Decoder threads per input (0: automatic).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// Print a summary per input, and FFmpeg's own warnings, on stderr.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    kao_pipeline::memory::tune_malloc();
    kao_record::cli::init_logging("kao-decode");
    kao_record::cli::exit("kao-decode", run(&Args::parse()))
}

fn run(args: &Args) -> Result<u8> {
    let options = args.decode.options(args.threads)?;
    kao_record::cli::check_stdout(args.output.as_deref())?;
    kao_video::set_ffmpeg_log_level(if args.verbose {
        FfmpegLogLevel::Warning
    } else {
        FfmpegLogLevel::Quiet
    });
    let entry = Provenance::new(
        "kao-decode",
        env!("CARGO_PKG_VERSION"),
        serde_json::json!({
            "inputs": args.inputs, "every": options.every, "fps": options.fps,
            "start": options.start, "end": options.end, "max_frames": options.max_frames,
        }),
    );
    let schema =
        stage_schema(&Schema::empty(), &[], frame_fields(), &entry).map_err(anyhow::Error::msg)?;
    let mut writer = RecordWriter::create(args.output.as_deref(), &schema)?;
    let mut status = 0u8;
    for input in &args.inputs {
        let started = Instant::now();
        let mut write_error: Option<RecordError> = None;
        let result = kao_video::decode(input, &options, |frame| {
            let row = FrameRow {
                source: input.clone(),
                frame_index: frame.index,
                pts: frame.pts,
                width: frame.width,
                height: frame.height,
                pixels: frame.rgb,
            };
            let written = frame_batch(&schema, row)
                .map_err(|error| RecordError::Batch {
                    name: input.clone(),
                    error,
                })
                .and_then(|batch| writer.write(&batch));
            match written {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    write_error = Some(e);
                    ControlFlow::Break(())
                }
            }
        });
        if let Some(e) = write_error {
            return Err(e.into());
        }
        match result {
            Ok(summary) => {
                if args.verbose {
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "kao-decode: {input}: {} frames in {secs:.2} s ({:.0} frames/s)",
                        summary.emitted,
                        summary.emitted as f64 / secs.max(1e-9)
                    );
                }
            }
            Err(e @ DecodeError::Corrupt { .. }) => {
                eprintln!("kao-decode: warning: {e}");
                status = status.max(EXIT_PARTIAL);
            }
            Err(e) => {
                eprintln!("kao-decode: {e}");
                status = status.max(1);
            }
        }
    }
    if status == 1 && args.output.is_some() {
        // A failed run leaves no output file (the unfinished temporary file is removed).
        return Ok(status);
    }
    writer.finish().context("finishing the output")?;
    Ok(status)
}
