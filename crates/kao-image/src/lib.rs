//! kao's pixels, in pure Rust:
//!
//! * [`view`]: 8-bit RGB images ([`RgbImage`], borrowed [`RgbView`]) and dlib's inclusive
//!   [`Rect`].
//! * [`geometry`]: dlib's similarity fit between point sets, and the [`iou`] of two boxes.
//! * [`resize`]: antialiased bilinear resizing of RGB frames (PIL's filter and weights),
//!   what `--detect-width` and the detectors' inputs use.
//! * [`chip`]: dlib's `get_face_chip_details` + `extract_image_chip`, including the
//!   `pyramid_down<2>` path for large faces.
//! * [`jitter`]: dlib's `jitter_image` for `num_jitters`, with a seeded generator.
//!
//! Chips and jitter are bit-exact with dlib 20.0.1 on the golden astronaut data.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chip;
pub mod geometry;
pub mod jitter;
pub mod resize;
pub mod view;

pub use chip::{
    ChipDetails, ChipError, DRect, extract_image_chip, get_face_chip, get_face_chip_details,
};
pub use geometry::iou;
pub use jitter::Jitter;
pub use resize::resize_bilinear;
pub use view::{Rect, RgbImage, RgbView};
