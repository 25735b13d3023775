//! People without reference photos: the unmatched tracks of an output folder grouped into
//! people (`cluster_id`), and a cluster turned into a named identity.
//!
//! Tracks, not faces, are the units: each unmatched track's faces are averaged into one
//! embedding, and the tracks are grouped with Chinese whispers (Biemann 2006; dlib's
//! `chinese_whispers`, the classic for face embeddings): tracks within `threshold` of each other
//! are linked, and each track repeatedly takes the cluster most of its links point to. Cluster
//! ids are numbered by size, largest first. With `--all`, the crops of unmatched faces move
//! from `unknown/` to `unknown/<cluster>/`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use kao_record::schema::{DataType, Field, Schema, SchemaRef, col, stage_schema};
use kao_record::{EmbeddingSpace, Metric, Provenance, RecordReader, RecordWriter};

use crate::align::UNKNOWN_DIR;
use crate::align::lock::OutputLock;
use crate::align::manifest::MANIFEST;
use crate::scale_out::parts::{LocalFiles, RunFiles};

/// Name of the column holding a face's cluster (null for faces with an identity).
pub const CLUSTER_ID: &str = "cluster_id";

/// Rounds of Chinese whispers (dlib's default).
const ITERATIONS: usize = 100;

/// The linking distance when none is given: the embedder's matching threshold (dlib's 0.48,
/// JAPANESE FACE V1's), so that two tracks in one cluster would match each other.
pub fn default_threshold(space: &EmbeddingSpace) -> Option<f32> {
    crate::matching::default_threshold(space)
}

/// Chinese whispers over `points`: a cluster label per point, labels numbered by cluster
/// size (largest first, ties by first member). Points closer than `threshold` are linked;
/// the visiting order comes from `seed`, so a run is reproducible.
pub fn chinese_whispers(
    points: &[Vec<f32>],
    metric: Metric,
    threshold: f32,
    seed: u64,
) -> Vec<u32> {
    let n = points.len();
    let mut links: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in i + 1..n {
            if metric.distance(&points[i], &points[j]) < threshold {
                links[i].push(j);
                links[j].push(i);
            }
        }
    }
    let mut label: Vec<usize> = (0..n).collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for _ in 0..ITERATIONS {
        rng.shuffle(&mut order);
        let mut changed = false;
        for &i in &order {
            if links[i].is_empty() {
                continue;
            }
            let mut votes: BTreeMap<usize, usize> = BTreeMap::new();
            for &j in &links[i] {
                *votes.entry(label[j]).or_default() += 1;
            }
            // The most common label among the links; ties to the smallest label.
            let best = votes
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(l, _)| *l)
                .unwrap_or(label[i]);
            if best != label[i] {
                label[i] = best;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Renumber: largest cluster 0.
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, l) in label.iter().enumerate() {
        members.entry(*l).or_default().push(i);
    }
    let mut clusters: Vec<Vec<usize>> = members.into_values().collect();
    clusters.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    let mut out = vec![0u32; n];
    for (id, cluster) in clusters.iter().enumerate() {
        for &i in cluster {
            out[i] = id as u32;
        }
    }
    out
}

/// What [`cluster_folder`] did.
#[derive(Debug, Default)]
pub struct Clustered {
    /// Unmatched tracks grouped.
    pub tracks: usize,
    /// People (clusters) found among them.
    pub clusters: usize,
    /// Crops moved into `unknown/<cluster>/`.
    pub crops_moved: usize,
}

/// The manifest's batches as one, with the folder's schema.
fn read_manifest(dir: &Path) -> Result<(SchemaRef, RecordBatch)> {
    let path = dir.join(MANIFEST);
    let reader = RecordReader::open(Some(&path))?;
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    let batch = arrow_select::concat::concat_batches(&schema, &batches)
        .with_context(|| path.display().to_string())?;
    Ok((schema, batch))
}

