//! End-to-end tests of kao-report on kao-extract's output for the generated sample, with the
//! page loaded in headless Chromium (Debian's `chromium`, installed by `scripts/deps.sh --browser`).
//!
//! Built only with `--features report` (scripts/test.sh's report step), after
//! `cargo build --release -p kao-report`: polars stays out of the default build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::{Array, StringArray, UInt64Array};
use kao_tests::*;

/// The report's default number of rejected faces shown per track.
const MAX_REJECTED: usize = 6;

/// kao-extract on the sample into `dir/out`, with `refs/obama/obama3.jpg` as the reference.
fn dataset(dir: &Path) -> PathBuf {
    let refs = dir.join("refs/obama");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::copy(fixture("photos/obama3.jpg"), refs.join("obama3.jpg")).unwrap();
    let out = dir.join("out");
    let done = run(kao("kao-extract")
        .arg(fixture("sample.mp4"))
        .arg("--ref")
        .arg(dir.join("refs"))
        .args(["--ref-jitters", "3", "--ref-cache"])
        .arg(dir.join("cache"))
        .arg("--out")
        .arg(&out));
    assert!(
        done.status.success(),
        "kao-extract: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    out
}

/// What the page should show, worked out from the manifest: crops written, and per
/// (identity, video, track) group at most MAX_REJECTED faces without a crop.
fn expected(out: &Path) -> (usize, usize) {
    let b = read_file(&out.join("manifest.parquet"));
    let strings = |name: &str| {
        column::<StringArray, _>(&b, name, |a, i| {
            a.is_valid(i).then(|| a.value(i).to_string())
        })
    };
    let (identity, source, crop) = (strings("identity"), strings("source"), strings("crop_path"));
    let track = column::<UInt64Array, _>(&b, "track_id", |a, i| a.is_valid(i).then(|| a.value(i)));
    // (identity, source, track) → faces without a crop
    type Group = (Option<String>, Option<String>, Option<u64>);
    let mut rejected: BTreeMap<Group, usize> = BTreeMap::new();
    let mut crops = 0;
    for i in 0..identity.len() {
        if crop[i].is_some() {
            crops += 1;
        } else {
            *rejected
                .entry((identity[i].clone(), source[i].clone(), track[i]))
                .or_default() += 1;
        }
    }
    (
        crops,
        rejected.values().map(|n| (*n).min(MAX_REJECTED)).sum(),
    )
}

/// Loads `page` in headless Chromium and returns `<body>`'s `data-` attributes the page's
/// script sets on load (thumbnails loaded and broken, script errors).
fn load_in_chromium(page: &Path, profile: &Path) -> BTreeMap<String, String> {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .output()
        .expect("chromium (scripts/deps.sh --browser installs Debian's chromium)");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let body = dom
        .split("<body")
        .nth(1)
        .and_then(|b| b.split('>').next())
        .expect("a <body> in the DOM")
        .to_string();
    body.split_whitespace()
        .filter_map(|attr| attr.strip_prefix("data-"))
        .filter_map(|attr| attr.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

#[test]
fn the_report_summarises_the_run_and_loads_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dataset(tmp.path());
    let (crops, rejected) = expected(&out);
    assert!(
        crops >= 2 && rejected > 0,
        "{crops} crops, {rejected} rejected shown"
    );

    let done = run(kao("kao-report").arg(&out));
    let stdout = String::from_utf8_lossy(&done.stdout);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "kao-report: {stderr}");
    // The tables: one row for Obama, one per cluster of unmatched faces, one per video, and
    // reasons.
    let people = stdout.split("\n\n").next().unwrap();
    assert!(people.starts_with("People\nidentity"), "{stdout}");
    assert!(people.lines().any(|l| l.starts_with("obama ")), "{stdout}");
    // FACE01's similar_percentage per identity (dlib's ResNet has FACE01's curve).
    assert!(people.contains("median_similar_percentage"), "{stdout}");
    // The faces that matched no one, grouped into people (Biden, the astronaut).
    assert!(
        people.lines().any(|l| l.starts_with("unknown/0 ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("Videos\nsource") && stdout.contains("sample.mp4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("duplicate") && stdout.contains("unmatched"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "{} thumbnails: {crops} crops, {rejected} rejected faces",
            crops + rejected
        )),
        "{stderr}"
    );

    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        html.matches("<img class=\"thumb\"").count(),
        crops + rejected
    );
    assert!(
        html.contains("<svg") && !html.contains("src=\"http") && !html.contains("src=\"file"),
        "self-contained page"
    );
    // What the manifest's metadata says: the frames processed, the stages, the threshold used.
    assert!(html.contains("frames processed: all"), "metadata read");
    assert!(
        html.contains("kao-decode → kao-detect (blazeface-full) → kao-embed (dlib-resnet)"),
        "provenance read"
    );
    assert!(html.contains("threshold 0.48"), "the threshold line");
    assert!(
        html.contains("embeddings: dlib-resnet (Euclidean distance)"),
        "the embedding space read from the field metadata"
    );
    let loaded = load_in_chromium(&page, &tmp.path().join("chromium"));
    assert_eq!(
        loaded.get("thumbs-loaded").map(String::as_str),
        Some((crops + rejected).to_string().as_str()),
        "{loaded:?}"
    );
    assert_eq!(
        loaded.get("thumbs-broken").map(String::as_str),
        Some("0"),
        "{loaded:?}"
    );
    assert_eq!(
        loaded.get("errors").map(String::as_str),
        Some("0"),
        "{loaded:?}"
    );

    // Without the video, rejected faces are listed without pictures.
    let other = tmp.path().join("no-video.html");
    let done = run(kao("kao-report")
        .arg(&out)
        .arg("--no-video")
        .arg("--out")
        .arg(&other));
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let html = std::fs::read_to_string(&other).unwrap();
    assert_eq!(html.matches("<img class=\"thumb\"").count(), crops);
    assert!(
        !html.contains("<video"),
        "no preview in the folder, none linked"
    );
    assert_eq!(html.matches("class=\"nothumb\"").count(), rejected);
}

#[test]
fn videos_recorded_by_relative_paths_are_found_from_elsewhere() {
    // kao-extract run inside `work/` on `clip.mp4`: the manifest records `clip.mp4`.
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("refs/obama")).unwrap();
    std::fs::copy(fixture("sample.mp4"), work.join("clip.mp4")).unwrap();
    std::fs::copy(
        fixture("photos/obama3.jpg"),
        work.join("refs/obama/obama3.jpg"),
    )
    .unwrap();
    let done = run(kao("kao-extract")
        .current_dir(&work)
        .args([
            "clip.mp4",
            "--ref",
            "refs",
            "--ref-jitters",
            "1",
            "--every",
            "5",
            "--out",
            "out",
        ])
        .arg("--ref-cache")
        .arg(tmp.path().join("cache")));
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let rejected_pictures = |extra: &[&Path]| {
        let page = tmp.path().join("page.html");
        let done = run(kao("kao-report")
            .current_dir(tmp.path())
            .arg(work.join("out"))
            .arg("--out")
            .arg(&page)
            .args(extra));
        let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
        assert!(done.status.success(), "{stderr}");
        let html = std::fs::read_to_string(&page).unwrap();
        let pictures = html.matches("<img class=\"thumb\"").count();
        (pictures, stderr)
    };
    // Found beside the output folder, though the report runs elsewhere.
    let (beside, stderr) = rejected_pictures(&[]);
    assert!(
        stderr.contains("clip.mp4 not found as recorded; reading"),
        "{stderr}"
    );
    // Moved away: not found, unless --videos says where.
    let moved = tmp.path().join("videos");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::rename(work.join("clip.mp4"), moved.join("clip.mp4")).unwrap();
    let (lost, stderr) = rejected_pictures(&[]);
    assert!(stderr.contains("clip.mp4: no such file"), "{stderr}");
    assert!(
        lost < beside,
        "{lost} pictures without the video, {beside} with it"
    );
    let (found, _) = rejected_pictures(&[Path::new("--videos"), &moved]);
    assert_eq!(found, beside);
    // A --videos that is not a folder is a one-line error, and no page is written.
    let page = tmp.path().join("none.html");
    let done = run(kao("kao-report")
        .arg(work.join("out"))
        .arg("--videos")
        .arg(tmp.path().join("missing"))
        .arg("--out")
        .arg(&page));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("missing: --videos: not a folder"),
        "{stderr}"
    );
    assert!(!page.exists());
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // No manifest in the folder.
    let done = run(kao("kao-report").arg(tmp.path()));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("kao-report: ") && stderr.contains("manifest.parquet: no such file"),
        "{stderr}"
    );
    // A file that is not Parquet.
    let junk = tmp.path().join("manifest.parquet");
    std::fs::write(&junk, "not parquet").unwrap();
    let done = run(kao("kao-report").arg(&junk));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("manifest.parquet"), "{stderr}");
    assert!(!tmp.path().join("report.html").exists());
    // Frame records are not face records.
    let frames = tmp.path().join("frames.parquet");
    let done = run(kao("kao-decode")
        .arg(fixture("cfr.mp4"))
        .args(["--max-frames", "2", "-o"])
        .arg(&frames));
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let done = run(kao("kao-report").arg(&frames));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1));
    assert!(
        stderr.contains("frames.parquet: no column face_index"),
        "{stderr}"
    );
}

#[test]
fn clusters_of_unknown_people_get_a_row_and_a_sheet_each() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("people");
    let done = run(kao("kao-extract")
        .arg(fixture("sample.mp4"))
        .args(["--every", "5", "-q", "--out"])
        .arg(&out)
        .arg("--preview")
        .arg(out.join("preview.mp4")));
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let done = run(kao("kao-report").arg(&out).arg("--no-video"));
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let people = stdout.split("\n\n").next().unwrap();
    assert!(
        people.lines().any(|l| l.starts_with("unknown/0 ")),
        "{stdout}"
    );
    assert!(
        !people.contains("(no match)"),
        "every face is in a cluster: {stdout}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("unknown/0"), "a sheet per cluster");
    // The folder's preview (kao-extract --preview) is linked and shown.
    assert!(
        html.contains("<a href=\"preview.mp4\">") && html.contains("src=\"preview.mp4\""),
        "the preview is linked"
    );
    // Each cluster's crops are shown on its sheet.
    let crops = std::fs::read_dir(out.join("unknown/0")).unwrap().count();
    assert!(crops > 0 && html.matches("<img class=\"thumb\"").count() >= crops);
}
