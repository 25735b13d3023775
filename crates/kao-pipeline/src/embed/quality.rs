//! Quality measures of a face: sharpness and exposure of its aligned chip, and head pose
//! estimated from dlib's 5 landmarks; and a perceptual hash for near-duplicate crops.

use kao_image::RgbImage;

/// dlib's 5-point template, in chip units: frontal nose-below-eyes distance over the eye distance.
const FRONTAL_NOSE_DROP: f32 = 0.7736;
/// Depth of the nose base in front of the eyes, over the eye distance (a typical adult face):
/// how far the nose moves in the image when the head turns.
const NOSE_DEPTH: f32 = 0.5;

/// What a face looks like, for choosing crops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quality {
    /// Variance of the Laplacian of the chip's grey levels (higher is sharper).
    pub sharpness: f32,
    /// Mean grey level of the chip, 0–255.
    pub exposure: f32,
    /// Head turn in degrees, estimated from the landmarks (positive: towards the image's left).
    pub yaw: f32,
    /// Head tilt up (positive) or down in degrees, estimated from the landmarks.
    pub pitch: f32,
    /// In-plane rotation of the eye line in degrees (positive: clockwise in the image).
    pub roll: f32,
}

/// Grey levels (ITU-R BT.601 luma) of an RGB image.
fn grey(image: &RgbImage) -> Vec<f32> {
    image
        .data
        .chunks_exact(3)
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect()
}

/// Measures a face from its aligned chip and its 5 landmarks (any coordinates; dlib's order:
/// the eye on the image's right, outer then inner corner, the other eye likewise, the nose base).
pub fn measure(chip: &RgbImage, landmarks: &[(f32, f32)]) -> Quality {
    let (w, h) = (chip.width, chip.height);
    let g = grey(chip);
    let exposure = if g.is_empty() {
        0.0
    } else {
        g.iter().sum::<f32>() / g.len() as f32
    };
    let mut laplacian = Vec::with_capacity(w.saturating_sub(2) * h.saturating_sub(2));
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let at = y * w + x;
            laplacian.push(g[at - 1] + g[at + 1] + g[at - w] + g[at + w] - 4.0 * g[at]);
        }
    }
    let sharpness = if laplacian.is_empty() {
        0.0
    } else {
        let mean = laplacian.iter().sum::<f32>() / laplacian.len() as f32;
        laplacian
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum::<f32>()
            / laplacian.len() as f32
    };
    let (yaw, pitch, roll) = pose(landmarks);
    Quality {
        sharpness,
        exposure,
        yaw,
        pitch,
        roll,
    }
}

/// Yaw, pitch and roll in degrees from dlib's 5 landmarks (0, 0, 0 when they are degenerate).
pub fn pose(landmarks: &[(f32, f32)]) -> (f32, f32, f32) {
    if landmarks.len() < 5 {
        return (0.0, 0.0, 0.0);
    }
    let mid = |a: (f32, f32), b: (f32, f32)| ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
    let right = mid(landmarks[0], landmarks[1]);
    let left = mid(landmarks[2], landmarks[3]);
    let nose = landmarks[4];
    let (ex, ey) = (right.0 - left.0, right.1 - left.1);
    let d = (ex * ex + ey * ey).sqrt();
    if d.is_nan() || d <= 1e-3 {
        return (0.0, 0.0, 0.0);
    }
    let (ux, uy) = (ex / d, ey / d);
    let centre = mid(left, right);
    let (nx, ny) = (nose.0 - centre.0, nose.1 - centre.1);
    // Along the eye line (towards the image's right) and below it, in eye distances.
    let along = (nx * ux + ny * uy) / d;
    let below = (-nx * uy + ny * ux) / d;
    let angle = |s: f32| (s / NOSE_DEPTH).clamp(-1.0, 1.0).asin().to_degrees();
    (
        angle(-along),
        angle(FRONTAL_NOSE_DROP - below),
        uy.atan2(ux).to_degrees(),
    )
}

