//! Column names, Arrow types and schema metadata of the frame and face records.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array, RecordBatch,
    StringArray, UInt32Array, UInt64Array,
};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::ArrowError;
pub use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::{RecordError, SchemaError};

/// Version of the record contract, stored under [`META_SCHEMA`] in every stream kao writes.
pub const SCHEMA_VERSION: &str = "1";
/// Schema metadata key holding [`SCHEMA_VERSION`].
pub const META_SCHEMA: &str = "kao.schema";
/// Schema metadata key holding the JSON array of [`Provenance`] entries, oldest first.
pub const META_PROVENANCE: &str = "kao.provenance";

/// Column names of the contract.
pub mod col {
    /// Input as given (path, URL or device).
    pub const SOURCE: &str = "source";
    /// 0-based index of the frame in its input, counting skipped frames.
    pub const FRAME_INDEX: &str = "frame_index";
    /// Presentation time in seconds.
    pub const PTS: &str = "pts";
    /// Frame width in pixels.
    pub const WIDTH: &str = "width";
    /// Frame height in pixels.
    pub const HEIGHT: &str = "height";
    /// RGB24 pixels, row-major, width*height*3 bytes.
    pub const PIXELS: &str = "pixels";
    /// Index of the face within its frame.
    pub const FACE_INDEX: &str = "face_index";
    /// Face box left edge.
    pub const X: &str = "x";
    /// Face box top edge.
    pub const Y: &str = "y";
    /// Face box width.
    pub const W: &str = "w";
    /// Face box height.
    pub const H: &str = "h";
    /// Detector confidence.
    pub const SCORE: &str = "score";
    /// Five landmarks (x0,y0,…,x4,y4) in dlib's 5-point order.
    pub const LANDMARKS: &str = "landmarks";
    /// RGB24 region of the frame around the face.
    pub const PATCH: &str = "patch";
    /// Patch position and size in the frame.
    pub const PATCH_X: &str = "patch_x";
    /// Patch top edge.
    pub const PATCH_Y: &str = "patch_y";
    /// Patch width.
    pub const PATCH_W: &str = "patch_w";
    /// Patch height.
    pub const PATCH_H: &str = "patch_h";
    /// Same person across consecutive frames.
    pub const TRACK_ID: &str = "track_id";
    /// Index of the shot within its source (a cut starts the next).
    pub const SHOT: &str = "shot";
    /// True when the detector found the face in this frame; false when it was followed
    /// from the previous frame by its landmarks (kao-detect).
    pub const DETECTED: &str = "detected";
    /// True when a second detector found this face (the detector pass missed it near its
    /// box in the previous frame, or saw it only on a tile) or placed it again (a small face
    /// the detector boxed loosely), or it was followed from such a face: its box and score
    /// are that detector's (kao-detect).
    pub const SECOND_DETECTOR: &str = "second_detector";
    /// Face embedding.
    pub const EMBEDDING: &str = "embedding";
    /// Variance of the Laplacian of the aligned chip (higher is sharper).
    pub const SHARPNESS: &str = "sharpness";
    /// Mean grey level of the aligned chip, 0–255.
    pub const EXPOSURE: &str = "exposure";
    /// Head turn in degrees, from the landmarks.
    pub const YAW: &str = "yaw";
    /// Head tilt in degrees, from the landmarks.
    pub const PITCH: &str = "pitch";
    /// Eye-line rotation in degrees.
    pub const ROLL: &str = "roll";
    /// Matched reference name.
    pub const IDENTITY: &str = "identity";
    /// Distance to the nearest reference.
    pub const DISTANCE: &str = "distance";
    /// FACE01's similar_percentage of `distance` (null for embedders without a curve).
    pub const SIMILAR_PERCENTAGE: &str = "similar_percentage";
    /// Distance to the nearest face of the matched person in the same video that matched
    /// on the references.
    pub const VIDEO_DISTANCE: &str = "video_distance";
    /// Path of the written crop, relative to the output folder.
    pub const CROP_PATH: &str = "crop_path";
    /// Why no crop was written for a face (null when one was).
    pub const REJECT_REASON: &str = "reject_reason";
}

