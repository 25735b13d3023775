//! Choosing a matching threshold with evidence: distances between photos of the same person
//! and of different people in a labelled face set, and the ROC they give.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::manifest::{Metric, embeddings_of, label_from_path};
use crate::{AnalysisError, Manifest, Result};

/// One photo of a labelled face set: its label and the embedding of its largest face.
#[derive(Clone, Debug)]
pub struct LabelledFace {
    /// The photo (the records' `source`).
    pub source: String,
    /// The person, from the photo's folder or file name ([`label_from_path`]).
    pub label: String,
    /// The embedding of the photo's largest face.
    pub embedding: Vec<f32>,
}

/// The labelled faces of face records made from the photos under `root` (laid out like `--ref`
/// folders: `root/<name>/*.jpg`): one per photo, its largest face. Photos without a face
/// have no records and so do not appear.
pub fn labelled_faces(records: &Manifest, root: &str) -> Result<Vec<LabelledFace>> {
    records.require(&["w", "h", "embedding"])?;
    let path = || records.path.display().to_string();
    let rows = records.embedded_rows()?;
    let vectors = embeddings_of(&rows).map_err(|message| AnalysisError::Column {
        path: path(),
        message,
    })?;
    let columns = || -> PolarsResult<(StringChunked, Float64Chunked)> {
        let area = (rows.column("w")?.cast(&DataType::Float64)?
            * rows.column("h")?.cast(&DataType::Float64)?)?;
        Ok((rows.column("source")?.str()?.clone(), area.f64()?.clone()))
    };
    let (sources, areas) = columns().map_err(|source| AnalysisError::Polars {
        path: path(),
        source,
    })?;
    let mut largest: BTreeMap<String, (f64, Vec<f32>)> = BTreeMap::new();
    for ((source, area), vector) in sources.iter().zip(areas.iter()).zip(vectors) {
        let (Some(source), Some(area)) = (source, area) else {
            continue;
        };
        match largest.get(source) {
            Some((best, _)) if *best >= area => {}
            _ => {
                largest.insert(source.to_string(), (area, vector));
            }
        }
    }
    Ok(largest
        .into_iter()
        .map(|(source, (_, embedding))| LabelledFace {
            label: label_from_path(&source, root),
            source,
            embedding,
        })
        .collect())
}

/// Distances of every pair of faces, split by whether they show the same person.
#[derive(Clone, Debug, Default)]
pub struct PairDistances {
    /// Pairs of photos of the same person.
    pub same: Vec<f32>,
    /// Pairs of photos of different people.
    pub different: Vec<f32>,
}

/// The distances of all unordered pairs of `faces`, by `metric` (the records' own:
/// [`Manifest::metric`]).
pub fn pair_distances(faces: &[LabelledFace], metric: Metric) -> PairDistances {
    let mut pairs = PairDistances::default();
    for (i, a) in faces.iter().enumerate() {
        for b in &faces[i + 1..] {
            let d = metric.distance(&a.embedding, &b.embedding);
            if a.label == b.label {
                pairs.same.push(d)
            } else {
                pairs.different.push(d)
            }
        }
    }
    pairs
}

/// One operating point: at `threshold`, the share of same-person pairs accepted (within the
/// threshold) and the share of different-person pairs accepted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RocPoint {
    /// Distance threshold (a pair within it is accepted).
    pub threshold: f32,
    /// True accept rate: same-person pairs accepted / same-person pairs.
    pub true_accept: f64,
    /// False accept rate: different-person pairs accepted / different-person pairs.
    pub false_accept: f64,
}

/// The ROC at each of `thresholds`.
pub fn roc(pairs: &PairDistances, thresholds: &[f32]) -> Vec<RocPoint> {
    let rate = |d: &[f32], t: f32| {
        if d.is_empty() {
            0.0
        } else {
            d.iter().filter(|&&x| x <= t).count() as f64 / d.len() as f64
        }
    };
    thresholds
        .iter()
        .map(|&t| RocPoint {
            threshold: t,
            true_accept: rate(&pairs.same, t),
            false_accept: rate(&pairs.different, t),
        })
        .collect()
}

/// The full ROC: one point at each distinct pair distance, from accepting nothing to
/// accepting every pair.
pub fn roc_curve(pairs: &PairDistances) -> Vec<RocPoint> {
    let mut thresholds: Vec<f32> = pairs.same.iter().chain(&pairs.different).copied().collect();
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    let mut points = vec![RocPoint {
        threshold: 0.0,
        true_accept: 0.0,
        false_accept: 0.0,
    }];
    points.extend(roc(pairs, &thresholds));
    points
}

/// The largest threshold whose false accept rate is at most `max_false_accept`, with its
/// rates; `None` when even the smallest distance breaks it.
pub fn largest_safe_threshold(pairs: &PairDistances, max_false_accept: f64) -> Option<RocPoint> {
    roc_curve(pairs)
        .into_iter()
        .rfind(|p| p.threshold > 0.0 && p.false_accept <= max_false_accept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(label: &str, x: f32) -> LabelledFace {
        LabelledFace {
            source: format!("{label}/{x}.jpg"),
            label: label.into(),
            embedding: vec![x, 0.0],
        }
    }

    #[test]
    fn pairs_split_by_label_and_the_roc_counts_them() {
        let faces = [
            face("a", 0.0),
            face("a", 0.3),
            face("b", 1.0),
            face("b", 1.2),
        ];
        let pairs = pair_distances(&faces, Metric::Euclidean);
        let mut same = pairs.same.clone();
        same.sort_by(f32::total_cmp);
        assert_eq!(same.len(), 2);
        assert!((same[0] - 0.2).abs() < 1e-6 && (same[1] - 0.3).abs() < 1e-6);
        assert_eq!(pairs.different.len(), 4); // 0.7, 0.9, 1.0, 1.2
        let points = roc(&pairs, &[0.25, 0.5, 0.95]);
        assert_eq!(points[0].true_accept, 0.5);
        assert_eq!(points[1].true_accept, 1.0);
        assert_eq!(points[1].false_accept, 0.0);
        assert_eq!(points[2].false_accept, 0.5);
        let safe = largest_safe_threshold(&pairs, 0.0).unwrap();
        assert!((safe.threshold - 0.3).abs() < 1e-6 && safe.true_accept == 1.0);
        let curve = roc_curve(&pairs);
        assert_eq!(curve.first().unwrap().true_accept, 0.0);
        assert_eq!(
            (
                curve.last().unwrap().true_accept,
                curve.last().unwrap().false_accept
            ),
            (1.0, 1.0)
        );
    }

    #[test]
    fn cosine_pairs_use_the_angle_not_the_length() {
        let along = |label: &str, v: [f32; 2]| LabelledFace {
            source: format!("{label}.jpg"),
            label: label.into(),
            embedding: v.to_vec(),
        };
        // Same direction, different lengths: cosine distance 0, Euclidean 1.
        let faces = [
            along("a", [1.0, 0.0]),
            along("a", [2.0, 0.0]),
            along("b", [0.0, 3.0]),
        ];
        let cosine = pair_distances(&faces, Metric::Cosine);
        assert!(cosine.same[0].abs() < 1e-6);
        assert!(cosine.different.iter().all(|d| (d - 1.0).abs() < 1e-6));
        let euclidean = pair_distances(&faces, Metric::Euclidean);
        assert!((euclidean.same[0] - 1.0).abs() < 1e-6);
    }
}
