//! The detect stage: frame records in, one face record per detected face out.

pub mod follow;
pub mod shot;

use anyhow::{Context, Result, anyhow};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array,
};
use kao_image::resize_bilinear;
use kao_image::{Rect, RgbImage, RgbView, get_face_chip_details, iou};
use kao_networks::{Device, ShapePredictor};
use kao_record::Provenance;
use kao_record::schema::{
    DataType, FaceRow, Field, SchemaRef, col, face_columns, face_fields, stage_schema,
};

use crate::column;
use follow::{FollowOptions, Followed, Follower, Found};
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
    /// While following, these detectors look again around a face on an enlarged crop: for
    /// a face of the previous frame a detector pass missed (in turn), and to confirm and
    /// place small faces (the first of them). Empty: nobody looks (see
    /// [`Finder::faces_following`]).
    pub second: Vec<DetectorKind>,
}

/// A detector pass sweeps the frame for small faces at most this often (seconds of video), and
/// at every new video.
const SWEEP_INTERVAL: f64 = 2.0;
/// Frames at least this wide (1080p and up) are swept: on smaller ones the detector sees
/// faces down to about 50 px on the whole frame...
const SWEEP_MIN_WIDTH: usize = 1600;
/// ...in 2 × 2 overlapping tiles, each this fraction of the frame's width and height.
const SWEEP_TILE: f32 = 0.6;

/// Faces narrower than this fraction of the frame's width are placed again by a second
/// detector (1080p: 80 px; BlazeFace full range sees them 8 px wide).
const SMALL_FACE: f32 = 1.0 / 24.0;

/// The second detectors look for a missed face at most this many seconds after its last
/// frame.
const RESCUE_GAP: f64 = 1.0;
/// They see a square this many face widths wide around the missed face's last box...
const RESCUE_REGION: f32 = 2.0;
/// ...scaled so that the face is this many pixels wide: BlazeFace short range sees it at
/// about a third of its 128-pixel input, dlib's MMOD (faces from 80 px) at its size.
const RESCUE_FACE_PX: f32 = 100.0;

/// The faces of one frame as the detect stage reports them.
pub struct FrameFaces {
    /// The face records, best score first, each with whether a second detector found or
    /// placed it (see [`DetectOptions::second`]).
    pub faces: Vec<(FaceRow, bool)>,
    /// True when a detector ran on the frame; false when its faces were followed.
    pub detected: bool,
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
            second: vec![DetectorKind::Blazeface, DetectorKind::Mmod],
        }
    }
}

