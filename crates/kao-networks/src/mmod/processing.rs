//! dlib's MMOD CNN face detector (`mmod_human_face_detector.dat`), everything but the
//! network (docs/models.md §2.2):
//!
//! * [`MmodInput::new`]: dlib's `input_rgb_image_pyramid<pyramid_down<6>>` — the image
//!   and its 5/6-scaled copies tiled into one planar `3 × rows × cols` `f32` canvas,
//!   values `(p − mean)/256`, with the level rectangles.
//! * [`MmodDecoder::decode`]: the score map (`rows × cols`) back to image rectangles with
//!   dlib's NMS, bit-compatible with `cnn_face_detection_model_v1`.
//! * [`pyramid_up`] / [`rect_down`]: the `upsample_num_times` path — dlib's
//!   `pyramid_up(img, pyramid_down<2>)` before detection and `rect_down` after.
//!
//! **Size limit.** The canvas is about 3.7 times the image area (a 512² image gives
//! 1895 × 534), and the first conv layer's output is 16 channels at a quarter of that,
//! so an image of P pixels needs roughly 60·P bytes inside the network. Frames above
//! [`MAX_PIXELS`] (2048², i.e. ≈ 190 MB for the canvas and ≈ 250 MB for the first
//! activation) are refused with [`DetectorError::FrameTooLarge`]: downscale them first
//! (`--detect-width`). The limit also applies to the output of [`pyramid_up`].

use kao_image::{Rect, RgbImage, RgbView};
use kao_model_files::dat::{BoxOverlap, InputRgbPyramid, Layer, MmodModel};

use crate::DetectorError;

/// Largest image, in pixels, that [`MmodInput::new`] and [`pyramid_up`] accept.
pub const MAX_PIXELS: usize = 2048 * 2048;

/// `N` of the detector's `pyramid_down<N>`: each level is 5/6 of the previous one.
const PYRAMID_N: f64 = 6.0;

fn check_size(width: usize, height: usize) -> Result<(), DetectorError> {
    if width == 0 || height == 0 {
        return Err(DetectorError::EmptyFrame { width, height });
    }
    let pixels = width.saturating_mul(height);
    if pixels > MAX_PIXELS {
        return Err(DetectorError::FrameTooLarge {
            width,
            height,
            pixels,
            max: MAX_PIXELS,
        });
    }
    Ok(())
}

/// Where each pyramid level lies in the tiled canvas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyramidLayout {
    /// Canvas height.
    pub rows: usize,
    /// Canvas width (image width + 2 · outer padding).
    pub cols: usize,
    /// Level rectangles (inclusive), level 0 = the image itself.
    pub levels: Vec<Rect>,
}

impl PyramidLayout {
    /// dlib's `compute_tiled_image_pyramid_details` for a `rows × cols` image: levels
    /// shrink by 5/6 until fewer than 5 rows remain; level 0 and the next ones go down a
    /// first column, the rest go up along the right edge.
    pub fn new(rows: usize, cols: usize, padding: usize, outer: usize) -> Self {
        let (pad, outer) = (padding as i64, outer as i64);
        let mut sizes = vec![(cols as i64, rows as i64)];
        let (mut nr, mut nc) = (rows as i64, cols as i64);
        let rate = (PYRAMID_N - 1.0) / PYRAMID_N;
        loop {
            nr = (rate * nr as f64).floor() as i64;
            nc = (rate * nc as f64).floor() as i64;
            if nr * nc == 0 || nr < 5 {
                break;
            }
            sizes.push((nc, nr));
        }
        let (w0, h0) = sizes[0];
        let total_h: i64 = sizes.iter().map(|&(_, h)| h + pad).sum::<i64>() - 2 * pad;
        let mut height = 0;
        let mut prev_w = 0;
        for &(w, h) in &sizes {
            if w <= w0 - prev_w - pad && (height - h0) * 2 >= total_h - h0 {
                break;
            }
            height += h + pad;
            prev_w = w;
        }
        height -= pad;

        let mut levels: Vec<Rect> = Vec::new();
        let mut y = outer;
        let mut i = 0;
        while y < height + outer && i < sizes.len() {
            let (w, h) = sizes[i];
            levels.push(Rect::new(outer, y, outer + w - 1, y + h - 1));
            y += h + pad;
            i += 1;
        }
        y -= pad;
        let Some(&first) = levels.first() else {
            // An empty image has no levels.
            return PyramidLayout {
                rows: (height.max(0) + 2 * outer) as usize,
                cols: (w0 + 2 * outer) as usize,
                levels,
            };
        };
        while i < sizes.len() {
            let (w, h) = sizes[i];
            let (right, bottom) = (outer + w0 - 1, y - 1);
            let (left, top) = (right - (w - 1), bottom - (h - 1));
            // Stop where a level would overlap the full-size image.
            let apart = left > first.right
                || right < first.left
                || top > first.bottom
                || bottom < first.top;
            if !apart {
                break;
            }
            levels.push(Rect::new(left, top, right, bottom));
            y -= h + pad;
            i += 1;
        }
        PyramidLayout {
            rows: (height + 2 * outer) as usize,
            cols: (w0 + 2 * outer) as usize,
            levels,
        }
    }
}

