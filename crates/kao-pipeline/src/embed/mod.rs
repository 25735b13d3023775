//! The embed stage: face records in, the same records with embeddings out (any
//! [`Embedder`]: dlib's ResNet by default, FACE01's JAPANESE FACE V1 or an ONNX model).

use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow, bail};
use arrow_array::{
    Array, ArrayRef, BinaryArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array,
    RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_buffer::NullBuffer;
use kao_image::{Jitter, RgbImage, RgbView, get_face_chip};
use kao_networks::Device;
use kao_record::schema::{
    DataType, Field, ModelRef, SchemaRef, col, fixed_f32_list, pass_through, stage_schema,
};
use kao_record::{EmbeddingSpace, Provenance};
use rayon::prelude::*;

pub mod quality;
pub mod sample;

use crate::column;
use crate::embed::quality::{Quality, dhash, measure};
use crate::embed::sample::{SampleOptions, Sampler, Seen};
use kao_networks::embedder::{DLIB_CHIP, Embedder, EmbedderSpec};

/// Everything that shapes the embed stage's output.
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// Which embedder.
    pub embedder: EmbedderSpec,
    /// Average the embeddings of this many jittered copies of each chip (0 or 1: the plain chip).
    pub jitters: u32,
    /// Seed of the jitter generator.
    pub seed: u64,
    /// Faces per network batch.
    pub batch: usize,
    /// Where the network runs.
    pub device: Device,
    /// Embed only the faces [`sample`] chooses; `None` (`--exact`) embeds every face.
    pub sample: Option<SampleOptions>,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            embedder: EmbedderSpec::default(),
            jitters: 1,
            seed: 0,
            batch: 16,
            device: Device::cpu(),
            sample: Some(SampleOptions::default()),
        }
    }
}

/// An embedder with the options that shape an embedding (jitters, seed).
pub struct FaceEmbedder {
    embedder: Arc<dyn Embedder>,
    copies: usize,
    seed: u64,
    sample: Option<SampleOptions>,
    provenance: Provenance,
}

impl FaceEmbedder {
    /// Loads the embedder the options name.
    pub fn load(options: &EmbedOptions) -> Result<FaceEmbedder> {
        let embedder = kao_networks::embedder::load(&options.embedder, options.device)?;
        tracing::info!(
            "embedder {} on {}",
            options.embedder.name(),
            embedder.runs_on()
        );
        let copies = options.jitters.max(1) as usize;
        if let Some(sample) = options.sample
            && !(sample.interval.is_finite() && sample.interval > 0.0)
        {
            bail!("--embed-interval must be a number of seconds (0: every face)");
        }
        let chip = embedder.chip();
        let space = embedder.space();
        let mut provenance = Provenance::new(
            "kao-embed",
            env!("CARGO_PKG_VERSION"),
            serde_json::json!({
                "embedder": space.embedder, "jitters": copies, "seed": options.seed,
                "batch": options.batch, "chip_size": chip.size, "chip_padding": chip.padding,
                "preprocessing": space.preprocessing, "metric": space.metric.name(),
                "sample": options.sample.map(|s| serde_json::json!({"interval": s.interval, "min_hash_bits": s.min_hash_bits})),
            }),
        );
        provenance.model = Some(ModelRef {
            name: match space.embedder.as_str() {
                "dlib-resnet" => "dlib-resnet".into(),
                other => format!("{other}:{}", space.model),
            },
            sha256: space.sha256.clone(),
        });
        Ok(FaceEmbedder {
            embedder,
            copies,
            seed: options.seed,
            sample: options.sample,
            provenance,
        })
    }

    /// The stage's provenance entry (model and options).
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// What the embeddings are and how they are compared.
    pub fn space(&self) -> &EmbeddingSpace {
        self.embedder.space()
    }

    /// The aligned chip the embedder reads for a face with `marks` (relative to `patch`).
    pub fn chip(&self, patch: &RgbView<'_>, marks: &[(f32, f32)]) -> Result<RgbImage> {
        let g = self.embedder.chip();
        Ok(get_face_chip(patch, marks, g.size, g.padding)?)
    }

