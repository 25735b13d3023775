//! Summary tables of a manifest: per identity, per video, per shot, and why faces got no crop.
//!
//! Each table is a polars group-by of the face records with one aggregate row per group.

use std::collections::{BTreeMap, HashSet};

use polars::prelude::*;

use crate::{AnalysisError, Manifest, Result};

/// How the tables name faces that matched no reference.
pub const NO_MATCH: &str = "(no match)";
/// The manifest column of a face's cluster of unknown people (kao-cluster).
pub const CLUSTER_ID: &str = "cluster_id";
/// How tables name cluster `c` of unknown people: `unknown/c`, its crops' folder.
const UNKNOWN_PREFIX: &str = "unknown/";

/// The name a face goes by in the tables: its identity, else its cluster (`unknown/3`), else
/// [`NO_MATCH`].
pub fn person(identity: Option<&str>, cluster: Option<u32>) -> String {
    match (identity, cluster) {
        (Some(name), _) => name.to_string(),
        (None, Some(c)) => format!("{UNKNOWN_PREFIX}{c}"),
        (None, None) => NO_MATCH.to_string(),
    }
}

/// Per identity, then per cluster of unknown people (`unknown/3`), then faces in neither as
/// [`NO_MATCH`]: `faces`, `tracks`, `crops`
/// written, `median_distance` to the identity's references (for unmatched faces: to the nearest
/// reference), `median_similar_percentage` when the records carry FACE01's
/// `similar_percentage`, and `seconds_on_screen`: the frames the identity appears in, each
/// counted for its video's frame step (see [`frame_steps`]).
pub fn by_identity(manifest: &Manifest) -> Result<DataFrame> {
    manifest.require(&["identity", "distance", "crop_path", "track_id"])?;
    let steps = frame_steps(manifest)?;
    let similar = manifest.has("similar_percentage");
    let run = || -> PolarsResult<DataFrame> {
        let mut columns = vec![
            "identity",
            "source",
            "frame_index",
            "track_id",
            "crop_path",
            "distance",
        ];
        if similar {
            columns.push("similar_percentage");
        }
        let mut frame = manifest.frame.select(columns)?;
        let clusters: Vec<Option<u32>> = match manifest.frame.column(CLUSTER_ID) {
            Ok(c) => c.cast(&DataType::UInt32)?.u32()?.iter().collect(),
            Err(_) => vec![None; frame.height()],
        };
        let named: StringChunked = frame
            .column("identity")?
            .str()?
            .iter()
            .zip(&clusters)
            .map(|(v, c)| Some(person(v, *c)))
            .collect();
        frame.with_column(named.with_name("identity".into()).into_column())?;
        let table = frame.group_by(["identity"])?.apply(|g| {
            let sources = g.column("source")?.str()?.clone();
            let frames = g
                .column("frame_index")?
                .cast(&DataType::UInt64)?
                .u64()?
                .clone();
            let on_screen: HashSet<(&str, u64)> = sources
                .iter()
                .zip(frames.iter())
                .filter_map(|(s, f)| Some((s?, f?)))
                .collect();
            let seconds: f64 = on_screen
                .iter()
                .map(|(s, _)| steps.get(*s).copied().unwrap_or(0.0))
                .sum();
            let identity = g.column("identity")?.slice(0, 1);
            // Order: named people, then clusters of unknown people, then faces in neither.
            let unmatched = match identity.str()?.get(0) {
                Some(NO_MATCH) => 2u32,
                Some(name) if name.starts_with(UNKNOWN_PREFIX) => 1,
                _ => 0,
            };
            let mut columns = vec![
                identity,
                Column::new("faces".into(), [g.height() as u64]),
                Column::new(
                    "tracks".into(),
                    [g.column("track_id")?.drop_nulls().n_unique()? as u64],
                ),
                Column::new("crops".into(), [non_null(&g, "crop_path")?]),
                Column::new(
                    "median_distance".into(),
                    [reduce(g.column("distance")?.median_reduce()?)],
                ),
            ];
            if similar {
                columns.push(Column::new(
                    "median_similar_percentage".into(),
                    [reduce(g.column("similar_percentage")?.median_reduce()?)],
                ));
            }
            columns.push(Column::new("seconds_on_screen".into(), [seconds]));
            columns.push(Column::new("unmatched".into(), [unmatched]));
            DataFrame::new_infer_height(columns)
        })?;
        let sorted = table.sort(
            ["unmatched", "faces", "identity"],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
        )?;
        sorted.drop("unmatched")
    };
    run().map_err(|e| polars_error(manifest, e))
}

