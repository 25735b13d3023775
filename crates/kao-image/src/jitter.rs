//! dlib's `jitter_image`: slightly rotated, zoomed, shifted and mirrored copies of a face chip,
//! whose mean embedding is what dlib's `num_jitters` computes for reference photos.
//!
//! The geometry follows dlib exactly (±3° rotation, object height 0.97–0.99999 of the crop,
//! ±2 % shift, 50 % left-right flip). The random numbers come from a seeded generator of our
//! own, so a seed gives the same copies on every run and machine, though not dlib's copies.

use crate::chip::{ChipDetails, DRect, extract_image_chip};
use crate::view::{RgbImage, RgbView};

const MAX_ROTATION_DEGREES: f64 = 3.0;
const MIN_OBJECT_HEIGHT: f64 = 0.97;
const MAX_OBJECT_HEIGHT: f64 = 0.99999;
const TRANSLATE_AMOUNT: f64 = 0.02;

/// A seeded source of jittered copies.
pub struct Jitter {
    rng: fastrand::Rng,
}

impl Jitter {
    /// A jitter generator; the same seed yields the same sequence of copies.
    pub fn new(seed: u64) -> Self {
        Jitter {
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    fn in_range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.rng.f64()
    }

    /// One jittered copy of a square `chip` (same size). Returns `None` for a chip that is
    /// not square or smaller than 8 pixels, which dlib rejects too.
    pub fn jitter(&mut self, chip: &RgbView<'_>) -> Option<RgbImage> {
        let n = chip.width();
        if n != chip.height() || n < 8 {
            return None;
        }
        // shrink_rect(get_rect(img), 3): inclusive corners 3 .. n-4.
        let (left, right) = (3i64, n as i64 - 4);
        let side = (right - left + 1) as f64;
        let shift_x = self.in_range(-TRANSLATE_AMOUNT, TRANSLATE_AMOUNT) * side;
        let shift_y = self.in_range(-TRANSLATE_AMOUNT, TRANSLATE_AMOUNT) * side;
        let scale = self.in_range(MIN_OBJECT_HEIGHT, MAX_OBJECT_HEIGHT);
        let box_size = (side / scale) as i64;
        let angle = self
            .in_range(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)
            .to_radians();
        // dlib: centered_rect(center(rect) + point(shift), box_size, box_size), integer corners.
        let centre = (left + right + 1) / 2;
        let cx = centre + shift_x.round() as i64;
        let cy = centre + shift_y.round() as i64;
        let (l, t) = (cx - box_size / 2, cy - box_size / 2);
        let rect = DRect {
            left: l as f64,
            top: t as f64,
            right: (l + box_size - 1) as f64,
            bottom: (t + box_size - 1) as f64,
        };
        let mut crop = extract_image_chip(
            chip,
            &ChipDetails {
                rect,
                angle,
                rows: n,
                cols: n,
            },
        );
        if self.rng.f64() > 0.5 {
            flip_left_right(&mut crop);
        }
        Some(crop)
    }
}

/// Mirrors an image left to right in place.
pub fn flip_left_right(image: &mut RgbImage) {
    let row_bytes = image.width * 3;
    for row in image.data.chunks_exact_mut(row_bytes) {
        let (mut a, mut b) = (0, image.width.saturating_sub(1));
        while a < b {
            for c in 0..3 {
                row.swap(a * 3 + c, b * 3 + c);
            }
            a += 1;
            b -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(n: usize) -> RgbImage {
        let mut img = RgbImage::new(n, n);
        for y in 0..n {
            for x in 0..n {
                let p = (y * n + x) * 3;
                img.data[p..p + 3].copy_from_slice(&[
                    (x * 255 / n) as u8,
                    (y * 255 / n) as u8,
                    128,
                ]);
            }
        }
        img
    }

    #[test]
    fn same_seed_same_copies_and_copies_stay_close() {
        let chip = gradient(150);
        let (mut a, mut b) = (Jitter::new(7), Jitter::new(7));
        let mut flips = 0;
        for _ in 0..20 {
            let (ja, jb) = (
                a.jitter(&chip.view()).unwrap(),
                b.jitter(&chip.view()).unwrap(),
            );
            assert_eq!(ja, jb);
            assert_eq!((ja.width, ja.height), (150, 150));
            // The centre pixel moves by at most a few pixels: compare its green (y) channel,
            // which mirroring leaves alone.
            let centre = (75 * 150 + 75) * 3 + 1;
            assert!((ja.data[centre] as i32 - chip.data[centre] as i32).abs() <= 12);
            let red = ja.data[(75 * 150 + 10) * 3];
            flips += usize::from(red > 128);
        }
        assert!(
            flips > 2 && flips < 18,
            "about half the copies are mirrored, got {flips}/20"
        );
        assert_ne!(
            Jitter::new(8).jitter(&chip.view()),
            Jitter::new(7).jitter(&chip.view())
        );
    }

    #[test]
    fn non_square_or_tiny_chips_are_refused() {
        let img = RgbImage::new(10, 12);
        assert!(Jitter::new(1).jitter(&img.view()).is_none());
        let img = RgbImage::new(4, 4);
        assert!(Jitter::new(1).jitter(&img.view()).is_none());
    }

    #[test]
    fn flip_mirrors_rows() {
        let mut img = RgbImage::new(3, 1);
        img.data = vec![1, 1, 1, 2, 2, 2, 3, 3, 3];
        flip_left_right(&mut img);
        assert_eq!(img.data, [3, 3, 3, 2, 2, 2, 1, 1, 1]);
    }
}
