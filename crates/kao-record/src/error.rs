//! Errors of record I/O, each naming the input or output it concerns.

use arrow_schema::ArrowError;
use parquet::errors::ParquetError;

/// An error reading or writing kao records; the message names the file (or `stdin`/`stdout`).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be opened, created, read or written.
    #[error("{name}: {error}")]
    Io {
        /// File name, `stdin` or `stdout`.
        name: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The bytes are not a valid Arrow IPC stream or file.
    #[error("{name}: not a valid Arrow record stream: {error}")]
    Arrow {
        /// File name, `stdin` or `stdout`.
        name: String,
        /// The underlying error.
        error: ArrowError,
    },
    /// Records could not be written (a full disk, a closed pipe, ...).
    #[error("{name}: cannot write the records: {}", arrow_reason(error))]
    Write {
        /// File name or `stdout`.
        name: String,
        /// The underlying error.
        error: ArrowError,
    },
    /// A record stream ended without its end-of-stream marker: the stage writing it died.
    #[error(
        "{name}: the record stream ends without its end marker: the stage writing it stopped early (see its error)"
    )]
    Cut {
        /// Input name.
        name: String,
    },
    /// The Parquet file is invalid or could not be written.
    #[error("{name}: {error}")]
    Parquet {
        /// File name.
        name: String,
        /// The underlying error.
        error: ParquetError,
    },
    /// The records lack a column that this stage needs.
    #[error(
        "{name}: {stage} needs column `{column}`, which {producer} adds; is {producer} missing from the pipe?"
    )]
    MissingColumn {
        /// Input name.
        name: String,
        /// The stage that needs the column.
        stage: String,
        /// The missing column.
        column: String,
        /// The stage that produces it.
        producer: String,
    },
    /// A column exists but has the wrong Arrow type.
    #[error("{name}: column `{column}` has type {found}, {stage} expects {expected}")]
    ColumnType {
        /// Input name.
        name: String,
        /// The stage that reads the column.
        stage: String,
        /// The column.
        column: String,
        /// Its type in the input.
        found: String,
        /// The type the contract gives it.
        expected: String,
    },
    /// The schema metadata is not what kao writes (e.g. unreadable provenance).
    #[error("{name}: {message}")]
    Metadata {
        /// Input name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl RecordError {
    /// True when the error is a closed pipe on the output (`kao-decode x.mp4 | head`);
    /// a stage then ends quietly with status 0.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            RecordError::Io { error, .. } => error.kind() == std::io::ErrorKind::BrokenPipe,
            RecordError::Arrow { error, .. } | RecordError::Write { error, .. } => {
                arrow_is_broken_pipe(error)
            }
            RecordError::Parquet {
                error: ParquetError::External(e),
                ..
            } => e
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
            _ => false,
        }
    }

    /// An error reading records: an I/O error as such, anything else as invalid records.
    pub(crate) fn arrow(name: &str, source: ArrowError) -> Self {
        match source {
            ArrowError::IoError(_, io) => RecordError::io(name, io),
            error => RecordError::Arrow {
                name: name.to_string(),
                error,
            },
        }
    }

    /// An error writing records.
    pub(crate) fn write(name: &str, source: ArrowError) -> Self {
        RecordError::Write {
            name: name.to_string(),
            error: source,
        }
    }

    pub(crate) fn io(name: &str, source: std::io::Error) -> Self {
        RecordError::Io {
            name: name.to_string(),
            error: source,
        }
    }

    pub(crate) fn parquet(name: &str, source: ParquetError) -> Self {
        RecordError::Parquet {
            name: name.to_string(),
            error: source,
        }
    }
}

/// An Arrow error in a few words: the I/O error itself when there is one.
fn arrow_reason(e: &ArrowError) -> String {
    match e {
        ArrowError::IoError(_, io) => io.to_string(),
        other => other.to_string(),
    }
}

fn arrow_is_broken_pipe(e: &ArrowError) -> bool {
    match e {
        ArrowError::IoError(_, io) => io.kind() == std::io::ErrorKind::BrokenPipe,
        ArrowError::ExternalError(inner) => inner
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
        _ => false,
    }
}
