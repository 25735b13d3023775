//! Direct convolution for the ResNet's large early layers (the stem and the 35×35 and
//! 17×17 blocks): each output is summed in registers straight from the input, with no
//! im2col matrix. On those layers im2col's nine-fold copy, and gemm packing it again, cost
//! as much as the multiply-adds.
//!
//! The input is laid out so that every tap reads a contiguous run of values for a run of
//! outputs. Each plane is zero-padded and, for a stride `s` > 1, split into its `s²` phases
//! (rows `py, py + s, …`, columns `px, px + s, …`), every phase `pitch` columns wide. Output
//! `(y, x)` is position `q = y·pitch + x` of a grid as wide as the phases, and tap
//! `(c, ky, kx)` reads the source at `q + offset(c, ky, kx)`. The grid's columns `x ≥ OW`
//! are summed too and dropped.
//!
//! The kernels sum [`GROUP`] output channels over a block of positions at once (AVX-512:
//! 8 channels × 48 positions in 24 registers; AVX2: two halves of 4 channels × 24). Without
//! AVX2 and FMA, [`Direct::forward`] declines and the caller uses im2col.

use crate::cpu::{Pool, Window, max_pool_plane};

/// Output channels whose weights are packed together, one broadcast each per tap.
const GROUP: usize = 8;

/// A convolution's weights for the direct kernels: `[O / GROUP][K][GROUP]`, taps in OIHW
/// order (channel, row, column).
#[derive(Debug, Clone)]
pub(super) struct Direct {
    weights: Vec<f32>,
}

/// The vector instructions a direct convolution runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
}

impl Isa {
    /// What this CPU has, if any of them (the widest).
    fn detect() -> Option<Self> {
        Self::available().first().copied()
    }

    /// Every kind this CPU can run, widest first.
    fn available() -> Vec<Self> {
        let mut found = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") {
                found.push(Isa::Avx512);
            }
            if has!("avx2") && has!("fma") {
                found.push(Isa::Avx2);
            }
        }
        found
    }

    /// Positions summed together by one kernel call.
    fn block(self) -> usize {
        match self {
            Isa::Avx512 => 48,
            Isa::Avx2 => 24,
        }
    }
}

impl Direct {
    /// Packs OIHW weights `[o][k]`; `None` when `o` is not a whole number of groups.
    pub(super) fn new(weight: &[f32], o: usize, k: usize) -> Option<Self> {
        if !o.is_multiple_of(GROUP) || weight.len() != o * k {
            return None;
        }
        let mut weights = Vec::with_capacity(o * k);
        for group in weight.chunks_exact(GROUP * k) {
            for t in 0..k {
                weights.extend((0..GROUP).map(|j| group[j * k + t]));
            }
        }
        Some(Self { weights })
    }

    /// The convolution of `x` with `bias`, then what `after` asks, as `[O][N][H·W]` (the
    /// convolution's output size, or the pool's); `None` on a CPU without the kernels'
    /// instructions or for a padded pool.
    pub(super) fn forward(
        &self,
        window: &Window,
        bias: &[f32],
        x: Planes<'_>,
        after: After,
        pool: &mut Pool,
    ) -> Option<Vec<f32>> {
        let isa = Isa::detect()?;
        if after.max_pool.is_some_and(|w| w.pad != [[0, 0], [0, 0]]) {
            return None;
        }
        Some(self.forward_on(isa, window, bias, x, after, pool))
    }

