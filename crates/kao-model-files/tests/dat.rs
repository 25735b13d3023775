//! Parsing dlib's two DNN model files, and rejecting damaged copies cleanly (the shape
//! predictor's file: kao-networks' tests/shape_predictor.rs).

mod support;

use kao_model_files::dat::{AffineMode, DatError, DatErrorKind, Layer, MmodModel, ResnetModel};
use kao_testdata::dat::{check_flips, check_truncations};
use support::model_bytes;

const RESNET: &str = "dlib_face_recognition_resnet_model_v1.dat";
const MMOD: &str = "mmod_human_face_detector.dat";

#[test]
fn resnet_layers_and_counts() {
    let model = ResnetModel::load(support::model_path(RESNET)).unwrap();
    // models.md 1.2: 132 entries (130 layers/tags/skips + input + loss), 5,614,592 params.
    assert_eq!(model.layers.len() + 2, 132);
    assert_eq!(model.param_count(), 5_614_592);
    assert_eq!((model.input.rows, model.input.cols), (150, 150));
    let mean = model.input.mean;
    assert!(
        (mean[0] - 122.782).abs() < 1e-3
            && (mean[1] - 117.001).abs() < 1e-3
            && (mean[2] - 104.298).abs() < 1e-3,
        "{mean:?}"
    );
    assert_eq!(model.loss.margin, 0.04);
    assert_eq!(model.loss.dist_thresh, 0.6);

    let convs: Vec<_> = model
        .layers
        .iter()
        .filter_map(|l| if let Layer::Con(c) = l { Some(c) } else { None })
        .collect();
    assert_eq!(convs.len(), 29);
    let stem = convs[0];
    assert_eq!(
        (
            stem.num_filters,
            stem.in_channels,
            stem.kernel_rows,
            stem.stride_y,
            stem.pad_y
        ),
        (32, 3, 7, 2, 0)
    );
    assert_eq!(stem.bias.len(), 32);
    assert!(
        model
            .layers
            .iter()
            .all(|l| !matches!(l, Layer::Affine(a) if a.mode != AffineMode::Conv))
    );
    match &model.layers[..4] {
        [
            Layer::Con(_),
            Layer::Affine(_),
            Layer::Relu { disabled: false },
            Layer::MaxPool(p),
        ] => {
            assert_eq!((p.rows, p.stride_y, p.pad_y), (3, 2, 0))
        }
        other => panic!("unexpected stem {other:?}"),
    }
    let n = model.layers.len();
    match &model.layers[n - 2..] {
        [Layer::AvgPool(p), Layer::Fc(fc)] => {
            assert!(p.is_global());
            assert_eq!(
                (
                    fc.num_inputs,
                    fc.num_outputs,
                    fc.weights.len(),
                    fc.bias.len()
                ),
                (256, 128, 256 * 128, 0)
            );
        }
        other => panic!("unexpected head {other:?}"),
    }
    let count = |f: fn(&Layer) -> bool| model.layers.iter().filter(|l| f(l)).count();
    assert_eq!(count(|l| matches!(l, Layer::AddPrev { tag: 2 })), 4);
    assert_eq!(count(|l| matches!(l, Layer::AddPrev { tag: 1 })), 10);
    assert_eq!(count(|l| matches!(l, Layer::Skip(1))), 4);
}

#[test]
fn mmod_layers_and_options() {
    let model = MmodModel::load(support::model_path(MMOD)).unwrap();
    assert_eq!(model.layers.len(), 19);
    assert_eq!(model.param_count(), 181_141);
    assert_eq!(
        (model.input.pyramid_padding, model.input.outer_padding),
        (10, 11)
    );
    let window = &model.loss.detector_windows[..];
    assert_eq!(window.len(), 1);
    assert_eq!((window[0].width, window[0].height), (80, 80));
    assert!(
        (model.loss.overlaps_nms.iou_thresh - 0.33828).abs() < 1e-5,
        "{:?}",
        model.loss.overlaps_nms
    );
    assert_eq!(model.loss.overlaps_nms.percent_covered_thresh, 1.0);
    assert_eq!(
        (
            model.loss.overlaps_ignore.iou_thresh,
            model.loss.overlaps_ignore.percent_covered_thresh
        ),
        (0.5, 1.0)
    );
    assert_eq!(model.loss.truth_match_iou_threshold, 0.5);
    assert!(model.loss.assume_image_pyramid);
    assert_eq!(model.loss.bbr_lambda, None);
    let shapes: Vec<_> = model
        .layers
        .iter()
        .filter_map(|l| {
            if let Layer::Con(c) = l {
                Some((c.num_filters, c.kernel_rows, c.stride_y, c.pad_y))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        shapes,
        [
            (16, 5, 2, 0),
            (32, 5, 2, 0),
            (32, 5, 2, 0),
            (45, 5, 1, 2),
            (45, 5, 1, 2),
            (45, 5, 1, 2),
            (1, 9, 1, 4)
        ]
    );
    // bn_con2 records were folded into affine parameters (eps 1e-4), as the numpy
    // oracle computes them: g = γ/√(var + eps), b = β − g·mean in f32.
    let affines: Vec<_> = model
        .layers
        .iter()
        .filter_map(|l| {
            if let Layer::Affine(a) = l {
                Some(a)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(affines.len(), 6);
    let (first, last) = (affines[0], affines[5]);
    assert_eq!(first.gamma[..2], [86.1898, 97.33411]);
    assert_eq!(first.beta[..2], [0.043029428, -0.06756918]);
    assert_eq!(last.gamma[..2], [77.60152, 78.931725]);
    assert_eq!(last.beta[..2], [-0.52612853, 0.15243484]);
    let sum = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>();
    assert!((sum(&first.gamma) - 1483.3377532958984).abs() < 1e-9);
    assert!((sum(&last.beta) - 51.93785277381539).abs() < 1e-9);
}

fn resnet(b: &[u8]) -> Result<(), DatError> {
    ResnetModel::from_bytes(b).map(drop)
}
fn mmod(b: &[u8]) -> Result<(), DatError> {
    MmodModel::from_bytes(b).map(drop)
}

#[test]
fn truncated_resnet_is_rejected() {
    check_truncations(RESNET, resnet);
}

#[test]
fn truncated_mmod_is_rejected() {
    check_truncations(MMOD, mmod);
}

#[test]
fn flipped_resnet_bytes_do_not_panic() {
    check_flips(RESNET, 17, resnet);
}

#[test]
fn flipped_mmod_bytes_do_not_panic() {
    check_flips(MMOD, 16, mmod);
}

#[test]
fn errors_name_file_record_and_offset() {
    let dir = std::env::temp_dir().join(format!("kao-dat-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cut.dat");
    let bytes = model_bytes(MMOD);
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = MmodModel::load(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cut.dat") && text.contains("layer") && text.contains("at byte"),
        "{text}"
    );
    assert_eq!(
        err.file.as_deref(),
        Some(path.display().to_string().as_str())
    );
    let missing = ResnetModel::load(dir.join("missing.dat")).unwrap_err();
    assert!(matches!(missing.kind, DatErrorKind::Io(_)), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
