//! The align stage: writes an aligned crop of each matched face and the manifest rows.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow};
use arrow_array::{
    Array, ArrayRef, Float32Array, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use clap::Args;
use kao_record::schema::{DataType, Field, Schema, SchemaRef, col, provenance, stage_schema};
use kao_record::{Provenance, write_atomic};

pub mod crop;
pub mod lock;
pub mod manifest;

use crate::align::crop::{CropSpec, crop_file_name, cut_crop, encode, sanitize_identity};
use crate::embed::Patches;
use crate::embed::quality::dhash;
use crate::{HoldingStage, column};

/// Folder of the crops of unmatched faces (with `--all`).
pub const UNKNOWN_DIR: &str = "unknown";

/// Everything that shapes the align stage's output: kao-align's options (and kao-extract's).
#[derive(Args, Clone, Debug, Default)]
pub struct AlignOptions {
    /// Size, padding and file format of the crops.
    #[command(flatten)]
    pub crop: CropSpec,
    /// Also write crops of unmatched faces, under `unknown/`.
    #[arg(long)]
    pub all: bool,
    /// Which faces are worth a crop.
    #[command(flatten)]
    pub select: Selection,
}

/// Which faces get a crop: quality floors and near-duplicate removal within a track. Each
/// field's doc is its `--help` text; its default is [`Selection::default`]'s.
#[derive(Args, Clone, Copy, Debug, PartialEq)]
pub struct Selection {
    /// No crop for faces whose aligned chip is blurrier than this (variance of the Laplacian;
    /// 0 keeps all). The manifest says why: `reject_reason`.
    #[arg(long, value_name = "S", default_value_t = Selection::default().min_sharpness)]
    pub min_sharpness: f32,
    /// No crop for faces narrower than this many native pixels.
    #[arg(long, value_name = "PX", default_value_t = Selection::default().min_face)]
    pub min_face: f32,
    /// No crop for faces turned further than this many degrees (estimated from the landmarks;
    /// 90 keeps all). The manifest says why: `reject_reason` `turned`.
    #[arg(long, value_name = "DEG", default_value_t = Selection::default().max_yaw)]
    pub max_yaw: f32,
    /// No crop for faces blurrier than this fraction of the median sharpness of their track so
    /// far (early in a track: of their video so far); 0 keeps all. `reject_reason` `blurry`.
    #[arg(long, value_name = "R", default_value_t = Selection::default().min_relative_sharpness)]
    pub min_relative_sharpness: f32,
    /// Within a track, no crop that differs from one already kept by fewer than this many of
    /// the 64 bits of its perceptual hash (near-duplicates); 0 keeps them all.
    #[arg(long, value_name = "BITS", default_value_t = Selection::default().min_hash_bits)]
    pub min_hash_bits: u32,
    /// Within a track, at least this many seconds between crops.
    #[arg(long, value_name = "S", default_value_t = Selection::default().min_gap)]
    pub min_gap: f64,
    /// At most this many crops per track (0: no limit).
    #[arg(long, value_name = "N", default_value_t = Selection::default().max_per_track)]
    pub max_per_track: usize,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            min_sharpness: 0.0,
            min_face: 0.0,
            max_yaw: DEFAULT_MAX_YAW,
            min_relative_sharpness: DEFAULT_MIN_RELATIVE_SHARPNESS,
            min_hash_bits: DEFAULT_MIN_HASH_BITS,
            min_gap: 0.0,
            max_per_track: 0,
        }
    }
}

/// The default [`Selection::min_hash_bits`] (see docs/stages.md, "Choosing crops").
pub const DEFAULT_MIN_HASH_BITS: u32 = 8;
/// The default [`Selection::max_yaw`]: past 60° one eye is hidden and the 5-point alignment,
/// and every embedder's view of the face, degrade.
pub const DEFAULT_MAX_YAW: f32 = 60.0;
/// The default [`Selection::min_relative_sharpness`]: motion-blurred frames of a shot score
/// a quarter to a half of its median sharpness; focus and light changes stay above half.
pub const DEFAULT_MIN_RELATIVE_SHARPNESS: f32 = 0.5;
/// Faces of a track (of a video) seen before the relative sharpness floor applies, and the
/// most recent ones whose median it compares with.
const SHARPNESS_HISTORY: (usize, usize) = (5, 50);
const VIDEO_SHARPNESS_HISTORY: (usize, usize) = (20, 200);

