//! kao-report: what a kao run kept and why, as tables on stdout and a self-contained
//! `report.html` (crop thumbnails by identity and track, rejected faces with their reason, a
//! distance histogram and a timeline).
// The option docs are clap's --help text, where `<name>` placeholders read as they should.
#![allow(rustdoc::invalid_html_tags)]
#![forbid(unsafe_code)]

mod html;
mod thumbs;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use kao_analysis::{Manifest, summary};
use kao_record::write_atomic;

/// Summarise a kao output folder: tables on stdout, a self-contained HTML page.
///
/// Reads DIR/manifest.parquet (written by kao-align or kao-extract) and prints, per identity,
/// the faces, tracks, crops, median distance and time on screen; per video, the faces,
/// matches and crops; and why faces got no crop. Then writes DIR/report.html: crop thumbnails
/// grouped by identity and track, a sample of each track's rejected faces (cut from the video
/// when it can be opened) with their reason, a distance histogram and a timeline per video.
/// The page needs no network and no other file.
#[derive(Parser, Debug)]
#[command(name = "kao-report", version)]
struct Args {
    /// A kao output folder (manifest.parquet, or a sharded run's parts before kao-merge), or
    /// a manifest file.
    dir: PathBuf,
    /// Where to write the page [default: report.html beside the manifest].
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the tables only; write no page.
    #[arg(long)]
    no_html: bool,
    /// Thumbnails of at most N rejected faces per track, spread over the track (0: none).
    #[arg(long, value_name = "N", default_value_t = 6)]
    max_rejected: usize,
    /// Show at most N tracks per identity (the largest first; the page says how many are left out).
    #[arg(long, value_name = "N", default_value_t = 50)]
    max_tracks: usize,
    /// Thumbnail size in pixels (the longer side).
    #[arg(long, value_name = "PX", default_value_t = 112, value_parser = clap::value_parser!(u32).range(16..=400))]
    thumb: u32,
    /// Do not open the videos: rejected faces are listed without thumbnails.
    #[arg(long)]
    no_video: bool,
    /// Also look for the videos here: a recorded `source` that is not found as given (it is
    /// the path kao-extract was given, relative to where it ran) is tried as DIR/source and
    /// DIR/<file name>, then beside and above the manifest's folder.
    #[arg(long, value_name = "DIR", conflicts_with = "no_video")]
    videos: Option<PathBuf>,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-report");
    let args = Args::parse();
    kao_record::cli::exit("kao-report", run(&args).map(|()| 0))
}

fn run(args: &Args) -> Result<()> {
    if let Some(dir) = &args.videos
        && !dir.is_dir()
    {
        anyhow::bail!("{}: --videos: not a folder", dir.display());
    }
    let manifest = Manifest::load(&args.dir)?;
    let people = summary::by_identity(&manifest)?;
    let videos = summary::by_video(&manifest)?;
    let rejected = summary::rejections(&manifest)?;
    let mut out = std::io::stdout().lock();
    for (title, table) in [
        ("People", &people),
        ("Videos", &videos),
        ("Faces without a crop", &rejected),
    ] {
        writeln!(out, "{title}\n{}\n", html::text_table(table))?;
    }
    out.flush()?;
    if args.no_html {
        return Ok(());
    }
    let faces = manifest.faces()?;
    let page_path = args
        .out
        .clone()
        .unwrap_or_else(|| manifest.dir().join("report.html"));
    let plan = html::Plan::new(&faces, args.max_tracks, args.max_rejected);
    let open = if args.no_video {
        thumbs::Videos::Skip
    } else {
        thumbs::Videos::Open(args.videos.as_deref())
    };
    let thumbs = thumbs::make(&manifest, &faces, &plan, args.thumb, open);
    let preview = preview_link(manifest.dir(), &page_path);
    let page = html::render(&html::Page {
        manifest: &manifest,
        faces: &faces,
        people: &people,
        videos: &videos,
        rejected: &rejected,
        plan: &plan,
        thumbs: &thumbs,
        preview: preview.as_deref(),
    })?;
    write_atomic(&page_path, page.as_bytes())?;
    eprintln!(
        "kao-report: wrote {} ({} thumbnails: {} crops, {} rejected faces)",
        page_path.display(),
        thumbs.crops + thumbs.rejected,
        thumbs.crops,
        thumbs.rejected
    );
    Ok(())
}

/// The preview video's name in an output folder (`kao_preview::PREVIEW`: kao-preview's and
/// `kao-extract --preview`'s conventional file).
const PREVIEW: &str = "preview.mp4";

/// The link from the page at `page` to `DIR/preview.mp4`, when that file exists: its name
/// when the page is in the same folder, else its absolute path.
fn preview_link(dir: &std::path::Path, page: &std::path::Path) -> Option<String> {
    let video = dir.join(PREVIEW);
    if !video.is_file() {
        return None;
    }
    let page_dir = match page.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let same = match (page_dir.canonicalize(), dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Some(PREVIEW.to_string());
    }
    video
        .canonicalize()
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}
