//! Test helpers for kao-nn: the shared ones from kao-testdata, over this crate's `tests/data/`.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub use kao_testdata::{max_abs_diff, model_path};

kao_testdata::data_helpers!();
