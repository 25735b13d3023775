//! Test helpers for kao-dlib: the shared ones from kao-testdata, reading this crate's `tests/data/`.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

pub use kao_testdata::model_path;

/// Path of a file in `tests/data/`.
pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Bytes of a model file (see [`model_path`]).
pub fn model_bytes(name: &str) -> Vec<u8> {
    std::fs::read(model_path(name)).unwrap()
}

/// An `(height, width, 3)` u8 `.npy` image in `tests/data/` as (width, height, bytes).
pub fn read_rgb(name: &str) -> (usize, usize, Vec<u8>) {
    kao_testdata::read_rgb(&data_path(name))
}

/// A float `.npy` file in `tests/data/` as (shape, f32 values).
pub fn read_f32(name: &str) -> (Vec<usize>, Vec<f32>) {
    kao_testdata::read_f32(&data_path(name))
}

/// dlib's golden 5 landmarks (`tests/data/landmarks5.npy`).
pub fn golden_landmarks() -> Vec<(f32, f32)> {
    kao_testdata::read_points(&data_path("landmarks5.npy"))
}