/// The crops kept so far for one track.
#[derive(Default)]
struct TrackCrops {
    hashes: Vec<u64>,
    last_pts: f64,
}

/// The relative sharpness floor: a face is blurred when its sharpness is below a fraction of
/// the median of the faces before it in its track (once the track has a few), else of those
/// before it in its video. Judged on what came before only, so the verdict does not depend
/// on how the stream is batched.
#[derive(Default)]
struct RelativeSharpness {
    tracks: HashMap<u64, Recent>,
    videos: HashMap<String, Recent>,
}

impl RelativeSharpness {
    /// Whether a face of `track` in `video` with `value` is below `fraction` of its reference;
    /// then remembers it.
    fn blurred(&mut self, track: Option<u64>, video: &str, value: f32, fraction: f32) -> bool {
        let by_track = track.and_then(|t| self.tracks.get(&t)?.median(SHARPNESS_HISTORY.0));
        let reference =
            by_track.or_else(|| self.videos.get(video)?.median(VIDEO_SHARPNESS_HISTORY.0));
        if let Some(t) = track {
            self.tracks
                .entry(t)
                .or_default()
                .push(value, SHARPNESS_HISTORY.1);
        }
        self.videos
            .entry(video.to_string())
            .or_default()
            .push(value, VIDEO_SHARPNESS_HISTORY.1);
        reference.is_some_and(|m| value < fraction * m)
    }
}

/// The most recent sharpness values of a track or a video, in stream order.
#[derive(Default)]
struct Recent(VecDeque<f32>);

impl Recent {
    /// The median of the last values, once at least `least` were seen.
    fn median(&self, least: usize) -> Option<f32> {
        if self.0.len() < least {
            return None;
        }
        let mut v: Vec<f32> = self.0.iter().copied().collect();
        v.sort_by(f32::total_cmp);
        Some(v[v.len() / 2])
    }

    fn push(&mut self, value: f32, keep: usize) {
        self.0.push_back(value);
        while self.0.len() > keep {
            self.0.pop_front();
        }
    }
}

impl AlignOptions {
    /// The stage's provenance entry.
    pub fn provenance(&self) -> Provenance {
        Provenance::new(
            "kao-align",
            env!("CARGO_PKG_VERSION"),
            serde_json::json!({
                "size": self.crop.size, "padding": self.crop.padding, "format": self.crop.format.extension(),
                "quality": self.crop.quality, "all": self.all, "min_sharpness": self.select.min_sharpness,
                "min_face": self.select.min_face, "max_yaw": self.select.max_yaw,
                "min_relative_sharpness": self.select.min_relative_sharpness,
                "min_hash_bits": self.select.min_hash_bits, "min_gap": self.select.min_gap,
                "max_per_track": self.select.max_per_track,
            }),
        )
    }
}

/// A face that passed the quality floors, waiting for its crop decision.
struct Candidate {
    folder: String,
    file: String,
    /// The face's position in its held batch, and its row in the stream.
    index: usize,
    row: u64,
    /// dHash of the crop's geometry sampled at [`HASH_SIZE`] (the crop itself is cut
    /// only when it is written).
    hash: u64,
    sharpness: f32,
    track: Option<u64>,
    pts: f64,
}

/// Face records waiting for their crop decisions: a candidate, or why the face has none.
struct Held {
    batch: RecordBatch,
    faces: Vec<std::result::Result<Candidate, &'static str>>,
}

/// Side of the small crop, same geometry as the real one, that a candidate's dHash is
/// computed from: 72 = 9·8 = 8·9, so the hash's 9×8 cells are whole pixels. Cutting
/// every candidate's 400-pixel crop up front cost about 8 % of kao-extract's time.
const HASH_SIZE: usize = 72;

/// Face records the choice among near-duplicates may look ahead (bounds memory).
const LOOKAHEAD_ROWS: usize = 16;