/// The network input: a planar `3 × rows × cols` canvas and its pyramid levels.
#[derive(Debug, Clone, PartialEq)]
pub struct MmodInput {
    /// Canvas height.
    pub rows: usize,
    /// Canvas width.
    pub cols: usize,
    /// `3 · rows · cols` values, channel-major (R plane, G plane, B plane); zero outside
    /// the levels.
    pub data: Vec<f32>,
    /// Level rectangles (inclusive) in canvas coordinates.
    pub levels: Vec<Rect>,
}

impl MmodInput {
    /// Builds the tiled pyramid of `image` as dlib's `input_rgb_image_pyramid` does:
    /// level 0 is `(p − mean)/256`, each further level an align-corners bilinear resize
    /// (in `f64`, stored as `f32`) of the previous level's canvas values.
    pub fn new(image: &RgbView<'_>, input: &InputRgbPyramid) -> Result<Self, DetectorError> {
        check_size(image.width(), image.height())?;
        let layout = PyramidLayout::new(
            image.height(),
            image.width(),
            input.pyramid_padding,
            input.outer_padding,
        );
        let (rows, cols) = (layout.rows, layout.cols);
        let plane = rows * cols;
        let mut data = vec![0f32; 3 * plane];
        let l0 = layout.levels[0];
        for y in 0..image.height() {
            let row = image.row(y);
            let at = (l0.top as usize + y) * cols + l0.left as usize;
            for (x, px) in row.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    data[c * plane + at + x] = (px[c] as f32 - input.mean[c]) / 256.0;
                }
            }
        }
        let mut line = Vec::new();
        for pair in layout.levels.windows(2) {
            let (src, dst) = (pair[0], pair[1]);
            let (ih, iw) = (height(src), width(src));
            let (oh, ow) = (height(dst), width(dst));
            let ys = (ih - 1) as f64 / (oh.max(2) - 1) as f64;
            let xs = (iw - 1) as f64 / (ow.max(2) - 1) as f64;
            let cols_at: Vec<(usize, usize, f64)> = (0..ow)
                .map(|x| {
                    let fx = x as f64 * xs;
                    let l = fx.floor() as usize;
                    (l, (l + 1).min(iw - 1), fx - l as f64)
                })
                .collect();
            for c in 0..3 {
                let base = c * plane;
                let at = |y: usize, x: usize| {
                    base + (src.top as usize + y) * cols + src.left as usize + x
                };
                for y in 0..oh {
                    let fy = y as f64 * ys;
                    let t = fy.floor() as usize;
                    let b = (t + 1).min(ih - 1);
                    let fy = fy - t as f64;
                    line.clear();
                    line.extend(cols_at.iter().map(|&(l, r, fx)| {
                        let v = |yy, xx| data[at(yy, xx)] as f64;
                        ((1.0 - fy) * ((1.0 - fx) * v(t, l) + fx * v(t, r))
                            + fy * ((1.0 - fx) * v(b, l) + fx * v(b, r)))
                            as f32
                    }));
                    let out = base + (dst.top as usize + y) * cols + dst.left as usize;
                    data[out..out + ow].copy_from_slice(&line);
                }
            }
        }
        Ok(MmodInput {
            rows,
            cols,
            data,
            levels: layout.levels,
        })
    }
}

fn width(r: Rect) -> usize {
    (r.right - r.left + 1) as usize
}

fn height(r: Rect) -> usize {
    (r.bottom - r.top + 1) as usize
}

/// One MMOD detection in image pixels (dlib's inclusive rectangle).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmodDetection {
    /// Network score (dlib's `confidence`).
    pub score: f32,
    /// The face rectangle.
    pub rect: Rect,
}

