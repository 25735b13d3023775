//! User-supplied ONNX embedders: kao's ONNX path against dlib's own descriptor and kao's
//! native ResNet (dlib's ResNet written out as ONNX by scripts/onnx_fixtures.py), against
//! ONNX Runtime's own outputs on a generated EfficientNetV2-style graph, one-line errors for
//! malformed graphs, the same matches as the native embedder end to end, and embeddings of
//! different models refused.

use std::path::{Path, PathBuf};

use arrow_array::{Array, StringArray};
use kao_image::RgbView;
use kao_networks::embedder::{Channels, Embedder, Preprocessing};
use kao_networks::onnx::OnnxEmbedder;
use kao_networks::resnet::DlibResnet;
use kao_record::{EmbeddingSpace, Metric};
use kao_tests::*;

/// The generated ONNX fixtures (`tests/fixtures/onnx/`).
fn onnx_fixture(name: &str) -> PathBuf {
    fixture(&format!("onnx/{name}"))
}

/// Committed ONNX test data (`tests/data/onnx/`).
fn onnx_data(name: &str) -> PathBuf {
    tests_dir().join("data/onnx").join(name)
}

/// dlib's ResNet input as kao's generic ONNX options say it (dlib_resnet.json): RGB,
/// `(v − mean) / 256`, a 150 px chip at padding 0.25, Euclidean.
fn dlib_preprocessing() -> Preprocessing {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(onnx_fixture("dlib_resnet.json")).unwrap()).unwrap();
    let three = |key: &str| {
        let v: Vec<f32> = json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        [v[0], v[1], v[2]]
    };
    assert_eq!(json["channels"], "rgb");
    Preprocessing {
        input_size: Some(json["input_size"].as_u64().unwrap() as usize),
        chip_padding: 0.25,
        pixel_scale: json["pixel_scale"].as_f64().unwrap() as f32,
        mean: three("mean"),
        std: three("std"),
        channels: Channels::Rgb,
        metric: Metric::Euclidean,
        l2_normalize: false,
    }
}

/// The golden 150×150 chip of the astronaut (kao-networks' test data).
fn golden_chip() -> (usize, usize, Vec<u8>) {
    kao_testdata::read_rgb(&kao_testdata::golden("chip150.npy"))
}

#[test]
fn dlib_resnet_as_onnx_matches_dlib_and_the_native_port() {
    let (w, h, rgb) = golden_chip();
    let chip = RgbView::new(w, h, &rgb).unwrap();
    let onnx = OnnxEmbedder::load(
        &onnx_fixture("dlib_resnet.onnx"),
        "onnx",
        &dlib_preprocessing(),
        kao_networks::Device::cpu(),
    )
    .unwrap();
    assert_eq!(onnx.space().dim, 128);
    assert_eq!(onnx.chip().size, 150);
    let from_onnx = onnx.embed(&[chip, chip, chip]).unwrap();
    let (_, dlib) = kao_testdata::read_f32(&kao_testdata::golden("embedding128.npy"));
    let diff = kao_testdata::max_abs_diff(&from_onnx[0], &dlib);
    assert!(diff < 1e-4, "ONNX vs dlib: max |Δ| {diff}");
    // Batching does not change a face's vector.
    assert_eq!(from_onnx[0], from_onnx[2]);
    let native = DlibResnet::load(kao_networks::Device::cpu()).unwrap();
    let from_native = native.embed(&[chip]).unwrap();
    let diff = kao_testdata::max_abs_diff(&from_onnx[0], &from_native[0]);
    assert!(diff < 1e-4, "ONNX vs native: max |Δ| {diff}");
}

/// ‖a − b‖ / ‖b‖.
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    let diff: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let norm: f32 = b.iter().map(|y| y * y).sum();
    (diff / norm).sqrt()
}

