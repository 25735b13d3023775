//! kao-extract's stage threads: decoding, detection workers and embedding, joined by bounded
//! channels; [`super::run`] matches, tracks and crops on its own thread.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Result;
use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, Sender};
use kao_image::RgbView;
use kao_record::schema::{FrameRow, SchemaRef, frame_batch};
use kao_video::{DecodeError, DecodeOptions};

use super::{Outcome, Progress};
use crate::detect::DetectStage;
use crate::detect::follow::Follower;
use crate::detect::shot::ShotDetector;
use crate::embed::EmbedStage;

/// What flows between the stage threads.
pub(super) enum Msg {
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

/// Counters of the run, shown as it goes and in the summary.
#[derive(Default)]
pub(super) struct Stats {
    pub(super) frames: AtomicU64,
    pub(super) faces: AtomicU64,
    pub(super) matches: AtomicU64,
}

/// Decodes the videos in order and sends their frame records, then an end marker per video.
pub(super) fn decode_all(
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
pub(super) fn detect_all(
    stage: &DetectStage,
    rx: Receiver<(u64, Result<Msg>)>,
    tx: Sender<(u64, Vec<Result<Msg>>)>,
    stats: &Stats,
    progress: &dyn Progress,
) {
    let mut follower = Follower::new();
    for (seq, msg) in rx {
        let out = match msg {
            Ok(Msg::Frame(frames, shot)) => {
                let faces = stage.process(&frames, seq, &[shot], &mut follower);
                stats
                    .frames
                    .fetch_add(frames.num_rows() as u64, Ordering::Relaxed);
                progress.frames(frames.num_rows() as u64);
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
pub(super) fn in_order(rx: Receiver<(u64, Vec<Result<Msg>>)>) -> impl Iterator<Item = Result<Msg>> {
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
pub(super) fn embed_all(
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
pub(super) fn count_matches(batch: &RecordBatch) -> usize {
    batch
        .column_by_name(kao_record::schema::col::IDENTITY)
        .map_or(0, |c| c.len() - c.null_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(label: u32) -> Result<Msg> {
        Ok(Msg::Frame(
            RecordBatch::new_empty(std::sync::Arc::new(kao_record::schema::Schema::empty())),
            label,
        ))
    }

    fn label(msg: Result<Msg>) -> u32 {
        match msg {
            Ok(Msg::Frame(_, label)) => label,
            _ => panic!("not a labelled frame"),
        }
    }

    #[test]
    fn in_order_restores_the_decode_order() {
        let (tx, rx) = crossbeam_channel::unbounded();
        // Detection workers finish out of order; one frame gave two messages, one none.
        tx.send((2, vec![records(20), records(21)])).unwrap();
        tx.send((0, vec![records(0)])).unwrap();
        tx.send((3, vec![records(30)])).unwrap();
        tx.send((1, vec![])).unwrap();
        drop(tx);
        let got: Vec<u32> = in_order(rx).map(label).collect();
        assert_eq!(got, [0, 20, 21, 30]);
    }

    #[test]
    fn in_order_stops_at_a_gap_when_the_workers_end() {
        let (tx, rx) = crossbeam_channel::unbounded();
        tx.send((0, vec![records(0)])).unwrap();
        tx.send((2, vec![records(2)])).unwrap();
        drop(tx);
        // Message 1 never came (a worker stopped on an error): what follows it is not sent on.
        let got: Vec<u32> = in_order(rx).map(label).collect();
        assert_eq!(got, [0]);
    }
}
