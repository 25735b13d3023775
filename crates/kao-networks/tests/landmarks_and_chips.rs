//! 5-point landmarks and aligned chips on the golden astronaut, against dlib's output.

mod support;

use kao_image::{
    Rect, RgbImage, RgbView, extract_image_chip, get_face_chip, get_face_chip_details,
};
use kao_networks::ShapePredictor;
use support::{golden_landmarks, read_rgb};

fn astronaut() -> RgbImage {
    let (width, height, data) = read_rgb("astronaut.npy");
    assert_eq!((width, height), (512, 512));
    RgbImage {
        width,
        height,
        data,
    }
}

/// The image upscaled `k` times by pixel repetition.
fn upscale(img: &RgbImage, k: usize) -> RgbImage {
    let mut out = RgbImage::new(img.width * k, img.height * k);
    for y in 0..out.height {
        for x in 0..out.width {
            let src = ((y / k) * img.width + x / k) * 3;
            out.data[(y * out.width + x) * 3..][..3].copy_from_slice(&img.data[src..src + 3]);
        }
    }
    out
}

/// Landmarks mapped to the centre of their k×k block (as in tests/data/gen_chips.py).
fn scaled_landmarks(k: usize) -> Vec<(f32, f32)> {
    let half = (k / 2) as f32;
    golden_landmarks()
        .iter()
        .map(|&(x, y)| (x * k as f32 + half, y * k as f32 + half))
        .collect()
}

fn assert_same_chip(chip: &RgbImage, golden: &str) {
    let (w, h, data) = read_rgb(golden);
    assert_eq!((chip.width, chip.height), (w, h), "{golden}: size");
    let differing = chip.data.iter().zip(&data).filter(|(a, b)| a != b).count();
    assert_eq!(
        differing,
        0,
        "{golden}: {differing} of {} values differ",
        data.len()
    );
}

#[test]
fn landmarks_match_dlib_exactly() {
    let sp =
        ShapePredictor::load(support::model_path("shape_predictor_5_face_landmarks.dat")).unwrap();
    let img = astronaut();
    // dlib_reference.json: the HOG detector's box (upsample 1) used for the golden landmarks.
    let points = sp.predict(&img.view(), Rect::new(175, 76, 265, 166));
    assert_eq!(points, golden_landmarks());
}

#[test]
fn predictor_handles_boxes_outside_the_image() {
    let sp =
        ShapePredictor::load(support::model_path("shape_predictor_5_face_landmarks.dat")).unwrap();
    let img = astronaut();
    for rect in [
        Rect::new(-500, -500, -400, -400),
        Rect::new(480, 480, 700, 700),
        Rect::new(10, 10, 10, 10),
    ] {
        assert_eq!(sp.predict(&img.view(), rect).len(), 5);
    }
}

#[test]
fn chip150_matches_dlib_bit_exactly() {
    let img = astronaut();
    let details = get_face_chip_details(&golden_landmarks(), 150, 0.25).unwrap();
    // dlib_reference.json chip_details.
    let r = details.rect;
    let expected = [
        164.8676576467088,
        65.56597282189165,
        284.80464622124623,
        185.50296139642907,
    ];
    for (got, want) in [r.left, r.top, r.right, r.bottom].iter().zip(expected) {
        assert!((got - want).abs() < 1e-9, "rect {r:?}");
    }
    assert!(
        (details.angle - 0.047944676324530935).abs() < 1e-12,
        "angle {}",
        details.angle
    );
    assert_same_chip(&extract_image_chip(&img.view(), &details), "chip150.npy");
}

#[test]
fn odd_sizes_and_other_paddings_match_dlib() {
    let img = astronaut();
    let view = img.view();
    assert_same_chip(
        &get_face_chip(&view, &golden_landmarks(), 151, 0.25).unwrap(),
        "chip151.npy",
    );
    assert_same_chip(
        &get_face_chip(&view, &golden_landmarks(), 75, 0.1).unwrap(),
        "chip75_pad01.npy",
    );
}

#[test]
fn large_faces_use_the_pyramid_and_match_dlib() {
    let img = astronaut();
    let chip1 = get_face_chip(&img.view(), &golden_landmarks(), 150, 0.25).unwrap();
    for (k, golden) in [(3, "chip150_x3.npy"), (6, "chip150_x6.npy")] {
        let big = upscale(&img, k);
        let chip = get_face_chip(&big.view(), &scaled_landmarks(k), 150, 0.25).unwrap();
        assert_same_chip(&chip, golden);
        // Same face, so close to the 1x chip (the pyramid only smooths it slightly).
        let mean_abs = chip
            .data
            .iter()
            .zip(&chip1.data)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .sum::<f64>()
            / chip.data.len() as f64;
        assert!(mean_abs < 6.0, "x{k}: mean |chip - chip1| = {mean_abs}");
    }
}

#[test]
fn strided_views_give_the_same_chip() {
    let img = astronaut();
    let stride = img.width * 3 + 7;
    let mut padded = vec![0u8; stride * img.height];
    for y in 0..img.height {
        padded[y * stride..][..img.width * 3]
            .copy_from_slice(&img.data[y * img.width * 3..][..img.width * 3]);
    }
    let view = RgbView::with_stride(img.width, img.height, stride, &padded).unwrap();
    assert_same_chip(
        &get_face_chip(&view, &golden_landmarks(), 150, 0.25).unwrap(),
        "chip150.npy",
    );
}

#[test]
fn faces_partly_outside_the_image_are_black_there() {
    let img = astronaut();
    let shifted: Vec<(f32, f32)> = golden_landmarks()
        .iter()
        .map(|&(x, y)| (x + 230.0, y - 100.0))
        .collect();
    let chip = get_face_chip(&img.view(), &shifted, 150, 0.25).unwrap();
    assert_eq!(chip.data.len(), 150 * 150 * 3);
    assert!(
        chip.data[..3].iter().all(|&v| v == 0),
        "top-left corner lies above the image"
    );
}
