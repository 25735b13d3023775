//! The detect stage: frame records in, one face record per detected face out.

pub mod follow;
pub mod shot;

use anyhow::{Context, Result, anyhow};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array,
};
use kao_image::resize_bilinear;
use kao_image::{Rect, RgbView, get_face_chip_details};
use kao_networks::{Device, ShapePredictor};
use kao_record::Provenance;
use kao_record::schema::{
    DataType, FaceRow, Field, SchemaRef, col, face_columns, face_fields, stage_schema,
};

use crate::column;
use follow::{FollowOptions, Follower, Found};
pub use kao_networks::detector::DetectorKind;
use kao_networks::detector::{self, Detector};
use shot::{DEFAULT_CUT_THRESHOLD, ShotDetector};

/// Everything that shapes the detect stage's output.
#[derive(Clone, Debug)]
pub struct DetectOptions {
    /// The detector.
    pub detector: DetectorKind,
    /// Run the detector on the frame scaled down to this width; boxes, landmarks and patches
    /// still come from the native frame.
    pub detect_width: Option<u32>,
    /// Drop faces whose box is narrower than this many native pixels.
    pub min_size: f32,
    /// Drop faces scoring below this.
    pub min_score: Option<f32>,
    /// Keep at most this many faces per frame, the highest-scoring ones.
    pub max_faces: Option<usize>,
    /// MMOD only: upsample the frame this many times first.
    pub upsample: u32,
    /// The patch covers dlib's aligned crop at this padding.
    pub patch_padding: f64,
    /// Where the network runs.
    pub device: Device,
    /// A frame whose colour histogram differs from the previous frame's by more than this
    /// starts a new shot (see [`shot`]).
    pub cut_threshold: f32,
    /// Follow faces between detector passes ([`follow`]); `None` (`--exact`) runs
    /// the detector on every frame.
    pub follow: Option<FollowOptions>,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            detector: DetectorKind::BlazefaceFull,
            detect_width: None,
            min_size: 0.0,
            min_score: None,
            max_faces: None,
            upsample: 0,
            patch_padding: 0.25,
            device: Device::cpu(),
            cut_threshold: DEFAULT_CUT_THRESHOLD,
            follow: Some(FollowOptions::default()),
        }
    }
}

/// The detector, the landmark model and the options that shape each face record.
pub struct Finder {
    detector: Arc<dyn Detector>,
    landmarks: ShapePredictor,
    options: DetectOptions,
    provenance: Provenance,
}

impl Finder {
    /// Loads the detector and the 5-point shape predictor named by `options`.
    pub fn load(options: DetectOptions) -> Result<Finder> {
        if !(options.patch_padding >= 0.0 && options.patch_padding <= 4.0) {
            anyhow::bail!("--patch-padding must be between 0 and 4");
        }
        if let Some(f) = options.follow
            && !(f.interval.is_finite() && f.interval > 0.0 && (-1.0..=1.0).contains(&f.min_fit))
        {
            anyhow::bail!(
                "--follow-interval must be a number of seconds (0: every frame) and --min-fit between -1 and 1"
            );
        }
        let detector = detector::load(&options.detector, options.device, options.upsample)?;
        tracing::debug!("detector {} on {}", options.detector, detector.runs_on());
        let sp5 = kao_model_files::locate("dlib-sp5")?;
        let landmarks =
            ShapePredictor::load(&sp5.path).with_context(|| sp5.path.display().to_string())?;
        let mut provenance = Provenance::new(
            "kao-detect",
            env!("CARGO_PKG_VERSION"),
            serde_json::json!({
                "detector": options.detector.name(), "detect_width": options.detect_width,
                "min_size": options.min_size, "min_score": options.min_score, "max_faces": options.max_faces,
                "upsample": options.upsample, "patch_padding": options.patch_padding, "landmarks": sp5.spec.name,
                "cut_threshold": options.cut_threshold,
                "follow": options.follow.map(|f| serde_json::json!({"interval": f.interval, "min_fit": f.min_fit})),
            }),
        );
        provenance.model = Some(detector.model().clone());
        Ok(Finder {
            detector,
            landmarks,
            options,
            provenance,
        })
    }

