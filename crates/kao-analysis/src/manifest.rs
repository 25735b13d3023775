//! Loading a manifest (or any Parquet file of face records) into a polars [`DataFrame`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::{AnalysisError, Result};

/// File name of the manifest inside a kao output folder.
pub const MANIFEST: &str = "manifest.parquet";
/// Metadata key naming the frames a run processed (`all` or `every:N`).
pub const META_FRAMES_PROCESSED: &str = "kao.frames_processed";
/// Metadata key of the records' provenance (one entry per stage, as JSON).
pub const META_PROVENANCE: &str = "kao.provenance";
/// Columns of pixels, left out when loading: a manifest has none, but a face-record file
/// written by `kao-cat` may carry `patch` (or frame `pixels`), which analysis never needs.
const PIXEL_COLUMNS: &[&str] = &["patch", "pixels"];

/// A manifest loaded with polars: one row per face record, without pixels.
pub struct Manifest {
    /// The Parquet file read.
    pub path: PathBuf,
    /// The face records.
    pub frame: DataFrame,
    /// The file's key-value metadata (provenance, `kao.frames_processed`, ...).
    pub metadata: BTreeMap<String, String>,
    /// The `embedding` column's field metadata (`kao.embedder`, `kao.metric`, `kao.dim`, ...);
    /// empty when the records carry none (then they are dlib's: 128-d, Euclidean).
    pub embedding_metadata: BTreeMap<String, String>,
}

/// How two embeddings are compared, as the records' `kao.metric` says (docs/records.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Euclidean distance (dlib's ResNet).
    Euclidean,
    /// Cosine distance, 1 − cos θ (FACE01's JAPANESE FACE V1 and most ONNX embedders).
    Cosine,
}

impl Metric {
    /// The distance between `a` and `b`: smaller is more alike in both metrics.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Euclidean => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt(),
            Metric::Cosine => {
                let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
                let (na, nb) = (norm(a), norm(b));
                if na == 0.0 || nb == 0.0 {
                    1.0
                } else {
                    1.0 - dot / (na * nb)
                }
            }
        }
    }
}

impl Manifest {
    /// Loads `path`: a kao output folder (its `manifest.parquet`, or, for a sharded run not
    /// merged yet, its parts `manifest/video=*/part-0.parquet` one after the other), or a
    /// Parquet file of face records.
    pub fn load(path: impl AsRef<Path>) -> Result<Manifest> {
        let given = path.as_ref();
        if !given.is_dir() {
            return Self::load_file(given.to_path_buf());
        }
        let path = given.join(MANIFEST);
        let parts = parts(given);
        if path.exists() || parts.is_empty() {
            return Self::load_file(path);
        }
        let mut loaded = parts.into_iter().map(Self::load_file);
        let mut manifest = loaded.next().expect("at least one part")?;
        for part in loaded {
            let part = part?;
            manifest
                .frame
                .vstack_mut(&part.frame)
                .map_err(|source| AnalysisError::Polars {
                    path: part.path.display().to_string(),
                    source,
                })?;
        }
        // Crop paths are relative to the run folder, as in a merged manifest.
        manifest.path = path;
        Ok(manifest)
    }

    /// Loads one Parquet file of face records.
    fn load_file(path: PathBuf) -> Result<Manifest> {
        let name = path.display().to_string();
        let file = File::open(&path).map_err(|e| AnalysisError::Io {
            path: name.clone(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                "no such file (is this a kao output folder?)".into()
            } else {
                e.to_string()
            },
        })?;
        let polars = |source| AnalysisError::Polars {
            path: name.clone(),
            source,
        };
        let mut reader = ParquetReader::new(file);
        let mut metadata: BTreeMap<String, String> = reader
            .get_metadata()
            .map_err(polars)?
            .key_value_metadata()
            .iter()
            .flatten()
            .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
            .collect();
        let mut embedding_metadata = BTreeMap::new();
        if let Some(encoded) = metadata.remove(ARROW_SCHEMA) {
            let (schema, embedding) = arrow_schema_metadata(&encoded);
            metadata.extend(schema);
            embedding_metadata = embedding;
        }
        let columns: Vec<String> = reader
            .schema()
            .map_err(polars)?
            .iter_names()
            .filter(|n| !PIXEL_COLUMNS.contains(&n.as_str()))
            .map(|n| n.to_string())
            .collect();
        let frame = reader
            .with_columns(Some(columns))
            .finish()
            .map_err(polars)?;
        let manifest = Manifest {
            path,
            frame,
            metadata,
            embedding_metadata,
        };
        manifest.require(&["source", "frame_index", "pts", "face_index"])?;
        Ok(manifest)
    }

