//! kao-extract: interview videos in; aligned crops of the chosen people and a manifest out.
//!
//! The command line and what the user sees: the runner itself is `kao_pipeline::extract`.
// The option docs are clap's --help text, where `<name>` placeholders read as they should.
#![allow(rustdoc::invalid_html_tags)]
#![forbid(unsafe_code)]

mod face01;
mod inputs;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;
use indicatif::ProgressBar;
use kao_networks::Device;
use kao_pipeline::align::AlignOptions;
use kao_pipeline::cli::{DecodeArgs, DetectArgs, EmbedArgs, EmbedderArgs, MatchArgs};
use kao_pipeline::extract::{EXIT_INTERRUPTED, ExtractOptions, Progress};
use kao_pipeline::scale_out::remote;
use kao_pipeline::scale_out::shard::Shard;
use kao_pipeline::track::TrackOptions;
use kao_video::{DecodeOptions, FfmpegLogLevel};

/// From interview videos to a folder of aligned face crops of the chosen people, in one process.
///
/// Runs decode → detect → embed → track → match → align (the stage binaries' work, with the same
/// options and the same manifest) with the stages overlapping on threads. Writes crops to
/// DIR/<identity>/<video-stem>_f<frame:06>_<face>.png (a later video of an earlier one's name adds
/// its path's hash to the stem) and every face record to
/// DIR/manifest.parquet. Ctrl-C stops cleanly and leaves a valid manifest of what was processed;
/// running again into the same DIR skips the videos already finished.
#[derive(Parser, Debug)]
#[command(
    name = "kao-extract",
    version,
    after_help = "Example: kao-extract interview.mp4 --ref refs/ --out dataset/\n\
                  Inputs may be video files, URLs, folders of videos, or .txt files listing videos."
)]
struct Args {
    /// Videos, folders of videos, or .txt files listing videos (one per line).
    #[arg(value_name = "VIDEO")]
    inputs: Vec<String>,
    /// A file listing videos, one per line (any name; after the VIDEOs).
    #[arg(long, value_name = "FILE", help_heading = "Scale-out")]
    list: Vec<PathBuf>,
    /// Process shard I of N: the videos at positions p of the list with p mod N = I (from 0).
    /// Without it, a Slurm array task or a Kubernetes Indexed Job pod takes its own shard.
    /// Sharded runs write one manifest part per video (manifest/video=KEY/part-0.parquet);
    /// kao-merge DIR joins them. See docs/scale-out.md.
    #[arg(long, value_name = "I/N", help_heading = "Scale-out")]
    shard: Option<Shard>,
    /// The number of shards when a Kubernetes Indexed Job gives the index
    /// (JOB_COMPLETION_INDEX): the Job's completions.
    #[arg(long, value_name = "N", help_heading = "Scale-out", value_parser = clap::value_parser!(u32).range(1..))]
    shard_count: Option<u32>,
    /// Output folder: crops by identity and manifest.parquet. A sharded run may write to
    /// object storage instead (s3://BUCKET/PREFIX, gs://, az://, file://) in a build with the
    /// `object-store` feature; see docs/scale-out.md.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    decode: DecodeArgs,
    #[command(flatten)]
    detect: DetectArgs,
    #[command(flatten)]
    embed: EmbedArgs,
    #[command(flatten)]
    embedder: EmbedderArgs,
    #[command(flatten)]
    track: TrackOptions,
    #[command(flatten)]
    matching: MatchArgs,
    #[command(flatten)]
    align: AlignOptions,
    /// Where the networks run: cpu, or cuda / cuda:N in a build with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// Run every network on every frame and face (--follow-interval 0 --embed-interval 0):
    /// an embedding for every face and a detector pass on every frame, about twice as slow.
    /// By default faces are followed between detector passes and a face is embedded when it
    /// says something new. See docs/stages.md, "The fast path".
    #[arg(long)]
    exact: bool,
    /// Faces without an identity are grouped into people (`cluster_id`, crops under
    /// unknown/<cluster>/ with --all) when their tracks' mean embeddings are nearer than this
    /// [default: the embedder's matching threshold]. Without --ref every face is clustered.
    #[arg(long, value_name = "D")]
    cluster_threshold: Option<f32>,
    /// After the run, draw every face on the videos (box, name or cluster, similarity, track)
    /// and write them to FILE as an H.264 video, as kao-preview does; kao-report links
    /// DIR/preview.mp4.
    #[arg(long, value_name = "FILE")]
    preview: Option<PathBuf>,
    /// No progress bar and no summary (warnings and errors still go to stderr).
    #[arg(short, long)]
    quiet: bool,
    /// Take options from FACE01's config.ini (embedder, similar_percentage, detector, frame
    /// skip, movie, preset_face_images, ...); options given here win. See README, "Coming
    /// from FACE01".
    #[arg(long, value_name = "FILE", help_heading = "FACE01")]
    face01_config: Option<PathBuf>,
    /// The config.ini section to read (FACE01's scripts pick one by name).
    #[arg(
        long,
        value_name = "SECTION",
        default_value = "DEFAULT",
        requires = "face01_config",
        help_heading = "FACE01"
    )]
    face01_section: String,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-extract");
    kao_pipeline::memory::tune_malloc();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // The first Ctrl-C (or SIGTERM, what timeout, systemd, Slurm and Kubernetes send) finishes
    // cleanly; a second one exits at once.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    });
    kao_record::cli::exit(
        "kao-extract",
        parse_args().and_then(|args| run(&args, &stop)),
    )
}

