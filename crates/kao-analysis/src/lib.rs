//! kao's manifests as polars data frames, for `kao-report` and the notebooks.
//!
//! - [`Manifest`]: `DIR/manifest.parquet` (or any face-record Parquet file) loaded with polars,
//!   with its key-value metadata and the embeddings as a matrix.
//! - [`summary`]: per identity (faces, crops, median distance, time on screen), per video, and
//!   rejection reasons.
//! - [`pca`]: embeddings projected to 2-D.
//! - [`threshold`]: same/different-person distances on a labelled face set, and the ROC.
//! - [`charts`]: plotters drawings (histograms, timelines, scatter plots, ROC) on any drawing
//!   area: SVG strings for the report, inline figures in the notebooks.
//!
//! polars is a heavy dependency, so no stage binary depends on this crate.

#![forbid(unsafe_code)]

pub mod charts;
pub mod manifest;
pub mod pca;
pub mod summary;
pub mod threshold;

pub use manifest::{Face, Manifest, Metric, label_from_path};
/// The polars, plotters and nalgebra this crate is built with, for notebooks and kao-report.
pub use {nalgebra, plotters, polars};

/// Why a manifest could not be loaded or analysed. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The file is missing or unreadable.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// polars could not read the file or run a query on it.
    #[error("{path}: {source}")]
    Polars {
        path: String,
        source: polars::error::PolarsError,
    },
    /// A column the analysis needs is missing or has another type.
    #[error("{path}: {message}")]
    Column { path: String, message: String },
    /// A chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
}

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, AnalysisError>;
