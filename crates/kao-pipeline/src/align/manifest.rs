//! `DIR/manifest.parquet`: every face record of a run, without pixels, with `crop_path`.
//!
//! Running again into the same folder replaces the rows of the videos processed again and
//! keeps the others, so a folder collects one dataset across runs with the same options.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray, UInt64Array};
use kao_record::schema::{Provenance, Schema, SchemaRef, col, provenance};
use kao_record::{RecordReader, RecordWriter};

use crate::align::lock::OutputLock;

/// File name of the manifest inside the output folder.
pub const MANIFEST: &str = "manifest.parquet";
/// Schema metadata key naming the frames a run processed, read by devdata's score.py:
/// `all` or `every:N`.
pub const META_FRAMES_PROCESSED: &str = "kao.frames_processed";

/// Writes `DIR/manifest.parquet` under a temporary name, renamed into place by
/// [`ManifestWriter::finish`]; an unfinished run leaves the previous manifest as it was.
pub struct ManifestWriter {
    path: PathBuf,
    writer: RecordWriter,
    schema: SchemaRef,
    /// Rows of the previous manifest.
    previous: Vec<RecordBatch>,
    /// Sources whose previous rows this run replaces.
    replaced: BTreeSet<String>,
    rows: u64,
    /// Added to this run's `track_id`s: one more than the largest of the previous rows this
    /// run keeps, so that track ids stay unique across the runs that filled the folder. Set at
    /// the first write, when the sources this run replaces are known.
    track_offset: Option<u64>,
    /// Held until the manifest is finished (or the run ends), then handed back.
    lock: OutputLock,
    /// The crops this run's rows name.
    crops: BTreeSet<String>,
}

impl ManifestWriter {
    /// Opens the manifest of the folder `lock` holds for rows of `schema`. A previous
    /// manifest must come from a run with the same columns and options.
    pub fn create(lock: OutputLock, schema: &SchemaRef) -> Result<ManifestWriter> {
        let path = lock.dir().join(MANIFEST);
        let previous = if path.exists() {
            read_previous(&path, schema)?
        } else {
            Vec::new()
        };
        let writer = RecordWriter::create(Some(&path), schema)?;
        Ok(ManifestWriter {
            path,
            writer,
            schema: schema.clone(),
            previous,
            replaced: BTreeSet::new(),
            rows: 0,
            track_offset: None,
            lock,
            crops: BTreeSet::new(),
        })
    }

    /// Sources (videos) that already have rows in the previous manifest, in the order of
    /// their first rows.
    pub fn previous_sources(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut sources = Vec::new();
        for batch in &self.previous {
            if let Some(s) = batch
                .column_by_name(col::SOURCE)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            {
                for source in s.iter().flatten() {
                    if seen.insert(source) {
                        sources.push(source.to_string());
                    }
                }
            }
        }
        sources
    }

    /// Marks `source` as processed again: its previous rows are dropped.
    pub fn replace(&mut self, source: &str) {
        self.replaced.insert(source.to_string());
    }