/// The command line, with FACE01's config.ini applied under it when one is given.
fn parse_args() -> Result<Args> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let quiet = args.quiet;
    face01::apply(&mut args, &matches, &mut |s| {
        if !quiet {
            eprintln!("kao-extract: {s}");
        }
    })?;
    if args.inputs.is_empty() && args.list.is_empty() {
        bail!("no video given: name VIDEO... or --list FILE (or a movie in --face01-config)");
    }
    if args.exact {
        args.detect.follow_interval = 0.0;
        args.embed.embed_interval = 0.0;
    }
    // Deciding every face on its own needs every face's embedding.
    if args.matching.track_best == 0 {
        args.embed.embed_interval = 0.0;
    }
    if args.matching.refs.is_empty() {
        // No one to find: every person is a cluster, and their crops are the dataset.
        args.align.all = true;
        if !quiet {
            eprintln!(
                "kao-extract: no --ref: grouping every face into people (crops under unknown/<cluster>/)"
            );
        }
    }
    Ok(args)
}

/// FFmpeg frame threads for decoding: half the cores, from two to four. Decoding is the
/// largest single share of the work (about 30 % of the CPU at 720p, 40 % at 1080p): on one
/// thread, busy ~90 % of a 1080p run on 2 cores while the other stages use ~0.9 cores, it
/// would hold back machines with more cores. On 2 cores two frame threads run as fast as one
/// at 720p and ~3 % faster at 1080p (medians of five runs: 4.02 → 3.89 s), at the same CPU
/// time and peak. Four bound the frames in flight where many tasks share a machine.
fn decoder_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cores < 2 {
        1
    } else {
        (cores / 2).clamp(2, 4)
    }
}

