//! Replays every input of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through
//! its target on the stable toolchain: none may panic. A target without a corpus fails, so
//! this cannot pass by testing nothing.

use std::path::{Path, PathBuf};

/// The cargo-fuzz project at the workspace root.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir` (not hidden), sorted; an empty list when `dir` does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

/// Runs every corpus and regression input of `target`; fails naming each input that panicked.
fn replay(target: &str) {
    let (_, run) = kao_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target}"));
    let corpus = fuzz_dir().join("corpus").join(target);
    let seeds = inputs(&corpus);
    assert!(
        !seeds.is_empty(),
        "{}: the corpus is missing or empty",
        corpus.display()
    );
    let regressions = inputs(&fuzz_dir().join("regressions").join(target));
    let mut panicked = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panicked.push(path.display().to_string());
        }
    }
    assert!(
        panicked.is_empty(),
        "{target}: {} of {} inputs panicked: {}",
        panicked.len(),
        seeds.len() + regressions.len(),
        panicked.join(", ")
    );
}

#[test]
fn every_target_has_a_test_and_a_fuzz_target() {
    let tested = [
        "dat",
        "tflite",
        "onnx",
        "records_ipc",
        "records_parquet",
        "image",
        "face01_config",
        "video_list",
    ];
    let names: Vec<&str> = kao_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, tested);
    for name in names {
        let file = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(file.is_file(), "{} is missing", file.display());
    }
}

#[test]
fn dat() {
    replay("dat");
}

#[test]
fn tflite() {
    replay("tflite");
}

#[test]
fn onnx() {
    replay("onnx");
}

#[test]
fn records_ipc() {
    replay("records_ipc");
}

#[test]
fn records_parquet() {
    replay("records_parquet");
}

#[test]
fn image() {
    replay("image");
}

#[test]
fn face01_config() {
    replay("face01_config");
}

#[test]
fn video_list() {
    replay("video_list");
}
