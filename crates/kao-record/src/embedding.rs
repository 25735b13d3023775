//! Which model made an `embedding` column, and how its vectors are compared.
//!
//! kao-embed writes `embedding` as a fixed-size list of D float32 values and names its model
//! in the field's metadata (records.md, "Embedding spaces"). Every reader takes the dimension
//! and the metric from there, and two embeddings are compared only when they come from the
//! same space: the same embedder, model file (sha256), preprocessing and dimension.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

use crate::SchemaError;
use crate::schema::col;

/// Field metadata key: the embedder's name (`dlib-resnet`, `face01-v1`, `onnx`).
pub const META_EMBEDDER: &str = "kao.embedder";
/// Field metadata key: the model file's name.
pub const META_MODEL: &str = "kao.model";
/// Field metadata key: the model file's sha256 (lowercase hex).
pub const META_SHA256: &str = "kao.model_sha256";
/// Field metadata key: the number of floats per embedding.
pub const META_DIM: &str = "kao.dim";
/// Field metadata key: `euclidean` or `cosine`.
pub const META_METRIC: &str = "kao.metric";
/// Field metadata key: `true` when every vector has unit length.
pub const META_NORMALIZED: &str = "kao.normalized";
/// Field metadata key: the chip and pixel preprocessing, in one line.
pub const META_PREPROCESSING: &str = "kao.preprocessing";

/// How two embeddings are compared: every metric here is a distance, smaller is nearer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `‖a − b‖` (dlib's ResNet: same person below about 0.6).
    Euclidean,
    /// `1 − cos(a, b)`, from 0 (same direction) to 2 (opposite); ArcFace-style models.
    Cosine,
}

