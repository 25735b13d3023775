//! Scale-out on one machine: kao-extract shards (`--shard`, Slurm's and Kubernetes' variables)
//! writing one manifest part per video side by side into one folder, a shard killed and run
//! again, and kao-merge joining the parts into the manifest one machine would have written.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::ArrayRef;
use kao_tests::*;

/// The columns a user reads, compared between layouts.
const COLUMNS: &[&str] = &[
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
    "cluster_id",
];

/// Six short clips of the sample (the fourth longer, so a kill lands inside it), their list
/// and Obama's reference photo.
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let videos = dir.join("videos");
    std::fs::create_dir_all(&videos).unwrap();
    let mut list = String::new();
    for (i, (start, length)) in [
        (0.0, 1.2),
        (1.3, 1.2),
        (2.6, 1.2),
        (0.2, 5.0),
        (5.2, 1.2),
        (6.5, 1.2),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("clip{i}.mp4");
        let ok = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-ss",
                &start.to_string(),
                "-t",
                &length.to_string(),
                "-i",
            ])
            .arg(fixture("sample.mp4"))
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-an"])
            .arg(videos.join(&name))
            .status()
            .expect("ffmpeg (installed by scripts/deps.sh)")
            .success();
        assert!(ok, "cutting {name}");
        list.push_str(&name);
        list.push('\n');
    }
    std::fs::write(videos.join("videos.txt"), list).unwrap();
    let refs = dir.join("refs/obama");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::copy(fixture("photos/obama3.jpg"), refs.join("obama3.jpg")).unwrap();
    (videos.join("videos.txt"), dir.join("refs"))
}

/// kao-extract over the list into `out`, with `extra` arguments.
fn extract(list: &Path, refs: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = kao("kao-extract");
    cmd.arg("--list")
        .arg(list)
        .args(["--every", "3", "--all", "-q", "--ref"])
        .arg(refs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX");
    cmd
}

fn succeed(cmd: &mut Command) -> String {
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

/// The manifest's user-facing columns, whole, and the files under the folder but the
/// manifests and kao's own hidden files.
fn outcome(out: &Path) -> (Vec<ArrayRef>, Vec<String>) {
    let batches = read_file(&out.join("manifest.parquet"));
    let columns = COLUMNS
        .iter()
        .map(|name| {
            let parts: Vec<&dyn arrow_array::Array> = batches
                .iter()
                .map(|b| {
                    b.column_by_name(name)
                        .unwrap_or_else(|| panic!("no {name}"))
                        .as_ref()
                })
                .collect();
            arrow_select::concat::concat(&parts).unwrap()
        })
        .collect();
    let mut files = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".part"),
                "temporary file left: {}",
                p.display()
            );
            let relative = p.strip_prefix(out).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if relative != "manifest" {
                    stack.push(p);
                }
            } else if !name.starts_with('.') && name != "manifest.parquet" {
                files.push(relative);
            }
        }
    }
    files.sort();
    (columns, files)
}

