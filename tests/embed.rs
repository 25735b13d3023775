//! End-to-end tests of kao-embed: face records from the golden astronaut photo, embedded and
//! compared with dlib's own descriptor.

use std::path::Path;

use arrow_array::{BinaryArray, FixedSizeListArray, Float32Array, RecordBatch, UInt32Array};
use kao_record::schema::{FaceRow, FrameMeta, face_batch, face_schema};
use kao_record::{Provenance, RecordWriter};
use kao_tests::*;

/// dlib's 5 landmarks on the astronaut (golden landmarks5.npy, from the HOG box).
const LANDMARKS: [f32; 10] = [
    255.0, 104.0, 238.0, 105.0, 195.0, 101.0, 212.0, 103.0, 224.0, 135.0,
];

/// The astronaut's RGB pixels, decoded by kao-decode (a PNG decodes exactly).
fn astronaut() -> (u32, u32, Vec<u8>) {
    let png = tests_dir().join("data/astronaut.png");
    let out = run(kao("kao-decode").arg(&png));
    assert!(out.status.success());
    let b = batches(&out.stdout);
    let w = column(&b, "width", |a: &UInt32Array, i| a.value(i))[0];
    let h = column(&b, "height", |a: &UInt32Array, i| a.value(i))[0];
    let px = column(&b, "pixels", |a: &BinaryArray, i| a.value(i).to_vec()).remove(0);
    (w, h, px)
}

/// Writes face records for the astronaut's face, one row per patch (x, y, w, h) of the frame.
fn face_records(path: &Path, patches: &[(i32, i32, u32, u32)]) {
    face_records_with(path, patches, |_| {})
}

/// [`face_records`] with each row changed by `edit` first.
fn face_records_with(path: &Path, patches: &[(i32, i32, u32, u32)], edit: impl Fn(&mut FaceRow)) {
    let (fw, fh, pixels) = astronaut();
    let schema = face_schema(&Provenance::new(
        "test-detect",
        "0",
        serde_json::Value::Null,
    ))
    .unwrap();
    let frame = FrameMeta {
        source: "astronaut.png".into(),
        frame_index: 0,
        pts: 0.0,
        width: fw,
        height: fh,
    };
    let rows: Vec<FaceRow> = patches
        .iter()
        .enumerate()
        .map(|(i, &(x, y, w, h))| {
            let mut patch = Vec::new();
            for row in y as u32..y as u32 + h {
                let start = ((row * fw + x as u32) * 3) as usize;
                patch.extend_from_slice(&pixels[start..start + w as usize * 3]);
            }
            let mut row = FaceRow {
                face_index: i as u32,
                x: 175.0,
                y: 76.0,
                w: 91.0,
                h: 91.0,
                score: 1.0,
                landmarks: LANDMARKS,
                patch,
                patch_x: x,
                patch_y: y,
                patch_w: w,
                patch_h: h,
                track_id: None,
            };
            edit(&mut row);
            row
        })
        .collect();
    let mut writer = RecordWriter::create(Some(path), &schema).unwrap();
    writer
        .write(&face_batch(&schema, &frame, rows).unwrap())
        .unwrap();
    writer.finish().unwrap();
}

fn embeddings(b: &[RecordBatch]) -> Vec<Vec<f32>> {
    column(b, "embedding", |a: &FixedSizeListArray, i| {
        a.value(i)
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap()
            .values()
            .to_vec()
    })
}

