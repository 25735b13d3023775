//! BlazeFace, on burn and on the native executor, against the TFLite runtime
//! (`tests/data/`, copied from `shared/golden/astronaut/`, made by
//! `reference/blazeface_ref.py`): raw outputs on the golden input tensors, the end-to-end
//! detections on the astronaut, batches, and load-time errors for graphs the port does
//! not support. The native executor's golden tests run at every [`CpuLevel`] this CPU
//! has, scalar included.

mod support;

use kao_image::RgbImage;
use kao_model_files::tflite::{Model, OpKind, OpOptions};
use kao_networks::{
    BlazeFaceError, BlazeFaceNet, CpuBackend, CpuLevel, Device, FaceDetector, NativeBlazeFace,
    Range,
};
use support::{max_abs_diff, model_path, read_f32, read_rgb};

const SHORT: &str = "face_detection_short_range";
const FULL: &str = "face_detection_full_range";

fn model(key: &str) -> Model {
    Model::load(model_path(&format!("{key}.tflite"))).unwrap()
}

/// Largest `|got − want| / max(1, |want|)`: absolute below 1, relative above (the
/// regressors reach a few hundred).
fn max_scaled_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// Runs the net (burn, or the native executor at `native`'s level) on the golden input
/// and compares both raw outputs; returns the diffs.
fn check_raw(key: &str, anchors: usize, native: Option<CpuLevel>) -> (f32, f32) {
    let (shape, input) = read_f32(&format!("{key}_input.npy"));
    let (reg, cls) = if let Some(level) = native {
        let net = NativeBlazeFace::from_model_at(&model(key), level).unwrap();
        assert_eq!(net.cpu_level(), level);
        assert_eq!(net.anchors(), anchors);
        let [h, w] = net.input_size();
        assert_eq!(shape, [h, w, 3]);
        net.run(&input).unwrap()
    } else {
        let net = BlazeFaceNet::<CpuBackend>::from_model(&model(key), &Default::default()).unwrap();
        assert_eq!(net.anchors(), anchors);
        let [h, w] = net.input_size();
        assert_eq!(shape, [h, w, 3]);
        net.run(&input).unwrap()
    };
    let (rs, want_reg) = read_f32(&format!("{key}_regressors.npy"));
    let (cs, want_cls) = read_f32(&format!("{key}_classificators.npy"));
    assert_eq!(rs.iter().product::<usize>(), anchors * 16);
    assert_eq!(cs.iter().product::<usize>(), anchors);
    let d_reg = max_scaled_diff(&reg, &want_reg);
    let d_cls = max_scaled_diff(&cls, &want_cls);
    eprintln!(
        "{key} ({}): max scaled |diff| regressors {d_reg:.2e} (abs {:.2e}), classificators {d_cls:.2e} (abs {:.2e})",
        native.map_or("burn".to_string(), |l| format!("native {l}")),
        max_abs_diff(&reg, &want_reg),
        max_abs_diff(&cls, &want_cls)
    );
    assert!(d_reg <= 1e-4, "{key}: regressors {d_reg}");
    assert!(d_cls <= 1e-4, "{key}: classificators {d_cls}");
    (d_reg, d_cls)
}

#[test]
fn short_range_raw_outputs_match_tflite() {
    check_raw(SHORT, 896, None);
}

#[test]
fn full_range_raw_outputs_match_tflite() {
    check_raw(FULL, 2304, None);
}

#[test]
fn native_short_range_raw_outputs_match_tflite() {
    for level in CpuLevel::available() {
        check_raw(SHORT, 896, Some(level));
    }
}

#[test]
fn native_full_range_raw_outputs_match_tflite() {
    for level in CpuLevel::available() {
        check_raw(FULL, 2304, Some(level));
    }
}

