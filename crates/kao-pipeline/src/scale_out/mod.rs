//! Scale-out: one long list of videos over many machines (docs/scale-out.md).
//!
//! * [`shard`]: which videos a task takes (the shard rule; Slurm's and Kubernetes' variables).
//! * [`parts`]: a sharded run's layout, one manifest part per video, and the merge into one
//!   `manifest.parquet`.
//! * [`remote`]: telling an object-storage URL from a folder, and showing it without
//!   credentials; in every build, so that a build without the feature refuses a URL in one
//!   line.
//! * `store` (feature `object-store`): a run folder in S3, Google Cloud Storage, Azure or a
//!   `file://` URL; `upload`: a kao-extract shard writing into one, staged locally one video
//!   at a time.

pub mod parts;
pub mod remote;
pub mod shard;
#[cfg(feature = "object-store")]
pub mod store;
#[cfg(feature = "object-store")]
pub mod upload;
