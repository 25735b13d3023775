//! The fast path against `--exact`: kao-extract follows faces between detector passes and
//! embeds only the faces that say something new (docs/stages.md, "The fast path"); it must
//! not lose a face that `--exact` finds on screen for more than a second.
//!
//! On the generated sample (still photos, cuts between them) and on a moving-face clip (Obama
//! crosses the picture growing and bobbing; Biden enters mid-shot at 1.5 s for 2 s). And the
//! second detectors: on a 1080p clip where Obama's photo shrinks from 480 to 80 pixels wide,
//! BlazeFace full range loses the face; the second detectors, looking where it was, keep it.
//! And a face too small for BlazeFace on the whole 1080p frame is found on its tiles.

use std::collections::HashMap;
use std::path::Path;

use arrow_array::{
    Array, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, RecordBatch, UInt64Array,
};
use kao_tests::*;

/// The default interval between detector passes, in seconds.
const INTERVAL: f64 = 0.4;

/// One face record: frame, time, box `[left, top, right, bottom)`, track.
struct Face {
    frame: u64,
    pts: f64,
    bbox: [f32; 4],
    track: u64,
}

/// Runs kao-extract (no references: every face is kept and clustered) and reads its faces,
/// with how many were found by the detector and how many were embedded.
fn extract(video: &Path, out: &Path, extra: &[&str]) -> (Vec<Face>, usize, usize) {
    let b = manifest(video, out, extra);
    let boxes = boxes(&b);
    let frames = column::<UInt64Array, _>(&b, "frame_index", |a, i| a.value(i));
    let pts = column::<Float64Array, _>(&b, "pts", |a, i| a.value(i));
    let tracks = column::<UInt64Array, _>(&b, "track_id", |a, i| a.value(i));
    let detected = column::<BooleanArray, _>(&b, "detected", |a, i| a.value(i));
    let embedded = column::<FixedSizeListArray, _>(&b, "embedding", |a, i| a.is_valid(i));
    let faces = (0..frames.len())
        .map(|i| Face {
            frame: frames[i],
            pts: pts[i],
            bbox: boxes[i],
            track: tracks[i],
        })
        .collect();
    let count = |v: Vec<bool>| v.into_iter().filter(|b| *b).count();
    (faces, count(detected), count(embedded))
}

/// Runs kao-extract with `extra` options on `video` into `out` and reads its manifest.
fn manifest(video: &Path, out: &Path, extra: &[&str]) -> Vec<RecordBatch> {
    let o = run(kao("kao-extract")
        .arg(video)
        .arg("--out")
        .arg(out)
        .arg("-q")
        .args(extra));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read_file(&out.join("manifest.parquet"))
}