#[test]
fn efficientnet_style_graph_matches_onnx_runtime_at_batch_1_and_3() {
    let model = kao_networks::onnx::Model::load(
        &onnx_data("effnet.onnx"),
        kao_networks::onnx::Device::Cpu,
        2,
    )
    .unwrap();
    for batch in ["b1", "b3"] {
        let (shape, input) = kao_testdata::read_f32(&onnx_data(&format!("effnet_in_{batch}.npy")));
        let (want_shape, want) =
            kao_testdata::read_f32(&onnx_data(&format!("effnet_out_{batch}.npy")));
        let out = model.run(&input, &shape).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].shape, want_shape);
        let e = relative_error(&out[0].values, &want);
        assert!(e <= 1e-5, "{batch}: relative error {e}");
    }
    // As an embedder: a 112 px chip, 512 floats, cosine by default.
    let embedder = OnnxEmbedder::load(
        &onnx_data("effnet.onnx"),
        "onnx",
        &Preprocessing::onnx_defaults(),
        kao_networks::Device::cpu(),
    )
    .unwrap();
    assert_eq!(embedder.chip().size, 112);
    assert_eq!(embedder.space().dim, 512);
    assert_eq!(embedder.space().metric, Metric::Cosine);
}

#[test]
fn malformed_or_mismatched_models_are_one_line_errors() {
    let cases = [
        ("two_inputs.onnx", "one image input"),
        ("wrong_rank.onnx", "rank 4; a face embedder writes [N, D]"),
        ("rank3_input.onnx", "has rank 3"),
        ("truncated.onnx", "not a valid ONNX model"),
        ("not_onnx.onnx", "not a valid ONNX model"),
    ];
    for (file, expected) in cases {
        let path = onnx_fixture(file);
        let e = OnnxEmbedder::load(
            &path,
            "onnx",
            &Preprocessing::onnx_defaults(),
            kao_networks::Device::cpu(),
        )
        .err()
        .unwrap_or_else(|| panic!("{file} loaded"));
        let message = format!("{e:#}");
        assert!(message.contains(expected), "{file}: {message}");
        assert!(message.contains(file), "{file}: {message}");
        assert!(!message.contains('\n'), "{file}: {message}");
    }
    // A size that contradicts the graph's.
    let mut wrong_size = Preprocessing::onnx_defaults();
    wrong_size.input_size = Some(224);
    let e = OnnxEmbedder::load(
        &onnx_data("effnet.onnx"),
        "onnx",
        &wrong_size,
        kao_networks::Device::cpu(),
    )
    .err()
    .unwrap();
    assert!(format!("{e:#}").contains("not the 224×224"), "{e:#}");
}

/// The ONNX options that make `--embedder onnx:` dlib's ResNet.
fn onnx_dlib_args() -> Vec<String> {
    let p = dlib_preprocessing();
    let three = |v: [f32; 3]| v.map(|x| x.to_string()).join(",");
    vec![
        "--embedder".into(),
        format!("onnx:{}", onnx_fixture("dlib_resnet.onnx").display()),
        "--chip-padding".into(),
        "0.25".into(),
        "--pixel-scale".into(),
        p.pixel_scale.to_string(),
        "--mean".into(),
        three(p.mean),
        "--std".into(),
        three(p.std),
        "--metric".into(),
        "euclidean".into(),
        "--threshold".into(),
        "0.48".into(),
        "--link-distance".into(),
        "0.6".into(),
    ]
}

fn identities(manifest: &Path) -> Vec<Option<String>> {
    let batches = read_file(manifest);
    column::<StringArray, _>(&batches, "identity", |a, i| {
        a.is_valid(i).then(|| a.value(i).to_string())
    })
}

