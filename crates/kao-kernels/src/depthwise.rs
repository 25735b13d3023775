//! Depthwise convolutions ([`Depthwise`]), BlazeFace's most frequent op: each output
//! plane summed in registers over the filter's taps, compiled three times (see
//! [`CpuLevel`]): with 16-lane fused multiply-adds (`avx512`), 8-lane ones (`avx2`), and
//! portable code without fused multiply-adds (`scalar`), all from one generic source.

use crate::cpu::{Pool, Window, relu_in_place};
use crate::level::{CpuLevel, Level};

/// Outputs per register block of a stride-1 depthwise convolution (4 AVX registers).
const BLOCK: usize = 32;

/// A depthwise convolution with channel multiplier `multiplier`: output channel `c·m + j`
/// reads input channel `c`; weights `[C·m, kh·kw]`.
#[derive(Debug, Clone)]
pub struct Depthwise {
    /// `[C·m, kh·kw]`.
    pub weight: Vec<f32>,
    /// `C·m` values.
    pub bias: Vec<f32>,
    /// The window.
    pub window: Window,
    /// Output channels per input channel.
    pub multiplier: usize,
    /// Whether a relu follows.
    pub relu: bool,
}

impl Depthwise {
    /// The convolution of `x` (NCHW, `[N, C, H, W]` = `input`) at `level`, plane by plane:
    /// `[N, C·m, OH, OW]` = `out`.
    ///
    /// # Panics
    /// If the sizes do not agree (checked when the network was read).
    pub fn forward(
        &self,
        level: CpuLevel,
        x: &[f32],
        input: [usize; 4],
        out: [usize; 4],
        pool: &mut Pool,
    ) -> Vec<f32> {
        depthwise(level, x, input, self, out, pool)
    }
}

/// [`Depthwise::forward`].
fn depthwise(
    level: CpuLevel,
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    dw: &Depthwise,
    out: [usize; 4],
    pool: &mut Pool,
) -> Vec<f32> {
    let Depthwise {
        weight,
        bias,
        window,
        multiplier,
        relu,
    } = dw;
    let [_, oc, oh, ow] = out;
    assert!(
        x.len() == n * c * h * w
            && out[0] == n
            && oc == c * multiplier
            && bias.len() == oc
            && weight.len() == oc * window.kernel[0] * window.kernel[1]
            && [window.out_size(h, 0), window.out_size(w, 1)] == [oh, ow],
        "sizes checked when the network was read"
    );
    let layout = Layout::new(window, [h, w], [oh, ow]);
    // Each channel's taps, zero-padded to whole passes like the offsets.
    let (taps, padded_taps) = (window.kernel[0] * window.kernel[1], layout.offsets.len());
    let mut weights = pool.empty(oc * padded_taps);
    for t in weight.chunks_exact(taps) {
        weights.extend_from_slice(t);
        weights.resize(weights.len() + padded_taps - taps, 0.0);
    }
    let mut scratch = Scratch {
        // Zero borders (and phase ends): planes overwrite only the interior.
        padded: pool.filled(layout.rows * layout.columns, 0.0),
        phases: pool.filled(layout.phases_len(), 0.0),
        flat: pool.empty(layout.flat_len()),
    };
    let mut data = pool.empty(out.iter().product());
    for i in 0..n * oc {
        let (b, ch) = (i / oc, i % oc);
        let src = &x[(b * c + ch / multiplier) * h * w..][..h * w];
        let taps = &weights[ch * padded_taps..][..padded_taps];
        let plane = Plane {
            layout: &layout,
            src,
            taps,
            bias: bias[ch],
            relu: *relu,
        };
        depthwise_plane(level, plane, &mut scratch, &mut data);
    }
    let Scratch {
        padded,
        phases,
        flat,
    } = scratch;
    for v in [weights, padded, phases, flat] {
        pool.recycle(v);
    }
    data
}

/// Where a depthwise convolution's taps read, shared by all its planes. The input plane is
/// copied into a zero-bordered one of `rows × columns`, so every tap of every output pixel
/// reads inside it; a column stride `S` > 1 then splits each padded row into its `S`
/// phases (columns `p, p + S, …`, `pitch` each), after which every tap reads a contiguous
/// run for a run of outputs, as with stride 1: output `(y, x)` is
/// `bias + Σ weight · phase[kx mod S][y·Sy + ky][x + kx div S]`.
struct Layout {
    /// Input plane `[rows, columns]`.
    input: [usize; 2],
    /// Output plane `[rows, columns]`.
    output: [usize; 2],
    /// Zero-bordered plane size.
    rows: usize,
    columns: usize,
    /// Where the input goes in it.
    top: usize,
    left: usize,
    /// `[row, column]` stride.
    stride: [usize; 2],
    /// Columns per phase (`columns` for stride 1).
    pitch: usize,
    /// Offset of each tap from an output's first tap in the phases (or the padded plane),
    /// padded with zeros to whole passes of [`TAPS_PER_PASS`].
    offsets: Vec<usize>,
}

