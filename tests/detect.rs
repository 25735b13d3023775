//! End-to-end tests of kao-detect (and detect → embed) on real photos and generated frames.

use std::path::Path;
use std::process::{Command, Stdio};

use arrow_array::{
    BinaryArray, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, UInt32Array,
    UInt64Array,
};
use kao_tests::*;

/// Runs `kao-decode INPUT [decode args] | kao-detect [detect args]` and parses the face records.
fn detect(
    input: &Path,
    decode_args: &[&str],
    detect_args: &[&str],
) -> (Vec<RecordBatch>, std::process::Output) {
    let mut decoder = kao("kao-decode")
        .arg(input)
        .args(decode_args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Command::new(bin("kao-detect"))
        .args(detect_args)
        .stdin(decoder.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(decoder.wait().unwrap().success());
    // A stage that failed leaves a stream without its end marker: no records to look at.
    let b = if out.stdout.is_empty() || !out.status.success() {
        Vec::new()
    } else {
        batches(&out.stdout)
    };
    (b, out)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn f32s(b: &[RecordBatch], name: &str) -> Vec<f32> {
    column(b, name, |a: &Float32Array, i| a.value(i))
}

fn landmarks(b: &[RecordBatch]) -> Vec<Vec<f32>> {
    column(b, "landmarks", |a: &FixedSizeListArray, i| {
        a.value(i)
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap()
            .values()
            .to_vec()
    })
}

/// Checks the invariants every face record keeps: patch size, patch inside the frame, box and
/// landmarks inside the patch.
fn assert_well_formed(b: &[RecordBatch]) {
    let (x, y, w, h) = (f32s(b, "x"), f32s(b, "y"), f32s(b, "w"), f32s(b, "h"));
    let px = column(b, "patch_x", |a: &Int32Array, i| a.value(i));
    let py = column(b, "patch_y", |a: &Int32Array, i| a.value(i));
    let pw = column(b, "patch_w", |a: &UInt32Array, i| a.value(i));
    let ph = column(b, "patch_h", |a: &UInt32Array, i| a.value(i));
    let fw = column(b, "width", |a: &UInt32Array, i| a.value(i));
    let fh = column(b, "height", |a: &UInt32Array, i| a.value(i));
    let patches = column(b, "patch", |a: &BinaryArray, i| a.value(i).len());
    for (i, marks) in landmarks(b).iter().enumerate() {
        assert_eq!(patches[i], (pw[i] * ph[i] * 3) as usize);
        assert!(
            px[i] >= 0
                && py[i] >= 0
                && px[i] as u32 + pw[i] <= fw[i]
                && py[i] as u32 + ph[i] <= fh[i]
        );
        let inside = |vx: f32, vy: f32| {
            vx >= px[i] as f32
                && vy >= py[i] as f32
                && vx <= (px[i] as u32 + pw[i]) as f32
                && vy <= (py[i] as u32 + ph[i]) as f32
        };
        assert!(
            inside(x[i].max(0.0), y[i].max(0.0)),
            "face {i}: box corner outside its patch"
        );
        for k in 0..5 {
            assert!(
                inside(marks[2 * k], marks[2 * k + 1]),
                "face {i}: landmark {k} outside its patch"
            );
            assert!(
                marks[2 * k] >= x[i] - 0.25 * w[i] && marks[2 * k] <= x[i] + 1.25 * w[i],
                "landmark far from box"
            );
            assert!(
                marks[2 * k + 1] >= y[i] - 0.25 * h[i] && marks[2 * k + 1] <= y[i] + 1.25 * h[i]
            );
        }
    }
}

#[test]
fn every_detector_finds_the_one_face_in_each_sample_frame() {
    let sample = fixture("sample.mp4");
    for detector in ["blazeface-full", "blazeface", "mmod"] {
        let (b, out) = detect(&sample, &["--fps", "1"], &["--detector", detector]);
        assert!(out.status.success(), "{detector}: {}", stderr(&out));
        let frames = column(&b, "frame_index", |a: &UInt64Array, i| a.value(i));
        // Eight frames: Obama, Biden, Obama, the astronaut, two seconds each, one face each.
        // (The short-range model is for faces near the camera; it may miss the smaller ones.)
        let mut unique = frames.clone();
        unique.dedup();
        assert_eq!(
            unique.len(),
            frames.len(),
            "{detector}: at most one face per frame: {frames:?}"
        );
        let minimum = if detector == "blazeface" { 4 } else { 8 };
        assert!(
            frames.len() >= minimum,
            "{detector}: {} faces in 8 frames",
            frames.len()
        );
        assert_well_formed(&b);
        assert!(
            b[0].schema().field_with_name("pixels").is_err(),
            "frames' pixels must not travel on"
        );
    }
}

#[test]
fn mmod_then_embed_reproduces_dlibs_whole_path() {
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tests_dir().join("data/dlib_mmod_path.json")).unwrap(),
    )
    .unwrap();
    let path = &golden["mmod_upsample0"];
    let png = tests_dir().join("data/astronaut.png");
    let mut decoder = kao("kao-decode")
        .arg(&png)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut detector = Command::new(bin("kao-detect"))
        .args(["--detector", "mmod"])
        .stdin(decoder.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Command::new(bin("kao-embed"))
        .stdin(detector.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(decoder.wait().unwrap().success() && detector.wait().unwrap().success());
    assert!(out.status.success(), "{}", stderr(&out));
    let b = batches(&out.stdout);
    // dlib's box [168,69,263,164] (inclusive) is x 168, y 69, 96×96.
    assert_eq!(
        (f32s(&b, "x"), f32s(&b, "y"), f32s(&b, "w"), f32s(&b, "h")),
        (vec![168.0], vec![69.0], vec![96.0], vec![96.0])
    );
    assert!((f32s(&b, "score")[0] - path["confidence"].as_f64().unwrap() as f32).abs() < 1e-4);
    let want: Vec<f32> = path["landmarks5"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| [p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32])
        .collect();
    assert_eq!(landmarks(&b)[0], want);
    let e = column(&b, "embedding", |a: &FixedSizeListArray, i| {
        a.value(i)
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap()
            .values()
            .to_vec()
    })
    .remove(0);
    let golden_e: Vec<f64> = path["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let d = e
        .iter()
        .zip(&golden_e)
        .map(|(a, b)| (*a as f64 - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(d <= 1e-3, "L2 {d} from dlib's embedding");
    // The provenance names both stages and their models.
    let reader =
        kao_record::RecordReader::from_stream("out", std::io::Cursor::new(out.stdout)).unwrap();
    let stages: Vec<String> = reader
        .provenance()
        .unwrap()
        .into_iter()
        .map(|p| p.stage)
        .collect();
    assert_eq!(stages, ["kao-decode", "kao-detect", "kao-embed"]);
}

#[test]
fn detect_width_finds_faces_on_a_small_copy_and_cuts_native_patches() {
    let sample = fixture("sample.mp4");
    let (native, _) = detect(&sample, &["--fps", "1", "--max-frames", "2"], &[]);
    let (small, out) = detect(
        &sample,
        &["--fps", "1", "--max-frames", "2"],
        &["--detect-width", "320"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(f32s(&small, "x").len(), f32s(&native, "x").len());
    for (a, b) in f32s(&small, "x").iter().zip(f32s(&native, "x")) {
        assert!(
            (a - b).abs() < 12.0,
            "box x {a} on the small copy vs {b} native"
        );
    }
    // Patches are cut from the 1280×720 frame: as large as the native run's, give or take.
    let pw_small = column(&small, "patch_w", |a: &UInt32Array, i| a.value(i));
    let pw_native = column(&native, "patch_w", |a: &UInt32Array, i| a.value(i));
    for (a, b) in pw_small.iter().zip(&pw_native) {
        assert!((*a as i64 - *b as i64).abs() < 30, "patch width {a} vs {b}");
    }
    assert_well_formed(&small);
}

#[test]
fn options_filter_faces() {
    let sample = fixture("sample.mp4");
    let (b, _) = detect(&sample, &["--fps", "1"], &["--min-size", "5000"]);
    assert!(b.iter().all(|b| b.num_rows() == 0));
    let (b, _) = detect(&sample, &["--fps", "1"], &["--min-score", "0.99999"]);
    assert!(f32s(&b, "score").iter().all(|s| *s >= 0.99999));
    let (b, _) = detect(&sample, &["--fps", "1"], &["--max-faces", "0"]);
    assert!(b.iter().all(|b| b.num_rows() == 0));
}

#[test]
fn frames_without_faces_and_extreme_sizes() {
    // testsrc2 has no faces: no rows, success.
    let (b, out) = detect(&fixture("cfr.mp4"), &["--max-frames", "10"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(b.iter().all(|b| b.num_rows() == 0));
    for detector in ["blazeface-full", "mmod"] {
        let (b, out) = detect(&fixture("tiny.png"), &[], &["--detector", detector]);
        assert!(
            out.status.success(),
            "1×1 frame, {detector}: {}",
            stderr(&out)
        );
        assert!(b.iter().all(|b| b.num_rows() == 0));
    }
    // 8000×8000: BlazeFace letterboxes it; MMOD refuses it with a one-line error unless it is
    // detected on a smaller copy.
    let huge = fixture("huge.png");
    let (_, out) = detect(&huge, &[], &["--detector", "blazeface-full"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, out) = detect(&huge, &[], &["--detector", "mmod"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("too large") && err.contains("--detect-width") && err.lines().count() == 1,
        "{err}"
    );
    let (_, out) = detect(
        &huge,
        &[],
        &["--detector", "mmod", "--detect-width", "1000"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn face_records_are_not_frames() {
    let dir = tempfile::tempdir().unwrap();
    let faces = dir.path().join("faces.arrows");
    let (_, out) = detect(&fixture("photos/obama.jpg"), &[], &[]);
    std::fs::write(&faces, &out.stdout).unwrap();
    let out = run(kao("kao-detect").arg(&faces));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("needs column `pixels`, which kao-decode adds") && err.lines().count() == 1,
        "{err}"
    );
}
