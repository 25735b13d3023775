//! The match stage: each face gets the identity of the nearest reference within a threshold.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use anyhow::{Result, anyhow};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt64Array,
};
use kao_record::schema::{DataType, Field, SchemaRef, col, pass_through, stage_schema};
use kao_record::{EmbeddingSpace, Metric, Provenance};

use crate::{HoldingStage, WholeFrames, column};

/// The default `--threshold` (see docs/matching.md).
pub const DEFAULT_THRESHOLD: f32 = 0.48;

/// Embeddings of known people, by name, in one embedding space.
#[derive(Clone, Debug)]
pub struct Gallery {
    people: BTreeMap<String, Vec<Vec<f32>>>,
    space: EmbeddingSpace,
}

impl Gallery {
    /// An empty gallery of embeddings from `space`.
    pub fn new(space: EmbeddingSpace) -> Gallery {
        Gallery {
            people: BTreeMap::new(),
            space,
        }
    }

    /// The space its embeddings come from.
    pub fn space(&self) -> &EmbeddingSpace {
        &self.space
    }

    /// The distance between two embeddings of the gallery's space.
    fn distance(&self, a: &[f32], b: &[f32]) -> f32 {
        self.space.metric.distance(a, b)
    }

    /// Adds one embedding of `name` (of the gallery's dimension).
    pub fn add(&mut self, name: &str, embedding: Vec<f32>) -> Result<()> {
        if embedding.len() != self.space.dim {
            anyhow::bail!(
                "{name}: a reference embedding has {} values; {} makes {}",
                embedding.len(),
                self.space,
                self.space.dim
            );
        }
        self.people
            .entry(name.to_string())
            .or_default()
            .push(embedding);
        Ok(())
    }

