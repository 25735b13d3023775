//! MediaPipe BlazeFace pre- and post-processing (docs/models.md §3).
//!
//! * [`BlazeFace::preprocess`] letterboxes an RGB frame into the network's square NHWC
//!   input (keep aspect ratio, black border, values `x/127.5 − 1`) and returns the
//!   [`Letterbox`] that maps normalised tensor coordinates back to frame pixels.
//! * [`BlazeFace::postprocess`] decodes the raw `regressors` / `classificators` against
//!   the SSD anchors, keeps scores above the model's threshold, merges overlaps with
//!   weighted NMS and maps the result to frame pixels.
//!
//! The resize is PIL's `BILINEAR` resampling with the passes swapped: a triangle filter
//! whose support widens with the reduction factor (so downscaling is antialiased), PIL's
//! fixed-point weights, 8-bit rounding after the vertical and then the horizontal pass.
//! For a square frame every value of the golden input tensors made by
//! `reference/blazeface_ref.py` (PIL: horizontal first) is matched or one level off, and
//! the detections stay within a quarter pixel of the reference's. MediaPipe's own
//! `ImageToTensorCalculator` samples without antialiasing and places the content at a
//! fractional offset; the content here is rounded to whole pixels (at most half a pixel of
//! aspect change), and [`Letterbox`] maps through exactly what was done.

use kao_image::{RgbView, iou, resize_bilinear};

use crate::DetectorError;

/// Number of keypoints per detection.
pub const NUM_KEYPOINTS: usize = 6;
/// Values per anchor in the regressor output: box (4) and keypoints (2 × 6).
pub const NUM_COORDS: usize = 4 + 2 * NUM_KEYPOINTS;

/// Model settings (MediaPipe `SsdAnchorsCalculator` + `TensorsToDetectionsCalculator`).
#[derive(Debug, Clone, PartialEq)]
pub struct BlazeFaceConfig {
    /// Side of the square input tensor (128 or 192).
    pub input_size: usize,
    /// Stride of each anchor layer (consecutive equal strides share one feature map).
    pub strides: Vec<usize>,
    /// `interpolated_scale_aspect_ratio`: when positive each layer has a second anchor.
    pub interpolated_scale_aspect_ratio: f32,
    /// Minimum score kept (0.5 short range, 0.6 full range).
    pub min_score: f32,
    /// Raw scores are clipped to ±this before the sigmoid (100).
    pub score_clip: f32,
    /// Weighted-NMS IoU threshold (0.3).
    pub iou_threshold: f32,
}

impl BlazeFaceConfig {
    /// `face_detection_short_range.tflite`: 128², 896 anchors, threshold 0.5.
    pub fn short_range() -> Self {
        BlazeFaceConfig {
            input_size: 128,
            strides: vec![8, 16, 16, 16],
            interpolated_scale_aspect_ratio: 1.0,
            min_score: 0.5,
            score_clip: 100.0,
            iou_threshold: 0.3,
        }
    }

    /// `face_detection_full_range.tflite`: 192², 2304 anchors, threshold 0.6.
    pub fn full_range() -> Self {
        BlazeFaceConfig {
            input_size: 192,
            strides: vec![4],
            interpolated_scale_aspect_ratio: 0.0,
            min_score: 0.6,
            score_clip: 100.0,
            iou_threshold: 0.3,
        }
    }

    /// Anchor centres in normalised coordinates, in the network's output order. With
    /// `fixed_anchor_size` every anchor is 1×1, so only the centre matters.
    pub fn anchors(&self) -> Vec<[f32; 2]> {
        let per_layer = if self.interpolated_scale_aspect_ratio > 0.0 {
            2
        } else {
            1
        };
        let mut anchors = Vec::new();
        let mut i = 0;
        while i < self.strides.len() {
            let stride = self.strides[i];
            let mut repeat = 0;
            while i < self.strides.len() && self.strides[i] == stride {
                repeat += per_layer;
                i += 1;
            }
            let fm = self.input_size.div_ceil(stride.max(1));
            for y in 0..fm {
                for x in 0..fm {
                    let c = [(x as f32 + 0.5) / fm as f32, (y as f32 + 0.5) / fm as f32];
                    anchors.extend(std::iter::repeat_n(c, repeat));
                }
            }
        }
        anchors
    }
}

/// One face: score, box and keypoints, either normalised to the tensor (`[0, 1]`) or in
/// frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Sigmoid score.
    pub score: f32,
    /// `[xmin, ymin, xmax, ymax]`.
    pub bbox: [f32; 4],
    /// `(x, y)` of left eye, right eye, nose tip, mouth, left and right tragion.
    pub keypoints: [[f32; 2]; NUM_KEYPOINTS],
}