/// The align stage: face records with `identity` in, manifest rows (no patch, `crop_path`
/// and `reject_reason` added) out, crops written under the output folder. Within a track, a
/// near-duplicate is skipped in favour of a sharper one among the next 16 face records.
pub struct AlignStage {
    options: AlignOptions,
    dir: PathBuf,
    schema: SchemaRef,
    /// The input columns that pass through: everything but the patch.
    kept: Vec<usize>,
    name: String,
    crops: u64,
    tracks: HashMap<u64, TrackCrops>,
    /// Recent sharpness per track and per video, for the relative floor.
    sharpness: RelativeSharpness,
    held: VecDeque<Held>,
    held_rows: usize,
    next_row: u64,
    /// Crops written since [`AlignStage::take_written`] last asked, as paths in the folder.
    written: Vec<String>,
    /// Each video's crop stem, first come first named ([`crop::CropStems`]).
    stems: crop::CropStems,
    /// The inputs kao-decode read, in order (its provenance), to be named before the records
    /// come: a video without faces still keeps its place.
    inputs: Vec<String>,
}

impl AlignStage {
    /// The stage for face records named `name` with `input` schema (checked here), writing
    /// crops under `dir`.
    pub fn new(
        options: AlignOptions,
        input: &SchemaRef,
        name: &str,
        dir: &Path,
    ) -> Result<AlignStage> {
        if !(options.crop.size >= 8 && options.crop.size <= 4096) {
            anyhow::bail!("--size must be between 8 and 4096");
        }
        if !(options.crop.padding >= 0.0 && options.crop.padding <= 4.0) {
            anyhow::bail!("--padding must be between 0 and 4");
        }
        if !(0.0..=1.0).contains(&options.select.min_relative_sharpness) {
            anyhow::bail!("--min-relative-sharpness must be between 0 and 1");
        }
        let mut needs = vec![
            (col::SOURCE, DataType::Utf8),
            (col::FRAME_INDEX, DataType::UInt64),
            (col::FACE_INDEX, DataType::UInt32),
            (col::IDENTITY, DataType::Utf8),
        ];
        needs.extend(Patches::columns());
        kao_record::schema::require(input, name, "kao-align", &needs)?;
        let select = &options.select;
        let mut needs = Vec::new();
        if select.min_sharpness > 0.0 || select.min_relative_sharpness > 0.0 {
            needs.push((col::SHARPNESS, DataType::Float32));
        }
        if select.max_yaw < 90.0 {
            needs.push((col::YAW, DataType::Float32));
        }
        kao_record::schema::require(input, name, "kao-align", &needs)?;
        let added = vec![
            Field::new(col::CROP_PATH, DataType::Utf8, true),
            Field::new(col::REJECT_REASON, DataType::Utf8, true),
        ];
        let schema = stage_schema(input, &[col::PATCH], added, &options.provenance())
            .map_err(|e| e.at(name))?;
        let kept = (0..input.fields().len())
            .filter(|&i| input.field(i).name() != col::PATCH)
            .collect();
        Ok(AlignStage {
            options,
            dir: dir.to_path_buf(),
            schema,
            kept,
            name: name.to_string(),
            crops: 0,
            tracks: HashMap::new(),
            sharpness: RelativeSharpness::default(),
            held: VecDeque::new(),
            held_rows: 0,
            next_row: 0,
            written: Vec::new(),
            stems: crop::CropStems::default(),
            inputs: decoded_inputs(input),
        })
    }

    /// Names the crops of an earlier run's `sources` (its manifest's, in their order) before
    /// any other, so that their crops keep their names ([`crop::CropStems`]). Call it before the
    /// first records; then come kao-decode's inputs in order (a sharded run's whole list, so
    /// that every shard names a video's crops alike), then any other source as it comes.
    pub fn claim_sources(&mut self, sources: impl IntoIterator<Item = String>) {
        for source in sources {
            self.stems.claim(&source);
        }
    }

    /// The crops written since the last call (paths in the output folder), so that those of a
    /// video whose rows are dropped can be removed with them.
    pub fn take_written(&mut self) -> Vec<String> {
        std::mem::take(&mut self.written)
    }

    /// The schema of the manifest rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Crops written so far.
    pub fn crops_written(&self) -> u64 {
        self.crops
    }

