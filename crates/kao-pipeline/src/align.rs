//! The align stage: writes an aligned crop of each matched face and the manifest rows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow};
use arrow_array::{Array, ArrayRef, BinaryArray, FixedSizeListArray, Int32Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use kao_dlib::RgbView;
use kao_record::schema::{DataType, Field, SchemaRef, col, fixed_f32_list, stage_schema};
use kao_record::{Provenance, RecordError};

use crate::column;
use crate::crop::{CropSpec, crop_file_name, cut_crop, encode, sanitize_identity, write_atomic};
use crate::embed::patch_landmarks;

/// Folder of the crops of unmatched faces (with `--all`).
pub const UNKNOWN_DIR: &str = "unknown";

/// Everything that shapes the align stage's output.
#[derive(Clone, Debug, Default)]
pub struct AlignOptions {
    /// Size, padding and file format of the crops.
    pub crop: CropSpec,
    /// Also write crops of unmatched faces, under `unknown/`.
    pub all: bool,
}

impl AlignOptions {
    /// The stage's provenance entry.
    pub fn provenance(&self) -> Provenance {
        Provenance::new(
            "kao-align",
            env!("CARGO_PKG_VERSION"),
            serde_json::json!({
                "size": self.crop.size, "padding": self.crop.padding, "format": self.crop.format.extension(),
                "quality": self.crop.quality, "all": self.all,
            }),
        )
    }
}

/// The align stage: face records with `identity` in, manifest rows (no patch, `crop_path`
/// added) out, crops written under the output folder as it goes.
pub struct AlignStage {
    options: AlignOptions,
    dir: PathBuf,
    schema: SchemaRef,
    /// The input columns that pass through: everything but the patch.
    kept: Vec<usize>,
    name: String,
    crops: u64,
}

impl AlignStage {
    /// The stage for face records named `name` with `input` schema (checked here), writing
    /// crops under `dir`.
    pub fn new(options: AlignOptions, input: &SchemaRef, name: &str, dir: &Path) -> Result<AlignStage> {
        if !(options.crop.size >= 8 && options.crop.size <= 4096) {
            anyhow::bail!("--size must be between 8 and 4096");
        }
        if !(options.crop.padding >= 0.0 && options.crop.padding <= 4.0) {
            anyhow::bail!("--padding must be between 0 and 4");
        }
        kao_record::schema::require(
            input,
            name,
            "kao-align",
            &[
                (col::SOURCE, DataType::Utf8),
                (col::FRAME_INDEX, DataType::UInt64),
                (col::FACE_INDEX, DataType::UInt32),
                (col::PATCH, DataType::Binary),
                (col::PATCH_X, DataType::Int32),
                (col::PATCH_Y, DataType::Int32),
                (col::PATCH_W, DataType::UInt32),
                (col::PATCH_H, DataType::UInt32),
                (col::LANDMARKS, fixed_f32_list(10)),
                (col::IDENTITY, DataType::Utf8),
            ],
        )?;
        let added = vec![Field::new(col::CROP_PATH, DataType::Utf8, true)];
        let schema = stage_schema(input, &[col::PATCH], added, &options.provenance())
            .map_err(|e| RecordError::Metadata { name: name.to_string(), message: e.to_string() })?;
        let kept = (0..input.fields().len()).filter(|&i| input.field(i).name() != col::PATCH).collect();
        Ok(AlignStage { options, dir: dir.to_path_buf(), schema, kept, name: name.to_string(), crops: 0 })
    }

    /// The schema of the manifest rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Crops written so far.
    pub fn crops_written(&self) -> u64 {
        self.crops
    }

    /// Writes the crops of `batch` and returns its manifest rows. `first_row` numbers the
    /// rows in error messages.
    pub fn process(&mut self, batch: &RecordBatch, first_row: u64) -> Result<RecordBatch> {
        let sources = column::<StringArray>(batch, col::SOURCE)?;
        let frames = column::<UInt64Array>(batch, col::FRAME_INDEX)?;
        let faces = column::<UInt32Array>(batch, col::FACE_INDEX)?;
        let identities = column::<StringArray>(batch, col::IDENTITY)?;
        let patch = column::<BinaryArray>(batch, col::PATCH)?;
        let px = column::<Int32Array>(batch, col::PATCH_X)?;
        let py = column::<Int32Array>(batch, col::PATCH_Y)?;
        let pw = column::<UInt32Array>(batch, col::PATCH_W)?;
        let ph = column::<UInt32Array>(batch, col::PATCH_H)?;
        let landmarks = column::<FixedSizeListArray>(batch, col::LANDMARKS)?;
        let mut paths: Vec<Option<String>> = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let row = first_row + i as u64;
            let folder = if identities.is_valid(i) {
                sanitize_identity(identities.value(i))
            } else if self.options.all {
                UNKNOWN_DIR.to_string()
            } else {
                paths.push(None);
                continue;
            };
            let marks = patch_landmarks(landmarks, i, (px.value(i), py.value(i)))
                .ok_or_else(|| anyhow!("{}: row {row}: landmarks are not float32", self.name))?;
            let (w, h) = (pw.value(i) as usize, ph.value(i) as usize);
            let bytes = patch.value(i);
            let view = RgbView::new(w, h, bytes)
                .ok_or_else(|| anyhow!("{}: row {row}: patch has {} bytes, expected {w}×{h}×3", self.name, bytes.len()))?;
            let crop = cut_crop(&view, &marks, &self.options.crop).map_err(|e| anyhow!("{}: row {row}: {e}", self.name))?;
            let encoded = encode(&crop, self.options.crop.format, self.options.crop.quality)?;
            let file = crop_file_name(sources.value(i), frames.value(i), faces.value(i), self.options.crop.format);
            let relative = format!("{folder}/{file}");
            write_atomic(&self.dir.join(&relative), &encoded)?;
            self.crops += 1;
            paths.push(Some(relative));
        }
        let mut columns = batch.project(&self.kept)?.columns().to_vec();
        columns.push(Arc::new(StringArray::from(paths)) as ArrayRef);
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}