/// Score-map decoding for one MMOD model: the output→input point mapping of its conv
/// stack, its detector window and its NMS thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct MmodDecoder {
    /// Input pixels per score-map cell (8 for the face detector).
    pub stride: i64,
    /// Input coordinate of score-map cell 0 (14 for the face detector).
    pub offset: i64,
    /// Detector window width (80).
    pub window_width: f64,
    /// Detector window height (80).
    pub window_height: f64,
    /// NMS overlap test (IoU 0.33828, covered fraction 1.0).
    pub nms: BoxOverlap,
}

impl MmodDecoder {
    /// The decoder of `model`: composes dlib's `map_output_to_input`
    /// (`p·stride − pad + k/2`) over its convolutions, and takes its single detector
    /// window and its NMS thresholds.
    pub fn new(model: &MmodModel) -> Result<Self, DetectorError> {
        let unsupported = |m: String| Err(DetectorError::UnsupportedModel(m));
        let (mut stride, mut offset) = (1i64, 0i64);
        for layer in model.layers.iter().rev() {
            match layer {
                Layer::Con(c) => {
                    if c.stride_x != c.stride_y
                        || c.pad_x != c.pad_y
                        || c.kernel_rows != c.kernel_cols
                    {
                        return unsupported(format!("non-square convolution {c:?}"));
                    }
                    offset =
                        offset * c.stride_x as i64 - c.pad_x as i64 + (c.kernel_cols / 2) as i64;
                    stride *= c.stride_x as i64;
                }
                Layer::Affine(_) | Layer::Relu { .. } => {}
                other => return unsupported(format!("layer {other:?} in an MMOD net")),
            }
        }
        let windows = &model.loss.detector_windows;
        let [window] = windows.as_slice() else {
            return unsupported(format!(
                "{} detector windows (only one is supported)",
                windows.len()
            ));
        };
        Ok(MmodDecoder {
            stride,
            offset,
            window_width: window.width as f64,
            window_height: window.height as f64,
            nms: model.loss.overlaps_nms,
        })
    }

    /// Turns a `rows × cols` score map into detections: every cell scoring above
    /// `adjust_threshold` (0 in dlib's Python API) gives a window centred on its input
    /// point, mapped from the nearest pyramid level back to the image (`point_up`:
    /// `q·6/5 + 0.3` per level) and rounded; then greedy NMS in descending score order.
    pub fn decode(
        &self,
        scores: &[f32],
        rows: usize,
        cols: usize,
        levels: &[Rect],
        adjust_threshold: f32,
    ) -> Result<Vec<MmodDetection>, DetectorError> {
        if scores.len() != rows * cols {
            return Err(DetectorError::OutputSize {
                what: "MMOD score map",
                expected: rows * cols,
                got: scores.len(),
            });
        }
        if levels.is_empty() {
            return Err(DetectorError::UnsupportedModel("no pyramid levels".into()));
        }
        let (hw, hh) = (
            (self.window_width - 1.0) / 2.0,
            (self.window_height - 1.0) / 2.0,
        );
        let mut dets = Vec::new();
        for (i, &score) in scores.iter().enumerate() {
            if score.is_nan() || score <= adjust_threshold {
                continue;
            }
            let (r, c) = ((i / cols) as i64, (i % cols) as i64);
            let (px, py) = (
                (self.stride * c + self.offset) as f64,
                (self.stride * r + self.offset) as f64,
            );
            let level = nearest_rect(levels, (px + 0.5).floor() as i64, (py + 0.5).floor() as i64);
            let (ox, oy) = (levels[level].left as f64, levels[level].top as f64);
            let up = |mut v: f64| {
                for _ in 0..level {
                    v = v * PYRAMID_N / (PYRAMID_N - 1.0) + 0.3;
                }
                v.round() as i64
            };
            let rect = Rect::new(
                up(px - hw - ox),
                up(py - hh - oy),
                up(px + hw - ox),
                up(py + hh - oy),
            );
            dets.push(MmodDetection { score, rect });
        }
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut kept: Vec<MmodDetection> = Vec::new();
        for d in dets {
            if !kept.iter().any(|k| overlaps(&self.nms, &k.rect, &d.rect)) {
                kept.push(d);
            }
        }
        Ok(kept)
    }
}

/// dlib `nearest_rect`: the first rectangle containing the point, else the one nearest
/// to it (first on ties).
fn nearest_rect(rects: &[Rect], x: i64, y: i64) -> usize {
    let mut best = (f64::INFINITY, 0);
    for (i, r) in rects.iter().enumerate() {
        if (r.left..=r.right).contains(&x) && (r.top..=r.bottom).contains(&y) {
            return i;
        }
        let nx = x.clamp(r.left, r.right);
        let ny = y.clamp(r.top, r.bottom);
        let d = ((nx - x) as f64).hypot((ny - y) as f64);
        if d < best.0 {
            best = (d, i);
        }
    }
    best.1
}