    /// [`Direct::forward`] with the kernels for `isa`, which the CPU must have.
    fn forward_on(
        &self,
        isa: Isa,
        window: &Window,
        bias: &[f32],
        x: Planes<'_>,
        after: After,
        pool: &mut Pool,
    ) -> Vec<f32> {
        let Planes {
            data: x,
            channels,
            images,
            size,
        } = x;
        let o = bias.len();
        let layout = Layout::new(window, channels, images, size, isa.block());
        let k = layout.offsets.len();
        assert!(
            self.weights.len() == o * k && x.len() == channels * images * size[0] * size[1],
            "shapes checked when the spec was read"
        );
        let source = layout.source(x, pool);
        let grid = layout.grid();
        // The bounds every read of the kernels below stays inside.
        assert!(source.len() == layout.source_len() && o.is_multiple_of(GROUP));
        let [oh, ow] = layout.output;
        let size = match &after.max_pool {
            Some(w) => [w.out_size(oh, 0), w.out_size(ow, 1)],
            None => [oh, ow],
        };
        let plane_len = size[0] * size[1];
        let out_len = o * images * plane_len;
        let mut out = pool.empty(out_len);
        // One image's sums on the grid, `[O][grid]`, written by the kernels.
        let mut sums = pool.empty(o * grid);
        // A pooled plane and its maxima across rows.
        let (mut pooled, mut across) = (pool.empty(plane_len), pool.empty(oh * size[1]));
        for n in 0..images {
            let job = Job {
                source: &source[n * layout.plane..],
                offsets: &layout.offsets,
                weights: &self.weights,
                bias,
                sums: &mut sums.spare_capacity_mut()[..o * grid],
                grid,
                relu: after.relu,
            };
            // SAFETY: the CPU has the instructions (`Isa::detect`), and the asserts above
            // bound every address the kernels form (see `Job` and `Layout::source_len`).
            unsafe {
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => x86::run_avx512(job),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => x86::run_avx2(job),
                    #[cfg(not(target_arch = "x86_64"))]
                    _ => unreachable!("no kernels detected off x86-64"),
                }
                // The kernels wrote every value: every channel (runs of whole groups) at
                // every grid position (whole blocks).
                sums.set_len(o * grid);
            }
            // The grid's valid columns (or their pool) into image n's planes of `out`.
            let planes = out.spare_capacity_mut();
            for (c, plane) in sums.chunks_exact(grid).enumerate() {
                let dst = &mut planes[(c * images + n) * plane_len..][..plane_len];
                if let Some(window) = &after.max_pool {
                    pooled.clear();
                    let shape = ([oh, ow], size);
                    max_pool_plane(
                        plane,
                        layout.pitch,
                        shape.0,
                        window,
                        shape.1,
                        &mut across,
                        &mut pooled,
                    );
                    dst.write_copy_of_slice(&pooled);
                    continue;
                }
                for (dst, row) in dst
                    .chunks_exact_mut(ow)
                    .zip(plane.chunks_exact(layout.pitch))
                {
                    dst.write_copy_of_slice(&row[..ow]);
                }
            }
            sums.clear();
        }
        for v in [pooled, across] {
            pool.recycle(v);
        }
        // SAFETY: the loop above wrote every plane of every image.
        unsafe { out.set_len(out_len) };
        pool.recycle(source);
        pool.recycle(sums);
        out
    }
}

/// What follows a direct convolution, done before its output is written.
#[derive(Debug, Clone, Copy)]
pub(super) struct After {
    /// The relu.
    pub(super) relu: bool,
    /// An unpadded max pool.
    pub(super) max_pool: Option<Window>,
}

/// A convolution's input: `images` images of `channels` planes of `size` (`[H, W]`), laid
/// out `[C][N][H·W]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Planes<'a> {
    pub(super) data: &'a [f32],
    pub(super) channels: usize,
    pub(super) images: usize,
    pub(super) size: [usize; 2],
}

/// Where a convolution's taps read (see the module docs).
struct Layout {
    channels: usize,
    images: usize,
    input: [usize; 2],
    output: [usize; 2],
    stride: usize,
    /// Where the input's first row and column go in the padded plane.
    top: usize,
    left: usize,
    /// Rows and columns of each phase.
    rows: usize,
    pitch: usize,
    /// Values per phase plane, `rows · pitch`.
    plane: usize,
    /// Positions summed by one kernel call.
    block: usize,
    /// Each tap's offset in the source from its output's grid position, OIHW order.
    offsets: Vec<usize>,
}