impl Layout {
    fn new(window: &Window, input: [usize; 2], output: [usize; 2]) -> Self {
        let ([kh, kw], [sy, sx]) = (window.kernel, window.stride);
        let [[top, _], [left, _]] = window.pad;
        let rows = ((output[0] - 1) * sy + kh).max(top + input[0]);
        let columns = ((output[1] - 1) * sx + kw).max(left + input[1]);
        let pitch = columns.div_ceil(sx);
        let mut offsets: Vec<usize> = (0..kh)
            .flat_map(|ky| (0..kw).map(move |kx| ((kx % sx) * rows + ky) * pitch + kx / sx))
            .collect();
        offsets.resize(offsets.len().div_ceil(TAPS_PER_PASS) * TAPS_PER_PASS, 0);
        Self {
            input,
            output,
            rows,
            columns,
            top,
            left,
            stride: [sy, sx],
            pitch,
            offsets,
        }
    }

    /// Values of the column phases (none for stride 1).
    fn phases_len(&self) -> usize {
        if self.stride[1] > 1 {
            self.stride[1] * self.rows * self.pitch
        } else {
            0
        }
    }

    /// Whether the outputs are summed as one long row (see [`depthwise_plane_generic`]).
    fn flat(&self) -> bool {
        self.stride == [1, 1] && self.output[1] < BLOCK
    }

    /// Values of the flat outputs (none unless [`Layout::flat`]).
    fn flat_len(&self) -> usize {
        let [oh, ow] = self.output;
        if self.flat() {
            (oh - 1) * self.columns + ow
        } else {
            0
        }
    }
}

/// Working memory of [`depthwise_plane`], kept from plane to plane of one convolution.
struct Scratch {
    /// The zero-bordered input plane.
    padded: Vec<f32>,
    /// The column phases of `padded` for a column stride above 1.
    phases: Vec<f32>,
    /// Stride-1 outputs of a narrow plane at flat positions, with the columns between rows.
    flat: Vec<f32>,
}

/// One plane of a depthwise convolution: the input, the filter and what follows it.
#[derive(Clone, Copy)]
struct Plane<'a> {
    layout: &'a Layout,
    /// The input plane.
    src: &'a [f32],
    /// The filter's taps, padded like [`Layout::offsets`].
    taps: &'a [f32],
    bias: f32,
    relu: bool,
}

/// One output plane of [`depthwise`], appended to `dst`, with the instructions of `level`.
fn depthwise_plane(level: CpuLevel, plane: Plane<'_>, scratch: &mut Scratch, dst: &mut Vec<f32>) {
    match level.level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F, AVX2 and FMA (a `CpuLevel` is checked when made).
        Level::Avx512 => unsafe { depthwise_plane_avx512(plane, scratch, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (a `CpuLevel` is checked when made).
        Level::Avx2 => unsafe { depthwise_plane_fma(plane, scratch, dst) },
        _ => depthwise_plane_generic::<false>(plane, scratch, dst),
    }
}

/// [`depthwise_plane_generic`] compiled for AVX-512 (16-lane fused multiply-adds).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn depthwise_plane_avx512(plane: Plane<'_>, scratch: &mut Scratch, dst: &mut Vec<f32>) {
    depthwise_plane_generic::<true>(plane, scratch, dst);
}

/// [`depthwise_plane_generic`] compiled for AVX2 with fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn depthwise_plane_fma(plane: Plane<'_>, scratch: &mut Scratch, dst: &mut Vec<f32>) {
    depthwise_plane_generic::<true>(plane, scratch, dst);
}

