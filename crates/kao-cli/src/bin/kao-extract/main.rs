//! kao-extract: interview videos in; aligned crops of the chosen people and a manifest out.
// The option docs are clap's --help text, where `<name>` placeholders read as they should.
#![allow(rustdoc::invalid_html_tags)]
#![forbid(unsafe_code)]

mod face01;
mod inputs;
#[cfg(feature = "object-store")]
mod upload;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow_array::RecordBatch;
use clap::Parser;
use crossbeam_channel::{Receiver, Sender, bounded};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kao_image::RgbView;
use kao_networks::Device;
use kao_pipeline::HoldingStage;
use kao_pipeline::align::AlignStage;
use kao_pipeline::align::lock::OutputLock;
use kao_pipeline::align::manifest::{
    MANIFEST, META_FRAMES_PROCESSED, ManifestWriter, frames_processed, with_metadata,
};
use kao_pipeline::cli::{AlignArgs, DetectArgs, EmbedArgs, EmbedderArgs, MatchArgs, TrackArgs};
use kao_pipeline::cluster::cluster_folder;
use kao_pipeline::detect::follow::Follower;
use kao_pipeline::detect::shot::ShotDetector;
use kao_pipeline::detect::{DetectStage, Finder};
use kao_pipeline::embed::{EmbedStage, FaceEmbedder};
use kao_pipeline::matching::identify::MatchStage;
use kao_pipeline::scale_out::parts::{PARTS_DIR, PartWriter, SHARD_OPTION, part_dir, part_path};
use kao_pipeline::scale_out::shard::Shard;
use kao_pipeline::track::TrackStage;
use kao_record::Provenance;
use kao_record::schema::{
    FrameRow, Schema, SchemaRef, frame_batch, frame_fields, provenance, stage_schema,
};
use kao_record::write_atomic;
use kao_video::{DecodeError, DecodeOptions, FfmpegLogLevel};
use serde::{Deserialize, Serialize};

/// Exit status when a video decoded only in part (truncated or corrupt), as kao-decode.
const EXIT_PARTIAL: u8 = 3;
/// Exit status after Ctrl-C.
const EXIT_INTERRUPTED: u8 = 130;
/// Frames detected at once with `--exact` (the detector's network runs mostly on one core).
/// Following faces needs the frames in order, on one worker.
const EXACT_DETECT_WORKERS: usize = 2;
/// What kao-extract remembers in the output folder between runs.
const STATE_FILE: &str = ".kao-extract.json";

/// From interview videos to a folder of aligned face crops of the chosen people, in one process.
///
/// Runs decode → detect → embed → track → match → align (the stage binaries' work, with the same
/// options and the same manifest) with the stages overlapping on threads. Writes crops to
/// DIR/<identity>/<video-stem>_f<frame:06>_<face>.png and every face record to
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
    /// Keep every Nth frame (FACE01's frame_skip); indices still count every frame.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    every: u64,
    /// Keep at most R frames per second of video time.
    #[arg(long, value_name = "R")]
    fps: Option<f64>,
    /// Start at this time in seconds.
    #[arg(long, value_name = "S")]
    start: Option<f64>,
    /// Stop before this time in seconds.
    #[arg(long, value_name = "S")]
    end: Option<f64>,
    /// Keep at most N frames from each video.
    #[arg(long, value_name = "N")]
    max_frames: Option<u64>,
    #[command(flatten)]
    detect: DetectArgs,
    #[command(flatten)]
    embed: EmbedArgs,
    #[command(flatten)]
    embedder: EmbedderArgs,
    #[command(flatten)]
    track: TrackArgs,
    #[command(flatten)]
    matching: MatchArgs,
    #[command(flatten)]
    align: AlignArgs,
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

/// How one video ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    /// Decoded to the end.
    Complete,
    /// Truncated or corrupt: every decodable frame was processed.
    Truncated,
    /// Could not be read at all.
    Failed,
    /// Stopped by Ctrl-C.
    Interrupted,
}

