//! Helpers for kao's end-to-end tests: where the binaries and fixtures are, and running them.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use arrow_array::RecordBatch;
use kao_record::RecordReader;

/// The workspace's `tests/` folder.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A generated fixture in `tests/fixtures/`; panics with the set-up command when it is missing.
pub fn fixture(name: &str) -> PathBuf {
    let path = tests_dir().join("fixtures").join(name);
    assert!(
        path.exists(),
        "missing fixture {}: run scripts/fixtures.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A kao binary from the same build profile as the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "missing {}: build first with `cargo build --release` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A command for a kao binary, with no stdin.
pub fn kao(name: &str) -> Command {
    let mut cmd = Command::new(bin(name));
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a command to completion, capturing stdout and stderr.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn")
}

/// Parses an Arrow IPC stream (a stage's stdout) into batches.
pub fn batches(stdout: &[u8]) -> Vec<RecordBatch> {
    let reader = RecordReader::from_stream("stdout", std::io::Cursor::new(stdout.to_vec()))
        .expect("an IPC stream");
    reader.map(|b| b.expect("a valid batch")).collect()
}

/// Reads every batch of a record file.
pub fn read_file(path: &Path) -> Vec<RecordBatch> {
    RecordReader::open(Some(path))
        .expect("readable records")
        .map(|b| b.expect("a valid batch"))
        .collect()
}

/// Values of a column across batches, through a typed accessor.
pub fn column<A: 'static, T>(
    batches: &[RecordBatch],
    name: &str,
    get: impl Fn(&A, usize) -> T,
) -> Vec<T> {
    let mut out = Vec::new();
    for b in batches {
        let col = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let arr = col
            .as_any()
            .downcast_ref::<A>()
            .unwrap_or_else(|| panic!("column {name} has another type"));
        for i in 0..b.num_rows() {
            out.push(get(arr, i));
        }
    }
    out
}

/// The presentation times (seconds) ffprobe reports for every video frame of `path`.
pub fn ffprobe_pts(path: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe (installed by scripts/deps.sh)");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().unwrap_or_else(|_| panic!("ffprobe pts {l:?}")))
        .collect()
}

/// The RGB24 frames the ffmpeg CLI decodes from `path`, concatenated.
pub fn ffmpeg_rgb(path: &Path) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg (installed by scripts/deps.sh)");
    assert!(out.status.success(), "ffmpeg failed on {}", path.display());
    out.stdout
}

/// A float64 `.npy` array, flattened.
pub fn npy_f64(path: &Path) -> Vec<f64> {
    match kao_testdata::read_npy(path).data {
        kao_testdata::NpyData::F64(v) => v,
        other => panic!("{}: expected float64, got {other:?}", path.display()),
    }
}