/// One output plane (see [`Layout`]): each output row is summed in registers over the
/// taps, in blocks of 32 and 8 columns; a stride-1 plane narrower than a block is treated
/// as one long row instead (output `(y, x)` at flat index `y·columns + x`, the columns
/// between rows computed and dropped).
#[inline(always)]
fn depthwise_plane_generic<const FMA: bool>(
    plane: Plane<'_>,
    scratch: &mut Scratch,
    dst: &mut Vec<f32>,
) {
    let Plane {
        layout,
        src,
        taps,
        bias,
        relu,
    } = plane;
    let Layout {
        input: [_, w],
        output: [oh, ow],
        columns,
        top,
        left,
        stride: [sy, sx],
        pitch,
        ref offsets,
        ..
    } = *layout;
    let Scratch {
        padded,
        phases,
        flat,
    } = scratch;
    for (y, row) in src.chunks_exact(w).enumerate() {
        padded[(y + top) * columns + left..][..w].copy_from_slice(row);
    }
    let source: &[f32] = if sx > 1 {
        split_columns(padded, columns, sx, phases, pitch);
        phases
    } else {
        padded
    };
    let start = dst.len();
    if layout.flat() {
        flat.clear();
        flat.resize(layout.flat_len(), 0.0);
        sum_taps::<FMA>(flat, bias, source, offsets, taps);
        for row in flat.chunks(columns) {
            dst.extend_from_slice(&row[..ow]);
        }
    } else {
        for y in 0..oh {
            let at = dst.len();
            dst.resize(at + ow, 0.0);
            let from = &source[y * sy * pitch..];
            sum_taps::<FMA>(&mut dst[at..], bias, from, offsets, taps);
        }
    }
    if relu {
        relu_in_place(&mut dst[start..]);
    }
}

/// The `stride` column phases of the rows of `padded` (`columns` wide) into `phases`: phase
/// `p` holds columns `p, p + stride, …` of each row, `pitch` values per row (those past
/// the phase's end are left as they are).
#[inline(always)]
fn split_columns(padded: &[f32], columns: usize, stride: usize, phases: &mut [f32], pitch: usize) {
    let rows = padded.len() / columns;
    if stride == 2 {
        let (even, odd) = phases.split_at_mut(rows * pitch);
        for ((row, e), o) in padded
            .chunks_exact(columns)
            .zip(even.chunks_exact_mut(pitch))
            .zip(odd.chunks_exact_mut(pitch))
        {
            // Pairs, so that the compiler vectorises the split.
            for ((pair, e), o) in row.chunks_exact(2).zip(e.iter_mut()).zip(o) {
                (*e, *o) = (pair[0], pair[1]);
            }
            if columns % 2 == 1 {
                e[columns / 2] = row[columns - 1];
            }
        }
        return;
    }
    for (p, phase) in phases.chunks_exact_mut(rows * pitch).enumerate() {
        for (row, to) in padded
            .chunks_exact(columns)
            .zip(phase.chunks_exact_mut(pitch))
        {
            // A row narrower than the stride has no column in the last phases.
            let from = row.get(p..).unwrap_or_default();
            for (d, &v) in to.iter_mut().zip(from.iter().step_by(stride)) {
                *d = v;
            }
        }
    }
}

/// Taps summed in registers per pass over a run of outputs (a 3×3 window in one pass).
const TAPS_PER_PASS: usize = 9;

/// `out[q] = bias + Σ taps[k] · source[q + offsets[k]]` for every `q` of `out`, with the
/// taps (and their offsets) zero-padded to a multiple of [`TAPS_PER_PASS`]: blocks of
/// outputs small enough to stay in registers across a pass, then smaller blocks, then
/// single values.
#[inline(always)]
fn sum_taps<const FMA: bool>(
    out: &mut [f32],
    bias: f32,
    source: &[f32],
    offsets: &[usize],
    taps: &[f32],
) {
    for (pass, (offsets, taps)) in offsets
        .chunks_exact(TAPS_PER_PASS)
        .zip(taps.chunks_exact(TAPS_PER_PASS))
        .enumerate()
    {
        let offsets: &[usize; TAPS_PER_PASS] = offsets.try_into().expect("a pass of taps");
        let taps: &[f32; TAPS_PER_PASS] = taps.try_into().expect("a pass of taps");
        let init = (pass == 0).then_some(bias);
        let mut q = blocks::<FMA, BLOCK>(out, 0, init, source, offsets, taps);
        q = blocks::<FMA, 8>(out, q, init, source, offsets, taps);
        for (a, q) in out[q..].iter_mut().zip(q..) {
            let mut acc = init.unwrap_or(*a);
            for (&off, &t) in offsets.iter().zip(taps) {
                let x = source[q + off];
                acc = if FMA { x.mul_add(t, acc) } else { acc + x * t };
            }
            *a = acc;
        }
    }
}

