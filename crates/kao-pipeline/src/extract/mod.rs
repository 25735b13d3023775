//! kao-extract's runner: decode → detect → embed → track → match → align on threads in one
//! process, into an output folder (or one manifest part per video for a shard, also in object
//! storage), resuming where an earlier run into the same folder stopped.
//!
//! [`run`] does the work and reports through a [`Progress`]: kao-extract's progress bar and
//! messages, or nothing ([`Quiet`]). The stages are the stage binaries' own, with their
//! options ([`crate::cli`]), so the one-process run writes the manifest the piped chain writes.
//!
//! The threads (`threads.rs`): one decodes the videos in order; one detection worker follows
//! faces between detector passes (two with `--exact`, reordered by sequence number); one embeds
//! in network batches; this thread tracks, matches and crops, and writes the manifest. Bounded
//! channels between them keep a few frames in flight.

mod threads;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use arrow_array::RecordBatch;
use crossbeam_channel::bounded;
use kao_networks::Device;
use kao_record::Provenance;
use kao_record::schema::{Schema, frame_fields, provenance, stage_schema};
use kao_record::write_atomic;
use kao_video::DecodeOptions;
use serde::{Deserialize, Serialize};

use crate::HoldingStage;
use crate::align::lock::OutputLock;
use crate::align::manifest::{
    MANIFEST, META_FRAMES_PROCESSED, ManifestWriter, frames_processed, with_metadata,
};
use crate::align::{AlignOptions, AlignStage};
use crate::cli::{DetectArgs, EmbedArgs, EmbedderArgs, MatchArgs};
use crate::cluster::{Clustered, cluster_folder};
use crate::detect::{DetectStage, Finder};
use crate::embed::{EmbedStage, FaceEmbedder};
use crate::matching::identify::MatchStage;
use crate::scale_out::parts::{PARTS_DIR, PartWriter, SHARD_OPTION, part_dir, part_path};
use crate::scale_out::shard::Shard;
#[cfg(feature = "object-store")]
use crate::scale_out::upload::{self, RemoteRun};
use crate::track::{TrackOptions, TrackStage};
use threads::{Msg, Stats, count_matches, decode_all, detect_all, embed_all, in_order};

/// Exit status when a video decoded only in part (truncated or corrupt), as kao-decode's.
pub const EXIT_PARTIAL: u8 = 3;
/// Exit status after Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Frames detected at once with `--exact` (the detector's network runs mostly on one core).
/// Following faces needs the frames in order, on one worker.
const EXACT_DETECT_WORKERS: usize = 2;
/// What kao-extract remembers in the output folder between runs.
pub const STATE_FILE: &str = ".kao-extract.json";

/// What a run does: the videos, where the results go, and every stage's options.
#[derive(Clone, Debug)]
pub struct ExtractOptions {
    /// The videos, in order (files, URLs; folders and lists already expanded).
    pub videos: Vec<String>,
    /// The output folder; for a shard, in a build with the `object-store` feature, also an
    /// object-storage URL (`s3://…`, `gs://…`, `az://…`, `file://…`).
    pub out: PathBuf,
    /// This task's shard and what gave it (`--shard`, or the scheduler's variable).
    pub shard: Option<(Shard, &'static str)>,
    /// Which frames of each video, and the decoding threads (kao-extract: half the cores,
    /// two to four).
    pub decode: DecodeOptions,
    /// The detect stage's options.
    pub detect: DetectArgs,
    /// The embed stage's options.
    pub embed: EmbedArgs,
    /// The embedder.
    pub embedder: EmbedderArgs,
    /// The track stage's options.
    pub track: TrackOptions,
    /// The references and the matching rule.
    pub matching: MatchArgs,
    /// The align stage's options.
    pub align: AlignOptions,
    /// Where the networks run.
    pub device: Device,
    /// The linking distance of the clusters of faces without an identity (default: the
    /// embedder's matching threshold).
    pub cluster_threshold: Option<f32>,
}

/// What a run tells as it goes. The detection workers call [`Progress::frames`] from their
/// threads, hence `Sync`.
pub trait Progress: Sync {
    /// A line about the run (a video finished earlier and skipped, references being
    /// enrolled); kao-extract hides these with `--quiet`.
    fn info(&self, line: &str);
    /// A line always shown: a shard's share of the videos, a video that could not be read.
    fn notice(&self, line: &str);
    /// A warning, always shown.
    fn warning(&self, line: &str);
    /// The output folder is locked; the references and the networks are loaded next. An error
    /// ends the run before anything is loaded (kao-extract refuses a `--preview` file it could
    /// not write here). `sharded`: whether this is a shard's run.
    fn ready(&self, sharded: bool) -> Result<()> {
        let _ = sharded;
        Ok(())
    }
    /// The stages start on `videos` (those still to do), decoded with `decode`.
    fn start(&self, videos: &[String], decode: &DecodeOptions);
    /// `n` more frames went through detection.
    fn frames(&self, n: u64);
    /// The faces embedded and matched so far.
    fn counts(&self, faces: u64, matches: u64);
    /// The stages have ended; the manifest is finished and the faces without an identity are
    /// grouped next.
    fn finish(&self);
}

/// A [`Progress`] that tells nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn info(&self, _: &str) {}
    fn notice(&self, _: &str) {}
    fn warning(&self, _: &str) {}
    fn start(&self, _: &[String], _: &DecodeOptions) {}
    fn frames(&self, _: u64) {}
    fn counts(&self, _: u64, _: u64) {}
    fn finish(&self) {}
}