impl Layout {
    fn new(
        window: &Window,
        channels: usize,
        images: usize,
        input: [usize; 2],
        block: usize,
    ) -> Self {
        let ([kh, kw], [sy, sx]) = (window.kernel, window.stride);
        assert_eq!(sy, sx, "direct convolutions have one stride");
        let s = sy;
        let output = [window.out_size(input[0], 0), window.out_size(input[1], 1)];
        let [[top, _], [left, _]] = window.pad;
        let padded_rows = ((output[0] - 1) * s + kh).max(top + input[0]);
        let padded_columns = ((output[1] - 1) * s + kw).max(left + input[1]);
        let (rows, pitch) = (padded_rows.div_ceil(s), padded_columns.div_ceil(s));
        let plane = rows * pitch;
        let mut offsets = Vec::with_capacity(channels * kh * kw);
        for c in 0..channels {
            for ky in 0..kh {
                for kx in 0..kw {
                    let phase = c * s * s + (ky % s) * s + kx % s;
                    offsets.push(phase * images * plane + (ky / s) * pitch + kx / s);
                }
            }
        }
        Self {
            channels,
            images,
            input,
            output,
            stride: s,
            top,
            left,
            rows,
            pitch,
            plane,
            block,
            offsets,
        }
    }

    /// Grid positions summed per output plane: `OH · pitch` rounded up to whole blocks.
    fn grid(&self) -> usize {
        (self.output[0] * self.pitch).next_multiple_of(self.block)
    }

    /// Values of the source: its planes, or more if the last image's last block reads
    /// past them.
    fn source_len(&self) -> usize {
        let planes = self.channels * self.stride * self.stride * self.images;
        let last_read = (self.images - 1) * self.plane
            + self.grid()
            + self.offsets.iter().max().copied().unwrap_or(0);
        (planes * self.plane).max(last_read)
    }

    /// The padded, phase-split source `[C][s²][N][rows·pitch]`, with zeros after the last
    /// plane for the overrun of the last blocks. Written in order, so nothing is filled
    /// twice.
    fn source(&self, x: &[f32], pool: &mut Pool) -> Vec<f32> {
        let (s, [h, w], pitch) = (self.stride, self.input, self.pitch);
        let len = self.source_len();
        let mut source = pool.empty(len);
        for c in 0..self.channels {
            for (py, px) in (0..s).flat_map(|py| (0..s).map(move |px| (py, px))) {
                // Phase column j holds padded column px + s·j, input column px + s·j − left.
                let skip = self.left.saturating_sub(px).div_ceil(s);
                let first = px + s * skip - self.left;
                let count = w.saturating_sub(first).div_ceil(s);
                for n in 0..self.images {
                    let plane = &x[(c * self.images + n) * h * w..][..h * w];
                    for r in (py..self.rows * s).step_by(s) {
                        let Some(y) = r.checked_sub(self.top).filter(|&y| y < h) else {
                            source.extend(std::iter::repeat_n(0.0, pitch));
                            continue;
                        };
                        let row = &plane[y * w..][..w];
                        source.extend(std::iter::repeat_n(0.0, skip));
                        match s {
                            1 => source.extend_from_slice(&row[first..]),
                            // Pairs, so that the compiler vectorises the split.
                            2 => {
                                let mut pairs = row[first..].chunks_exact(2);
                                source.extend(pairs.by_ref().map(|p| p[0]));
                                source.extend(pairs.remainder().first());
                            }
                            _ => source.extend(row[first..].iter().step_by(s)),
                        }
                        source.extend(std::iter::repeat_n(0.0, pitch - skip - count));
                    }
                }
            }
        }
        source.resize(len, 0.0);
        source
    }
}

