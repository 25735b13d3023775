//! Display orientation: turning frames the way players show them.
//!
//! Phones store portrait video in the sensor's landscape orientation and say how to turn it
//! in a display matrix (MP4/MOV `tkhd`, or a JPEG's EXIF Orientation, which FFmpeg exports
//! as the same matrix). Players and the `ffmpeg` command turn such frames upright; faces on
//! a sideways frame are lost to every detector. [`Orientation::from_display_matrix`] reads
//! the matrix the way the `ffmpeg` command's autorotation does (quarter turns and mirrors;
//! other angles are left as stored), and [`Orientation::apply`] turns packed RGB24 pixels.

/// How to turn a stored frame for display: output pixel (x, y) reads the stored pixel
/// at (a, b) = `transpose ? (y, x) : (x, y)`, mirrored by `flip_x` (a → width − 1 − a) and
/// `flip_y` (b → height − 1 − b).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Orientation {
    /// Rows become columns: the output is `height × width`.
    pub transpose: bool,
    /// Mirror the stored frame's x axis.
    pub flip_x: bool,
    /// Mirror the stored frame's y axis.
    pub flip_y: bool,
}

impl Orientation {
    /// Frames shown as stored.
    pub const UPRIGHT: Orientation = Orientation {
        transpose: false,
        flip_x: false,
        flip_y: false,
    };
    /// A quarter turn clockwise (FFmpeg's `transpose=clock`).
    pub const CLOCKWISE: Orientation = Orientation {
        transpose: true,
        flip_x: false,
        flip_y: true,
    };
    /// A quarter turn counterclockwise (`transpose=cclock`).
    pub const COUNTERCLOCKWISE: Orientation = Orientation {
        transpose: true,
        flip_x: true,
        flip_y: false,
    };
    /// A half turn.
    pub const HALF_TURN: Orientation = Orientation {
        transpose: false,
        flip_x: true,
        flip_y: true,
    };

    /// The orientation a display matrix asks for (FFmpeg's layout: nine `i32`, 16.16 fixed
    /// point except the last column), as the `ffmpeg` command's autorotation reads it:
    /// the clockwise angle atan2(m₁, m₀), snapped to a quarter turn within 1°, with the mirrors the
    /// signs of m₀, m₃ and m₄ imply. `None` for an angle that is no quarter turn (such
    /// frames stay as stored) or a degenerate matrix.
    pub fn from_display_matrix(m: &[i32; 9]) -> Option<Orientation> {
        let [m0, m1, m3, m4] = [m[0], m[1], m[3], m[4]].map(f64::from);
        if m0.hypot(m3) == 0.0 || m1.hypot(m4) == 0.0 {
            return None;
        }
        let scale0 = m0.hypot(m3);
        let scale1 = m1.hypot(m4);
        // The clockwise angle the display turns the stored frame by, in [0, 360) (ffprobe's
        // `rotation` is the counterclockwise one).
        let turn = (m1 / scale1)
            .atan2(m0 / scale0)
            .to_degrees()
            .rem_euclid(360.0);
        let near = |target: f64| (turn - target).abs() < 1.0 || (turn - target - 360.0).abs() < 1.0;
        Some(if near(0.0) {
            Orientation {
                flip_y: m4 < 0.0,
                ..Orientation::UPRIGHT
            }
        } else if near(90.0) {
            // The stored frame is turned clockwise for display; with m₃ > 0 also mirrored.
            if m3 > 0.0 {
                Orientation {
                    transpose: true,
                    ..Orientation::UPRIGHT
                }
            } else {
                Orientation::CLOCKWISE
            }
        } else if near(180.0) {
            Orientation {
                transpose: false,
                flip_x: m0 < 0.0,
                flip_y: m4 < 0.0,
            }
        } else if near(270.0) {
            if m3 < 0.0 {
                Orientation {
                    transpose: true,
                    flip_x: true,
                    flip_y: true,
                }
            } else {
                Orientation::COUNTERCLOCKWISE
            }
        } else {
            return None;
        })
    }