/// Each image of a batch of two (the golden input and its negation) gets the outputs it
/// gets alone; a partial image is an error.
fn check_batch(run: impl Fn(&[f32]) -> Result<(Vec<f32>, Vec<f32>), BlazeFaceError>) {
    let (_, input) = read_f32(&format!("{SHORT}_input.npy"));
    let flipped: Vec<f32> = input.iter().map(|v| -v).collect();
    let (reg1, cls1) = run(&input).unwrap();
    let (reg2, cls2) = run(&flipped).unwrap();
    let (reg, cls) = run(&[input.clone(), flipped].concat()).unwrap();
    assert_eq!(reg.len(), 2 * reg1.len());
    assert!(max_abs_diff(&reg[..reg1.len()], &reg1) < 1e-5);
    assert!(max_abs_diff(&reg[reg1.len()..], &reg2) < 1e-5);
    assert!(max_abs_diff(&cls, &[cls1, cls2].concat()) < 1e-5);
    assert!(matches!(
        run(&input[1..]),
        Err(BlazeFaceError::InputSize { .. })
    ));
}

#[test]
fn a_batch_gives_each_image_its_own_outputs() {
    let net = BlazeFaceNet::<CpuBackend>::from_model(&model(SHORT), &Default::default()).unwrap();
    check_batch(|x| net.run(x));
    for level in CpuLevel::available() {
        let native = NativeBlazeFace::from_model_at(&model(SHORT), level).unwrap();
        check_batch(|x| native.run(x));
    }
}

#[test]
fn native_runs_side_by_side_agree_with_burn() {
    // Runs of one network on two threads at once.
    let (_, input) = read_f32(&format!("{FULL}_input.npy"));
    let burn = BlazeFaceNet::<CpuBackend>::from_model(&model(FULL), &Default::default())
        .unwrap()
        .run(&input)
        .unwrap();
    let native = NativeBlazeFace::from_model(&model(FULL)).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (net, input, burn) = (&native, &input, &burn);
            scope.spawn(move || {
                for _ in 0..3 {
                    let (reg, cls) = net.run(input).unwrap();
                    assert!(max_abs_diff(&reg, &burn.0) < 1e-3);
                    assert!(max_abs_diff(&cls, &burn.1) < 1e-4);
                }
            });
        }
    });
}

/// `blazeface_reference.json` `detections_pixels` (TFLite on the PIL-resized astronaut):
/// score, box, keypoints.
type Reference = (f32, [f32; 4], [[f32; 2]; 6]);

const SHORT_REF: Reference = (
    0.920_907_5,
    [177.282_78, 80.559_04, 271.846_87, 175.123_42],
    [
        [203.292_56, 100.930_81],
        [247.370_66, 108.198_12],
        [221.578_3, 124.858_13],
        [218.691_68, 145.671_11],
        [177.372_83, 109.443_04],
        [270.598_16, 124.215_98],
    ],
);

const FULL_REF: Reference = (
    0.939_784_94,
    [173.369_1, 67.991_41, 279.752_87, 174.371_17],
    [
        [205.336_58, 101.922_87],
        [246.509_84, 105.157_06],
        [224.297_49, 130.049_24],
        [223.179_3, 148.067_08],
        [182.122_67, 109.082_18],
        [269.984_4, 115.011_09],
    ],
);

fn check_detector(key: &str, range: Range, reference: Reference) {
    let (w, h, data) = read_rgb("astronaut.npy");
    let image = RgbImage {
        width: w,
        height: h,
        data,
    };
    let path = model_path(&format!("{key}.tflite"));
    let burn = FaceDetector::blazeface_on_burn(&path, range, Device::cpu()).unwrap();
    let on_burn = burn.detect(&image.view()).unwrap();
    for level in CpuLevel::available() {
        let native = FaceDetector::blazeface_at(&path, range, level).unwrap();
        check_faces(
            key,
            level,
            &native.detect(&image.view()).unwrap(),
            &on_burn,
            reference,
        );
    }
    let native = FaceDetector::blazeface(&path, range, Device::cpu()).unwrap();
    let faces = native.detect(&image.view()).unwrap();
    check_faces(key, CpuLevel::detect(), &faces, &on_burn, reference);
}

