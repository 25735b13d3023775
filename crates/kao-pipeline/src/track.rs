//! The track stage: links the faces of consecutive frames into tracks (`track_id`).
//!
//! A face continues a track of the same source and shot when the track was seen at most
//! `max_gap` seconds earlier, their boxes overlap (IoU ≥ `min_iou`) and their embeddings are
//! within `max_distance` (the face's and the track's latest; a face kao-embed did not embed
//! links by its box alone); the best pairs are linked first. Other faces start new tracks. A shot
//! cut (the `shot` column) ends every track.

use std::sync::Arc;

use anyhow::{Result, anyhow};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Float64Array, RecordBatch, StringArray,
    UInt32Array, UInt64Array,
};
use clap::Args;
use kao_record::schema::{DataType, Field, SchemaRef, col, pass_through, stage_schema};
use kao_record::{EmbeddingSpace, Metric, Provenance};

use kao_image::iou;

use crate::{HoldingStage, WholeFrames, column};

/// The default largest embedding distance between consecutive faces of a track: 0.6 for
/// dlib (its same-person bound), 0.75 for cosine spaces (cosine similarity ≥ 0.25: a track
/// also needs overlapping boxes, so the bound only has to separate different people);
/// `None` for other Euclidean spaces, whose scale kao cannot know.
pub fn default_link_distance(space: &EmbeddingSpace) -> Option<f32> {
    match (space.embedder.as_str(), space.metric) {
        ("dlib-resnet", _) => Some(0.6),
        (_, Metric::Cosine) => Some(0.75),
        _ => None,
    }
}

/// How faces are linked into tracks: kao-track's options (and kao-extract's). Each field's
/// doc is its `--help` text; its default is [`TrackOptions::default`]'s.
#[derive(Args, Clone, Copy, Debug)]
pub struct TrackOptions {
    /// Longest gap, in seconds of video, that a face track bridges.
    #[arg(long, value_name = "S", default_value_t = TrackOptions::default().max_gap)]
    pub max_gap: f64,
    /// Least box overlap (IoU) between a track's last face and the next.
    #[arg(long, value_name = "F", default_value_t = TrackOptions::default().min_iou)]
    pub min_iou: f32,
    /// Largest embedding distance between a track's last face and the next (default: 0.6
    /// for dlib's ResNet, 0.75 for cosine embedders; required for other Euclidean ones).
    #[arg(long = "link-distance", value_name = "D")]
    pub max_distance: Option<f32>,
}

impl Default for TrackOptions {
    /// Bridges gaps of a second, needs an overlap of 0.2, and the embedding space's own link
    /// distance ([`default_link_distance`]).
    fn default() -> Self {
        TrackOptions {
            max_gap: 1.0,
            min_iou: 0.2,
            max_distance: None,
        }
    }
}

impl TrackOptions {
    /// The stage's provenance entry, with the link distance it uses.
    pub fn provenance(&self, max_distance: f32) -> Provenance {
        Provenance::new(
            "kao-track",
            env!("CARGO_PKG_VERSION"),
            serde_json::json!({ "max_gap": self.max_gap, "min_iou": self.min_iou, "max_distance": max_distance }),
        )
    }
}

/// An open track: where its last face was.
struct Track {
    id: u64,
    source: String,
    shot: u32,
    pts: f64,
    bbox: [f32; 4],
    /// Its latest embedded face's embedding, if any.
    embedding: Option<Vec<f32>>,
}

/// The track stage over record batches. Faces of one frame are linked together, so the last
/// frame of a batch is held back until the next batch shows it is complete.
pub struct TrackStage {
    options: TrackOptions,
    max_distance: f32,
    metric: Metric,
    schema: SchemaRef,
    frames: WholeFrames,
    open: Vec<Track>,
    next_id: u64,
    /// Rows linked so far, to number rows in errors.
    rows_seen: u64,
    name: String,
}

impl TrackStage {
    /// The stage for face records named `name` with `input` schema (checked here).
    pub fn new(options: TrackOptions, input: &SchemaRef, name: &str) -> Result<TrackStage> {
        if !(options.max_gap >= 0.0 && options.max_gap.is_finite()) {
            anyhow::bail!("--max-gap must be a number of seconds >= 0");
        }
        kao_record::schema::require(
            input,
            name,
            "kao-track",
            &[
                (col::SOURCE, DataType::Utf8),
                (col::FRAME_INDEX, DataType::UInt64),
                (col::PTS, DataType::Float64),
                (col::SHOT, DataType::UInt32),
                (col::X, DataType::Float32),
                (col::Y, DataType::Float32),
                (col::W, DataType::Float32),
                (col::H, DataType::Float32),
            ],
        )?;
        let space = EmbeddingSpace::required(input, name, "kao-track")?;
        let max_distance = match options.max_distance {
            Some(d) if d.is_finite() && d >= 0.0 => d,
            Some(_) => anyhow::bail!("--link-distance must be a number >= 0"),
            None => default_link_distance(&space).ok_or_else(|| {
                anyhow!(
                    "{name}: kao has no default track link distance for {space}: give --link-distance"
                )
            })?,
        };
        let added = vec![Field::new(col::TRACK_ID, DataType::UInt64, true)];
        let provenance = options.provenance(max_distance);
        let schema = stage_schema(input, &[], added, &provenance).map_err(|e| e.at(name))?;
        Ok(TrackStage {
            options,
            max_distance,
            metric: space.metric,
            schema,
            frames: WholeFrames::new(input),
            open: Vec::new(),
            next_id: 0,
            rows_seen: 0,
            name: name.to_string(),
        })
    }

