//! The faces of a manifest, by video and frame, and which frames the run processed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use arrow_array::{Array, Float32Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use kao_record::RecordReader;
use kao_record::schema::{DataType, col};
use kao_video::Selector;

use crate::draw::FaceBox;

/// Faces of one video, by frame index.
pub type Frames = BTreeMap<u64, Vec<FaceBox>>;

/// What a preview needs of a manifest.
pub struct Faces {
    /// The manifest file.
    pub path: PathBuf,
    /// The sources in the order their first face appears.
    pub sources: Vec<String>,
    /// Faces per source.
    pub by_source: HashMap<String, Frames>,
    /// How the run chose its frames (kao-decode's options), when the manifest says.
    pub sampling: Option<Sampling>,
}

/// kao-decode's frame selection, as recorded in the manifest's provenance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sampling {
    /// `--every N`.
    pub every: u64,
    /// `--fps R`.
    pub fps: Option<f64>,
    /// `--start S`.
    pub start: Option<f64>,
    /// `--end S`.
    pub end: Option<f64>,
    /// `--max-frames N`.
    pub max_frames: Option<u64>,
}

impl Sampling {
    /// A fresh selector that tells a video's processed frames apart, as kao-decode did.
    pub fn selector(&self) -> Selector {
        Selector::new(self.every, self.fps, self.start, self.end, self.max_frames)
    }
}

/// The manifest of `path`: an output folder (its `manifest.parquet`) or a record file.
pub fn manifest_path(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        let file = path.join(kao_pipeline::align::manifest::MANIFEST);
        if !file.is_file() {
            bail!(
                "{}: no {} here (not a kao output folder?)",
                path.display(),
                kao_pipeline::align::manifest::MANIFEST
            );
        }
        return Ok(file);
    }
    if !path.exists() {
        bail!("{}: no such file or folder", path.display());
    }
    Ok(path.to_path_buf())
}

impl Faces {
    /// Reads the faces of the manifest at `path` (a folder or a file).
    pub fn load(path: &Path) -> Result<Faces> {
        let path = manifest_path(path)?;
        let reader = RecordReader::open(Some(&path))?;
        let name = reader.name().to_string();
        reader.require(
            "kao-preview",
            &[
                (col::SOURCE, DataType::Utf8),
                (col::FRAME_INDEX, DataType::UInt64),
                (col::X, DataType::Float32),
                (col::Y, DataType::Float32),
                (col::W, DataType::Float32),
                (col::H, DataType::Float32),
            ],
        )?;
        // The label's columns are optional, but must have their types when present.
        let schema = reader.schema();
        let optional = [
            (col::IDENTITY, DataType::Utf8),
            (col::SIMILAR_PERCENTAGE, DataType::Float32),
            (col::DISTANCE, DataType::Float32),
            (col::TRACK_ID, DataType::UInt64),
            (kao_pipeline::cluster::CLUSTER_ID, DataType::UInt32),
        ];
        let present: Vec<_> = optional
            .into_iter()
            .filter(|(c, _)| schema.field_with_name(c).is_ok())
            .collect();
        reader.require("kao-preview", &present)?;
        let sampling = sampling(&reader.provenance()?);
        let mut faces = Faces {
            path,
            sources: Vec::new(),
            by_source: HashMap::new(),
            sampling,
        };
        let mut row = 0u64;
        for batch in reader {
            let batch = batch?;
            kao_pipeline::check_boxes(&batch, &name, row)?;
            faces
                .add(&batch)
                .with_context(|| format!("{name}: rows from {row}"))?;
            row += batch.num_rows() as u64;
        }
        Ok(faces)
    }

    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let source: &StringArray = column(batch, col::SOURCE)?;
        let frame: &UInt64Array = column(batch, col::FRAME_INDEX)?;
        let [x, y, w, h] =
            [col::X, col::Y, col::W, col::H].map(|c| column::<Float32Array>(batch, c));
        let (x, y, w, h) = (x?, y?, w?, h?);
        let identity: Option<&StringArray> = column(batch, col::IDENTITY).ok();
        let percentage: Option<&Float32Array> = column(batch, col::SIMILAR_PERCENTAGE).ok();
        let distance: Option<&Float32Array> = column(batch, col::DISTANCE).ok();
        let track: Option<&UInt64Array> = column(batch, col::TRACK_ID).ok();
        let cluster: Option<&UInt32Array> = column(batch, kao_pipeline::cluster::CLUSTER_ID).ok();
        for i in 0..batch.num_rows() {
            if source.is_null(i) || frame.is_null(i) {
                bail!("a face without its video or frame");
            }
            let face = FaceBox {
                x: x.value(i),
                y: y.value(i),
                w: w.value(i),
                h: h.value(i),
                identity: identity
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i).to_string()),
                cluster: cluster.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
                percentage: percentage.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
                distance: distance.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
                track: track.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
            };
            let src = source.value(i);
            if !self.by_source.contains_key(src) {
                self.sources.push(src.to_string());
            }
            self.by_source
                .entry(src.to_string())
                .or_default()
                .entry(frame.value(i))
                .or_default()
                .push(face);
        }
        Ok(())
    }
}

fn column<'a, A: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a A> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<A>())
        .with_context(|| format!("column `{name}` is missing or has another type"))
}

/// kao-decode's options from the provenance, when it is there.
fn sampling(history: &[kao_record::Provenance]) -> Option<Sampling> {
    let o = &history.iter().find(|p| p.stage == "kao-decode")?.options;
    let f = |k: &str| o.get(k).and_then(serde_json::Value::as_f64);
    let u = |k: &str| o.get(k).and_then(serde_json::Value::as_u64);
    Some(Sampling {
        every: u("every").unwrap_or(1).max(1),
        fps: f("fps"),
        start: f("start"),
        end: f("end"),
        max_frames: u("max_frames"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_comes_from_kao_decodes_options() {
        let entry = kao_record::Provenance::new(
            "kao-decode",
            "0",
            serde_json::json!({"inputs": ["a.mp4"], "every": 3, "fps": null, "start": 1.5, "end": null, "max_frames": null}),
        );
        let s = sampling(&[entry]).unwrap();
        assert_eq!(
            s,
            Sampling {
                every: 3,
                start: Some(1.5),
                ..Sampling::default()
            }
        );
        assert_eq!(sampling(&[]), None);
    }
}
