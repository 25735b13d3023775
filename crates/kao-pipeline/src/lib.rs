//! kao's stages as a library, shared by the stage binaries (`kao-detect`, `kao-embed`,
//! `kao-track`, `kao-match`, `kao-align`) and by `kao-extract`, which runs them in one process.
//!
//! Each stage turns record batches into record batches with the same schema rules as the
//! pipe (records.md), so the one-process run and the piped chain write the same manifest.
//! One module per step of the data path (decoding is `kao-video`):
//!
//! * [`detect`]: the detect stage, with following faces between detector passes
//!   ([`detect::follow`]) and shot cuts ([`detect::shot`]); the detectors themselves are
//!   `kao_networks::detector`'s.
//! * [`embed`]: the embed stage, with choosing the faces to embed ([`embed::sample`]) and their
//!   quality measures ([`embed::quality`]); the embedders are `kao_networks::embedder`'s.
//! * [`track`]: linking faces into tracks.
//! * [`matching`]: the match stage ([`matching::identify`]), reference enrollment
//!   ([`matching::enroll`]) and its cache ([`matching::ref_cache`]), FACE01's percentage
//!   curves ([`matching::similar`]).
//! * [`align`]: the align stage, with the crops ([`align::crop`]), the manifest
//!   ([`align::manifest`]) and the output folder's lock ([`align::lock`]).
//! * [`cluster`]: unmatched tracks grouped into people, and a cluster turned into a name.
//! * [`scale_out`]: sharded runs, their manifest parts and the merge, object storage.
//!
//! Beside them: kao-extract's runner, every stage on threads in one process ([`extract`]),
//! FACE01's config.ini ([`face01`]), the stages' command-line options ([`cli`]) and glibc's
//! malloc settings ([`memory`]).

// One FFI call is allowed `unsafe` (see docs/architecture.md, "Unsafe code").
#![deny(unsafe_code)]

pub mod align;
pub mod cluster;
pub mod detect;
pub mod embed;
pub mod matching;
pub mod scale_out;
pub mod track;

pub mod cli;
pub mod extract;
pub mod face01;
pub mod memory;

use anyhow::{Result, anyhow};
use arrow_array::{Array, RecordBatch};

/// Column `name` of `batch` as array type `A` (schemas are checked when a stage is made).
pub(crate) fn column<'a, A: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a A> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<A>())
        .ok_or_else(|| anyhow!("column `{name}` is missing or has the wrong type"))
}

/// Collects the rows of whole frames: a batch's last frame may continue in the next batch
/// (the rows of one frame are consecutive), so it is held back until then.
pub(crate) struct WholeFrames {
    input: kao_record::schema::SchemaRef,
    held: Option<RecordBatch>,
}

impl WholeFrames {
    /// For batches of `input` schema.
    pub(crate) fn new(input: &kao_record::schema::SchemaRef) -> WholeFrames {
        WholeFrames {
            input: input.clone(),
            held: None,
        }
    }

    /// The rows of the frames known to be complete once `batch` has arrived. The rows are
    /// copied only when a frame continues from one batch into the next.
    pub(crate) fn complete(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let batch = match self.held.take() {
            Some(held) if continues(&held, &batch)? => {
                arrow_select::concat::concat_batches(&self.input, &[held, batch])?
            }
            Some(held) => {
                out.push(held);
                batch
            }
            None => batch,
        };
        let (done, held) = matching::identify::split_last_frame(&batch)?;
        self.held = held;
        out.extend(done);
        Ok(out)
    }

    /// The rows held back, at the end of the stream.
    pub(crate) fn rest(&mut self) -> Option<RecordBatch> {
        self.held.take()
    }
}

/// True when `next` starts with a row of the frame that ends `held`.
fn continues(held: &RecordBatch, next: &RecordBatch) -> Result<bool> {
    use kao_record::schema::col;
    if held.num_rows() == 0 || next.num_rows() == 0 {
        return Ok(false);
    }
    let last = held.num_rows() - 1;
    let (a_src, b_src) = (
        column::<arrow_array::StringArray>(held, col::SOURCE)?,
        column::<arrow_array::StringArray>(next, col::SOURCE)?,
    );
    let (a_frame, b_frame) = (
        column::<arrow_array::UInt64Array>(held, col::FRAME_INDEX)?,
        column::<arrow_array::UInt64Array>(next, col::FRAME_INDEX)?,
    );
    Ok(a_src.value(last) == b_src.value(0) && a_frame.value(last) == b_frame.value(0))
}

/// Checks that every face box of `batch` (`x`, `y`, `w`, `h`) is finite with a size of at
/// least zero: one line naming the records and the row otherwise (`first_row` numbers them).
pub fn check_boxes(batch: &RecordBatch, name: &str, first_row: u64) -> Result<()> {
    use arrow_array::Float32Array;
    use kao_record::schema::col;
    let [x, y, w, h] = [col::X, col::Y, col::W, col::H].map(|c| column::<Float32Array>(batch, c));
    let (x, y, w, h) = (x?, y?, w?, h?);
    for i in 0..batch.num_rows() {
        let b = [x.value(i), y.value(i), w.value(i), h.value(i)];
        if !(b.iter().all(|v| v.is_finite()) && b[2] >= 0.0 && b[3] >= 0.0) {
            anyhow::bail!(
                "{name}: row {}: the face box (x, y, w, h) = {b:?} is not a box",
                first_row + i as u64
            );
        }
    }
    Ok(())
}

/// A stage that may hold records back (to see whole frames or tracks) before it emits them.
pub trait HoldingStage {
    /// Takes a batch; returns the records now ready, in input order.
    fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>>;
    /// Returns every record still held, at the end of the stream.
    fn finish(&mut self) -> Result<Vec<RecordBatch>>;
}

/// Runs a holding stage over every batch of `reader` into `writer`, then finishes both.
pub fn pump(
    stage: &mut dyn HoldingStage,
    reader: kao_record::RecordReader,
    mut writer: kao_record::RecordWriter,
) -> Result<()> {
    for batch in reader {
        for done in stage.push(batch?)? {
            writer.write(&done)?;
        }
    }
    for done in stage.finish()? {
        writer.write(&done)?;
    }
    writer.finish()?;
    Ok(())
}