/// Where the frame went inside the square tensor: the frame was resized to
/// `content_width × content_height` and placed at (`left`, `top`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Letterbox {
    /// Frame width in pixels.
    pub frame_width: usize,
    /// Frame height in pixels.
    pub frame_height: usize,
    /// Side of the square tensor.
    pub size: usize,
    /// Width of the resized frame inside the tensor.
    pub content_width: usize,
    /// Height of the resized frame inside the tensor.
    pub content_height: usize,
    /// First tensor column of the content.
    pub left: usize,
    /// First tensor row of the content.
    pub top: usize,
}

impl Letterbox {
    /// The letterbox of a `frame_width × frame_height` frame in a `size²` tensor: the
    /// longer side fills the tensor, the other is scaled alike, rounded, and centred.
    pub fn new(
        frame_width: usize,
        frame_height: usize,
        size: usize,
    ) -> Result<Self, DetectorError> {
        if frame_width == 0 || frame_height == 0 || size == 0 {
            return Err(DetectorError::EmptyFrame {
                width: frame_width,
                height: frame_height,
            });
        }
        let scale = size as f64 / frame_width.max(frame_height) as f64;
        let fit = |n: usize| ((n as f64 * scale).round() as usize).clamp(1, size);
        let (content_width, content_height) = (fit(frame_width), fit(frame_height));
        Ok(Letterbox {
            frame_width,
            frame_height,
            size,
            content_width,
            content_height,
            left: (size - content_width) / 2,
            top: (size - content_height) / 2,
        })
    }

    /// Normalised tensor coordinates → frame pixels (pixel edges at integers).
    pub fn to_frame(&self, p: [f32; 2]) -> [f32; 2] {
        let s = self.size as f32;
        [
            (p[0] * s - self.left as f32) * self.frame_width as f32 / self.content_width as f32,
            (p[1] * s - self.top as f32) * self.frame_height as f32 / self.content_height as f32,
        ]
    }

    /// Frame pixels → normalised tensor coordinates (inverse of [`Letterbox::to_frame`]).
    pub fn to_tensor(&self, p: [f32; 2]) -> [f32; 2] {
        let s = self.size as f32;
        [
            (p[0] * self.content_width as f32 / self.frame_width as f32 + self.left as f32) / s,
            (p[1] * self.content_height as f32 / self.frame_height as f32 + self.top as f32) / s,
        ]
    }

    /// A detection in normalised tensor coordinates mapped to frame pixels.
    pub fn detection_to_frame(&self, d: &Detection) -> Detection {
        let a = self.to_frame([d.bbox[0], d.bbox[1]]);
        let b = self.to_frame([d.bbox[2], d.bbox[3]]);
        Detection {
            score: d.score,
            bbox: [a[0], a[1], b[0], b[1]],
            keypoints: d.keypoints.map(|k| self.to_frame(k)),
        }
    }
}

/// A BlazeFace model's pre- and post-processing.
#[derive(Debug, Clone, PartialEq)]
pub struct BlazeFace {
    config: BlazeFaceConfig,
    anchors: Vec<[f32; 2]>,
}

impl BlazeFace {
    /// Pre- and post-processing for `config`.
    pub fn new(config: BlazeFaceConfig) -> Self {
        let anchors = config.anchors();
        BlazeFace { config, anchors }
    }

    /// The settings.
    pub fn config(&self) -> &BlazeFaceConfig {
        &self.config
    }

    /// Anchor centres (see [`BlazeFaceConfig::anchors`]).
    pub fn anchors(&self) -> &[[f32; 2]] {
        &self.anchors
    }

    /// The network input for `frame`: `size × size × 3` NHWC values in `[-1, 1]`
    /// (the border is black, −1), and the letterbox to map results back.
    pub fn preprocess(&self, frame: &RgbView<'_>) -> Result<(Vec<f32>, Letterbox), DetectorError> {
        let lb = Letterbox::new(frame.width(), frame.height(), self.config.input_size)?;
        let content = resize_bilinear(frame, lb.content_width, lb.content_height).data;
        let size = lb.size;
        let mut tensor = vec![-1.0f32; size * size * 3];
        for y in 0..lb.content_height {
            let src = &content[y * lb.content_width * 3..(y + 1) * lb.content_width * 3];
            let at = ((y + lb.top) * size + lb.left) * 3;
            for (d, &s) in tensor[at..at + src.len()].iter_mut().zip(src) {
                *d = s as f32 / 127.5 - 1.0;
            }
        }
        Ok((tensor, lb))
    }

