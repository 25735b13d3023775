//! kao-preview: a kao run's faces drawn on its videos, as an H.264 video to watch.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use clap::Parser;
use kao_preview::{PREVIEW, Preview, render};

/// Exit status after Ctrl-C.
const EXIT_INTERRUPTED: u8 = 130;

/// Draw a run's faces on its videos and write them as an H.264 video.
///
/// Decodes each video of the run again and draws every face of DIR/manifest.parquet on its
/// frames: a box (solid green for a matched face, dashed orange for one without an
/// identity) and a label with the name (or unknown/<cluster>), FACE01's similarity
/// percentage (or the distance, d=…) and the track (#N). A face found on a processed frame
/// stays until the next processed frame (--every, --fps). The video has the source's size,
/// frame rate and timestamps (libx264, YUV 4:2:0, MP4 with the index first); several videos
/// follow one another, scaled to the first one's size. Written under a temporary name and
/// renamed when complete.
#[derive(Parser, Debug)]
#[command(
    name = "kao-preview",
    version,
    after_help = "Example: kao-extract talk.mp4 --ref refs/ --out dataset/ && kao-preview dataset/\n\
                  kao-report links DIR/preview.mp4 from its page."
)]
struct Args {
    /// A kao output folder (holding manifest.parquet), or a manifest file.
    dir: PathBuf,
    /// The videos to draw, in this order (as recorded in the manifest, or by file name);
    /// default: every video of the manifest.
    #[arg(value_name = "VIDEO")]
    inputs: Vec<String>,
    /// The video to write (.mp4, .mov, .mkv) [default: preview.mp4 beside the manifest].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also look for the videos here: a recorded `source` that is not found as given is tried
    /// as DIR/source and DIR/<file name>, then beside and above the manifest's folder.
    #[arg(long, value_name = "DIR")]
    videos: Option<PathBuf>,
    /// libx264's constant rate factor: lower is better and larger.
    #[arg(long, value_name = "N", default_value_t = kao_preview::DEFAULT_CRF, value_parser = clap::value_parser!(u8).range(0..=51))]
    crf: u8,
    /// No progress bar and no summary (warnings and errors still go to stderr).
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-preview");
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Ctrl-C stops at the next frame and removes the unfinished file; a second one exits.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    });
    let result = run(&args, &stop);
    let result = match result {
        Err(_) if stop.load(Ordering::SeqCst) => {
            eprintln!("kao-preview: interrupted; no preview written");
            Ok(EXIT_INTERRUPTED)
        }
        other => other,
    };
    kao_record::cli::exit("kao-preview", result)
}

fn run(args: &Args, stop: &AtomicBool) -> Result<u8> {
    if let Some(dir) = &args.videos
        && !dir.is_dir()
    {
        anyhow::bail!("{}: --videos: not a folder", dir.display());
    }
    let out = match &args.output {
        Some(out) => out.clone(),
        None => {
            let manifest = kao_preview::faces::manifest_path(&args.dir)?;
            manifest
                .parent()
                .map_or_else(|| PathBuf::from(PREVIEW), |d| d.join(PREVIEW))
        }
    };
    let quiet = args.quiet;
    let rendered = render(
        &Preview {
            manifest: &args.dir,
            videos: &args.inputs,
            video_dir: args.videos.as_deref(),
            out: &out,
            progress: !quiet,
            stop: Some(stop),
            crf: args.crf,
        },
        &mut |note| {
            if !quiet {
                eprintln!("kao-preview: {note}");
            }
        },
    )?;
    if !quiet {
        eprintln!(
            "kao-preview: wrote {} ({} video(s), {} frames, {} boxes) in {:.1} s",
            rendered.path.display(),
            rendered.videos,
            rendered.frames,
            rendered.boxes,
            rendered.seconds
        );
    }
    Ok(0)
}