fn run(args: &Args, stop: &AtomicBool) -> Result<u8> {
    let started = Instant::now();
    let decode = args.decode.options(decoder_threads())?;
    if args.align.crop.padding > args.detect.patch_padding {
        bail!(
            "--padding {} needs patches cut with --patch-padding {} or more (now {})",
            args.align.crop.padding,
            args.align.crop.padding,
            args.detect.patch_padding
        );
    }
    kao_video::set_ffmpeg_log_level(FfmpegLogLevel::Quiet);
    let videos = inputs::expand(&args.inputs, &args.list)?;
    let shard = match args.shard {
        Some(shard) => Some((shard, "--shard")),
        None => Shard::from_scheduler(&|name| std::env::var(name).ok(), args.shard_count)?,
    };
    if shard.is_none() && args.shard_count.is_some() {
        bail!(
            "--shard-count goes with a Kubernetes Indexed Job (JOB_COMPLETION_INDEX), which is not set; give --shard I/N"
        );
    }
    let options = ExtractOptions {
        videos: videos.clone(),
        out: args.out.clone(),
        shard,
        decode,
        detect: args.detect.clone(),
        embed: args.embed.clone(),
        embedder: args.embedder.clone(),
        track: args.track,
        matching: args.matching.clone(),
        align: args.align.clone(),
        device: args.device,
        cluster_threshold: args.cluster_threshold,
    };
    let bar = Bar::new(args.quiet, args.preview.clone());
    let report = kao_pipeline::extract::run(&options, stop, &bar)?;

    let say = |s: &str| {
        if !args.quiet {
            eprintln!("kao-extract: {s}");
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let frames = report.frames;
    let mut status = report.status;
    if status == EXIT_INTERRUPTED {
        eprintln!(
            "kao-extract: interrupted; the manifest holds what was processed, run again to finish"
        );
    }
    say(&format!(
        "{} videos, {frames} frames, {} faces, {} matches, {} crops written in {secs:.1} s ({:.1} frames/s)",
        report.videos,
        report.rows,
        report.matches,
        report.crops,
        frames as f64 / secs.max(1e-9)
    ));
    if report.clustered.tracks > 0 {
        say(&format!(
            "{} unmatched tracks grouped into {} people (cluster_id; name one with kao-name)",
            report.clustered.tracks, report.clustered.clusters
        ));
    }
    if shard.is_some() {
        let out_url = args.out.to_str().filter(|o| remote::is_url(o));
        say(&format!(
            "manifest parts: {}; when every shard has ended: kao-merge {}",
            report.manifest.display(),
            out_url.map_or_else(|| args.out.display().to_string(), remote::display_url)
        ));
    } else {
        say(&format!("manifest: {}", report.manifest.display()));
    }
    // The folder stays locked until the preview is drawn.
    if let Some(preview) = &args.preview {
        status = status.max(make_preview(
            args,
            preview,
            report.state.readable(&videos),
            status,
            stop,
        ));
    }
    drop(report.lock);
    Ok(status)
}

/// kao-extract's [`Progress`]: a progress bar on stderr and `kao-extract:` lines, which
/// `--quiet` reduces to warnings and errors; and the `--preview` file's check.
struct Bar {
    bar: std::sync::OnceLock<ProgressBar>,
    quiet: bool,
    preview: Option<PathBuf>,
}

impl Bar {
    fn new(quiet: bool, preview: Option<PathBuf>) -> Bar {
        Bar {
            bar: std::sync::OnceLock::new(),
            quiet,
            preview,
        }
    }

    /// Prints `line` above the bar, if there is one.
    fn print(&self, line: &str) {
        match self.bar.get() {
            Some(bar) => bar.suspend(|| eprintln!("kao-extract: {line}")),
            None => eprintln!("kao-extract: {line}"),
        }
    }
}

impl Progress for Bar {
    fn info(&self, line: &str) {
        if !self.quiet {
            self.print(line);
        }
    }

    fn notice(&self, line: &str) {
        self.print(line);
    }

    fn warning(&self, line: &str) {
        self.print(&format!("warning: {line}"));
    }

    fn ready(&self, sharded: bool) -> Result<()> {
        // A preview that cannot be written is refused now, not after the run.
        if let Some(preview) = &self.preview {
            if sharded {
                bail!(
                    "--preview draws a whole run: after kao-merge, run kao-preview on the folder instead"
                );
            }
            kao_preview::check_output(preview)?;
        }
        Ok(())
    }

    fn start(&self, videos: &[String], decode: &DecodeOptions) {
        let _ = self.bar.set(progress_bar(self.quiet, videos, decode));
    }

    fn frames(&self, n: u64) {
        if let Some(bar) = self.bar.get() {
            bar.inc(n);
        }
    }

    fn counts(&self, faces: u64, matches: u64) {
        if let Some(bar) = self.bar.get() {
            bar.set_message(format!("{faces} faces, {matches} matches"));
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

/// Draws the run's videos (those that could be read) with their faces into `out`, holding
/// the folder's lock; returns the exit status it adds (1 when it failed).
fn make_preview(
    args: &Args,
    out: &Path,
    readable: Vec<String>,
    status: u8,
    stop: &AtomicBool,
) -> u8 {
    if status == EXIT_INTERRUPTED || stop.load(Ordering::SeqCst) {
        eprintln!("kao-extract: no preview: the run was interrupted");
        return 0;
    }
    if readable.is_empty() {
        eprintln!("kao-extract: no preview: no video could be read");
        return 1;
    }
    if !args.quiet {
        eprintln!("kao-extract: drawing the preview");
    }
    let result = kao_preview::render(
        &kao_preview::Preview {
            manifest: &args.out,
            videos: &readable,
            video_dir: None,
            out,
            progress: !args.quiet,
            stop: Some(stop),
            crf: kao_preview::DEFAULT_CRF,
        },
        &mut |_| {},
    );
    match result {
        Ok(r) => {
            if !args.quiet {
                eprintln!(
                    "kao-extract: preview: {} ({} frames in {:.1} s)",
                    r.path.display(),
                    r.frames,
                    r.seconds
                );
            }
            0
        }
        Err(e) if stop.load(Ordering::SeqCst) => {
            eprintln!("kao-extract: no preview: {}", kao_record::cli::one_line(&e));
            EXIT_INTERRUPTED
        }
        Err(e) => {
            eprintln!("kao-extract: preview: {}", kao_record::cli::one_line(&e));
            1
        }
    }
}

/// kao's progress bar ([`kao_preview::frame_bar`]) sized by the frames the videos are expected
/// to yield.
fn progress_bar(quiet: bool, videos: &[String], options: &DecodeOptions) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let mut total = 0u64;
    for video in videos {
        let Ok(probe) = kao_video::probe(video) else {
            continue;
        };
        let Some(mut n) = probe.estimated_frames() else {
            continue;
        };
        if let (Some(d), Some(s)) = (probe.duration, options.start) {
            n = (n as f64 * (1.0 - (s / d).min(1.0))) as u64;
        }
        if let (Some(r), Some(d)) = (options.fps, probe.duration) {
            n = n.min((r * d).ceil() as u64);
        }
        n /= options.every;
        if let Some(m) = options.max_frames {
            n = n.min(m);
        }
        total += n;
    }
    kao_preview::frame_bar(total)
}