    /// Decodes the raw outputs (`regressors` N×16, `classificators` N×1) into the
    /// detections scoring above the threshold, in normalised tensor coordinates, in
    /// anchor order (before NMS).
    pub fn decode(
        &self,
        regressors: &[f32],
        classificators: &[f32],
    ) -> Result<Vec<Detection>, DetectorError> {
        let n = self.anchors.len();
        if regressors.len() != n * NUM_COORDS {
            return Err(DetectorError::OutputSize {
                what: "regressors",
                expected: n * NUM_COORDS,
                got: regressors.len(),
            });
        }
        if classificators.len() != n {
            return Err(DetectorError::OutputSize {
                what: "classificators",
                expected: n,
                got: classificators.len(),
            });
        }
        let size = self.config.input_size as f32;
        let clip = self.config.score_clip;
        let mut out = Vec::new();
        for (i, (&raw, a)) in classificators.iter().zip(&self.anchors).enumerate() {
            let score = 1.0 / (1.0 + (-raw.clamp(-clip, clip)).exp());
            // NaN scores are dropped.
            if score.is_nan() || score <= self.config.min_score {
                continue;
            }
            let r = &regressors[i * NUM_COORDS..(i + 1) * NUM_COORDS];
            let (cx, cy) = (r[0] / size + a[0], r[1] / size + a[1]);
            let (w, h) = (r[2] / size, r[3] / size);
            let mut keypoints = [[0.0; 2]; NUM_KEYPOINTS];
            for (k, kp) in keypoints.iter_mut().enumerate() {
                *kp = [r[4 + 2 * k] / size + a[0], r[5 + 2 * k] / size + a[1]];
            }
            out.push(Detection {
                score,
                bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                keypoints,
            });
        }
        Ok(out)
    }

    /// Decoding, weighted NMS and the mapping to frame pixels through `letterbox`.
    pub fn postprocess(
        &self,
        regressors: &[f32],
        classificators: &[f32],
        letterbox: &Letterbox,
    ) -> Result<Vec<Detection>, DetectorError> {
        let dets = weighted_nms(
            self.decode(regressors, classificators)?,
            self.config.iou_threshold,
        );
        Ok(dets
            .iter()
            .map(|d| letterbox.detection_to_frame(d))
            .collect())
    }
}

/// MediaPipe's weighted NMS: repeatedly take the best remaining detection, gather every
/// remaining detection whose IoU with it exceeds `iou_threshold` (itself included),
/// and emit their score-weighted average box and keypoints with the best score.
pub fn weighted_nms(mut dets: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while let Some(top) = dets.first().copied() {
        let (cluster, rest): (Vec<_>, Vec<_>) = dets
            .into_iter()
            .partition(|d| iou(&d.bbox, &top.bbox) > iou_threshold);
        dets = rest;
        if cluster.is_empty() {
            // Degenerate top box (IoU with itself is 0 or NaN): keep it unmerged.
            out.push(top);
            dets.remove(0);
            continue;
        }
        let total: f64 = cluster.iter().map(|d| d.score as f64).sum();
        let mut bbox = [0f64; 4];
        let mut kps = [[0f64; 2]; NUM_KEYPOINTS];
        for d in &cluster {
            let w = d.score as f64 / total;
            for (acc, &v) in bbox.iter_mut().zip(&d.bbox) {
                *acc += w * v as f64;
            }
            for (acc, kp) in kps.iter_mut().zip(&d.keypoints) {
                acc[0] += w * kp[0] as f64;
                acc[1] += w * kp[1] as f64;
            }
        }
        out.push(Detection {
            score: top.score,
            bbox: bbox.map(|v| v as f32),
            keypoints: kps.map(|k| [k[0] as f32, k[1] as f32]),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_counts() {
        assert_eq!(BlazeFaceConfig::short_range().anchors().len(), 896);
        let full = BlazeFaceConfig::full_range().anchors();
        assert_eq!(full.len(), 2304);
        assert_eq!(full[0], [0.5 / 48.0, 0.5 / 48.0]);
        assert_eq!(full[49], [1.5 / 48.0, 1.5 / 48.0]);
        let short = BlazeFaceConfig::short_range().anchors();
        assert_eq!(short[0], short[1]);
        assert_eq!(short[512], [0.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(short[517], short[512]);
        assert_eq!(short[518], [1.5 / 8.0, 0.5 / 8.0]);
    }

    #[test]
    fn nms_merges_by_score() {
        let d = |score, x: f32| Detection {
            score,
            bbox: [x, 0.0, x + 1.0, 1.0],
            keypoints: [[x, 0.0]; NUM_KEYPOINTS],
        };
        let out = weighted_nms(vec![d(0.25, 0.1), d(0.75, 0.0), d(0.9, 5.0)], 0.3);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].bbox, [5.0, 0.0, 6.0, 1.0]);
        assert_eq!(out[1].score, 0.75);
        assert!((out[1].bbox[0] - 0.025).abs() < 1e-7);
        assert!((out[1].keypoints[3][0] - 0.025).abs() < 1e-7);
        // A zero-area box still comes out once.
        let empty = Detection {
            score: 0.9,
            bbox: [0.0; 4],
            keypoints: [[0.0; 2]; 6],
        };
        assert_eq!(weighted_nms(vec![empty, empty], 0.3).len(), 2);
    }
}