fn wait_for(path: &Path, child: &mut std::process::Child) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the shard ended before {}",
            path.display()
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn shards_side_by_side_then_merged_equal_one_machine() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (list, refs) = inputs(d);
    let single = d.join("single");
    succeed(&mut extract(&list, &refs, &single, &[]));
    let expected = outcome(&single);
    assert!(!expected.1.is_empty(), "the single run wrote crops");

    let run_dir = d.join("run");
    // Shard 0 (clips 0 and 3) is killed once clip 0 is done, inside the long clip 3.
    let mut killed = extract(&list, &refs, &run_dir, &["--shard", "0/3"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        &kao_pipeline::parts::part_path(
            &run_dir,
            &list.with_file_name("clip0.mp4").to_string_lossy(),
        ),
        &mut killed,
    );
    killed.kill().unwrap();
    killed.wait().unwrap();
    // While a shard is missing, kao-merge names the video and exits 3.
    let early = run(kao("kao-merge").arg(&run_dir));
    let err = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(3), "{err}");
    assert!(err.contains("clip3.mp4: no part yet"), "{err}");

    // The other shards side by side: one by --shard, one as a Slurm array task (numbered
    // from 1), one as a Kubernetes Indexed Job pod.
    let mut slurm = extract(&list, &refs, &run_dir, &[]);
    slurm
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .stderr(Stdio::piped());
    let mut k8s = extract(&list, &refs, &run_dir, &["--shard-count", "3"]);
    k8s.env("JOB_COMPLETION_INDEX", "2").stderr(Stdio::piped());
    let (slurm, k8s) = (slurm.spawn().unwrap(), k8s.spawn().unwrap());
    let rerun = succeed(&mut extract(&list, &refs, &run_dir, &["--shard", "0/3"]));
    assert!(
        rerun.contains("shard 0/3 (from --shard): 2 of 6 videos, 1 to do"),
        "{rerun}"
    );
    assert!(
        rerun.contains("taking over from a run that did not finish"),
        "{rerun}"
    );
    for (child, says) in [
        (slurm, "shard 1/3 (from Slurm)"),
        (k8s, "shard 2/3 (from Kubernetes)"),
    ] {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.contains(says), "{err}");
    }

    let merged = succeed(kao("kao-merge").arg(&run_dir));
    assert!(merged.contains("6 parts"), "{merged}");
    let got = outcome(&run_dir);
    assert_eq!(got.1, expected.1, "crops");
    for (name, (a, b)) in COLUMNS.iter().zip(got.0.iter().zip(&expected.0)) {
        assert_eq!(a.as_ref(), b.as_ref(), "column {name}");
    }
    // Merging again gives the same (crops already moved into clusters stay found).
    succeed(kao("kao-merge").arg(&run_dir));
    assert_eq!(outcome(&run_dir), got);
}

#[test]
fn bad_shards_and_layouts_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (list, refs) = inputs(d);
    let one_line_error = |cmd: &mut Command, says: &str| {
        let out = run(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{says}: {err}");
    };
    let out = d.join("out");
    // Malformed --shard values are usage errors (clap's status 2), naming the problem.
    for (shard, says) in [("3/3", "does not exist"), ("1", "is not I/N")] {
        let o = run(&mut extract(&list, &refs, &out, &["--shard", shard]));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.lines().next().unwrap_or("").contains(says), "{err}");
    }
    one_line_error(
        &mut extract(&list, &refs, &out, &["--shard-count", "4"]),
        "--shard-count goes with a Kubernetes Indexed Job",
    );
    one_line_error(kao("kao-merge").arg(d), "no manifest parts");
    one_line_error(kao("kao-merge").arg(d.join("missing")), "no such folder");
    // A single run's folder takes no shards; a sharded run's folder takes no single run.
    let single = d.join("single");
    succeed(&mut extract(&list, &refs, &single, &["--max-frames", "3"]));
    one_line_error(
        &mut extract(
            &list,
            &refs,
            &single,
            &["--shard", "0/2", "--max-frames", "3"],
        ),
        "holds the manifest of a run without shards",
    );
    let sharded = d.join("sharded");
    succeed(&mut extract(
        &list,
        &refs,
        &sharded,
        &["--shard", "1/2", "--max-frames", "3"],
    ));
    one_line_error(
        &mut extract(&list, &refs, &sharded, &["--max-frames", "3"]),
        "holds a sharded run's manifest parts",
    );
    // kao-merge waits for running shards (each holds the folder's lock shared).
    let share = kao_pipeline::lock::OutputLock::acquire_shared(&sharded).unwrap();
    one_line_error(
        kao("kao-merge").arg(&sharded),
        "the shards of a sharded run are writing",
    );
    drop(share);
    // Parts made with other options are refused by name.
    succeed(&mut extract(
        &list,
        &refs,
        &sharded,
        &["--shard", "0/2", "--max-frames", "4"],
    ));
    one_line_error(kao("kao-merge").arg(&sharded), "made with other options");
}
