//! [`NativeResNet`]: dlib's ResNet ([`ResnetSpec`]) on the CPU with kao's own kernels.
//!
//! Activations are kept channel-major across the batch, `[C][N][H·W]`, so a convolution
//! of the whole batch is one matrix product `[O, C·k·k] × [C·k·k, N·OH·OW]` (the `gemm`
//! crate) whose output is already in that layout, and the deep 4×4 and 2×2 layers still
//! get wide products. im2col goes a few images at a time, so its buffer stays under
//! [`COLS_BUDGET`] values whatever the batch. The wide early layers (the stem and the
//! 35×35 and 17×17 blocks) are instead summed directly from their input ([`Direct`],
//! AVX2 or AVX-512), which skips im2col's nine-fold copy. At the scalar [`CpuLevel`]
//! every convolution goes through im2col and gemm.

use kao_image::RgbView;
use kao_kernels::{
    After, CpuLevel, Direct, POOL, Planes, Pool, Window, add, inside, matmul_add, max_pool,
    relu_in_place, source,
};

use super::{BlockSpec, EMBEDDING_LEN, INPUT_SIZE, ResnetSpec, normalise};
use crate::Error;
use crate::layers::{ConvSpec, Pool2d};

/// Most im2col values held at once (4 MB): one or two images for the large layers,
/// which still gives products thousands of columns wide.
const COLS_BUDGET: usize = 1 << 20;

/// Output width from which a convolution is summed directly ([`Direct`]) rather than
/// through im2col and gemm: the stem and the 35×35 and 17×17 blocks. The narrower deep
/// layers have few positions per image and many weights, which gemm over the whole batch
/// reuses better.
const DIRECT_MIN_WIDTH: usize = 16;

/// Activations `[C][N][H][W]`.
#[derive(Debug)]
struct Act {
    data: Vec<f32>,
    channels: usize,
    images: usize,
    size: [usize; 2],
}

impl Act {
    fn plane(&self) -> usize {
        self.size[0] * self.size[1]
    }
}

/// A convolution with its affine folded in: weights `[O, C·kh·kw]` (OIHW).
#[derive(Debug, Clone)]
struct Conv {
    weight: Vec<f32>,
    bias: Vec<f32>,
    in_channels: usize,
    window: Window,
    /// The weights packed for [`Direct`], when the output channels allow it.
    direct: Option<Direct>,
}

impl Conv {
    fn new(spec: &ConvSpec) -> Self {
        let [o, i, kh, kw] = spec.shape;
        let pad = |p: usize| [p, p];
        Self {
            direct: Direct::new(&spec.weight, o, i * kh * kw),
            weight: spec.weight.clone(),
            bias: if spec.bias.is_empty() {
                vec![0.0; o]
            } else {
                spec.bias.clone()
            },
            in_channels: i,
            window: Window {
                kernel: [kh, kw],
                stride: spec.stride,
                pad: [pad(spec.padding[0]), pad(spec.padding[1])],
            },
        }
    }

    /// The convolution of `x`, then the relu if asked.
    fn forward(&self, level: CpuLevel, x: &Act, relu: bool, pool: &mut Pool) -> Act {
        let (o, n) = (self.bias.len(), x.images);
        let size = [
            self.window.out_size(x.size[0], 0),
            self.window.out_size(x.size[1], 1),
        ];
        let p = size[0] * size[1];
        let k = self.in_channels * self.window.kernel[0] * self.window.kernel[1];
        assert!(
            x.channels == self.in_channels && self.weight.len() == o * k,
            "shapes checked when the spec was read"
        );
        if size[1] >= DIRECT_MIN_WIDTH
            && let Some(y) = self.direct(
                level,
                x,
                After {
                    relu,
                    max_pool: None,
                },
                pool,
            )
        {
            return y;
        }
        let mut out = pool.empty(o * n * p);
        for &b in &self.bias {
            out.extend(std::iter::repeat_n(b, n * p));
        }
        let chunk = (COLS_BUDGET / (k * p)).clamp(1, n);
        let mut cols = pool.empty(k * chunk * p);
        for first in (0..n).step_by(chunk) {
            let images = chunk.min(n - first);
            self.im2col(x, first..first + images, size, &mut cols, pool);
            // Columns `first·p ..` of every output row (row stride `n·p`).
            matmul_add(
                &mut out[first * p..],
                n * p,
                &self.weight,
                &cols,
                images * p,
                [o, images * p, k],
            );
        }
        pool.recycle(cols);
        if relu {
            relu_in_place(&mut out);
        }
        Act {
            data: out,
            channels: o,
            images: n,
            size,
        }
    }

