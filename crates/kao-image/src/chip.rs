//! Aligned face chips as dlib makes them (`dlib/image_transforms/interpolation.h`):
//! `get_face_chip_details` fits a similarity transform from a 5-point template to the
//! landmarks, and `extract_image_chip` samples the rotated rectangle bilinearly in
//! double precision, truncating to `u8`. When the face rectangle is more than 4× the
//! chip's area, dlib first shrinks a crop of the image with `pyramid_down<2>` as many
//! times as needed; that path is reproduced too.

use crate::geometry::similarity;
use crate::view::{Rect, RgbImage, RgbView};

/// dlib's mean positions of the 5 landmarks (eye corners and nose), in chip units.
const MEAN_FACE_5: [[f64; 2]; 5] = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// Invalid arguments to [`get_face_chip_details`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChipError {
    /// The landmarks are not dlib's 5 points.
    #[error("expected 5 landmarks, got {0}")]
    LandmarkCount(usize),
    /// `size` must be at least 1.
    #[error("chip size must be positive")]
    ZeroSize,
    /// `padding` must be finite and non-negative.
    #[error("padding {0} must be finite and >= 0")]
    BadPadding(f64),
}

/// A real-valued rectangle (dlib `drectangle`): inclusive corners, so its width is
/// `right − left + 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DRect {
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Right edge.
    pub right: f64,
    /// Bottom edge.
    pub bottom: f64,
}

impl DRect {
    fn is_empty(&self) -> bool {
        self.top > self.bottom || self.left > self.right
    }

    /// Width as dlib counts it (`right − left + 1`; 0 when empty).
    pub fn width(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            self.right - self.left + 1.0
        }
    }

    /// Height as dlib counts it (`bottom − top + 1`; 0 when empty).
    pub fn height(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            self.bottom - self.top + 1.0
        }
    }

    fn area(&self) -> f64 {
        self.width() * self.height()
    }

    fn center(&self) -> [f64; 2] {
        [
            (self.left + self.right) / 2.0,
            (self.top + self.bottom) / 2.0,
        ]
    }

    fn translate(&self, dx: f64, dy: f64) -> DRect {
        DRect {
            left: self.left + dx,
            top: self.top + dy,
            right: self.right + dx,
            bottom: self.bottom + dy,
        }
    }

    /// `pyramid_down<2>::rect_down`: maps both corners with `p/2 − (1.25, 0.75)`.
    fn pyramid_down(&self) -> DRect {
        DRect {
            left: self.left / 2.0 - 1.25,
            top: self.top / 2.0 - 0.75,
            right: self.right / 2.0 - 1.25,
            bottom: self.bottom / 2.0 - 0.75,
        }
    }

    /// Conversion to an integer rectangle, rounding each edge half up.
    fn round(&self) -> Rect {
        let r = |v: f64| (v + 0.5).floor() as i64;
        Rect::new(r(self.left), r(self.top), r(self.right), r(self.bottom))
    }
}

/// Where and how to cut a chip (dlib `chip_details`): the rectangle `rect`, rotated by
/// `angle` radians about its centre, is resampled to `rows × cols` pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChipDetails {
    /// The chip's area in the image, before rotation.
    pub rect: DRect,
    /// Rotation about the rectangle's centre, in radians.
    pub angle: f64,
    /// Output height.
    pub rows: usize,
    /// Output width.
    pub cols: usize,
}

