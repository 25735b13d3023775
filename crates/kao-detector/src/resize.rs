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

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL `Image.resize((w, h), BILINEAR)` of an RGB image: a triangle filter widened by the
/// scale when shrinking (so it antialiases), horizontal then vertical pass, each rounded
/// to 8 bits. Sums are PIL's 32-bit fixed point (weights are non-negative and sum to
/// 2^22, so 8-bit pixels cannot overflow them).
pub fn resize_bilinear(src: &RgbView<'_>, w: usize, h: usize) -> RgbImage {
    let (sw, sh) = (src.width(), src.height());
    let narrow = |coeffs: Vec<(usize, Vec<i64>)>| -> Vec<(usize, Vec<i32>)> {
        coeffs
            .into_iter()
            .map(|(x0, k)| (x0, k.into_iter().map(|v| v as i32).collect()))
            .collect()
    };
    let horiz = narrow(pil_coeffs(sw, w));
    let vert = narrow(pil_coeffs(sh, h));
    let half = 1i32 << (PRECISION_BITS - 1);
    // Only the rows the vertical pass reads need the horizontal pass.
    let first = vert.iter().map(|(y0, _)| *y0).min().unwrap_or(0);
    let last = vert.iter().map(|(y0, k)| y0 + k.len()).max().unwrap_or(0);
    let mut temp = vec![0u8; (last - first) * w * 3];
    for y in first..last {
        let row = src.row(y);
        let out = &mut temp[(y - first) * w * 3..(y - first + 1) * w * 3];
        for ((x0, k), px) in horiz.iter().zip(out.chunks_exact_mut(3)) {
            let taps = &row[x0 * 3..(x0 + k.len()) * 3];
            let (mut r, mut g, mut b) = (half, half, half);
            for (&kk, p) in k.iter().zip(taps.chunks_exact(3)) {
                r += p[0] as i32 * kk;
                g += p[1] as i32 * kk;
                b += p[2] as i32 * kk;
            }
            px.copy_from_slice(&[clip8(r), clip8(g), clip8(b)]);
        }
    }
    let stride = w * 3;
    let mut out = vec![0u8; h * stride];
    let mut acc = vec![0i32; stride];
    for ((y0, k), dst) in vert.iter().zip(out.chunks_exact_mut(stride)) {
        acc.fill(half);
        for (j, &kk) in k.iter().enumerate() {
            let at = (y0 + j - first) * stride;
            for (a, &p) in acc.iter_mut().zip(&temp[at..at + stride]) {
                *a += p as i32 * kk;
            }
        }
        for (d, &a) in dst.iter_mut().zip(&acc) {
            *d = clip8(a);
        }
    }
    RgbImage {
        width: w,
        height: h,
        data: out,
    }
}
