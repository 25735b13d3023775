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