/// dlib's `get_face_chip_details` for 5-point landmarks: a `size × size` chip in
/// which the face covers the template with `padding` (as a fraction of the face size)
/// around it. dlib_face_recognition uses size 150, padding 0.25.
pub fn get_face_chip_details(
    landmarks: &[(f32, f32)],
    size: usize,
    padding: f64,
) -> Result<ChipDetails, ChipError> {
    if landmarks.len() != 5 {
        return Err(ChipError::LandmarkCount(landmarks.len()));
    }
    if size == 0 {
        return Err(ChipError::ZeroSize);
    }
    if !(padding.is_finite() && padding >= 0.0) {
        return Err(ChipError::BadPadding(padding));
    }
    let s = size as f64;
    let from: Vec<[f64; 2]> = MEAN_FACE_5
        .iter()
        .map(|p| p.map(|v| (padding + v) / (2.0 * padding + 1.0) * s))
        .collect();
    let to: Vec<[f64; 2]> = landmarks
        .iter()
        .map(|&(x, y)| [x as f64, y as f64])
        .collect();
    let tform = similarity(&from, &to);
    // Rotation and scale come from the image of (1, 0); the rectangle holds the rest.
    let (px, py) = (tform.m[0][0], tform.m[1][0]);
    let angle = py.atan2(px);
    let scale = (px * px + py * py).sqrt();
    // The rectangle is centred on the image of the chip's centre (size/2, size/2).
    let half = s / 2.0;
    let c = [
        tform.m[0][0] * half + tform.m[0][1] * half + tform.t[0],
        tform.m[1][0] * half + tform.m[1][1] * half + tform.t[1],
    ];
    Ok(ChipDetails {
        rect: centered_drect(c, s * scale, s * scale),
        angle,
        rows: size,
        cols: size,
    })
}

/// dlib's `centered_drect`: a rectangle of `width × height` (inclusive counting)
/// centred on `p`.
fn centered_drect(p: [f64; 2], width: f64, height: f64) -> DRect {
    let (w, h) = (width - 1.0, height - 1.0);
    DRect {
        left: p[0] - w / 2.0,
        top: p[1] - h / 2.0,
        right: p[0] + w / 2.0,
        bottom: p[1] + h / 2.0,
    }
}

/// dlib's `get_face_chip(img, landmarks, size, padding)`: details + extraction.
pub fn get_face_chip(
    image: &RgbView<'_>,
    landmarks: &[(f32, f32)],
    size: usize,
    padding: f64,
) -> Result<RgbImage, ChipError> {
    Ok(extract_image_chip(
        image,
        &get_face_chip_details(landmarks, size, padding)?,
    ))
}

/// `rotate_point(center, p, angle)`.
fn rotate(center: [f64; 2], p: [f64; 2], angle: f64) -> [f64; 2] {
    let (s, c) = angle.sin_cos();
    let (dx, dy) = (p[0] - center[0], p[1] - center[1]);
    [c * dx - s * dy + center[0], s * dx + c * dy + center[1]]
}

/// dlib's `extract_image_chip` with bilinear interpolation: a `rows × cols` chip,
/// black where it samples outside the image.
pub fn extract_image_chip(image: &RgbView<'_>, details: &ChipDetails) -> RgbImage {
    let (rows, cols) = (details.rows, details.cols);
    let rect = details.rect;
    if details.angle == 0.0 && rows as f64 == rect.height() && cols as f64 == rect.width() {
        return copy_chip(image, rect.round());
    }
    let size = rows as f64 * cols as f64;

    // The margin the crop needs to keep pyramid filter borders out of the chip.
    let mut grow = 2.0;
    let mut r = rect.pyramid_down();
    while r.area() > size {
        r = r.pyramid_down();
        grow = grow * 2.0 + 2.0;
    }

    // Crop: the rotated rectangle's bounding box, grown, clipped to the image, rounded.
    let centre = rect.center();
    let corners = [
        [rect.left, rect.top],
        [rect.right, rect.top],
        [rect.left, rect.bottom],
        [rect.right, rect.bottom],
    ]
    .map(|p| rotate(centre, p, details.angle));
    let mut rot = DRect {
        left: f64::INFINITY,
        top: f64::INFINITY,
        right: f64::NEG_INFINITY,
        bottom: f64::NEG_INFINITY,
    };
    for [x, y] in corners {
        rot = DRect {
            left: rot.left.min(x),
            top: rot.top.min(y),
            right: rot.right.max(x),
            bottom: rot.bottom.max(y),
        };
    }
    let clipped = DRect {
        left: (rot.left - grow).max(0.0),
        top: (rot.top - grow).max(0.0),
        right: (rot.right + grow).min(image.width() as f64 - 1.0),
        bottom: (rot.bottom + grow).min(image.height() as f64 - 1.0),
    };
    let bbox = clipped.round();
    let mut chip = RgbImage::new(cols, rows);
    if bbox.left > bbox.right
        || bbox.top > bbox.bottom
        || !corners.iter().flatten().all(|v| v.is_finite())
    {
        // Nothing of the image is inside the chip (dlib's bounding box stays empty).
        return chip;
    }
    let crop = image.sub(bbox);

    // Sample from the smallest pyramid level whose rectangle is still larger than the chip.
    let mut r = rect.translate(-bbox.left as f64, -bbox.top as f64);
    let mut level = 0;
    while r.pyramid_down().area() > size {
        r = r.pyramid_down();
        level += 1;
    }
    let mut pyramid = None;
    for _ in 0..level {
        let next = pyramid_down2(pyramid.as_ref().map_or(crop, RgbImage::view));
        pyramid = Some(next);
    }
    let source = pyramid.as_ref().map_or(crop, RgbImage::view);

    // The affine map taking the chip's tl, tr, bl corners to the rotated rectangle's.
    let c = r.center();
    let tl = rotate(c, [r.left, r.top], details.angle);
    let tr = rotate(c, [r.right, r.top], details.angle);
    let bl = rotate(c, [r.left, r.bottom], details.angle);
    let (m, b) = corner_affine(tl, tr, bl, rows, cols);
    sample(&source, m, b, &mut chip);
    chip
}

