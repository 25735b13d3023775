//! Direct convolution: each output is summed in registers straight from the input, with
//! no im2col matrix and no gemm packing. The ResNet's large early layers (the stem and the
//! 35×35 and 17×17 blocks) run here, where im2col's nine-fold copy, and gemm packing it
//! again, cost as much as the multiply-adds; so do BlazeFace's first 5×5 layer and its
//! pointwise (1×1) convolutions ([`Direct::pointwise`]), whose few input channels left
//! gemm mostly packing.
//!
//! The input is laid out so that every tap reads a contiguous run of values for a run of
//! outputs. Each plane is zero-padded and, for a stride `s` > 1, split into its `s²` phases
//! (rows `py, py + s, …`, columns `px, px + s, …`), every phase `pitch` columns wide. Output
//! `(y, x)` is position `q = y·pitch + x` of a grid as wide as the phases, and tap
//! `(c, ky, kx)` reads the source at `q + offset(c, ky, kx)`. The grid's columns `x ≥ OW`
//! are summed too and dropped.
//!
//! The kernels sum [`GROUP`] output channels over a block of positions at once (AVX-512:
//! 8 channels × 48 positions in 24 registers; AVX2: two halves of 4 channels × 24 in 12,
//! the tap loop in assembly, as the compiler spills a sum there). At
//! [`CpuLevel::SCALAR`] (a CPU without AVX2 and FMA, or `KAO_CPU=scalar`),
//! [`Direct::forward`] and [`Direct::pointwise`] decline and the caller uses im2col or
//! gemm.

use crate::cpu::{Pool, Window, max_pool_plane};
use crate::level::{CpuLevel, Level};

/// Output channels whose weights are packed together, one broadcast each per tap.
const GROUP: usize = 8;

/// A convolution's weights for the direct kernels: `[O / GROUP][K][GROUP]`, taps in OIHW
/// order (channel, row, column).
#[derive(Debug, Clone)]
pub struct Direct {
    weights: Vec<f32>,
}

/// Positions summed together by one kernel call at `level` (`None`: no kernels there).
fn block(level: CpuLevel) -> Option<usize> {
    match level.level() {
        Level::Scalar => None,
        Level::Avx2 => Some(24),
        Level::Avx512 => Some(48),
    }
}