    /// The convolution of `x` with its relu, then the max pool `window` (the stem): in one
    /// pass where [`Direct`] runs, which pools each image's output before writing it.
    fn forward_max_pooled(
        &self,
        level: CpuLevel,
        x: &Act,
        window: &Window,
        pool: &mut Pool,
    ) -> Act {
        let after = After {
            relu: true,
            max_pool: Some(*window),
        };
        if let Some(y) = self.direct(level, x, after, pool) {
            return y;
        }
        let y = self.forward(level, x, true, pool);
        let size = [window.out_size(y.size[0], 0), window.out_size(y.size[1], 1)];
        let data = max_pool(&y.data, y.size, window, size, pool);
        pool.recycle(y.data);
        Act { data, size, ..y }
    }

    /// The convolution of `x` by [`Direct`] and then `after`, if it runs at `level`.
    fn direct(&self, level: CpuLevel, x: &Act, after: After, pool: &mut Pool) -> Option<Act> {
        let planes = Planes {
            data: &x.data,
            channels: x.channels,
            images: x.images,
            size: x.size,
        };
        let data =
            self.direct
                .as_ref()?
                .forward(level, &self.window, &self.bias, planes, after, pool)?;
        let mut size = [
            self.window.out_size(x.size[0], 0),
            self.window.out_size(x.size[1], 1),
        ];
        if let Some(w) = &after.max_pool {
            size = [w.out_size(size[0], 0), w.out_size(size[1], 1)];
        }
        Some(Act {
            data,
            channels: self.bias.len(),
            images: x.images,
            size,
        })
    }

    /// im2col of `images` into `cols` `[C·kh·kw][images·OH·OW]`, zeros outside the input.
    fn im2col(
        &self,
        x: &Act,
        images: std::ops::Range<usize>,
        [oh, ow]: [usize; 2],
        cols: &mut Vec<f32>,
        pool: &mut Pool,
    ) {
        cols.clear();
        let [sy, sx] = self.window.stride;
        if [sy, sx] == [1, 1] && [oh, ow] == x.size {
            self.im2col_same(x, images, cols);
        } else if sy == sx && self.window.pad == [[0, 0], [0, 0]] {
            self.im2col_phases(x, images, [oh, ow], cols, pool);
        } else {
            self.im2col_general(x, images, [oh, ow], cols);
        }
    }

    /// [`Conv::im2col`] of an unpadded convolution with stride `s` in both directions: each
    /// plane is first split into its `s²` phases (every `s`-th row and column from each
    /// offset), in which every tap reads whole runs of contiguous values.
    fn im2col_phases(
        &self,
        x: &Act,
        images: std::ops::Range<usize>,
        [oh, ow]: [usize; 2],
        cols: &mut Vec<f32>,
        pool: &mut Pool,
    ) {
        let [h, w] = x.size;
        let [kh, kw] = self.window.kernel;
        let s = self.window.stride[0];
        // Phase (py, px) of a plane: rows py, py + s, …; columns px, px + s, …
        let (hp, wp) = (h.div_ceil(s), w.div_ceil(s));
        let phase_len = hp * wp;
        let planes = x.channels * images.len();
        let mut phases = pool.filled(planes * s * s * phase_len, 0.0);
        for (k, split) in phases.chunks_exact_mut(s * s * phase_len).enumerate() {
            let (c, image) = (k / images.len(), images.start + k % images.len());
            let plane = &x.data[(c * x.images + image) * h * w..][..h * w];
            for (y, row) in plane.chunks_exact(w).enumerate() {
                let (py, ry) = (y % s, y / s);
                for px in 0..s {
                    let dst = &mut split[(py * s + px) * phase_len + ry * wp..][..wp];
                    for (d, &v) in dst.iter_mut().zip(row.iter().skip(px).step_by(s)) {
                        *d = v;
                    }
                }
            }
        }
        for c in 0..x.channels {
            for ky in 0..kh {
                for kx in 0..kw {
                    let phase = (ky % s) * s + kx % s;
                    for k in 0..images.len() {
                        let split = &phases[(c * images.len() + k) * s * s * phase_len..];
                        let values = &split[phase * phase_len..][..phase_len];
                        for oy in 0..oh {
                            let at = (oy + ky / s) * wp + kx / s;
                            cols.extend_from_slice(&values[at..at + ow]);
                        }
                    }
                }
            }
        }
        pool.recycle(phases);
    }