    /// The folder holding the manifest: crop paths are relative to it.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Which frames the run processed (`all` or `every:N`), when the run recorded it.
    pub fn frames_processed(&self) -> Option<&str> {
        self.metadata.get(META_FRAMES_PROCESSED).map(String::as_str)
    }

    /// How the records' embeddings are compared (`kao.metric`; Euclidean, dlib's, when the
    /// records do not say).
    pub fn metric(&self) -> Metric {
        match self
            .embedding_metadata
            .get("kao.metric")
            .map(String::as_str)
        {
            Some("cosine") => Metric::Cosine,
            _ => Metric::Euclidean,
        }
    }

    /// The embedder that made the records' embeddings (`kao.embedder`, e.g. `dlib-resnet`,
    /// `face01-v1`, `onnx`), when the records say.
    pub fn embedder(&self) -> Option<&str> {
        self.embedding_metadata
            .get("kao.embedder")
            .map(String::as_str)
    }

    /// The matching threshold the run used (kao-match's or kao-extract's `threshold` in the
    /// provenance), when recorded: a distance in [`Manifest::metric`].
    pub fn match_threshold(&self) -> Option<f32> {
        let provenance: serde_json::Value =
            serde_json::from_str(self.metadata.get(META_PROVENANCE)?).ok()?;
        provenance
            .as_array()?
            .iter()
            .rev()
            .find(|p| p["stage"] == "kao-match" || p["stage"] == "kao-extract")
            .and_then(|p| p["options"]["threshold"].as_f64())
            .map(|t| t as f32)
    }