    /// The schema of the output records.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Links the faces of complete frames.
    fn link(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        crate::check_boxes(batch, &self.name, self.rows_seen)?;
        self.rows_seen += batch.num_rows() as u64;
        let sources = column::<StringArray>(batch, col::SOURCE)?;
        let frames = column::<UInt64Array>(batch, col::FRAME_INDEX)?;
        let pts = column::<Float64Array>(batch, col::PTS)?;
        let shots = column::<UInt32Array>(batch, col::SHOT)?;
        let (x, y) = (
            column::<Float32Array>(batch, col::X)?,
            column::<Float32Array>(batch, col::Y)?,
        );
        let (w, h) = (
            column::<Float32Array>(batch, col::W)?,
            column::<Float32Array>(batch, col::H)?,
        );
        let embeddings = column::<FixedSizeListArray>(batch, col::EMBEDDING)?;
        let values = embeddings
            .values()
            .as_any()
            .downcast_ref::<Float32Array>()
            .ok_or_else(|| anyhow!("{}: embedding values are not float32", self.name))?;
        let dim = embeddings.value_length() as usize;
        let embedding = |i: usize| {
            let at = embeddings.value_offset_at(i);
            embeddings
                .is_valid(i)
                .then(|| &values.values()[at..at + dim])
        };
        let bbox = |i: usize| {
            [
                x.value(i),
                y.value(i),
                x.value(i) + w.value(i),
                y.value(i) + h.value(i),
            ]
        };
        let mut ids = vec![0u64; batch.num_rows()];
        let mut start = 0;
        while start < batch.num_rows() {
            let mut end = start + 1;
            while end < batch.num_rows()
                && frames.value(end) == frames.value(start)
                && sources.value(end) == sources.value(start)
            {
                end += 1;
            }
            let (source, shot, now) = (sources.value(start), shots.value(start), pts.value(start));
            // Tracks of another source, another shot or too long ago are over.
            let max_gap = self.options.max_gap;
            self.open
                .retain(|t| t.source == source && t.shot == shot && now - t.pts <= max_gap + 1e-6);
            // Candidate links, best first: most overlap plus nearest embedding.
            let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
            for (t, track) in self.open.iter().enumerate() {
                for i in start..end {
                    let overlap = iou(&track.bbox, &bbox(i));
                    let d = match (&track.embedding, embedding(i)) {
                        (Some(a), Some(b)) => self.metric.distance(a, b),
                        _ => 0.0,
                    };
                    if overlap >= self.options.min_iou && d <= self.max_distance {
                        pairs.push(((1.0 - overlap) + d, t, i));
                    }
                }
            }
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let mut track_used = vec![false; self.open.len()];
            let mut face_linked = vec![false; end - start];
            for (_, t, i) in pairs {
                if track_used[t] || face_linked[i - start] {
                    continue;
                }
                track_used[t] = true;
                face_linked[i - start] = true;
                ids[i] = self.open[t].id;
                let track = &mut self.open[t];
                track.pts = now;
                track.bbox = bbox(i);
                if let Some(e) = embedding(i) {
                    track.embedding = Some(e.to_vec());
                }
            }
            for i in start..end {
                if !face_linked[i - start] {
                    ids[i] = self.next_id;
                    self.open.push(Track {
                        id: self.next_id,
                        source: source.to_string(),
                        shot,
                        pts: now,
                        bbox: bbox(i),
                        embedding: embedding(i).map(<[f32]>::to_vec),
                    });
                    self.next_id += 1;
                }
            }
            start = end;
        }
        let column: ArrayRef = Arc::new(UInt64Array::from(ids));
        Ok(pass_through(batch, &self.schema, vec![column])?)
    }
}

impl HoldingStage for TrackStage {
    /// Takes a batch; returns the records of the frames now known to be complete.
    fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        self.frames
            .complete(batch)?
            .iter()
            .map(|done| self.link(done))
            .collect()
    }

    /// The records held back for the last frame.
    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        self.frames
            .rest()
            .iter()
            .map(|batch| self.link(batch))
            .collect()
    }
}