/// The stage that adds `column` to the records, for error messages.
pub fn producer_of(column: &str) -> &'static str {
    use col::*;
    match column {
        SOURCE | FRAME_INDEX | PTS | WIDTH | HEIGHT | PIXELS => "kao-decode",
        EMBEDDING | SHARPNESS | EXPOSURE | YAW | PITCH | ROLL => "kao-embed",
        IDENTITY | DISTANCE | SIMILAR_PERCENTAGE | VIDEO_DISTANCE => "kao-match",
        CROP_PATH | REJECT_REASON => "kao-align",
        TRACK_ID => "kao-detect or kao-track",
        _ => "kao-detect",
    }
}

/// The fields of a frame record (kao-decode's output).
pub fn frame_fields() -> Vec<Field> {
    vec![
        Field::new(col::SOURCE, DataType::Utf8, false),
        Field::new(col::FRAME_INDEX, DataType::UInt64, false),
        Field::new(col::PTS, DataType::Float64, false),
        Field::new(col::WIDTH, DataType::UInt32, false),
        Field::new(col::HEIGHT, DataType::UInt32, false),
        Field::new(col::PIXELS, DataType::Binary, false),
    ]
}

/// The fields kao-detect adds to the frame's `source, frame_index, pts, width, height`.
pub fn face_fields() -> Vec<Field> {
    let f32 = |name| Field::new(name, DataType::Float32, false);
    vec![
        Field::new(col::FACE_INDEX, DataType::UInt32, false),
        f32(col::X),
        f32(col::Y),
        f32(col::W),
        f32(col::H),
        f32(col::SCORE),
        Field::new(col::LANDMARKS, fixed_f32_list(10), false),
        Field::new(col::PATCH, DataType::Binary, false),
        Field::new(col::PATCH_X, DataType::Int32, false),
        Field::new(col::PATCH_Y, DataType::Int32, false),
        Field::new(col::PATCH_W, DataType::UInt32, false),
        Field::new(col::PATCH_H, DataType::UInt32, false),
        Field::new(col::TRACK_ID, DataType::UInt64, true),
    ]
}

/// `fixed_size_list<float32>[n]`, the type of `landmarks` and `embedding`.
pub fn fixed_f32_list(n: i32) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), n)
}

/// One stage's entry in the `kao.provenance` metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Stage name, e.g. `kao-decode`.
    pub stage: String,
    /// Version of the stage.
    pub version: String,
    /// Model used by the stage, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// The options the stage ran with.
    #[serde(default)]
    pub options: serde_json::Value,
}

/// A model file named in provenance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    /// Model name from models/manifest.tsv.
    pub name: String,
    /// sha256 of the model file.
    pub sha256: String,
}

impl Provenance {
    /// An entry for `stage` at `version` with the given options.
    pub fn new(stage: &str, version: &str, options: serde_json::Value) -> Self {
        Provenance {
            stage: stage.into(),
            version: version.into(),
            model: None,
            options,
        }
    }
}

/// The provenance entries recorded in `schema`, oldest first (empty when there are none).
pub fn provenance(schema: &Schema) -> Result<Vec<Provenance>, SchemaError> {
    match schema.metadata().get(META_PROVENANCE) {
        None => Ok(Vec::new()),
        Some(text) => {
            serde_json::from_str(text).map_err(|e| SchemaError::Provenance(e.to_string()))
        }
    }
}

/// Builds a stage's output schema: the input's fields minus `drop` and minus any field named
/// in `add` (a stage run twice replaces its own columns), then `add`; the metadata keeps the
/// input's entries, sets `kao.schema` and appends `entry` to `kao.provenance`.
pub fn stage_schema(
    input: &Schema,
    drop: &[&str],
    add: Vec<Field>,
    entry: &Provenance,
) -> Result<SchemaRef, SchemaError> {
    let replaced = |name: &str| drop.contains(&name) || add.iter().any(|f| f.name() == name);
    let mut fields: Vec<Field> = input
        .fields()
        .iter()
        .filter(|f| !replaced(f.name()))
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(add);
    let mut history = provenance(input)?;
    history.push(entry.clone());
    let mut metadata: HashMap<String, String> = input.metadata().clone().into();
    metadata.insert(META_SCHEMA.into(), SCHEMA_VERSION.into());
    metadata.insert(
        META_PROVENANCE.into(),
        serde_json::to_string(&history).map_err(|e| SchemaError::Provenance(e.to_string()))?,
    );
    Ok(Arc::new(Schema::new_with_metadata(fields, metadata)))
}