    /// The stage's provenance entry.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// A shot detector with this stage's cut threshold.
    pub fn shots(&self) -> ShotDetector {
        ShotDetector::new(self.options.cut_threshold)
    }

    /// The face records of one frame, best score first, from a detector pass.
    pub fn faces(&self, frame: &RgbView<'_>) -> Result<Vec<FaceRow>> {
        Ok(self.records(frame, self.detect(frame)?))
    }

    /// The faces of one frame of `source` at `pts` in `shot`, following the faces of the
    /// previous frames where [`DetectOptions::follow`] allows (see [`follow`]), and
    /// whether the detector ran on it. Frames must come in stream order.
    pub fn faces_following(
        &self,
        frame: &RgbView<'_>,
        source: &str,
        shot: u32,
        pts: f64,
        follower: &mut Follower,
    ) -> Result<(Vec<FaceRow>, bool)> {
        let Some(options) = self.options.follow else {
            return Ok((self.faces(frame)?, true));
        };
        if !follower.due(&options, source, shot, pts) {
            let steps: Vec<_> = follower
                .faces()
                .iter()
                .map_while(|face| {
                    // From last frame's box; again from the box the landmarks moved to when
                    // that is more than a twentieth of the face's width away.
                    let marks = self.landmarks_in(frame, face.bbox);
                    let moved = face.place(&marks)?;
                    if follow::shift(&moved, &face.bbox) <= 0.05 {
                        return face.step(frame, marks);
                    }
                    face.step(frame, self.landmarks_in(frame, moved))
                })
                .collect();
            if follower.advance(&options, &steps) {
                let faces = follower.faces().iter().map(|f| (f.score, f.bbox, f.marks));
                return Ok((self.records(frame, faces), false));
            }
        }
        let found = self.detect(frame)?;
        follower.detected(frame, source, shot, pts, found.iter().copied());
        Ok((self.records(frame, found), true))
    }

    /// The face records of `faces` in `frame`, numbered in order (a face without a record,
    /// see [`Finder::record`], takes no number).
    fn records(&self, frame: &RgbView<'_>, faces: impl IntoIterator<Item = Found>) -> Vec<FaceRow> {
        faces
            .into_iter()
            .filter_map(|(score, bbox, marks)| self.record(frame, score, bbox, &marks))
            .zip(0u32..)
            .map(|(mut row, i)| {
                row.face_index = i;
                row
            })
            .collect()
    }

    /// The detector's faces of one frame as (score, box `[left, top, right, bottom)` in
    /// native pixels, 5 landmarks), best score first, after the size, score and count limits.
    fn detect(&self, frame: &RgbView<'_>) -> Result<Vec<Found>> {
        let (w, h) = (frame.width(), frame.height());
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        // Detect on a downscaled copy when asked; boxes come back in native pixels.
        let (found, scale) = match self.options.detect_width.filter(|dw| *dw > 0) {
            Some(dw) if (dw as usize) < w => {
                let dh = ((h as f64 * dw as f64 / w as f64).round() as usize).max(1);
                let small = resize_bilinear(frame, dw as usize, dh);
                (self.detector.detect(&small.view())?, w as f32 / dw as f32)
            }
            _ => (self.detector.detect(frame)?, 1.0),
        };
        let mut boxes: Vec<(f32, [f32; 4])> = found
            .iter()
            .map(|f| (f.score, f.bbox.map(|v| v * scale)))
            .filter(|(score, b)| {
                b[2] - b[0] >= self.options.min_size
                    && self.options.min_score.is_none_or(|m| *score >= m)
            })
            .collect();
        boxes.sort_by(|a, b| b.0.total_cmp(&a.0));
        boxes.truncate(self.options.max_faces.unwrap_or(usize::MAX));
        Ok(boxes
            .into_iter()
            .map(|(score, bbox)| (score, bbox, self.landmarks_in(frame, bbox)))
            .collect())
    }

    /// dlib's 5 landmarks of the face in `bbox` (`[left, top, right, bottom)`).
    fn landmarks_in(&self, frame: &RgbView<'_>, [l, t, r, b]: [f32; 4]) -> [(f32, f32); 5] {
        let rect = Rect::new(
            l.round() as i64,
            t.round() as i64,
            r.round() as i64 - 1,
            b.round() as i64 - 1,
        );
        let marks = self.landmarks.predict(frame, rect);
        std::array::from_fn(|k| marks.get(k).copied().unwrap_or((f32::NAN, f32::NAN)))
    }

