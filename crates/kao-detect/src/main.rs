//! kao-detect: frame records in; one face record per detected face out.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use arrow_array::{Array, BinaryArray, RecordBatch, UInt32Array};
use clap::{Parser, ValueEnum};
use kao_dlib::{Rect, RgbView, ShapePredictor, get_face_chip_details};
use kao_detector::resize::resize_bilinear;
use kao_nn::{Device, FaceDetector, Range};
use kao_record::schema::{DataType, FaceRow, ModelRef, col, face_columns, face_fields, stage_schema};
use kao_record::{Provenance, RecordReader, RecordWriter};

/// Detect faces in kao frame records and write one face record per face.
///
/// Each face record keeps the frame's columns (but not its pixels) and adds the box, the
/// detector's score, dlib's 5 landmarks (from the 5-point shape predictor on the native
/// frame, whichever detector found the face) and a native-resolution `patch` of the frame
/// around the face, large enough for every aligned crop cut downstream at up to
/// --patch-padding.
#[derive(Parser, Debug)]
#[command(name = "kao-detect", version, after_help = "Example: kao-decode talk.mp4 --fps 5 | kao-detect --detector mmod | kao-embed")]
struct Args {
    /// Frame records to read (.arrows, .arrow, .parquet); stdin when absent or `-`.
    input: Option<PathBuf>,
    /// Write the face records here (.parquet, .arrow, .arrows) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Which detector: MediaPipe BlazeFace short range (faces near the camera), full range,
    /// or dlib's MMOD CNN.
    #[arg(long, value_enum, default_value_t = DetectorArg::BlazefaceFull)]
    detector: DetectorArg,
    /// Run the detector on the frame scaled down to this width (FACE01's set_width); boxes,
    /// landmarks and patches still come from the native frame.
    #[arg(long, value_name = "W")]
    detect_width: Option<u32>,
    /// Drop faces whose box is narrower than this many native pixels.
    #[arg(long, value_name = "PX", default_value_t = 0.0)]
    min_size: f32,
    /// Drop faces scoring below this (BlazeFace scores are 0–1; MMOD's are margins, ~0–2).
    #[arg(long, value_name = "S")]
    min_score: Option<f32>,
    /// Keep at most this many faces per frame, the highest-scoring ones.
    #[arg(long, value_name = "N")]
    max_faces: Option<usize>,
    /// MMOD only: upsample the frame N times first (finds faces down to ~40/2^N px).
    #[arg(long, value_name = "N", default_value_t = 0)]
    upsample: u32,
    /// Patch margin: the patch covers dlib's aligned crop at this padding (0.25 covers the
    /// embedder's chip; kao-align's default is 0.1).
    #[arg(long, value_name = "P", default_value_t = 0.25)]
    patch_padding: f64,
    /// Where the network runs: cpu, or cuda / cuda:N in a build with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    device: Device,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DetectorArg {
    Blazeface,
    BlazefaceFull,
    Mmod,
}


fn main() -> ExitCode {
    kao_record::cli::exit("kao-detect", run(&Args::parse()).map(|()| 0))
}


/// The detector, the landmark model and the options that shape each face record.
struct Finder {
    detector: FaceDetector,
    landmarks: ShapePredictor,
    args: DetectOptions,
}

struct DetectOptions {
    /// MMOD boxes are dlib's inclusive rectangles; BlazeFace's are pixel corners.
    inclusive_boxes: bool,
    detect_width: Option<u32>,
    min_size: f32,
    min_score: Option<f32>,
    max_faces: Option<usize>,
    patch_padding: f64,
}