/// Builds an output batch for `schema` (made by [`stage_schema`]): the passed-through columns
/// are taken from `input` by name, then `added` fills the remaining fields in order.
pub fn pass_through(
    input: &RecordBatch,
    schema: &SchemaRef,
    added: Vec<ArrayRef>,
) -> Result<RecordBatch, ArrowError> {
    let kept = schema
        .fields()
        .len()
        .checked_sub(added.len())
        .ok_or_else(|| {
            ArrowError::SchemaError(format!(
                "{} added columns for a schema of {}",
                added.len(),
                schema.fields().len()
            ))
        })?;
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in &schema.fields()[..kept] {
        let column = input.column_by_name(field.name()).ok_or_else(|| {
            ArrowError::SchemaError(format!("input batch lacks column `{}`", field.name()))
        })?;
        columns.push(column.clone());
    }
    columns.extend(added);
    RecordBatch::try_new(schema.clone(), columns)
}

/// Checks that `schema` (read from `name`) has every column in `needs` with the contract's
/// type; otherwise a one-line error naming the column and the stage that produces it.
pub fn require(
    schema: &Schema,
    name: &str,
    stage: &str,
    needs: &[(&str, DataType)],
) -> Result<(), RecordError> {
    for (column, expected) in needs {
        match schema.field_with_name(column) {
            Err(_) => {
                return Err(RecordError::MissingColumn {
                    name: name.into(),
                    stage: stage.into(),
                    column: column.to_string(),
                    producer: producer_of(column).into(),
                });
            }
            Ok(field) if field.data_type() != expected => {
                return Err(RecordError::ColumnType {
                    name: name.into(),
                    stage: stage.into(),
                    column: column.to_string(),
                    found: field.data_type().to_string(),
                    expected: expected.to_string(),
                });
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// One decoded frame, as kao-decode emits it.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameRow {
    /// Input as given.
    pub source: String,
    /// 0-based index in the input, counting skipped frames.
    pub frame_index: u64,
    /// Presentation time in seconds.
    pub pts: f64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// RGB24, row-major, width*height*3 bytes.
    pub pixels: Vec<u8>,
}

/// A one-row frame batch for `schema` (frame fields first, as kao-decode writes them);
/// the pixel buffer is moved into the batch, not copied.
pub fn frame_batch(schema: &SchemaRef, row: FrameRow) -> Result<RecordBatch, ArrowError> {
    let len = i32::try_from(row.pixels.len()).map_err(|_| {
        ArrowError::InvalidArgumentError(format!(
            "frame of {} bytes is too large",
            row.pixels.len()
        ))
    })?;
    let offsets = OffsetBuffer::new(ScalarBuffer::from(vec![0i32, len]));
    let pixels = BinaryArray::try_new(offsets, Buffer::from_vec(row.pixels), None)?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![row.source])),
        Arc::new(UInt64Array::from(vec![row.frame_index])),
        Arc::new(Float64Array::from(vec![row.pts])),
        Arc::new(UInt32Array::from(vec![row.width])),
        Arc::new(UInt32Array::from(vec![row.height])),
        Arc::new(pixels),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// One detected face, as kao-detect emits it (the face columns of a face record).
#[derive(Clone, Debug, PartialEq)]
pub struct FaceRow {
    /// Index of the face within its frame.
    pub face_index: u32,
    /// Box left edge, frame pixels.
    pub x: f32,
    /// Box top edge.
    pub y: f32,
    /// Box width.
    pub w: f32,
    /// Box height.
    pub h: f32,
    /// Detector confidence.
    pub score: f32,
    /// Five landmarks (x0,y0,…,x4,y4) in frame pixels, dlib's 5-point order.
    pub landmarks: [f32; 10],
    /// RGB24 patch of the frame around the face, `patch_w * patch_h * 3` bytes.
    pub patch: Vec<u8>,
    /// Patch left edge in the frame.
    pub patch_x: i32,
    /// Patch top edge in the frame.
    pub patch_y: i32,
    /// Patch width.
    pub patch_w: u32,
    /// Patch height.
    pub patch_h: u32,
    /// Track, when known.
    pub track_id: Option<u64>,
}

/// The columns of [`face_fields`], in order, for `rows`. The patch of a lone face becomes
/// the column's buffer as it is, without a copy (most frames of an interview).
pub fn face_columns(mut rows: Vec<FaceRow>) -> Result<Vec<ArrayRef>, ArrowError> {
    let patches: ArrayRef = match rows.as_mut_slice() {
        [row] => {
            let patch = std::mem::take(&mut row.patch);
            Arc::new(BinaryArray::try_new(
                OffsetBuffer::from_lengths([patch.len()]),
                Buffer::from_vec(patch),
                None,
            )?)
        }
        rows => Arc::new(BinaryArray::from_iter_values(
            rows.iter().map(|r| r.patch.as_slice()),
        )),
    };
    let f32s = |get: fn(&FaceRow) -> f32| -> ArrayRef {
        Arc::new(Float32Array::from_iter_values(rows.iter().map(get)))
    };
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let marks = Float32Array::from_iter_values(rows.iter().flat_map(|r| r.landmarks));
    Ok(vec![
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.face_index),
        )),
        f32s(|r| r.x),
        f32s(|r| r.y),
        f32s(|r| r.w),
        f32s(|r| r.h),
        f32s(|r| r.score),
        Arc::new(FixedSizeListArray::try_new(
            item,
            10,
            Arc::new(marks),
            None,
        )?),
        patches,
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.patch_x))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.patch_y))),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.patch_w),
        )),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.patch_h),
        )),
        Arc::new(UInt64Array::from(
            rows.iter().map(|r| r.track_id).collect::<Vec<_>>(),
        )),
    ])
}