    /// The crop candidates of `batch`: each face's crop hash, or why it has none.
    fn prepare(&mut self, batch: RecordBatch) -> Result<Held> {
        let sources = column::<StringArray>(&batch, col::SOURCE)?;
        for source in std::mem::take(&mut self.inputs)
            .iter()
            .map(String::as_str)
            .chain(sources.iter().flatten())
        {
            self.stems.claim(source);
        }
        let frames = column::<UInt64Array>(&batch, col::FRAME_INDEX)?;
        let faces = column::<UInt32Array>(&batch, col::FACE_INDEX)?;
        let identities = column::<StringArray>(&batch, col::IDENTITY)?;
        let patches = Patches::of(&batch, &self.name)?;
        let floats = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Float32Array>())
        };
        let (width, sharpness, yaw) = (floats(col::W), floats(col::SHARPNESS), floats(col::YAW));
        let pts = batch
            .column_by_name(col::PTS)
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>());
        let tracks = batch
            .column_by_name(col::TRACK_ID)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
        // A crop keeps its face's embedding: faces kao-embed did not embed get none.
        let embedded = batch.column_by_name(col::EMBEDDING);
        let select = self.options.select;
        let mut held = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let row = self.next_row + i as u64;
            let folder = if identities.is_valid(i) {
                sanitize_identity(identities.value(i))
            } else if self.options.all {
                UNKNOWN_DIR.to_string()
            } else {
                held.push(Err("unmatched"));
                continue;
            };
            let below = |column: Option<&Float32Array>, floor: f32| {
                column.is_some_and(|c| c.value(i) < floor)
            };
            let relatively_blurred = match sharpness.map(|c| c.value(i)) {
                Some(value) if select.min_relative_sharpness > 0.0 => self.sharpness.blurred(
                    tracks.filter(|t| t.is_valid(i)).map(|t| t.value(i)),
                    sources.value(i),
                    value,
                    select.min_relative_sharpness,
                ),
                _ => false,
            };
            if below(width, select.min_face) {
                held.push(Err("small"));
                continue;
            } else if below(sharpness, select.min_sharpness) || relatively_blurred {
                held.push(Err("blurry"));
                continue;
            } else if yaw.is_some_and(|c| c.value(i).abs() > select.max_yaw) {
                held.push(Err("turned"));
                continue;
            } else if embedded.is_some_and(|c| c.is_null(i)) {
                held.push(Err("not_embedded"));
                continue;
            }
            let (view, marks) = patches.face(i, row)?;
            let small = CropSpec {
                size: HASH_SIZE,
                ..self.options.crop
            };
            let sample = cut_crop(&view, &marks, &small)
                .map_err(|e| anyhow!("{}: row {row}: {e}", self.name))?;
            held.push(Ok(Candidate {
                folder,
                file: crop_file_name(
                    self.stems.claim(sources.value(i)),
                    frames.value(i),
                    faces.value(i),
                    self.options.crop.format,
                ),
                index: i,
                row,
                hash: dhash(&sample),
                sharpness: sharpness.map_or(0.0, |c| c.value(i)),
                track: tracks.filter(|t| t.is_valid(i)).map(|t| t.value(i)),
                pts: pts.map_or(0.0, |p| p.value(i)),
            }));
        }
        self.next_row += batch.num_rows() as u64;
        Ok(Held { batch, faces: held })
    }

    /// True when `candidate` is unlike every crop kept for its track.
    fn novel(&self, candidate: &Candidate) -> bool {
        let bits = self.options.select.min_hash_bits;
        candidate
            .track
            .and_then(|t| self.tracks.get(&t))
            .is_none_or(|kept| {
                kept.hashes
                    .iter()
                    .all(|h| (h ^ candidate.hash).count_ones() >= bits)
            })
    }

    /// Writes the crop of `candidate` (a face of `batch`), or says why not; `later` are
    /// the candidates after it.
    fn decide<'a>(
        &mut self,
        batch: &RecordBatch,
        candidate: &Candidate,
        later: impl Iterator<Item = &'a Candidate>,
    ) -> Result<std::result::Result<String, &'static str>> {
        let select = self.options.select;
        if let Some(track) = candidate.track {
            let kept = self.tracks.entry(track).or_default();
            if select.max_per_track > 0 && kept.hashes.len() >= select.max_per_track {
                return Ok(Err("track_limit"));
            }
            if !kept.hashes.is_empty() && candidate.pts - kept.last_pts < select.min_gap {
                return Ok(Err("duplicate"));
            }
            if !self.novel(candidate) {
                return Ok(Err("duplicate"));
            }
            // A sharper near-duplicate follows: it will be kept instead.
            let mut later = later;
            let sharper = later.any(|other| {
                other.track == Some(track)
                    && (other.hash ^ candidate.hash).count_ones() < select.min_hash_bits
                    && other.sharpness > candidate.sharpness
                    && self.novel(other)
            });
            if sharper {
                return Ok(Err("duplicate"));
            }
            let kept = self.tracks.entry(track).or_default();
            kept.hashes.push(candidate.hash);
            kept.last_pts = candidate.pts;
        }
        let patches = Patches::of(batch, &self.name)?;
        let (view, marks) = patches.face(candidate.index, candidate.row)?;
        let crop = cut_crop(&view, &marks, &self.options.crop)
            .map_err(|e| anyhow!("{}: row {}: {e}", self.name, candidate.row))?;
        let encoded = encode(&crop, self.options.crop.format, self.options.crop.quality)?;
        let relative = format!("{}/{}", candidate.folder, candidate.file);
        write_atomic(&self.dir.join(&relative), &encoded)?;
        self.written.push(relative.clone());
        self.crops += 1;
        Ok(Ok(relative))
    }

    /// Decides the oldest held records until at most `keep` rows wait; returns their
    /// manifest rows.
    fn emit(&mut self, keep: usize) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        while self.held_rows > keep {
            let Some(front) = self.held.pop_front() else {
                break;
            };
            self.held_rows -= front.batch.num_rows();
            let mut paths: Vec<Option<String>> = Vec::with_capacity(front.faces.len());
            let mut reasons: Vec<Option<&str>> = Vec::with_capacity(front.faces.len());
            for (i, face) in front.faces.iter().enumerate() {
                let place = match face {
                    Err(reason) => Err(*reason),
                    Ok(candidate) => {
                        let held = std::mem::take(&mut self.held);
                        let later = front.faces[i + 1..]
                            .iter()
                            .chain(held.iter().flat_map(|h| h.faces.iter()))
                            .filter_map(|f| f.as_ref().ok());
                        let decided = self.decide(&front.batch, candidate, later);
                        self.held = held;
                        decided?
                    }
                };
                let (path, reason) = match place {
                    Ok(path) => (Some(path), None),
                    Err(reason) => (None, Some(reason)),
                };
                paths.push(path);
                reasons.push(reason);
            }
            let mut columns = front.batch.project(&self.kept)?.columns().to_vec();
            columns.push(Arc::new(StringArray::from(paths)) as ArrayRef);
            columns.push(Arc::new(StringArray::from(reasons)) as ArrayRef);
            out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        Ok(out)
    }
}