/// Per video (`source`): `frames_with_faces`, `faces`, `tracks`, `matched` faces, `crops`
/// written, and `last_face_s`, the time of its last face.
pub fn by_video(manifest: &Manifest) -> Result<DataFrame> {
    manifest.require(&["identity", "crop_path", "track_id"])?;
    let run = || -> PolarsResult<DataFrame> {
        let table = manifest.frame.group_by(["source"])?.apply(|g| {
            DataFrame::new_infer_height(vec![
                g.column("source")?.slice(0, 1),
                Column::new(
                    "frames_with_faces".into(),
                    [g.column("frame_index")?.n_unique()? as u64],
                ),
                Column::new("faces".into(), [g.height() as u64]),
                Column::new(
                    "tracks".into(),
                    [g.column("track_id")?.drop_nulls().n_unique()? as u64],
                ),
                Column::new("matched".into(), [non_null(&g, "identity")?]),
                Column::new("crops".into(), [non_null(&g, "crop_path")?]),
                Column::new(
                    "last_face_s".into(),
                    [reduce(g.column("pts")?.max_reduce()?)],
                ),
            ])
        })?;
        table.sort(["source"], SortMultipleOptions::default())
    };
    run().map_err(|e| polars_error(manifest, e))
}

/// Per shot of each video: `start_s` and `end_s` (its first and last face), `faces`, `tracks`,
/// `matched` faces, the identity most of them took (`who`), and `crops` written.
pub fn by_shot(manifest: &Manifest) -> Result<DataFrame> {
    manifest.require(&["shot", "identity", "crop_path", "track_id"])?;
    let run = || -> PolarsResult<DataFrame> {
        let table = manifest.frame.group_by(["source", "shot"])?.apply(|g| {
            let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
            for who in g.column("identity")?.str()?.iter().flatten() {
                *votes.entry(who).or_default() += 1;
            }
            let who = votes
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(w, _)| w.to_string());
            DataFrame::new_infer_height(vec![
                g.column("source")?.slice(0, 1),
                g.column("shot")?.slice(0, 1),
                Column::new("start_s".into(), [reduce(g.column("pts")?.min_reduce()?)]),
                Column::new("end_s".into(), [reduce(g.column("pts")?.max_reduce()?)]),
                Column::new("faces".into(), [g.height() as u64]),
                Column::new(
                    "tracks".into(),
                    [g.column("track_id")?.drop_nulls().n_unique()? as u64],
                ),
                Column::new("matched".into(), [non_null(&g, "identity")?]),
                Column::new("who".into(), [who]),
                Column::new("crops".into(), [non_null(&g, "crop_path")?]),
            ])
        })?;
        table.sort(["source", "shot"], SortMultipleOptions::default())
    };
    run().map_err(|e| polars_error(manifest, e))
}