    /// True when the gallery holds nobody.
    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// The people in the gallery, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.people.keys().map(String::as_str)
    }

    /// The distance from `query` to each person's nearest embedding, in name order.
    pub fn distances(&self, query: &[f32]) -> Vec<f32> {
        self.people
            .values()
            .map(|vectors| {
                vectors
                    .iter()
                    .map(|v| self.distance(v, query))
                    .fold(f32::INFINITY, f32::min)
            })
            .collect()
    }

    /// The nearest person and the distance to their nearest embedding.
    pub fn nearest(&self, query: &[f32]) -> Option<(&str, f32)> {
        self.people
            .iter()
            .filter_map(|(name, vectors)| {
                vectors
                    .iter()
                    .map(|v| self.distance(v, query))
                    .min_by(f32::total_cmp)
                    .map(|d| (name.as_str(), d))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// How a face is matched.
#[derive(Clone, Copy, Debug)]
pub struct MatchOptions {
    /// A face matches a person when its distance to their nearest reference is at most this.
    pub threshold: f32,
    /// The best person must be at least this much closer than the nearest negative.
    pub margin: f32,
    /// Let one person match several faces of the same frame (by default only the closest
    /// face of a frame takes a person; the others stay unmatched).
    pub allow_repeats: bool,
    /// Decide per face track (`track_id`) from the median of a track's `track_best` nearest
    /// faces; 0 decides every face on its own.
    pub track_best: usize,
    /// FACE01's percentage curve for the embedder, for the `similar_percentage` column
    /// (`None`: the column is null).
    pub curve: Option<crate::matching::similar::Curve>,
    /// Matching through the video: a face (or track) the references leave unmatched takes a
    /// person when it is within this distance of faces of the same video that matched that
    /// person on the references with their track's support, and within
    /// [`VIDEO_CEILING`] × `threshold` of the references. 0 turns it off.
    pub video_threshold: f32,
}

/// The default [`MatchOptions::video_threshold`], as a fraction of the threshold (0.41 for
/// dlib's 0.48): faces of one person in one video lie closer together than a face and a
/// photo from elsewhere (docs/matching.md).
pub const DEFAULT_VIDEO_THRESHOLD: f32 = 0.85;

/// Faces farther than this many thresholds from a person's references never take that
/// person through the video.
pub const VIDEO_CEILING: f32 = 1.35;

/// The most faces of one person kept per video as its in-video references (the oldest go).
const VIDEO_EXEMPLARS: usize = 256;

/// A face nearer than this many thresholds to a kept in-video reference is not kept as
/// another (consecutive frames of a still face).
const VIDEO_EXEMPLAR_SPACING: f32 = 0.1;

/// The default [`MatchOptions::track_best`].
pub const DEFAULT_TRACK_BEST: usize = 3;

/// Face records a track decision may wait for: rows are emitted in order once this many
/// later rows have been seen (bounds memory; patches travel with the rows).
const LOOKAHEAD_ROWS: usize = 32;

/// The matching rule: the positives to find and the negatives to reject.
pub struct Matcher {
    positives: Gallery,
    negatives: Gallery,
    options: MatchOptions,
}

/// The verdict on one face.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The matched person, if any.
    pub identity: Option<String>,
    /// Distance to the nearest positive reference (of `identity` when matched).
    pub distance: f32,
    /// Distance to the nearest face of `identity` in the same video that matched on the
    /// references (`None` when there is none, or when the stage judges faces alone).
    pub video_distance: Option<f32>,
}

impl Verdict {
    /// No match; `distance` to the nearest reference.
    fn unmatched(distance: f32) -> Verdict {
        Verdict {
            identity: None,
            distance,
            video_distance: None,
        }
    }
}

impl Matcher {
    /// A matcher for `positives`, rejecting faces nearer to `negatives`. Without positives it
    /// matches no one (kao-extract without --ref, which then clusters every face).
    pub fn new(positives: Gallery, negatives: Gallery, options: MatchOptions) -> Result<Matcher> {
        if !(options.threshold > 0.0 && options.threshold.is_finite()) {
            anyhow::bail!("--threshold must be a positive number");
        }
        if !(options.video_threshold >= 0.0 && options.video_threshold.is_finite()) {
            anyhow::bail!("--video-threshold must be a number >= 0");
        }
        if !(options.margin >= 0.0 && options.margin.is_finite()) {
            anyhow::bail!("--margin must be a number >= 0");
        }
        positives
            .space
            .check_same("the references", &negatives.space, "the --neg photos")?;
        Ok(Matcher {
            positives,
            negatives,
            options,
        })
    }

    /// The verdict on one embedding, before the one-face-per-person-per-frame rule.
    pub fn judge(&self, embedding: &[f32]) -> Verdict {
        let Some((name, d)) = self.positives.nearest(embedding) else {
            return Verdict::unmatched(f32::INFINITY);
        };
        let rejected = self
            .negatives
            .nearest(embedding)
            .is_some_and(|(_, neg)| neg < d + self.options.margin);
        let identity = (d <= self.options.threshold && !rejected).then(|| name.to_string());
        Verdict {
            identity,
            distance: d,
            video_distance: None,
        }
    }
}

/// The match stage over record batches. Faces of one frame are judged together (a person
/// appears at most once per frame), so the last frame of a batch is held back until the next
/// batch shows it is complete.
pub struct MatchStage {
    matcher: Matcher,
    schema: SchemaRef,
    frames: WholeFrames,
    /// Judged-by-face frames waiting for their tracks' evidence, in order.
    pending: VecDeque<(RecordBatch, Vec<Evidence>)>,
    pending_rows: usize,
    tracks: HashMap<u64, TrackEvidence>,
    /// Each track's latest embedded face, for the faces of the track that kao-embed did not
    /// embed.
    latest: HashMap<u64, Evidence>,
    /// Per video: the faces that matched a person on the references with their track's
    /// support.
    videos: HashMap<String, VideoFaces>,
    /// The video of the latest face seen.
    current: Option<String>,
    /// Numbers the embedded faces seen, so a face is never its own in-video reference.
    serial: u64,
    name: String,
}

/// What one face says: its track, its distance to each person and to the negatives, and how
/// it looks.
#[derive(Clone, Default)]
struct Evidence {
    /// Its track when tracks decide (`track_best` > 0).
    track: Option<u64>,
    source: String,
    distances: Vec<f32>,
    negative: Option<f32>,
    /// Its embedding (a face without one: its track's latest embedded face's), and that
    /// face's serial number; `None` when neither exists.
    embedding: Option<Numbered>,
}

/// What a track's faces say so far: per person, the smallest distances to the references and
/// to the video's faces, and how many faces matched that person on their own.
#[derive(Default)]
struct TrackEvidence {
    best: Vec<Vec<f32>>,
    video: Vec<Vec<f32>>,
    negative: Vec<f32>,
    matched_faces: Vec<u32>,
}

/// One video's faces that matched a person on the references with their track's support: how
/// each person looks in this video (light, hair, camera). Faces of a track count once a
/// second face of the track has matched the same person, so one stray match never vouches
/// for anyone.
#[derive(Default)]
struct VideoFaces {
    /// Per person, the kept faces, oldest first.
    people: Vec<VecDeque<Numbered>>,
    /// Per track and person: whether enough of its faces matched, and the matched faces
    /// held until they have.
    tracks: HashMap<(u64, usize), (bool, Vec<Numbered>)>,
}

/// An embedding and the serial number of its face.
type Numbered = (u64, Arc<[f32]>);

impl VideoFaces {
    /// The distance from `embedding` to each of `people` persons' faces in this video
    /// (infinite for a person without any), leaving out face `serial` itself.
    fn distances(&self, metric: Metric, people: usize, serial: u64, embedding: &[f32]) -> Vec<f32> {
        (0..people)
            .map(|p| {
                self.people.get(p).map_or(f32::INFINITY, |faces| {
                    faces
                        .iter()
                        .filter(|(s, _)| *s != serial)
                        .map(|(_, e)| metric.distance(e, embedding))
                        .fold(f32::INFINITY, f32::min)
                })
            })
            .collect()
    }

    /// Counts a face of `track` that matched `person` on the references; keeps it (and the
    /// track's earlier such faces) once the track has `support` of them.
    fn offer(
        &mut self,
        track: u64,
        person: usize,
        face: Numbered,
        support: usize,
        metric: Metric,
        spacing: f32,
    ) {
        let (supported, held) = self.tracks.entry((track, person)).or_default();
        held.push(face);
        if !*supported && held.len() < support {
            return;
        }
        *supported = true;
        let held = std::mem::take(held);
        if self.people.len() <= person {
            self.people.resize_with(person + 1, VecDeque::new);
        }
        let kept = &mut self.people[person];
        for face in held {
            // Consecutive frames of a still face add nothing.
            if kept
                .iter()
                .any(|(_, e)| metric.distance(e, &face.1) < spacing)
            {
                continue;
            }
            if kept.len() == VIDEO_EXEMPLARS {
                kept.pop_front();
            }
            kept.push_back(face);
        }
    }
}

/// The median of a few values (the lower middle for an even count); infinite when empty.
fn median(values: &[f32]) -> f32 {
    if values.is_empty() {
        return f32::INFINITY;
    }
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    v[(v.len() - 1) / 2]
}

/// Keeps the `k` smallest values of `kept` after adding `value`.
fn keep_smallest(kept: &mut Vec<f32>, value: f32, k: usize) {
    kept.push(value);
    kept.sort_by(f32::total_cmp);
    kept.truncate(k);
}

/// The index and value of the smallest score; `(0, inf)` when there is none.
fn nearest(scores: &[f32]) -> (usize, f32) {
    scores
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(p, &d)| (p, d))
        .unwrap_or((0, f32::INFINITY))
}

impl MatchStage {
    /// The stage for face records named `name` with `input` schema (checked here).
    pub fn new(
        matcher: Matcher,
        provenance: &Provenance,
        input: &SchemaRef,
        name: &str,
    ) -> Result<MatchStage> {
        kao_record::schema::require(
            input,
            name,
            "kao-match",
            &[
                (col::SOURCE, DataType::Utf8),
                (col::FRAME_INDEX, DataType::UInt64),
            ],
        )?;
        let space = EmbeddingSpace::required(input, name, "kao-match")?;
        space
            .check_same("the faces", matcher.positives.space(), "the references")
            .map_err(|e| anyhow!("{name}: {e}"))?;
        let added = vec![
            Field::new(col::IDENTITY, DataType::Utf8, true),
            Field::new(col::DISTANCE, DataType::Float32, true),
            Field::new(col::SIMILAR_PERCENTAGE, DataType::Float32, true),
            Field::new(col::VIDEO_DISTANCE, DataType::Float32, true),
        ];
        let schema = stage_schema(input, &[], added, provenance).map_err(|e| e.at(name))?;
        Ok(MatchStage {
            matcher,
            schema,
            frames: WholeFrames::new(input),
            pending: VecDeque::new(),
            pending_rows: 0,
            tracks: HashMap::new(),
            latest: HashMap::new(),
            videos: HashMap::new(),
            current: None,
            serial: 0,
            name: name.to_string(),
        })
    }

    /// The schema of the output records.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The metric of the faces and references.
    fn metric(&self) -> Metric {
        self.matcher.positives.space.metric
    }

    /// True when faces may match through their video.
    fn through_videos(&self) -> bool {
        self.matcher.options.video_threshold > 0.0 && !self.matcher.positives.is_empty()
    }

    /// The distance from `face` to each person's faces in its video.
    fn video_distances(&self, face: &Evidence) -> Vec<f32> {
        let people = face.distances.len();
        match (&face.embedding, self.videos.get(&face.source)) {
            (Some((serial, e)), Some(video)) => video.distances(self.metric(), people, *serial, e),
            _ => vec![f32::INFINITY; people],
        }
    }

    /// Records the evidence of complete frames and queues them.
    fn observe(&mut self, batch: RecordBatch) -> Result<()> {
        let embeddings = column::<FixedSizeListArray>(&batch, col::EMBEDDING)?;
        let values = embeddings
            .values()
            .as_any()
            .downcast_ref::<Float32Array>()
            .ok_or_else(|| anyhow!("{}: embedding values are not float32", self.name))?;
        let sources = column::<StringArray>(&batch, col::SOURCE)?;
        let tracks = batch
            .column_by_name(col::TRACK_ID)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
        let options = self.matcher.options;
        let k = options.track_best;
        let metric = self.metric();
        let spacing = VIDEO_EXEMPLAR_SPACING * options.threshold;
        // A track vouches for a person once as many of its faces matched as its own verdict
        // needs (two at least): the median of its `k` nearest.
        let support = (k.saturating_sub(1) / 2 + 1).max(2);
        let mut evidence = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let source = sources.value(i);
            if self.current.as_deref() != Some(source) {
                self.current = Some(source.to_string());
            }
            let track_id = tracks.filter(|t| t.is_valid(i)).map(|t| t.value(i));
            let track = track_id.filter(|_| k > 0);
            if embeddings.is_null(i) {
                // Not embedded (kao-embed's sampler): the latest embedded face of its track
                // speaks for it; its track's evidence comes from the embedded faces only.
                let mut face = track_id
                    .and_then(|id| self.latest.get(&id).cloned())
                    .unwrap_or_default();
                face.track = track;
                face.source = source.to_string();
                evidence.push(face);
                continue;
            }
            let at = embeddings.value_offset_at(i);
            let embedding: Arc<[f32]> =
                values.values()[at..at + embeddings.value_length() as usize].into();
            self.serial += 1;
            let face = Evidence {
                track,
                source: source.to_string(),
                distances: self.matcher.positives.distances(&embedding),
                negative: self.matcher.negatives.nearest(&embedding).map(|(_, d)| d),
                embedding: Some((self.serial, embedding)),
            };
            let video = if self.through_videos() {
                self.video_distances(&face)
            } else {
                Vec::new()
            };
            if let Some(id) = track_id {
                self.latest.insert(id, face.clone());
            }
            if let Some(id) = track {
                let t = self.tracks.entry(id).or_default();
                let people = face.distances.len();
                t.best.resize_with(people, Vec::new);
                t.video.resize_with(people, Vec::new);
                t.matched_faces.resize(people, 0);
                for (p, &d) in face.distances.iter().enumerate() {
                    keep_smallest(&mut t.best[p], d, k);
                    if let Some(&v) = video.get(p) {
                        keep_smallest(&mut t.video[p], v, k);
                    }
                    if d <= options.threshold {
                        t.matched_faces[p] += 1;
                    }
                }
                if let Some(n) = face.negative {
                    keep_smallest(&mut t.negative, n, k);
                }
            }
            // A face that matches one person alone on the references shows how they look in
            // this video.
            let (p, d) = nearest(&face.distances);
            let alone = face
                .distances
                .iter()
                .filter(|&&d| d <= options.threshold)
                .count()
                == 1;
            let rejected = face.negative.is_some_and(|n| n < d + options.margin);
            if self.through_videos()
                && alone
                && !rejected
                && let (Some(id), Some(e)) = (track_id, face.embedding.clone())
            {
                self.videos
                    .entry(source.to_string())
                    .or_default()
                    .offer(id, p, e, support, metric, spacing);
            }
            evidence.push(face);
        }
        self.pending_rows += batch.num_rows();
        self.pending.push_back((batch, evidence));
        Ok(())
    }

    /// Decides and returns the oldest queued frames until at most `keep` rows wait.
    fn emit(&mut self, keep: usize) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        while self.pending_rows > keep {
            let Some((batch, evidence)) = self.pending.pop_front() else {
                break;
            };
            self.pending_rows -= batch.num_rows();
            out.push(self.judge(&batch, &evidence)?);
        }
        // Forget the tracks and videos no waiting face belongs to.
        let mut tracks = std::collections::HashSet::new();
        let mut sources = std::collections::HashSet::new();
        for face in self.pending.iter().flat_map(|(_, e)| e) {
            tracks.extend(face.track);
            sources.insert(face.source.as_str());
        }
        self.tracks.retain(|id, _| tracks.contains(id));
        let current = self.current.as_deref();
        self.videos.retain(|source, _| {
            sources.contains(source.as_str()) || Some(source.as_str()) == current
        });
        Ok(out)
    }

    /// The verdict on one face: by its track's evidence when it has a track, else on its own;
    /// failing the references, through its video.
    fn verdict(&self, face: &Evidence) -> Verdict {
        let options = &self.matcher.options;
        let track = face.track.and_then(|id| self.tracks.get(&id));
        let (own, own_distance) = nearest(&face.distances);
        let (person, score, negative, ambiguous) = match track {
            Some(t) => {
                let scores: Vec<f32> = t.best.iter().map(|b| median(b)).collect();
                let (p, score) = nearest(&scores);
                // A track whose faces match two people on their own is left unmatched.
                let ambiguous = t.matched_faces.iter().filter(|&&n| n >= 2).count() >= 2;
                let negative = (!t.negative.is_empty()).then(|| median(&t.negative));
                (p, score, negative, ambiguous)
            }
            None => (own, own_distance, face.negative, false),
        };
        let rejected = |negative: Option<f32>, score: f32| {
            negative.is_some_and(|n| n < score + options.margin)
        };
        let video = self.video_distances(face);
        let matched = |person: usize| {
            let name = self
                .matcher
                .positives
                .names()
                .nth(person)
                .unwrap_or_default();
            Verdict {
                identity: Some(name.to_string()),
                // A face without an embedding of its own: its track's.
                distance: face.distances.get(person).copied().unwrap_or(score),
                video_distance: video.get(person).copied().filter(|d| d.is_finite()),
            }
        };
        if ambiguous {
            return Verdict::unmatched(own_distance);
        }
        if score <= options.threshold && !rejected(negative, score) {
            return matched(person);
        }
        if !self.through_videos() {
            return Verdict::unmatched(own_distance);
        }
        // Through the video: near this person's faces in this video, and not far from their
        // references.
        let (video_scores, scores) = match track {
            Some(t) => (
                t.video.iter().map(|v| median(v)).collect(),
                t.best.iter().map(|b| median(b)).collect(),
            ),
            None => (video.clone(), face.distances.clone()),
        };
        let (p, v) = nearest(&video_scores);
        let score = scores.get(p).copied().unwrap_or(f32::INFINITY);
        if v <= options.video_threshold
            && score <= VIDEO_CEILING * options.threshold
            && !rejected(negative, score)
        {
            matched(p)
        } else {
            Verdict::unmatched(own_distance)
        }
    }

    /// Judges the faces of complete frames.
    fn judge(&self, batch: &RecordBatch, evidence: &[Evidence]) -> Result<RecordBatch> {
        let mut verdicts: Vec<Verdict> = evidence.iter().map(|e| self.verdict(e)).collect();
        if !self.matcher.options.allow_repeats {
            keep_closest_per_frame(batch, &mut verdicts)?;
        }
        let identity: ArrayRef = Arc::new(
            verdicts
                .iter()
                .map(|v| v.identity.as_deref())
                .collect::<StringArray>(),
        );
        let distance: ArrayRef = Arc::new(
            verdicts
                .iter()
                // No reference at all: no distance.
                .map(|v| v.distance.is_finite().then_some(v.distance))
                .collect::<Float32Array>(),
        );
        let curve = self.matcher.options.curve;
        let percentage: ArrayRef = Arc::new(
            verdicts
                .iter()
                .map(|v| {
                    curve
                        .filter(|_| v.distance.is_finite())
                        .map(|c| c.percentage(v.distance))
                })
                .collect::<Float32Array>(),
        );
        let video_distance: ArrayRef = Arc::new(
            verdicts
                .iter()
                .map(|v| v.identity.as_ref().and(v.video_distance))
                .collect::<Float32Array>(),
        );
        Ok(pass_through(
            batch,
            &self.schema,
            vec![identity, distance, percentage, video_distance],
        )?)
    }
}

