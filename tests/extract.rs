//! End-to-end tests of the main job: kao-extract, and the piped chain it must equal
//! (kao-decode | kao-detect | kao-embed | kao-track | kao-match | kao-align), on the generated sample.
//!
//! The sample shows Obama (0–2 s and 4–6 s, two different photos), Biden (2–4 s) and the
//! astronaut (6–8 s) at 25 fps; the reference is a third Obama photo that is not in the video.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch, StringArray, UInt64Array};
use kao_record::schema::provenance;
use kao_tests::*;

/// A folder of references: `refs/obama/obama3.jpg`.
fn refs(dir: &Path) -> PathBuf {
    let refs = dir.join("refs");
    std::fs::create_dir_all(refs.join("obama")).unwrap();
    std::fs::copy(fixture("photos/obama3.jpg"), refs.join("obama/obama3.jpg")).unwrap();
    refs
}

/// kao-extract on the sample with few reference jitters (fast) and a private cache.
fn extract(dir: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = kao("kao-extract");
    cmd.arg(fixture("sample.mp4"))
        .arg("--ref")
        .arg(refs(dir))
        .args(["--ref-jitters", "3", "--ref-cache"])
        .arg(dir.join("cache"))
        .arg("--out")
        .arg(out)
        .args(extra);
    cmd
}