/// Fills `chip` with the bilinear samples of `source` at `m·(col, row) + b`: dlib's
/// `interpolate_bilinear` for RGB, in f64 and truncated to `u8`, black where the 2×2
/// neighbourhood is not inside the image. Compiled for AVX2 and AVX-512 as well, chosen
/// at run time through `pulp`: a row is sampled in passes the compiler vectorises across
/// pixels (where each sample falls; the pixels' values), around one that fetches each
/// sample's 2×2 neighbourhood. Every value is the same f64 arithmetic in the same order
/// as pixel by pixel, so the chip is too (tested against that).
fn sample(source: &RgbView<'_>, m: [[f64; 2]; 2], b: [f64; 2], chip: &mut RgbImage) {
    pulp::Arch::new().dispatch(Sample { source, m, b, chip });
}

/// [`sample`]'s arguments, for `pulp`'s dispatch.
struct Sample<'a, 'b> {
    source: &'a RgbView<'b>,
    m: [[f64; 2]; 2],
    b: [f64; 2],
    chip: &'a mut RgbImage,
}

impl pulp::WithSimd for Sample<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Sample { source, m, b, chip } = self;
        let cols = chip.width;
        if cols == 0 {
            return;
        }
        if source.width() < 2 || source.height() < 2 {
            // No 2×2 neighbourhood is inside the image.
            chip.data.fill(0);
            return;
        }
        let (width, height) = (source.width() as f64, source.height() as f64);
        let stride = source.stride();
        // `m·(x, y) + b` is (m[i][0]·x + m[i][1]·y) + b[i]; the column products are the same
        // on every row.
        let column_x: Vec<f64> = (0..cols).map(|col| m[0][0] * col as f64).collect();
        let column_y: Vec<f64> = (0..cols).map(|col| m[1][0] * col as f64).collect();
        // Per sample: its fractions; where its 2×2 neighbourhood starts in the image's bytes
        // (0 outside the image) and a mask of all ones inside, none outside; its two rows'
        // pixel pairs as little-endian words (r, g, b, r, g, b in the low six bytes).
        let (mut frac_x, mut frac_y) = (vec![0.0f64; cols], vec![0.0f64; cols]);
        let (mut offset, mut inside) = (vec![0u64; cols], vec![0u64; cols]);
        let (mut upper, mut lower) = (vec![0u64; cols], vec![0u64; cols]);
        let mut channels = [vec![0u8; cols], vec![0u8; cols], vec![0u8; cols]];
        for (row, line) in chip.data.chunks_exact_mut(cols * 3).enumerate() {
            let (row_x, row_y) = (m[0][1] * row as f64, m[1][1] * row as f64);
            // Where each sample falls (vectorised).
            for (((((fx, fy), at), mask), cx), cy) in frac_x
                .iter_mut()
                .zip(frac_y.iter_mut())
                .zip(offset.iter_mut())
                .zip(inside.iter_mut())
                .zip(&column_x)
                .zip(&column_y)
            {
                let (x, y) = (cx + row_x + b[0], cy + row_y + b[1]);
                let (left, top) = (floor(x), floor(y));
                (*fx, *fy) = (x - left, y - top);
                let within = left >= 0.0 && top >= 0.0 && left + 1.0 < width && top + 1.0 < height;
                *mask = u64::from(within).wrapping_neg();
                *at = exact_index(top * stride as f64 + left * 3.0) & *mask;
            }
            // Each sample's 2×2 neighbourhood, one pixel pair per row; outside the image, zero
            // (whatever the fractions, the value is then 0, or NaN, which truncates to 0 too).
            for (((at, mask), up), low) in
                offset.iter().zip(&inside).zip(&mut upper).zip(&mut lower)
            {
                let at = *at as usize;
                (*up, *low) = (
                    source.pixel_pair_at(at) & mask,
                    source.pixel_pair_at(at + stride) & mask,
                );
            }
            // The bilinear values, channel by channel (vectorised).
            for (c, channel) in channels.iter_mut().enumerate() {
                let (near, far) = (8 * c as u32, 8 * (c as u32 + 3));
                for ((((out, up), low), fx), fy) in channel
                    .iter_mut()
                    .zip(&upper)
                    .zip(&lower)
                    .zip(&frac_x)
                    .zip(&frac_y)
                {
                    let value = |word: u64, shift: u32| f64::from((word >> shift) as u8);
                    let top_row = (1.0 - fx) * value(*up, near) + fx * value(*up, far);
                    let bottom_row = (1.0 - fx) * value(*low, near) + fx * value(*low, far);
                    *out = truncate_to_u8((1.0 - fy) * top_row + fy * bottom_row);
                }
            }
            let [red, green, blue] = &channels;
            for (((out, r), g), b) in line.chunks_exact_mut(3).zip(red).zip(green).zip(blue) {
                out.copy_from_slice(&[*r, *g, *b]);
            }
        }
    }
}