impl HoldingStage for MatchStage {
    /// Takes a batch; returns the records now decided (complete frames whose tracks have
    /// enough evidence, in input order).
    fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        for done in self.frames.complete(batch)? {
            self.observe(done)?;
        }
        // Faces judged on their own, without the video's help, need no lookahead.
        let lookahead = if self.matcher.options.track_best > 0 || self.through_videos() {
            LOOKAHEAD_ROWS
        } else {
            0
        };
        self.emit(lookahead)
    }

    /// Decides and returns every record still held.
    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        if let Some(batch) = self.frames.rest() {
            self.observe(batch)?;
        }
        let out = self.emit(0);
        self.tracks.clear();
        self.latest.clear();
        self.videos.clear();
        self.current = None;
        out
    }
}

/// Splits `batch` into the rows of its complete frames and the rows of its last frame, which
/// the next batch may continue (rows of one frame are consecutive).
pub(crate) fn split_last_frame(
    batch: &RecordBatch,
) -> Result<(Option<RecordBatch>, Option<RecordBatch>)> {
    if batch.num_rows() == 0 {
        return Ok((None, None));
    }
    let frames = column::<UInt64Array>(batch, col::FRAME_INDEX)?;
    let sources = column::<StringArray>(batch, col::SOURCE)?;
    let last = batch.num_rows() - 1;
    let mut start = last;
    while start > 0
        && frames.value(start - 1) == frames.value(last)
        && sources.value(start - 1) == sources.value(last)
    {
        start -= 1;
    }
    let held = Some(batch.slice(start, batch.num_rows() - start));
    Ok(((start > 0).then(|| batch.slice(0, start)), held))
}

