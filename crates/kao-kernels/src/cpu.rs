//! kao's own CPU kernels, shared by the native executors (`kao_networks::NativeBlazeFace`,
//! `kao_networks::NativeResNet`): planar `f32` tensors, buffers reused per thread, window
//! geometry, and the element-wise and pooling loops.

/// Buffers kept between layers and between runs, per thread. A fresh large `Vec` per
/// layer costs more than the layer itself: glibc maps it anew, and the page faults and
/// the TLB shootdowns when it is unmapped again took a third of the time.
#[derive(Debug, Default)]
pub struct Pool(Vec<Vec<f32>>);

/// Values a [`Pool`] keeps at most, 8 MB (the oldest buffers go first).
const POOL_VALUES: usize = 2 << 20;

impl Pool {
    /// An empty buffer with room for `len` values: the smallest kept buffer that holds
    /// them without being more than twice too large (so a large buffer is not spent on a
    /// small tensor), or a new one.
    pub fn empty(&mut self, len: usize) -> Vec<f32> {
        let fits = |c: usize| c >= len && c <= 2 * len.max(1 << 10);
        let best = (0..self.0.len())
            .filter(|&i| fits(self.0[i].capacity()))
            .min_by_key(|&i| self.0[i].capacity());
        let mut v = best.map_or_else(|| Vec::with_capacity(len), |i| self.0.remove(i));
        v.clear();
        v
    }

    /// `len` values, all `fill` (see [`Pool::empty`]).
    pub fn filled(&mut self, len: usize, fill: f32) -> Vec<f32> {
        let mut v = self.empty(len);
        v.resize(len, fill);
        v
    }

    /// Keeps `v` for later, dropping the oldest buffers beyond `POOL_VALUES`.
    pub fn recycle(&mut self, v: Vec<f32>) {
        if v.capacity() > POOL_VALUES {
            return;
        }
        self.0.push(v);
        let mut kept: usize = self.0.iter().map(Vec::capacity).sum();
        while kept > POOL_VALUES {
            kept -= self.0.remove(0).capacity();
        }
    }
}

/// Window geometry of a convolution or pool.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// `[before, after]` padding of the height and width axes.
    pub pad: [[usize; 2]; 2],
}

impl Window {
    /// The output side for an input side on `axis` (0 rows, 1 columns); the window must
    /// fit the padded input.
    pub fn out_size(&self, input: usize, axis: usize) -> usize {
        let [before, after] = self.pad[axis];
        (input + before + after - self.kernel[axis]) / self.stride[axis] + 1
    }
}

thread_local! {
    /// Each thread's buffers, kept between runs (of any network).
    pub static POOL: std::cell::RefCell<Pool> = std::cell::RefCell::default();
}

/// `max(v, 0)` for every value.
pub fn relu_in_place(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = x.max(0.0));
}

/// `a += b`, then the relu if asked.
pub fn add(a: &mut [f32], b: &[f32], relu: bool) {
    if relu {
        a.iter_mut()
            .zip(b)
            .for_each(|(x, y)| *x = (*x + y).max(0.0));
    } else {
        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    }
}

/// The input row or column a window tap reads for output row or column `o`, if inside.
pub fn source(o: usize, tap: usize, stride: usize, before: usize, size: usize) -> Option<usize> {
    (o * stride + tap).checked_sub(before).filter(|&i| i < size)
}

/// The output columns `first..end` whose tap `k` falls inside an input row of `w`.
pub fn inside(
    k: usize,
    stride: usize,
    before: usize,
    w: usize,
    ow: usize,
) -> std::ops::Range<usize> {
    let first = before.saturating_sub(k).div_ceil(stride);
    let end = (w + before).saturating_sub(k).div_ceil(stride).min(ow);
    first..end.max(first)
}

