//! Face detectors as a choice: MediaPipe BlazeFace (short and full range) and dlib's MMOD on
//! kao's own networks, and OpenCV's YuNet (or a compatible ONNX file) on ONNX Runtime.
//!
//! A [`Detector`] turns an RGB frame into [`Detection`]s in one box convention: pixel
//! corners `[left, top, right, bottom)` in the frame's pixels. [`DetectorKind`] names one
//! (`blazeface`, `blazeface-full`, `mmod`, `yunet:PATH`) and [`load`] is the registry that
//! turns a name into a running detector. Adding a detector is one implementation of
//! [`Detector`] plus one arm in [`DetectorKind`] and [`load`] (docs/architecture.md).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kao_detector::iou;
use kao_detector::resize::resize_bilinear;
use kao_dlib::RgbView;
use kao_nn::{Device, FaceDetector, Range};
use kao_record::schema::ModelRef;

use crate::embedder::{describe_all, onnx_device};

/// One face a detector found.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// The detector's confidence (BlazeFace and YuNet: 0–1; MMOD: dlib's margin, ~0–2).
    pub score: f32,
    /// `[left, top, right, bottom)`: pixel corners in the frame's pixels, so a box of one
    /// pixel at (x, y) is `[x, y, x + 1, y + 1]`.
    pub bbox: [f32; 4],
    /// The detector's own keypoints as (x, y) in frame pixels, in its order (BlazeFace: eyes,
    /// nose, mouth, tragions; YuNet: right eye, left eye, nose, right and left mouth corner);
    /// empty for MMOD. kao aligns faces with dlib's 5-point predictor, not with these.
    pub keypoints: Vec<[f32; 2]>,
}

/// A face detector: an RGB frame in, faces out.
pub trait Detector: Send + Sync {
    /// Finds the faces of `frame`, in no particular order.
    fn detect(&self, frame: &RgbView<'_>) -> Result<Vec<Detection>>;
    /// The model file it runs, for provenance.
    fn model(&self) -> &ModelRef;
    /// Where it runs, for the log.
    fn runs_on(&self) -> String;
}

/// Which face detector, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectorKind {
    /// MediaPipe BlazeFace short range (128², faces near the camera).
    Blazeface,
    /// MediaPipe BlazeFace full range (192², faces at any distance).
    BlazefaceFull,
    /// dlib's MMOD CNN face detector.
    Mmod,
    /// OpenCV's YuNet, an ONNX file the user brings (`yunet:PATH`).
    Yunet(PathBuf),
}

impl DetectorKind {
    /// The name used on the command line and in provenance (`yunet` without its path).
    pub fn name(&self) -> &'static str {
        match self {
            DetectorKind::Blazeface => "blazeface",
            DetectorKind::BlazefaceFull => "blazeface-full",
            DetectorKind::Mmod => "mmod",
            DetectorKind::Yunet(_) => "yunet",
        }
    }
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DetectorKind::Yunet(path) => write!(f, "yunet:{}", path.display()),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for DetectorKind {
    type Err = String;

    /// `blazeface`, `blazeface-full`, `mmod` or `yunet:PATH`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "blazeface" => Ok(DetectorKind::Blazeface),
            "blazeface-full" => Ok(DetectorKind::BlazefaceFull),
            "mmod" => Ok(DetectorKind::Mmod),
            "yunet" | "yunet:" => Err(
                "yunet needs its ONNX file: --detector yunet:PATH (OpenCV Zoo's face_detection_yunet)"
                    .into(),
            ),
            _ => match s.strip_prefix("yunet:") {
                Some(path) => Ok(DetectorKind::Yunet(PathBuf::from(path))),
                None => Err(format!(
                    "unknown detector `{s}` (blazeface, blazeface-full, mmod or yunet:PATH)"
                )),
            },
        }
    }
}

/// Loads the detector `kind` names, on `device`; `upsample` is MMOD's (ignored by the others).
/// The registry: one arm per detector.
pub fn load(kind: &DetectorKind, device: Device, upsample: u32) -> Result<Arc<dyn Detector>> {
    Ok(match kind {
        DetectorKind::Blazeface => Arc::new(KaoNetwork::load(kind, device, upsample)?),
        DetectorKind::BlazefaceFull => Arc::new(KaoNetwork::load(kind, device, upsample)?),
        DetectorKind::Mmod => Arc::new(KaoNetwork::load(kind, device, upsample)?),
        DetectorKind::Yunet(path) => Arc::new(Yunet::load(path, device)?),
    })
}

/// BlazeFace or MMOD on kao's networks (native CPU kernels or burn), weights fetched by name.
pub struct KaoNetwork {
    net: FaceDetector,
    /// MMOD reports dlib's inclusive rectangles: one pixel is added at the right and bottom.
    inclusive: bool,
    model: ModelRef,
}