/// A 64-bit difference hash of an image: its grey levels shrunk to 9×8 by area averaging,
/// one bit per horizontal neighbour pair. Near-identical crops differ in few bits.
pub fn dhash(image: &RgbImage) -> u64 {
    let (w, h) = (image.width, image.height);
    if w == 0 || h == 0 {
        return 0;
    }
    let g = grey(image);
    let mut cells = [[0f32; 9]; 8];
    for (cy, row) in cells.iter_mut().enumerate() {
        let (y0, y1) = (cy * h / 8, ((cy + 1) * h / 8).max(cy * h / 8 + 1).min(h));
        for (cx, cell) in row.iter_mut().enumerate() {
            let (x0, x1) = (cx * w / 9, ((cx + 1) * w / 9).max(cx * w / 9 + 1).min(w));
            let mut sum = 0.0;
            for y in y0..y1 {
                sum += g[y * w + x0..y * w + x1].iter().sum::<f32>();
            }
            *cell = sum / ((y1 - y0) * (x1 - x0)).max(1) as f32;
        }
    }
    let mut hash = 0u64;
    for row in &cells {
        for x in 0..8 {
            hash = (hash << 1) | u64::from(row[x] < row[x + 1]);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dlib's template scaled to a 100-px face at (100, 100).
    fn frontal() -> Vec<(f32, f32)> {
        [
            [0.8596, 0.2135],
            [0.6461, 0.2290],
            [0.1206, 0.2137],
            [0.3341, 0.2291],
            [0.4901, 0.6278],
        ]
        .iter()
        .map(|p| (100.0 + 100.0 * p[0], 100.0 + 100.0 * p[1]))
        .collect()
    }

    #[test]
    fn a_frontal_face_is_level_and_a_turned_one_is_not() {
        let (yaw, pitch, roll) = pose(&frontal());
        assert!(
            yaw.abs() < 1.0 && pitch.abs() < 1.0 && roll.abs() < 1.0,
            "{yaw} {pitch} {roll}"
        );
        // The nose moved a quarter of the eye distance towards the image's left: ~30°.
        let mut turned = frontal();
        turned[4].0 -= 0.25 * 52.55;
        let (yaw, _, _) = pose(&turned);
        assert!((yaw - 30.0).abs() < 2.0, "{yaw}");
        // Rotated 10° clockwise in the image.
        let (s, c) = 10f32.to_radians().sin_cos();
        let rotated: Vec<(f32, f32)> = frontal()
            .iter()
            .map(|&(x, y)| (c * x - s * y, s * x + c * y))
            .collect();
        let (yaw, pitch, roll) = pose(&rotated);
        assert!(
            (roll - 10.0).abs() < 0.5 && yaw.abs() < 1.0 && pitch.abs() < 1.0,
            "{yaw} {pitch} {roll}"
        );
        assert_eq!(pose(&[(1.0, 1.0); 5]), (0.0, 0.0, 0.0));
    }

    fn image(f: impl Fn(usize, usize) -> u8) -> RgbImage {
        let mut img = RgbImage::new(32, 32);
        for y in 0..32 {
            for x in 0..32 {
                let v = f(x, y);
                img.data[(y * 32 + x) * 3..(y * 32 + x) * 3 + 3].copy_from_slice(&[v, v, v]);
            }
        }
        img
    }

    #[test]
    fn sharp_edges_score_higher_than_flat_and_exposure_is_the_mean() {
        let flat = measure(&image(|_, _| 100), &frontal());
        let edges = measure(
            &image(|x, y| if (x / 4 + y / 4) % 2 == 0 { 0 } else { 255 }),
            &frontal(),
        );
        assert_eq!(flat.sharpness, 0.0);
        assert!((flat.exposure - 100.0).abs() < 0.01);
        assert!(edges.sharpness > 1000.0);
    }

    #[test]
    fn similar_images_hash_close_and_different_ones_far() {
        let a = image(|x, y| (x * 8 + y) as u8);
        let b = image(|x, y| (x * 8 + y) as u8 + u8::from(x % 7 == 0));
        let c = image(|x, y| 255 - (x * 8 + y) as u8);
        assert!((dhash(&a) ^ dhash(&b)).count_ones() <= 4);
        assert!((dhash(&a) ^ dhash(&c)).count_ones() >= 32);
    }
}