/// How a run ended.
#[derive(Debug)]
pub struct Report {
    /// The exit status: 0; 1 when a video could not be read; [`EXIT_PARTIAL`] when one was
    /// truncated or corrupt; [`EXIT_INTERRUPTED`] when the run was stopped (the highest of
    /// these).
    pub status: u8,
    /// Videos processed (those an earlier run finished are skipped).
    pub videos: usize,
    /// Frames decoded and searched.
    pub frames: u64,
    /// Face records this run wrote (into the manifest, or this shard's parts).
    pub rows: u64,
    /// Faces given an identity.
    pub matches: u64,
    /// Crops written.
    pub crops: u64,
    /// The faces without an identity grouped into people (none for a shard: kao-merge
    /// groups all shards' faces together).
    pub clustered: Clustered,
    /// The manifest written, or a shard's folder of parts.
    pub manifest: PathBuf,
    /// Every video's outcome, this run's and the earlier ones' still in the manifest.
    pub state: State,
    /// The output folder's lock, held until the caller is done with the folder.
    pub lock: OutputLock,
}

/// How one video ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
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
pub struct VideoState {
    /// How the video ended.
    pub outcome: Outcome,
    /// Frames decoded.
    pub frames: u64,
    /// Face records written.
    pub faces: u64,
}

/// The state file: which videos an earlier run finished.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Each video's record, by its name as given.
    pub videos: BTreeMap<String, VideoState>,
}