fn area(r: &Rect) -> i64 {
    (r.right - r.left + 1) * (r.bottom - r.top + 1)
}

/// dlib `test_box_overlap` on inclusive rectangles. The "union" is the area of the
/// bounding box of both rectangles, as in dlib.
fn overlaps(t: &BoxOverlap, a: &Rect, b: &Rect) -> bool {
    let inner = Rect::new(
        a.left.max(b.left),
        a.top.max(b.top),
        a.right.min(b.right),
        a.bottom.min(b.bottom),
    );
    if inner.right < inner.left || inner.bottom < inner.top {
        return false;
    }
    let inner = area(&inner) as f64;
    let outer = area(&Rect::new(
        a.left.min(b.left),
        a.top.min(b.top),
        a.right.max(b.right),
        a.bottom.max(b.bottom),
    )) as f64;
    inner / outer > t.iou_thresh
        || inner / area(a) as f64 > t.percent_covered_thresh
        || inner / area(b) as f64 > t.percent_covered_thresh
}

/// dlib's rounding of a `dpoint` to a `point` (`floor(v + 0.5)`).
fn round_half_up(v: f64) -> i64 {
    (v + 0.5).floor() as i64
}

/// `pyramid_down<2>::rect_up`, `levels` times: corners map by `(p + (1.25, 0.75))·2`,
/// rounded.
pub fn rect_up(rect: Rect, levels: u32) -> Rect {
    (0..levels).fold(rect, |r, _| {
        let x = |v: i64| round_half_up((v as f64 + 1.25) * 2.0);
        let y = |v: i64| round_half_up((v as f64 + 0.75) * 2.0);
        Rect::new(x(r.left), y(r.top), x(r.right), y(r.bottom))
    })
}

/// `pyramid_down<2>::rect_down`, `levels` times: corners map by `p/2 − (1.25, 0.75)`,
/// rounded. Maps detections on a [`pyramid_up`]-ed image back to the original.
pub fn rect_down(rect: Rect, levels: u32) -> Rect {
    (0..levels).fold(rect, |r, _| {
        let x = |v: i64| round_half_up(v as f64 / 2.0 - 1.25);
        let y = |v: i64| round_half_up(v as f64 / 2.0 - 0.75);
        Rect::new(x(r.left), y(r.top), x(r.right), y(r.bottom))
    })
}

/// dlib `pyramid_up(img, pyramid_down<2>)`: the image resized (bilinear, align corners,
/// dlib's RGB `resize_image`) to `rect_up(get_rect(img))`, i.e. `(2W + 2) × (2H + 1)`.
/// Refuses results above [`MAX_PIXELS`]. For `--upsample N`, apply it N times, detect,
/// and map the rectangles back with [`rect_down`]`(rect, N)`, as dlib's Python API does.
pub fn pyramid_up(image: &RgbView<'_>) -> Result<RgbImage, DetectorError> {
    let (w, h) = (image.width(), image.height());
    check_size(w, h)?;
    let up = rect_up(Rect::new(0, 0, w as i64 - 1, h as i64 - 1), 1);
    let (ow, oh) = ((up.right + 1) as usize, (up.bottom + 1) as usize);
    check_size(ow, oh)?;
    Ok(resize_bilinear_rgb(image, ow, oh))
}