fn l2(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn embedding_from_native_patches_matches_dlib() {
    let dir = tempfile::tempdir().unwrap();
    let faces = dir.path().join("faces.arrows");
    // The whole frame, and a patch around the face that covers dlib's 150-px chip at padding 0.25.
    face_records(&faces, &[(0, 0, 512, 512), (120, 10, 240, 250)]);
    let golden = npy_f64(&kao_testdata::golden("embedding128.npy"));
    // Every CPU level this machine has (KAO_CPU), scalar included, then the default.
    let levels = kao_networks::CpuLevel::available();
    for level in levels.iter().map(|l| Some(l.name())).chain([None]) {
        let mut cmd = kao("kao-embed");
        if let Some(level) = level {
            cmd.env("KAO_CPU", level);
        } else {
            cmd.env_remove("KAO_CPU");
        }
        let out = run(cmd.arg(&faces));
        assert!(
            out.status.success(),
            "{level:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (i, e) in embeddings(&batches(&out.stdout)).iter().enumerate() {
            assert_eq!(e.len(), 128);
            let max = e
                .iter()
                .zip(&golden)
                .map(|(x, y)| (*x as f64 - y).abs())
                .fold(0.0, f64::max);
            assert!(
                max <= 1e-4,
                "KAO_CPU={level:?}, face {i}: max |Δ| {max} from dlib's descriptor"
            );
        }
    }
    let out = run(kao("kao-embed").arg(&faces));
    let b = batches(&out.stdout);
    // Every input column passes through; provenance names the model.
    let schema = b[0].schema();
    assert!(schema.field_with_name("patch").is_ok() && schema.field_with_name("landmarks").is_ok());
    let reader =
        kao_record::RecordReader::from_stream("out", std::io::Cursor::new(out.stdout)).unwrap();
    let history = reader.provenance().unwrap();
    assert_eq!(
        history.iter().map(|p| p.stage.as_str()).collect::<Vec<_>>(),
        ["test-detect", "kao-embed"]
    );
    let model = history[1].model.as_ref().unwrap();
    assert_eq!(model.name, "dlib-resnet");
    assert!(model.sha256.starts_with("55533b28"));
}

#[test]
fn jitters_are_deterministic_and_close_to_the_plain_chip() {
    let dir = tempfile::tempdir().unwrap();
    let faces = dir.path().join("faces.parquet");
    face_records(&faces, &[(0, 0, 512, 512)]);
    let jittered = |seed: &str| {
        let out = run(kao("kao-embed")
            .arg(&faces)
            .args(["--jitters", "5", "--seed", seed]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        embeddings(&batches(&out.stdout)).remove(0)
    };
    let (a, b, c) = (jittered("1"), jittered("1"), jittered("2"));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let golden = npy_f64(&kao_testdata::golden("embedding128.npy"));
    let d = l2(&a, &golden);
    assert!(
        d > 1e-4 && d < 0.15,
        "jittered mean is {d} from the plain descriptor"
    );
}

#[test]
fn wrong_input_and_missing_model_are_one_line_errors() {
    // Frame records lack the face columns.
    let png = tests_dir().join("data/astronaut.png");
    let frames = run(kao("kao-decode").arg(&png));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frames.arrows");
    std::fs::write(&path, &frames.stdout).unwrap();
    let out = run(kao("kao-embed").arg(&path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("needs column `patch`, which kao-detect adds") && err.lines().count() == 1,
        "{err}"
    );
    // No model in the model folder.
    let out = run(kao("kao-embed").arg(&path).env("KAO_MODELS", dir.path()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("python3 models/fetch.py") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn an_unknown_or_missing_cpu_level_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let faces = dir.path().join("faces.arrows");
    face_records(&faces, &[(0, 0, 512, 512)]);
    let png = tests_dir().join("data/astronaut.png");
    let frames = dir.path().join("frames.arrows");
    std::fs::write(&frames, run(kao("kao-decode").arg(&png)).stdout).unwrap();
    // A level no x86-64 CPU lacks entirely is not testable; one past what this CPU has is.
    let missing = ["avx2", "avx512"]
        .into_iter()
        .find(|&name| kao_networks::CpuLevel::named(name).is_err());
    for value in ["bogus"].into_iter().chain(missing) {
        for (stage, input, args) in [
            ("kao-embed", &faces, &[][..]),
            ("kao-detect", &frames, &[][..]),
            ("kao-detect", &frames, &["--detector", "mmod"][..]),
        ] {
            let out = run(kao(stage).arg(input).args(args).env("KAO_CPU", value));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stage} {value}: {err}");
            assert!(
                err.contains(&format!("KAO_CPU={value}: ")) && err.lines().count() == 1,
                "{stage} {value}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

#[test]
fn mmod_box_to_embedding_matches_dlibs_whole_path() {
    // dlib's own path from its MMOD box (upsample 0): shape predictor → chip → ResNet.
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tests_dir().join("data/dlib_mmod_path.json")).unwrap(),
    )
    .unwrap();
    let path = &golden["mmod_upsample0"];
    let b: Vec<i64> = path["box_ltrb"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let (w, h, pixels) = astronaut();
    let view = kao_image::RgbView::new(w as usize, h as usize, &pixels).unwrap();
    let sp5 = kao_networks::ShapePredictor::load(kao_model_files::locate("dlib-sp5").unwrap().path)
        .unwrap();
    let marks = sp5.predict(&view, kao_image::Rect::new(b[0], b[1], b[2], b[3]));
    let expected: Vec<(f32, f32)> = path["landmarks5"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32))
        .collect();
    assert_eq!(marks, expected);
    let chip = kao_image::get_face_chip(&view, &marks, 150, 0.25).unwrap();
    let embedder = kao_networks::ResNetEmbedder::load(
        kao_model_files::locate("dlib-resnet").unwrap().path,
        kao_networks::Device::cpu(),
    )
    .unwrap();
    let e = embedder.embed(&[chip.view()]).unwrap().remove(0);
    let golden_e: Vec<f64> = path["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let d = l2(&e, &golden_e);
    assert!(d <= 1e-3, "L2 {d} from dlib's embedding on the MMOD path");
}

#[test]
fn impossible_boxes_and_landmarks_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faces.arrows");
    type Edit = fn(&mut FaceRow);
    let cases: [(&str, Edit, &str); 5] = [
        ("nan x", |r| r.x = f32::NAN, "face box"),
        ("infinite w", |r| r.w = f32::INFINITY, "face box"),
        ("negative h", |r| r.h = -3.0, "face box"),
        ("nan landmark", |r| r.landmarks[3] = f32::NAN, "landmarks"),
        ("absurd landmark", |r| r.landmarks[0] = 1e30, "landmarks"),
    ];
    for (what, edit, expected) in cases {
        face_records_with(&path, &[(150, 40, 150, 150)], edit);
        let out = run(kao("kao-embed")
            .arg(&path)
            .arg("-o")
            .arg(dir.path().join("e.arrows")));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(
            err.contains("row 0") && err.contains(expected),
            "{what}: {err}"
        );
    }
}