impl State {
    /// The state file of the output folder `dir` (empty when there is none or it is unreadable).
    pub fn load(dir: &Path) -> State {
        std::fs::read(dir.join(STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Whether an earlier run finished `video` (to the end, or as far as it could be decoded).
    pub fn finished(&self, video: &str) -> bool {
        self.videos
            .get(video)
            .is_some_and(|v| matches!(v.outcome, Outcome::Complete | Outcome::Truncated))
    }

    /// The videos of `videos` that could be read (every outcome but [`Outcome::Failed`]).
    pub fn readable(&self, videos: &[String]) -> Vec<String> {
        videos
            .iter()
            .filter(|v| {
                self.videos
                    .get(*v)
                    .is_some_and(|s| s.outcome != Outcome::Failed)
            })
            .cloned()
            .collect()
    }
}

/// Runs the stages over `options.videos` into `options.out`; `stop` ends the run cleanly (the
/// manifest then holds what was processed, and a second run finishes the rest). Errors are
/// the run's own (a folder locked by another run, a model that does not load, a manifest that
/// cannot be written); a video that cannot be read is [`Report::status`] 1 and a line through
/// [`Progress::notice`].
pub fn run(options: &ExtractOptions, stop: &AtomicBool, progress: &dyn Progress) -> Result<Report> {
    let ExtractOptions {
        videos,
        out,
        shard,
        decode,
        ..
    } = options;
    let (videos, shard) = (videos.clone(), *shard);
    // The stages, with the schemas the piped chain would have.
    let decode_entry = Provenance::new(
        "kao-decode",
        env!("CARGO_PKG_VERSION"),
        serde_json::json!({
            "inputs": videos, "every": decode.every, "fps": decode.fps, "start": decode.start,
            "end": decode.end, "max_frames": decode.max_frames,
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
    // Object storage: a sharded run, staged in a local folder one video at a time.
    let out_url = out.to_str().filter(|o| crate::scale_out::remote::is_url(o));
    #[cfg(not(feature = "object-store"))]
    if let Some(url) = out_url {
        return Err(crate::scale_out::remote::needs_feature(url, "kao-extract"));
    }
    #[cfg(feature = "object-store")]
    let mut remote = match out_url {
        None => None,
        Some(url) if shard.is_none() => bail!(
            "{}: a run into object storage is a sharded run: give --shard 0/1 for one task (or run in a Slurm array or Kubernetes Indexed Job), then kao-merge {}",
            crate::scale_out::remote::display_url(url),
            crate::scale_out::remote::display_url(url)
        ),
        Some(url) => Some(RemoteRun::open(url)?),
    };
    #[cfg(feature = "object-store")]
    let out_dir: PathBuf = match &remote {
        Some(r) => r.stage().to_path_buf(),
        None => out.clone(),
    };
    #[cfg(not(feature = "object-store"))]
    let out_dir: PathBuf = out.clone();
    // The whole folder for a single run; for a shard, the folder shared with the other shards
    // and each of its own unfinished videos' partition folders (in object storage: a lease
    // per unfinished video).
    let (lock, shard_todo) = match shard {
        None => {
            if out.join(PARTS_DIR).is_dir() {
                bail!(
                    "{}: holds a sharded run's manifest parts ({PARTS_DIR}/); run with --shard, or write to another --out",
                    out.display()
                );
            }
            let warn = &mut |w: &str| progress.warning(w);
            (OutputLock::acquire(out, warn)?, None)
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
                    progress.info(&format!("{video}: finished in an earlier run, skipped"));
                } else {
                    todo.push(video.clone());
                }
            }
            let todo = r.lease(todo, &mut |w| progress.warning(w))?;
            progress.notice(&format!(
                "shard {shard} (from {by}): {} of {} videos, {} to do, into {}",
                mine.len(),
                videos.len(),
                todo.len(),
                r.url()
            ));
            (lock, Some((todo, Vec::new())))
        }
        Some((shard, by)) => {
            if out.join(MANIFEST).is_file() && !out.join(PARTS_DIR).is_dir() {
                bail!(
                    "{}: holds the manifest of a run without shards; write a sharded run to another --out",
                    out.display()
                );
            }
            let lock = OutputLock::acquire_shared(out)?;
            let mine = shard.select(&videos);
            let mut todo = Vec::new();
            let mut held = Vec::new();
            for video in &mine {
                if part_path(out, video).is_file() {
                    progress.info(&format!("{video}: finished in an earlier run, skipped"));
                    continue;
                }
                let warn = &mut |w: &str| progress.warning(&format!("{video}: {w}"));
                held.push(OutputLock::acquire(&part_dir(out, video), warn)?);
                todo.push(video.clone());
            }
            progress.notice(&format!(
                "shard {shard} (from {by}): {} of {} videos, {} to do",
                mine.len(),
                videos.len(),
                todo.len()
            ));
            (lock, Some((todo, held)))
        }
    };
    // What the caller refuses before any model is loaded (kao-extract: its --preview file).
    progress.ready(shard.is_some())?;
    if !options.matching.refs.is_empty() {
        progress.info("enrolling reference photos");
    }
    let embedder = options.embedder.spec()?;
    let (matcher, match_entry) =
        options
            .matching
            .matcher_or_none(&embedder, options.device, true, &mut |w| {
                progress.warning(w)
            })?;
    // The detectors and the embedder load side by side (a tenth of a second sooner).
    let (finder, face_embedder) = std::thread::scope(|scope| {
        let finder = scope.spawn(|| Finder::load(options.detect.options(options.device)));
        let face_embedder = FaceEmbedder::load(&options.embed.options(embedder, options.device));
        let finder = finder
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (finder, face_embedder)
    });
    let detect = DetectStage::new(finder?, &frame_schema, "frames")?;
    let embed = EmbedStage::new(face_embedder?, detect.schema(), "faces")?;
    let mut track = TrackStage::new(options.track, embed.schema(), "faces")?;
    let mut matching = MatchStage::new(matcher, &match_entry, track.schema(), "faces")?;
    let mut align = AlignStage::new(options.align.clone(), matching.schema(), "faces", &out_dir)?;
    let mut schema = align.schema().clone();
    if let Some(spec) = frames_processed(&provenance(&schema)?) {
        schema = with_metadata(&schema, META_FRAMES_PROCESSED, &spec);
    }
    let mut state = State::load(&out_dir);
    let (mut sink, todo, _held) = match shard_todo {
        None => {
            let mut manifest = ManifestWriter::create(lock, &schema)?;
            // Resume: skip the videos an earlier run into this folder finished.
            // Their crops keep their names.
            let in_order = manifest.previous_sources();
            align.claim_sources(in_order.iter().cloned());
            let previous: BTreeSet<String> = in_order.into_iter().collect();
            let (done, todo): (Vec<String>, Vec<String>) = videos.into_iter().partition(|v| {
                state.finished(v)
                    && (previous.contains(v) || state.videos.get(v).is_some_and(|s| s.faces == 0))
            });
            for video in &done {
                progress.info(&format!("{video}: finished in an earlier run, skipped"));
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

    let decode_options = decode.clone();
    progress.start(&todo, &decode_options);
    let stats = Stats::default();
    let batch_rows = options.embed.batch as usize;
    let (frames_tx, frames_rx) = bounded::<(u64, Result<Msg>)>(2);
    let (faces_tx, faces_rx) = bounded::<(u64, Vec<Result<Msg>>)>(8);
    let (embedded_tx, embedded_rx) = bounded::<Result<Msg>>(1);
    let mut status = 0u8;

    std::thread::scope(|scope| -> Result<()> {
        let (stats, detect, embed) = (&stats, &detect, &embed);
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
            scope.spawn(move || detect_all(detect, rx, tx, stats, progress));
        }
        drop((frames_rx, faces_tx));
        scope.spawn(move || embed_all(embed, batch_rows, in_order(faces_rx), embedded_tx, stats));
        let mut faces_in_video = 0u64;
        // Matched records to the align stage and the manifest; at a video's end the align
        // stage decides what it still holds, and says which crops it wrote for the video.
        let mut write = |sink: &mut Sink,
                         judged: Vec<RecordBatch>,
                         faces_in_video: &mut u64,
                         video_end: bool|
         -> Result<Vec<String>> {
            for batch in judged {
                stats
                    .matches
                    .fetch_add(count_matches(&batch) as u64, Ordering::Relaxed);
                *faces_in_video += batch.num_rows() as u64;
                for rows in align.push(batch)? {
                    sink.write(&rows)?;
                }
            }
            if !video_end {
                return Ok(Vec::new());
            }
            for rows in align.finish()? {
                sink.write(&rows)?;
            }
            Ok(align.take_written())
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
                    progress.counts(
                        stats.faces.load(Ordering::Relaxed),
                        stats.matches.load(Ordering::Relaxed),
                    );
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
                    let written = write(&mut sink, matching.finish()?, &mut faces_in_video, true)?;
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
                                // No part, so no row names these crops: the next run of the
                                // shard does the video again and chooses its own.
                                for crop in &written {
                                    let _ = std::fs::remove_file(out_dir.join(crop));
                                }
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
                            progress.notice(text.as_deref().unwrap_or("failed"));
                            status = status.max(1);
                        }
                        Outcome::Truncated => {
                            progress.warning(text.as_deref().unwrap_or("truncated"));
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
    let crops = align.crops_written();
    progress.finish();
    // The folder stays locked until the preview is drawn.
    let (rows, path, clustered, lock) = match sink {
        Sink::Manifest(manifest) => {
            let rows = manifest.rows();
            let (path, lock) = manifest.finish()?;
            // The manifest is complete: a failure to group the unknown faces is a warning,
            // not a failed run.
            let clustered = cluster_folder(&lock, options.cluster_threshold).unwrap_or_else(|e| {
                progress.warning(&format!(
                    "faces without an identity not grouped: {}",
                    kao_record::cli::one_line(&e)
                ));
                Default::default()
            });
            let state_json = serde_json::to_vec_pretty(&state).context("encoding the run state")?;
            write_atomic(&out.join(STATE_FILE), &state_json)?;
            (rows, path, clustered, lock)
        }
        // kao-merge groups the unknown faces of all shards together.
        Sink::Parts(parts, lock) => (
            parts.rows(),
            match out_url {
                Some(url) => PathBuf::from(format!(
                    "{}/{PARTS_DIR}",
                    crate::scale_out::remote::display_url(url)
                )),
                None => out.join(PARTS_DIR),
            },
            Default::default(),
            lock,
        ),
    };

    Ok(Report {
        status,
        videos: todo.len(),
        frames: stats.frames.load(Ordering::Relaxed),
        rows,
        matches: stats.matches.load(Ordering::Relaxed),
        crops,
        clustered,
        manifest: path,
        state,
        lock,
    })
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU64;

    use clap::Parser;

    use super::*;

    /// Every stage's options at their command-line defaults.
    #[derive(Parser)]
    struct Defaults {
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
    }

    /// The fixture video (made by scripts/fixtures.sh): 200 frames at 1280×720.
    fn sample() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sample.mp4");
        assert!(
            path.is_file(),
            "{} is missing: run scripts/fixtures.sh",
            path.display()
        );
        path.to_string_lossy().into_owned()
    }

    /// The first `frames` frames of `videos` into `out`, with every default.
    fn options(videos: Vec<String>, out: &Path, frames: u64) -> ExtractOptions {
        let d = Defaults::parse_from(["kao-extract"]);
        ExtractOptions {
            videos,
            out: out.to_path_buf(),
            shard: None,
            decode: DecodeOptions {
                max_frames: Some(frames),
                threads: 1,
                ..DecodeOptions::default()
            },
            detect: d.detect,
            embed: d.embed,
            embedder: d.embedder,
            track: d.track,
            matching: d.matching,
            align: d.align,
            device: Device::cpu(),
            cluster_threshold: None,
        }
    }

    /// A [`Progress`] that records what it is told, and can stop the run after some frames.
    #[derive(Default)]
    struct Recorder {
        lines: Mutex<Vec<String>>,
        started: Mutex<Vec<String>>,
        frames: AtomicU64,
        counts: Mutex<Option<(u64, u64)>>,
        finished: AtomicBool,
        refuse: bool,
        stop_after: Option<(u64, &'static AtomicBool)>,
    }

    impl Recorder {
        fn lines(&self) -> Vec<String> {
            self.lines.lock().unwrap().clone()
        }
    }

    impl Progress for Recorder {
        fn info(&self, line: &str) {
            self.lines.lock().unwrap().push(format!("info: {line}"));
        }
        fn notice(&self, line: &str) {
            self.lines.lock().unwrap().push(format!("notice: {line}"));
        }
        fn warning(&self, line: &str) {
            self.lines.lock().unwrap().push(format!("warning: {line}"));
        }
        fn ready(&self, _sharded: bool) -> Result<()> {
            if self.refuse {
                bail!("refused");
            }
            Ok(())
        }
        fn start(&self, videos: &[String], _decode: &DecodeOptions) {
            self.started.lock().unwrap().extend(videos.iter().cloned());
        }
        fn frames(&self, n: u64) {
            let total = self.frames.fetch_add(n, Ordering::SeqCst) + n;
            if let Some((after, stop)) = self.stop_after
                && total >= after
            {
                stop.store(true, Ordering::SeqCst);
            }
        }
        fn counts(&self, faces: u64, matches: u64) {
            *self.counts.lock().unwrap() = Some((faces, matches));
        }
        fn finish(&self) {
            self.finished.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_run_reports_its_frames_writes_the_manifest_and_resumes() {
        let out = tempfile::tempdir().unwrap();
        let options = options(vec![sample()], out.path(), 4);
        let progress = Recorder::default();
        let report = run(&options, &AtomicBool::new(false), &progress).unwrap();
        assert_eq!(report.status, 0);
        assert_eq!((report.videos, report.frames), (1, 4));
        assert_eq!(progress.frames.load(Ordering::SeqCst), 4);
        assert_eq!(*progress.started.lock().unwrap(), [sample()]);
        assert!(progress.finished.load(Ordering::SeqCst));
        let (faces, matches) = progress.counts.lock().unwrap().expect("counts were told");
        assert!(
            faces > 0 && matches == 0,
            "{faces} faces, {matches} matches"
        );
        assert_eq!(report.rows, faces, "every face is a manifest row");
        assert_eq!(report.manifest, out.path().join(MANIFEST));
        assert!(report.manifest.is_file());
        let video = &report.state.videos[&sample()];
        assert_eq!(
            (&video.outcome, video.frames, video.faces),
            (&Outcome::Complete, 4, faces)
        );
        // The state file says the same, and a second run skips the finished video.
        assert!(State::load(out.path()).finished(&sample()));
        drop(report.lock);
        let progress = Recorder::default();
        let again = run(&options, &AtomicBool::new(false), &progress).unwrap();
        assert_eq!((again.status, again.videos, again.frames), (0, 0, 0));
        assert!(
            progress.lines().contains(&format!(
                "info: {}: finished in an earlier run, skipped",
                sample()
            )),
            "{:?}",
            progress.lines()
        );
        assert_eq!(again.rows, 0);
        let kept: usize = kao_record::RecordReader::open(Some(&again.manifest))
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        assert_eq!(
            kept as u64, faces,
            "the manifest keeps the first run's rows"
        );
    }

    #[test]
    fn a_video_that_cannot_be_read_is_a_notice_and_status_1() {
        let out = tempfile::tempdir().unwrap();
        let missing = out
            .path()
            .join("missing.mp4")
            .to_string_lossy()
            .into_owned();
        let options = options(vec![missing.clone(), sample()], out.path(), 2);
        let progress = Recorder::default();
        let report = run(&options, &AtomicBool::new(false), &progress).unwrap();
        assert_eq!(report.status, 1);
        assert_eq!(report.frames, 2, "the next video still runs");
        let lines = progress.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("notice: ") && l.contains("missing.mp4")),
            "{lines:?}"
        );
        assert_eq!(report.state.videos[&missing].outcome, Outcome::Failed);
        assert_eq!(
            report.state.readable(&[missing, sample()]),
            [sample()],
            "only the readable video is previewed"
        );
    }

    #[test]
    fn stopping_interrupts_the_video_and_keeps_what_was_done() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let out = tempfile::tempdir().unwrap();
        let options = options(vec![sample()], out.path(), 40);
        let progress = Recorder {
            stop_after: Some((2, &STOP)),
            ..Recorder::default()
        };
        let report = run(&options, &STOP, &progress).unwrap();
        assert_eq!(report.status, EXIT_INTERRUPTED);
        assert!(report.frames < 40, "{} frames", report.frames);
        assert_eq!(report.state.videos[&sample()].outcome, Outcome::Interrupted);
        assert!(
            report.manifest.is_file(),
            "the manifest holds what was done"
        );
        assert!(!State::load(out.path()).finished(&sample()));
    }

    #[test]
    fn an_interrupted_shard_leaves_no_crops_of_its_unfinished_video() {
        // Every face gets a crop (`--all`); the run stops inside the video, after crops were
        // written. The video has no part, so no row names them: they must go with it.
        static STOP: AtomicBool = AtomicBool::new(false);
        let out = tempfile::tempdir().unwrap();
        let mut options = options(vec![sample()], out.path(), 60);
        options.shard = Some(("0/1".parse().unwrap(), "--shard"));
        options.align.all = true;
        let progress = Recorder {
            stop_after: Some((30, &STOP)),
            ..Recorder::default()
        };
        let report = run(&options, &STOP, &progress).unwrap();
        assert_eq!(report.status, EXIT_INTERRUPTED);
        assert!(report.crops > 0, "no crop was written before the stop");
        assert!(!part_path(out.path(), &sample()).exists());
        let mut left = Vec::new();
        let mut stack = vec![out.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "png") {
                    left.push(p);
                }
            }
        }
        assert!(left.is_empty(), "crops left behind: {left:?}");
    }

    #[test]
    fn a_shard_writes_one_part_per_video() {
        let out = tempfile::tempdir().unwrap();
        let mut options = options(vec![sample()], out.path(), 2);
        options.shard = Some(("0/1".parse().unwrap(), "--shard"));
        let progress = Recorder::default();
        let report = run(&options, &AtomicBool::new(false), &progress).unwrap();
        assert_eq!((report.status, report.frames), (0, 2));
        assert!(part_path(out.path(), &sample()).is_file());
        assert!(!out.path().join(MANIFEST).exists());
        assert_eq!(report.manifest, out.path().join(PARTS_DIR));
        assert_eq!(report.clustered.tracks, 0, "kao-merge groups the faces");
        let lines = progress.lines();
        assert!(
            lines
                .iter()
                .any(|l| l == "notice: shard 0/1 (from --shard): 1 of 1 videos, 1 to do"),
            "{lines:?}"
        );
    }

    #[test]
    fn the_caller_can_refuse_the_run_before_anything_is_loaded() {
        let out = tempfile::tempdir().unwrap();
        let options = options(vec![sample()], out.path(), 2);
        let progress = Recorder {
            refuse: true,
            ..Recorder::default()
        };
        let e = run(&options, &AtomicBool::new(false), &progress).unwrap_err();
        assert_eq!(e.to_string(), "refused");
        assert!(progress.started.lock().unwrap().is_empty());
        assert!(!out.path().join(MANIFEST).exists());
    }
}