fn run(args: &Args) -> Result<()> {
    kao_record::cli::check_stdout(args.output.as_deref())?;
    if !(args.patch_padding >= 0.0 && args.patch_padding <= 4.0) {
        anyhow::bail!("--patch-padding must be between 0 and 4");
    }
    let device = args.device;
    let (name, detector) = match args.detector {
        DetectorArg::Blazeface => {
            let m = kao_models::locate("blazeface-short")?;
            (m.spec.clone(), FaceDetector::blazeface(&m.path, Range::Short, device).with_context(|| m.path.display().to_string())?)
        }
        DetectorArg::BlazefaceFull => {
            let m = kao_models::locate("blazeface-full")?;
            (m.spec.clone(), FaceDetector::blazeface(&m.path, Range::Full, device).with_context(|| m.path.display().to_string())?)
        }
        DetectorArg::Mmod => {
            let m = kao_models::locate("dlib-mmod")?;
            (m.spec.clone(), FaceDetector::mmod(&m.path, device, args.upsample).with_context(|| m.path.display().to_string())?)
        }
    };
    let sp5 = kao_models::locate("dlib-sp5")?;
    let landmarks = ShapePredictor::load(&sp5.path).with_context(|| sp5.path.display().to_string())?;
    let finder = Finder {
        detector,
        landmarks,
        args: DetectOptions {
            inclusive_boxes: args.detector == DetectorArg::Mmod,
            detect_width: args.detect_width.filter(|w| *w > 0),
            min_size: args.min_size,
            min_score: args.min_score,
            max_faces: args.max_faces,
            patch_padding: args.patch_padding,
        },
    };

    let reader = RecordReader::open(args.input.as_deref())?;
    reader.require(
        "kao-detect",
        &[(col::WIDTH, DataType::UInt32), (col::HEIGHT, DataType::UInt32), (col::PIXELS, DataType::Binary)],
    )?;
    let mut entry = Provenance::new(
        "kao-detect",
        env!("CARGO_PKG_VERSION"),
        serde_json::json!({
            "detector": args.detector.to_possible_value().map(|v| v.get_name().to_string()), "detect_width": args.detect_width,
            "min_size": args.min_size, "min_score": args.min_score, "max_faces": args.max_faces,
            "upsample": args.upsample, "patch_padding": args.patch_padding, "landmarks": sp5.spec.name,
        }),
    );
    entry.model = Some(ModelRef { name: name.name.into(), sha256: name.sha256.into() });
    let input_schema = reader.schema();
    let schema = stage_schema(&input_schema, &[col::PIXELS], face_fields(), &entry)
        .map_err(|e| anyhow!("{}: {e}", reader.name()))?;
    // The input columns that pass through: everything but the pixels.
    let kept: Vec<usize> = (0..input_schema.fields().len()).filter(|&i| input_schema.field(i).name() != col::PIXELS).collect();
    let source_name = reader.name().to_string();
    let mut writer = RecordWriter::create(args.output.as_deref(), &schema)?;
    for batch in reader {
        let batch = batch?;
        let width = column::<UInt32Array>(&batch, col::WIDTH)?;
        let height = column::<UInt32Array>(&batch, col::HEIGHT)?;
        let pixels = column::<BinaryArray>(&batch, col::PIXELS)?;
        let passed = batch.project(&kept)?;
        for row in 0..batch.num_rows() {
            let (w, h) = (width.value(row) as usize, height.value(row) as usize);
            let frame = RgbView::new(w, h, pixels.value(row)).ok_or_else(|| {
                anyhow!("{source_name}: frame {row}: {} pixel bytes for {w}×{h}", pixels.value(row).len())
            })?;
            let faces = finder.faces(&frame).with_context(|| format!("{source_name}: frame {row}"))?;
            if faces.is_empty() {
                continue;
            }
            let indices = UInt32Array::from(vec![row as u32; faces.len()]);
            let mut columns = arrow_select::take::take_record_batch(&passed, &indices)?.columns().to_vec();
            columns.extend(face_columns(&faces)?);
            writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
        }
    }
    writer.finish()?;
    Ok(())
}

impl Finder {
    /// The face records of one frame, best score first.
    fn faces(&self, frame: &RgbView<'_>) -> Result<Vec<FaceRow>> {
        let (w, h) = (frame.width(), frame.height());
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        // Detect on a downscaled copy when asked; boxes come back in native pixels.
        let (found, scale) = match self.args.detect_width {
            Some(dw) if (dw as usize) < w => {
                let dh = ((h as f64 * dw as f64 / w as f64).round() as usize).max(1);
                let small = resize_bilinear(frame, dw as usize, dh);
                (self.detector.detect(&small.view())?, w as f32 / dw as f32)
            }
            _ => (self.detector.detect(frame)?, 1.0),
        };
        // Boxes as pixel corners [left, top, right, bottom), in native pixels.
        let extra = if self.args.inclusive_boxes { 1.0 } else { 0.0 };
        let mut boxes: Vec<(f32, [f32; 4])> = found
            .iter()
            .map(|f| {
                let [l, t, r, b] = f.bbox;
                (f.score, [l, t, r + extra, b + extra].map(|v| v * scale))
            })
            .filter(|(score, b)| b[2] - b[0] >= self.args.min_size && self.args.min_score.is_none_or(|m| *score >= m))
            .collect();
        boxes.sort_by(|a, b| b.0.total_cmp(&a.0));
        boxes.truncate(self.args.max_faces.unwrap_or(usize::MAX));
        let mut rows = Vec::with_capacity(boxes.len());
        for (score, [l, t, r, b]) in boxes {
            let rect = Rect::new(l.round() as i64, t.round() as i64, r.round() as i64 - 1, b.round() as i64 - 1);
            let marks = self.landmarks.predict(frame, rect);
            let mut landmarks = [0f32; 10];
            for (k, (x, y)) in marks.iter().take(5).enumerate() {
                landmarks[2 * k] = *x;
                landmarks[2 * k + 1] = *y;
            }
            // Landmarks that collapse onto one point (a box of a pixel or two) define no
            // alignment: such a face cannot be cropped or embedded, so it is not a face record.
            let Ok((px, py, pw, ph)) = self.patch_rect(&marks, [l, t, r, b], w, h) else {
                continue;
            };
            let mut patch = Vec::with_capacity(pw * ph * 3);
            for y in py..py + ph {
                patch.extend_from_slice(&frame.row(y)[px * 3..(px + pw) * 3]);
            }
            rows.push(FaceRow {
                face_index: rows.len() as u32,
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
            });
        }
        Ok(rows)
    }

    /// The frame region (x, y, w, h) holding the face box and dlib's aligned crop at
    /// `--patch-padding` for these landmarks, with a margin for interpolation and the crop's
    /// pyramid filter, clipped to the frame.
    fn patch_rect(&self, marks: &[(f32, f32)], bbox: [f32; 4], w: usize, h: usize) -> Result<(usize, usize, usize, usize)> {
        let details = get_face_chip_details(marks, 150, self.args.patch_padding)?;
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
        let (x1, y1) = (hi((cx + ex + 1.0).max(br), w, x0), hi((cy + ey + 1.0).max(bb), h, y0));
        Ok((x0, y0, x1 - x0, y1 - y0))
    }
}

/// Column `name` of `batch` as array type `A` (the schema was checked on open).
fn column<'a, A: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a A> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<A>())
        .ok_or_else(|| anyhow!("column `{name}` is missing or has the wrong type"))
}