/// Faces without a crop, per `reject_reason` (unmatched, small, blurry, turned, duplicate,
/// track_limit), most frequent first.
pub fn rejections(manifest: &Manifest) -> Result<DataFrame> {
    manifest.require(&["reject_reason"])?;
    let run = || -> PolarsResult<DataFrame> {
        let rejected = manifest
            .frame
            .filter(&manifest.frame.column("reject_reason")?.is_not_null())?;
        let table = rejected.group_by(["reject_reason"])?.apply(|g| {
            DataFrame::new_infer_height(vec![
                g.column("reject_reason")?.slice(0, 1),
                Column::new("faces".into(), [g.height() as u64]),
            ])
        })?;
        table.sort(
            ["faces", "reject_reason"],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
    };
    run().map_err(|e| polars_error(manifest, e))
}

/// Each video's frame step: the (lower) median time between consecutive processed frames that
/// have faces (0 for a video with faces in one frame only), by `source`.
pub fn frame_steps(manifest: &Manifest) -> Result<BTreeMap<String, f64>> {
    let run = || -> PolarsResult<BTreeMap<String, f64>> {
        let sources = manifest.frame.column("source")?.str()?.clone();
        let pts = manifest
            .frame
            .column("pts")?
            .cast(&DataType::Float64)?
            .f64()?
            .clone();
        let mut per_source: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (source, t) in sources.iter().zip(pts.iter()) {
            if let (Some(source), Some(t)) = (source, t) {
                per_source.entry(source.to_string()).or_default().push(t);
            }
        }
        Ok(per_source
            .into_iter()
            .map(|(source, mut times)| {
                times.sort_by(f64::total_cmp);
                times.dedup();
                let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
                gaps.sort_by(f64::total_cmp);
                (
                    source,
                    if gaps.is_empty() {
                        0.0
                    } else {
                        gaps[(gaps.len() - 1) / 2]
                    },
                )
            })
            .collect())
    };
    run().map_err(|e| polars_error(manifest, e))
}

/// Rows of `g` where `name` is not null.
fn non_null(g: &DataFrame, name: &str) -> PolarsResult<u64> {
    Ok((g.height() - g.column(name)?.null_count()) as u64)
}

/// A reduced value as a float (`None` for null).
fn reduce(scalar: Scalar) -> Option<f64> {
    scalar.value().extract::<f64>()
}

fn polars_error(manifest: &Manifest, source: PolarsError) -> AnalysisError {
    AnalysisError::Polars {
        path: manifest.path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let frame = df!(
            "source" => ["a.mp4", "a.mp4", "a.mp4", "a.mp4", "b.mp4"],
            "frame_index" => [0u64, 1, 1, 3, 0],
            "pts" => [0.0, 0.5, 0.5, 1.5, 0.0],
            "face_index" => [0u32, 0, 1, 0, 0],
            "shot" => [0u32, 0, 0, 1, 0],
            "track_id" => [Some(1u64), Some(1), Some(2), Some(3), Some(4)],
            "identity" => [Some("ann"), Some("ann"), None, Some("ann"), None],
            "distance" => [Some(0.3f32), Some(0.4), Some(0.7), Some(0.2), Some(0.9)],
            "crop_path" => [Some("ann/a_f000000_0.png"), None, None, Some("ann/a_f000003_0.png"), None],
            "reject_reason" => [None, Some("duplicate"), Some("unmatched"), None, Some("unmatched")],
        )
        .unwrap();
        Manifest {
            path: "m.parquet".into(),
            frame,
            metadata: Default::default(),
            embedding_metadata: Default::default(),
        }
    }

    #[test]
    fn per_identity_counts_faces_crops_and_time_on_screen() {
        let t = by_identity(&manifest()).unwrap();
        let who: Vec<Option<&str>> = t
            .column("identity")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(who, [Some("ann"), Some(NO_MATCH)]);
        let u = |name: &str| -> Vec<Option<u64>> {
            t.column(name).unwrap().u64().unwrap().iter().collect()
        };
        assert_eq!(u("faces"), [Some(3), Some(2)]);
        assert_eq!(u("tracks"), [Some(2), Some(2)]);
        assert_eq!(u("crops"), [Some(2), Some(0)]);
        let f = |name: &str| -> Vec<Option<f64>> {
            t.column(name).unwrap().f64().unwrap().iter().collect()
        };
        assert!((f("median_distance")[0].unwrap() - 0.3).abs() < 1e-6);
        // a.mp4's frame step is 0.5 s (gaps 0.5 and 1.0); ann is in 3 of its frames.
        assert_eq!(f("seconds_on_screen")[0], Some(1.5));
    }

    #[test]
    fn per_video_per_shot_and_reasons() {
        let m = manifest();
        let v = by_video(&m).unwrap();
        assert_eq!(v.height(), 2);
        assert_eq!(v.column("matched").unwrap().u64().unwrap().get(0), Some(3));
        assert_eq!(
            v.column("frames_with_faces").unwrap().u64().unwrap().get(0),
            Some(3)
        );
        let s = by_shot(&m).unwrap();
        assert_eq!(s.height(), 3);
        assert_eq!(s.column("who").unwrap().str().unwrap().get(0), Some("ann"));
        let r = rejections(&m).unwrap();
        let reasons: Vec<Option<&str>> = r
            .column("reject_reason")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(reasons, [Some("unmatched"), Some("duplicate")]);
    }
}