    /// Fails with a one-line error unless every column of `names` is present.
    pub fn require(&self, names: &[&str]) -> Result<()> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| self.frame.column(n).is_err())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(self.column_error(format!(
                "no column {} (not a kao face-record file?)",
                missing.join(", ")
            )))
        }
    }

    /// Whether the records carry column `name`.
    pub fn has(&self, name: &str) -> bool {
        self.frame.column(name).is_ok()
    }

    /// The `embedding` column as one vector per row (rows without one are skipped, so pair
    /// the result with [`Manifest::embedded_rows`]).
    pub fn embeddings(&self) -> Result<Vec<Vec<f32>>> {
        embeddings_of(&self.frame).map_err(|e| self.column_error(e))
    }

    /// The rows that have an embedding, in the order of [`Manifest::embeddings`].
    pub fn embedded_rows(&self) -> Result<DataFrame> {
        let run = || {
            self.frame
                .filter(&self.frame.column("embedding")?.is_not_null())
        };
        run().map_err(|source| AnalysisError::Polars {
            path: self.path.display().to_string(),
            source,
        })
    }

    /// Every row as a [`Face`], in file order. Optional columns that are missing read as
    /// `None`.
    pub fn faces(&self) -> Result<Vec<Face>> {
        self.require(&["x", "y", "w", "h"])?;
        let f = &self.frame;
        let err = |e: PolarsError| AnalysisError::Polars {
            path: self.path.display().to_string(),
            source: e,
        };
        let cast = |name: &str, dtype: DataType| -> Result<Option<Column>> {
            match f.column(name) {
                Ok(c) => c.cast(&dtype).map(Some).map_err(err),
                Err(_) => Ok(None),
            }
        };
        let strings = |name: &str| -> Result<Vec<Option<String>>> {
            Ok(match cast(name, DataType::String)? {
                Some(c) => c
                    .str()
                    .map_err(err)?
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect(),
                None => vec![None; f.height()],
            })
        };
        let floats = |name: &str| -> Result<Vec<Option<f64>>> {
            Ok(match cast(name, DataType::Float64)? {
                Some(c) => c.f64().map_err(err)?.iter().collect(),
                None => vec![None; f.height()],
            })
        };
        let integers = |name: &str| -> Result<Vec<Option<u64>>> {
            Ok(match cast(name, DataType::UInt64)? {
                Some(c) => c.u64().map_err(err)?.iter().collect(),
                None => vec![None; f.height()],
            })
        };
        let (source, frame_index, pts, face_index) = (
            strings("source")?,
            integers("frame_index")?,
            floats("pts")?,
            integers("face_index")?,
        );
        let (x, y, w, h) = (floats("x")?, floats("y")?, floats("w")?, floats("h")?);
        let (shot, track_id, identity, distance) = (
            integers("shot")?,
            integers("track_id")?,
            strings("identity")?,
            floats("distance")?,
        );
        let cluster_id = integers("cluster_id")?;
        let (crop_path, reject_reason, sharpness, yaw) = (
            strings("crop_path")?,
            strings("reject_reason")?,
            floats("sharpness")?,
            floats("yaw")?,
        );
        Ok((0..f.height())
            .map(|i| Face {
                source: source[i].clone().unwrap_or_default(),
                frame_index: frame_index[i].unwrap_or(0),
                pts: pts[i].unwrap_or(0.0),
                face_index: face_index[i].unwrap_or(0) as u32,
                bbox: [x[i], y[i], w[i], h[i]].map(|v| v.unwrap_or(0.0) as f32),
                shot: shot[i].map(|v| v as u32),
                track_id: track_id[i],
                identity: identity[i].clone(),
                cluster_id: cluster_id[i].map(|v| v as u32),
                distance: distance[i].map(|v| v as f32),
                crop_path: crop_path[i].clone(),
                reject_reason: reject_reason[i].clone(),
                sharpness: sharpness[i].map(|v| v as f32),
                yaw: yaw[i].map(|v| v as f32),
            })
            .collect())
    }

    fn column_error(&self, message: String) -> AnalysisError {
        AnalysisError::Column {
            path: self.path.display().to_string(),
            message,
        }
    }
}

/// The Parquet metadata key under which Arrow writers (arrow-rs, pyarrow) keep the Arrow
/// schema, with its own metadata (kao's provenance among it).
const ARROW_SCHEMA: &str = "ARROW:schema";

/// The schema-level metadata inside an `ARROW:schema` value (base64 of an IPC schema message)
/// and the `embedding` field's metadata; empty when they cannot be read.
fn arrow_schema_metadata(encoded: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    use base64::Engine;
    let strings = |meta: &polars_arrow::datatypes::Metadata| -> BTreeMap<String, String> {
        meta.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return Default::default();
    };
    // An encapsulated IPC message: continuation marker and length, then the flatbuffer.
    let message = if bytes.len() >= 8 && bytes[..4] == [0xff; 4] {
        &bytes[8..]
    } else {
        &bytes[..]
    };
    match polars_arrow::io::ipc::read::deserialize_schema(message) {
        Ok((schema, _, meta)) => (
            meta.as_ref().map(strings).unwrap_or_default(),
            schema
                .get("embedding")
                .and_then(|f| f.metadata.as_deref())
                .map(strings)
                .unwrap_or_default(),
        ),
        Err(_) => Default::default(),
    }
}

/// One face record of a manifest, the columns a report needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Face {
    /// The video (or image) the face is in.
    pub source: String,
    /// Frame index in the video.
    pub frame_index: u64,
    /// Presentation time, seconds.
    pub pts: f64,
    /// Index of the face within its frame.
    pub face_index: u32,
    /// Box in frame pixels: x, y, width, height.
    pub bbox: [f32; 4],
    /// Shot within the video.
    pub shot: Option<u32>,
    /// Track (the same person across frames).
    pub track_id: Option<u64>,
    /// Matched identity.
    pub identity: Option<String>,
    /// Cluster of unknown people (kao-cluster), for faces without an identity.
    pub cluster_id: Option<u32>,
    /// Distance to the nearest reference.
    pub distance: Option<f32>,
    /// The crop written, relative to the manifest's folder.
    pub crop_path: Option<String>,
    /// Why no crop was written.
    pub reject_reason: Option<String>,
    /// Variance of the Laplacian of the aligned chip.
    pub sharpness: Option<f32>,
    /// Head yaw, degrees.
    pub yaw: Option<f32>,
}