impl Metric {
    /// The distance between `a` and `b` (the shorter length when they differ).
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Euclidean => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt(),
            Metric::Cosine => {
                let (mut dot, mut aa, mut bb) = (0f32, 0f32, 0f32);
                for (x, y) in a.iter().zip(b) {
                    dot += x * y;
                    aa += x * x;
                    bb += y * y;
                }
                let norm = (aa * bb).sqrt();
                if norm > 0.0 { 1.0 - dot / norm } else { 1.0 }
            }
        }
    }

    /// The metric's name as records and options write it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Cosine => "cosine",
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = SchemaError;

    fn from_str(s: &str) -> Result<Self, SchemaError> {
        match s.to_ascii_lowercase().as_str() {
            "euclidean" | "l2" => Ok(Metric::Euclidean),
            "cosine" | "cos" => Ok(Metric::Cosine),
            _ => Err(SchemaError::UnknownMetric(s.to_string())),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The model an embedding comes from and how it is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddingSpace {
    /// The embedder's name (`dlib-resnet`, `face01-v1`, `onnx`).
    pub embedder: String,
    /// The model file's name (no folder: records do not leak paths).
    pub model: String,
    /// The model file's sha256, lowercase hex.
    pub sha256: String,
    /// Floats per embedding.
    pub dim: usize,
    /// How embeddings are compared.
    pub metric: Metric,
    /// Whether every vector has unit length.
    pub normalized: bool,
    /// The chip and pixel preprocessing, in one line (part of the space's identity).
    pub preprocessing: String,
}

/// dlib's ResNet model file's sha256 (face_recognition_models 0.3.0).
const DLIB_RESNET_SHA256: &str = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30";

impl EmbeddingSpace {
    /// dlib's ResNet as kao runs it: 128-d, Euclidean, 150 px chips with padding 0.25. Also
    /// the space of records written before embeddings carried metadata.
    pub fn dlib_resnet() -> EmbeddingSpace {
        EmbeddingSpace {
            embedder: "dlib-resnet".into(),
            model: "dlib_face_recognition_resnet_model_v1.dat".into(),
            sha256: DLIB_RESNET_SHA256.into(),
            dim: 128,
            metric: Metric::Euclidean,
            normalized: false,
            preprocessing: "chip 150 padding 0.25; dlib input_rgb_image (x - mean) / 256".into(),
        }
    }

    /// The `embedding` field: a fixed-size list of `dim` floats, with this space in its metadata.
    pub fn field(&self) -> Field {
        let metadata: HashMap<String, String> = [
            (META_EMBEDDER, self.embedder.clone()),
            (META_MODEL, self.model.clone()),
            (META_SHA256, self.sha256.clone()),
            (META_DIM, self.dim.to_string()),
            (META_METRIC, self.metric.name().to_string()),
            (META_NORMALIZED, self.normalized.to_string()),
            (META_PREPROCESSING, self.preprocessing.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // Nullable: kao-embed leaves out faces its sampler skips (docs/records.md).
        Field::new(col::EMBEDDING, self.data_type(), true).with_metadata(metadata)
    }

    /// The column's type: a fixed-size list of `dim` float32.
    pub fn data_type(&self) -> DataType {
        DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float32, false)),
            self.dim as i32,
        )
    }

    /// The space of an `embedding` field: from its metadata, or dlib's ResNet for a 128-d
    /// field without metadata (records from before embedders were a choice).
    pub fn of_field(field: &Field) -> Result<EmbeddingSpace, SchemaError> {
        let column = || field.name().to_string();
        let dim = match field.data_type() {
            DataType::FixedSizeList(item, n)
                if *item.data_type() == DataType::Float32 && *n > 0 =>
            {
                *n as usize
            }
            other => {
                return Err(SchemaError::NotAnEmbedding {
                    column: column(),
                    found: other.to_string(),
                });
            }
        };
        let meta = field.metadata();
        let Some(embedder) = meta.get(META_EMBEDDER) else {
            if dim == 128 {
                return Ok(EmbeddingSpace::dlib_resnet());
            }
            return Err(SchemaError::UnknownModel {
                column: column(),
                dim,
            });
        };
        let bad = |key: &str, problem: String| SchemaError::BadKey {
            column: column(),
            key: key.to_string(),
            problem,
        };
        let get = |key: &str| {
            meta.get(key)
                .cloned()
                .ok_or_else(|| bad(key, "missing".into()))
        };
        let declared: usize = get(META_DIM)?
            .parse()
            .map_err(|_| bad(META_DIM, "not a number".into()))?;
        if declared != dim {
            return Err(SchemaError::DimMismatch {
                column: column(),
                dim,
                declared,
            });
        }
        Ok(EmbeddingSpace {
            embedder: embedder.clone(),
            model: get(META_MODEL)?,
            sha256: get(META_SHA256)?,
            dim,
            metric: get(META_METRIC)?
                .parse()
                .map_err(|e: SchemaError| bad(META_METRIC, e.to_string()))?,
            normalized: get(META_NORMALIZED)? == "true",
            preprocessing: get(META_PREPROCESSING)?,
        })
    }

    /// The space of `schema`'s `embedding` column.
    pub fn of_schema(schema: &Schema) -> Result<EmbeddingSpace, SchemaError> {
        let field = schema
            .field_with_name(col::EMBEDDING)
            .map_err(|_| SchemaError::NoEmbedding(col::EMBEDDING.into()))?;
        Self::of_field(field)
    }

    /// The space of the `embedding` column that `stage` needs in the records named `name`:
    /// a missing column names kao-embed, a malformed one is one line.
    pub fn required(
        schema: &Schema,
        name: &str,
        stage: &str,
    ) -> Result<EmbeddingSpace, crate::RecordError> {
        let field = schema.field_with_name(col::EMBEDDING).map_err(|_| {
            crate::RecordError::MissingColumn {
                name: name.into(),
                stage: stage.into(),
                column: col::EMBEDDING.into(),
                producer: crate::schema::producer_of(col::EMBEDDING).into(),
            }
        })?;
        Self::of_field(field).map_err(|e| e.at(name))
    }

    /// True when embeddings of the two spaces can be compared: same embedder, model file,
    /// preprocessing, dimension and metric.
    pub fn same_as(&self, other: &EmbeddingSpace) -> bool {
        self.embedder == other.embedder
            && self.sha256 == other.sha256
            && self.dim == other.dim
            && self.metric == other.metric
            && self.preprocessing == other.preprocessing
    }

    /// Refuses with one line naming both spaces when they differ; `what` and `other_what`
    /// say where each comes from ("the faces", "the references").
    pub fn check_same(
        &self,
        what: &str,
        other: &EmbeddingSpace,
        other_what: &str,
    ) -> Result<(), SchemaError> {
        if self.same_as(other) {
            return Ok(());
        }
        Err(SchemaError::DifferentSpaces {
            what: what.into(),
            ours: self.to_string(),
            other_what: other_what.into(),
            theirs: other.to_string(),
        })
    }
}

/// `onnx model.onnx (sha256 0123abcd…, 512-d, cosine)`; the preprocessing too when it is
/// what tells two spaces apart is left to the caller.
impl fmt::Display for EmbeddingSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = self.sha256.get(..12).unwrap_or(&self.sha256);
        write!(
            f,
            "{} {} (sha256 {short}…, {}-d, {}",
            self.embedder, self.model, self.dim, self.metric
        )?;
        if self.embedder == "onnx" {
            write!(f, "; {}", self.preprocessing)?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn onnx(dim: usize) -> EmbeddingSpace {
        EmbeddingSpace {
            embedder: "onnx".into(),
            model: "arc.onnx".into(),
            sha256: "ab".repeat(32),
            dim,
            metric: Metric::Cosine,
            normalized: false,
            preprocessing: "chip 112 padding 0".into(),
        }
    }

    #[test]
    fn metrics() {
        let (a, b) = ([3.0f32, 4.0], [0.0f32, 0.0]);
        assert_eq!(Metric::Euclidean.distance(&a, &b), 5.0);
        assert!((Metric::Cosine.distance(&[1.0, 0.0], &[0.0, 2.0]) - 1.0).abs() < 1e-6);
        assert!(Metric::Cosine.distance(&[1.0, 1.0], &[2.0, 2.0]).abs() < 1e-6);
        assert!((Metric::Cosine.distance(&[1.0, 0.0], &[-1.0, 0.0]) - 2.0).abs() < 1e-6);
        assert_eq!(Metric::Cosine.distance(&[0.0, 0.0], &[1.0, 0.0]), 1.0);
        assert_eq!("COSINE".parse::<Metric>(), Ok(Metric::Cosine));
        assert!("manhattan".parse::<Metric>().is_err());
    }

    #[test]
    fn field_round_trip() {
        for space in [EmbeddingSpace::dlib_resnet(), onnx(512)] {
            let field = space.field();
            assert_eq!(EmbeddingSpace::of_field(&field).unwrap(), space);
        }
    }

    #[test]
    fn legacy_fields_are_dlib_only_at_128() {
        let plain = Field::new(col::EMBEDDING, onnx(128).data_type(), false);
        assert_eq!(
            EmbeddingSpace::of_field(&plain).unwrap(),
            EmbeddingSpace::dlib_resnet()
        );
        let plain = Field::new(col::EMBEDDING, onnx(512).data_type(), false);
        assert!(
            EmbeddingSpace::of_field(&plain)
                .unwrap_err()
                .to_string()
                .contains("does not say which model")
        );
        let wrong = Field::new(col::EMBEDDING, DataType::Float32, false);
        assert!(EmbeddingSpace::of_field(&wrong).is_err());
    }

    #[test]
    fn declared_dimension_must_match() {
        let mut field = onnx(512).field();
        let mut meta = field.metadata().clone();
        meta.insert(META_DIM, "128");
        field = field.with_metadata(meta);
        assert!(
            EmbeddingSpace::of_field(&field)
                .unwrap_err()
                .to_string()
                .contains("512 floats")
        );
    }

    #[test]
    fn different_spaces_are_refused_naming_both() {
        let dlib = EmbeddingSpace::dlib_resnet();
        let other = onnx(512);
        let e = dlib
            .check_same("the faces", &other, "the references")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dlib-resnet") && e.contains("arc.onnx"), "{e}");
        assert!(!e.contains('\n'));
        let mut moved = other.clone();
        moved.preprocessing = "chip 112 padding 0.1".into();
        assert!(!other.same_as(&moved));
        assert!(dlib.check_same("a", &dlib.clone(), "b").is_ok());
    }
}