impl KaoNetwork {
    /// Loads the model of `kind` (BlazeFace or MMOD) from the model folder.
    fn load(kind: &DetectorKind, device: Device, upsample: u32) -> Result<KaoNetwork> {
        let name = match kind {
            DetectorKind::Blazeface => "blazeface-short",
            DetectorKind::BlazefaceFull => "blazeface-full",
            DetectorKind::Mmod => "dlib-mmod",
            DetectorKind::Yunet(_) => bail!("YuNet is not one of kao's networks"),
        };
        let model = kao_models::locate(name)?;
        let path = &model.path;
        let net = match kind {
            DetectorKind::Blazeface => FaceDetector::blazeface(path, Range::Short, device),
            DetectorKind::BlazefaceFull => FaceDetector::blazeface(path, Range::Full, device),
            _ => FaceDetector::mmod(path, device, upsample),
        }
        .with_context(|| path.display().to_string())?;
        Ok(KaoNetwork {
            net,
            inclusive: *kind == DetectorKind::Mmod,
            model: ModelRef {
                name: model.spec.name.into(),
                sha256: model.spec.sha256.into(),
            },
        })
    }
}

impl Detector for KaoNetwork {
    fn detect(&self, frame: &RgbView<'_>) -> Result<Vec<Detection>> {
        let extra = if self.inclusive { 1.0 } else { 0.0 };
        Ok(self
            .net
            .detect(frame)?
            .into_iter()
            .map(|f| {
                let [l, t, r, b] = f.bbox;
                Detection {
                    score: f.score,
                    bbox: [l, t, r + extra, b + extra],
                    keypoints: f.keypoints.map(|k| k.to_vec()).unwrap_or_default(),
                }
            })
            .collect())
    }

    fn model(&self) -> &ModelRef {
        &self.model
    }

    fn runs_on(&self) -> String {
        if self.net.device().runs_native() {
            "kao's native CPU kernels".into()
        } else {
            format!("burn on {:?}", self.net.device())
        }
    }
}

/// OpenCV Zoo's YuNet (libfacedetection; MIT) on ONNX Runtime.
///
/// The frame is resized (Pillow's bilinear filter) so that its longer side is
/// [`Yunet::INPUT_SIDE`], padded with black at the right and bottom to multiples of 32, and
/// fed as BGR 0–255 `[1, 3, H, W]`. For each stride S of 8, 16 and 32 the graph gives per grid
/// cell (row-major) `cls_S`, `obj_S` (score = √(cls·obj)), `bbox_S` (centre offset and log
/// size in strides) and `kps_S` (five points in strides). Faces scoring above
/// [`Yunet::SCORE_THRESHOLD`] go through greedy NMS at IoU [`Yunet::NMS_IOU`].
pub struct Yunet {
    model: kao_onnx::Model,
    reference: ModelRef,
}

/// YuNet's strides, one output group each.
const YUNET_STRIDES: [usize; 3] = [8, 16, 32];

impl Yunet {
    /// The longer side of the network input, in pixels (OpenCV Zoo's demo size).
    pub const INPUT_SIDE: usize = 640;
    /// Faces scoring at or below this are dropped before NMS.
    pub const SCORE_THRESHOLD: f32 = 0.6;
    /// NMS drops a face whose box overlaps a better one's by more than this IoU.
    pub const NMS_IOU: f32 = 0.3;

    /// Loads a YuNet ONNX file and checks that its graph is YuNet's.
    pub fn load(path: &Path, device: Device) -> Result<Yunet> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let model = kao_onnx::Model::load(path, onnx_device(device), threads)?;
        match model.inputs() {
            [one] if one.shape.len() == 4 && one.shape[1] == 3 => {}
            inputs => {
                return Err(model
                    .graph_error(format!(
                        "YuNet reads one image [1, 3, H, W]; this graph's inputs are {}",
                        describe_all(inputs)
                    ))
                    .into());
            }
        }
        let have = |name: &str| model.outputs().iter().any(|o| o.name == name);
        let missing: Vec<String> = YUNET_STRIDES
            .iter()
            .flat_map(|s| ["cls", "obj", "bbox", "kps"].map(|k| format!("{k}_{s}")))
            .filter(|name| !have(name))
            .collect();
        if !missing.is_empty() {
            return Err(model
                .graph_error(format!(
                    "not a YuNet graph: no output {} (its outputs are {})",
                    missing.join(", "),
                    describe_all(model.outputs())
                ))
                .into());
        }
        let sha256 = kao_models::sha256_file(path)?;
        Ok(Yunet {
            model,
            reference: ModelRef {
                name: "yunet".into(),
                sha256,
            },
        })
    }

    /// The network input for `frame`: `[1, 3, H, W]` BGR values and the scale from frame
    /// pixels to network pixels.
    fn input(frame: &RgbView<'_>) -> (Vec<f32>, [usize; 2], f32) {
        let (w, h) = (frame.width(), frame.height());
        let scale = Self::INPUT_SIDE as f64 / w.max(h) as f64;
        let rw = ((w as f64 * scale).round() as usize).max(1);
        let rh = ((h as f64 * scale).round() as usize).max(1);
        let small = resize_bilinear(frame, rw, rh);
        let small = small.view();
        let (pw, ph) = (rw.div_ceil(32) * 32, rh.div_ceil(32) * 32);
        let mut input = vec![0f32; 3 * pw * ph];
        let plane = pw * ph;
        for y in 0..rh {
            for (x, rgb) in small.row(y).chunks_exact(3).enumerate() {
                let at = y * pw + x;
                input[at] = rgb[2] as f32;
                input[plane + at] = rgb[1] as f32;
                input[2 * plane + at] = rgb[0] as f32;
            }
        }
        (input, [pw, ph], scale as f32)
    }
}

