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
/// 2^22, so 8-bit pixels cannot overflow them), so the result is PIL's to the bit.
///
/// Each source row is split into planes of `i32` with zeros after the end, and every
/// output pixel's taps are padded with zero weights to a multiple of 8, so the horizontal
/// pass is fixed-length dot products the compiler vectorises (compiled for AVX2 as well,
/// chosen at run time through `pulp`).
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
        resize_bilinear_generic(self.src, self.w, self.h)
    }
}

/// Taps per output pixel, padded to a multiple of this.
const LANES: usize = 8;

#[inline(always)]
fn resize_bilinear_generic(src: &RgbView<'_>, w: usize, h: usize) -> RgbImage {
    let (sw, sh) = (src.width(), src.height());
    let horiz = pil_coeffs(sw, w);
    let vert = pil_coeffs(sh, h);
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
    // Only the rows the vertical pass reads need the horizontal pass.
    let first = vert.iter().map(|(y0, _)| *y0).min().unwrap_or(0);
    let last = vert.iter().map(|(y0, k)| y0 + k.len()).max().unwrap_or(0);
    let mut temp = vec![0u8; (last - first) * w * 3];
    let mut channel = [
        vec![0i32; sw + taps],
        vec![0i32; sw + taps],
        vec![0i32; sw + taps],
    ];
    for y in first..last {
        let row = src.row(y);
        let [r, g, b] = &mut channel;
        for (((p, r), g), b) in row
            .chunks_exact(3)
            .zip(r.iter_mut())
            .zip(g.iter_mut())
            .zip(b.iter_mut())
        {
            (*r, *g, *b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
        }
        let out = &mut temp[(y - first) * w * 3..(y - first + 1) * w * 3];
        for (((x0, _), k), px) in horiz
            .iter()
            .zip(weights.chunks_exact(taps))
            .zip(out.chunks_exact_mut(3))
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
    vertical_pass(&temp, &vert, first, w, h)
}

/// PIL's vertical pass: the `h` output rows of width `w` from `temp`, the horizontal
/// pass's rows from source row `first` on, each a weighted sum of whole rows.
#[inline(always)]
fn vertical_pass(
    temp: &[u8],
    vert: &[(usize, Vec<i64>)],
    first: usize,
    w: usize,
    h: usize,
) -> RgbImage {
    let half = 1i32 << (PRECISION_BITS - 1);
    let stride = w * 3;
    let mut out = vec![0u8; h * stride];
    let mut acc = vec![0i32; stride];
    for ((y0, k), dst) in vert.iter().zip(out.chunks_exact_mut(stride)) {
        acc.fill(half);
        for (j, &kk) in k.iter().enumerate() {
            let at = (y0 + j - first) * stride;
            let kk = kk as i32;
            for (a, &p) in acc.iter_mut().zip(&temp[at..at + stride]) {
                *a += i32::from(p) * kk;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward loop over each pixel's taps (the implementation before the
    /// vectorised one), for comparison.
    fn reference(src: &RgbView<'_>, w: usize, h: usize) -> RgbImage {
        let (sw, sh) = (src.width(), src.height());
        let narrow = |coeffs: Vec<(usize, Vec<i64>)>| -> Vec<(usize, Vec<i32>)> {
            coeffs
                .into_iter()
                .map(|(x0, k)| (x0, k.into_iter().map(|v| v as i32).collect()))
                .collect()
        };
        let horiz = narrow(pil_coeffs(sw, w));
        let vert = pil_coeffs(sh, h);
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
        // The vertical pass is the implementation's own (it did not change).
        vertical_pass(&temp, &vert, first, w, h)
    }

    #[test]
    fn matches_the_per_tap_loop_to_the_bit() {
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
            assert_eq!(got.data, reference(&view, w, h).data, "{sw}x{sh} → {w}x{h}");
            assert_eq!(got.data, resize_bilinear_generic(&view, w, h).data);
        }
    }
}