    /// The quality measures of a face and the perceptual hash of its look: from dlib's
    /// 150 px chip whatever the embedder, so the floors on them mean the same for every model
    /// (`chip` is reused when it is that chip).
    fn quality(
        &self,
        chip: &RgbImage,
        patch: &RgbView<'_>,
        marks: &[(f32, f32)],
    ) -> Result<(Quality, u64)> {
        if self.embedder.chip() == DLIB_CHIP {
            return Ok((measure(chip, marks), dhash(chip)));
        }
        let dlib = get_face_chip(patch, marks, DLIB_CHIP.size, DLIB_CHIP.padding)?;
        Ok((measure(&dlib, marks), dhash(&dlib)))
    }

    /// The chips to embed for one face: its aligned chip, or `jitters` jittered copies of it.
    /// `row` (the face's index in its stream) seeds the jitter so results do not depend on
    /// batching.
    pub fn chips(
        &self,
        patch: &RgbView<'_>,
        marks: &[(f32, f32)],
        row: u64,
    ) -> Result<Vec<RgbImage>> {
        self.copies_of(self.chip(patch, marks)?, row)
    }

    /// The chips to embed for a face's aligned `chip`: itself, or its jittered copies.
    fn copies_of(&self, chip: RgbImage, row: u64) -> Result<Vec<RgbImage>> {
        if self.copies == 1 {
            return Ok(vec![chip]);
        }
        let mut jitter = Jitter::new(self.seed ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (0..self.copies)
            .map(|_| {
                jitter
                    .jitter(&chip.view())
                    .ok_or_else(|| anyhow!("the chip is not square"))
            })
            .collect()
    }

    /// One embedding per face for chips made by [`FaceEmbedder::chips`] (the mean over a
    /// face's copies).
    pub fn embed(&self, chips: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let views: Vec<RgbView<'_>> = chips.iter().map(RgbImage::view).collect();
        self.embed_views(&views)
    }

    /// [`FaceEmbedder::embed`] on views of the chips.
    pub fn embed_views(&self, chips: &[RgbView<'_>]) -> Result<Vec<Vec<f32>>> {
        let vectors = self.embedder.embed(chips)?;
        let dim = self.space().dim;
        Ok(vectors
            .chunks(self.copies)
            .map(|group| {
                let mut mean = vec![0f32; dim];
                for (k, m) in mean.iter_mut().enumerate() {
                    *m = group.iter().map(|v| v[k]).sum::<f32>() / group.len() as f32;
                }
                mean
            })
            .collect())
    }
}

/// A batch of face records with the chips cut for it, ready for the network.
pub struct Chips {
    batch: RecordBatch,
    /// Each face's chips (one, or its jittered copies).
    chips: Vec<Vec<RgbImage>>,
    quality: Vec<Quality>,
    hashes: Vec<u64>,
}

/// The embed stage over record batches.
pub struct EmbedStage {
    embedder: FaceEmbedder,
    schema: SchemaRef,
    /// Chooses the faces to embed, in stream order ([`sample`]).
    sampler: Option<Mutex<Sampler>>,
    name: String,
}

/// The `--patch-padding` kao-detect cut the patches of records of `schema` with, from their
/// provenance.
fn patch_padding(schema: &SchemaRef) -> Option<f64> {
    kao_record::schema::provenance(schema)
        .ok()?
        .iter()
        .rev()
        .find(|p| p.stage == "kao-detect")?
        .options
        .get("patch_padding")?
        .as_f64()
}

impl EmbedStage {
    /// The stage for face records named `name` with `input` schema (checked here).
    pub fn new(embedder: FaceEmbedder, input: &SchemaRef, name: &str) -> Result<EmbedStage> {
        kao_record::schema::require(input, name, "kao-embed", &Patches::columns())?;
        // Choosing faces follows them by video, shot and box: records without those columns
        // (not made by kao-detect) have every face embedded, and the provenance says so.
        let followable = [
            (col::SOURCE, DataType::Utf8),
            (col::PTS, DataType::Float64),
            (col::SHOT, DataType::UInt32),
            (col::X, DataType::Float32),
            (col::Y, DataType::Float32),
            (col::W, DataType::Float32),
            (col::H, DataType::Float32),
        ]
        .iter()
        .all(|(c, t)| input.field_with_name(c).is_ok_and(|f| f.data_type() == t));
        let mut embedder = embedder;
        if embedder.sample.is_some() && !followable {
            tracing::info!(
                "{name}: no shot and box columns to follow faces by: embedding every face"
            );
            embedder.sample = None;
            if let Some(o) = embedder.provenance.options.as_object_mut() {
                o.insert("sample".into(), serde_json::Value::Null);
            }
        }
        let chip_padding = embedder.embedder.chip().padding;
        if let Some(patch_padding) = patch_padding(input)
            && chip_padding > patch_padding + 1e-9
        {
            tracing::warn!(
                "{name}: the embedder's chip (padding {chip_padding}) reaches beyond the face patches (cut by kao-detect with --patch-padding {patch_padding}): \
                 its border is black; cut patches with --patch-padding {chip_padding} or more"
            );
        }
        let mut added = vec![embedder.space().field()];
        for name in [
            col::SHARPNESS,
            col::EXPOSURE,
            col::YAW,
            col::PITCH,
            col::ROLL,
        ] {
            added.push(Field::new(name, DataType::Float32, false));
        }
        let schema =
            stage_schema(input, &[], added, embedder.provenance()).map_err(|e| e.at(name))?;
        Ok(EmbedStage {
            sampler: embedder.sample.map(|_| Mutex::new(Sampler::new())),
            embedder,
            schema,
            name: name.to_string(),
        })
    }

    /// The schema of the output records.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Cuts the chips of `batch`, whose first row is row `first_row` of the stream.
    pub fn cut(&self, batch: RecordBatch, first_row: u64) -> Result<Chips> {
        if batch.schema().index_of(col::X).is_ok() {
            crate::check_boxes(&batch, &self.name, first_row)?;
        }
        let patches = Patches::of(&batch, &self.name)?;
        // Faces are cut on rayon's threads (each chip depends on its own row only).
        let cut: Vec<(Vec<RgbImage>, (Quality, u64))> = (0..batch.num_rows())
            .into_par_iter()
            .map(|i| {
                let row = first_row + i as u64;
                let (view, marks) = patches.face(i, row)?;
                let chip = self
                    .embedder
                    .chip(&view, &marks)
                    .map_err(|e| anyhow!("{}: row {row}: {e}", self.name))?;
                let quality = self
                    .embedder
                    .quality(&chip, &view, &marks)
                    .map_err(|e| anyhow!("{}: row {row}: {e}", self.name))?;
                Ok((self.embedder.copies_of(chip, row)?, quality))
            })
            .collect::<Result<_>>()?;
        let (chips, measured): (Vec<Vec<RgbImage>>, Vec<(Quality, u64)>) = cut.into_iter().unzip();
        let (quality, hashes) = measured.into_iter().unzip();
        Ok(Chips {
            batch,
            chips,
            quality,
            hashes,
        })
    }

    /// [`EmbedStage::cut`] for several batches at once, each with the stream row of its
    /// first record, on rayon's threads.
    pub fn cut_parts(&self, batches: Vec<(RecordBatch, u64)>) -> Result<Vec<Chips>> {
        batches
            .into_par_iter()
            .map(|(batch, first_row)| self.cut(batch, first_row))
            .collect()
    }

    /// Embeds the chips and returns their records with `embedding` added.
    pub fn embed(&self, chips: Chips) -> Result<RecordBatch> {
        let mut batches = self.embed_parts(vec![chips])?;
        Ok(batches.remove(0))
    }

    /// Embeds the chips of several batches in one network pass and returns each batch's
    /// records with `embedding` added (no batch is copied into a larger one first). Batches
    /// must come in stream order: the faces to embed are chosen here ([`sample`]).
    pub fn embed_parts(&self, parts: Vec<Chips>) -> Result<Vec<RecordBatch>> {
        let chosen = parts
            .iter()
            .map(|part| self.choose(part))
            .collect::<Result<Vec<_>>>()?;
        let views: Vec<RgbView<'_>> = parts
            .iter()
            .zip(&chosen)
            .flat_map(|(p, chosen)| {
                p.chips
                    .iter()
                    .zip(chosen)
                    .filter(|(_, c)| **c)
                    .flat_map(|(copies, _)| copies.iter().map(RgbImage::view))
            })
            .collect();
        let vectors = self.embedder.embed_views(&views)?;
        let mut vectors = vectors.into_iter();
        parts
            .into_iter()
            .zip(chosen)
            .map(|(part, chosen)| {
                let mine: Vec<Option<Vec<f32>>> = chosen
                    .iter()
                    .map(|&c| if c { vectors.next() } else { None })
                    .collect();
                self.records(part, &mine)
            })
            .collect()
    }

    /// Which faces of `part` to embed: all of them, or those the sampler chooses.
    fn choose(&self, part: &Chips) -> Result<Vec<bool>> {
        let batch = &part.batch;
        let Some(sampler) = &self.sampler else {
            return Ok(vec![true; batch.num_rows()]);
        };
        let options = self.embedder.sample.unwrap_or_default();
        let mut sampler = sampler
            .lock()
            .map_err(|_| anyhow!("{}: the face sampler failed earlier", self.name))?;
        let sources = column::<StringArray>(batch, col::SOURCE)?;
        let pts = column::<Float64Array>(batch, col::PTS)?;
        let shots = column::<UInt32Array>(batch, col::SHOT)?;
        let [x, y, w, h] =
            [col::X, col::Y, col::W, col::H].map(|c| column::<Float32Array>(batch, c));
        let (x, y, w, h) = (x?, y?, w?, h?);
        let frames = batch
            .column_by_name(col::FRAME_INDEX)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
        let seen = |i: usize| Seen {
            source: sources.value(i),
            shot: shots.value(i),
            pts: pts.value(i),
            bbox: [
                x.value(i),
                y.value(i),
                x.value(i) + w.value(i),
                y.value(i) + h.value(i),
            ],
            hash: part.hashes[i],
        };
        // The faces of one frame are chosen together.
        let same_frame = |a: usize, b: usize| {
            sources.value(a) == sources.value(b)
                && pts.value(a) == pts.value(b)
                && frames.is_none_or(|f| f.value(a) == f.value(b))
        };
        let mut chosen = Vec::with_capacity(batch.num_rows());
        let mut start = 0;
        while start < batch.num_rows() {
            let mut end = start + 1;
            while end < batch.num_rows() && same_frame(start, end) {
                end += 1;
            }
            let faces: Vec<Seen<'_>> = (start..end).map(seen).collect();
            chosen.extend(sampler.choose(&options, &faces));
            start = end;
        }
        Ok(chosen)
    }

    /// `part`'s records with its embeddings (null where a face was not embedded) and quality
    /// measures added.
    fn records(&self, chips: Chips, vectors: &[Option<Vec<f32>>]) -> Result<RecordBatch> {
        let dim = self.embedder.space().dim;
        let mut values: Vec<f32> = Vec::with_capacity(vectors.len() * dim);
        for v in vectors {
            match v {
                Some(v) => values.extend_from_slice(v),
                None => values.extend(std::iter::repeat_n(0.0, dim)),
            }
        }
        let nulls = vectors
            .iter()
            .any(Option::is_none)
            .then(|| NullBuffer::from_iter(vectors.iter().map(Option::is_some)));
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let column: ArrayRef = Arc::new(FixedSizeListArray::try_new(
            item,
            dim as i32,
            Arc::new(Float32Array::from(values)),
            nulls,
        )?);
        let measure = |f: fn(&Quality) -> f32| {
            Arc::new(chips.quality.iter().map(f).collect::<Float32Array>()) as ArrayRef
        };
        let columns = vec![
            column,
            measure(|q| q.sharpness),
            measure(|q| q.exposure),
            measure(|q| q.yaw),
            measure(|q| q.pitch),
            measure(|q| q.roll),
        ];
        Ok(pass_through(&chips.batch, &self.schema, columns)?)
    }
}

/// The faces of a batch of face records: each row's native patch and its landmarks.
pub struct Patches<'a> {
    patch: &'a BinaryArray,
    x: &'a Int32Array,
    y: &'a Int32Array,
    w: &'a UInt32Array,
    h: &'a UInt32Array,
    landmarks: &'a FixedSizeListArray,
    name: &'a str,
}

impl<'a> Patches<'a> {
    /// The columns (and types) the patches need.
    pub fn columns() -> Vec<(&'static str, DataType)> {
        vec![
            (col::PATCH, DataType::Binary),
            (col::PATCH_X, DataType::Int32),
            (col::PATCH_Y, DataType::Int32),
            (col::PATCH_W, DataType::UInt32),
            (col::PATCH_H, DataType::UInt32),
            (col::LANDMARKS, fixed_f32_list(10)),
        ]
    }