/// Writes the folder's manifest: `batch` with new `crop_path`s and `cluster_id`s, and the
/// step's provenance `entry`.
fn write_with(
    dir: &Path,
    batch: &RecordBatch,
    crops: Vec<Option<String>>,
    clusters: Vec<Option<u32>>,
    entry: &Provenance,
) -> Result<()> {
    let crop_field = batch.schema().field_with_name(col::CROP_PATH)?.clone();
    let batch = with_column(batch, crop_field, Arc::new(StringArray::from(crops)), None)?;
    let batch = with_column(
        &batch,
        Field::new(CLUSTER_ID, DataType::UInt32, true),
        Arc::new(UInt32Array::from(clusters)),
        Some(entry),
    )?;
    write_manifest(dir, &batch)
}

/// Writes `batch` as the folder's manifest (atomically).
fn write_manifest(dir: &Path, batch: &RecordBatch) -> Result<()> {
    let mut writer = RecordWriter::create(Some(&dir.join(MANIFEST)), &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    Ok(())
}

/// A typed column of `batch`, or an error naming the manifest.
fn typed<'a, T: 'static>(batch: &'a RecordBatch, dir: &Path, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .with_context(|| {
            format!(
                "{}: no usable `{name}` column",
                dir.join(MANIFEST).display()
            )
        })
}

/// The file name of a crop path.
fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Moves a crop to `to` when it is not there yet; whether it moved.
fn move_crop(files: &dyn RunFiles, from: &str, to: &str) -> Result<bool> {
    if from == to {
        return Ok(false);
    }
    files.rename(from, to)?;
    Ok(true)
}