impl Detector for Yunet {
    fn detect(&self, frame: &RgbView<'_>) -> Result<Vec<Detection>> {
        if frame.width() == 0 || frame.height() == 0 {
            return Ok(Vec::new());
        }
        let (input, [w, h], scale) = Self::input(frame);
        let outputs = self.model.run(&input, &[1, 3, h, w])?;
        let output = |name: String, per_cell: usize, cells: usize| -> Result<&[f32]> {
            let out = outputs
                .iter()
                .find(|o| o.name == name)
                .ok_or_else(|| self.model.graph_error(format!("no output `{name}`")))?;
            if out.values.len() != cells * per_cell {
                return Err(self
                    .model
                    .graph_error(format!(
                        "output `{name}` has {} values for a {w}×{h} input, expected {}",
                        out.values.len(),
                        cells * per_cell
                    ))
                    .into());
            }
            Ok(&out.values)
        };
        let mut found = Vec::new();
        for stride in YUNET_STRIDES {
            let (cols, rows) = (w / stride, h / stride);
            let cells = cols * rows;
            let cls = output(format!("cls_{stride}"), 1, cells)?;
            let obj = output(format!("obj_{stride}"), 1, cells)?;
            let bbox = output(format!("bbox_{stride}"), 4, cells)?;
            let kps = output(format!("kps_{stride}"), 10, cells)?;
            let s = stride as f32;
            for cell in 0..cells {
                let score = (cls[cell].clamp(0.0, 1.0) * obj[cell].clamp(0.0, 1.0)).sqrt();
                // NaN scores (from NaN outputs) are no faces either.
                if score.is_nan() || score <= Self::SCORE_THRESHOLD {
                    continue;
                }
                let (row, col) = ((cell / cols) as f32, (cell % cols) as f32);
                let b = &bbox[4 * cell..4 * cell + 4];
                let (cx, cy) = ((col + b[0]) * s, (row + b[1]) * s);
                let (bw, bh) = (b[2].exp() * s, b[3].exp() * s);
                let k = &kps[10 * cell..10 * cell + 10];
                let keypoints = (0..5)
                    .map(|i| {
                        [
                            (col + k[2 * i]) * s / scale,
                            (row + k[2 * i + 1]) * s / scale,
                        ]
                    })
                    .collect();
                let bbox =
                    [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0].map(|v| v / scale);
                if bbox.iter().all(|v| v.is_finite()) {
                    found.push(Detection {
                        score,
                        bbox,
                        keypoints,
                    });
                }
            }
        }
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut kept: Vec<Detection> = Vec::new();
        for face in found {
            if kept
                .iter()
                .all(|k| iou(&k.bbox, &face.bbox) <= Self::NMS_IOU)
            {
                kept.push(face);
            }
        }
        Ok(kept)
    }

    fn model(&self) -> &ModelRef {
        &self.reference
    }

    fn runs_on(&self) -> String {
        format!("ONNX Runtime on {}", self.model.runs_on())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for name in ["blazeface", "blazeface-full", "mmod", "yunet:/m/y.onnx"] {
            assert_eq!(name.parse::<DetectorKind>().unwrap().to_string(), name);
        }
        assert!(
            "yunet"
                .parse::<DetectorKind>()
                .unwrap_err()
                .contains("yunet:PATH")
        );
        assert!(
            "hog"
                .parse::<DetectorKind>()
                .unwrap_err()
                .contains("unknown detector `hog`")
        );
    }

    #[test]
    fn yunet_input_is_bgr_padded_to_32() {
        // A 100×50 frame: scaled to 640×320, already multiples of 32.
        let pixels: Vec<u8> = (0..100 * 50).flat_map(|_| [10u8, 20, 30]).collect();
        let frame = RgbView::new(100, 50, &pixels).unwrap();
        let (input, [w, h], scale) = Yunet::input(&frame);
        assert_eq!(([w, h], scale), ([640, 320], 6.4));
        assert_eq!(input.len(), 3 * 640 * 320);
        assert_eq!(
            [input[0], input[640 * 320], input[2 * 640 * 320]],
            [30.0, 20.0, 10.0]
        );
        // 100×70 → 640×448: exact; 100×71 → 640×454, padded to 480 with black rows.
        let pixels: Vec<u8> = vec![200; 100 * 71 * 3];
        let frame = RgbView::new(100, 71, &pixels).unwrap();
        let (input, [w, h], _) = Yunet::input(&frame);
        assert_eq!([w, h], [640, 480]);
        assert_eq!(input[453 * 640], 200.0);
        assert_eq!(input[454 * 640], 0.0);
    }
}