    /// The same orientation read from the raw bytes of FFmpeg side data (nine native-endian
    /// `i32`); `None` when the bytes are not a display matrix.
    pub(crate) fn from_side_data(bytes: &[u8]) -> Option<Option<Orientation>> {
        let words: Vec<i32> = bytes
            .chunks_exact(4)
            .map(|w| i32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let matrix: [i32; 9] = words.try_into().ok()?;
        Some(Orientation::from_display_matrix(&matrix))
    }

    /// True when frames are shown as stored.
    pub fn is_upright(self) -> bool {
        self == Orientation::UPRIGHT
    }

    /// The displayed size of a stored `width × height` frame.
    pub fn size(self, width: u32, height: u32) -> (u32, u32) {
        if self.transpose {
            (height, width)
        } else {
            (width, height)
        }
    }

    /// Packed RGB24 pixels of a stored `width × height` frame, turned for display.
    pub fn apply(self, rgb: &[u8], width: usize, height: usize) -> Vec<u8> {
        assert_eq!(
            rgb.len(),
            width * height * 3,
            "an RGB24 frame of the size given"
        );
        if self.is_upright() {
            return rgb.to_vec();
        }
        let (out_w, out_h) = if self.transpose {
            (height, width)
        } else {
            (width, height)
        };
        // The stored pixel of output pixel (x, y) is origin + x·step_x + y·step_y.
        let (row, pixel) = (width as isize, 1isize);
        let (along_a, along_b) = (
            if self.flip_x { -pixel } else { pixel },
            if self.flip_y { -row } else { row },
        );
        let (step_x, step_y) = if self.transpose {
            (along_b, along_a)
        } else {
            (along_a, along_b)
        };
        let origin = (if self.flip_x { width as isize - 1 } else { 0 })
            + (if self.flip_y {
                (height as isize - 1) * row
            } else {
                0
            });
        let (stored, _) = rgb.as_chunks::<3>();
        let mut out = vec![0u8; rgb.len()];
        let (turned, _) = out.as_chunks_mut::<3>();
        // Tiles of 32 × 32 output pixels keep a transpose's reads within a few cache lines.
        const TILE: usize = 32;
        for ty in (0..out_h).step_by(TILE) {
            for tx in (0..out_w).step_by(TILE) {
                let x_end = (tx + TILE).min(out_w);
                for y in ty..(ty + TILE).min(out_h) {
                    let mut from = origin + tx as isize * step_x + y as isize * step_y;
                    for to in &mut turned[y * out_w + tx..y * out_w + x_end] {
                        *to = stored[from as usize];
                        from += step_x;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FFmpeg's matrix for a display rotation of `degrees` counterclockwise (ffprobe's
    /// `rotation`; `rotate=90` gives 0, −65536, 65536, 0 as ffprobe prints it), optionally
    /// mirrored horizontally (`av_display_matrix_flip`: column 0 negated).
    fn matrix(degrees: f64, hflip: bool) -> [i32; 9] {
        let radians = degrees.to_radians();
        let (s, c) = radians.sin_cos();
        let fixed = |v: f64| (v * 65536.0).round() as i32;
        let mut m = [0i32; 9];
        m[0] = fixed(c);
        m[1] = fixed(-s);
        m[3] = fixed(s);
        m[4] = fixed(c);
        m[8] = 1 << 30;
        if hflip {
            m[0] = -m[0];
            m[3] = -m[3];
        }
        m
    }

    /// A 3 × 2 frame whose pixels are numbered 0..6 in reading order.
    fn numbered() -> Vec<u8> {
        (0..6u8).flat_map(|i| [i, 10 + i, 20 + i]).collect()
    }

    fn reds(rgb: &[u8]) -> Vec<u8> {
        rgb.chunks_exact(3).map(|p| p[0]).collect()
    }

    #[test]
    fn quarter_turns_read_as_ffmpegs_autorotation() {
        // A file tagged rotate=90 (ffprobe: rotation=90) is stored turned clockwise and is
        // shown turned back counterclockwise; rotate=270 the other way.
        assert_eq!(
            Orientation::from_display_matrix(&matrix(90.0, false)),
            Some(Orientation::COUNTERCLOCKWISE)
        );
        assert_eq!(
            Orientation::from_display_matrix(&matrix(-90.0, false)),
            Some(Orientation::CLOCKWISE)
        );
        assert_eq!(
            Orientation::from_display_matrix(&matrix(180.0, false)),
            Some(Orientation::HALF_TURN)
        );
        assert_eq!(
            Orientation::from_display_matrix(&matrix(0.0, false)),
            Some(Orientation::UPRIGHT)
        );
        // A quarter of a degree off is still a quarter turn; 45° is left as stored.
        assert_eq!(
            Orientation::from_display_matrix(&matrix(90.25, false)),
            Some(Orientation::COUNTERCLOCKWISE)
        );
        assert_eq!(Orientation::from_display_matrix(&matrix(45.0, false)), None);
        assert_eq!(Orientation::from_display_matrix(&[0; 9]), None);
    }

    #[test]
    fn mirrored_matrices_mirror() {
        let mirror = Orientation {
            flip_x: true,
            ..Orientation::UPRIGHT
        };
        assert_eq!(
            Orientation::from_display_matrix(&matrix(0.0, true)),
            Some(mirror)
        );
        // A mirror with a half turn is a vertical mirror.
        let vertical = Orientation {
            flip_y: true,
            ..Orientation::UPRIGHT
        };
        assert_eq!(
            Orientation::from_display_matrix(&matrix(180.0, true)),
            Some(vertical)
        );
        // With a quarter turn: a transpose or an anti-transpose, never a plain turn.
        for degrees in [90.0, -90.0] {
            let o = Orientation::from_display_matrix(&matrix(degrees, true)).unwrap();
            assert!(o.transpose && o.flip_x == o.flip_y, "{degrees}: {o:?}");
        }
    }

    #[test]
    fn side_data_is_nine_native_words() {
        let bytes: Vec<u8> = matrix(90.0, false)
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        assert_eq!(
            Orientation::from_side_data(&bytes),
            Some(Some(Orientation::COUNTERCLOCKWISE))
        );
        assert_eq!(Orientation::from_side_data(&bytes[..35]), None);
    }

    #[test]
    fn apply_turns_and_mirrors_pixels() {
        // Stored (3 × 2):  0 1 2
        //                  3 4 5
        let rgb = numbered();
        assert_eq!(
            reds(&Orientation::UPRIGHT.apply(&rgb, 3, 2)),
            [0, 1, 2, 3, 4, 5]
        );
        // Clockwise (2 × 3): 3 0 / 4 1 / 5 2.
        assert_eq!(
            reds(&Orientation::CLOCKWISE.apply(&rgb, 3, 2)),
            [3, 0, 4, 1, 5, 2]
        );
        // Counterclockwise: 2 5 / 1 4 / 0 3.
        assert_eq!(
            reds(&Orientation::COUNTERCLOCKWISE.apply(&rgb, 3, 2)),
            [2, 5, 1, 4, 0, 3]
        );
        assert_eq!(
            reds(&Orientation::HALF_TURN.apply(&rgb, 3, 2)),
            [5, 4, 3, 2, 1, 0]
        );
        let transpose = Orientation {
            transpose: true,
            ..Orientation::UPRIGHT
        };
        assert_eq!(reds(&transpose.apply(&rgb, 3, 2)), [0, 3, 1, 4, 2, 5]);
        // Whole pixels move: the green and blue bytes go with the red.
        let turned = Orientation::CLOCKWISE.apply(&rgb, 3, 2);
        assert_eq!(&turned[..3], &[3, 13, 23]);
        assert_eq!(Orientation::CLOCKWISE.size(3, 2), (2, 3));
    }

    #[test]
    fn every_orientation_turns_a_single_pixel_and_a_single_row() {
        for transpose in [false, true] {
            for flip_x in [false, true] {
                for flip_y in [false, true] {
                    let o = Orientation {
                        transpose,
                        flip_x,
                        flip_y,
                    };
                    assert_eq!(o.apply(&[1, 2, 3], 1, 1), [1, 2, 3]);
                    let row = numbered();
                    let turned = o.apply(&row, 6, 1);
                    let mut sorted = reds(&turned);
                    sorted.sort();
                    assert_eq!(sorted, [0, 1, 2, 3, 4, 5], "{o:?}");
                    assert_eq!(o.apply(&[], 0, 0), Vec::<u8>::new());
                }
            }
        }
    }

    #[test]
    fn apply_covers_frames_larger_than_a_tile() {
        let (w, h) = (70, 45);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| [(i % 251) as u8, (i / 251) as u8, 7])
            .collect();
        let turned = Orientation::CLOCKWISE.apply(&rgb, w, h);
        let back = Orientation::COUNTERCLOCKWISE.apply(&turned, h, w);
        assert_eq!(back, rgb);
    }
}
