//! Test helpers for kao-networks: the shared ones from kao-testdata, over the golden files of `kao-testdata/golden/`.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub use kao_testdata::{max_abs_diff, model_path};

kao_testdata::data_helpers!();

/// A golden JSON file.
pub fn read_json(name: &str) -> serde_json::Value {
    let path = data_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}
