//! Test helpers for kao-dlib: the shared ones from kao-testdata, over this crate's `tests/data/`.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub use kao_testdata::model_path;

kao_testdata::data_helpers!();