#[test]
fn extract_with_the_onnx_embedder_matches_like_the_native_one() {
    let dir = tempfile::tempdir().unwrap();
    let refs = dir.path().join("refs/obama");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::copy(fixture("photos/obama3.jpg"), refs.join("obama3.jpg")).unwrap();
    let run_extract = |out: &str, extra: &[String]| {
        let out = dir.path().join(out);
        let result = run(kao("kao-extract")
            .arg(fixture("sample.mp4"))
            .arg("--ref")
            .arg(dir.path().join("refs"))
            .args([
                "--ref-jitters",
                "1",
                "--every",
                "5",
                "--quiet",
                "--ref-cache",
            ])
            .arg(dir.path().join("cache"))
            .arg("--out")
            .arg(&out)
            .args(extra));
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        out.join("manifest.parquet")
    };
    let native = identities(&run_extract("native", &[]));
    let onnx_manifest = run_extract("onnx", &onnx_dlib_args());
    let onnx = identities(&onnx_manifest);
    assert_eq!(native, onnx);
    assert!(native.iter().any(|i| i.as_deref() == Some("obama")));
    // The manifest's embedding field names the ONNX model.
    let reader = kao_record::RecordReader::open(Some(&onnx_manifest)).unwrap();
    let space = EmbeddingSpace::of_schema(&reader.schema()).unwrap();
    assert_eq!(space.embedder, "onnx");
    assert_eq!(space.model, "dlib_resnet.onnx");
    assert_eq!(space.dim, 128);
}

/// kao-decode and kao-detect on a fixture photo: `dir/detected.arrows`.
fn detect_photo(dir: &Path) {
    let out = run(kao("kao-decode")
        .arg(fixture("photos/obama.jpg"))
        .arg("-o")
        .arg(dir.join("frames.arrows")));
    assert!(out.status.success());
    let out = run(kao("kao-detect")
        .arg(dir.join("frames.arrows"))
        .arg("-o")
        .arg(dir.join("detected.arrows")));
    assert!(out.status.success());
}

#[test]
fn faces_and_references_of_different_embedders_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let faces = dir.path().join("faces.arrows");
    detect_photo(dir.path());
    let out = run(kao("kao-embed")
        .arg(dir.path().join("detected.arrows"))
        .arg("-o")
        .arg(&faces));
    assert!(out.status.success());
    let out = run(kao("kao-match")
        .arg(&faces)
        .arg("--ref")
        .arg(fixture("photos/obama3.jpg"))
        .args(["--ref-jitters", "1", "--no-ref-cache"])
        .args(&onnx_dlib_args()[..14]) // without kao-track's --link-distance
        .arg("-o")
        .arg(dir.path().join("matched.arrows")));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("dlib-resnet") && stderr.contains("dlib_resnet.onnx"),
        "{stderr}"
    );
    assert!(!dir.path().join("matched.arrows").exists());
}

/// OpenCV Zoo's YuNet, committed with its licence (`tests/data/yunet/`).
fn yunet_model() -> PathBuf {
    tests_dir().join("data/yunet/face_detection_yunet_2026may.onnx")
}

#[test]
fn yunet_matches_an_independent_reference_within_a_pixel() {
    use kao_networks::detector::Detector;
    use kao_networks::onnx::Yunet;
    // scripts/yunet_ref.py: ONNX Runtime's outputs decoded by numpy on Pillow's pixels.
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tests_dir().join("data/yunet/reference.json")).unwrap(),
    )
    .unwrap();
    let yunet = Yunet::load(&yunet_model(), kao_networks::Device::cpu()).unwrap();
    assert_eq!(yunet.model().sha256, reference["sha256"].as_str().unwrap());
    let photos = reference["photos"].as_object().unwrap();
    assert_eq!(photos.len(), 6);
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    for (name, photo) in photos {
        let size = floats(&photo["image_size"]);
        let (w, h) = (size[0] as usize, size[1] as usize);
        // ffmpeg's JPEG decoder, not Pillow's: pixels may differ by a level or two.
        let rgb = ffmpeg_rgb(&fixture(&format!("photos/{name}")));
        let frame = RgbView::new(w, h, &rgb).unwrap();
        let mut found = yunet.detect(&frame).unwrap();
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        let expected = photo["faces"].as_array().unwrap();
        assert_eq!(found.len(), expected.len(), "{name}: {found:?}");
        for (face, want) in found.iter().zip(expected) {
            let [x, y, bw, bh] = floats(&want["box"])[..] else {
                panic!("{name}: box")
            };
            let [l, t, r, b] = face.bbox;
            for (got, want) in [l, t, r - l, b - t].iter().zip([x, y, bw, bh]) {
                assert!(
                    (got - want).abs() <= 1.0,
                    "{name}: box {:?} vs {x} {y} {bw} {bh}",
                    face.bbox
                );
            }
            let keypoints = floats(&want["keypoints"]);
            assert_eq!(face.keypoints.len(), 5);
            for (k, [kx, ky]) in face.keypoints.iter().enumerate() {
                assert!(
                    (kx - keypoints[2 * k]).abs() <= 1.0
                        && (ky - keypoints[2 * k + 1]).abs() <= 1.0,
                    "{name}: keypoint {k} ({kx}, {ky}) vs {:?}",
                    &keypoints[2 * k..2 * k + 2]
                );
            }
            let score = want["score"].as_f64().unwrap() as f32;
            assert!(
                (face.score - score).abs() < 0.01,
                "{name}: score {} vs {score}",
                face.score
            );
        }
    }
}