    /// [`Conv::im2col`] for any window: row by row.
    fn im2col_general(
        &self,
        x: &Act,
        images: std::ops::Range<usize>,
        [oh, ow]: [usize; 2],
        cols: &mut Vec<f32>,
    ) {
        let [h, w] = x.size;
        let [kh, kw] = self.window.kernel;
        let [sy, sx] = self.window.stride;
        let [[top, _], [left, _]] = self.window.pad;
        for c in 0..x.channels {
            for ky in 0..kh {
                for kx in 0..kw {
                    let columns = inside(kx, sx, left, w, ow);
                    for image in images.clone() {
                        let plane = &x.data[(c * x.images + image) * h * w..][..h * w];
                        for oy in 0..oh {
                            let Some(iy) = source(oy, ky, sy, top, h) else {
                                cols.extend(std::iter::repeat_n(0.0, ow));
                                continue;
                            };
                            let row = &plane[iy * w..][..w];
                            cols.extend(std::iter::repeat_n(0.0, columns.start));
                            let start = (columns.start * sx + kx).saturating_sub(left);
                            if sx == 1 {
                                cols.extend_from_slice(&row[start..start + columns.len()]);
                            } else {
                                let at = cols.len();
                                cols.resize(at + columns.len(), 0.0);
                                let taps = row[start..].iter().step_by(sx);
                                for (d, &s) in cols[at..].iter_mut().zip(taps) {
                                    *d = s;
                                }
                            }
                            cols.extend(std::iter::repeat_n(0.0, ow - columns.end));
                        }
                    }
                }
            }
        }
    }