/// Within each frame, a person keeps only their closest face; the others become unmatched.
fn keep_closest_per_frame(batch: &RecordBatch, verdicts: &mut [Verdict]) -> Result<()> {
    let frames = column::<UInt64Array>(batch, col::FRAME_INDEX)?;
    let sources = column::<StringArray>(batch, col::SOURCE)?;
    let mut start = 0;
    while start < verdicts.len() {
        let mut end = start + 1;
        while end < verdicts.len()
            && frames.value(end) == frames.value(start)
            && sources.value(end) == sources.value(start)
        {
            end += 1;
        }
        for i in start..end {
            let Some(name) = verdicts[i].identity.clone() else {
                continue;
            };
            let closer = (start..end).any(|j| {
                j != i
                    && verdicts[j].identity.as_deref() == Some(name.as_str())
                    && (verdicts[j].distance, j) < (verdicts[i].distance, i)
            });
            if closer {
                verdicts[i].identity = None;
            }
        }
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(x: f32) -> Vec<f32> {
        let mut v = vec![0f32; 128];
        v[0] = x;
        v
    }

    fn empty() -> Gallery {
        Gallery::new(EmbeddingSpace::dlib_resnet())
    }

    fn gallery(people: &[(&str, f32)]) -> Gallery {
        let mut g = empty();
        for (name, x) in people {
            g.add(name, vector(*x)).unwrap();
        }
        g
    }

    #[test]
    fn galleries_take_their_space_s_dimension_and_metric() {
        let mut g = empty();
        assert!(
            g.add("a", vec![0.0; 512])
                .unwrap_err()
                .to_string()
                .contains("512 values")
        );
        let mut cosine = EmbeddingSpace::dlib_resnet();
        cosine.embedder = "onnx".into();
        cosine.dim = 2;
        cosine.metric = kao_record::Metric::Cosine;
        let mut c = Gallery::new(cosine);
        c.add("a", vec![1.0, 0.0]).unwrap();
        let (name, d) = c.nearest(&[2.0, 0.0]).unwrap();
        assert_eq!(name, "a");
        assert!(d.abs() < 1e-6, "{d}");
        // Faces and references of different models are refused, naming both.
        let e = Matcher::new(gallery(&[("a", 0.0)]), c, options(0.5, 0.0))
            .err()
            .unwrap();
        assert!(e.to_string().contains("onnx"), "{e}");
    }

    fn options(threshold: f32, margin: f32) -> MatchOptions {
        MatchOptions {
            threshold,
            margin,
            allow_repeats: false,
            track_best: 0,
            curve: None,
            video_threshold: 0.0,
        }
    }

    #[test]
    fn nearest_person_within_threshold() {
        let m = Matcher::new(
            gallery(&[("a", 0.0), ("a", 1.0), ("b", 2.0)]),
            empty(),
            options(0.5, 0.0),
        )
        .unwrap();
        let v = m.judge(&vector(0.9));
        assert_eq!(v.identity.as_deref(), Some("a"));
        assert!((v.distance - 0.1).abs() < 1e-6);
        let v = m.judge(&vector(1.6));
        assert_eq!(v.identity.as_deref(), Some("b"));
        assert!((v.distance - 0.4).abs() < 1e-6);
        let far = m.judge(&vector(5.0));
        assert_eq!(far.identity, None);
        assert!((far.distance - 3.0).abs() < 1e-6);
    }

    #[test]
    fn negatives_reject_by_margin() {
        let negatives = gallery(&[("n", 1.0)]);
        let m = Matcher::new(gallery(&[("a", 0.0)]), negatives.clone(), options(0.6, 0.0)).unwrap();
        // 0.45 from a, 0.55 from n: a wins.
        assert_eq!(m.judge(&vector(0.45)).identity.as_deref(), Some("a"));
        // 0.55 from a, 0.45 from n: rejected although within the threshold.
        assert_eq!(m.judge(&vector(0.55)).identity, None);
        // With a margin of 0.2, a must be 0.2 closer than n.
        let strict = Matcher::new(gallery(&[("a", 0.0)]), negatives, options(0.6, 0.2)).unwrap();
        assert_eq!(strict.judge(&vector(0.45)).identity, None);
        assert_eq!(strict.judge(&vector(0.35)).identity.as_deref(), Some("a"));
    }

    #[test]
    fn bad_options_are_errors() {
        // No references: a matcher that matches no one (kao-extract without --ref).
        let none = Matcher::new(empty(), empty(), options(0.5, 0.0)).unwrap();
        let v = none.judge(&vector(0.0));
        assert_eq!((v.identity, v.distance), (None, f32::INFINITY));
        assert!(Matcher::new(gallery(&[("a", 0.0)]), empty(), options(0.0, 0.0)).is_err());
        assert!(Matcher::new(gallery(&[("a", 0.0)]), empty(), options(0.5, -1.0)).is_err());
        assert!(Matcher::new(gallery(&[("a", 0.0)]), empty(), options(f32::NAN, 0.0)).is_err());
    }

    /// Face records: (video, frame, track, embedding's first value or none).
    fn faces(rows: &[(&str, u64, u64, Option<f32>)]) -> RecordBatch {
        use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
        let space = EmbeddingSpace::dlib_resnet();
        let mut embeddings = FixedSizeListBuilder::new(Float32Builder::new(), 128)
            .with_field(Arc::new(Field::new("item", DataType::Float32, false)));
        for &(_, _, _, x) in rows {
            let values = vector(x.unwrap_or(0.0));
            embeddings.values().append_slice(&values);
            embeddings.append(x.is_some());
        }
        let schema = Arc::new(kao_record::schema::Schema::new(vec![
            Field::new(col::SOURCE, DataType::Utf8, false),
            Field::new(col::FRAME_INDEX, DataType::UInt64, false),
            Field::new(col::TRACK_ID, DataType::UInt64, true),
            space.field(),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(rows.iter().map(|r| Some(r.0)).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| Some(r.1)).collect::<UInt64Array>()),
                Arc::new(rows.iter().map(|r| Some(r.2)).collect::<UInt64Array>()),
                Arc::new(embeddings.finish()),
            ],
        )
        .unwrap()
    }

    /// Runs the match stage over `rows` (one batch) and returns (identity, video_distance)
    /// per row.
    fn matched(
        options: MatchOptions,
        negatives: Gallery,
        rows: &[(&str, u64, u64, Option<f32>)],
    ) -> Vec<(Option<String>, Option<f32>)> {
        let matcher = Matcher::new(gallery(&[("a", 0.0)]), negatives, options).unwrap();
        let input = faces(rows);
        let provenance = Provenance::new("kao-match", "test", serde_json::json!({}));
        let mut stage = MatchStage::new(matcher, &provenance, &input.schema(), "t").unwrap();
        let mut out = stage.push(input).unwrap();
        out.extend(stage.finish().unwrap());
        let mut verdicts = Vec::new();
        for batch in out {
            let identity = column::<StringArray>(&batch, col::IDENTITY).unwrap();
            let video = column::<Float32Array>(&batch, col::VIDEO_DISTANCE).unwrap();
            for i in 0..batch.num_rows() {
                verdicts.push((
                    identity.is_valid(i).then(|| identity.value(i).to_string()),
                    video.is_valid(i).then(|| video.value(i)),
                ));
            }
        }
        verdicts
    }

    fn through_video(track_best: usize, video_threshold: f32) -> MatchOptions {
        MatchOptions {
            track_best,
            video_threshold,
            ..options(0.5, 0.0)
        }
    }

    #[test]
    fn faces_the_references_miss_match_through_their_video() {
        let rows = [
            // Two faces of track 1 match on the references: they show how `a` looks here.
            ("v.mp4", 0, 1, Some(0.45)),
            ("v.mp4", 1, 1, Some(0.38)),
            // 0.62 from the references, 0.17 from this video's faces of `a`.
            ("v.mp4", 2, 1, Some(0.62)),
            // Near this video's faces, but farther than 1.35 × 0.5 from the references.
            ("v.mp4", 3, 1, Some(0.70)),
            // Far from both.
            ("v.mp4", 4, 2, Some(1.5)),
            // Another video: nothing known of how `a` looks there.
            ("w.mp4", 0, 3, Some(0.62)),
        ];
        let got = matched(through_video(0, 0.4), empty(), &rows);
        let names: Vec<Option<&str>> = got.iter().map(|v| v.0.as_deref()).collect();
        assert_eq!(
            names,
            [Some("a"), Some("a"), Some("a"), None, None, None],
            "{got:?}"
        );
        // The distance to the nearest other face of `a` in the video, never to itself.
        let video: Vec<f32> = got[..3].iter().map(|v| v.1.unwrap()).collect();
        for (v, expected) in video.iter().zip([0.07, 0.07, 0.17]) {
            assert!((v - expected).abs() < 1e-5, "{video:?}");
        }
        // Off: the references alone.
        let off = matched(through_video(0, 0.0), empty(), &rows);
        assert_eq!(off[2].0, None);
        assert!(off.iter().all(|v| v.1.is_none()));
        // A look-alike photo nearer than the references rejects the face as before.
        let near = matched(through_video(0, 0.4), gallery(&[("n", 0.6)]), &rows);
        assert_eq!(near[2].0, None);
    }

    #[test]
    fn one_stray_match_vouches_for_no_one() {
        let rows = [
            ("v.mp4", 0, 1, Some(0.48)),
            ("v.mp4", 1, 1, Some(0.60)),
            ("v.mp4", 2, 1, Some(0.61)),
            ("v.mp4", 3, 2, Some(0.60)),
        ];
        let got = matched(through_video(0, 0.4), empty(), &rows);
        let names: Vec<Option<&str>> = got.iter().map(|v| v.0.as_deref()).collect();
        assert_eq!(names, [Some("a"), None, None, None], "{got:?}");
        // Deciding by the median of 5, a track needs 3 matched faces to vouch for anyone: two
        // do not match its own later faces through the video.
        let rows = [
            ("v.mp4", 0, 1, Some(0.45)),
            ("v.mp4", 1, 1, Some(0.38)),
            ("v.mp4", 2, 1, Some(0.60)),
            ("v.mp4", 3, 1, Some(0.61)),
            ("v.mp4", 4, 1, Some(0.62)),
        ];
        let got = matched(through_video(5, 0.4), empty(), &rows);
        assert!(got.iter().all(|v| v.0.is_none()), "{got:?}");
    }

    #[test]
    fn a_track_the_references_miss_matches_through_the_video() {
        let mut rows = vec![
            // Track 1 matches on the references (median of its 3 best 0.35).
            ("v.mp4", 0, 1, Some(0.30)),
            ("v.mp4", 1, 1, Some(0.35)),
            ("v.mp4", 2, 1, Some(0.40)),
        ];
        // Track 2, later in the video: 0.6 from the references, 0.2 from track 1's faces.
        rows.extend((3..8).map(|f| ("v.mp4", f, 2, Some(0.6))));
        // A face of track 2 not embedded (the sampler): it takes the track's verdict.
        rows.push(("v.mp4", 8, 2, None));
        // Track 3: 0.9 from the references, beyond the ceiling.
        rows.extend((9..12).map(|f| ("v.mp4", f, 3, Some(0.9))));
        let got = matched(through_video(3, 0.4), empty(), &rows);
        let names: Vec<Option<&str>> = got.iter().map(|v| v.0.as_deref()).collect();
        let a = Some("a");
        assert_eq!(
            names,
            [a, a, a, a, a, a, a, a, a, None, None, None],
            "{got:?}"
        );
        assert!((got[3].1.unwrap() - 0.2).abs() < 1e-5, "{got:?}");
        let off = matched(through_video(3, 0.0), empty(), &rows);
        assert!(off[3..].iter().all(|v| v.0.is_none()), "{off:?}");
    }
}
