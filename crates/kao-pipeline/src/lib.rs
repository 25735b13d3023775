//! kao's stages as a library, shared by the stage binaries (`kao-detect`, `kao-embed`,
//! `kao-match`, `kao-align`) and by `kao-extract`, which runs them in one process.
//!
//! Each stage turns record batches into record batches with the same schema rules as the
//! pipe (records.md), so the one-process run and the piped chain write the same manifest.

pub mod crop;
pub mod detect;
pub mod embed;
pub mod refs;
pub mod identify;
pub mod manifest;
pub mod align;
pub mod cli;
pub mod quality;
pub mod shot;
pub mod track;

use anyhow::{Result, anyhow};
use arrow_array::{Array, RecordBatch};

/// Column `name` of `batch` as array type `A` (schemas are checked when a stage is made).
pub(crate) fn column<'a, A: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a A> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<A>())
        .ok_or_else(|| anyhow!("column `{name}` is missing or has the wrong type"))
}