    /// [`Conv::im2col`] of a stride-1 convolution whose output is the size of its input:
    /// each tap's row of `cols` holds each image's plane shifted by the tap's offset, one
    /// copy per plane, with the values that wrapped around a row edge or fell off the plane
    /// set to zero.
    fn im2col_same(&self, x: &Act, images: std::ops::Range<usize>, cols: &mut Vec<f32>) {
        let [h, w] = x.size;
        let p = h * w;
        let [kh, kw] = self.window.kernel;
        let [[top, _], [left, _]] = self.window.pad;
        for c in 0..x.channels {
            for ky in 0..kh {
                for kx in 0..kw {
                    // Output (oy, ox) reads input (oy + dy, ox + dx): flat offset `shift`.
                    let (dy, dx) = (ky as isize - top as isize, kx as isize - left as isize);
                    let shift = dy * w as isize + dx;
                    // Output indices whose flat source lies inside the plane.
                    let lo = (-shift).clamp(0, p as isize) as usize;
                    let hi = (p as isize - shift).clamp(lo as isize, p as isize) as usize;
                    for image in images.clone() {
                        let plane = &x.data[(c * x.images + image) * p..][..p];
                        let at = cols.len();
                        cols.extend(std::iter::repeat_n(0.0, lo));
                        if hi > lo {
                            let from = (lo as isize + shift) as usize;
                            cols.extend_from_slice(&plane[from..from + (hi - lo)]);
                        }
                        cols.extend(std::iter::repeat_n(0.0, p - hi));
                        // Rows whose source is off the plane, then the columns that wrapped.
                        let out = &mut cols[at..];
                        let (rows_above, rows_below) =
                            (dy.min(0).unsigned_abs(), dy.max(0) as usize);
                        out[..rows_above.min(h) * w].fill(0.0);
                        out[(h - rows_below.min(h)) * w..].fill(0.0);
                        let (wrap_left, wrap_right) =
                            (dx.min(0).unsigned_abs(), dx.max(0) as usize);
                        // Column by column: a few values per row are too short for
                        // a fill each.
                        for j in (0..wrap_left.min(w)).chain(w - wrap_right.min(w)..w) {
                            for v in out[j..].iter_mut().step_by(w) {
                                *v = 0.0;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One residual block (see the module docs of [`super`]).
#[derive(Debug, Clone)]
struct Block {
    conv1: Conv,
    conv2: Conv,
    /// The average pool of an `ares_down` shortcut.
    shortcut: Option<Window>,
}

impl Block {
    fn forward(&self, level: CpuLevel, x: Act, pool: &mut Pool) -> Act {
        let hidden = self.conv1.forward(level, &x, true, pool);
        let mut y = self.conv2.forward(level, &hidden, false, pool);
        pool.recycle(hidden.data);
        let mut out = match &self.shortcut {
            None => {
                add(&mut y.data, &x.data, true);
                y
            }
            Some(window) => {
                let s = avg_pool(&x, window, pool);
                let sum = add_zero_padded(&y, &s, pool);
                pool.recycle(s.data);
                pool.recycle(y.data);
                sum
            }
        };
        if self.shortcut.is_some() {
            relu_in_place(&mut out.data);
        }
        pool.recycle(x.data);
        out
    }
}

/// dlib's face-recognition ResNet on the CPU without burn: the same `ResnetSpec` as
/// [`super::ResNet`]. Embeddings agree with dlib's as closely as burn's (the tests).
#[derive(Debug, Clone)]
pub struct NativeResNet {
    mean: [f32; 3],
    stem: Conv,
    stem_pool: Window,
    blocks: Vec<Block>,
    /// `[256, 128]`.
    fc: Vec<f32>,
    /// The kernels' instructions, chosen at load.
    level: CpuLevel,
}

/// A pool's window as [`Window`] (its padding is the same before and after).
fn window(p: &Pool2d) -> Window {
    let kernel = p
        .window
        .expect("windowed pools checked when the spec was read");
    Window {
        kernel,
        stride: p.stride,
        pad: [[p.padding[0]; 2], [p.padding[1]; 2]],
    }
}

impl NativeResNet {
    /// Builds the network from a parsed model file, checking every layer record, for the
    /// [`CpuLevel`] `KAO_CPU` names or this CPU's widest.
    pub fn from_model(model: &kao_model_files::dat::ResnetModel) -> Result<Self, Error> {
        Self::from_model_at(model, CpuLevel::from_env()?)
    }

    /// [`NativeResNet::from_model`] with the kernels at `level`.
    pub fn from_model_at(
        model: &kao_model_files::dat::ResnetModel,
        level: CpuLevel,
    ) -> Result<Self, Error> {
        Ok(Self::from_spec(&ResnetSpec::from_model(model)?, level))
    }

    /// The instructions the kernels run on.
    pub fn cpu_level(&self) -> CpuLevel {
        self.level
    }

    pub(crate) fn from_spec(spec: &ResnetSpec, level: CpuLevel) -> Self {
        let block = |b: &BlockSpec| Block {
            conv1: Conv::new(&b.conv1),
            conv2: Conv::new(&b.conv2),
            shortcut: b.shortcut.as_ref().map(window),
        };
        Self {
            mean: spec.mean,
            stem: Conv::new(&spec.stem),
            stem_pool: window(&spec.stem_pool),
            blocks: spec.blocks.iter().map(block).collect(),
            fc: spec.fc.clone(),
            level,
        }
    }

    /// The stem (and its max pool) on `chips`, then the blocks whose output is at least
    /// [`DIRECT_MIN_WIDTH`] wide; returns the activations and the index of the first block
    /// not run.
    fn early_layers(&self, chips: &[RgbView<'_>], pool: &mut Pool) -> (Act, usize) {
        let mut x = self.stem_input(chips, pool);
        let mut end = 0;
        for block in &self.blocks {
            if block.conv1.window.out_size(x.size[1], 1) < DIRECT_MIN_WIDTH {
                break;
            }
            x = block.forward(self.level, x, pool);
            end += 1;
        }
        (x, end)
    }

    /// The stem's output, max-pooled, for `chips` (`[C][N][H·W]`).
    fn stem_input(&self, chips: &[RgbView<'_>], pool: &mut Pool) -> Act {
        let n = chips.len();
        let plane = INPUT_SIZE * INPUT_SIZE;
        let mut data = pool.filled(3 * n * plane, 0.0);
        {
            // [C][N][H·W]: channel c of image i is plane c·N + i.
            let (r, gb) = data.split_at_mut(n * plane);
            let (g, b) = gb.split_at_mut(n * plane);
            for (((chip, r), g), b) in chips
                .iter()
                .zip(r.chunks_exact_mut(plane))
                .zip(g.chunks_exact_mut(plane))
                .zip(b.chunks_exact_mut(plane))
            {
                normalise(chip, self.mean, [r, g, b]);
            }
        }
        let input = Act {
            data,
            channels: 3,
            images: n,
            size: [INPUT_SIZE; 2],
        };
        let x = self
            .stem
            .forward_max_pooled(self.level, &input, &self.stem_pool, pool);
        pool.recycle(input.data);
        x
    }

    /// Embeddings of a batch of 150×150 RGB chips, in order.
    pub fn embed(&self, chips: &[RgbView<'_>]) -> Result<Vec<[f32; EMBEDDING_LEN]>, Error> {
        check_sizes(chips)?;
        if chips.is_empty() {
            return Ok(Vec::new());
        }
        let mut pool = POOL.take();
        let n = chips.len();
        // The wide early layers one image at a time where the direct kernels run (each
        // image's activations then stay in the core's cache), the deep ones over the batch.
        let (mut x, first_batched) = if !self.level.is_scalar() {
            let mut early = Vec::with_capacity(n);
            let mut end = 0;
            for chip in chips {
                let (y, e) = self.early_layers(std::slice::from_ref(chip), &mut pool);
                early.push(y);
                end = e;
            }
            (gather(early, &mut pool), end)
        } else {
            (self.stem_input(chips, &mut pool), 0)
        };
        for block in &self.blocks[first_batched..] {
            x = block.forward(self.level, x, &mut pool);
        }
        // Global average pool, then fc_no_bias (its `[256, 128]` size checked on reading).
        let mut out = vec![[0f32; EMBEDDING_LEN]; n];
        for (c, planes) in x.data.chunks_exact(n * x.plane()).enumerate() {
            let weights = &self.fc[c * EMBEDDING_LEN..][..EMBEDDING_LEN];
            for (e, plane) in out.iter_mut().zip(planes.chunks_exact(x.plane())) {
                let mean = plane.iter().sum::<f32>() / plane.len() as f32;
                for (v, &w) in e.iter_mut().zip(weights) {
                    *v += mean * w;
                }
            }
        }
        pool.recycle(x.data);
        POOL.set(pool);
        Ok(out)
    }
}

/// One-image activations (all of one size and depth) as one batch, `[C][N][H·W]`.
fn gather(images: Vec<Act>, pool: &mut Pool) -> Act {
    let first = images.first().expect("a non-empty batch");
    let (channels, size, plane) = (first.channels, first.size, first.plane());
    let mut data = pool.empty(channels * images.len() * plane);
    for c in 0..channels {
        for image in &images {
            data.extend_from_slice(&image.data[c * plane..][..plane]);
        }
    }
    let n = images.len();
    for image in images {
        pool.recycle(image.data);
    }
    Act {
        data,
        channels,
        images: n,
        size,
    }
}

/// `Err(Error::ImageSize)` for the first chip that is not 150×150.
pub(crate) fn check_sizes(chips: &[RgbView<'_>]) -> Result<(), Error> {
    match chips
        .iter()
        .position(|c| (c.width(), c.height()) != (INPUT_SIZE, INPUT_SIZE))
    {
        Some(index) => Err(Error::ImageSize {
            index,
            width: chips[index].width(),
            height: chips[index].height(),
        }),
        None => Ok(()),
    }
}

/// Average pooling without padding (dlib's `avg_pool` with pad 0 divides by the window).
fn avg_pool(x: &Act, window: &Window, pool: &mut Pool) -> Act {
    let [h, w] = x.size;
    let size = [window.out_size(h, 0), window.out_size(w, 1)];
    let [kh, kw] = window.kernel;
    let [sy, sx] = window.stride;
    let scale = 1.0 / (kh * kw) as f32;
    let mut data = pool.empty(x.channels * x.images * size[0] * size[1]);
    for plane in x.data.chunks_exact(h * w) {
        for oy in 0..size[0] {
            for ox in 0..size[1] {
                let mut sum = 0.0;
                for ky in 0..kh {
                    let row = &plane[(oy * sy + ky) * w + ox * sx..][..kw];
                    sum += row.iter().sum::<f32>();
                }
                data.push(sum * scale);
            }
        }
    }
    Act {
        data,
        channels: x.channels,
        images: x.images,
        size,
    }
}

/// dlib's `add_prev` of tensors of different sizes: the larger size in every dimension,
/// both aligned top-left, missing entries 0.
fn add_zero_padded(a: &Act, b: &Act, pool: &mut Pool) -> Act {
    let channels = a.channels.max(b.channels);
    let size = [a.size[0].max(b.size[0]), a.size[1].max(b.size[1])];
    let n = a.images;
    let mut data = pool.filled(channels * n * size[0] * size[1], 0.0);
    for t in [a, b] {
        for (i, plane) in t.data.chunks_exact(t.plane()).enumerate() {
            let (c, image) = (i / n, i % n);
            let out = &mut data[(c * n + image) * size[0] * size[1]..];
            for (y, row) in plane.chunks_exact(t.size[1]).enumerate() {
                for (o, v) in out[y * size[1]..].iter_mut().zip(row) {
                    *o += v;
                }
            }
        }
    }
    Act {
        data,
        channels,
        images: n,
        size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2→2-channel `kernel²` convolution (zero weights) and a 3-image input of `h×w`
    /// whose values differ everywhere, with the output size.
    fn conv_and_input(
        kernel: usize,
        stride: usize,
        pad: usize,
        [h, w]: [usize; 2],
    ) -> (Conv, Act, [usize; 2]) {
        let conv = Conv::new(&ConvSpec {
            weight: vec![0.0; 2 * 2 * kernel * kernel],
            bias: Vec::new(),
            shape: [2, 2, kernel, kernel],
            stride: [stride, stride],
            padding: [pad, pad],
        });
        let x = Act {
            data: (0..2 * 3 * h * w).map(|i| i as f32 + 1.0).collect(),
            channels: 2,
            images: 3,
            size: [h, w],
        };
        let out = [conv.window.out_size(h, 0), conv.window.out_size(w, 1)];
        (conv, x, out)
    }

    #[test]
    fn strided_im2col_matches_the_row_by_row_one() {
        let mut pool = Pool::default();
        for (kernel, stride, size) in [
            (7, 2, [150, 150]),
            (3, 2, [35, 35]),
            (3, 2, [8, 9]),
            (2, 2, [4, 4]),
            (3, 3, [10, 11]),
            (1, 2, [5, 4]),
        ] {
            let (conv, x, out) = conv_and_input(kernel, stride, 0, size);
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            conv.im2col_phases(&x, 1..3, out, &mut fast, &mut pool);
            conv.im2col_general(&x, 1..3, out, &mut general);
            assert_eq!(
                fast, general,
                "{kernel}×{kernel} stride {stride} on {size:?}"
            );
        }
    }

    #[test]
    fn same_size_im2col_matches_the_row_by_row_one() {
        for (kernel, pad, size) in [
            (3, 1, [35, 35]),
            (3, 1, [4, 7]),
            (3, 1, [1, 1]),
            (3, 1, [2, 1]),
            (5, 2, [6, 3]),
            (1, 0, [3, 3]),
        ] {
            let (conv, x, out) = conv_and_input(kernel, 1, pad, size);
            assert_eq!(out, size);
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            conv.im2col_same(&x, 1..3, &mut fast);
            conv.im2col_general(&x, 1..3, out, &mut general);
            assert_eq!(fast, general, "{kernel}×{kernel} pad {pad} on {size:?}");
        }
    }
}