/// Runs `script`, a piped chain of the stage binaries, under bash with `pipefail`; fails the
/// test with its stderr when a stage fails.
fn run_pipe(script: &str) {
    let out = run(Command::new("bash")
        .arg("-c")
        .arg(format!("set -eo pipefail; {script}")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn manifest(dir: &Path) -> Vec<RecordBatch> {
    read_file(&dir.join("manifest.parquet"))
}

fn strings(b: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    column::<StringArray, _>(b, name, |a, i| {
        a.is_valid(i).then(|| a.value(i).to_string())
    })
}

fn frames(b: &[RecordBatch]) -> Vec<u64> {
    column::<UInt64Array, _>(b, "frame_index", |a, i| a.value(i))
}

fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Files under `dir`, recursively, relative to it (but kao-extract's state file).
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with(".kao-extract.json") {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn extract_equals_the_piped_chain_and_finds_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let one = d.join("one-process");
    let out = run(&mut extract(d, &one, &["--every", "4", "-q"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "quiet run printed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let chain = d.join("chain");
    let script = format!(
        "{} {} --every 4 | {} | {} | {} | {} --ref {} --ref-jitters 3 --ref-cache {} | tee {} | {} --out {} && {} {}",
        bin("kao-decode").display(),
        fixture("sample.mp4").display(),
        bin("kao-detect").display(),
        bin("kao-embed").display(),
        bin("kao-track").display(),
        bin("kao-match").display(),
        refs(d).display(),
        d.join("cache").display(),
        d.join("matched.arrows").display(),
        bin("kao-align").display(),
        chain.display(),
        bin("kao-cluster").display(),
        chain.display(),
    );
    run_pipe(&script);

    // Same rows, same columns, same values, same stages.
    let (a, b) = (manifest(&one), manifest(&chain));
    let concat = |x: &[RecordBatch]| arrow_select_concat(x);
    let (a, b) = (concat(&a), concat(&b));
    assert_eq!(a.schema().fields(), b.schema().fields());
    assert_eq!(
        a.columns(),
        b.columns(),
        "kao-extract and the piped chain wrote different manifests"
    );
    let schema = |dir: &Path| {
        kao_record::RecordReader::open(Some(&dir.join("manifest.parquet")))
            .unwrap()
            .schema()
    };
    let stages = |dir: &Path| {
        provenance(&schema(dir))
            .unwrap()
            .into_iter()
            .map(|p| (p.stage, p.model))
            .collect::<Vec<_>>()
    };
    assert_eq!(stages(&one), stages(&chain));
    assert_eq!(stages(&one).len(), 7); // decode … align, cluster
    assert_eq!(
        schema(&one)
            .metadata()
            .get("kao.frames_processed")
            .map(String::as_str),
        Some("every:4")
    );
    assert!(a.column_by_name("patch").is_none() && a.column_by_name("pixels").is_none());
    assert_eq!(files(&one), files(&chain));

    // Obama is found in both of his shots and nowhere else; every crop is on disk.
    let rows = [a.clone()];
    let (ids, crop_paths) = (strings(&rows, "identity"), strings(&rows, "crop_path"));
    let obama_frames = obama_frames(&rows);
    assert!(
        obama_frames
            .iter()
            .all(|f| *f < 50 || (100..150).contains(f)),
        "obama matched outside his shots: {obama_frames:?}"
    );
    for shot in [0u64..50, 100..150] {
        let sampled = shot.clone().filter(|f| f % 4 == 0).count();
        let found = obama_frames.iter().filter(|f| shot.contains(*f)).count();
        assert_eq!(
            found, sampled,
            "obama found in {found} of {sampled} sampled frames of {shot:?}"
        );
    }
    // Each of his two shots is one track of a still photo: one crop each, the other frames are
    // near-duplicates or were not embedded (the fast path); unmatched faces get no crop. The
    // manifest says why.
    let reasons = strings(&rows, "reject_reason");
    for ((id, path), reason) in ids.iter().zip(&crop_paths).zip(&reasons) {
        match (id, path) {
            (Some(_), Some(p)) => {
                assert!(
                    p.starts_with("obama/sample_f") && reason.is_none(),
                    "{p} {reason:?}"
                );
                assert_eq!(png_size(&one.join(p)), (400, 400));
            }
            (Some(_), None) => assert!(
                matches!(reason.as_deref(), Some("duplicate" | "not_embedded")),
                "{reason:?}"
            ),
            (None, path) => assert!(path.is_none() && reason.as_deref() == Some("unmatched")),
        }
    }
    assert_eq!(crop_paths.iter().flatten().count(), 2, "{crop_paths:?}");
    let tracks = column::<UInt64Array, _>(&rows, "track_id", |a, i| a.value(i));
    let obama_tracks: std::collections::BTreeSet<u64> = tracks
        .iter()
        .zip(&ids)
        .filter(|(_, id)| id.is_some())
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(obama_tracks.len(), 2, "one track per shot");
    for name in ["sharpness", "exposure", "yaw", "pitch", "roll"] {
        let values = column::<arrow_array::Float32Array, _>(&rows, name, |a, i| a.value(i));
        assert!(values.iter().all(|v| v.is_finite()), "{name}");
    }

    // --all also writes the unmatched faces under unknown/, here as JPEG.
    let all = d.join("all");
    let out = run(kao("kao-align")
        .arg(d.join("matched.arrows"))
        .arg("--out")
        .arg(&all)
        .args(["--all", "--format", "jpg", "--min-hash-bits", "0"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every embedded face gets its crop (crops come from embedded faces only).
    let embedded =
        column::<arrow_array::FixedSizeListArray, _>(&rows, "embedding", |a, i| a.is_valid(i));
    let written = files(&all);
    let unknown = written.iter().filter(|f| f.starts_with("unknown/")).count();
    assert_eq!(
        unknown,
        ids.iter()
            .zip(&embedded)
            .filter(|(i, e)| i.is_none() && **e)
            .count()
    );
    assert_eq!(
        written.iter().filter(|f| f.ends_with(".jpg")).count(),
        embedded.iter().filter(|e| **e).count()
    );
    let jpg =
        std::fs::read(all.join(written.iter().find(|f| f.ends_with(".jpg")).unwrap())).unwrap();
    assert_eq!(&jpg[..2], b"\xff\xd8");

    // Quality floors and per-track limits say why a face got no crop.
    let reasons_for = |dir: &str, options: &[&str]| {
        let out_dir = d.join(dir);
        let out = run(kao("kao-align")
            .arg(d.join("matched.arrows"))
            .arg("--out")
            .arg(&out_dir)
            .args(options));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m = manifest(&out_dir);
        (
            strings(&m, "reject_reason"),
            strings(&m, "crop_path").into_iter().flatten().count(),
        )
    };
    let (small, crops) = reasons_for("small", &["--min-face", "100000"]);
    assert_eq!(crops, 0);
    assert!(
        small
            .iter()
            .flatten()
            .all(|r| r == "small" || r == "unmatched")
    );
    let (_, crops) = reasons_for("limit", &["--min-hash-bits", "0", "--max-per-track", "3"]);
    assert_eq!(crops, 6, "three crops for each of the two tracks");
    let (turned, _) = reasons_for("turned", &["--max-yaw", "0.001"]);
    assert!(turned.iter().flatten().any(|r| r == "turned"));
    let (blurry, crops) = reasons_for("blurry", &["--min-sharpness", "1e9"]);
    assert!(crops == 0 && blurry.iter().flatten().any(|r| r == "blurry"));

    // Running into the same folder with other options is refused, and changes nothing.
    let before = std::fs::read(one.join("manifest.parquet")).unwrap();
    let out = run(&mut extract(
        d,
        &one,
        &["--every", "4", "-q", "--threshold", "0.3"],
    ));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("other options") && err.lines().count() == 1,
        "{err}"
    );
    // It names what differs, not every option.
    assert!(err.contains("threshold 0.48 instead of 0.3"), "{err}");
    assert!(!err.contains("track_best"), "{err}");
    assert_eq!(std::fs::read(one.join("manifest.parquet")).unwrap(), before);
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(&batches[0].schema(), batches).unwrap()
}

/// Obama's matched frames in a manifest.
fn obama_frames(b: &[RecordBatch]) -> Vec<u64> {
    frames(b)
        .into_iter()
        .zip(strings(b, "identity"))
        .filter(|(_, id)| id.as_deref() == Some("obama"))
        .map(|(f, _)| f)
        .collect()
}

#[test]
fn a_portrait_phone_video_is_turned_upright_before_detection() {
    // The sample stored sideways, as a phone stores portrait video, with the display matrix
    // that turns it back (`rotate=90`): kao must find what it finds in the upright sample.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sample = fixture("sample.mp4");
    let stored = d.join("stored.mp4");
    let turned = d.join("portrait.mp4");
    let (sample_arg, stored_arg, turned_arg) = (
        sample.to_str().unwrap(),
        stored.to_str().unwrap(),
        turned.to_str().unwrap(),
    );
    let encode: &[&str] = &[
        "-i",
        sample_arg,
        "-vf",
        "transpose=clock",
        "-c:v",
        "libx264",
        "-crf",
        "18",
        stored_arg,
    ];
    let tag: &[&str] = &[
        "-i",
        stored_arg,
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        turned_arg,
    ];
    for args in [encode, tag] {
        let o = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-y"])
            .args(args)
            .output()
            .expect("ffmpeg (installed by scripts/deps.sh)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut found = Vec::new();
    for (video, out) in [(&sample, d.join("upright")), (&turned, d.join("turned"))] {
        let o = run(kao("kao-extract")
            .arg(video)
            .arg("--ref")
            .arg(refs(d))
            .args(["--ref-jitters", "3", "--ref-cache"])
            .arg(d.join("cache"))
            .args(["--every", "4", "-q", "--out"])
            .arg(&out));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        found.push(obama_frames(&manifest(&out)));
    }
    // Both of Obama's shots (frames 0–49 and 100–149, every 4th frame sampled: 26 frames).
    assert_eq!(found[0].len(), 26, "upright: {:?}", found[0]);
    assert_eq!(
        found[1], found[0],
        "the portrait video finds Obama where the upright one does"
    );
}

#[test]
fn ctrl_c_leaves_a_valid_manifest_and_a_rerun_finishes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out_dir = d.join("out");
    // Interrupt once the first crop is on disk.
    let child = start_and_wait_for_a_crop(d, &out_dir);
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let partial = frames(&manifest(&out_dir));
    assert!(
        !partial.is_empty() && *partial.iter().max().unwrap() < 199,
        "the interrupted run covered {partial:?}"
    );

    // The rerun processes the interrupted video again, from the start, without duplicates.
    let out = run(&mut extract(d, &out_dir, &["-q"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = manifest(&out_dir);
    let keys: Vec<(u64, Option<String>)> = frames(&rows)
        .into_iter()
        .zip(strings(&rows, "crop_path"))
        .collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "duplicate rows after the rerun");
    assert!(
        frames(&rows).iter().any(|f| *f >= 150),
        "the rerun did not reach the end of the video"
    );
    let crops = strings(&rows, "crop_path").into_iter().flatten().count();
    assert_eq!(
        files(&out_dir.join("obama")).len(),
        crops,
        "crops on disk and in the manifest differ"
    );

    // A third run finds the video finished and leaves everything as it was.
    let before = std::fs::read(out_dir.join("manifest.parquet")).unwrap();
    let out = run(&mut extract(d, &out_dir, &[]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("finished in an earlier run, skipped"));
    assert_eq!(
        manifest(&out_dir)
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>(),
        keys.len()
    );
    assert_eq!(
        std::fs::read(out_dir.join("manifest.parquet"))
            .unwrap()
            .len(),
        before.len()
    );
}

#[test]
fn a_reference_without_a_face_is_a_one_line_error_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad = d.join("nobody_1.png");
    std::fs::copy(fixture("tiny.png"), &bad).unwrap();
    let out_dir = d.join("out");
    let out = run(extract(d, &out_dir, &["--max-frames", "2", "-q"])
        .arg("--ref")
        .arg(&bad));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nobody_1.png") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!out_dir.join("manifest.parquet").exists());
    assert!(bad.exists(), "a user's reference photo was moved");

    let out = run(
        extract(d, &out_dir, &["--max-frames", "2", "-q", "--skip-bad-refs"])
            .arg("--ref")
            .arg(&bad),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody_1.png"));
    assert!(out_dir.join("manifest.parquet").exists());
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A missing video, and a missing reference folder.
    let out = run(kao("kao-extract")
        .arg(d.join("missing.mp4"))
        .arg("--ref")
        .arg(refs(d))
        .arg("--out")
        .arg(d.join("o")));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.mp4"));
    let out = run(kao("kao-extract")
        .arg(fixture("sample.mp4"))
        .arg("--ref")
        .arg(d.join("norefs"))
        .arg("--out")
        .arg(d.join("o")));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("norefs"));
    // kao-align and kao-match name the stage that adds a missing column.
    let frames_file = d.join("frames.arrows");
    assert!(
        run(kao("kao-decode")
            .arg(fixture("tiny.png"))
            .arg("-o")
            .arg(&frames_file))
        .status
        .success()
    );
    let out = run(kao("kao-align")
        .arg(&frames_file)
        .arg("--out")
        .arg(d.join("a")));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kao-detect"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(kao("kao-match").arg(&frames_file).arg("--ref").arg(refs(d)));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kao-embed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn videos_of_one_name_keep_their_crops_apart() {
    // Cameras name every card's files alike: day1/C0001.MP4, day2/C0001.MP4. The first video
    // keeps the name, the second's crops add its source's hash.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (one, two) = (d.join("day1/C0001.mp4"), d.join("day2/C0001.mp4"));
    for copy in [&one, &two] {
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(fixture("sample.mp4"), copy).unwrap();
    }
    let source = |video: &Path| video.to_str().unwrap().to_string();
    let hashed = |video: &Path| {
        let hash = kao_pipeline::align::crop::source_hash(&source(video));
        format!("obama/C0001-{}_f", &hash[..12])
    };
    let extract = |videos: &[&Path], out: &Path| {
        run(kao("kao-extract")
            .args(videos)
            .arg("--ref")
            .arg(refs(d))
            .args(["--ref-jitters", "1", "--max-frames", "5", "-q", "--out"])
            .arg(out))
    };
    // Each video's crops, by the manifest; every one on disk.
    let crops = |out: &Path, video: &Path| -> Vec<String> {
        let rows = manifest(out);
        let sources = strings(&rows, "source");
        let paths: Vec<String> = strings(&rows, "crop_path")
            .into_iter()
            .zip(sources)
            .filter(|(_, s)| s.as_deref() == Some(source(video).as_str()))
            .filter_map(|(p, _)| p)
            .collect();
        for p in &paths {
            assert!(out.join(p).is_file(), "{p} is not on disk");
        }
        paths
    };
    let named = |paths: &[String], prefix: &str| {
        !paths.is_empty() && paths.iter().all(|p| p.starts_with(prefix))
    };

    // In one run.
    let both = d.join("both");
    let out = extract(&[&one, &two], &both);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (first, second) = (crops(&both, &one), crops(&both, &two));
    assert!(named(&first, "obama/C0001_f"), "{first:?}");
    assert!(named(&second, &hashed(&two)), "{second:?}");
    assert_eq!(first.len(), second.len(), "the same video twice");

    // The piped chain names them alike.
    let chain = d.join("chain");
    let script = format!(
        "{} --max-frames 5 {} {} | {} | {} | {} | {} --ref {} --ref-jitters 1 | {} --out {}",
        bin("kao-decode").display(),
        one.display(),
        two.display(),
        bin("kao-detect").display(),
        bin("kao-embed").display(),
        bin("kao-track").display(),
        bin("kao-match").display(),
        refs(d).display(),
        bin("kao-align").display(),
        chain.display(),
    );
    run_pipe(&script);
    assert_eq!((crops(&chain, &one), crops(&chain, &two)), (first, second));

    // A second run into the folder of the first: the first video keeps its crops' names.
    let days = d.join("days");
    assert!(extract(&[&one], &days).status.success());
    let before = crops(&days, &one);
    let out = extract(&[&two], &days);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(crops(&days, &one), before);
    assert!(named(&crops(&days, &two), &hashed(&two)));

    // Alone, the second video's crops take the plain name.
    let alone = d.join("alone");
    assert!(extract(&[&two], &alone).status.success());
    assert!(named(&crops(&alone, &two), "obama/C0001_f"));
}

/// Starts kao-extract into `out_dir` and waits until its first crop is on disk.
fn start_and_wait_for_a_crop(d: &Path, out_dir: &Path) -> std::process::Child {
    let mut child = extract(d, out_dir, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out_dir.join("obama").is_dir()
        || std::fs::read_dir(out_dir.join("obama")).unwrap().count() == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no crop after 300 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "kao-extract ended too early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn signal(child: &std::process::Child, name: &str) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// Hidden temporary files (`.kao-*.part`, `.kao-*.tmp`) anywhere under `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".part") || name.contains(".tmp") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn a_second_writer_is_refused_and_sigterm_stops_like_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out_dir = d.join("out");
    let first = start_and_wait_for_a_crop(d, &out_dir);
    // A second run into the same folder stops at once, naming the first.
    let second = run(&mut extract(d, &out_dir, &["-q"]));
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("another kao run is writing into this folder")
            && err.contains(&format!("PID {}", first.id())),
        "{err}"
    );
    // SIGTERM finishes cleanly, as Ctrl-C does.
    signal(&first, "-TERM");
    let out = first.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!frames(&manifest(&out_dir)).is_empty());
    assert!(!out_dir.join(".kao-lock").exists());
    assert_eq!(leftovers(&out_dir), Vec::<String>::new());
}

#[test]
fn a_rerun_after_sigkill_takes_over_and_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out_dir = d.join("out");
    let mut killed = start_and_wait_for_a_crop(d, &out_dir);
    signal(&killed, "-KILL");
    killed.wait().unwrap();
    // The killed run's lock names it; its manifest part is left behind.
    let lock = std::fs::read_to_string(out_dir.join(".kao-lock")).unwrap();
    assert!(lock.contains(&format!("PID {}", killed.id())), "{lock}");
    assert!(!leftovers(&out_dir).is_empty());
    let out = run(&mut extract(d, &out_dir, &["-q"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("taking over from a run that did not finish"),
        "{err}"
    );
    assert_eq!(leftovers(&out_dir), Vec::<String>::new());
    let rows = manifest(&out_dir);
    let crops = strings(&rows, "crop_path").into_iter().flatten().count();
    assert!(crops > 0);
    assert_eq!(
        files(&out_dir.join("obama")).len(),
        crops,
        "crops on disk and in the manifest differ"
    );
}

#[test]
fn track_ids_stay_unique_across_runs_into_one_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out_dir = d.join("out");
    let second = d.join("second.mp4");
    std::fs::copy(fixture("sample.mp4"), &second).unwrap();
    let first = run(&mut extract(d, &out_dir, &["-q", "--every", "10"]));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let mut later = extract(d, &out_dir, &["-q", "--every", "10"]);
    later.arg(&second);
    let out = run(&mut later);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = manifest(&out_dir);
    let sources = strings(&rows, "source");
    let tracks = column::<UInt64Array, _>(&rows, "track_id", |a, i| a.value(i));
    let of = |name: &str| -> std::collections::BTreeSet<u64> {
        sources
            .iter()
            .zip(&tracks)
            .filter(|(s, _)| s.as_deref().is_some_and(|s| s.ends_with(name)))
            .map(|(_, t)| *t)
            .collect()
    };
    let (a, b) = (of("sample.mp4"), of("second.mp4"));
    assert!(!a.is_empty() && !b.is_empty());
    assert!(a.is_disjoint(&b), "{a:?} and {b:?} share track ids");
}

#[test]
fn a_stream_cut_mid_way_fails_every_later_stage_and_writes_no_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stage = |name: &str, input: &Path, output: &str, extra: &[&str]| {
        let out = run(kao(name)
            .arg(input)
            .args(extra)
            .arg("-o")
            .arg(d.join(output)));
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        d.join(output)
    };
    let out = run(kao("kao-decode")
        .arg(fixture("photos/obama.jpg"))
        .arg(fixture("photos/biden.jpg"))
        .arg("-o")
        .arg(d.join("frames.arrows")));
    assert!(out.status.success());
    let faces = stage("kao-detect", &d.join("frames.arrows"), "faces.arrows", &[]);
    let faces = stage("kao-embed", &faces, "embedded.arrows", &[]);
    let faces = stage("kao-track", &faces, "tracked.arrows", &[]);
    let refs = refs(d);
    let matched = stage(
        "kao-match",
        &faces,
        "matched.arrows",
        &[
            "--ref",
            refs.to_str().unwrap(),
            "--ref-jitters",
            "1",
            "--no-ref-cache",
        ],
    );
    // What a stage that died after writing some records leaves: no end-of-stream marker.
    for (stream, next, args) in [
        (
            d.join("frames.arrows"),
            "kao-detect",
            vec![
                "-o".to_string(),
                d.join("next.arrows").display().to_string(),
            ],
        ),
        (
            matched,
            "kao-align",
            vec!["--out".to_string(), d.join("dataset").display().to_string()],
        ),
    ] {
        let bytes = std::fs::read(&stream).unwrap();
        let cut = d.join("cut.arrows");
        std::fs::write(&cut, &bytes[..bytes.len() - 8]).unwrap();
        let out = run(kao(next).arg(&cut).args(&args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{next}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("ends without its end marker"), "{err}");
    }
    assert!(!d.join("next.arrows").exists());
    assert!(!d.join("dataset/manifest.parquet").exists());
}