/// 1.5 · 2⁵²: adding it to an f64 of magnitude below 2⁵¹ leaves no fraction bits, so the
/// sum is the value rounded to the nearest integer, and subtracting it again is exact.
const ROUNDER: f64 = 6_755_399_441_055_744.0;

/// `x.floor()`, exact for |x| < 2⁵¹ and beyond that a value as far out; NaN and ±∞ stay
/// themselves. Plain adds and compares, which the compiler vectorises at any CPU level
/// (`f64::floor` is a libm call without SSE4.1, and conversions to integers are not
/// vectorised).
#[inline(always)]
fn floor(x: f64) -> f64 {
    let nearest = (x + ROUNDER) - ROUNDER;
    if nearest > x { nearest - 1.0 } else { nearest }
}

/// `v as u64` for an integral `v` in 0 ≤ v < 2⁵², in a form the compiler vectorises:
/// `v + 2⁵²` holds `v` in the 52 low bits of its representation. Other values give
/// some number, never a panic.
#[inline(always)]
fn exact_index(v: f64) -> u64 {
    (v + 4_503_599_627_370_496.0).to_bits() & ((1 << 52) - 1)
}

/// `v as u8` (truncation towards zero, saturating at 0 and 255, NaN to 0) in a form the
/// compiler vectorises: the clamped value's floor plus 2⁵² holds that integer in the low
/// bits of its representation.
#[inline(always)]
#[allow(clippy::manual_clamp)] // `clamp` keeps NaN, whose bits are not 0; `max` makes it 0.
fn truncate_to_u8(v: f64) -> u8 {
    let clamped = v.max(0.0).min(255.0);
    (floor(clamped) + 4_503_599_627_370_496.0).to_bits() as u8
}