/// dlib's `resize_image(in, out, interpolate_bilinear)` for RGB images (dlib 20): rows
/// in `f64`; columns in 4-wide `f32` SIMD blocks while the right neighbour of the
/// fourth lane is inside the image (lane positions accumulate in `f32`, float→int
/// conversions truncate — checked byte for byte against dlib-bin 20.0.1), then a scalar
/// `f64` tail that truncates too.
fn resize_bilinear_rgb(src: &RgbView<'_>, ow: usize, oh: usize) -> RgbImage {
    let (iw, ih) = (src.width(), src.height());
    let mut out = RgbImage::new(ow, oh);
    let xs = (iw as f64 - 1.0) / (ow.max(2) - 1) as f64;
    let ys = (ih as f64 - 1.0) / (oh.max(2) - 1) as f64;
    let cvt = |v: f32| v as i64;
    let mut y = -ys;
    for r in 0..oh {
        y += ys;
        let top = y.floor() as usize;
        let bottom = (top + 1).min(ih - 1);
        let tb = y - top as f64;
        let (trow, brow) = (src.row(top), src.row(bottom));
        let orow = &mut out.data[r * ow * 3..(r + 1) * ow * 3];
        let x0 = -4.0 * xs;
        let mut lanes = [
            x0 as f32,
            (x0 + xs) as f32,
            (x0 + 2.0 * xs) as f32,
            (x0 + 3.0 * xs) as f32,
        ];
        let step = (4.0 * xs) as f32;
        let (tbf, inv_tbf) = (tb as f32, (1.0 - tb) as f32);
        let mut c = 0;
        loop {
            lanes.iter_mut().for_each(|l| *l += step);
            let left = lanes.map(cvt);
            if c + 3 >= ow || left[3] + 1 >= iw as i64 {
                break;
            }
            for k in 0..4 {
                let lr = lanes[k] - left[k] as f32;
                let inv_lr = 1.0 - lr;
                let (tlf, trf, blf, brf) = (inv_tbf * inv_lr, inv_tbf * lr, tbf * inv_lr, tbf * lr);
                let (l, rr) = (left[k] as usize * 3, (left[k] + 1) as usize * 3);
                for ch in 0..3 {
                    let v = tlf * trow[l + ch] as f32
                        + trf * trow[rr + ch] as f32
                        + blf * brow[l + ch] as f32
                        + brf * brow[rr + ch] as f32;
                    orow[(c + k) * 3 + ch] = cvt(v) as u8;
                }
            }
            c += 4;
        }
        let mut x = -xs + c as f64 * xs;
        for cc in c..ow {
            x += xs;
            let left = x.floor() as usize;
            let right = (left + 1).min(iw - 1);
            let lr = x - left as f64;
            for ch in 0..3 {
                let p = |row: &[u8], i: usize| row[i * 3 + ch] as f64;
                let v = (1.0 - tb) * ((1.0 - lr) * p(trow, left) + lr * p(trow, right))
                    + tb * ((1.0 - lr) * p(brow, left) + lr * p(brow, right));
                orow[cc * 3 + ch] = v as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_quirks() {
        let t = BoxOverlap {
            iou_thresh: 0.33828,
            percent_covered_thresh: 1.0,
        };
        let a = Rect::new(0, 0, 9, 9);
        assert!(overlaps(&t, &a, &a));
        assert!(!overlaps(&t, &a, &Rect::new(10, 0, 19, 9)));
        // Inner 5×10 = 50; bounding box 15×10 = 150 → 0.333 (true IoU 0.333 too).
        assert!(!overlaps(&t, &a, &Rect::new(5, 0, 14, 9)));
        // Inner 6×10 = 60 / bounding box 140 = 0.43.
        assert!(overlaps(&t, &a, &Rect::new(4, 0, 13, 9)));
        // Diagonal: inner 25, union 175 (IoU 0.14) but bounding box 225 — both below.
        assert!(!overlaps(&t, &a, &Rect::new(5, 5, 14, 14)));
    }

    #[test]
    fn tiny_and_huge_frames() {
        let mean = [122.782, 117.001, 104.298];
        let input = InputRgbPyramid {
            mean,
            pyramid_padding: 10,
            outer_padding: 11,
        };
        let px = [10u8, 20, 30];
        let one = RgbView::new(1, 1, &px).unwrap();
        let m = MmodInput::new(&one, &input).unwrap();
        assert_eq!((m.rows, m.cols, m.levels.len()), (23, 23, 1));
        assert_eq!(m.data[11 * 23 + 11], (10.0 - mean[0]) / 256.0);
        assert!(PyramidLayout::new(0, 7, 10, 11).levels.is_empty());
        let up = pyramid_up(&one).unwrap();
        assert_eq!((up.width, up.height), (4, 3));
        assert!(up.data.chunks_exact(3).all(|p| p == px));

        let empty = RgbView::new(0, 5, &[]).unwrap();
        assert!(matches!(
            MmodInput::new(&empty, &input),
            Err(DetectorError::EmptyFrame { .. })
        ));
        assert!(check_size(2048, 2048).is_ok());
        assert!(matches!(
            check_size(8000, 8000),
            Err(DetectorError::FrameTooLarge {
                pixels: 64_000_000,
                ..
            })
        ));
        let strip = vec![0u8; 8000 * 3];
        assert!(MmodInput::new(&RgbView::new(8000, 1, &strip).unwrap(), &input).is_ok());
    }
}