impl HoldingStage for AlignStage {
    /// Takes face records; returns the manifest rows of those now decided, in order.
    fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let held = self.prepare(batch)?;
        self.held_rows += held.batch.num_rows();
        self.held.push_back(held);
        self.emit(LOOKAHEAD_ROWS)
    }

    /// Decides every record still held.
    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        self.emit(0)
    }
}

/// The inputs kao-decode read, in order, from `schema`'s provenance (a kao-extract run's
/// whole list); none for records that did not come from kao-decode.
fn decoded_inputs(schema: &Schema) -> Vec<String> {
    provenance(schema)
        .unwrap_or_default()
        .iter()
        .filter(|entry| entry.stage == "kao-decode")
        .filter_map(|entry| entry.options.get("inputs")?.as_array().cloned())
        .flatten()
        .filter_map(|input| input.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_is_judged_against_the_track_then_the_video() {
        let mut floor = RelativeSharpness::default();
        // The first faces of a track and video have nothing to compare with.
        for _ in 0..SHARPNESS_HISTORY.0 {
            assert!(!floor.blurred(Some(1), "a.mp4", 40.0, 0.5));
        }
        assert!(!floor.blurred(Some(1), "a.mp4", 21.0, 0.5));
        assert!(
            floor.blurred(Some(1), "a.mp4", 15.0, 0.5),
            "motion blur: 15 of a median 40"
        );
        // A new track is judged against its video once the video has enough faces.
        for _ in 0..VIDEO_SHARPNESS_HISTORY.0 {
            floor.blurred(Some(2), "b.mp4", 50.0, 0.5);
        }
        assert!(floor.blurred(Some(3), "b.mp4", 10.0, 0.5));
        assert!(!floor.blurred(Some(3), "b.mp4", 30.0, 0.5));
        // Another video's faces do not count.
        assert!(!floor.blurred(Some(4), "c.mp4", 1.0, 0.5));
    }

    #[test]
    fn recent_values_keep_the_last_ones() {
        let mut r = Recent::default();
        for v in 0..10 {
            r.push(v as f32, 3);
        }
        assert_eq!(r.median(3), Some(8.0));
        assert_eq!(r.median(4), None);
    }
}
