//! The Arrow record contract between kao stages (see `docs/records.md`).
//!
//! Stages exchange Arrow record batches: an IPC stream on stdin/stdout, or a file on disk
//! (Parquet, an IPC file or an IPC stream). This crate owns the schemas, the readers and
//! writers for every format, the `kao.schema` / `kao.provenance` metadata, and the helpers a
//! stage uses to pass through the columns it does not own.

#![forbid(unsafe_code)]

mod atomic;
pub mod cli;
pub mod embedding;
mod error;
mod io;
pub mod schema;

pub use atomic::{temp_path, write_atomic};
pub use embedding::{EmbeddingSpace, Metric};
pub use error::{RecordError, SchemaError};
pub use io::{Format, RecordReader, RecordWriter};
pub use schema::{Provenance, SCHEMA_VERSION};
