//! Everything around the face-detector networks, in pure Rust:
//!
//! * [`blazeface`]: MediaPipe BlazeFace (short and full range) — SSD anchors, letterbox
//!   pre-processing to an NHWC `[-1, 1]` tensor, decoding of the raw regressors and
//!   classificators, weighted NMS and the mapping back to frame pixels.
//! * [`mmod`]: dlib's MMOD CNN face detector — the tiled image pyramid the network
//!   reads, score-map decoding with dlib's NMS, and `pyramid_up` for upsampling.
//! * [`resize`]: antialiased bilinear resizing of RGB frames (PIL's filter and weights).
//!
//! The networks themselves (the convolutions) live elsewhere; this crate produces
//! their input tensors and turns their outputs into detections.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blazeface;
pub mod mmod;
pub mod resize;

/// Intersection over union of two `[left, top, right, bottom]` boxes (0 when the union is
/// empty): the overlap every detector's NMS and the tracker measure.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Pre- or post-processing error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectorError {
    /// The frame has no pixels.
    #[error("empty frame ({width}x{height})")]
    EmptyFrame {
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
    },
    /// The frame is larger than the MMOD pipeline accepts.
    #[error(
        "frame {width}x{height} is too large for the MMOD detector ({pixels} pixels, limit {max}); \
         downscale it first (e.g. --detect-width)"
    )]
    FrameTooLarge {
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
        /// Pixels the pipeline would process (after upsampling, if any).
        pixels: usize,
        /// The limit, [`mmod::MAX_PIXELS`].
        max: usize,
    },
    /// A network output has the wrong number of values.
    #[error("{what}: expected {expected} values, got {got}")]
    OutputSize {
        /// Which output.
        what: &'static str,
        /// Expected number of values.
        expected: usize,
        /// Actual number of values.
        got: usize,
    },
    /// The MMOD model has a layout this crate does not handle.
    #[error("unsupported MMOD model: {0}")]
    UnsupportedModel(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_corner_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[10.0, 0.0, 20.0, 10.0]), 0.0);
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0; 4], &[0.0; 4]), 0.0);
    }
}