impl Direct {
    /// Packs OIHW weights `[o][k]`; `None` when `o` is not a whole number of groups.
    pub fn new(weight: &[f32], o: usize, k: usize) -> Option<Self> {
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
    /// convolution's output size, or the pool's); `None` at [`CpuLevel::SCALAR`], for
    /// unequal strides or for a padded pool.
    pub fn forward(
        &self,
        level: CpuLevel,
        window: &Window,
        bias: &[f32],
        x: Planes<'_>,
        after: After,
        pool: &mut Pool,
    ) -> Option<Vec<f32>> {
        let block = block(level)?;
        let padded_pool = after.max_pool.is_some_and(|w| w.pad != [[0, 0], [0, 0]]);
        if padded_pool || window.stride[0] != window.stride[1] {
            return None;
        }
        Some(self.forward_on(level, block, window, bias, x, after, pool))
    }

    /// [`Direct::forward`] with the kernels for `level` (not scalar), whose blocks are
    /// `block` positions.
    #[allow(clippy::too_many_arguments)]
    fn forward_on(
        &self,
        level: CpuLevel,
        block: usize,
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
        let layout = Layout::new(window, channels, images, size, block);
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
                stride: grid,
                positions: grid,
                relu: after.relu,
            };
            // SAFETY: the CPU has the level's instructions (a `CpuLevel` is checked when
            // made), and the asserts above bound every address the kernels form (see `Job`
            // and `Layout::source_len`).
            unsafe {
                job.run(level);
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

    /// The 1×1 convolution of one image `x` (`[C][P]`, `positions` = P) with `bias`, then
    /// the relu if asked, appended to `out` as `[O][P]`; `false`, with nothing appended, at
    /// [`CpuLevel::SCALAR`]. The planes are read where they are: no
    /// padding, no copy, except the last few positions when P is not a whole number of
    /// blocks.
    #[allow(clippy::too_many_arguments)]
    pub fn pointwise(
        &self,
        level: CpuLevel,
        x: &[f32],
        positions: usize,
        bias: &[f32],
        relu: bool,
        out: &mut Vec<f32>,
        pool: &mut Pool,
    ) -> bool {
        let Some(block) = block(level) else {
            return false;
        };
        let o = bias.len();
        let c = x.len() / positions.max(1);
        assert!(
            positions > 0
                && x.len() == c * positions
                && self.weights.len() == o * c
                && o.is_multiple_of(GROUP),
            "shapes checked when the network was read"
        );
        let whole = positions / block * block;
        let start = out.len();
        out.reserve(o * positions);
        let sums = &mut out.spare_capacity_mut()[..o * positions];
        if whole > 0 {
            let offsets: Vec<usize> = (0..c).map(|i| i * positions).collect();
            let job = Job {
                source: x,
                offsets: &offsets,
                weights: &self.weights,
                bias,
                sums,
                stride: positions,
                positions: whole,
                relu,
            };
            // SAFETY: the CPU has the level's instructions (checked when the `CpuLevel` was
            // made). The kernels read
            // `x[i·P + q]` for positions q < whole ≤ P, inside `x`'s C planes, and write
            // `sums[o·P + q]` for q < whole, inside its O planes (asserts above).
            unsafe { job.run(level) };
        }
        if whole < positions {
            // The last positions, through a zero-padded copy a block wide.
            let tail = positions - whole;
            let mut source = pool.filled(c * block, 0.0);
            for (plane, dst) in x
                .chunks_exact(positions)
                .zip(source.chunks_exact_mut(block))
            {
                dst[..tail].copy_from_slice(&plane[whole..]);
            }
            let offsets: Vec<usize> = (0..c).map(|i| i * block).collect();
            let mut tail_sums = pool.empty(o * block);
            let job = Job {
                source: &source,
                offsets: &offsets,
                weights: &self.weights,
                bias,
                sums: &mut tail_sums.spare_capacity_mut()[..o * block],
                stride: block,
                positions: block,
                relu,
            };
            // SAFETY: the CPU has the level's instructions; the job reads `source`'s C planes of
            // one block and writes O planes of one block, all inside the two buffers.
            unsafe {
                job.run(level);
                // The kernels wrote every value of the O planes.
                tail_sums.set_len(o * block);
            }
            for (dst, plane) in sums
                .chunks_exact_mut(positions)
                .zip(tail_sums.chunks_exact(block))
            {
                dst[whole..].write_copy_of_slice(&plane[..tail]);
            }
            pool.recycle(source);
            pool.recycle(tail_sums);
        }
        // SAFETY: the blocks above wrote every position of every output plane.
        unsafe { out.set_len(start + o * positions) };
        true
    }
}

/// What follows a direct convolution, done before its output is written.
#[derive(Debug, Clone, Copy)]
pub struct After {
    /// The relu.
    pub relu: bool,
    /// An unpadded max pool.
    pub max_pool: Option<Window>,
}

/// A convolution's input: `images` images of `channels` planes of `size` (`[H, W]`), laid
/// out `[C][N][H·W]`.
#[derive(Debug, Clone, Copy)]
pub struct Planes<'a> {
    /// The values.
    pub data: &'a [f32],
    /// `C`.
    pub channels: usize,
    /// `N`.
    pub images: usize,
    /// `[H, W]`.
    pub size: [usize; 2],
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
                        // A row narrower than the stride has no column in the last phases.
                        let row = plane[y * w..][..w].get(first..).unwrap_or_default();
                        source.extend(std::iter::repeat_n(0.0, skip));
                        match s {
                            1 => source.extend_from_slice(row),
                            // Pairs, so that the compiler vectorises the split.
                            2 => {
                                let mut pairs = row.chunks_exact(2);
                                source.extend(pairs.by_ref().map(|p| p[0]));
                                source.extend(pairs.remainder().first());
                            }
                            _ => source.extend(row.iter().step_by(s)),
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

/// One image's convolution for the kernels. Bounds (asserted by the callers): positions
/// `q` in `0..positions` (whole blocks) read `source[q + offset]` inside `source`;
/// `weights` holds `[O / GROUP][offsets.len()][GROUP]`, `bias` `O` values, and `sums`
/// channel `o`'s sums at `o·stride + q`.
struct Job<'a> {
    source: &'a [f32],
    offsets: &'a [usize],
    weights: &'a [f32],
    bias: &'a [f32],
    sums: &'a mut [std::mem::MaybeUninit<f32>],
    stride: usize,
    positions: usize,
    relu: bool,
}

impl Job<'_> {
    /// Runs the kernels for `level` (the CPU has its instructions: a [`CpuLevel`] is
    /// checked when made).
    ///
    /// # Safety
    /// The job keeps the bounds documented on [`Job`].
    unsafe fn run(self, level: CpuLevel) {
        // SAFETY: the bounds as the caller guarantees; the instructions as `level` proves.
        unsafe {
            match level.level() {
                #[cfg(target_arch = "x86_64")]
                Level::Avx512 => x86::run_avx512(self),
                #[cfg(target_arch = "x86_64")]
                Level::Avx2 => x86::run_avx2(self),
                _ => unreachable!("the callers decline the scalar level"),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{GROUP, Job};

    /// One image's convolution on AVX-512: for each block of 48 positions (three
    /// vectors) and run of eight output channels, the 24 sums in registers over all taps
    /// from the bias, then the relu if asked.
    ///
    /// # Safety
    /// The CPU has AVX-512F, and `job` keeps the bounds documented on [`Job`].
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn run_avx512(job: Job<'_>) {
        const V: usize = 3;
        let Job {
            source,
            offsets,
            weights,
            bias,
            sums,
            stride,
            positions,
            relu,
        } = job;
        let k = offsets.len();
        let block = 16 * V;
        debug_assert_eq!(positions % block, 0);
        // SAFETY (for the whole body): every address is inside the slices by the bounds
        // of `Job`.
        unsafe {
            for q in (0..positions).step_by(block) {
                let src = source.as_ptr().add(q);
                for first in (0..bias.len()).step_by(GROUP) {
                    let mut w = weights.as_ptr().add(first * k);
                    let mut acc = [[_mm512_setzero_ps(); V]; GROUP];
                    for (row, &b) in acc.iter_mut().zip(&bias[first..first + GROUP]) {
                        *row = [_mm512_set1_ps(b); V];
                    }
                    for &offset in offsets {
                        let p = src.add(offset);
                        let mut x = [_mm512_setzero_ps(); V];
                        for (i, x) in x.iter_mut().enumerate() {
                            *x = _mm512_loadu_ps(p.add(i * 16));
                        }
                        for (j, row) in acc.iter_mut().enumerate() {
                            let wj = _mm512_set1_ps(*w.add(j));
                            for (a, &x) in row.iter_mut().zip(&x) {
                                *a = _mm512_fmadd_ps(wj, x, *a);
                            }
                        }
                        w = w.add(GROUP);
                    }
                    let out = sums.as_mut_ptr().cast::<f32>().add(first * stride + q);
                    for (j, row) in acc.iter().enumerate() {
                        for (i, &a) in row.iter().enumerate() {
                            let a = if relu {
                                _mm512_max_ps(a, _mm512_setzero_ps())
                            } else {
                                a
                            };
                            _mm512_storeu_ps(out.add(j * stride + i * 16), a);
                        }
                    }
                }
            }
        }
    }

    /// One image's convolution on AVX2: for each block of 24 positions (three vectors)
    /// and run of four output channels, the twelve sums in registers over all taps.
    ///
    /// AVX2 has sixteen vector registers and the block needs all of them (twelve sums,
    /// three input vectors, one broadcast weight), more than the compiler allocates
    /// without spilling a sum to the stack on every tap; so the tap loop is written out.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA, and `job` keeps the bounds documented on [`Job`].
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn run_avx2(job: Job<'_>) {
        const CH: usize = 4;
        const V: usize = 3;
        let Job {
            source,
            offsets,
            weights,
            bias,
            sums,
            stride,
            positions,
            relu,
        } = job;
        let k = offsets.len();
        let block = 8 * V;
        debug_assert_eq!(positions % block, 0);
        // SAFETY (for the whole body): every address is inside the slices by the bounds
        // of `Job`; the tap loop reads `k` offsets and `k` runs of GROUP weights.
        unsafe {
            for q in (0..positions).step_by(block) {
                let src = source.as_ptr().add(q);
                for first in (0..bias.len()).step_by(CH) {
                    let (group, within) = (first / GROUP, first % GROUP);
                    let w = weights.as_ptr().add(group * k * GROUP + within);
                    let mut acc: [[__m256; V]; CH] = [[_mm256_setzero_ps(); V]; CH];
                    for (row, &b) in acc.iter_mut().zip(&bias[first..first + CH]) {
                        *row = [_mm256_set1_ps(b); V];
                    }
                    if k > 0 {
                        let [[a0, a1, a2], [a3, a4, a5], [a6, a7, a8], [a9, a10, a11]] = &mut acc;
                        std::arch::asm!(
                            "2:",
                            "mov {o}, qword ptr [{off}]",
                            "vmovups ymm12, ymmword ptr [{src} + 4*{o}]",
                            "vmovups ymm13, ymmword ptr [{src} + 4*{o} + 32]",
                            "vmovups ymm14, ymmword ptr [{src} + 4*{o} + 64]",
                            "vbroadcastss ymm15, dword ptr [{w}]",
                            "vfmadd231ps ymm0, ymm15, ymm12",
                            "vfmadd231ps ymm1, ymm15, ymm13",
                            "vfmadd231ps ymm2, ymm15, ymm14",
                            "vbroadcastss ymm15, dword ptr [{w} + 4]",
                            "vfmadd231ps ymm3, ymm15, ymm12",
                            "vfmadd231ps ymm4, ymm15, ymm13",
                            "vfmadd231ps ymm5, ymm15, ymm14",
                            "vbroadcastss ymm15, dword ptr [{w} + 8]",
                            "vfmadd231ps ymm6, ymm15, ymm12",
                            "vfmadd231ps ymm7, ymm15, ymm13",
                            "vfmadd231ps ymm8, ymm15, ymm14",
                            "vbroadcastss ymm15, dword ptr [{w} + 12]",
                            "vfmadd231ps ymm9, ymm15, ymm12",
                            "vfmadd231ps ymm10, ymm15, ymm13",
                            "vfmadd231ps ymm11, ymm15, ymm14",
                            "add {w}, {group_bytes}",
                            "add {off}, 8",
                            "cmp {off}, {end}",
                            "jne 2b",
                            off = inout(reg) offsets.as_ptr() => _,
                            end = in(reg) offsets.as_ptr().add(k),
                            w = inout(reg) w => _,
                            src = in(reg) src,
                            o = out(reg) _,
                            group_bytes = const GROUP * size_of::<f32>(),
                            inout("ymm0") *a0,
                            inout("ymm1") *a1,
                            inout("ymm2") *a2,
                            inout("ymm3") *a3,
                            inout("ymm4") *a4,
                            inout("ymm5") *a5,
                            inout("ymm6") *a6,
                            inout("ymm7") *a7,
                            inout("ymm8") *a8,
                            inout("ymm9") *a9,
                            inout("ymm10") *a10,
                            inout("ymm11") *a11,
                            out("ymm12") _,
                            out("ymm13") _,
                            out("ymm14") _,
                            out("ymm15") _,
                            options(nostack, readonly),
                        );
                    }
                    let out = sums.as_mut_ptr().cast::<f32>().add(first * stride + q);
                    for (j, row) in acc.iter().enumerate() {
                        for (i, &a) in row.iter().enumerate() {
                            let a = if relu {
                                _mm256_max_ps(a, _mm256_setzero_ps())
                            } else {
                                a
                            };
                            _mm256_storeu_ps(out.add(j * stride + i * 8), a);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
        let levels = simd_levels();
        let mut pool = Pool::default();
        // (out channels, in channels, kernel, stride, [pad before, after], input size,
        // images): the ResNet's stem, same-size and strided 3×3 layers, BlazeFace's first
        // layer (TFLite's SAME padding, one before and two after), odd shapes.
        for (o, c, k, s, [p, after], size, n) in [
            (32, 3, 7, 2, [0, 0], [40, 41], 2),
            (16, 5, 3, 1, [1, 1], [35, 35], 3),
            (8, 4, 3, 1, [1, 1], [17, 6], 1),
            (16, 6, 3, 2, [0, 0], [17, 18], 2),
            (8, 2, 5, 3, [2, 2], [13, 11], 2),
            (24, 3, 1, 1, [0, 0], [5, 9], 1),
            (32, 3, 5, 2, [1, 2], [24, 22], 1),
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
                pad: [[p, after], [p, after]],
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
                for &level in &levels {
                    let planes = Planes {
                        data: &x,
                        channels: c,
                        images: n,
                        size,
                    };
                    let after = After { relu, max_pool };
                    let got = direct
                        .forward(level, &window, &bias, planes, after, &mut pool)
                        .expect("runs at every SIMD level");
                    assert_eq!(got.len(), expected.len());
                    let worst = got
                        .iter()
                        .zip(&expected)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max);
                    assert!(
                        worst < 1e-4,
                        "{level} {o}×{c}×{k}² stride {s} pad {p} on {size:?}, pooled \
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
    fn pointwise_matches_the_textbook_convolution() {
        let mut pool = Pool::default();
        // Positions: whole blocks only, whole blocks and a tail, a tail only (AVX-512
        // blocks are 48, AVX2's 24).
        for (o, c, positions) in [(16, 5, 96), (8, 3, 100), (24, 7, 10), (8, 1, 48 * 3 + 1)] {
            let value = |i: usize, m: usize| ((i * 7919) % m) as f32 / m as f32 - 0.5;
            let weight: Vec<f32> = (0..o * c).map(|i| value(i, 101)).collect();
            let bias: Vec<f32> = (0..o).map(|i| value(i, 13)).collect();
            let x: Vec<f32> = (0..c * positions).map(|i| value(i, 997)).collect();
            let window = Window {
                kernel: [1, 1],
                stride: [1, 1],
                pad: [[0, 0], [0, 0]],
            };
            let direct = Direct::new(&weight, o, c).expect("whole groups");
            for (relu, level) in [false, true]
                .into_iter()
                .flat_map(|r| simd_levels().into_iter().map(move |l| (r, l)))
            {
                let expected = textbook(&weight, &bias, &window, &x, [c, 1], [1, positions], relu);
                let mut got = vec![7.0];
                assert!(direct.pointwise(level, &x, positions, &bias, relu, &mut got, &mut pool));
                assert_eq!(got[0], 7.0, "appended after what was there");
                let worst = got[1..]
                    .iter()
                    .zip(&expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    got.len() == expected.len() + 1 && worst < 1e-4,
                    "{level} {o}×{c} on {positions} positions: off by {worst}"
                );
            }
        }
    }

    #[test]
    fn the_scalar_level_declines() {
        let mut pool = Pool::default();
        let direct = Direct::new(&[0.5; 8 * 3], 8, 3).unwrap();
        let mut out = vec![1.0];
        let (x, bias) = ([1.0; 3 * 5], [0.0; 8]);
        assert!(!direct.pointwise(CpuLevel::SCALAR, &x, 5, &bias, false, &mut out, &mut pool));
        assert_eq!(out, [1.0], "nothing appended");
        let window = Window {
            kernel: [1, 1],
            stride: [1, 1],
            pad: [[0, 0], [0, 0]],
        };
        let planes = Planes {
            data: &x,
            channels: 3,
            images: 1,
            size: [1, 5],
        };
        let after = After {
            relu: false,
            max_pool: None,
        };
        let got = direct.forward(CpuLevel::SCALAR, &window, &bias, planes, after, &mut pool);
        assert!(got.is_none());
    }

    #[test]
    fn every_level_matches_the_textbook_on_random_shapes() {
        let levels = simd_levels();
        let mut pool = Pool::default();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for case in 0..60 {
            // Edge sizes often: a single row or column, one position past a block.
            let o = GROUP * (1 + rng.below(4));
            let c = 1 + rng.below(6);
            let k = [1, 2, 3, 5, 7][rng.below(5)];
            let s = 1 + rng.below(3);
            let (before, after) = (rng.below(k), rng.below(k));
            let side = |rng: &mut Rng| match rng.below(4) {
                0 => k.saturating_sub(before + after).max(1),
                1 => 1 + rng.below(3) + k,
                _ => 1 + rng.below(50),
            };
            let size = [side(&mut rng), side(&mut rng)];
            // Inputs narrower than the stride included.
            if size[0] + before + after < k || size[1] + before + after < k {
                continue;
            }
            let n = 1 + rng.below(3);
            let weight = rng.values(o * c * k * k);
            let bias = rng.values(o);
            let x = rng.values(c * n * size[0] * size[1]);
            let window = Window {
                kernel: [k, k],
                stride: [s, s],
                pad: [[before, after], [before, after]],
            };
            let relu = rng.below(2) == 1;
            let expected = textbook(&weight, &bias, &window, &x, [c, n], size, relu);
            let direct = Direct::new(&weight, o, c * k * k).expect("whole groups");
            for &level in &levels {
                let planes = Planes {
                    data: &x,
                    channels: c,
                    images: n,
                    size,
                };
                let after_conv = After {
                    relu,
                    max_pool: None,
                };
                let got = direct
                    .forward(level, &window, &bias, planes, after_conv, &mut pool)
                    .expect("runs at every SIMD level");
                let worst = got
                    .iter()
                    .zip(&expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    got.len() == expected.len() && worst < 1e-4,
                    "case {case}, {level}: {o}×{c}×{k}² stride {s} pad [{before}, {after}] \
                     on {n}×{size:?}: off by {worst}"
                );
            }
        }
    }

    /// The levels with kernels of their own (none on a CPU without AVX2 and FMA).
    fn simd_levels() -> Vec<CpuLevel> {
        let levels: Vec<CpuLevel> = CpuLevel::available()
            .into_iter()
            .filter(|l| !l.is_scalar())
            .collect();
        if levels.is_empty() {
            eprintln!("no AVX2/AVX-512 on this CPU: the direct kernels are not used here");
        }
        levels
    }

    /// xorshift64*: reproducible test values without a dependency.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// A number in `0..n`.
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// `n` values in [-1, 1).
        pub(crate) fn values(&mut self, n: usize) -> Vec<f32> {
            (0..n)
                .map(|_| (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
                .collect()
        }
    }

    #[test]
    fn declines_partial_groups() {
        assert!(Direct::new(&[0.0; 12 * 3], 12, 3).is_none());
        assert!(Direct::new(&[0.0; 16 * 3], 16, 3).is_some());
    }
}
