//! dlib model files in pure Rust.
//!
//! * [`dat`]: a bounded reader for dlib's `serialize()` format and parsers for the
//!   face-recognition ResNet and the MMOD face detector (layer records only).
//! * [`shape_predictor`]: the ERT landmark cascade (`shape_predictor_5_face_landmarks.dat`).
//! * [`chip`]: dlib's `get_face_chip_details` + `extract_image_chip`, including the
//!   `pyramid_down<2>` path for large faces.
//! * [`jitter`]: dlib's `jitter_image` for `num_jitters`, with a seeded generator.
//!
//! Everything is bit-exact with dlib 20.0.1 on the golden astronaut data.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chip;
pub mod dat;
mod geometry;
pub mod image;
pub mod jitter;
pub mod shape_predictor;

pub use chip::{
    ChipDetails, ChipError, DRect, extract_image_chip, get_face_chip, get_face_chip_details,
};
pub use dat::{DatError, DatErrorKind, MmodModel, ResnetModel};
pub use image::{Rect, RgbImage, RgbView};
pub use jitter::Jitter;
pub use shape_predictor::ShapePredictor;
