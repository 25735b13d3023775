//! OpenCV Zoo's YuNet face detector (an ONNX file the user brings, `--detector yunet:PATH`)
//! on ONNX Runtime: its input, its output decoding and NMS.

use std::path::Path;

use anyhow::Result;
use kao_image::{RgbView, iou, resize_bilinear};
use kao_record::schema::ModelRef;

use super::{Model, describe_all, onnx_device};
use crate::Device;
use crate::detector::{Detection, Detector};

/// OpenCV Zoo's YuNet (libfacedetection; MIT) on ONNX Runtime.
///
/// The frame is resized (Pillow's bilinear filter) so that its longer side is
/// [`Yunet::INPUT_SIDE`], padded with black at the right and bottom to multiples of 32, and
/// fed as BGR 0–255 `[1, 3, H, W]`. For each stride S of 8, 16 and 32 the graph gives per grid
/// cell (row-major) `cls_S`, `obj_S` (score = √(cls·obj)), `bbox_S` (centre offset and log
/// size in strides) and `kps_S` (five points in strides). Faces scoring above
/// [`Yunet::SCORE_THRESHOLD`] go through greedy NMS at IoU [`Yunet::NMS_IOU`].
pub struct Yunet {
    model: Model,
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
        let model = Model::load(path, onnx_device(device), threads)?;
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
        let sha256 = kao_model_files::sha256_file(path)?;
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
