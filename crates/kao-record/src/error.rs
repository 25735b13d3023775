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
    /// The schema or its metadata is not what kao writes (e.g. unreadable provenance).
    #[error("{name}: {error}")]
    Metadata {
        /// Input name.
        name: String,
        /// What is wrong.
        error: Box<SchemaError>,
    },
    /// The input holds no records at all.
    #[error("{name}: no records: the {what} is empty")]
    Empty {
        /// Input name.
        name: String,
        /// `input` or `file`.
        what: &'static str,
    },
    /// A batch of records could not be put together (a column longer than Arrow allows).
    #[error("{name}: cannot assemble the records: {error}")]
    Batch {
        /// Input name.
        name: String,
        /// The underlying error.
        error: ArrowError,
    },
}

/// A schema, its kao metadata or its `embedding` column that is not what kao writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A metric name other than `euclidean` or `cosine`.
    #[error("unknown metric `{0}` (euclidean or cosine)")]
    UnknownMetric(String),
    /// The records have no `embedding` column.
    #[error("no `{0}` column")]
    NoEmbedding(String),
    /// The `embedding` column is not a fixed-size list of float32.
    #[error("column `{column}` is {found}, expected a fixed-size list of float32")]
    NotAnEmbedding {
        /// The column.
        column: String,
        /// Its Arrow type.
        found: String,
    },
    /// An embedding column that is not dlib's size and does not name its model.
    #[error(
        "column `{column}` ({dim} floats) does not say which model made it (no `kao.embedder` metadata)"
    )]
    UnknownModel {
        /// The column.
        column: String,
        /// Floats per embedding.
        dim: usize,
    },
    /// An embedding metadata key is missing or unreadable.
    #[error("column `{column}`: metadata `{key}` is {problem}")]
    BadKey {
        /// The column.
        column: String,
        /// The metadata key.
        key: String,
        /// `missing`, `not a number`, or what is wrong with the value.
        problem: String,
    },
    /// The column's size and its metadata disagree.
    #[error("column `{column}` holds {dim} floats but its metadata says {declared}")]
    DimMismatch {
        /// The column.
        column: String,
        /// Floats per embedding in the data.
        dim: usize,
        /// Floats per embedding in the metadata.
        declared: usize,
    },
    /// Two sets of embeddings from different models.
    #[error(
        "{what} were embedded with {ours} but {other_what} with {theirs}; embed both with the same --embedder"
    )]
    DifferentSpaces {
        /// Where the first set comes from ("the faces").
        what: String,
        /// Its embedding space.
        ours: String,
        /// Where the second set comes from ("the references").
        other_what: String,
        /// Its embedding space.
        theirs: String,
    },
    /// The `kao.provenance` metadata is not the JSON kao writes.
    #[error("unreadable kao.provenance metadata: {0}")]
    Provenance(String),
}

impl SchemaError {
    /// The error as a record error of the input or output `name`.
    pub fn at(self, name: &str) -> RecordError {
        RecordError::Metadata {
            name: name.to_string(),
            error: Box::new(self),
        }
    }
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