/// Replaces (or adds) column `name` of `batch`.
fn with_column(
    batch: &RecordBatch,
    field: Field,
    values: ArrayRef,
    entry: Option<&Provenance>,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = batch.columns().to_vec();
    match schema.index_of(field.name()) {
        Ok(at) => {
            fields[at] = field;
            columns[at] = values;
        }
        Err(_) => {
            fields.push(field);
            columns.push(values);
        }
    }
    let mut schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    if let Some(entry) = entry {
        schema = stage_schema(&schema, &[], Vec::new(), entry)
            .map_err(anyhow::Error::msg)?
            .as_ref()
            .clone();
    }
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// Groups the unmatched tracks of the output folder `lock` holds into people: sets
/// `cluster_id` on every face without an identity and moves their crops (written with
/// `--all`) into `unknown/<cluster>/`. `threshold` is the linking distance (default: the
/// embedder's matching threshold). Rows with an identity keep a null `cluster_id`.
pub fn cluster_folder(lock: &OutputLock, threshold: Option<f32>) -> Result<Clustered> {
    cluster_with(lock, threshold, &LocalFiles(lock.dir()))
}

/// [`cluster_folder`] on the manifest in `lock.dir()` with the run's crops in `files` (a run
/// in object storage, whose manifest kao-merge keeps locally until it is uploaded).
pub fn cluster_with(
    lock: &OutputLock,
    threshold: Option<f32>,
    files: &dyn RunFiles,
) -> Result<Clustered> {
    let dir = lock.dir();
    let (schema, batch) = read_manifest(dir)?;
    let space = EmbeddingSpace::required(
        &schema,
        &dir.join(MANIFEST).display().to_string(),
        "kao-cluster",
    )?;
    // The given distance, else the embedder's default, else the threshold the run matched
    // with (an ONNX embedder has no default, but its run was given one).
    let matched_with = || {
        kao_record::schema::provenance(&schema)
            .ok()?
            .iter()
            .rev()
            .find(|p| p.stage == "kao-match")?
            .options
            .get("threshold")?
            .as_f64()
            .map(|t| t as f32)
    };
    let threshold = match threshold
        .or_else(|| default_threshold(&space))
        .or_else(matched_with)
    {
        Some(t) if t.is_finite() && t > 0.0 => t,
        Some(t) => bail!("--cluster-threshold must be a positive distance, not {t}"),
        None => bail!(
            "the embedder {} has no default linking distance: give --cluster-threshold",
            space.embedder
        ),
    };
    let sources = typed::<StringArray>(&batch, dir, col::SOURCE)?;
    let tracks = typed::<UInt64Array>(&batch, dir, col::TRACK_ID)?;
    let identity = typed::<StringArray>(&batch, dir, col::IDENTITY)?;
    let crops = typed::<StringArray>(&batch, dir, col::CROP_PATH)?;
    let embeddings = typed::<FixedSizeListArray>(&batch, dir, col::EMBEDDING)?;
    let values = embeddings
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .context("embedding values are not float32")?;
    let dim = embeddings.value_length() as usize;
    // Unmatched tracks: the mean embedding of their embedded faces (every face of the track
    // takes the track's cluster, embedded or not).
    let mut index: HashMap<(&str, u64), usize> = HashMap::new();
    let mut sums: Vec<(Vec<f32>, usize)> = Vec::new();
    let mut row_track: Vec<Option<usize>> = vec![None; batch.num_rows()];
    for (row, slot) in row_track.iter_mut().enumerate() {
        if identity.is_valid(row) || tracks.is_null(row) {
            continue;
        }
        let key = (sources.value(row), tracks.value(row));
        let t = *index.entry(key).or_insert_with(|| {
            sums.push((vec![0.0; dim], 0));
            sums.len() - 1
        });
        *slot = Some(t);
        if embeddings.is_null(row) {
            continue;
        }
        let at = embeddings.value_offset_at(row);
        for (s, v) in sums[t].0.iter_mut().zip(&values.values()[at..at + dim]) {
            *s += v;
        }
        sums[t].1 += 1;
    }
    // A track none of whose faces was embedded has nothing to be grouped by.
    let embedded: Vec<usize> = (0..sums.len()).filter(|&t| sums[t].1 > 0).collect();
    let mut slot_of = vec![None; sums.len()];
    for (k, &t) in embedded.iter().enumerate() {
        slot_of[t] = Some(k);
    }
    for track in row_track.iter_mut() {
        *track = track.and_then(|t| slot_of[t]);
    }
    let sums: Vec<(Vec<f32>, usize)> = embedded.iter().map(|&t| sums[t].clone()).collect();
    let means: Vec<Vec<f32>> = sums
        .into_iter()
        .map(|(sum, n)| sum.into_iter().map(|v| v / n as f32).collect())
        .collect();
    let labels = chinese_whispers(&means, space.metric, threshold, 0);
    let mut moved = 0;
    let mut new_crops: Vec<Option<String>> = Vec::with_capacity(batch.num_rows());
    let mut cluster_ids: Vec<Option<u32>> = Vec::with_capacity(batch.num_rows());
    for (row, track) in row_track.iter().enumerate() {
        let cluster = track.map(|t| labels[t]);
        let crop = crops.is_valid(row).then(|| crops.value(row).to_string());
        let crop = match (cluster, crop) {
            (Some(c), Some(path)) if path.starts_with(&format!("{UNKNOWN_DIR}/")) => {
                let to = format!("{UNKNOWN_DIR}/{c}/{}", file_name(&path));
                if move_crop(files, &path, &to)? {
                    moved += 1;
                }
                Some(to)
            }
            (_, crop) => crop,
        };
        new_crops.push(crop);
        cluster_ids.push(cluster);
    }
    remove_stale_crops(files, &new_crops)?;
    files.remove_empty_folders(UNKNOWN_DIR);
    let entry = Provenance::new(
        "kao-cluster",
        env!("CARGO_PKG_VERSION"),
        serde_json::json!({ "cluster_threshold": threshold, "method": "chinese-whispers" }),
    );
    write_with(dir, &batch, new_crops, cluster_ids, &entry)?;
    Ok(Clustered {
        tracks: means.len(),
        clusters: labels.iter().max().map_or(0, |m| *m as usize + 1),
        crops_moved: moved,
    })
}

/// Removes the crops in `unknown/<cluster>/` that no row lists any more (a video processed
/// again drops its earlier rows, whose crops an earlier clustering had moved there).
fn remove_stale_crops(files: &dyn RunFiles, listed: &[Option<String>]) -> Result<()> {
    let listed: std::collections::HashSet<&str> =
        listed.iter().flatten().map(|p| p.as_str()).collect();
    for path in files.list(UNKNOWN_DIR)? {
        let in_cluster = path.split('/').count() == 3;
        let image = path.ends_with(".png") || path.ends_with(".jpg");
        if in_cluster && image && !listed.contains(path.as_str()) {
            files.remove(&path);
        }
    }
    Ok(())
}

/// What [`name_cluster`] did.
#[derive(Debug, Default)]
pub struct Named {
    /// Faces that took the name.
    pub faces: usize,
    /// Crops moved into the identity's folder.
    pub crops_moved: usize,
}

/// Turns cluster `cluster` of the folder `lock` holds into identity `name`: its faces get
/// `identity = name` (and no cluster), and its crops move from `unknown/<cluster>/` to
/// `<name>/`. Later runs into the folder keep them, and `--ref NAME=DIR/NAME` enrolls them.
pub fn name_cluster(lock: &OutputLock, cluster: u32, name: &str) -> Result<Named> {
    let dir = lock.dir();
    crate::matching::enroll::check_name(name, Path::new(name))?;
    let (_, batch) = read_manifest(dir)?;
    let clusters = typed::<UInt32Array>(&batch, dir, CLUSTER_ID)
        .context("no clusters yet: run kao-cluster (kao-extract does at the end of a run)")?;
    let identity = typed::<StringArray>(&batch, dir, col::IDENTITY)?;
    let crops = typed::<StringArray>(&batch, dir, col::CROP_PATH)?;
    let mut named = Named::default();
    let (mut identities, mut new_clusters, mut new_crops) = (Vec::new(), Vec::new(), Vec::new());
    for row in 0..batch.num_rows() {
        let hit = clusters.is_valid(row) && clusters.value(row) == cluster;
        let crop = crops.is_valid(row).then(|| crops.value(row).to_string());
        if !hit {
            identities.push(
                identity
                    .is_valid(row)
                    .then(|| identity.value(row).to_string()),
            );
            new_clusters.push(clusters.is_valid(row).then(|| clusters.value(row)));
            new_crops.push(crop);
            continue;
        }
        named.faces += 1;
        identities.push(Some(name.to_string()));
        new_clusters.push(None);
        new_crops.push(match crop {
            Some(path) => {
                let to = format!("{name}/{}", file_name(&path));
                if move_crop(&LocalFiles(dir), &path, &to)? {
                    named.crops_moved += 1;
                }
                Some(to)
            }
            None => None,
        });
    }
    if named.faces == 0 {
        bail!("{}: no cluster {cluster}", dir.join(MANIFEST).display());
    }
    LocalFiles(dir).remove_empty_folders(UNKNOWN_DIR);
    let schema = batch.schema();
    let entry = Provenance::new(
        "kao-name",
        env!("CARGO_PKG_VERSION"),
        serde_json::json!({ "cluster": cluster, "as": name }),
    );
    let batch = with_column(
        &batch,
        schema.field_with_name(col::IDENTITY)?.clone(),
        Arc::new(StringArray::from(identities)),
        None,
    )?;
    write_with(dir, &batch, new_crops, new_clusters, &entry)?;
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whispers_group_near_points_and_number_by_size() {
        let p = |x: f32, y: f32| vec![x, y];
        let points = vec![
            p(0.0, 0.0),
            p(0.1, 0.0),
            p(5.0, 5.0),
            p(0.0, 0.1),
            p(5.1, 5.0),
            p(9.0, 0.0),
        ];
        let labels = chinese_whispers(&points, Metric::Euclidean, 0.5, 0);
        assert_eq!(labels, vec![0, 0, 1, 0, 1, 2]);
        // Same input, same seed: same labels.
        assert_eq!(labels, chinese_whispers(&points, Metric::Euclidean, 0.5, 0));
        // Nothing linked: every point alone.
        let alone = chinese_whispers(&points, Metric::Euclidean, 0.01, 0);
        let mut sorted = alone.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), points.len());
    }
}
