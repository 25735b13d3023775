//! dlib's MMOD detector CNN in burn against dlib 20.0.1 and the verified numpy oracle
//! (`tests/data/`, copied from `shared/golden/astronaut/`): the score maps of the
//! astronaut and of a 1000×900 canvas with faces at 5 scales, the boxes end to end
//! (`dlib_reference.json`, `mmod_numpy_vs_dlib.json`), upsampling, and errors.

mod support;

use kao_image::RgbImage;
use kao_model_files::dat::Layer;
use kao_model_files::dat::MmodModel;
use kao_networks::mmod::processing::MmodInput;
use kao_networks::{CpuBackend, DetectError, Device, Error, Face, FaceDetector, MmodNet};
use support::{max_abs_diff, model_path, read_f32, read_rgb};

const MODEL: &str = "mmod_human_face_detector.dat";

fn image(name: &str) -> RgbImage {
    let (width, height, data) = read_rgb(name);
    RgbImage {
        width,
        height,
        data,
    }
}

/// Compares the score map of `image` with a golden `(rows, cols)` map.
fn check_scores(image_file: &str, golden: &str) {
    let model = MmodModel::load(model_path(MODEL)).unwrap();
    let net = MmodNet::<CpuBackend>::from_model(&model, &Default::default()).unwrap();
    let canvas = MmodInput::new(&image(image_file).view(), &model.input).unwrap();
    let (scores, rows, cols) = net.scores(&canvas);
    let (shape, want) = read_f32(golden);
    assert_eq!(shape, [rows, cols], "{golden}: shape");
    let diff = max_abs_diff(&scores, &want);
    eprintln!("{golden}: {rows}x{cols}, max |diff| {diff:.2e}");
    assert!(diff <= 1e-4, "{golden}: max |diff| {diff}");
}

#[test]
fn astronaut_score_map_matches_numpy() {
    check_scores("astronaut.npy", "mmod_scoremap_astronaut.npy");
}

#[test]
fn multiscale_canvas_score_map_matches_numpy() {
    check_scores("mmod_multiscale_canvas.npy", "mmod_scoremap_canvas.npy");
}

/// Checks detections against dlib's `(confidence, [l, t, r, b])`.
fn check_faces(faces: &[Face], want: &[(f32, [f32; 4])]) {
    assert_eq!(faces.len(), want.len(), "{faces:?}");
    for (f, (score, bbox)) in faces.iter().zip(want) {
        assert_eq!(f.bbox, *bbox, "{faces:?}");
        assert!((f.score - score).abs() < 1e-4, "{f:?} vs {score}");
        assert!(f.keypoints.is_none());
    }
}

#[test]
fn astronaut_boxes_equal_dlib() {
    let det = FaceDetector::mmod(model_path(MODEL), Device::cpu(), 0).unwrap();
    let faces = det.detect(&image("astronaut.npy").view()).unwrap();
    eprintln!("astronaut: {faces:?}");
    // dlib_reference.json, cnn_upsample0.
    check_faces(&faces, &[(1.062_512_4, [168.0, 69.0, 263.0, 164.0])]);
}

#[test]
fn astronaut_upsampled_once_equals_dlib() {
    let det = FaceDetector::mmod(model_path(MODEL), Device::cpu(), 1).unwrap();
    let faces = det.detect(&image("astronaut.npy").view()).unwrap();
    eprintln!("astronaut, upsample 1: {faces:?}");
    // dlib_reference.json, cnn_upsample1.
    check_faces(&faces, &[(1.067_305_3, [165.0, 73.0, 263.0, 171.0])]);
}

#[test]
fn multiscale_canvas_boxes_equal_dlib() {
    let det = FaceDetector::mmod(model_path(MODEL), Device::cpu(), 0).unwrap();
    let faces = det
        .detect(&image("mmod_multiscale_canvas.npy").view())
        .unwrap();
    // mmod_numpy_vs_dlib.json, canvas, dlib.
    check_faces(
        &faces,
        &[
            (1.073_368_3, [168.0, 65.0, 263.0, 159.0]),
            (1.071_489_6, [59.0, 616.0, 222.0, 780.0]),
            (1.062_164_8, [588.0, 545.0, 724.0, 681.0]),
            (1.057_302, [626.0, 115.0, 861.0, 351.0]),
            (1.049_502_6, [828.0, 524.0, 907.0, 603.0]),
        ],
    );
}

#[test]
fn oversized_and_tiny_frames() {
    let det = FaceDetector::mmod(model_path(MODEL), Device::cpu(), 0).unwrap();
    let big = RgbImage::new(2049, 2048);
    let err = det.detect(&big.view()).unwrap_err();
    assert!(matches!(err, DetectError::Frame(_)), "{err}");
    assert!(err.to_string().contains("too large"), "{err}");
    // Upsampling counts: 1500² doubles past the limit.
    let det_up = FaceDetector::mmod(model_path(MODEL), Device::cpu(), 1).unwrap();
    let err = det_up
        .detect(&RgbImage::new(1500, 1500).view())
        .unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    // Smaller than the network's receptive field: no faces, no error.
    assert!(det.detect(&RgbImage::new(3, 3).view()).unwrap().is_empty());
}

#[test]
fn wrong_layers_are_load_errors() {
    let model = MmodModel::load(model_path(MODEL)).unwrap();
    let build = |m: &MmodModel| MmodNet::<CpuBackend>::from_model(m, &Default::default());
    let mut m = model.clone();
    m.layers.remove(2); // the first relu
    assert!(matches!(
        build(&m),
        Err(Error::Layout { index: Some(2), .. })
    ));
    let mut m = model.clone();
    let Layer::Con(c) = &mut m.layers[3] else {
        panic!("layer 3 is not a con")
    };
    c.stride_x = 1;
    assert!(matches!(
        build(&m),
        Err(Error::Layout { index: Some(3), .. })
    ));
    let mut m = model;
    m.layers.pop();
    assert!(matches!(
        build(&m),
        Err(Error::Layout {
            index: Some(18),
            ..
        })
    ));
}