    /// The face record of one face (its `face_index` still 0). Landmarks that collapse onto
    /// one point (a box of a pixel or two) define no alignment: such a face cannot be cropped
    /// or embedded, so it is not a face record, and neither is a followed face narrower than
    /// `min_size`.
    fn record(
        &self,
        frame: &RgbView<'_>,
        score: f32,
        [l, t, r, b]: [f32; 4],
        marks: &[(f32, f32); 5],
    ) -> Option<FaceRow> {
        let (w, h) = (frame.width(), frame.height());
        if (r - l).is_nan() || r - l < self.options.min_size {
            return None;
        }
        let mut landmarks = [0f32; 10];
        for (k, (x, y)) in marks.iter().enumerate() {
            landmarks[2 * k] = *x;
            landmarks[2 * k + 1] = *y;
        }
        let (px, py, pw, ph) = self.patch_rect(marks, [l, t, r, b], w, h).ok()?;
        let mut patch = Vec::with_capacity(pw * ph * 3);
        for y in py..py + ph {
            patch.extend_from_slice(&frame.row(y)[px * 3..(px + pw) * 3]);
        }
        Some(FaceRow {
            face_index: 0,
            x: l,
            y: t,
            w: r - l,
            h: b - t,
            score,
            landmarks,
            patch,
            patch_x: px as i32,
            patch_y: py as i32,
            patch_w: pw as u32,
            patch_h: ph as u32,
            track_id: None,
        })
    }

    /// The frame region (x, y, w, h) holding the face box and dlib's aligned crop at the
    /// patch padding for these landmarks, with a margin for interpolation and the crop's
    /// pyramid filter, clipped to the frame.
    fn patch_rect(
        &self,
        marks: &[(f32, f32)],
        bbox: [f32; 4],
        w: usize,
        h: usize,
    ) -> Result<(usize, usize, usize, usize)> {
        let details = get_face_chip_details(marks, 150, self.options.patch_padding)?;
        let r = details.rect;
        let (cx, cy) = ((r.left + r.right) / 2.0, (r.top + r.bottom) / 2.0);
        let (hw, hh) = (r.width() / 2.0, r.height() / 2.0);
        let (sin, cos) = details.angle.sin_cos();
        // Half extents of the rotated crop's axis-aligned bounding box, plus a margin.
        let margin = 4.0 + 0.05 * r.width();
        let ex = hw * cos.abs() + hh * sin.abs() + margin;
        let ey = hw * sin.abs() + hh * cos.abs() + margin;
        let lo = |v: f64, n: usize| (v.floor().max(0.0) as usize).min(n - 1);
        let hi = |v: f64, n: usize, from: usize| (v.ceil().max(0.0) as usize).clamp(from + 1, n);
        let [bl, bt, br, bb] = bbox.map(f64::from);
        let (x0, y0) = (lo((cx - ex).min(bl), w), lo((cy - ey).min(bt), h));
        let (x1, y1) = (
            hi((cx + ex + 1.0).max(br), w, x0),
            hi((cy + ey + 1.0).max(bb), h, y0),
        );
        Ok((x0, y0, x1 - x0, y1 - y0))
    }
}

/// The detect stage over record batches: frame records in, face records out.
pub struct DetectStage {
    finder: Finder,
    schema: SchemaRef,
    /// The input columns that pass through: everything but the pixels.
    kept: Vec<usize>,
    name: String,
}

impl DetectStage {
    /// The stage for input records named `name` with `input` schema (checked here).
    pub fn new(finder: Finder, input: &SchemaRef, name: &str) -> Result<DetectStage> {
        kao_record::schema::require(
            input,
            name,
            "kao-detect",
            &[
                (col::SOURCE, DataType::Utf8),
                (col::PTS, DataType::Float64),
                (col::WIDTH, DataType::UInt32),
                (col::HEIGHT, DataType::UInt32),
                (col::PIXELS, DataType::Binary),
            ],
        )?;
        let mut fields = face_fields();
        fields.push(Field::new(col::SHOT, DataType::UInt32, false));
        fields.push(Field::new(col::DETECTED, DataType::Boolean, false));
        let schema = stage_schema(input, &[col::PIXELS], fields, finder.provenance())
            .map_err(|e| e.at(name))?;
        let kept = (0..input.fields().len())
            .filter(|&i| input.field(i).name() != col::PIXELS)
            .collect();
        Ok(DetectStage {
            finder,
            schema,
            kept,
            name: name.to_string(),
        })
    }

