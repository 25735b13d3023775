//! Image resizing shared by the detectors (and `--detect-width`).

use crate::view::{RgbImage, RgbView};

/// PIL's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// PIL `precompute_coeffs` for the bilinear (triangle) filter: per output pixel, the
/// first input pixel and the fixed-point weights.
fn pil_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C `(int)` casts truncate toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64)
                .min(in_size as i64)
                .max(xmin as i64) as usize;
            let mut k: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 { 1.0 - t } else { 0.0 }
                })
                .collect();
            let ww: f64 = k.iter().sum();
            if ww != 0.0 {
                k.iter_mut().for_each(|v| *v /= ww);
            }
            let one = (1u64 << PRECISION_BITS) as f64;
            let fixed = k
                .iter()
                .map(|&v| {
                    if v < 0.0 {
                        (-0.5 + v * one) as i64
                    } else {
                        (0.5 + v * one) as i64
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's `BILINEAR` resampling of an RGB image, vertical pass first: a triangle filter
/// widened by the scale when shrinking (so it antialiases), with PIL's fixed-point
/// weights (non-negative, summing to 2^22, so 8-bit pixels cannot overflow the 32-bit
/// sums) and 8-bit rounding after each pass.
///
/// PIL runs the horizontal pass first. Shrinking a frame, the vertical pass first is the
/// cheaper order (it runs over whole rows, which vectorises, and leaves the horizontal
/// pass a few rows); the two orders differ only in where the intermediate rounding
/// happens, so a pixel is PIL's or one level off (tested). Compiled for AVX2 and AVX-512
/// as well, chosen at run time through `pulp`.
pub fn resize_bilinear(src: &RgbView<'_>, w: usize, h: usize) -> RgbImage {
    pulp::Arch::new().dispatch(Resize { src, w, h })
}

/// [`resize_bilinear`]'s arguments, for `pulp`'s dispatch.
struct Resize<'a, 'b> {
    src: &'a RgbView<'b>,
    w: usize,
    h: usize,
}

impl pulp::WithSimd for Resize<'_, '_> {
    type Output = RgbImage;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> RgbImage {
        let columns = vertical_pass(self.src, &pil_coeffs(self.src.height(), self.h));
        horizontal_pass(&columns.view(), &pil_coeffs(self.src.width(), self.w))
    }
}

/// Taps per output pixel, padded to a multiple of this.
const LANES: usize = 8;

/// The horizontal pass: every row of `src` resampled to `horiz.len()` pixels.
///
/// Each source row is split into planes of `i32` with zeros after the end, and every
/// output pixel's taps are padded with zero weights to a multiple of 8, so each output
/// value is a fixed-length dot product the compiler vectorises.
#[inline(always)]
fn horizontal_pass(src: &RgbView<'_>, horiz: &[(usize, Vec<i64>)]) -> RgbImage {
    let (sw, w) = (src.width(), horiz.len());
    let half = 1i32 << (PRECISION_BITS - 1);
    // Horizontal taps as (first source pixel, weights padded with zeros to `taps`).
    let taps = horiz
        .iter()
        .map(|(_, k)| k.len())
        .max()
        .unwrap_or(0)
        .div_ceil(LANES)
        .max(1)
        * LANES;
    let weights: Vec<i32> = horiz
        .iter()
        .flat_map(|(_, k)| {
            k.iter()
                .map(|&v| v as i32)
                .chain(std::iter::repeat(0))
                .take(taps)
        })
        .collect();
    let mut out = RgbImage::new(w, src.height());
    let mut channel = [
        vec![0i32; sw + taps],
        vec![0i32; sw + taps],
        vec![0i32; sw + taps],
    ];
    for (y, dst) in out.data.chunks_exact_mut(w * 3).enumerate() {
        let [r, g, b] = &mut channel;
        for (((p, r), g), b) in src
            .row(y)
            .chunks_exact(3)
            .zip(r.iter_mut())
            .zip(g.iter_mut())
            .zip(b.iter_mut())
        {
            (*r, *g, *b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
        }
        for (((x0, _), k), px) in horiz
            .iter()
            .zip(weights.chunks_exact(taps))
            .zip(dst.chunks_exact_mut(3))
        {
            for (c, plane) in channel.iter().enumerate() {
                let from = &plane[*x0..x0 + taps];
                let mut lanes = [0i32; LANES];
                for (f, k) in from.chunks_exact(LANES).zip(k.chunks_exact(LANES)) {
                    for ((l, &f), &k) in lanes.iter_mut().zip(f).zip(k) {
                        *l += f * k;
                    }
                }
                px[c] = clip8(half + lanes.iter().sum::<i32>());
            }
        }
    }
    out
}

/// The vertical pass: `src` resampled to `vert.len()` rows, each a weighted sum of
/// whole source rows.
#[inline(always)]
fn vertical_pass(src: &RgbView<'_>, vert: &[(usize, Vec<i64>)]) -> RgbImage {
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut out = RgbImage::new(src.width(), vert.len());
    let mut acc = vec![0i32; src.width() * 3];
    for ((y0, k), dst) in vert.iter().zip(out.data.chunks_exact_mut(acc.len())) {
        acc.fill(half);
        for (j, &kk) in k.iter().enumerate() {
            let kk = kk as i32;
            for (a, &p) in acc.iter_mut().zip(src.row(y0 + j)) {
                *a += i32::from(p) * kk;
            }
        }
        for (d, &a) in dst.iter_mut().zip(&acc) {
            *d = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One pass of the straightforward loop over each output value's taps: `src` (`w`×`h`
    /// pixels) resampled along x (`horizontal`) or y.
    fn per_tap_pass(src: &[u8], w: usize, h: usize, out_size: usize, horizontal: bool) -> Vec<u8> {
        let (ow, oh) = if horizontal {
            (out_size, h)
        } else {
            (w, out_size)
        };
        let coeffs = pil_coeffs(if horizontal { w } else { h }, out_size);
        let half = 1i32 << (PRECISION_BITS - 1);
        let mut out = vec![0u8; ow * oh * 3];
        for y in 0..oh {
            for x in 0..ow {
                for c in 0..3 {
                    let (x0, k) = &coeffs[if horizontal { x } else { y }];
                    let mut acc = half;
                    for (j, &kk) in k.iter().enumerate() {
                        let (sx, sy) = if horizontal { (x0 + j, y) } else { (x, x0 + j) };
                        acc += i32::from(src[(sy * w + sx) * 3 + c]) * kk as i32;
                    }
                    out[(y * ow + x) * 3 + c] = clip8(acc);
                }
            }
        }
        out
    }

    /// The per-tap loop in our order (vertical, then horizontal) and in PIL's.
    fn references(src: &RgbView<'_>, w: usize, h: usize) -> (Vec<u8>, Vec<u8>) {
        let (sw, sh) = (src.width(), src.height());
        let data: Vec<u8> = (0..sh).flat_map(|y| src.row(y).to_vec()).collect();
        let ours = per_tap_pass(&per_tap_pass(&data, sw, sh, h, false), sw, h, w, true);
        let pil = per_tap_pass(&per_tap_pass(&data, sw, sh, w, true), w, sh, h, false);
        (ours, pil)
    }

    #[test]
    fn matches_the_per_tap_loop_and_pil_within_a_level() {
        let mut seed = 7u32;
        for (sw, sh, w, h) in [
            (1280, 720, 192, 108),
            (1920, 1080, 192, 108),
            (37, 23, 11, 5),
            (5, 4, 13, 9),
            (640, 360, 640, 360),
            (1, 1, 3, 2),
            (3000, 7, 1, 1),
        ] {
            let data: Vec<u8> = (0..sw * sh * 3)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let view = RgbView::new(sw, sh, &data).unwrap();
            let got = resize_bilinear(&view, w, h);
            let (ours, pil) = references(&view, w, h);
            assert_eq!(got.data, ours, "{sw}x{sh} → {w}x{h}");
            let worst = got.data.iter().zip(&pil).map(|(a, b)| a.abs_diff(*b)).max();
            assert!(
                worst <= Some(1),
                "{sw}x{sh} → {w}x{h}: {worst:?} levels from PIL"
            );
        }
    }
}