/// dlib's `find_affine_transform` from the chip corners (0,0), (cols−1,0), (0,rows−1)
/// to `tl`, `tr`, `bl`, as the matrix `m` and offset `b` of `p ↦ m·p + b`. Exact for
/// chips of at least 2×2; for a 1-pixel dimension it is the least-squares,
/// minimum-norm solution that dlib's pseudo-inverse gives.
fn corner_affine(
    tl: [f64; 2],
    tr: [f64; 2],
    bl: [f64; 2],
    rows: usize,
    cols: usize,
) -> ([[f64; 2]; 2], [f64; 2]) {
    let mean = |pts: &[[f64; 2]]| {
        let n = pts.len() as f64;
        [
            pts.iter().map(|p| p[0]).sum::<f64>() / n,
            pts.iter().map(|p| p[1]).sum::<f64>() / n,
        ]
    };
    // The step per pixel from `from` to `to` over `steps` pixels.
    let step = |to: [f64; 2], from: [f64; 2], steps: usize| {
        [
            (to[0] - from[0]) / steps as f64,
            (to[1] - from[1]) / steps as f64,
        ]
    };
    let (b, ex, ey) = match (cols > 1, rows > 1) {
        (true, true) => (tl, step(tr, tl, cols - 1), step(bl, tl, rows - 1)),
        (false, true) => {
            let top = mean(&[tl, tr]);
            (top, [0.0; 2], step(bl, top, rows - 1))
        }
        (true, false) => {
            let left = mean(&[tl, bl]);
            (left, step(tr, left, cols - 1), [0.0; 2])
        }
        (false, false) => (mean(&[tl, tr, bl]), [0.0; 2], [0.0; 2]),
    };
    ([[ex[0], ey[0]], [ex[1], ey[1]]], b)
}

/// dlib's `basic_extract_image_chip`: a plain copy of `rect`, black outside the image.
fn copy_chip(image: &RgbView<'_>, rect: Rect) -> RgbImage {
    let cols = (rect.right - rect.left + 1).max(0) as usize;
    let rows = (rect.bottom - rect.top + 1).max(0) as usize;
    let mut chip = RgbImage::new(cols, rows);
    for row in 0..rows {
        for col in 0..cols {
            if let Some(p) = image.get(rect.left + col as i64, rect.top + row as i64) {
                chip.data[(row * cols + col) * 3..][..3].copy_from_slice(&p);
            }
        }
    }
    chip
}

/// dlib's `pyramid_down<2>` for RGB images: a separable 5-tap [1 4 6 4 1] filter with
/// 2× decimation, integer arithmetic, output `(n − 3)/2` per axis. Images of 8 pixels
/// or fewer in either dimension give an empty image.
///
/// dlib filters the rows first; the sums are exact integers, so the columns first gives
/// the same values. It is cheaper: the vertical pass runs over whole rows (contiguous,
/// vectorised) and only for the output rows. The horizontal pass then filters the whole
/// row too, twice the sums it keeps but vectorised, and takes every other pixel. Compiled
/// for AVX2 and AVX-512 as well, chosen at run time through `pulp`.
fn pyramid_down2(src: RgbView<'_>) -> RgbImage {
    pulp::Arch::new().dispatch(PyramidDown2 { src })
}

/// [`pyramid_down2`]'s argument, for `pulp`'s dispatch.
struct PyramidDown2<'a> {
    src: RgbView<'a>,
}