/// Max pooling of each `h×w` plane of `x` to `oh×ow`; cells outside the input never win.
pub fn max_pool(
    x: &[f32],
    [h, w]: [usize; 2],
    window: &Window,
    [oh, ow]: [usize; 2],
    pool: &mut Pool,
) -> Vec<f32> {
    let planes = x.len() / (h * w);
    let [kh, kw] = window.kernel;
    let [sy, sx] = window.stride;
    if window.kernel == [2, 2] && window.stride == [2, 2] && window.pad == [[0, 0], [0, 0]] {
        // The common case: the larger of each pair of rows, then of each pair of columns.
        let mut data = pool.empty(planes * oh * ow);
        let mut pairs = vec![0.0; w];
        for src in x.chunks_exact(h * w) {
            for rows in src.chunks_exact(2 * w).take(oh) {
                let (a, b) = rows.split_at(w);
                for ((m, &a), &b) in pairs.iter_mut().zip(a).zip(b) {
                    *m = a.max(b);
                }
                data.extend(pairs.chunks_exact(2).take(ow).map(|p| p[0].max(p[1])));
            }
        }
        return data;
    }
    if window.pad == [[0, 0], [0, 0]] {
        let mut data = pool.empty(planes * oh * ow);
        let mut across = pool.empty(h * ow);
        for src in x.chunks_exact(h * w) {
            max_pool_plane(src, w, [h, w], window, [oh, ow], &mut across, &mut data);
        }
        pool.recycle(across);
        return data;
    }
    let mut data = pool.filled(planes * oh * ow, f32::NEG_INFINITY);
    for (dst, src) in data.chunks_exact_mut(oh * ow).zip(x.chunks_exact(h * w)) {
        for (oy, out) in dst.chunks_exact_mut(ow).enumerate() {
            for ky in 0..kh {
                let Some(iy) = source(oy, ky, sy, window.pad[0][0], h) else {
                    continue;
                };
                let row = &src[iy * w..][..w];
                for kx in 0..kw {
                    let cols = inside(kx, sx, window.pad[1][0], w, ow);
                    let start = (cols.start * sx + kx).saturating_sub(window.pad[1][0]);
                    for (o, &s) in out[cols].iter_mut().zip(row[start..].iter().step_by(sx)) {
                        *o = o.max(s);
                    }
                }
            }
        }
    }
    data
}

/// Unpadded max pooling of one `h×w` plane whose rows start `pitch` values apart,
/// appended to `out` (`oh×ow` values): the maxima across each row's windows (kept in
/// `across`), then down each column of those.
pub fn max_pool_plane(
    src: &[f32],
    pitch: usize,
    [h, w]: [usize; 2],
    window: &Window,
    [oh, ow]: [usize; 2],
    across: &mut Vec<f32>,
    out: &mut Vec<f32>,
) {
    let [kh, kw] = window.kernel;
    let [sy, sx] = window.stride;
    across.clear();
    for row in src.chunks(pitch).take(h) {
        let row = &row[..w];
        let at = across.len();
        across.resize(at + ow, f32::NEG_INFINITY);
        let maxima = &mut across[at..];
        for kx in 0..kw {
            if sx == 2 {
                // Pairs, so that the compiler vectorises the strided reads.
                for (m, pair) in maxima.iter_mut().zip(row[kx..].chunks(2)) {
                    *m = m.max(pair[0]);
                }
                continue;
            }
            for (m, &v) in maxima.iter_mut().zip(row[kx..].iter().step_by(sx)) {
                *m = m.max(v);
            }
        }
    }
    for oy in 0..oh {
        let at = out.len();
        out.extend_from_slice(&across[oy * sy * ow..][..ow]);
        for ky in 1..kh {
            let below = &across[(oy * sy + ky) * ow..][..ow];
            for (m, &v) in out[at..].iter_mut().zip(below) {
                *m = m.max(v);
            }
        }
    }
}

/// `dst += lhs · rhs` for row-major matrices with unit column stride: `dst` is `m × n`
/// with row stride `dst_stride`, `lhs` is `m × k` (row stride `k`), `rhs` is `k × n` with
/// row stride `rhs_stride` (the `gemm` crate, on the calling thread).
///
/// # Panics
/// If a slice is too short for its matrix or a stride is shorter than a row.
pub fn matmul_add(
    dst: &mut [f32],
    dst_stride: usize,
    lhs: &[f32],
    rhs: &[f32],
    rhs_stride: usize,
    [m, n, k]: [usize; 3],
) {
    if m == 0 || n == 0 {
        return;
    }
    let end = |rows: usize, stride: usize, cols: usize| (rows - 1) * stride + cols;
    assert!(
        dst_stride >= n && rhs_stride >= n && dst.len() >= end(m, dst_stride, n),
        "matrix sizes checked by the callers"
    );
    assert!(lhs.len() >= m * k && (k == 0 || rhs.len() >= end(k, rhs_stride, n)));
    // SAFETY: the asserts above keep every element gemm addresses inside its slice: rows
    // 0..m of `dst` at stride `dst_stride` with `n` columns, `lhs` `m × k` contiguous, and
    // rows 0..k of `rhs` at stride `rhs_stride` with `n` columns. `dst` is borrowed
    // mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            rhs_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Asks the CPU to bring the cache line holding `value` into its caches ahead of its use,
/// so that a read whose address is known early (a regression tree's leaf, found while other
/// trees are still walked) overlaps other work. Changes nothing but timing.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    // SAFETY: SSE, which `prefetcht0` belongs to, is part of every x86-64 CPU, and a
    // prefetch reads nothing the program sees and never faults.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(value).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