/// Each face record's box, `[left, top, right, bottom)`.
fn boxes(b: &[RecordBatch]) -> Vec<[f32; 4]> {
    let f32s = |name| column::<Float32Array, _>(b, name, |a, i| a.value(i));
    let (x, y, w, h) = (f32s("x"), f32s("y"), f32s("w"), f32s("h"));
    (0..x.len())
        .map(|i| [x[i], y[i], x[i] + w[i], y[i] + h[i]])
        .collect()
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// Every face of an `--exact` track longer than a second is in the fast run, in the same frame
/// (IoU ≥ 0.5), from the first detector pass after the face appeared on.
fn check(video: &str, min_tracks: usize) {
    let dir = tempfile::tempdir().unwrap();
    let video = fixture(video);
    let (exact, exact_detected, exact_embedded) =
        extract(&video, &dir.path().join("exact"), &["--exact"]);
    let (fast, fast_detected, fast_embedded) = extract(&video, &dir.path().join("fast"), &[]);
    assert_eq!(exact_detected, exact.len());
    assert_eq!(exact_embedded, exact.len());
    // The fast path did follow and sample (or this test would prove nothing).
    assert!(
        fast_detected < fast.len() / 2,
        "{fast_detected} of {} detected",
        fast.len()
    );
    assert!(
        fast_embedded < fast.len() / 2,
        "{fast_embedded} of {} embedded",
        fast.len()
    );

    let mut tracks: HashMap<u64, Vec<&Face>> = HashMap::new();
    for face in &exact {
        tracks.entry(face.track).or_default().push(face);
    }
    let mut long = 0;
    for faces in tracks.values() {
        let start = faces.iter().map(|f| f.pts).fold(f64::INFINITY, f64::min);
        let end = faces
            .iter()
            .map(|f| f.pts)
            .fold(f64::NEG_INFINITY, f64::max);
        if end - start <= 1.0 {
            continue;
        }
        long += 1;
        for face in faces.iter().filter(|f| f.pts >= start + INTERVAL + 0.05) {
            let kept = fast
                .iter()
                .any(|g| g.frame == face.frame && iou(&g.bbox, &face.bbox) >= 0.5);
            assert!(
                kept,
                "{}: the fast path lost the face at {:?} in frame {} (track from {start:.2} to {end:.2} s)",
                video.display(),
                face.bbox,
                face.frame
            );
        }
    }
    assert!(long >= min_tracks, "{long} tracks longer than a second");
}

#[test]
fn the_fast_path_keeps_every_face_of_the_sample() {
    check("sample.mp4", 4);
}

#[test]
fn the_fast_path_keeps_a_moving_face_and_one_entering_mid_shot() {
    check("moving.mp4", 2);
}

/// Runs kao-extract with `extra` options on `video` and returns, per face record, its frame,
/// box `[left, top, right, bottom)` and whether a second detector found or placed it.
fn rescued_faces(video: &Path, out: &Path, extra: &[&str]) -> Vec<(u64, [f32; 4], bool)> {
    let b = manifest(video, out, extra);
    let frames = column::<UInt64Array, _>(&b, "frame_index", |a, i| a.value(i));
    let rescued = column::<BooleanArray, _>(&b, "second_detector", |a, i| a.value(i));
    boxes(&b)
        .into_iter()
        .enumerate()
        .map(|(i, bbox)| (frames[i], bbox, rescued[i]))
        .collect()
}

#[test]
fn the_second_detectors_keep_a_face_the_detector_loses() {
    let dir = tempfile::tempdir().unwrap();
    let video = fixture("receding.mp4");
    let kept = rescued_faces(&video, &dir.path().join("default"), &[]);
    let lost = rescued_faces(
        &video,
        &dir.path().join("none"),
        &["--second-detector", "none"],
    );
    // Without them the face is gone well before the end (or the test proves nothing)...
    let last = |faces: &[(u64, [f32; 4], bool)]| faces.iter().map(|f| f.0).max().unwrap_or(0);
    assert!(
        last(&lost) < 90,
        "the detector alone kept the face to frame {}",
        last(&lost)
    );
    assert!(lost.iter().all(|f| !f.2));
    // ...with them it is in all 100 frames, once each, and where the photo is: the photo's
    // top-left corner stays at (800, 300) while its width shrinks by 100 px a second.
    let frames: Vec<u64> = kept.iter().map(|f| f.0).collect();
    assert_eq!(frames, (0..100).collect::<Vec<u64>>());
    assert!(kept.iter().filter(|f| f.2).count() >= 10);
    for (frame, [l, t, r, b], _) in &kept {
        let width = 480.0 - 100.0 * *frame as f32 / 25.0;
        let (cx, cy) = ((l + r) / 2.0, (t + b) / 2.0);
        assert!(
            (800.0..800.0 + width).contains(&cx) && (300.0..300.0 + width * 1.3).contains(&cy),
            "frame {frame}: a face at {:?} outside the photo",
            [l, t, r, b]
        );
    }
}

#[test]
fn a_face_too_small_for_the_whole_frame_is_found_on_its_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let video = fixture("small.mp4");
    let exact = rescued_faces(&video, &dir.path().join("exact"), &["--exact"]);
    assert!(
        exact.is_empty(),
        "the detector alone found {} faces",
        exact.len()
    );
    let found = rescued_faces(&video, &dir.path().join("default"), &[]);
    let frames: Vec<u64> = found.iter().map(|f| f.0).collect();
    assert_eq!(frames, (0..50).collect::<Vec<u64>>());
    for (frame, [l, t, r, b], second) in &found {
        let (cx, cy) = ((l + r) / 2.0, (t + b) / 2.0);
        assert!(*second, "frame {frame}");
        assert!(
            (1500.0..1700.0).contains(&cx) && (700.0..950.0).contains(&cy) && r - l < 100.0,
            "frame {frame}: a face at {:?} is not the photo's",
            [l, t, r, b]
        );
    }
}