    /// Writes manifest rows; their sources replace previous rows of the same sources.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some(s) = batch
            .column_by_name(col::SOURCE)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        {
            for source in s.iter().flatten() {
                if !self.replaced.contains(source) {
                    self.replaced.insert(source.to_string());
                }
            }
        }
        self.rows += batch.num_rows() as u64;
        self.crops.extend(crop_paths(batch));
        let replaced = &self.replaced;
        let offset = *self.track_offset.get_or_insert_with(|| {
            self.previous
                .iter()
                .flat_map(|b| {
                    let sources = b
                        .column_by_name(col::SOURCE)
                        .and_then(|c| c.as_any().downcast_ref::<StringArray>());
                    let ids = b
                        .column_by_name(col::TRACK_ID)
                        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
                    (0..b.num_rows()).filter_map(move |i| {
                        let (sources, ids) = (sources?, ids?);
                        (!replaced.contains(sources.value(i)) && ids.is_valid(i))
                            .then(|| ids.value(i))
                    })
                })
                .max()
                .map_or(0, |m| m + 1)
        });
        match batch.schema().index_of(col::TRACK_ID) {
            Ok(at) if offset > 0 => {
                let ids = batch
                    .column(at)
                    .as_any()
                    .downcast_ref::<UInt64Array>()
                    .context("track_id is not a uint64 column")?;
                let shifted: UInt64Array = ids.iter().map(|id| id.map(|id| id + offset)).collect();
                let mut columns = batch.columns().to_vec();
                columns[at] = Arc::new(shifted);
                self.writer
                    .write(&RecordBatch::try_new(batch.schema(), columns)?)?;
            }
            _ => self.writer.write(batch)?,
        }
        Ok(())
    }

    /// Rows written by this run.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds the previous rows of the sources not processed again and renames the manifest
    /// into place, then removes the crops of the replaced rows that no row names any more
    /// (an interrupted run's choices that this run made otherwise). Returns the manifest's
    /// path and the folder's lock, still held.
    pub fn finish(mut self) -> Result<(PathBuf, OutputLock)> {
        let mut dropped = BTreeSet::new();
        for batch in std::mem::take(&mut self.previous) {
            let sources = batch
                .column_by_name(col::SOURCE)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .context("previous manifest without a source column")?;
            let keep: BooleanArray = sources
                .iter()
                .map(|s| Some(!s.is_some_and(|s| self.replaced.contains(s))))
                .collect();
            let kept = arrow_select::filter::filter_record_batch(&batch, &keep)?;
            let gone: BooleanArray = keep.iter().map(|k| k.map(|k| !k)).collect();
            dropped.extend(crop_paths(&arrow_select::filter::filter_record_batch(
                &batch, &gone,
            )?));
            if kept.num_rows() > 0 {
                self.crops.extend(crop_paths(&kept));
                let kept = RecordBatch::try_new(self.schema.clone(), kept.columns().to_vec())?;
                self.writer.write(&kept)?;
            }
        }
        self.writer.finish()?;
        for crop in dropped.difference(&self.crops) {
            let _ = std::fs::remove_file(self.lock.dir().join(crop));
        }
        Ok((self.path, self.lock))
    }
}

/// The crop paths `batch` names (none without a `crop_path` column).
fn crop_paths(batch: &RecordBatch) -> Vec<String> {
    batch
        .column_by_name(col::CROP_PATH)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .map(|paths| paths.iter().flatten().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Adds `key = value` to a schema's metadata.
pub fn with_metadata(schema: &SchemaRef, key: &str, value: &str) -> SchemaRef {
    let mut metadata: HashMap<String, String> = schema.metadata().clone().into();
    metadata.insert(key.to_string(), value.to_string());
    Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata))
}

/// The frames-processed spec of a run whose frames were decoded with these kao-decode
/// options: `all` or `every:N` when that is all that selected frames, else `None`.
pub fn frames_processed(history: &[Provenance]) -> Option<String> {
    let decode = history.iter().find(|p| p.stage == "kao-decode")?;
    let o = &decode.options;
    let unset = |k: &str| o.get(k).is_none_or(serde_json::Value::is_null);
    if !(unset("fps") && unset("start") && unset("end") && unset("max_frames")) {
        return None;
    }
    match o.get("every").and_then(serde_json::Value::as_u64) {
        None | Some(1) => Some("all".to_string()),
        Some(n) => Some(format!("every:{n}")),
    }
}

/// The previous manifest's rows, after checking that it has this run's columns and options.
fn read_previous(path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let name = path.display();
    let reader = RecordReader::open(Some(path))?;
    let old = reader.schema();
    // The clusters are made again at the end of every run (crate::cluster): the previous
    // ones, and the steps that made and named them, are not part of the comparison.
    let kept: Vec<usize> = (0..old.fields().len())
        .filter(|&i| old.field(i).name() != crate::cluster::CLUSTER_ID)
        .collect();
    let old_fields: Vec<_> = kept.iter().map(|&i| old.field(i).clone()).collect();
    if old_fields.len() != schema.fields().len()
        || old_fields
            .iter()
            .zip(schema.fields())
            .any(|(a, b)| a != b.as_ref())
    {
        bail!("{name}: has other columns than this run writes; write to a new output folder");
    }
    let mut old_history = provenance(&old).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    old_history.retain(|p| p.stage != "kao-cluster" && p.stage != "kao-name");
    let new_history = provenance(schema).map_err(anyhow::Error::msg)?;
    if let Some(difference) = difference(&old_history, &new_history) {
        bail!("{name}: was made with other options ({difference}); write to a new output folder");
    }
    reader.map(|batch| Ok(batch?.project(&kept)?)).collect()
}

