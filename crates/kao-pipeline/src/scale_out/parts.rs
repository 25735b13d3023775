//! A sharded run's layout (docs/scale-out.md): one manifest part per video,
//! `RUN/manifest/video=<key>/part-0.parquet`, a Hive-partitioned dataset that polars, pyarrow,
//! DuckDB and Spark read as is. A part is written last, when its video is done, so a video is
//! finished exactly when its part exists. [`merge`] turns the parts into the single-machine
//! layout's `RUN/manifest.parquet`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::{Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use kao_record::schema::{Provenance, Schema, SchemaRef, col, provenance};
use kao_record::{RecordReader, RecordWriter};

use crate::align::lock::OutputLock;
use crate::align::manifest::{MANIFEST, difference};

/// Folder of the parts inside a run folder.
pub const PARTS_DIR: &str = "manifest";
/// File name of a video's part inside its partition folder.
pub const PART_FILE: &str = "part-0.parquet";
/// Provenance option naming the shard a part was written by (left out of the merged
/// manifest, and of the comparison of options across parts).
pub const SHARD_OPTION: &str = "shard";

/// The partition key of `source`: its file stem (letters, digits, `.`, `_`, `-`; at most 48
/// characters) and the first 12 hex digits of the sha256 of the whole source string, so two
/// videos with one name in different folders get two keys.
pub fn video_key(source: &str) -> String {
    let stem = Path::new(source.trim_end_matches('/'))
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let hash = crate::align::crop::source_hash(source);
    let hex = &hash[..12];
    if stem.is_empty() {
        hex.to_string()
    } else {
        format!("{stem}-{hex}")
    }
}

/// The partition folder of `source` in run folder `run`.
pub fn part_dir(run: &Path, source: &str) -> PathBuf {
    run.join(PARTS_DIR)
        .join(format!("video={}", video_key(source)))
}

/// The part file of `source` in run folder `run`.
pub fn part_path(run: &Path, source: &str) -> PathBuf {
    part_dir(run, source).join(PART_FILE)
}

/// The part files under `run`, sorted by partition folder.
pub fn list_parts(run: &Path) -> Result<Vec<PathBuf>> {
    let dir = run.join(PARTS_DIR);
    let mut parts = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(parts),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot read", dir.display()))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("video=") && entry.path().join(PART_FILE).is_file() {
            parts.push(entry.path().join(PART_FILE));
        }
    }
    parts.sort();
    Ok(parts)
}

/// `entries` without the shard option in kao-decode's options.
pub fn without_shard(entries: &[Provenance]) -> Vec<Provenance> {
    entries
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if let Some(o) = p.options.as_object_mut() {
                o.remove(SHARD_OPTION);
            }
            p
        })
        .collect()
}

/// `schema` with its provenance replaced by `entries`.
fn with_provenance(schema: &SchemaRef, entries: &[Provenance]) -> Result<SchemaRef> {
    let mut metadata: HashMap<String, String> = schema.metadata().clone().into();
    metadata.insert(
        kao_record::schema::META_PROVENANCE.to_string(),
        serde_json::to_string(entries)?,
    );
    Ok(Arc::new(Schema::new_with_metadata(
        schema.fields().clone(),
        metadata,
    )))
}

