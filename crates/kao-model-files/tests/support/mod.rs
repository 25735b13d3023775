//! Test helpers for kao-model-files: the shared ones from kao-testdata, over the golden files of `kao-testdata/golden/`.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub use kao_testdata::model_path;

kao_testdata::data_helpers!();