    /// The schema of the face records.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The finder (detector and landmark model).
    pub fn finder(&self) -> &Finder {
        &self.finder
    }

    /// The shots of a batch of frame records, in stream order (see [`shot`]).
    pub fn observe_shots(&self, batch: &RecordBatch, shots: &mut ShotDetector) -> Result<Vec<u32>> {
        let sources = column::<StringArray>(batch, col::SOURCE)?;
        let pts = column::<Float64Array>(batch, col::PTS)?;
        let (width, height) = (
            column::<UInt32Array>(batch, col::WIDTH)?,
            column::<UInt32Array>(batch, col::HEIGHT)?,
        );
        let pixels = column::<BinaryArray>(batch, col::PIXELS)?;
        (0..batch.num_rows())
            .map(|row| {
                let (w, h) = (width.value(row) as usize, height.value(row) as usize);
                let frame = RgbView::new(w, h, pixels.value(row)).ok_or_else(|| {
                    anyhow!(
                        "{}: {} pixel bytes for {w}×{h}",
                        self.name,
                        pixels.value(row).len()
                    )
                })?;
                Ok(shots.observe(sources.value(row), pts.value(row), &frame))
            })
            .collect()
    }

    /// True when frames must reach [`DetectStage::process`] in stream order, through one
    /// [`Follower`] (faces are followed between detector passes); false when every frame
    /// stands alone (`--exact`), so several workers may share the frames.
    pub fn follows(&self) -> bool {
        self.finder.options.follow.is_some()
    }

    /// The face records of a batch of frame records: one batch per frame that has faces.
    /// `first_row` numbers the batch's rows in error messages; `shots` are the frames' shots
    /// ([`DetectStage::observe_shots`]); `follower` carries the faces from frame to frame
    /// when [`DetectStage::follows`].
    pub fn process(
        &self,
        batch: &RecordBatch,
        first_row: u64,
        shots: &[u32],
        follower: &mut Follower,
    ) -> Result<Vec<RecordBatch>> {
        let sources = column::<StringArray>(batch, col::SOURCE)?;
        let pts = column::<Float64Array>(batch, col::PTS)?;
        let width = column::<UInt32Array>(batch, col::WIDTH)?;
        let height = column::<UInt32Array>(batch, col::HEIGHT)?;
        let pixels = column::<BinaryArray>(batch, col::PIXELS)?;
        if shots.len() != batch.num_rows() {
            anyhow::bail!(
                "{}: {} shots for {} frames",
                self.name,
                shots.len(),
                batch.num_rows()
            );
        }
        let passed = batch.project(&self.kept)?;
        let mut out = Vec::new();
        for (row, &shot) in shots.iter().enumerate() {
            let at = first_row + row as u64;
            let (w, h) = (width.value(row) as usize, height.value(row) as usize);
            let frame = RgbView::new(w, h, pixels.value(row)).ok_or_else(|| {
                anyhow!(
                    "{}: row {at}: {} pixel bytes for {w}×{h}",
                    self.name,
                    pixels.value(row).len()
                )
            })?;
            let (faces, detected) = self
                .finder
                .faces_following(&frame, sources.value(row), shot, pts.value(row), follower)
                .with_context(|| format!("{}: row {at}", self.name))?;
            if faces.is_empty() {
                continue;
            }
            let indices = UInt32Array::from(vec![row as u32; faces.len()]);
            let mut columns = arrow_select::take::take_record_batch(&passed, &indices)?
                .columns()
                .to_vec();
            columns.extend(face_columns(&faces)?);
            columns.push(Arc::new(UInt32Array::from(vec![shot; faces.len()])) as ArrayRef);
            columns.push(Arc::new(BooleanArray::from(vec![detected; faces.len()])) as ArrayRef);
            out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        Ok(out)
    }
}