/// The detector, the landmark model and the options that shape each face record.
pub struct Finder {
    detector: Arc<dyn Detector>,
    /// [`DetectOptions::second`], loaded when faces are followed.
    second: Vec<Arc<dyn Detector>>,
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
        let second = match options.follow {
            Some(_) => options
                .second
                .iter()
                .map(|kind| detector::load(kind, options.device, 0))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
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
                "second_detectors": second.iter().zip(&options.second).map(|(d, kind)| serde_json::json!({
                    "detector": kind.name(), "model": d.model().name, "sha256": d.model().sha256,
                })).collect::<Vec<_>>(),
            }),
        );
        provenance.model = Some(detector.model().clone());
        Ok(Finder {
            detector,
            second,
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
        let found = self.detect(frame)?;
        Ok(self
            .records(frame, found)
            .into_iter()
            .map(|(row, _)| row)
            .collect())
    }

    /// The faces of one frame of `source` at `pts` in `shot`, following the faces of the
    /// previous frames where [`DetectOptions::follow`] allows (see [`follow`]).
    /// Frames must come in stream order. At a detector pass the second detectors place
    /// small faces again, confirm faces found on tiles of a large frame, and look for the
    /// faces of the previous frame the pass missed (docs/stages.md, "kao-detect").
    pub fn faces_following(
        &self,
        frame: &RgbView<'_>,
        source: &str,
        shot: u32,
        pts: f64,
        follower: &mut Follower,
    ) -> Result<FrameFaces> {
        let Some(options) = self.options.follow else {
            let found = self.detect(frame)?;
            return Ok(FrameFaces {
                faces: self.records(frame, found),
                detected: true,
            });
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
            if follower.advance(&options, pts, &steps) {
                let faces = follower.faces().iter().map(|f| f.found());
                return Ok(FrameFaces {
                    faces: self.records(frame, faces),
                    detected: false,
                });
            }
        }
        let mut found = self.detect(frame)?;
        self.place_small(frame, &mut found)?;
        // MMOD runs on the native frame: tiles would show it nothing new.
        if !self.second.is_empty()
            && self.options.detector != DetectorKind::Mmod
            && frame.width() >= SWEEP_MIN_WIDTH
            && follower.sweep(source, pts, SWEEP_INTERVAL)
        {
            self.sweep(frame, &mut found)?;
        }
        let previous = follower.previous(source, shot, pts, RESCUE_GAP);
        self.rescue(frame, previous, &mut found)?;
        follower.detected(frame, source, shot, pts, found.iter().copied());
        Ok(FrameFaces {
            faces: self.records(frame, found),
            detected: true,
        })
    }

    /// A face narrower than [`SMALL_FACE`] of the frame's width is at the limit of what the
    /// detector sees on the whole frame, and its box is often loose (and with it the
    /// landmarks and the embedding): the first second detector places it again on an
    /// enlarged crop around it. Where it finds nothing, the detector's box stays.
    fn place_small(&self, frame: &RgbView<'_>, found: &mut [Found]) -> Result<()> {
        let Some(first) = self.second.first() else {
            return Ok(());
        };
        let first = std::slice::from_ref(first);
        let small = frame.width() as f32 * SMALL_FACE;
        for i in 0..found.len() {
            if found[i].bbox[2] - found[i].bbox[0] >= small {
                continue;
            }
            let others: Vec<Found> = (0..found.len())
                .filter(|&j| j != i)
                .map(|j| found[j])
                .collect();
            if let Some(face) = self.look_around(frame, found[i].bbox, &others, first)? {
                found[i] = Found {
                    second: true,
                    ..face
                };
            }
        }
        Ok(())
    }

    /// Runs the detector on four overlapping tiles of `frame` (each [`SWEEP_TILE`] of its
    /// width and height, in the corners), so faces too small for the detector's input on the
    /// whole frame are found. A tile's face that no face of `found` overlaps is placed again
    /// by the first second detector on an enlarged crop around it (a face at the limit of the
    /// detector's input gets a loose box; one it cannot confirm is dropped) and joins `found`
    /// as placed.
    fn sweep(&self, frame: &RgbView<'_>, found: &mut Vec<Found>) -> Result<()> {
        let (w, h) = (frame.width(), frame.height());
        let (tw, th) = (
            (w as f32 * SWEEP_TILE).round() as usize,
            (h as f32 * SWEEP_TILE).round() as usize,
        );
        let mut extra: Vec<(f32, [f32; 4])> = Vec::new();
        for (x0, y0) in [(0, 0), (w - tw, 0), (0, h - th), (w - tw, h - th)] {
            let tile = frame.sub(Rect::new(
                x0 as i64,
                y0 as i64,
                (x0 + tw) as i64 - 1,
                (y0 + th) as i64 - 1,
            ));
            // The tiles overlap by a fifth of the frame: a face cut by a tile's inner edge, or
            // too big to lie whole in the overlap, is the whole frame's to find.
            let overlap = (2 * tw - w).min(2 * th - h) as f32;
            let margin = 2.0;
            let inner = [
                (x0 > 0).then_some(margin),
                (y0 > 0).then_some(margin),
                (x0 + tw < w).then_some(tw as f32 - margin),
                (y0 + th < h).then_some(th as f32 - margin),
            ];
            for d in self.detector.detect(&tile)? {
                let [l, t, r, b] = d.bbox;
                let cut = inner[0].is_some_and(|e| l < e)
                    || inner[1].is_some_and(|e| t < e)
                    || inner[2].is_some_and(|e| r > e)
                    || inner[3].is_some_and(|e| b > e);
                if cut || r - l > overlap / 2.0 {
                    continue;
                }
                let (x, y) = (x0 as f32, y0 as f32);
                extra.push((d.score, [l + x, t + y, r + x, b + y]));
            }
        }
        // Best first; a face seen in two tiles, or already found, counts once.
        extra.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (score, bbox) in extra {
            let kept = bbox[2] - bbox[0] >= self.options.min_size
                && self.options.min_score.is_none_or(|m| score >= m)
                && self.options.max_faces.is_none_or(|m| found.len() < m)
                && !found
                    .iter()
                    .any(|f| iou(&f.bbox, &bbox) >= 0.3 || inside(&bbox, &f.bbox));
            if !kept {
                continue;
            }
            if let Some(face) = self.look_around(frame, bbox, found, &self.second[..1])? {
                found.push(Found {
                    second: true,
                    ..face
                });
            }
        }
        Ok(())
    }

    /// Where the detector missed a face of the previous frame (`previous`: no face of
    /// `found` overlaps its box), the second detectors look for it in turn in a square
    /// around its box, scaled so the face is [`RESCUE_FACE_PX`] wide; the best face the
    /// first of them finds there that overlaps the old box joins `found`.
    fn rescue(
        &self,
        frame: &RgbView<'_>,
        previous: &[Followed],
        found: &mut Vec<Found>,
    ) -> Result<()> {
        for face in previous {
            let full = self.options.max_faces.is_some_and(|m| found.len() >= m);
            if full || found.iter().any(|f| iou(&f.bbox, &face.bbox) >= 0.3) {
                continue;
            }
            if let Some(face) = self.look_around(frame, face.bbox, found, &self.second)? {
                found.push(Found {
                    second: true,
                    ..face
                });
            }
        }
        Ok(())
    }

    /// `detectors`, in turn, on a square around `bbox` ([`rescue_region`]): the best
    /// face the first of them finds there that overlaps `bbox` (IoU ≥ 0.2) and no face of
    /// `found`; `None` when none finds one (or there are none).
    fn look_around(
        &self,
        frame: &RgbView<'_>,
        bbox: [f32; 4],
        found: &[Found],
        detectors: &[Arc<dyn Detector>],
    ) -> Result<Option<Found>> {
        if detectors.is_empty() {
            return Ok(None);
        }
        let Some((region, scale, (x0, y0))) = rescue_region(frame, bbox) else {
            return Ok(None);
        };
        for second in detectors {
            let best = second
                .detect(&region.view())?
                .into_iter()
                .map(|d| {
                    let [l, t, r, b] = d.bbox;
                    let bbox = [
                        l / scale + x0,
                        t / scale + y0,
                        r / scale + x0,
                        b / scale + y0,
                    ];
                    (d.score, bbox)
                })
                .filter(|(_, b)| {
                    b[2] - b[0] >= self.options.min_size
                        && iou(b, &bbox) >= 0.2
                        && !found.iter().any(|f| iou(&f.bbox, b) >= 0.3)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((score, bbox)) = best {
                return Ok(Some(Found {
                    score,
                    bbox,
                    marks: self.landmarks_in(frame, bbox),
                    second: false,
                }));
            }
        }
        Ok(None)
    }

    /// The face records of `faces` in `frame`, numbered in order (a face without a record,
    /// see [`Finder::record`], takes no number), each with whether the second detector
    /// found it.
    fn records(
        &self,
        frame: &RgbView<'_>,
        faces: impl IntoIterator<Item = Found>,
    ) -> Vec<(FaceRow, bool)> {
        faces
            .into_iter()
            .filter_map(|f| Some((self.record(frame, f.score, f.bbox, &f.marks)?, f.second)))
            .zip(0u32..)
            .map(|((mut row, second), i)| {
                row.face_index = i;
                (row, second)
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
            .map(|(score, bbox)| Found {
                score,
                bbox,
                marks: self.landmarks_in(frame, bbox),
                second: false,
            })
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
        fields.push(Field::new(col::SECOND_DETECTOR, DataType::Boolean, false));
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
            let FrameFaces { faces, detected } = self
                .finder
                .faces_following(&frame, sources.value(row), shot, pts.value(row), follower)
                .with_context(|| format!("{}: row {at}", self.name))?;
            if faces.is_empty() {
                continue;
            }
            let (faces, second): (Vec<FaceRow>, Vec<bool>) = faces.into_iter().unzip();
            let n = faces.len();
            let indices = UInt32Array::from(vec![row as u32; n]);
            let mut columns = arrow_select::take::take_record_batch(&passed, &indices)?
                .columns()
                .to_vec();
            columns.extend(face_columns(faces)?);
            columns.push(Arc::new(UInt32Array::from(vec![shot; n])) as ArrayRef);
            columns.push(Arc::new(BooleanArray::from(vec![detected; n])) as ArrayRef);
            columns.push(Arc::new(BooleanArray::from(second)) as ArrayRef);
            out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        Ok(out)
    }
}

/// The square around `bbox` the second detector searches ([`RESCUE_REGION`] face widths,
/// clipped to the frame), scaled so the face is [`RESCUE_FACE_PX`] wide, with the scale and
/// the square's top-left corner in the frame; `None` when nothing of it lies in the frame.
fn rescue_region(frame: &RgbView<'_>, bbox: [f32; 4]) -> Option<(RgbImage, f32, (f32, f32))> {
    let side = (bbox[2] - bbox[0]).max(bbox[3] - bbox[1]);
    if !(side.is_finite() && side >= 1.0) {
        return None;
    }
    let (cx, cy) = ((bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0);
    let half = side * RESCUE_REGION / 2.0;
    let (w, h) = (frame.width() as f32, frame.height() as f32);
    let (x0, y0) = ((cx - half).max(0.0).floor(), (cy - half).max(0.0).floor());
    let (x1, y1) = ((cx + half).min(w).ceil(), (cy + half).min(h).ceil());
    if x1 - x0 < 2.0 || y1 - y0 < 2.0 {
        return None;
    }
    let crop = frame.sub(Rect::new(
        x0 as i64,
        y0 as i64,
        x1 as i64 - 1,
        y1 as i64 - 1,
    ));
    let scale = RESCUE_FACE_PX / side;
    let (sw, sh) = (
        ((x1 - x0) * scale).round().max(1.0) as usize,
        ((y1 - y0) * scale).round().max(1.0) as usize,
    );
    Some((resize_bilinear(&crop, sw, sh), scale, (x0, y0)))
}

/// True when the centre of box `a` lies inside box `b`.
fn inside(a: &[f32; 4], b: &[f32; 4]) -> bool {
    let (cx, cy) = ((a[0] + a[2]) / 2.0, (a[1] + a[3]) / 2.0);
    (b[0]..b[2]).contains(&cx) && (b[1]..b[3]).contains(&cy)
}
