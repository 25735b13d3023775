//! The match stage: each face gets the identity of the nearest reference within a threshold.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use anyhow::{Result, anyhow};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt64Array,
};
use kao_record::schema::{DataType, Field, SchemaRef, col, pass_through, stage_schema};
use kao_record::{EmbeddingSpace, Provenance};

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
}

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
}

impl Matcher {
    /// A matcher for `positives`, rejecting faces nearer to `negatives`. Without positives it
    /// matches no one (kao-extract without --ref, which then clusters every face).
    pub fn new(positives: Gallery, negatives: Gallery, options: MatchOptions) -> Result<Matcher> {
        if !(options.threshold > 0.0 && options.threshold.is_finite()) {
            anyhow::bail!("--threshold must be a positive number");
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
            return Verdict {
                identity: None,
                distance: f32::INFINITY,
            };
        };
        let rejected = self
            .negatives
            .nearest(embedding)
            .is_some_and(|(_, neg)| neg < d + self.options.margin);
        let identity = (d <= self.options.threshold && !rejected).then(|| name.to_string());
        Verdict {
            identity,
            distance: d,
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
    /// Each track's latest embedded face's distances (to each person, to the negatives), for
    /// the faces of the track that kao-embed did not embed.
    latest: HashMap<u64, (Vec<f32>, Option<f32>)>,
    name: String,
}

/// What one face says: its track and its distance to each person and to the negatives.
struct Evidence {
    track: Option<u64>,
    distances: Vec<f32>,
    negative: Option<f32>,
}

/// What a track's faces say so far: per person, the smallest distances and how many faces
/// matched that person on their own.
#[derive(Default)]
struct TrackEvidence {
    best: Vec<Vec<f32>>,
    negative: Vec<f32>,
    matched_faces: Vec<u32>,
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
            name: name.to_string(),
        })
    }

    /// The schema of the output records.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Records the evidence of complete frames and queues them.
    fn observe(&mut self, batch: RecordBatch) -> Result<()> {
        let embeddings = column::<FixedSizeListArray>(&batch, col::EMBEDDING)?;
        let values = embeddings
            .values()
            .as_any()
            .downcast_ref::<Float32Array>()
            .ok_or_else(|| anyhow!("{}: embedding values are not float32", self.name))?;
        let tracks = batch
            .column_by_name(col::TRACK_ID)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
        let k = self.matcher.options.track_best;
        let threshold = self.matcher.options.threshold;
        let mut evidence = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let track_id = tracks.filter(|t| t.is_valid(i)).map(|t| t.value(i));
            let track = track_id.filter(|_| k > 0);
            if embeddings.is_null(i) {
                // Not embedded (kao-embed's sampler): the latest embedded face of its track
                // speaks for it; its track's evidence comes from the embedded faces only.
                let (distances, negative) = track_id
                    .and_then(|id| self.latest.get(&id).cloned())
                    .unwrap_or_default();
                evidence.push(Evidence {
                    track,
                    distances,
                    negative,
                });
                continue;
            }
            let at = embeddings.value_offset_at(i);
            let embedding = &values.values()[at..at + embeddings.value_length() as usize];
            let distances = self.matcher.positives.distances(embedding);
            let negative = self.matcher.negatives.nearest(embedding).map(|(_, d)| d);
            if let Some(id) = track_id {
                self.latest.insert(id, (distances.clone(), negative));
            }
            if let Some(id) = track {
                let t = self.tracks.entry(id).or_default();
                t.best.resize_with(distances.len(), Vec::new);
                t.matched_faces.resize(distances.len(), 0);
                for (p, &d) in distances.iter().enumerate() {
                    keep_smallest(&mut t.best[p], d, k);
                    if d <= threshold {
                        t.matched_faces[p] += 1;
                    }
                }
                if let Some(n) = negative {
                    keep_smallest(&mut t.negative, n, k);
                }
            }
            evidence.push(Evidence {
                track,
                distances,
                negative,
            });
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
        // Forget the tracks no waiting face belongs to.
        let waiting: std::collections::HashSet<u64> = self
            .pending
            .iter()
            .flat_map(|(_, e)| e.iter().filter_map(|f| f.track))
            .collect();
        self.tracks.retain(|id, _| waiting.contains(id));
        Ok(out)
    }

    /// The verdict on one face: by its track's evidence when it has a track, else on its own.
    fn verdict(&self, face: &Evidence) -> Verdict {
        let options = &self.matcher.options;
        let nearest = |scores: &[f32]| {
            scores
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(p, &d)| (p, d))
                .unwrap_or((0, f32::INFINITY))
        };
        let (own, own_distance) = nearest(&face.distances);
        let (person, score, negative, ambiguous) =
            match face.track.and_then(|id| self.tracks.get(&id)) {
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
        let rejected = negative.is_some_and(|n| n < score + options.margin);
        if score <= options.threshold && !rejected && !ambiguous {
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
            }
        } else {
            Verdict {
                identity: None,
                distance: own_distance,
            }
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
        Ok(pass_through(
            batch,
            &self.schema,
            vec![identity, distance, percentage],
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
        // Faces judged on their own need no lookahead.
        let lookahead = if self.matcher.options.track_best > 0 {
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
}