    /// The patches of `batch` (records named `name` in errors).
    pub fn of(batch: &'a RecordBatch, name: &'a str) -> Result<Patches<'a>> {
        Ok(Patches {
            patch: column(batch, col::PATCH)?,
            x: column(batch, col::PATCH_X)?,
            y: column(batch, col::PATCH_Y)?,
            w: column(batch, col::PATCH_W)?,
            h: column(batch, col::PATCH_H)?,
            landmarks: column(batch, col::LANDMARKS)?,
            name,
        })
    }

    /// Row `i`'s patch and its 5 landmarks relative to the patch; `row` numbers it in errors.
    pub fn face(&self, i: usize, row: u64) -> Result<(RgbView<'a>, Vec<(f32, f32)>)> {
        let marks = patch_landmarks(self.landmarks, i, (self.x.value(i), self.y.value(i)))
            .ok_or_else(|| anyhow!("{}: row {row}: landmarks are not float32", self.name))?;
        let (w, h) = (self.w.value(i) as usize, self.h.value(i) as usize);
        // The landmarks lie on the face, inside its patch or (at a frame's edge) near it.
        let (fw, fh) = (w.max(1) as f32, h.max(1) as f32);
        if !marks.iter().all(|&(x, y)| {
            x.is_finite()
                && y.is_finite()
                && (-fw..=2.0 * fw).contains(&x)
                && (-fh..=2.0 * fh).contains(&y)
        }) {
            bail!(
                "{}: row {row}: the landmarks {:?} are not finite or lie far outside the face's {w}×{h} patch",
                self.name,
                marks
                    .iter()
                    .map(|&(x, y)| (x + self.x.value(i) as f32, y + self.y.value(i) as f32))
                    .collect::<Vec<_>>()
            );
        }
        let bytes = self.patch.value(i);
        let view = RgbView::new(w, h, bytes).ok_or_else(|| {
            anyhow!(
                "{}: row {row}: patch has {} bytes, expected {w}×{h}×3",
                self.name,
                bytes.len()
            )
        })?;
        Ok((view, marks))
    }
}

/// The 5 landmarks of row `i`, relative to its patch at `origin`.
pub fn patch_landmarks(
    landmarks: &FixedSizeListArray,
    i: usize,
    origin: (i32, i32),
) -> Option<Vec<(f32, f32)>> {
    let row = landmarks.value(i);
    let points = row.as_any().downcast_ref::<Float32Array>()?;
    if points.len() < 10 {
        return None;
    }
    let (ox, oy) = (origin.0 as f32, origin.1 as f32);
    Some(
        (0..5)
            .map(|k| (points.value(2 * k) - ox, points.value(2 * k + 1) - oy))
            .collect(),
    )
}
