//! Matching: naming faces after reference photos.
//!
//! * [`enroll`]: reference photos (files and folders, `--ref` and `--neg`) → named embeddings,
//!   found with dlib's MMOD detector and embedded by the faces' own embedder.
//! * [`ref_cache`]: the enrolled embeddings cached per photo content and recipe.
//! * [`identify`]: the match stage: per-track and per-face decisions against the enrolled
//!   gallery, one face per person and frame, `--neg`.
//! * [`similar`]: FACE01's `similar_percentage` curves, between percentages and thresholds.

pub mod enroll;
pub mod identify;
pub mod ref_cache;
pub mod similar;

use kao_record::EmbeddingSpace;

/// The default `--threshold` of an embedding space: dlib's 0.48 (docs/matching.md),
/// JAPANESE FACE V1's FACE01 default (similar_percentage 90, cosine ≥ 0.4036);
/// `None` for other models, which have no calibrated threshold.
pub fn default_threshold(space: &EmbeddingSpace) -> Option<f32> {
    match space.embedder.as_str() {
        "dlib-resnet" => Some(identify::DEFAULT_THRESHOLD),
        "face01-v1" => similar::Curve::JapaneseFaceV1.threshold(90.0).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use kao_record::Metric;

    use super::*;
    use crate::track::default_link_distance;

    #[test]
    fn thresholds_by_space() {
        let dlib = EmbeddingSpace::dlib_resnet();
        assert_eq!(default_threshold(&dlib), Some(0.48));
        assert_eq!(default_link_distance(&dlib), Some(0.6));
        let mut face01 = dlib.clone();
        face01.embedder = "face01-v1".into();
        face01.metric = Metric::Cosine;
        let t = default_threshold(&face01).unwrap();
        assert!((t - (1.0 - 0.4036)).abs() < 1e-3, "{t}");
        let mut onnx = face01.clone();
        onnx.embedder = "onnx".into();
        assert_eq!(default_threshold(&onnx), None);
        assert_eq!(default_link_distance(&onnx), Some(0.75));
        onnx.metric = Metric::Euclidean;
        assert_eq!(default_link_distance(&onnx), None);
    }
}