/// The `embedding` column of `frame` (a fixed-size list of f32) as one vector per row that has
/// one.
pub fn embeddings_of(frame: &DataFrame) -> std::result::Result<Vec<Vec<f32>>, String> {
    let column = frame
        .column("embedding")
        .map_err(|_| "no embedding column (run kao-embed first)".to_string())?;
    let array = column.array().map_err(|_| {
        format!(
            "embedding column is {}, not a fixed-size list",
            column.dtype()
        )
    })?;
    let width = array.width();
    let array = array.rechunk();
    let inner = array
        .get_inner()
        .cast(&DataType::Float32)
        .map_err(|e| e.to_string())?;
    let values: Vec<f32> = inner
        .f32()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|v| v.unwrap_or(f32::NAN))
        .collect();
    let present: Vec<bool> = array
        .is_not_null()
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect();
    let vectors = present
        .iter()
        .enumerate()
        .filter(|(_, p)| **p)
        .map(|(row, _)| values[row * width..(row + 1) * width].to_vec())
        .collect();
    Ok(vectors)
}

/// The label of a photo in a labelled face set laid out like `--ref` folders
/// (`faces/<name>/photo.jpg`): its folder's name; for a photo directly in the set's root,
/// its file name up to the first `_` (kao-match's naming rule).
pub fn label_from_path(path: &str, root: &str) -> String {
    let path = Path::new(path);
    let root = Path::new(root);
    match path.parent() {
        Some(parent) if parent != root && !parent.as_os_str().is_empty() => parent
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        _ => {
            let stem = path
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            stem.split('_').next().unwrap_or_default().to_string()
        }
    }
}

/// The manifest parts of a sharded run folder (`manifest/video=*/part-0.parquet`), sorted.
fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir.join("manifest"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("video="))
        .map(|e| e.path().join("part-0.parquet"))
        .filter(|p| p.is_file())
        .collect();
    parts.sort();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharded_runs_parts_load_as_one_manifest() {
        let dir = tempfile::tempdir().unwrap();
        for (video, faces) in [("a", 2u32), ("b", 3)] {
            let part = dir.path().join(format!("manifest/video={video}"));
            std::fs::create_dir_all(&part).unwrap();
            let n = faces as usize;
            let mut frame = df!(
                "source" => vec![format!("{video}.mp4"); n],
                "frame_index" => (0..faces as u64).collect::<Vec<_>>(),
                "pts" => vec![0.0f64; n],
                "face_index" => vec![0u32; n],
            )
            .unwrap();
            let file = File::create(part.join("part-0.parquet")).unwrap();
            ParquetWriter::new(file).finish(&mut frame).unwrap();
        }
        let manifest = Manifest::load(dir.path()).unwrap();
        assert_eq!(manifest.frame.height(), 5);
        assert_eq!(manifest.dir(), dir.path());
        // A folder with neither is a one-line error naming the manifest.
        let empty = tempfile::tempdir().unwrap();
        let e = Manifest::load(empty.path()).err().unwrap().to_string();
        assert!(e.contains("manifest.parquet") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn labels_follow_the_reference_naming_rule() {
        assert_eq!(
            label_from_path("faces/katy_perry/img42.jpg", "faces"),
            "katy_perry"
        );
        assert_eq!(label_from_path("faces/matt_damon_1.jpg", "faces"), "matt");
        assert_eq!(label_from_path("faces/obama.jpg", "faces"), "obama");
        assert_eq!(label_from_path("faces/x/y/z.png", "faces"), "y");
    }
}