/// One video's record in the output folder's state file.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct VideoState {
    outcome: Outcome,
    frames: u64,
    faces: u64,
}

/// The state file: which videos an earlier run finished.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    videos: BTreeMap<String, VideoState>,
}

impl State {
    fn load(dir: &Path) -> State {
        std::fs::read(dir.join(STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn finished(&self, video: &str) -> bool {
        self.videos
            .get(video)
            .is_some_and(|v| matches!(v.outcome, Outcome::Complete | Outcome::Truncated))
    }
}

/// What flows between the stage threads.
enum Msg {
    /// A frame record and its shot, for detection.
    Frame(RecordBatch, u32),
    /// Face records for the next stage.
    Records(RecordBatch),
    /// A video ended after this many frames.
    End {
        video: String,
        frames: u64,
        outcome: Outcome,
        message: Option<String>,
    },
}

/// Counters shown in the progress bar and the summary.
#[derive(Default)]
struct Stats {
    frames: AtomicU64,
    faces: AtomicU64,
    matches: AtomicU64,
}

fn run(args: &Args, stop: &AtomicBool) -> Result<u8> {
    let started = Instant::now();
    if let (Some(s), Some(e)) = (args.start, args.end)
        && e <= s
    {
        bail!("--end ({e}) must be after --start ({s})");
    }
    if args.fps.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--fps must be a positive number");
    }
    if args.align.padding > args.detect.patch_padding {
        bail!(
            "--padding {} needs patches cut with --patch-padding {} or more (now {})",
            args.align.padding,
            args.align.padding,
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

    // The stages, with the schemas the piped chain would have.
    let decode_entry = Provenance::new(
        "kao-decode",
        env!("CARGO_PKG_VERSION"),
        serde_json::json!({
            "inputs": videos, "every": args.every, "fps": args.fps, "start": args.start,
            "end": args.end, "max_frames": args.max_frames,
        }),
    );
    // A sharded run records its shard; kao-merge leaves it out again.
    let decode_entry = match shard {
        Some((shard, _)) => {
            let mut entry = decode_entry;
            if let Some(o) = entry.options.as_object_mut() {
                o.insert(SHARD_OPTION.into(), shard.to_string().into());
            }
            entry
        }
        None => decode_entry,
    };
    let frame_schema = stage_schema(&Schema::empty(), &[], frame_fields(), &decode_entry)
        .map_err(anyhow::Error::msg)?;
    let say = |s: &str| {
        if !args.quiet {
            eprintln!("kao-extract: {s}");
        }
    };
    // Object storage: a sharded run, staged in a local folder one video at a time.
    let out_url = args
        .out
        .to_str()
        .filter(|o| kao_pipeline::scale_out::remote::is_url(o));
    #[cfg(not(feature = "object-store"))]
    if let Some(url) = out_url {
        return Err(kao_pipeline::scale_out::remote::needs_feature(
            url,
            "kao-extract",
        ));
    }
    #[cfg(feature = "object-store")]
    let mut remote = match out_url {
        None => None,
        Some(url) if shard.is_none() => bail!(
            "{}: a run into object storage is a sharded run: give --shard 0/1 for one task (or run in a Slurm array or Kubernetes Indexed Job), then kao-merge {}",
            kao_pipeline::scale_out::remote::display_url(url),
            kao_pipeline::scale_out::remote::display_url(url)
        ),
        Some(url) => Some(upload::RemoteRun::open(url)?),
    };
    #[cfg(feature = "object-store")]
    let out_dir: PathBuf = match &remote {
        Some(r) => r.stage().to_path_buf(),
        None => args.out.clone(),
    };
    #[cfg(not(feature = "object-store"))]
    let out_dir: PathBuf = args.out.clone();
    // The whole folder for a single run; for a shard, the folder shared with the other shards
    // and each of its own unfinished videos' partition folders (in object storage: a lease
    // per unfinished video).
    let (lock, shard_todo) = match shard {
        None => {
            if args.out.join(PARTS_DIR).is_dir() {
                bail!(
                    "{}: holds a sharded run's manifest parts ({PARTS_DIR}/); run with --shard, or write to another --out",
                    args.out.display()
                );
            }
            let warn = &mut |w: &str| eprintln!("kao-extract: warning: {w}");
            (OutputLock::acquire(&args.out, warn)?, None)
        }
        #[cfg(feature = "object-store")]
        Some((shard, by)) if remote.is_some() => {
            let Some(r) = remote.as_mut() else {
                unreachable!("matched on remote.is_some()")
            };
            let lock = OutputLock::acquire_shared(&out_dir)?;
            let mine = shard.select(&videos);
            let finished = r.finished_parts()?;
            let mut todo = Vec::new();
            for video in &mine {
                if finished.contains(&upload::part_rel(video)) {
                    say(&format!("{video}: finished in an earlier run, skipped"));
                } else {
                    todo.push(video.clone());
                }
            }
            let todo = r.lease(todo, &mut |w| eprintln!("kao-extract: warning: {w}"))?;
            eprintln!(
                "kao-extract: shard {shard} (from {by}): {} of {} videos, {} to do, into {}",
                mine.len(),
                videos.len(),
                todo.len(),
                r.url()
            );
            (lock, Some((todo, Vec::new())))
        }
        Some((shard, by)) => {
            if args.out.join(MANIFEST).is_file() && !args.out.join(PARTS_DIR).is_dir() {
                bail!(
                    "{}: holds the manifest of a run without shards; write a sharded run to another --out",
                    args.out.display()
                );
            }
            let lock = OutputLock::acquire_shared(&args.out)?;
            let mine = shard.select(&videos);
            let mut todo = Vec::new();
            let mut held = Vec::new();
            for video in &mine {
                if part_path(&args.out, video).is_file() {
                    say(&format!("{video}: finished in an earlier run, skipped"));
                    continue;
                }
                let warn = &mut |w: &str| eprintln!("kao-extract: warning: {video}: {w}");
                held.push(OutputLock::acquire(&part_dir(&args.out, video), warn)?);
                todo.push(video.clone());
            }
            eprintln!(
                "kao-extract: shard {shard} (from {by}): {} of {} videos, {} to do",
                mine.len(),
                videos.len(),
                todo.len()
            );
            (lock, Some((todo, held)))
        }
    };
    // A preview that cannot be written is refused now, not after the run.
    if let Some(preview) = &args.preview {
        if shard.is_some() {
            bail!(
                "--preview draws a whole run: after kao-merge, run kao-preview on the folder instead"
            );
        }
        kao_preview::check_output(preview)?;
    }
    if !args.matching.refs.is_empty() {
        say("enrolling reference photos");
    }
    let embedder = args.embedder.spec()?;
    let (matcher, match_entry) =
        args.matching
            .matcher_or_none(&embedder, args.device, true, &mut |w| {
                eprintln!("kao-extract: warning: {w}")
            })?;
    let detect = DetectStage::new(
        Finder::load(args.detect.options(args.device))?,
        &frame_schema,
        "frames",
    )?;
    let embed = EmbedStage::new(
        FaceEmbedder::load(&args.embed.options(embedder, args.device))?,
        detect.schema(),
        "faces",
    )?;
    let mut track = TrackStage::new(args.track.options(), embed.schema(), "faces")?;
    let mut matching = MatchStage::new(matcher, &match_entry, track.schema(), "faces")?;
    let mut align = AlignStage::new(args.align.options(), matching.schema(), "faces", &out_dir)?;
    let mut schema = align.schema().clone();
    if let Some(spec) = frames_processed(&provenance(&schema)?) {
        schema = with_metadata(&schema, META_FRAMES_PROCESSED, &spec);
    }
    let mut state = State::load(&out_dir);
    let all_videos = videos.clone();
    let (mut sink, todo, _held) = match shard_todo {
        None => {
            let mut manifest = ManifestWriter::create(lock, &schema)?;
            // Resume: skip the videos an earlier run into this folder finished.
            let previous = manifest.previous_sources();
            let (done, todo): (Vec<String>, Vec<String>) = videos.into_iter().partition(|v| {
                state.finished(v)
                    && (previous.contains(v) || state.videos.get(v).is_some_and(|s| s.faces == 0))
            });
            for video in &done {
                say(&format!("{video}: finished in an earlier run, skipped"));
            }
            state
                .videos
                .retain(|v, _| previous.contains(v) || done.contains(v));
            for video in &todo {
                manifest.replace(video);
            }
            (Sink::Manifest(manifest), todo, Vec::new())
        }
        Some((todo, held)) => (
            Sink::Parts(PartWriter::new(&out_dir, &schema), lock),
            todo,
            held,
        ),
    };

    let decode_options = DecodeOptions {
        every: args.every,
        fps: args.fps,
        start: args.start,
        end: args.end,
        max_frames: args.max_frames,
        // One decoding thread: the cores are busy detecting and embedding, and FFmpeg's
        // frame threads only add buffered frames (at 1080p, ~40 MB more at the peak and no
        // faster end to end).
        threads: 1,
    };
    let bar = progress_bar(args.quiet, &todo, &decode_options);
    let stats = Stats::default();
    let batch_rows = args.embed.batch as usize;
    let (frames_tx, frames_rx) = bounded::<(u64, Result<Msg>)>(2);
    let (faces_tx, faces_rx) = bounded::<(u64, Vec<Result<Msg>>)>(8);
    let (embedded_tx, embedded_rx) = bounded::<Result<Msg>>(1);
    let mut status = 0u8;
    let mut crops = 0u64;

    std::thread::scope(|scope| -> Result<()> {
        let (stats, bar, detect, embed) = (&stats, &bar, &detect, &embed);
        let (todo, frame_schema, decode_options) = (&todo, &frame_schema, &decode_options);
        let shots = detect.finder().shots();
        scope.spawn(move || decode_all(todo, decode_options, frame_schema, shots, stop, frames_tx));
        let workers = if detect.follows() {
            1
        } else {
            EXACT_DETECT_WORKERS
        };
        for _ in 0..workers {
            let (rx, tx) = (frames_rx.clone(), faces_tx.clone());
            scope.spawn(move || detect_all(detect, rx, tx, stats, bar));
        }
        drop((frames_rx, faces_tx));
        scope.spawn(move || embed_all(embed, batch_rows, in_order(faces_rx), embedded_tx, stats));
        let mut faces_in_video = 0u64;
        // Matched records to the align stage and the manifest; at a video's end the align
        // stage decides what it still holds.
        let mut write = |sink: &mut Sink,
                         judged: Vec<RecordBatch>,
                         faces_in_video: &mut u64,
                         video_end: bool|
         -> Result<()> {
            for batch in judged {
                stats
                    .matches
                    .fetch_add(count_matches(&batch) as u64, Ordering::Relaxed);
                *faces_in_video += batch.num_rows() as u64;
                for rows in align.push(batch)? {
                    sink.write(&rows)?;
                }
            }
            if video_end {
                for rows in align.finish()? {
                    sink.write(&rows)?;
                }
            }
            Ok(())
        };
        for msg in embedded_rx {
            match msg {
                Err(e) => {
                    stop.store(true, Ordering::SeqCst);
                    return Err(e);
                }
                Ok(Msg::Frame(..)) => bail!("a frame record reached the matcher"),
                Ok(Msg::Records(batch)) => {
                    for tracked in track.push(batch)? {
                        write(
                            &mut sink,
                            matching.push(tracked)?,
                            &mut faces_in_video,
                            false,
                        )?;
                    }
                    bar.set_message(message(stats));
                }
                Ok(Msg::End {
                    video,
                    frames,
                    outcome,
                    message: text,
                }) => {
                    for tracked in track.finish()? {
                        write(
                            &mut sink,
                            matching.push(tracked)?,
                            &mut faces_in_video,
                            false,
                        )?;
                    }
                    write(&mut sink, matching.finish()?, &mut faces_in_video, true)?;
                    if let Sink::Parts(parts, _) = &mut sink {
                        match outcome {
                            Outcome::Complete | Outcome::Truncated => {
                                parts.finish_video(&video)?;
                                #[cfg(feature = "object-store")]
                                if let Some(r) = &remote {
                                    r.finish_video(&video)?;
                                }
                            }
                            Outcome::Failed | Outcome::Interrupted => {
                                parts.abandon_video(&video);
                                #[cfg(feature = "object-store")]
                                if let Some(r) = &remote {
                                    r.abandon_video(&video);
                                }
                            }
                        }
                    }
                    match &outcome {
                        Outcome::Failed => {
                            bar.suspend(|| {
                                eprintln!("kao-extract: {}", text.as_deref().unwrap_or("failed"))
                            });
                            status = status.max(1);
                        }
                        Outcome::Truncated => {
                            bar.suspend(|| {
                                eprintln!(
                                    "kao-extract: warning: {}",
                                    text.as_deref().unwrap_or("truncated")
                                )
                            });
                            status = status.max(EXIT_PARTIAL);
                        }
                        Outcome::Interrupted => status = status.max(EXIT_INTERRUPTED),
                        Outcome::Complete => {}
                    }
                    state.videos.insert(
                        video,
                        VideoState {
                            outcome,
                            frames,
                            faces: std::mem::take(&mut faces_in_video),
                        },
                    );
                }
            }
        }
        Ok(())
    })?;
    crops += align.crops_written();
    bar.finish_and_clear();
    // The folder stays locked until the preview is drawn.
    let (rows, path, clustered, lock) = match sink {
        Sink::Manifest(manifest) => {
            let rows = manifest.rows();
            let (path, lock) = manifest.finish()?;
            // The manifest is complete: a failure to group the unknown faces is a warning,
            // not a failed run.
            let clustered = cluster_folder(&lock, args.cluster_threshold).unwrap_or_else(|e| {
                eprintln!(
                    "kao-extract: warning: faces without an identity not grouped: {}",
                    kao_record::cli::one_line(&e)
                );
                Default::default()
            });
            let state_json = serde_json::to_vec_pretty(&state).context("encoding the run state")?;
            write_atomic(&args.out.join(STATE_FILE), &state_json)?;
            (rows, path, clustered, lock)
        }
        // kao-merge groups the unknown faces of all shards together.
        Sink::Parts(parts, lock) => (
            parts.rows(),
            match out_url {
                Some(url) => PathBuf::from(format!(
                    "{}/{PARTS_DIR}",
                    kao_pipeline::scale_out::remote::display_url(url)
                )),
                None => args.out.join(PARTS_DIR),
            },
            Default::default(),
            lock,
        ),
    };

    let secs = started.elapsed().as_secs_f64();
    let frames = stats.frames.load(Ordering::Relaxed);
    if status == EXIT_INTERRUPTED {
        eprintln!(
            "kao-extract: interrupted; the manifest holds what was processed, run again to finish"
        );
    }
    say(&format!(
        "{} videos, {frames} frames, {rows} faces, {} matches, {crops} crops written in {secs:.1} s ({:.1} frames/s)",
        todo.len(),
        stats.matches.load(Ordering::Relaxed),
        frames as f64 / secs.max(1e-9)
    ));
    if clustered.tracks > 0 {
        say(&format!(
            "{} unmatched tracks grouped into {} people (cluster_id; name one with kao-name)",
            clustered.tracks, clustered.clusters
        ));
    }
    if shard.is_some() {
        say(&format!(
            "manifest parts: {}; when every shard has ended: kao-merge {}",
            path.display(),
            out_url.map_or_else(
                || args.out.display().to_string(),
                kao_pipeline::scale_out::remote::display_url
            )
        ));
    } else {
        say(&format!("manifest: {}", path.display()));
    }
    if let Some(preview) = &args.preview {
        status = status.max(make_preview(
            args,
            preview,
            &all_videos,
            &state,
            status,
            stop,
        ));
    }
    drop(lock);
    Ok(status)
}

/// Where manifest rows go: the folder's manifest, or one part per video for a shard (with the
/// folder's lock, shared with the other shards).
enum Sink {
    Manifest(ManifestWriter),
    Parts(PartWriter, OutputLock),
}

impl Sink {
    fn write(&mut self, rows: &RecordBatch) -> Result<()> {
        match self {
            Sink::Manifest(manifest) => manifest.write(rows),
            Sink::Parts(parts, _) => parts.write(rows),
        }
    }
}

/// Draws the run's videos (those that could be read) with their faces into `out`, holding
/// the folder's lock; returns the exit status it adds (1 when it failed).
fn make_preview(
    args: &Args,
    out: &Path,
    videos: &[String],
    state: &State,
    status: u8,
    stop: &AtomicBool,
) -> u8 {
    if status == EXIT_INTERRUPTED || stop.load(Ordering::SeqCst) {
        eprintln!("kao-extract: no preview: the run was interrupted");
        return 0;
    }
    let readable: Vec<String> = videos
        .iter()
        .filter(|v| {
            state
                .videos
                .get(*v)
                .is_some_and(|s| s.outcome != Outcome::Failed)
        })
        .cloned()
        .collect();
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

/// Decodes the videos in order and sends their frame records, then an end marker per video.
fn decode_all(
    videos: &[String],
    options: &DecodeOptions,
    schema: &SchemaRef,
    mut shots: ShotDetector,
    stop: &AtomicBool,
    tx: Sender<(u64, Result<Msg>)>,
) {
    let mut seq = 0u64;
    let mut send = |msg: Result<Msg>| {
        seq += 1;
        tx.send((seq - 1, msg)).is_ok()
    };
    for video in videos {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut frames = 0u64;
        let mut failed: Option<anyhow::Error> = None;
        let result = kao_video::decode(video, options, |frame| {
            if stop.load(Ordering::SeqCst) {
                return ControlFlow::Break(());
            }
            let shot = match RgbView::new(frame.width as usize, frame.height as usize, &frame.rgb) {
                Some(view) => shots.observe(video, frame.pts, &view),
                None => 0,
            };
            let row = FrameRow {
                source: video.clone(),
                frame_index: frame.index,
                pts: frame.pts,
                width: frame.width,
                height: frame.height,
                pixels: frame.rgb,
            };
            match frame_batch(schema, row) {
                Ok(batch) => {
                    frames += 1;
                    if !send(Ok(Msg::Frame(batch, shot))) {
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failed = Some(e.into());
                    ControlFlow::Break(())
                }
            }
        });
        if let Some(e) = failed {
            send(Err(e));
            return;
        }
        let (outcome, message) = match result {
            Ok(summary) if summary.stopped => (Outcome::Interrupted, None),
            Ok(_) => (Outcome::Complete, None),
            Err(e @ DecodeError::Corrupt { .. }) => (Outcome::Truncated, Some(e.to_string())),
            Err(e) => (Outcome::Failed, Some(e.to_string())),
        };
        let interrupted = outcome == Outcome::Interrupted;
        if !send(Ok(Msg::End {
            video: video.clone(),
            frames,
            outcome,
            message,
        })) || interrupted
        {
            return;
        }
    }
}

/// Finds the faces in each frame record. With `--exact` several workers share the input;
/// following faces takes one worker, which sees the frames in order. Each message keeps its
/// sequence number so the next stage can restore the order.
fn detect_all(
    stage: &DetectStage,
    rx: Receiver<(u64, Result<Msg>)>,
    tx: Sender<(u64, Vec<Result<Msg>>)>,
    stats: &Stats,
    bar: &ProgressBar,
) {
    let mut follower = Follower::new();
    for (seq, msg) in rx {
        let out = match msg {
            Ok(Msg::Frame(frames, shot)) => {
                let faces = stage.process(&frames, seq, &[shot], &mut follower);
                stats
                    .frames
                    .fetch_add(frames.num_rows() as u64, Ordering::Relaxed);
                bar.inc(frames.num_rows() as u64);
                match faces {
                    Ok(batches) => batches.into_iter().map(|b| Ok(Msg::Records(b))).collect(),
                    Err(e) => vec![Err(e)],
                }
            }
            other => vec![other],
        };
        let fatal = out.iter().any(Result::is_err);
        if tx.send((seq, out)).is_err() || fatal {
            return;
        }
    }
}

/// Restores the decode order of the detect workers' messages.
fn in_order(rx: Receiver<(u64, Vec<Result<Msg>>)>) -> impl Iterator<Item = Result<Msg>> {
    let mut next = 0u64;
    let mut waiting: BTreeMap<u64, Vec<Result<Msg>>> = BTreeMap::new();
    let mut ready: std::collections::VecDeque<Result<Msg>> = std::collections::VecDeque::new();
    std::iter::from_fn(move || {
        loop {
            if let Some(msg) = ready.pop_front() {
                return Some(msg);
            }
            if let Some(msgs) = waiting.remove(&next) {
                next += 1;
                ready.extend(msgs);
                continue;
            }
            let (seq, msgs) = rx.recv().ok()?;
            waiting.insert(seq, msgs);
        }
    })
}

/// Embeds the faces in network batches; a video's end flushes its last batch.
fn embed_all(
    stage: &EmbedStage,
    batch_rows: usize,
    rx: impl Iterator<Item = Result<Msg>>,
    tx: Sender<Result<Msg>>,
    stats: &Stats,
) {
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0usize;
    let mut row = 0u64;
    // The pending batches go through the network together but stay separate batches
    // (concatenating them would copy every patch once more).
    let mut flush =
        |pending: &mut Vec<RecordBatch>, pending_rows: &mut usize| -> Result<Vec<RecordBatch>> {
            let mut numbered = Vec::with_capacity(pending.len());
            for batch in std::mem::take(pending) {
                let first = row;
                row += batch.num_rows() as u64;
                numbered.push((batch, first));
            }
            stats
                .faces
                .fetch_add(*pending_rows as u64, Ordering::Relaxed);
            *pending_rows = 0;
            if numbered.is_empty() {
                return Ok(Vec::new());
            }
            stage.embed_parts(stage.cut_parts(numbered)?)
        };
    for msg in rx {
        let (records, end) = match msg {
            Ok(Msg::Records(batch)) => {
                pending_rows += batch.num_rows();
                pending.push(batch);
                if pending_rows < batch_rows {
                    continue;
                }
                (flush(&mut pending, &mut pending_rows), None)
            }
            Ok(end @ Msg::End { .. }) => (flush(&mut pending, &mut pending_rows), Some(end)),
            Ok(Msg::Frame(..)) => (
                Err(anyhow::anyhow!("a frame record reached the embedder")),
                None,
            ),
            Err(e) => (Err(e), None),
        };
        match records {
            Ok(batches) => {
                for batch in batches {
                    if tx.send(Ok(Msg::Records(batch))).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
        if let Some(end) = end
            && tx.send(Ok(end)).is_err()
        {
            return;
        }
    }
}

/// Faces given an identity in a batch of matched records.
fn count_matches(batch: &RecordBatch) -> usize {
    batch
        .column_by_name(kao_record::schema::col::IDENTITY)
        .map_or(0, |c| c.len() - c.null_count())
}

fn message(stats: &Stats) -> String {
    format!(
        "{} faces, {} matches",
        stats.faces.load(Ordering::Relaxed),
        stats.matches.load(Ordering::Relaxed)
    )
}

/// A progress bar on stderr sized by the frames the videos are expected to yield.
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
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{bar:30} {pos}/{len} frames  {per_sec}  {msg}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