/// The first difference between two runs' stage options, ignoring the input names.
pub(crate) fn difference(old: &[Provenance], new: &[Provenance]) -> Option<String> {
    let stages = |h: &[Provenance]| h.iter().map(|p| p.stage.clone()).collect::<Vec<_>>();
    if stages(old) != stages(new) {
        return Some(format!(
            "stages {} instead of {}",
            stages(old).join(" | "),
            stages(new).join(" | ")
        ));
    }
    for (a, b) in old.iter().zip(new) {
        if a.model != b.model {
            return Some(format!("{}: another model", a.stage));
        }
        let strip = |v: &serde_json::Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("inputs");
            }
            v
        };
        let (was, now) = (strip(&a.options), strip(&b.options));
        if was != now {
            // Name the options that differ, not the whole JSON.
            let null = serde_json::Value::Null;
            let keys: BTreeSet<&String> = [&was, &now]
                .iter()
                .filter_map(|v| v.as_object())
                .flat_map(|o| o.keys())
                .collect();
            let changed: Vec<String> = keys
                .into_iter()
                .filter(|k| was.get(k.as_str()) != now.get(k.as_str()))
                .map(|k| {
                    let shown = |v: Option<&serde_json::Value>| {
                        // Options are mostly f32s, written to JSON as f64s: show them as f32.
                        let text = match v.and_then(serde_json::Value::as_f64) {
                            Some(x) if v.is_some_and(|v| !v.is_u64() && !v.is_i64()) => {
                                (x as f32).to_string()
                            }
                            _ => v.unwrap_or(&null).to_string(),
                        };
                        if text.chars().count() > 40 {
                            format!("{}…", text.chars().take(40).collect::<String>())
                        } else {
                            text
                        }
                    };
                    format!(
                        "{k} {} instead of {}",
                        shown(was.get(k.as_str())),
                        shown(now.get(k.as_str()))
                    )
                })
                .collect();
            return Some(format!("{}: {}", a.stage, changed.join(", ")));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field};
    use kao_record::schema::stage_schema;

    /// Manifest rows: (source, track, crop path).
    fn rows(schema: &SchemaRef, rows: &[(&str, u64, Option<&str>)]) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn replaced_rows_take_the_crops_no_row_names_any_more() {
        let dir = tempfile::tempdir().unwrap();
        let fields = vec![
            Field::new(col::SOURCE, DataType::Utf8, false),
            Field::new(col::TRACK_ID, DataType::UInt64, true),
            Field::new(col::CROP_PATH, DataType::Utf8, true),
        ];
        let entry = Provenance::new("kao-align", "0", serde_json::json!({}));
        let schema = stage_schema(&Schema::empty(), &[], fields, &entry).unwrap();
        let crops = ["p/a_f1.png", "p/a_f2.png", "p/b_f1.png", "p/a_f3.png"];
        for crop in crops {
            std::fs::create_dir_all(dir.path().join("p")).unwrap();
            std::fs::write(dir.path().join(crop), b"png").unwrap();
        }
        let lock = || OutputLock::acquire(dir.path(), &mut |_| {}).unwrap();
        // An interrupted run chose a_f1 and a_f2 for a.mp4; b.mp4 was finished before.
        let mut first = ManifestWriter::create(lock(), &schema).unwrap();
        let earlier = [
            ("a.mp4", 0, Some("p/a_f1.png")),
            ("a.mp4", 0, Some("p/a_f2.png")),
            ("b.mp4", 1, Some("p/b_f1.png")),
        ];
        first.write(&rows(&schema, &earlier)).unwrap();
        drop(first.finish().unwrap());
        // The rerun does a.mp4 again and chooses a_f2 and a_f3.
        let mut again = ManifestWriter::create(lock(), &schema).unwrap();
        again.replace("a.mp4");
        let now = [
            ("a.mp4", 0, None),
            ("a.mp4", 0, Some("p/a_f2.png")),
            ("a.mp4", 0, Some("p/a_f3.png")),
        ];
        again.write(&rows(&schema, &now)).unwrap();
        drop(again.finish().unwrap());
        let left: Vec<bool> = crops.iter().map(|c| dir.path().join(c).exists()).collect();
        assert_eq!(left, [false, true, true, true], "{crops:?}");
    }
}
