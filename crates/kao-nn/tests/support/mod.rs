//! Test helpers for kao-nn: the shared ones from kao-testdata, over the golden files of `kao-testdata/golden/`.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub use kao_testdata::{max_abs_diff, model_path};

kao_testdata::data_helpers!();