/// Outputs `out[q..]` in whole blocks of `B`, each summed in registers over one pass of
/// taps, starting from `init` (or from `out`'s values): `out[q] = init + Σ taps[k] ·
/// source[q + offsets[k]]`. Returns where the blocks end.
#[inline(always)]
fn blocks<const FMA: bool, const B: usize>(
    out: &mut [f32],
    q: usize,
    init: Option<f32>,
    source: &[f32],
    offsets: &[usize; TAPS_PER_PASS],
    taps: &[f32; TAPS_PER_PASS],
) -> usize {
    let whole = (out.len() - q) / B * B;
    // Copies, so that the taps stay in registers across the blocks.
    let (offsets, taps) = (*offsets, *taps);
    for (b, out) in out[q..q + whole].chunks_exact_mut(B).enumerate() {
        let at = q + b * B;
        let mut acc: [f32; B] = match init {
            Some(v) => [v; B],
            None => out.try_into().expect("B values"),
        };
        for (off, t) in offsets.into_iter().zip(taps) {
            let from: &[f32; B] = source[at + off..][..B].try_into().expect("B values");
            for (a, &x) in acc.iter_mut().zip(from) {
                *a = if FMA { x.mul_add(t, *a) } else { *a + x * t };
            }
        }
        out.copy_from_slice(&acc);
    }
    q + whole
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::tests::Rng;

    /// The textbook depthwise convolution, `[N, C·m, OH, OW]`.
    fn textbook(x: &[f32], [n, c, h, w]: [usize; 4], dw: &Depthwise) -> Vec<f32> {
        let window = &dw.window;
        let (oh, ow) = (window.out_size(h, 0), window.out_size(w, 1));
        let [kh, kw] = window.kernel;
        let oc = c * dw.multiplier;
        let mut out = Vec::new();
        for b in 0..n {
            for o in 0..oc {
                let plane = &x[(b * c + o / dw.multiplier) * h * w..][..h * w];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = dw.bias[o];
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * window.stride[0] + ky).checked_sub(window.pad[0][0]);
                                let ix = (ox * window.stride[1] + kx).checked_sub(window.pad[1][0]);
                                if let (Some(iy), Some(ix)) = (iy, ix)
                                    && iy < h
                                    && ix < w
                                {
                                    acc += plane[iy * w + ix] * dw.weight[(o * kh + ky) * kw + kx];
                                }
                            }
                        }
                        out.push(if dw.relu { acc.max(0.0) } else { acc });
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_level_matches_scalar_and_the_textbook_on_random_shapes() {
        let mut pool = Pool::default();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let levels = CpuLevel::available();
        for case in 0..200 {
            let kernel = [1 + rng.below(5), 1 + rng.below(5)];
            let stride = [1 + rng.below(3), 1 + rng.below(3)];
            let pad = [
                [rng.below(kernel[0]), rng.below(kernel[0])],
                [rng.below(kernel[1]), rng.below(kernel[1])],
            ];
            // Widths around the register blocks (8 and 32 outputs) and a single column.
            let width = |rng: &mut Rng, k: usize, s: usize| match rng.below(5) {
                0 => 1,
                1 => [7, 8, 9, 31, 32, 33, 63, 64, 65][rng.below(9)] * s + k,
                _ => 1 + rng.below(80),
            };
            let (h, w) = (1 + rng.below(12), width(&mut rng, kernel[1], stride[1]));
            // Planes narrower than the column stride (plus padding) included.
            let columns = w + pad[1][0] + pad[1][1];
            if h + pad[0][0] + pad[0][1] < kernel[0] || columns < kernel[1] {
                continue;
            }
            let (n, c, multiplier) = (1 + rng.below(2), 1 + rng.below(3), 1 + rng.below(2));
            let oc = c * multiplier;
            let window = Window {
                kernel,
                stride,
                pad,
            };
            let dw = Depthwise {
                weight: rng.values(oc * kernel[0] * kernel[1]),
                bias: rng.values(oc),
                window,
                multiplier,
                relu: rng.below(2) == 1,
            };
            let x = rng.values(n * c * h * w);
            let out = [n, oc, window.out_size(h, 0), window.out_size(w, 1)];
            let want = textbook(&x, [n, c, h, w], &dw);
            let scalar = dw.forward(CpuLevel::SCALAR, &x, [n, c, h, w], out, &mut pool);
            for &level in &levels {
                let got = dw.forward(level, &x, [n, c, h, w], out, &mut pool);
                assert_eq!(got.len(), want.len());
                let off = |other: &[f32]| {
                    got.iter()
                        .zip(other)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max)
                };
                // Sums of at most 25 products of values below 1: fused or not, the
                // roundings differ by a few ulps.
                let (vs_scalar, vs_textbook) = (off(&scalar), off(&want));
                assert!(
                    vs_scalar < 1e-5 && vs_textbook < 1e-5,
                    "case {case}, {level}: {kernel:?} stride {stride:?} pad {pad:?} on \
                     {n}×{c}×{h}×{w}: off by {vs_scalar} from scalar, {vs_textbook} from \
                     the textbook"
                );
            }
        }
    }
}