#[test]
fn yunet_graphs_are_checked_and_named_in_one_line() {
    use kao_networks::onnx::Yunet;
    for (path, expected) in [
        (
            onnx_data("effnet.onnx"),
            "not a YuNet graph: no output cls_8",
        ),
        (onnx_fixture("not_onnx.onnx"), "not a valid ONNX model"),
    ] {
        let e = Yunet::load(&path, kao_networks::Device::cpu())
            .err()
            .unwrap();
        let message = format!("{e:#}");
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn yunet_finds_the_samples_faces_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let refs = dir.path().join("refs/obama");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::copy(fixture("photos/obama3.jpg"), refs.join("obama3.jpg")).unwrap();
    let faces_per_frame = |detector: &str| {
        let out = dir.path().join(detector.split(':').next().unwrap());
        let result = run(kao("kao-extract")
            .arg(fixture("sample.mp4"))
            .arg("--ref")
            .arg(dir.path().join("refs"))
            .args([
                "--ref-jitters",
                "1",
                "--every",
                "5",
                "--quiet",
                "--no-ref-cache",
            ])
            .args(["--detector", detector])
            .arg("--out")
            .arg(&out));
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let manifest = read_file(&out.join("manifest.parquet"));
        let frames =
            column::<arrow_array::UInt64Array, _>(&manifest, "frame_index", |a, i| a.value(i));
        let mut counts = std::collections::BTreeMap::new();
        for f in frames {
            *counts.entry(f).or_insert(0) += 1;
        }
        let named = identities(&out.join("manifest.parquet"))
            .iter()
            .filter(|i| i.as_deref() == Some("obama"))
            .count();
        (counts, named)
    };
    let yunet = format!("yunet:{}", yunet_model().display());
    let (with_yunet, obama_yunet) = faces_per_frame(&yunet);
    let (with_blazeface, obama_blazeface) = faces_per_frame("blazeface-full");
    assert!(!with_yunet.is_empty());
    assert_eq!(with_yunet, with_blazeface);
    assert!(
        obama_yunet > 0 && obama_yunet == obama_blazeface,
        "{obama_yunet} vs {obama_blazeface}"
    );
}

#[test]
fn a_chip_wider_than_the_patches_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    detect_photo(dir.path());
    let embed = |padding: &str| {
        let mut args = onnx_dlib_args()[..10].to_vec(); // --embedder … --std
        args[3] = padding.into(); // --chip-padding
        let out = run(kao("kao-embed")
            .arg(dir.path().join("detected.arrows"))
            .args(&args)
            .arg("-o")
            .arg(dir.path().join("embedded.arrows")));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(!embed("0.25").contains("beyond the face patches"));
    let stderr = embed("0.4");
    assert!(
        stderr.contains("reaches beyond the face patches")
            && stderr.contains("--patch-padding 0.4"),
        "{stderr}"
    );
}
