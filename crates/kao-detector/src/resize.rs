//! Image resizing shared by the detectors (and `--detect-width`).

use kao_dlib::{RgbImage, RgbView};

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

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL `Image.resize((w, h), BILINEAR)` of an RGB image: a triangle filter widened by the
/// scale when shrinking (so it antialiases), horizontal then vertical pass, each rounded
/// to 8 bits.
pub fn resize_bilinear(src: &RgbView<'_>, w: usize, h: usize) -> RgbImage {
    let (sw, sh) = (src.width(), src.height());
    let horiz = pil_coeffs(sw, w);
    let vert = pil_coeffs(sh, h);
    let half = 1i64 << (PRECISION_BITS - 1);
    // Only the rows the vertical pass reads need the horizontal pass.
    let first = vert.iter().map(|(y0, _)| *y0).min().unwrap_or(0);
    let last = vert.iter().map(|(y0, k)| y0 + k.len()).max().unwrap_or(0);
    let mut temp = vec![0u8; (last - first) * w * 3];
    for y in first..last {
        let row = src.row(y);
        let out = &mut temp[(y - first) * w * 3..(y - first + 1) * w * 3];
        for (x, (x0, k)) in horiz.iter().enumerate() {
            for c in 0..3 {
                let acc = k.iter().enumerate().fold(half, |acc, (i, &kk)| {
                    acc + row[(x0 + i) * 3 + c] as i64 * kk
                });
                out[x * 3 + c] = clip8(acc);
            }
        }
    }
    let mut out = vec![0u8; h * w * 3];
    for (y, (y0, k)) in vert.iter().enumerate() {
        for i in 0..w * 3 {
            let acc = k.iter().enumerate().fold(half, |acc, (j, &kk)| {
                acc + temp[(y0 + j - first) * w * 3 + i] as i64 * kk
            });
            out[y * w * 3 + i] = clip8(acc);
        }
    }
    RgbImage { width: w, height: h, data: out }
}