/// The native detector's faces (at `level`) against the reference and burn's.
fn check_faces(
    key: &str,
    level: CpuLevel,
    faces: &[kao_networks::Face],
    on_burn: &[kao_networks::Face],
    (score, bbox, kps): Reference,
) {
    let key = format!("{key} ({level})");
    assert_eq!(on_burn.len(), faces.len(), "{key}: {on_burn:?}");
    assert_eq!(faces.len(), 1, "{key}: {faces:?}");
    let f = &faces[0];
    let box_diff = max_abs_diff(&f.bbox, &bbox);
    let kp_diff = max_abs_diff(f.keypoints.unwrap().as_flattened(), kps.as_flattened());
    eprintln!(
        "{key}: score {} (ref {score}), box max |diff| {box_diff:.2e} px, keypoints {kp_diff:.2e} px",
        f.score
    );
    // The reference ran on PIL's resize; ours rounds after the vertical pass first, so
    // some input values are one level off (the raw outputs on the golden input tensors are
    // held to 1e-4 above): scores within 1e-3, points within a quarter pixel.
    assert!((f.score - score).abs() < 1e-3, "{key}: score {}", f.score);
    assert!(box_diff < 0.25, "{key}: box {:?}", f.bbox);
    assert!(kp_diff < 0.25, "{key}: keypoints {:?}", f.keypoints);
    let b = &on_burn[0];
    assert!(
        (b.score - score).abs() < 1e-3,
        "{key}: burn score {}",
        b.score
    );
    assert!(
        max_abs_diff(&b.bbox, &f.bbox) < 0.01,
        "{key}: burn box {:?}",
        b.bbox
    );
    assert!(
        max_abs_diff(&b.bbox, &bbox) < 0.25,
        "{key}: burn box {:?}",
        b.bbox
    );
}

#[test]
fn short_range_detector_finds_the_reference_face() {
    check_detector(SHORT, Range::Short, SHORT_REF);
}

#[test]
fn full_range_detector_finds_the_reference_face() {
    check_detector(FULL, Range::Full, FULL_REF);
}

#[test]
fn mismatched_range_is_an_error() {
    let err = FaceDetector::blazeface(
        model_path(&format!("{FULL}.tflite")),
        Range::Short,
        Device::cpu(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("192"), "{err}");
}

#[test]
fn unsupported_graphs_are_load_errors() {
    let build = |m: &Model| {
        // Both executors read the same graph, so they refuse the same files.
        let native = NativeBlazeFace::from_model(m).map(drop);
        let burn = BlazeFaceNet::<CpuBackend>::from_model(m, &Default::default()).map(drop);
        assert_eq!(native.is_ok(), burn.is_ok());
        burn
    };
    let base = model(SHORT);
    let first_compute =
        |m: &Model, kind: OpKind| m.operators.iter().position(|op| op.kind == kind).unwrap();

    // An op kind the port does not implement.
    let mut m = base.clone();
    let relu = first_compute(&m, OpKind::Relu);
    m.operators[relu].kind = OpKind::Logistic;
    let err = build(&m).unwrap_err();
    assert!(
        matches!(
            err,
            BlazeFaceError::Op {
                kind: OpKind::Logistic,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Logistic"), "{err}");

    // A conv option the port does not implement.
    let mut m = base.clone();
    let conv = first_compute(&m, OpKind::Conv2d);
    let OpOptions::Conv(o) = &mut m.operators[conv].options else {
        panic!("conv without options")
    };
    o.dilation_h = 2;
    let err = build(&m).unwrap_err();
    assert!(err.to_string().contains("dilation"), "{err}");

    // A declared shape that the ops do not produce.
    let mut m = base.clone();
    let out = m.operators[conv].outputs[0];
    m.tensors[out].shape[3] += 1;
    let err = build(&m).unwrap_err();
    assert!(err.to_string().contains("declares"), "{err}");

    // Outputs that are not BlazeFace's.
    let mut m = base;
    m.outputs.pop();
    assert!(matches!(build(&m), Err(BlazeFaceError::Graph(_))));
}