/// The frame a face came from: the frame columns every face record repeats.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameMeta {
    /// Input as given.
    pub source: String,
    /// Frame index in the input.
    pub frame_index: u64,
    /// Presentation time in seconds.
    pub pts: f64,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
}

/// The schema of face records made without an input stream: the frame fields but `pixels`,
/// then [`face_fields`], with `entry` as the first provenance.
pub fn face_schema(entry: &Provenance) -> Result<SchemaRef, SchemaError> {
    let mut fields = frame_fields();
    fields.retain(|f| f.name() != col::PIXELS);
    fields.extend(face_fields());
    stage_schema(&Schema::empty(), &[], fields, entry)
}

/// A batch of [`face_schema`] records for faces of one frame.
pub fn face_batch(
    schema: &SchemaRef,
    frame: &FrameMeta,
    rows: Vec<FaceRow>,
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![frame.source.as_str(); n])),
        Arc::new(UInt64Array::from(vec![frame.frame_index; n])),
        Arc::new(Float64Array::from(vec![frame.pts; n])),
        Arc::new(UInt32Array::from(vec![frame.width; n])),
        Arc::new(UInt32Array::from(vec![frame.height; n])),
    ];
    columns.extend(face_columns(rows)?);
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_schema() -> SchemaRef {
        let entry = Provenance::new("kao-decode", "0.1.0", serde_json::json!({"every": 1}));
        stage_schema(&Schema::empty(), &[], frame_fields(), &entry).unwrap()
    }

    #[test]
    fn face_batches_of_one_face_and_of_several_carry_their_patches() {
        let entry = Provenance::new("kao-detect", "0.1.0", serde_json::json!({}));
        let schema = face_schema(&entry).unwrap();
        let frame = FrameMeta {
            source: "a".into(),
            frame_index: 3,
            pts: 0.1,
            width: 8,
            height: 8,
        };
        let face = |k: u8| FaceRow {
            face_index: u32::from(k),
            x: 1.0,
            y: 1.0,
            w: 2.0,
            h: 2.0,
            score: 0.9,
            landmarks: [0.5; 10],
            patch: (0..12).map(|i| i * 7 + k).collect(),
            patch_x: 0,
            patch_y: 0,
            patch_w: 2,
            patch_h: 2,
            track_id: None,
        };
        for n in [1u8, 2, 3] {
            let rows: Vec<FaceRow> = (0..n).map(face).collect();
            let batch = face_batch(&schema, &frame, rows.clone()).unwrap();
            // Through an IPC stream and back, as between two stages.
            let mut bytes = Vec::new();
            let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &schema).unwrap();
            writer.write(&batch).unwrap();
            writer.finish().unwrap();
            drop(writer);
            let mut reader =
                arrow_ipc::reader::StreamReader::try_new(bytes.as_slice(), None).unwrap();
            let read = reader.next().unwrap().unwrap();
            for b in [&batch, &read] {
                let patches = b
                    .column_by_name(col::PATCH)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<BinaryArray>()
                    .unwrap();
                let got: Vec<&[u8]> = patches.iter().map(Option::unwrap).collect();
                let want: Vec<&[u8]> = rows.iter().map(|r| r.patch.as_slice()).collect();
                assert_eq!(got, want, "{n} faces");
            }
        }
    }

    #[test]
    fn provenance_is_appended_per_stage() {
        let frames = decode_schema();
        let entry = Provenance::new("kao-detect", "0.1.0", serde_json::json!({}));
        let faces = stage_schema(&frames, &[col::PIXELS], face_fields(), &entry).unwrap();
        let history = provenance(&faces).unwrap();
        assert_eq!(
            history.iter().map(|p| p.stage.as_str()).collect::<Vec<_>>(),
            ["kao-decode", "kao-detect"]
        );
        assert_eq!(faces.metadata()[META_SCHEMA], SCHEMA_VERSION);
        assert!(faces.field_with_name(col::PIXELS).is_err());
        assert_eq!(faces.field(0).name(), col::SOURCE);
    }

    #[test]
    fn pass_through_keeps_unknown_columns_and_replaces_own() {
        let mut fields = frame_fields();
        fields.push(Field::new("note", DataType::Utf8, false));
        let input_schema = Arc::new(Schema::new(fields));
        let mut columns = frame_batch(
            &Arc::new(Schema::new(frame_fields())),
            FrameRow {
                source: "a".into(),
                frame_index: 7,
                pts: 0.5,
                width: 1,
                height: 1,
                pixels: vec![1, 2, 3],
            },
        )
        .unwrap()
        .columns()
        .to_vec();
        columns.push(Arc::new(StringArray::from(vec!["kept"])));
        let input = RecordBatch::try_new(input_schema.clone(), columns).unwrap();
        let entry = Provenance::new("kao-test", "0", serde_json::Value::Null);
        // `pts` is replaced by the stage, `pixels` dropped, `note` passed through.
        let out_schema = stage_schema(
            &input_schema,
            &[col::PIXELS],
            vec![Field::new(col::PTS, DataType::Utf8, false)],
            &entry,
        )
        .unwrap();
        let out = pass_through(
            &input,
            &out_schema,
            vec![Arc::new(StringArray::from(vec!["new"]))],
        )
        .unwrap();
        let names: Vec<_> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            ["source", "frame_index", "width", "height", "note", "pts"]
        );
        let note = out
            .column_by_name("note")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(note.value(0), "kept");
    }

    #[test]
    fn missing_column_names_its_producer() {
        let schema = Schema::new(face_fields());
        let err = require(
            &schema,
            "faces.arrows",
            "kao-embed",
            &[(col::LANDMARKS, fixed_f32_list(10))],
        );
        assert!(err.is_ok());
        let err = require(
            &schema,
            "stdin",
            "kao-match",
            &[(col::EMBEDDING, fixed_f32_list(128))],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "stdin: kao-match needs column `embedding`, which kao-embed adds; is kao-embed missing from the pipe?"
        );
        let err = require(
            &schema,
            "stdin",
            "kao-x",
            &[(col::FACE_INDEX, DataType::Utf8)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("has type UInt32"), "{err}");
    }

    #[test]
    fn bad_provenance_is_an_error_not_a_panic() {
        let mut meta = HashMap::new();
        meta.insert(META_PROVENANCE.to_string(), "{not json".to_string());
        let schema = Schema::new_with_metadata(frame_fields(), meta);
        assert!(provenance(&schema).is_err());
        let entry = Provenance::new("kao-x", "0", serde_json::Value::Null);
        assert!(stage_schema(&schema, &[], vec![], &entry).is_err());
    }
}
