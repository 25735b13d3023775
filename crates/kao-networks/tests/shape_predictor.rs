//! Parsing dlib's 5-point shape predictor file, and rejecting damaged copies cleanly.

mod support;

use kao_model_files::dat::DatError;
use kao_networks::ShapePredictor;
use kao_testdata::dat::{check_flips, check_truncations};

const SP5: &str = "shape_predictor_5_face_landmarks.dat";

#[test]
fn shape_predictor_counts() {
    let sp = ShapePredictor::load(support::model_path(SP5)).unwrap();
    assert_eq!(sp.num_parts(), 5);
    assert_eq!(sp.num_cascades(), 15);
    assert_eq!(sp.num_trees(), 15 * 500);
    assert!(sp.num_feature_pixels().iter().all(|&n| n == 800));
}

fn sp5(b: &[u8]) -> Result<(), DatError> {
    ShapePredictor::from_bytes(b).map(drop)
}

#[test]
fn truncated_shape_predictor_is_rejected() {
    check_truncations(SP5, sp5);
}

#[test]
fn flipped_shape_predictor_bytes_do_not_panic() {
    check_flips(SP5, 3, sp5);
}
