//! Test helpers for kao-tflite: model files by name, from kao-testdata.

pub use kao_testdata::model_path;