/// One image's convolution for the kernels. Bounds (asserted by [`Direct::forward`]):
/// positions `q` in `0..grid` read `source[q + offset]` inside `source`; `weights` holds
/// `[O / GROUP][offsets.len()][GROUP]`, `bias` `O` values and `sums` `[O][grid]`.
struct Job<'a> {
    source: &'a [f32],
    offsets: &'a [usize],
    weights: &'a [f32],
    bias: &'a [f32],
    sums: &'a mut [std::mem::MaybeUninit<f32>],
    grid: usize,
    relu: bool,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{GROUP, Job};

    /// One image's convolution: for each block of `V` vectors of positions and run of `CH`
    /// output channels, the sums in registers over all taps from the bias, then the
    /// relu if asked.
    macro_rules! kernel {
        ($name:ident, $feature:literal, $vector:ty, $lanes:literal, $ch:literal, $v:literal,
         $set1:ident, $load:ident, $fma:ident, $max:ident, $zero:ident, $store:ident) => {
            /// # Safety
            /// The CPU has the instructions named in the `target_feature` attribute, and
            /// `job` keeps the bounds documented on [`Job`].
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn $name(job: Job<'_>) {
                let Job {
                    source,
                    offsets,
                    weights,
                    bias,
                    sums,
                    grid,
                    relu,
                } = job;
                let k = offsets.len();
                let block = $lanes * $v;
                debug_assert_eq!(grid % block, 0);
                // SAFETY (for the whole body): every address is inside the slices by the
                // bounds of `Job`.
                unsafe {
                    {
                        for q in (0..grid).step_by(block) {
                            let src = source.as_ptr().add(q);
                            for first in (0..bias.len()).step_by($ch) {
                                let (group, within) = (first / GROUP, first % GROUP);
                                let mut w = weights.as_ptr().add(group * k * GROUP + within);
                                let mut acc: [[$vector; $v]; $ch] = [[$zero(); $v]; $ch];
                                for (row, &b) in acc.iter_mut().zip(&bias[first..first + $ch]) {
                                    *row = [$set1(b); $v];
                                }
                                for &offset in offsets {
                                    let p = src.add(offset);
                                    let mut x: [$vector; $v] = [$zero(); $v];
                                    for (i, x) in x.iter_mut().enumerate() {
                                        *x = $load(p.add(i * $lanes));
                                    }
                                    for (j, row) in acc.iter_mut().enumerate() {
                                        let wj = $set1(*w.add(j));
                                        for (a, &x) in row.iter_mut().zip(&x) {
                                            *a = $fma(wj, x, *a);
                                        }
                                    }
                                    w = w.add(GROUP);
                                }
                                let out = sums.as_mut_ptr().cast::<f32>().add(first * grid + q);
                                for (j, row) in acc.iter().enumerate() {
                                    for (i, &a) in row.iter().enumerate() {
                                        let a = if relu { $max(a, $zero()) } else { a };
                                        $store(out.add(j * grid + i * $lanes), a);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        };
    }

    kernel!(
        run_avx512,
        "avx512f",
        __m512,
        16,
        8,
        3,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_fmadd_ps,
        _mm512_max_ps,
        _mm512_setzero_ps,
        _mm512_storeu_ps
    );
    kernel!(
        run_avx2,
        "avx2,fma",
        __m256,
        8,
        4,
        3,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        _mm256_max_ps,
        _mm256_setzero_ps,
        _mm256_storeu_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook convolution: `[O][N][OH·OW]`.
    fn textbook(
        weight: &[f32],
        bias: &[f32],
        window: &Window,
        x: &[f32],
        [c, n]: [usize; 2],
        [h, w]: [usize; 2],
        relu: bool,
    ) -> Vec<f32> {
        let [kh, kw] = window.kernel;
        let [sy, sx] = window.stride;
        let [[top, _], [left, _]] = window.pad;
        let (oh, ow) = (window.out_size(h, 0), window.out_size(w, 1));
        let mut out = Vec::new();
        for (o, &b) in bias.iter().enumerate() {
            for image in 0..n {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = b;
                        for ci in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let (Some(iy), Some(ix)) = (
                                        (oy * sy + ky).checked_sub(top).filter(|&v| v < h),
                                        (ox * sx + kx).checked_sub(left).filter(|&v| v < w),
                                    ) else {
                                        continue;
                                    };
                                    let wt = weight[((o * c + ci) * kh + ky) * kw + kx];
                                    sum += wt * x[((ci * n + image) * h + iy) * w + ix];
                                }
                            }
                        }
                        out.push(if relu { sum.max(0.0) } else { sum });
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_kernel_matches_the_textbook_convolution() {
        let isas = Isa::available();
        if isas.is_empty() {
            eprintln!("no AVX2/AVX-512 on this CPU: the direct kernels are not used here");
            return;
        }
        let mut pool = Pool::default();
        // (out channels, in channels, kernel, stride, pad, input size, images): the
        // network's stem, same-size and strided 3×3 layers, and odd shapes.
        for (o, c, k, s, p, size, n) in [
            (32, 3, 7, 2, 0, [40, 41], 2),
            (16, 5, 3, 1, 1, [35, 35], 3),
            (8, 4, 3, 1, 1, [17, 6], 1),
            (16, 6, 3, 2, 0, [17, 18], 2),
            (8, 2, 5, 3, 2, [13, 11], 2),
            (24, 3, 1, 1, 0, [5, 9], 1),
        ] {
            let value = |i: usize, m: usize| ((i * 7919) % m) as f32 / m as f32 - 0.5;
            let weight: Vec<f32> = (0..o * c * k * k).map(|i| value(i, 101)).collect();
            let bias: Vec<f32> = (0..o).map(|i| value(i, 13)).collect();
            let x: Vec<f32> = (0..c * n * size[0] * size[1])
                .map(|i| value(i, 997))
                .collect();
            let window = Window {
                kernel: [k, k],
                stride: [s, s],
                pad: [[p, p], [p, p]],
            };
            let direct = Direct::new(&weight, o, c * k * k).expect("whole groups");
            let [oh, ow] = [window.out_size(size[0], 0), window.out_size(size[1], 1)];
            let stem_pool = Window {
                kernel: [3, 3],
                stride: [2, 2],
                pad: [[0, 0], [0, 0]],
            };
            let pools = [None, Some(stem_pool).filter(|_| oh >= 3 && ow >= 3)];
            for (relu, max_pool) in [false, true]
                .into_iter()
                .flat_map(|r| pools.map(|p| (r, p)))
            {
                let mut expected = textbook(&weight, &bias, &window, &x, [c, n], size, relu);
                if let Some(p) = &max_pool {
                    expected = textbook_max_pool(&expected, [oh, ow], p);
                }
                for &isa in &isas {
                    let planes = Planes {
                        data: &x,
                        channels: c,
                        images: n,
                        size,
                    };
                    let after = After { relu, max_pool };
                    let got = direct.forward_on(isa, &window, &bias, planes, after, &mut pool);
                    assert_eq!(got.len(), expected.len());
                    let worst = got
                        .iter()
                        .zip(&expected)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max);
                    assert!(
                        worst < 1e-4,
                        "{isa:?} {o}×{c}×{k}² stride {s} pad {p} on {size:?}, pooled \
                         {}: off by {worst}",
                        max_pool.is_some()
                    );
                }
            }
        }
    }

    /// The textbook unpadded max pool of each `h×w` plane of `x`.
    fn textbook_max_pool(x: &[f32], [h, w]: [usize; 2], window: &Window) -> Vec<f32> {
        let (oh, ow) = (window.out_size(h, 0), window.out_size(w, 1));
        let mut out = Vec::new();
        for plane in x.chunks_exact(h * w) {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..window.kernel[0] {
                        for kx in 0..window.kernel[1] {
                            let (y, x) = (oy * window.stride[0] + ky, ox * window.stride[1] + kx);
                            m = m.max(plane[y * w + x]);
                        }
                    }
                    out.push(m);
                }
            }
        }
        out
    }

    #[test]
    fn declines_partial_groups() {
        assert!(Direct::new(&[0.0; 12 * 3], 12, 3).is_none());
        assert!(Direct::new(&[0.0; 16 * 3], 16, 3).is_some());
    }
}
