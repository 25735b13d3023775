//! Fault injection: kao-extract and the piped chain killed (SIGKILL) at points spread over a
//! run, from reference enrolment to the manifest's rename, each followed by a rerun into the
//! same folder. The rerun must equal a clean run: the same manifest rows, the crops on disk
//! exactly the crops listed, and no temporary files left behind.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch, StringArray};
use kao_tests::*;

/// Kill points per runner (kao-extract, the pipe): 20 in all.
const KILL_POINTS: u32 = 10;

/// What a finished output folder holds: the manifest's rows (the columns a user reads, in
/// order) and the files under the folder.
#[derive(Debug, PartialEq)]
struct Outcome {
    rows: Vec<String>,
    files: Vec<String>,
}

fn outcome(out: &Path) -> Outcome {
    let batches = read_file(&out.join("manifest.parquet"));
    let mut rows = vec![String::new(); batches.iter().map(RecordBatch::num_rows).sum()];
    for name in [
        "source",
        "frame_index",
        "face_index",
        "x",
        "y",
        "w",
        "h",
        "track_id",
        "identity",
        "distance",
        "crop_path",
        "reject_reason",
    ] {
        let mut at = 0;
        for b in &batches {
            let column = b
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no {name}"));
            for i in 0..b.num_rows() {
                let value = arrow_cast_display(column.as_ref(), i);
                rows[at].push_str(&format!("{name}={value} "));
                at += 1;
            }
        }
    }
    // The crops listed must be exactly the image files on disk.
    let listed: Vec<String> = column::<StringArray, _>(&batches, "crop_path", |a, i| {
        a.is_valid(i).then(|| a.value(i).to_string())
    })
    .into_iter()
    .flatten()
    .collect();
    let mut files = files_under(out);
    files.retain(|f| f != "manifest.parquet" && f != ".kao-extract.json");
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        files,
        sorted,
        "{}: crops on disk and in the manifest differ",
        out.display()
    );
    Outcome { rows, files }
}

/// A cell as text (nulls as `-`).
fn arrow_cast_display(column: &dyn Array, i: usize) -> String {
    if column.is_null(i) {
        return "-".into();
    }
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, UInt32Type, UInt64Type};
    match column.data_type() {
        arrow_schema::DataType::Utf8 => column.as_string::<i32>().value(i).to_string(),
        arrow_schema::DataType::UInt64 => column.as_primitive::<UInt64Type>().value(i).to_string(),
        arrow_schema::DataType::UInt32 => column.as_primitive::<UInt32Type>().value(i).to_string(),
        arrow_schema::DataType::Float32 => {
            column.as_primitive::<Float32Type>().value(i).to_string()
        }
        other => panic!("column type {other}"),
    }
}

/// Every file under `dir`, relative to it, sorted; temporary files fail the test.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !(name.ends_with(".part") || name.contains(".tmp")),
                "temporary file left: {}",
                p.display()
            );
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Reference photos: `refs/obama/obama3.jpg`.
fn refs(dir: &Path) -> PathBuf {
    let refs = dir.join("refs/obama");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::copy(fixture("photos/obama3.jpg"), refs.join("obama3.jpg")).unwrap();
    dir.join("refs")
}

/// The job as one command line, in its own process group: kao-extract, or the piped chain.
fn job(pipe: bool, dir: &Path, out: &Path, cache: &Path) -> Command {
    let video = fixture("sample.mp4");
    let refs = refs(dir);
    let bin = |name: &str| bin(name).display().to_string();
    let common = format!("--ref-jitters 2 --ref-cache '{}'", cache.display());
    let line = if pipe {
        format!(
            "set -o pipefail; '{}' '{}' --every 4 | '{}' | '{}' | '{}' | '{}' --ref '{}' {common} | '{}' --out '{}'",
            bin("kao-decode"),
            video.display(),
            bin("kao-detect"),
            bin("kao-embed"),
            bin("kao-track"),
            bin("kao-match"),
            refs.display(),
            bin("kao-align"),
            out.display()
        )
    } else {
        format!(
            "'{}' '{}' --every 4 --ref '{}' {common} -q --out '{}'",
            bin("kao-extract"),
            video.display(),
            refs.display(),
            out.display()
        )
    };
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &line])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd
}

/// Waits until no live process is left in process group `group` (zombies, which the
/// container's init may never reap, hold no files and count as gone).
fn wait_until_gone(group: u32) {
    let started = Instant::now();
    loop {
        let alive: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                // `pid (comm) state ppid pgrp …`; comm may hold spaces, so split after `)`.
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
            })
            .collect();
        if alive.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "killed processes still alive after 60 s: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_to_the_end(mut cmd: Command) -> Duration {
    let started = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Kills the job at `KILL_POINTS` points spread over a clean run's duration, reruns it each
/// time, and compares with the clean run.
fn killed_and_rerun_equals_a_clean_run(pipe: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clean_out = d.join("clean");
    let took = run_to_the_end(job(pipe, d, &clean_out, &d.join("clean-cache")));
    let clean = outcome(&clean_out);
    assert!(!clean.files.is_empty());
    for k in 1..=KILL_POINTS {
        // Each point with its own folder and reference cache, so enrolment is in the run too.
        let (out, cache) = (d.join(format!("out{k}")), d.join(format!("cache{k}")));
        let mut child = job(pipe, d, &out, &cache).spawn().unwrap();
        std::thread::sleep(took.mul_f64(f64::from(k) / f64::from(KILL_POINTS + 1)));
        // The whole process group: every stage of the pipe.
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = child.wait();
        // SIGKILL is delivered asynchronously and `wait` covers bash only: a stage still
        // dying holds the folder's lock, and the rerun would rightly be refused.
        wait_until_gone(child.id());
        run_to_the_end(job(pipe, d, &out, &cache));
        assert_eq!(
            outcome(&out),
            clean,
            "{} killed at {k}/{}, then rerun",
            if pipe { "the pipe" } else { "kao-extract" },
            KILL_POINTS + 1
        );
    }
}

#[test]
fn kao_extract_killed_anywhere_then_rerun_equals_a_clean_run() {
    killed_and_rerun_equals_a_clean_run(false);
}

#[test]
fn the_piped_chain_killed_anywhere_then_rerun_equals_a_clean_run() {
    killed_and_rerun_equals_a_clean_run(true);
}
