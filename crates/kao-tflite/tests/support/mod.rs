//! Locating model files for the kao-tflite integration tests.

use std::path::PathBuf;

/// The model directory: `$KAO_MODELS`, else `$XDG_CACHE_HOME/kao/models`, else
/// `$HOME/.cache/kao/models`.
pub fn models_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env("KAO_MODELS") {
        return dir;
    }
    if let Some(cache) = env("XDG_CACHE_HOME") {
        return cache.join("kao/models");
    }
    env("HOME")
        .expect("neither KAO_MODELS, XDG_CACHE_HOME nor HOME is set")
        .join(".cache/kao/models")
}

/// Path of a model file; fails the test (never skips) when it is missing.
pub fn model_path(name: &str) -> PathBuf {
    let path = models_dir().join(name);
    assert!(
        path.is_file(),
        "model file {} is missing: run `python3 models/fetch.py` (or set KAO_MODELS)",
        path.display()
    );
    path
}