/// The videos a run was given: kao-decode's `inputs` in the provenance of `schema`.
fn listed_videos(history: &[Provenance]) -> Vec<String> {
    history
        .iter()
        .find(|p| p.stage == "kao-decode")
        .and_then(|p| p.options.get("inputs")?.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Writes one part per video of a shard, each under a temporary name until its video ends.
pub struct PartWriter {
    run: PathBuf,
    schema: SchemaRef,
    /// The video whose rows are being written, and its part.
    open: Option<(String, RecordWriter)>,
    rows: u64,
}

impl PartWriter {
    /// Parts of records of `schema` in run folder `run`.
    pub fn new(run: &Path, schema: &SchemaRef) -> PartWriter {
        PartWriter {
            run: run.to_path_buf(),
            schema: schema.clone(),
            open: None,
            rows: 0,
        }
    }

    /// Writes manifest rows (of the video being processed).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let sources = strings(batch, col::SOURCE, "manifest rows")?;
        let source = sources.value(0);
        if sources.iter().any(|s| s != Some(source)) {
            bail!("manifest rows of two videos in one batch");
        }
        let writer = match &mut self.open {
            Some((open, writer)) if open == source => writer,
            _ => {
                if let Some((open, _)) = &self.open {
                    bail!("rows of {source} before the end of {open}");
                }
                let path = part_path(&self.run, source);
                let writer = RecordWriter::create(Some(&path), &self.schema)?;
                &mut self.open.insert((source.to_string(), writer)).1
            }
        };
        writer.write(batch)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Ends `source`'s part: renamed into place, so the video counts as finished (an empty
    /// part for a video without faces).
    pub fn finish_video(&mut self, source: &str) -> Result<()> {
        let writer = match self.open.take() {
            Some((open, writer)) if open == source => writer,
            Some((open, _)) => bail!("the end of {source} while writing {open}"),
            None => RecordWriter::create(Some(&part_path(&self.run, source)), &self.schema)?,
        };
        writer.finish()?;
        Ok(())
    }

    /// Drops `source`'s unfinished part (a video that failed or was interrupted): no part,
    /// so the next run of the shard does it again.
    pub fn abandon_video(&mut self, source: &str) {
        if self.open.as_ref().is_some_and(|(open, _)| open == source) {
            self.open = None;
        }
    }

    /// Rows written.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

/// The crops of a run, where they are kept: a local folder ([`LocalFiles`]) or object
/// storage. kao-merge reads and moves crops through it; the manifests stay local files.
pub trait RunFiles {
    /// Whether the file `rel` (a `/`-separated path in the run) exists.
    fn exists(&self, rel: &str) -> Result<bool>;
    /// The files under folder `rel`, at every depth, as paths in the run.
    fn list(&self, rel: &str) -> Result<Vec<String>>;
    /// Moves file `from` to `to`.
    fn rename(&self, from: &str, to: &str) -> Result<()>;
    /// Removes file `rel` (best effort).
    fn remove(&self, rel: &str);
    /// Removes the empty folders under `rel` (none in object storage).
    fn remove_empty_folders(&self, _rel: &str) {}
}

/// A run's crops in a local folder.
pub struct LocalFiles<'a>(pub &'a Path);

impl RunFiles for LocalFiles<'_> {
    fn exists(&self, rel: &str) -> Result<bool> {
        Ok(self.0.join(rel).is_file())
    }

    fn list(&self, rel: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![rel.to_string()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(self.0.join(&dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = format!("{dir}/{}", entry.file_name().to_string_lossy());
                match entry.file_type() {
                    Ok(t) if t.is_dir() => stack.push(name),
                    Ok(t) if t.is_file() => out.push(name),
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (source, target) = (self.0.join(from), self.0.join(to));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create the folder", parent.display()))?;
        }
        std::fs::rename(&source, &target)
            .with_context(|| format!("moving {} to {}", source.display(), target.display()))
    }

    fn remove(&self, rel: &str) {
        let _ = std::fs::remove_file(self.0.join(rel));
    }

    fn remove_empty_folders(&self, rel: &str) {
        let Ok(entries) = std::fs::read_dir(self.0.join(rel)) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                // Fails (and keeps the folder) unless it is empty.
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
}

/// What [`merge`] found and wrote.
#[derive(Debug, Default)]
pub struct Merged {
    /// Parts read.
    pub parts: usize,
    /// Rows written.
    pub rows: usize,
    /// Videos of the run's list without a part, in list order.
    pub missing: Vec<String>,
}

/// A part as the merge's first pass saw it.
struct Part {
    path: PathBuf,
    /// Its smallest and largest `track_id`, if any.
    tracks: Option<(u64, u64)>,
}

/// Merges the parts of run folder `lock.dir()` into `manifest.parquet`: checks that every part
/// has one schema and options, one video and no duplicate rows; orders the videos as the run's
/// list does and numbers their tracks on from the previous video's, as a single run would; and
/// reports the listed videos without a part. The folder's lock, held exclusively, tells that no
/// shard is still running (each holds it shared). Crops that an earlier merge moved into a
/// cluster's folder keep their new place. Parts are streamed (read twice: checked, then
/// written), so memory does not grow with the run.
pub fn merge(lock: &OutputLock) -> Result<Merged> {
    merge_with(
        lock,
        &LocalFiles(lock.dir()),
        &lock.dir().display().to_string(),
    )
}

/// [`merge`] of the parts in `lock.dir()` (a local copy of a run in object storage) with the
/// run's crops in `files`; `name` names the run in messages.
pub fn merge_with(lock: &OutputLock, files: &dyn RunFiles, name: &str) -> Result<Merged> {
    let run = lock.dir();
    let paths = list_parts(run)?;
    if paths.is_empty() {
        bail!(
            "{name}: no manifest parts ({PARTS_DIR}/video=*/{PART_FILE}); kao-merge reads the folder of a sharded run (kao-extract --shard)"
        );
    }

    // First pass: one schema, one set of options, one video per part, its track ids.
    let mut first: Option<(SchemaRef, Vec<Provenance>)> = None;
    let mut by_source: BTreeMap<String, Part> = BTreeMap::new();
    for path in &paths {
        let name = path.display().to_string();
        let reader = RecordReader::open(Some(path))?;
        let schema = reader.schema();
        let history = without_shard(&provenance(&schema).map_err(|e| e.at(&name))?);
        match &first {
            None => first = Some((schema.clone(), history)),
            Some((schema0, history0)) => {
                if schema.fields() != schema0.fields() {
                    bail!(
                        "{name}: has other columns than {}; its shard ran another kao or other options",
                        paths[0].display()
                    );
                }
                if let Some(d) = difference(history0, &history) {
                    bail!(
                        "{name}: made with other options than {} ({d})",
                        paths[0].display()
                    );
                }
            }
        }
        let mut sources = HashSet::new();
        let mut tracks: Option<(u64, u64)> = None;
        for b in reader {
            let b = b?;
            sources.extend(
                strings(&b, col::SOURCE, &name)?
                    .iter()
                    .flatten()
                    .map(str::to_string),
            );
            for t in u64s(&b, col::TRACK_ID, &name)?.iter().flatten() {
                tracks = Some(tracks.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
            }
        }
        let history = &first.as_ref().expect("set above").1;
        let source = match sources.len() {
            0 => match find_source(path, run, history) {
                // An empty part (a video without faces) says which video it is by its folder.
                Some(s) => s,
                None => continue,
            },
            1 => sources.into_iter().next().expect("one"),
            n => bail!("{name}: holds {n} videos; a part holds one"),
        };
        if part_path(run, &source) != *path {
            bail!("{name}: holds the rows of {source}, whose part is elsewhere");
        }
        by_source.insert(
            source,
            Part {
                path: path.clone(),
                tracks,
            },
        );
    }
    let (schema, history) = first.expect("at least one part");

    // List order; videos the list does not name come after, by name.
    let listed = listed_videos(&history);
    let position: HashMap<&str, usize> = listed
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), i))
        .collect();
    let mut order: Vec<&String> = by_source.keys().collect();
    order.sort_by_key(|s| (position.get(s.as_str()).copied().unwrap_or(usize::MAX), *s));
    let missing: Vec<String> = listed
        .iter()
        .filter(|v| !by_source.contains_key(*v))
        .cloned()
        .collect();

    // Second pass: each part in list order, tracks numbered on.
    let moved = moved_crops(files)?;
    let out_schema = with_provenance(&schema, &history)?;
    let mut writer = RecordWriter::create(Some(&run.join(MANIFEST)), &out_schema)?;
    let mut next_track = 0u64;
    let mut rows = 0;
    for source in order {
        let part = &by_source[source];
        let name = part.path.display().to_string();
        let first_id = part.tracks.map_or(0, |(lo, _)| lo);
        let mut seen: HashSet<(u64, u32)> = HashSet::new();
        for b in RecordReader::open(Some(&part.path))? {
            let b = b?;
            let frames = u64s(&b, col::FRAME_INDEX, &name)?;
            let faces = b
                .column_by_name(col::FACE_INDEX)
                .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
                .with_context(|| format!("{name}: no uint32 {} column", col::FACE_INDEX))?;
            for i in 0..b.num_rows() {
                if !seen.insert((frames.value(i), faces.value(i))) {
                    bail!(
                        "{name}: frame {} face {} of {source} appears twice",
                        frames.value(i),
                        faces.value(i)
                    );
                }
            }
            let mut columns = b.columns().to_vec();
            let at = b.schema().index_of(col::TRACK_ID)?;
            let tracks: UInt64Array = u64s(&b, col::TRACK_ID, &name)?
                .iter()
                .map(|t| t.map(|t| t - first_id + next_track))
                .collect();
            columns[at] = Arc::new(tracks);
            let at = b.schema().index_of(col::CROP_PATH)?;
            let crops: StringArray = strings(&b, col::CROP_PATH, &name)?
                .iter()
                .map(|crop| {
                    let Some(crop) = crop else {
                        return Ok(None);
                    };
                    Ok(Some(match moved.get(crop) {
                        Some(to) if !files.exists(crop)? => to.clone(),
                        _ => crop.to_string(),
                    }))
                })
                .collect::<Result<_>>()?;
            columns[at] = Arc::new(crops);
            writer.write(&RecordBatch::try_new(out_schema.clone(), columns)?)?;
            rows += b.num_rows();
        }
        if let Some((lo, hi)) = part.tracks {
            next_track += hi - lo + 1;
        }
    }
    writer.finish()?;
    Ok(Merged {
        parts: paths.len(),
        rows,
        missing,
    })
}

/// The source of an empty part: the listed video whose key names its folder.
fn find_source(path: &Path, run: &Path, history: &[Provenance]) -> Option<String> {
    listed_videos(history)
        .into_iter()
        .find(|v| part_path(run, v) == path)
}

/// Where an earlier merge's clustering moved crops of unknown people: `unknown/NAME` to
/// `unknown/CLUSTER/NAME`, by the crops now under `unknown/`'s cluster folders.
fn moved_crops(files: &dyn RunFiles) -> Result<HashMap<String, String>> {
    let unknown = crate::align::UNKNOWN_DIR;
    let mut moved = HashMap::new();
    for path in files.list(unknown)? {
        let mut parts = path.split('/');
        if let (Some(_), Some(cluster), Some(file), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            moved.insert(
                format!("{unknown}/{file}"),
                format!("{unknown}/{cluster}/{file}"),
            );
        }
    }
    Ok(moved)
}

fn strings<'a>(b: &'a RecordBatch, column: &str, name: &str) -> Result<&'a StringArray> {
    b.column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .with_context(|| format!("{name}: no string column `{column}`"))
}

fn u64s<'a>(b: &'a RecordBatch, column: &str, name: &str) -> Result<&'a UInt64Array> {
    b.column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .with_context(|| format!("{name}: no uint64 column `{column}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_readable_unique_and_safe() {
        let a = video_key("/data/talks/Ann Lee (2019).mp4");
        assert!(a.starts_with("Ann_Lee__2019_-"), "{a}");
        assert_eq!(a.len(), "Ann_Lee__2019_-".len() + 12);
        assert_ne!(a, video_key("/other/talks/Ann Lee (2019).mp4"));
        assert_eq!(a, video_key("/data/talks/Ann Lee (2019).mp4"));
        for odd in ["rtsp://cam/", "", "a=b/c.mp4", "../x.mp4"] {
            let k = video_key(odd);
            assert!(!k.is_empty() && !k.contains(['/', '=']), "{odd}: {k}");
        }
        assert_eq!(
            part_path(Path::new("run"), "a.mp4"),
            Path::new("run/manifest")
                .join(format!("video={}", video_key("a.mp4")))
                .join("part-0.parquet")
        );
    }
}