impl pulp::WithSimd for PyramidDown2<'_> {
    type Output = RgbImage;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> RgbImage {
        let src = self.src;
        let (w, h) = (src.width(), src.height());
        if w <= 8 || h <= 8 {
            return RgbImage::new(0, 0);
        }
        let (ow, oh) = ((w - 3) / 2, (h - 3) / 2);
        let mut out = RgbImage::new(ow, oh);
        // One output row's vertical sums over the whole source row (≤ 16·255), then their
        // horizontal sums (≤ 256·255, still a u16) divided by 256, at every byte from which
        // five taps of the same channel fit.
        let mut column_sums = vec![0u16; w * 3];
        let mut sums = vec![0u8; w * 3 - 12];
        for (dr, dst) in out.data.chunks_exact_mut(ow * 3).enumerate() {
            // Centred on rows 2, 4, 6, …
            let r = 2 + 2 * dr;
            let (a, b, c, d, e) = (
                src.row(r - 2),
                src.row(r - 1),
                src.row(r),
                src.row(r + 1),
                src.row(r + 2),
            );
            for (i, v) in column_sums.iter_mut().enumerate() {
                let p = |row: &[u8]| u16::from(row[i]);
                *v = p(a) + 4 * p(b) + 6 * p(c) + 4 * p(d) + p(e);
            }
            for (i, v) in sums.iter_mut().enumerate() {
                let t = &column_sums[i..i + 13];
                *v = ((t[0] + 4 * t[3] + 6 * t[6] + 4 * t[9] + t[12]) >> 8) as u8;
            }
            // Output column x is centred on source pixel 2x + 2: its sums start at byte 6x.
            for (px, sum) in dst.chunks_exact_mut(3).zip(sums.chunks(6)) {
                px.copy_from_slice(&sum[..3]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_down2_sizes_and_flat_images() {
        let img = RgbImage {
            width: 20,
            height: 13,
            data: vec![200; 20 * 13 * 3],
        };
        let down = pyramid_down2(img.view());
        assert_eq!((down.width, down.height), (8, 5));
        // The filter sums to 256, so a flat image stays flat.
        assert!(down.data.iter().all(|&v| v == 200));
        let small = RgbImage::new(8, 30);
        assert_eq!(pyramid_down2(small.view()).data.len(), 0);
    }

    /// dlib's `interpolate_bilinear` for RGB as written, pixel by pixel: f64, truncated to
    /// `u8`, black when the 2×2 neighbourhood is not inside the image.
    fn bilinear_by_pixel(img: &RgbView<'_>, x: f64, y: f64) -> [u8; 3] {
        let (left, top) = (crate::view::floor_to_i64(x), crate::view::floor_to_i64(y));
        let inside = left >= 0
            && top >= 0
            && left.saturating_add(1) < img.width() as i64
            && top.saturating_add(1) < img.height() as i64;
        if !inside {
            return [0; 3];
        }
        let (l, t) = (left as usize, top as usize);
        let (fx, fy) = (x - left as f64, y - top as f64);
        let lerp = |a: f64, b: f64, f: f64| (1.0 - f) * a + f * b;
        std::array::from_fn(|k| {
            let p = |col: usize, row: usize| f64::from(img.pixel(col, row)[k]);
            let upper = lerp(p(l, t), p(l + 1, t), fx);
            let lower = lerp(p(l, t + 1), p(l + 1, t + 1), fx);
            lerp(upper, lower, fy) as u8
        })
    }

    #[test]
    fn sample_is_dlibs_bilinear_pixel_by_pixel_at_every_cpu_level() {
        let mut rng = fastrand::Rng::with_seed(11);
        // A view into a larger buffer (stride wider than the row), so samples can read
        // past a row's end and the image's last pixel pair ends the buffer.
        let (width, height, stride) = (61, 47, 61 * 3 + 5);
        let data: Vec<u8> = (0..(height - 1) * stride + width * 3)
            .map(|_| rng.u8(..))
            .collect();
        let image = RgbView::with_stride(width, height, stride, &data).unwrap();
        let mut maps = vec![
            // The whole image at 1:1, out to its last pixel pair.
            ([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0]),
            // Mostly outside, and NaN, infinite and huge positions.
            ([[2.5, 0.3], [-0.4, 2.5]], [-40.0, -30.0]),
            ([[f64::NAN, 0.0], [0.0, 1.0]], [0.0, 0.0]),
            ([[1.0, 0.0], [0.0, 1.0]], [f64::INFINITY, 3.0]),
            ([[1e12, 0.0], [0.0, 1e12]], [-5e12, 0.0]),
        ];
        for _ in 0..40 {
            let angle = rng.f64() * std::f64::consts::TAU;
            let scale = 0.1 + 1.5 * rng.f64();
            let (c, s) = (scale * angle.cos(), scale * angle.sin());
            maps.push((
                [[c, -s], [s, c]],
                [rng.f64() * 80.0 - 10.0, rng.f64() * 60.0 - 10.0],
            ));
        }
        for (m, b) in maps {
            let (cols, rows) = (37, 29);
            let mut expected = RgbImage::new(cols, rows);
            for row in 0..rows {
                for col in 0..cols {
                    let (x, y) = (col as f64, row as f64);
                    let px = m[0][0] * x + m[0][1] * y + b[0];
                    let py = m[1][0] * x + m[1][1] * y + b[1];
                    expected.data[(row * cols + col) * 3..][..3]
                        .copy_from_slice(&bilinear_by_pixel(&image, px, py));
                }
            }
            let mut dispatched = RgbImage::new(cols, rows);
            sample(&image, m, b, &mut dispatched);
            assert_eq!(dispatched, expected, "{m:?} {b:?}");
            let mut scalar = RgbImage::new(cols, rows);
            pulp::WithSimd::with_simd(
                Sample {
                    source: &image,
                    m,
                    b,
                    chip: &mut scalar,
                },
                pulp::Scalar::new(),
            );
            assert_eq!(scalar, expected, "{m:?} {b:?}");
        }
        // An image too narrow for any 2×2 neighbourhood gives a black chip.
        let narrow = RgbImage {
            width: 1,
            height: 5,
            data: vec![200; 15],
        };
        let mut chip = RgbImage {
            width: 3,
            height: 3,
            data: vec![7; 27],
        };
        sample(
            &narrow.view(),
            [[0.0, 0.0], [0.0, 1.0]],
            [0.0, 0.0],
            &mut chip,
        );
        assert_eq!(chip, RgbImage::new(3, 3));
    }

    /// dlib's `pyramid_down<2>` as written: rows filtered first, pixel by pixel.
    fn pyramid_down2_by_pixel(src: RgbView<'_>) -> RgbImage {
        let (ow, oh) = ((src.width() - 3) / 2, (src.height() - 3) / 2);
        let weights = [1u32, 4, 6, 4, 1];
        let mut out = RgbImage::new(ow, oh);
        for y in 0..oh {
            for x in 0..ow {
                for k in 0..3 {
                    let mut sum = 0;
                    for (dy, wy) in weights.iter().enumerate() {
                        let row = src.row(2 * y + dy);
                        let across: u32 = (0..5)
                            .map(|dx| weights[dx] * u32::from(row[3 * (2 * x + dx) + k]))
                            .sum();
                        sum += wy * across;
                    }
                    out.data[(y * ow + x) * 3 + k] = (sum / 256) as u8;
                }
            }
        }
        out
    }

    #[test]
    fn pyramid_down2_equals_dlibs_filter_pixel_by_pixel_at_every_cpu_level() {
        let mut rng = fastrand::Rng::with_seed(7);
        for (w, h) in [(9, 9), (10, 11), (37, 20), (64, 64), (301, 97)] {
            for bright in [false, true] {
                // Random bytes, and bytes near 255 where the sums are largest.
                let data = (0..w * h * 3)
                    .map(|_| {
                        if bright {
                            255 - rng.u8(0..3)
                        } else {
                            rng.u8(..)
                        }
                    })
                    .collect();
                let img = RgbImage {
                    width: w,
                    height: h,
                    data,
                };
                let expected = pyramid_down2_by_pixel(img.view());
                assert_eq!(pyramid_down2(img.view()), expected, "{w}×{h}");
                let scalar = pulp::WithSimd::with_simd(
                    PyramidDown2 { src: img.view() },
                    pulp::Scalar::new(),
                );
                assert_eq!(scalar, expected, "{w}×{h}, scalar");
            }
        }
    }

    #[test]
    fn rejects_bad_arguments() {
        let pts = [(0.0, 0.0); 5];
        assert_eq!(
            get_face_chip_details(&pts[..4], 150, 0.25),
            Err(ChipError::LandmarkCount(4))
        );
        assert_eq!(
            get_face_chip_details(&pts, 0, 0.25),
            Err(ChipError::ZeroSize)
        );
        assert!(matches!(
            get_face_chip_details(&pts, 150, f64::NAN),
            Err(ChipError::BadPadding(_))
        ));
    }

    #[test]
    fn degenerate_landmarks_do_not_panic() {
        let img = RgbImage::new(16, 16);
        for pts in [[(3.0, 3.0); 5], [(1e30, -1e30); 5], [(f32::NAN, 0.0); 5]] {
            for size in [1, 2, 7] {
                let chip = get_face_chip(&img.view(), &pts, size, 0.25).unwrap();
                assert_eq!(chip.data.len(), size * size * 3);
            }
        }
    }
}
