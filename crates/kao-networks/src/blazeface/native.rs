//! [`NativeBlazeFace`]: the BlazeFace [`Graph`] on the CPU with kernels of its own.
//!
//! Images are kept planar (NCHW), so every kernel's inner loop runs along a row of
//! pixels, which the compiler vectorises whatever the channel count:
//! * 1×1 convolutions are one matrix product per image, `[O, I] × [I, H·W]` (the `gemm`
//!   crate), starting from the bias; other dense convolutions first gather im2col rows.
//!   The fused relu runs on the result.
//! * Depthwise convolutions add each filter tap's shifted input row to the output row
//!   ([`Depthwise`] in kao-kernels), with fused multiply-adds at the `avx2` and `avx512`
//!   [`CpuLevel`]s (chosen when the model is loaded).
//! * Adds and relus work in place when the operand is not used again.
//! * At load, a relu that is the only reader of a convolution's or add's output folds into
//!   it, and a pad that only appends zero channels to a residual shortcut is dropped: the
//!   add adds the shortcut into the leading channels (the full-range graph loses its 47
//!   relus and 8 pads, about 7 % of the run).
//!
//! One run uses one thread: splitting BlazeFace's small layers over threads cost more in
//! hand-offs than it saved (11.7 ms per full-range image on 2 threads against 6.5 ms on
//! one), so callers run frames side by side instead (kao-extract's detection workers).

use kao_kernels::{
    After, CpuLevel, Depthwise, Direct, POOL, Planes, Pool, Window, add, inside, matmul_add,
    max_pool, relu_in_place, source,
};

use super::{BlazeFaceError, Graph, Io, Op};

/// A tensor: values in row-major order of `shape` (NCHW images, or `[N, rows, cols]`).
#[derive(Debug, Clone)]
struct Buf {
    data: Vec<f32>,
    shape: Vec<usize>,
}

/// One op, with its constants in the layout its kernel reads.
#[derive(Debug, Clone)]
enum Kernel {
    /// 1×1, stride 1, unpadded: weights `[O, I]`.
    Pointwise {
        weight: Vec<f32>,
        bias: Vec<f32>,
        relu: bool,
        /// The weights packed for [`Direct`], when the output channels allow it.
        direct: Option<Direct>,
    },
    /// Any other dense convolution: weights `[O, I·kh·kw]` (OIHW).
    Dense {
        weight: Vec<f32>,
        bias: Vec<f32>,
        window: Window,
        relu: bool,
        /// The weights packed for [`Direct`], when the output channels allow it.
        direct: Option<Direct>,
    },
    Depthwise(Depthwise),
    MaxPool(Window),
    /// Zero padding `[before, after]` of the NCHW dims.
    Pad([(usize, usize); 4]),
    Add {
        relu: bool,
    },
    Relu,
    /// Bilinear resize `Ry · x · Rxᵀ`: the non-zero `(index, weight)` taps of each row of
    /// `Ry`, and `Rxᵀ` `[W, OW]`.
    Resize {
        ry: Vec<Vec<(usize, f32)>>,
        rx_t: Vec<f32>,
    },
    /// NCHW → NHWC, flattened to the output shape `[N, rows, cols]`.
    Reshape,
    /// Concatenation along this dim of our layout.
    Concat {
        dim: usize,
    },
}

#[derive(Debug, Clone)]
struct Node {
    kernel: Kernel,
    inputs: Vec<(usize, bool)>,
    output: usize,
    /// Output shape in our layout (NCHW or `[N, rows, cols]`) for a batch of one.
    shape: Vec<usize>,
}

/// BlazeFace on the CPU without burn: the same graph as [`super::BlazeFaceNet`], kernels
/// of its own. Outputs agree with TFLite's as closely as burn's (the tests).
#[derive(Debug, Clone)]
pub struct NativeBlazeFace {
    nodes: Vec<Node>,
    io: Io,
    /// The kernels' instructions, chosen at load.
    level: CpuLevel,
}

/// The non-zero entries of each row of a dense `[rows, cols]` matrix.
fn sparse_rows(m: &[f32], cols: usize) -> Vec<Vec<(usize, f32)>> {
    m.chunks_exact(cols)
        .map(|row| {
            row.iter()
                .enumerate()
                .filter(|&(_, &v)| v != 0.0)
                .map(|(i, &v)| (i, v))
                .collect()
        })
        .collect()
}

/// An NHWC shape in our layout (NCHW); rank-3 shapes stay as they are.
fn our_shape(nhwc: &[usize]) -> Vec<usize> {
    match *nhwc {
        [n, h, w, c] => vec![n, c, h, w],
        _ => nhwc.to_vec(),
    }
}

/// `a += b` where `b` may have fewer channels (NCHW, the same batch and plane size): its
/// channels add into `a`'s leading ones. Then the relu over all of `a`, if asked.
fn add_leading(a: &mut Buf, b: &Buf, relu: bool) {
    if a.data.len() == b.data.len() {
        add(&mut a.data, &b.data, relu);
        return;
    }
    let images = a.shape[0].max(1);
    let (a_image, b_image) = (a.data.len() / images, b.data.len() / images);
    for (a, b) in a
        .data
        .chunks_exact_mut(a_image)
        .zip(b.data.chunks_exact(b_image))
    {
        let (leading, rest) = a.split_at_mut(b_image);
        add(leading, b, relu);
        if relu {
            relu_in_place(rest);
        }
    }
}

/// Folds each relu into the convolution or add before it when the relu is the only reader
/// of that op's output (and the output is not a graph output): one pass over the tensor
/// fewer.
fn fuse_relus(nodes: Vec<Node>, outputs: &[usize]) -> Vec<Node> {
    let mut readers = std::collections::HashMap::<usize, usize>::new();
    for node in &nodes {
        for &(t, _) in &node.inputs {
            *readers.entry(t).or_default() += 1;
        }
    }
    let mut fused: Vec<Node> = Vec::with_capacity(nodes.len());
    for node in nodes {
        if let (Kernel::Relu, [(input, _)]) = (&node.kernel, &node.inputs[..])
            && readers.get(input) == Some(&1)
            && !outputs.contains(input)
            && let Some(producer) = fused.iter_mut().rev().find(|n| n.output == *input)
            && let Some(relu) = producer.kernel.relu_flag()
            && !*relu
        {
            *relu = true;
            producer.output = node.output;
            continue;
        }
        fused.push(node);
    }
    fused
}

/// Drops each pad that only appends zero channels to a residual shortcut when an add is its
/// only reader: the add then adds the unpadded tensor into the leading channels.
fn fuse_channel_pads(nodes: Vec<Node>, outputs: &[usize]) -> Vec<Node> {
    let readers = |t: usize| {
        nodes
            .iter()
            .filter(|n| n.inputs.iter().any(|i| i.0 == t))
            .count()
    };
    let mut rename = std::collections::HashMap::new();
    for node in &nodes {
        if let (Kernel::Pad([(0, 0), (0, _), (0, 0), (0, 0)]), [(input, _)]) =
            (&node.kernel, &node.inputs[..])
            && readers(node.output) == 1
            && !outputs.contains(&node.output)
            && nodes.iter().any(|n| {
                matches!(n.kernel, Kernel::Add { .. })
                    && n.inputs.iter().any(|i| i.0 == node.output)
            })
        {
            rename.insert(node.output, *input);
        }
    }
    nodes
        .into_iter()
        .filter(|n| !rename.contains_key(&n.output))
        .map(|mut n| {
            for (t, _) in &mut n.inputs {
                *t = rename.get(t).copied().unwrap_or(*t);
            }
            n
        })
        .collect()
}

/// Marks each operand's last use (graph outputs are never released), after fusions moved
/// reads from one node to another.
fn mark_last_uses(nodes: &mut [Node], outputs: &[usize]) {
    let mut last = std::collections::HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for &(t, _) in &node.inputs {
            last.insert(t, i);
        }
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        for (t, is_last) in &mut node.inputs {
            *is_last = last[t] == i && !outputs.contains(t);
        }
    }
}

impl Kernel {
    /// The fused-relu flag of a kernel that has one.
    fn relu_flag(&mut self) -> Option<&mut bool> {
        match self {
            Kernel::Pointwise { relu, .. }
            | Kernel::Dense { relu, .. }
            | Kernel::Depthwise(Depthwise { relu, .. })
            | Kernel::Add { relu } => Some(relu),
            _ => None,
        }
    }

    /// The kernel for a graph op whose output has NHWC shape `out`.
    fn new(op: Op, out: &[usize]) -> Self {
        match op {
            Op::Conv {
                weight,
                shape: [o, _, kh, kw],
                bias,
                stride,
                pad,
                groups,
                relu,
            } => {
                let bias = bias.unwrap_or_else(|| vec![0.0; o]);
                let window = Window {
                    kernel: [kh, kw],
                    stride,
                    pad,
                };
                if groups > 1 {
                    Kernel::Depthwise(Depthwise {
                        weight,
                        bias,
                        window,
                        multiplier: o / groups,
                        relu,
                    })
                } else if [kh, kw] == [1, 1] && stride == [1, 1] && pad == [[0, 0], [0, 0]] {
                    Kernel::Pointwise {
                        direct: Direct::new(&weight, o, weight.len() / o.max(1)),
                        weight,
                        bias,
                        relu,
                    }
                } else {
                    Kernel::Dense {
                        direct: Direct::new(&weight, o, weight.len() / o.max(1)),
                        weight,
                        bias,
                        window,
                        relu,
                    }
                }
            }
            Op::MaxPool {
                window,
                stride,
                pad,
            } => Kernel::MaxPool(Window {
                kernel: window,
                stride,
                pad,
            }),
            Op::Pad([n, h, w, c]) => Kernel::Pad([n, c, h, w]),
            Op::Add { relu } => Kernel::Add { relu },
            Op::Relu => Kernel::Relu,
            Op::Resize { ry, rx } => {
                let (oh, ow) = (out[1], out[2]);
                let w = rx.len() / ow;
                // Rxᵀ `[W, OW]`.
                let rx_t = (0..w * ow).map(|i| rx[(i % ow) * w + i / ow]).collect();
                Kernel::Resize {
                    ry: sparse_rows(&ry, ry.len() / oh),
                    rx_t,
                }
            }
            Op::Reshape { .. } => Kernel::Reshape,
            Op::Concat { axis } => Kernel::Concat {
                dim: if out.len() == 4 {
                    [0, 2, 3, 1][axis]
                } else {
                    axis
                },
            },
        }
    }
}

impl NativeBlazeFace {
    /// Loads a `.tflite` BlazeFace model, for the [`CpuLevel`] `KAO_CPU` names or this
    /// CPU's widest.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, BlazeFaceError> {
        let level = CpuLevel::from_env()?;
        Ok(Self::from_graph(Graph::load(path)?, level))
    }

    /// Builds the executor from a parsed model (see [`super::BlazeFaceNet::from_model`]),
    /// for the [`CpuLevel`] `KAO_CPU` names or this CPU's widest.
    pub fn from_model(model: &kao_model_files::tflite::Model) -> Result<Self, BlazeFaceError> {
        Self::from_model_at(model, CpuLevel::from_env()?)
    }

    /// [`NativeBlazeFace::from_model`] with the kernels at `level`.
    pub fn from_model_at(
        model: &kao_model_files::tflite::Model,
        level: CpuLevel,
    ) -> Result<Self, BlazeFaceError> {
        Ok(Self::from_graph(Graph::from_model(model)?, level))
    }

    /// The instructions the kernels run on.
    pub fn cpu_level(&self) -> CpuLevel {
        self.level
    }

    pub(crate) fn from_graph(graph: Graph, level: CpuLevel) -> Self {
        let nodes = graph
            .nodes
            .into_iter()
            .map(|n| Node {
                kernel: Kernel::new(n.op, &n.shape),
                inputs: n.inputs,
                output: n.output,
                shape: our_shape(&n.shape),
            })
            .collect();
        let mut nodes = fuse_channel_pads(fuse_relus(nodes, &graph.io.outputs), &graph.io.outputs);
        mark_last_uses(&mut nodes, &graph.io.outputs);
        Self {
            nodes,
            io: graph.io,
            level,
        }
    }

    /// Input `[height, width]` (128×128 short range, 192×192 full range).
    pub fn input_size(&self) -> [usize; 2] {
        self.io.size
    }

    /// Number of anchors, the rows of each output (896 short range, 2304 full range).
    pub fn anchors(&self) -> usize {
        self.io.anchors
    }

    /// Runs the network on NHWC input values (one or more images): the flattened
    /// `(regressors, classificators)`, `N·anchors·16` and `N·anchors` values, raw
    /// (before the sigmoid), as [`super::BlazeFaceNet::run`] gives them.
    pub fn run(&self, nhwc: &[f32]) -> Result<(Vec<f32>, Vec<f32>), BlazeFaceError> {
        let [h, w] = self.io.size;
        let n = super::images_in(nhwc, self.io.size)?;
        let mut pool = POOL.take();
        let mut values: Vec<Option<Buf>> = vec![None; self.io.tensor_count];
        values[self.io.input] = Some(Buf {
            data: nhwc_to_nchw(nhwc, [n, h, w, 3], &mut pool),
            shape: vec![n, 3, h, w],
        });
        for node in &self.nodes {
            let mut shape = node.shape.clone();
            shape[0] = n;
            let out = node.compute(self.level, &mut values, shape, &mut pool);
            values[node.output] = Some(out);
        }
        let mut take = |t: usize| {
            values[t]
                .take()
                .expect("outputs are computed (checked at load time)")
                .data
        };
        let outputs = (take(self.io.outputs[0]), take(self.io.outputs[1]));
        POOL.set(pool);
        Ok(outputs)
    }
}

impl Node {
    /// Runs this node on its operands in `values` (taking those at their last use), giving
    /// a tensor of `shape`.
    fn compute(
        &self,
        level: CpuLevel,
        values: &mut [Option<Buf>],
        shape: Vec<usize>,
        pool: &mut Pool,
    ) -> Buf {
        const COMPUTED: &str = "operands are computed before use (checked at load time)";
        let (first, last) = self.inputs[0];
        // Ops that may reuse their first operand's storage.
        let in_place = match self.kernel {
            Kernel::Add { relu } => Some(relu),
            Kernel::Relu => Some(true),
            _ => None,
        };
        if let Some(relu) = in_place {
            // Add is commutative: write into the larger operand (a shortcut whose zero
            // channels were left out is the smaller), of equal ones into whichever is not
            // used again.
            let (mut first, mut last) = (first, last);
            if let Some(&(b, b_last)) = self.inputs.get(1) {
                let len = |t: usize| values[t].as_ref().expect(COMPUTED).data.len();
                if len(b) > len(first) || (len(b) == len(first) && !last && b_last) {
                    (first, last) = (b, b_last);
                }
            }
            let others = self.inputs.iter().filter(|&&(t, _)| t != first);
            let mut a = if last && self.inputs.iter().filter(|&&(t, _)| t == first).count() == 1 {
                values[first].take().expect(COMPUTED)
            } else {
                let v = values[first].as_ref().expect(COMPUTED);
                let mut data = pool.empty(v.data.len());
                data.extend_from_slice(&v.data);
                Buf {
                    data,
                    shape: v.shape.clone(),
                }
            };
            let mut added = false;
            for &(b, _) in others {
                add_leading(&mut a, values[b].as_ref().expect(COMPUTED), relu);
                added = true;
            }
            if !added && relu {
                relu_in_place(&mut a.data);
            }
            self.release(values, pool);
            return a;
        }
        let x = values[first].as_ref().expect(COMPUTED);
        let data = match &self.kernel {
            Kernel::Pointwise {
                weight,
                bias,
                relu,
                direct,
            } => direct
                .as_ref()
                .and_then(|d| pointwise_direct(d, level, x, bias, *relu, &shape, pool))
                .unwrap_or_else(|| {
                    conv_matmul(&x.data, x.shape[1], weight, bias, *relu, &shape, pool)
                }),
            Kernel::Dense {
                weight,
                bias,
                window,
                relu,
                direct,
            } => direct
                .as_ref()
                .and_then(|d| dense_direct(d, level, x, window, bias, *relu, &shape, pool))
                .unwrap_or_else(|| {
                    let cols = im2col(x, window, &shape, pool);
                    let k = cols.len() / (shape[0] * shape[2] * shape[3]);
                    let data = conv_matmul(&cols, k, weight, bias, *relu, &shape, pool);
                    pool.recycle(cols);
                    data
                }),
            Kernel::Depthwise(dw) => depthwise(level, x, dw, &shape, pool),
            Kernel::MaxPool(window) => max_pool(
                &x.data,
                [x.shape[2], x.shape[3]],
                window,
                [shape[2], shape[3]],
                pool,
            ),
            Kernel::Pad(pads) => pad(x, pads, &shape, pool),
            Kernel::Resize { ry, rx_t } => resize(x, ry, rx_t, &shape, pool),
            Kernel::Reshape => {
                let [n, c, h, w] = x.shape[..] else {
                    unreachable!("rank checked at load time")
                };
                nchw_to_nhwc(&x.data, [n, c, h, w], pool)
            }
            Kernel::Concat { dim } => {
                let parts: Vec<&Buf> = self
                    .inputs
                    .iter()
                    .map(|&(t, _)| values[t].as_ref().expect(COMPUTED))
                    .collect();
                concat(&parts, *dim, &shape, pool)
            }
            Kernel::Add { .. } | Kernel::Relu => unreachable!("handled above"),
        };
        self.release(values, pool);
        Buf { data, shape }
    }

    /// Recycles the operands at their last use.
    fn release(&self, values: &mut [Option<Buf>], pool: &mut Pool) {
        for &(t, last) in &self.inputs {
            if last && let Some(buf) = values[t].take() {
                pool.recycle(buf.data);
            }
        }
    }
}

/// NHWC values `[n, h, w, c]` in NCHW order.
fn nhwc_to_nchw(v: &[f32], [n, h, w, c]: [usize; 4], pool: &mut Pool) -> Vec<f32> {
    let mut out = pool.filled(v.len(), 0.0);
    for b in 0..n {
        for (p, px) in v[b * h * w * c..][..h * w * c].chunks_exact(c).enumerate() {
            for (ch, &x) in px.iter().enumerate() {
                out[(b * c + ch) * h * w + p] = x;
            }
        }
    }
    out
}

/// NCHW values `[n, c, h, w]` in NHWC order.
fn nchw_to_nhwc(v: &[f32], [n, c, h, w]: [usize; 4], pool: &mut Pool) -> Vec<f32> {
    let mut out = pool.filled(v.len(), 0.0);
    for b in 0..n {
        for ch in 0..c {
            let plane = &v[(b * c + ch) * h * w..][..h * w];
            for (p, &x) in plane.iter().enumerate() {
                out[(b * h * w + p) * c + ch] = x;
            }
        }
    }
    out
}

/// A 1×1 convolution of `x` by [`Direct::pointwise`], image by image; `None` where its
/// kernels do not run.
fn pointwise_direct(
    direct: &Direct,
    level: CpuLevel,
    x: &Buf,
    bias: &[f32],
    relu: bool,
    out: &[usize],
    pool: &mut Pool,
) -> Option<Vec<f32>> {
    let positions = out[2] * out[3];
    let mut data = pool.empty(out.iter().product());
    for image in x.data.chunks_exact(x.shape[1] * positions) {
        if !direct.pointwise(level, image, positions, bias, relu, &mut data, pool) {
            pool.recycle(data);
            return None;
        }
    }
    Some(data)
}

/// A dense convolution of `x` by [`Direct::forward`], image by image; `None` where its
/// kernels do not run.
#[allow(clippy::too_many_arguments)]
fn dense_direct(
    direct: &Direct,
    level: CpuLevel,
    x: &Buf,
    window: &Window,
    bias: &[f32],
    relu: bool,
    out: &[usize],
    pool: &mut Pool,
) -> Option<Vec<f32>> {
    let [_, c, h, w] = x.shape[..] else {
        unreachable!("rank checked at load time")
    };
    let after = After {
        relu,
        max_pool: None,
    };
    let one = |image: &[f32], pool: &mut Pool| {
        // One image's `[C][H·W]` is the `[C][N][H·W]` layout for N = 1.
        let planes = Planes {
            data: image,
            channels: c,
            images: 1,
            size: [h, w],
        };
        direct.forward(level, window, bias, planes, after, pool)
    };
    let mut images = x.data.chunks_exact(c * h * w);
    // The first image's output is the start of the whole.
    let mut data = one(images.next()?, pool)?;
    data.reserve(out.iter().product::<usize>() - data.len());
    for image in images {
        let y = one(image, pool)?;
        data.extend_from_slice(&y);
        pool.recycle(y);
    }
    Some(data)
}

/// A convolution as a matrix product per image: `w` `[O, k]` times that image's `x`
/// `[k, OH·OW]`, plus the bias, then the relu if asked; `out` is the NCHW output shape.
fn conv_matmul(
    x: &[f32],
    k: usize,
    w: &[f32],
    bias: &[f32],
    relu: bool,
    out: &[usize],
    pool: &mut Pool,
) -> Vec<f32> {
    let [n, o, oh, ow] = out[..] else {
        unreachable!("rank checked at load time")
    };
    let p = oh * ow;
    assert!(
        x.len() == n * k * p && w.len() == o * k && bias.len() == o,
        "matrix sizes checked at load time"
    );
    let mut data = pool.empty(n * o * p);
    for _ in 0..n {
        for &b in bias {
            data.extend(std::iter::repeat_n(b, p));
        }
    }
    for (image, dst) in x.chunks_exact(k * p).zip(data.chunks_exact_mut(o * p)) {
        matmul_add(dst, p, w, image, p, [o, p, k]);
    }
    if relu {
        relu_in_place(&mut data);
    }
    data
}

/// im2col rows `[N][C·kh·kw, OH·OW]` (OIHW order), zeros outside the input.
fn im2col(x: &Buf, window: &Window, out: &[usize], pool: &mut Pool) -> Vec<f32> {
    let [n, c, h, w] = x.shape[..] else {
        unreachable!("rank checked at load time")
    };
    let (oh, ow) = (out[2], out[3]);
    let [kh, kw] = window.kernel;
    let [sy, sx] = window.stride;
    let mut cols = pool.filled(n * c * kh * kw * oh * ow, 0.0);
    for (r, dst) in cols.chunks_exact_mut(oh * ow).enumerate() {
        let (b, ch, ky, kx) = (r / (c * kh * kw), r / (kh * kw) % c, r / kw % kh, r % kw);
        let plane = &x.data[(b * c + ch) * h * w..][..h * w];
        for (oy, dst) in dst.chunks_exact_mut(ow).enumerate() {
            let Some(iy) = source(oy, ky, sy, window.pad[0][0], h) else {
                continue;
            };
            let row = &plane[iy * w..][..w];
            for ox in inside(kx, sx, window.pad[1][0], w, ow) {
                dst[ox] = row[ox * sx + kx - window.pad[1][0]];
            }
        }
    }
    cols
}

/// A depthwise convolution of `x` to the NCHW shape `out` (kao-kernels' [`Depthwise`]).
fn depthwise(level: CpuLevel, x: &Buf, dw: &Depthwise, out: &[usize], pool: &mut Pool) -> Vec<f32> {
    let ([n, c, h, w], [_, oc, oh, ow]) = (&x.shape[..], out) else {
        unreachable!("rank checked at load time")
    };
    dw.forward(level, &x.data, [*n, *c, *h, *w], [*n, *oc, *oh, *ow], pool)
}

/// Zero padding of each NCHW dim.
fn pad(x: &Buf, pads: &[(usize, usize); 4], out: &[usize], pool: &mut Pool) -> Vec<f32> {
    let [_, c, h, w] = x.shape[..] else {
        unreachable!("rank checked at load time")
    };
    let [_, oc, oh, ow] = out[..] else {
        unreachable!("rank checked at load time")
    };
    let mut data = pool.filled(out.iter().product(), 0.0);
    for (r, row) in x.data.chunks_exact(w).enumerate() {
        let (b, ch, y) = (r / (c * h), r / h % c, r % h);
        let at = (((b + pads[0].0) * oc + ch + pads[1].0) * oh + y + pads[2].0) * ow + pads[3].0;
        data[at..at + w].copy_from_slice(row);
    }
    data
}

/// Bilinear resize of each plane: every input row across (`x · Rxᵀ`, one matrix product
/// for all the rows of all the planes), then each output row as the sum of those rows
/// weighted by `Ry`'s taps.
fn resize(
    x: &Buf,
    ry: &[Vec<(usize, f32)>],
    rx_t: &[f32],
    out: &[usize],
    pool: &mut Pool,
) -> Vec<f32> {
    let [_, _, h, w] = x.shape[..] else {
        unreachable!("rank checked at load time")
    };
    let (oh, ow) = (out[2], out[3]);
    let rows = x.data.len() / w;
    let mut across = pool.filled(rows * ow, 0.0);
    matmul_add(&mut across, ow, &x.data, rx_t, ow, [rows, ow, w]);
    let mut data = pool.filled(out.iter().product(), 0.0);
    for (dst, src) in data
        .chunks_exact_mut(oh * ow)
        .zip(across.chunks_exact(h * ow))
    {
        for (out, taps) in dst.chunks_exact_mut(ow).zip(ry) {
            for &(iy, wy) in taps {
                for (o, &v) in out.iter_mut().zip(&src[iy * ow..][..ow]) {
                    *o += wy * v;
                }
            }
        }
    }
    pool.recycle(across);
    data
}

/// Concatenation along `dim` of row-major tensors.
fn concat(parts: &[&Buf], dim: usize, out: &[usize], pool: &mut Pool) -> Vec<f32> {
    let outer: usize = out[..dim].iter().product();
    let mut data = pool.empty(out.iter().product());
    for o in 0..outer {
        for part in parts {
            let inner: usize = part.shape[dim..].iter().product();
            data.extend_from_slice(&part.data[o * inner..(o + 1) * inner]);
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values that differ at every position.
    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect()
    }

    fn image(shape: [usize; 4]) -> Buf {
        Buf {
            data: ramp(shape.iter().product()),
            shape: shape.to_vec(),
        }
    }

    /// Output size of a window op on one axis.
    fn out_size(input: usize, [before, after]: [usize; 2], k: usize, s: usize) -> usize {
        (input + before + after - k) / s + 1
    }

    /// The textbook depthwise loop: every output, every tap, zeros outside the input
    /// (output channel `oc` reads input channel `oc·C / out_channels`). No bias.
    fn naive_depthwise(
        x: &Buf,
        window: &Window,
        out_channels: usize,
        weight: &[f32],
    ) -> (Vec<f32>, [usize; 4]) {
        let [n, c, h, w] = x.shape[..] else { panic!() };
        let [kh, kw] = window.kernel;
        let oh = out_size(h, window.pad[0], kh, window.stride[0]);
        let ow = out_size(w, window.pad[1], kw, window.stride[1]);
        let mut out = Vec::new();
        for b in 0..n {
            for oc in 0..out_channels {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * window.stride[0] + ky) as isize
                                    - window.pad[0][0] as isize;
                                let ix = (ox * window.stride[1] + kx) as isize
                                    - window.pad[1][0] as isize;
                                if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                    let ic = oc * c / out_channels;
                                    let v =
                                        x.data[((b * c + ic) * h + iy as usize) * w + ix as usize];
                                    acc += v * weight[oc * kh * kw + ky * kw + kx];
                                }
                            }
                        }
                        out.push(acc);
                    }
                }
            }
        }
        (out, [n, out_channels, oh, ow])
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "at {i}: {x} vs {y}"
            );
        }
    }

    #[test]
    fn depthwise_matches_the_textbook_loop() {
        // Planes narrower than a block (summed as one long row) and wider ones (row by
        // row, blocks of 32 and 8 and single values); strides 1 to 3.
        for (shape, kernel, stride, pad, multiplier) in [
            ([2, 3, 7, 6], [3, 3], [1, 1], [[1, 1], [1, 1]], 1),
            ([2, 3, 7, 6], [3, 3], [2, 2], [[0, 1], [0, 1]], 1),
            ([2, 3, 7, 6], [5, 5], [1, 1], [[2, 2], [2, 2]], 2),
            ([2, 3, 7, 6], [5, 5], [2, 2], [[1, 2], [1, 2]], 1),
            ([2, 3, 7, 6], [2, 3], [1, 2], [[0, 1], [1, 1]], 3),
            ([1, 2, 5, 43], [3, 3], [1, 1], [[1, 1], [1, 1]], 1),
            ([1, 2, 6, 96], [3, 3], [2, 2], [[0, 1], [0, 1]], 1),
            ([1, 2, 6, 97], [3, 3], [2, 2], [[1, 1], [1, 1]], 1),
            ([1, 2, 5, 70], [3, 4], [1, 3], [[1, 1], [2, 1]], 1),
        ] {
            let x = image(shape);
            let window = Window {
                kernel,
                stride,
                pad,
            };
            let oc = shape[1] * multiplier;
            let taps = kernel[0] * kernel[1];
            let weight = ramp(oc * taps);
            let bias: Vec<f32> = (0..oc).map(|i| i as f32 * 0.1).collect();
            let (want, shape) = naive_depthwise(&x, &window, oc, &weight);
            let want: Vec<f32> = want
                .iter()
                .enumerate()
                .map(|(i, v)| (v + bias[i / (shape[2] * shape[3]) % oc]).max(0.0))
                .collect();
            let dw = Depthwise {
                weight,
                bias,
                window,
                multiplier,
                relu: true,
            };
            for level in CpuLevel::available() {
                let got = depthwise(level, &x, &dw, &shape, &mut Pool::default());
                close(&got, &want);
            }
        }
    }

    #[test]
    fn dense_convolution_matches_the_textbook_loop() {
        let x = image([1, 3, 9, 8]);
        let window = Window {
            kernel: [3, 3],
            stride: [2, 2],
            pad: [[0, 1], [0, 1]],
        };
        let (o, k) = (4, 3 * 9);
        let weight = ramp(o * k);
        let bias = vec![0.5; o];
        let [_, c, h, w] = x.shape[..] else { panic!() };
        let oh = out_size(h, window.pad[0], 3, 2);
        let ow = out_size(w, window.pad[1], 3, 2);
        let mut want = Vec::new();
        for oc in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.5;
                    for ic in 0..c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (oy * 2 + ky, ox * 2 + kx);
                                if iy < h && ix < w {
                                    acc += x.data[(ic * h + iy) * w + ix]
                                        * weight[oc * k + (ic * 3 + ky) * 3 + kx];
                                }
                            }
                        }
                    }
                    want.push(acc);
                }
            }
        }
        let shape = [1, o, oh, ow];
        let mut pool = Pool::default();
        let cols = im2col(&x, &window, &shape, &mut pool);
        close(
            &conv_matmul(&cols, k, &weight, &bias, false, &shape, &mut pool),
            &want,
        );
    }

    #[test]
    fn a_shortcut_with_fewer_channels_adds_into_the_leading_ones() {
        // Two images of 3 channels of 2 values; the shortcut has 1 channel.
        let mut a = Buf {
            data: vec![
                1.0, -2.0, -3.0, 4.0, 5.0, -6.0, -1.0, 2.0, 3.0, -4.0, -5.0, 6.0,
            ],
            shape: vec![2, 3, 1, 2],
        };
        let b = Buf {
            data: vec![10.0, 1.0, 20.0, -3.0],
            shape: vec![2, 1, 1, 2],
        };
        add_leading(&mut a, &b, true);
        // Image 0: channel 0 is [11, -1] → [11, 0]; the others only get the relu.
        // Image 1: channel 0 is [19, -1] → [19, 0].
        assert_eq!(
            a.data,
            [11.0, 0.0, 0.0, 4.0, 5.0, 0.0, 19.0, 0.0, 3.0, 0.0, 0.0, 6.0]
        );
    }

    #[test]
    fn max_pool_matches_the_textbook_loop() {
        let x = image([1, 2, 8, 6]);
        for (kernel, stride, pad) in [
            ([2, 2], [2, 2], [[0, 0], [0, 0]]),
            ([3, 3], [2, 2], [[1, 1], [0, 1]]),
            // Unpadded windows (the ResNet's stem pool is 3×3 / 2).
            ([3, 3], [2, 2], [[0, 0], [0, 0]]),
            ([2, 3], [1, 2], [[0, 0], [0, 0]]),
        ] {
            let window = Window {
                kernel,
                stride,
                pad,
            };
            let [_, c, h, w] = x.shape[..] else { panic!() };
            let shape = [
                1,
                c,
                out_size(h, pad[0], kernel[0], stride[0]),
                out_size(w, pad[1], kernel[1], stride[1]),
            ];
            let got = max_pool(
                &x.data,
                [h, w],
                &window,
                [shape[2], shape[3]],
                &mut Pool::default(),
            );
            let mut direct = Vec::new();
            for ch in 0..c {
                for oy in 0..shape[2] {
                    for ox in 0..shape[3] {
                        let mut m = f32::NEG_INFINITY;
                        for ky in 0..kernel[0] {
                            for kx in 0..kernel[1] {
                                let iy = (oy * stride[0] + ky) as isize - pad[0][0] as isize;
                                let ix = (ox * stride[1] + kx) as isize - pad[1][0] as isize;
                                if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                    m = m.max(x.data[(ch * h + iy as usize) * w + ix as usize]);
                                }
                            }
                        }
                        direct.push(m);
                    }
                }
            }
            assert_eq!(got, direct);
        }
    }

    #[test]
    fn pad_resize_and_layout_round_trip() {
        let x = image([2, 3, 4, 5]);
        let mut pool = Pool::default();
        // Padding every dim, then reading the original back out.
        let pads = [(0, 1), (1, 2), (2, 0), (0, 3)];
        let shape = [3, 6, 6, 8];
        let padded = pad(&x, &pads, &shape, &mut pool);
        for b in 0..2 {
            for c in 0..3 {
                for y in 0..4 {
                    for xx in 0..5 {
                        let got = padded[((b * 6 + c + 1) * 6 + y + 2) * 8 + xx];
                        assert_eq!(got, x.data[((b * 3 + c) * 4 + y) * 5 + xx]);
                    }
                }
            }
        }
        assert_eq!(
            padded.iter().filter(|&&v| v != 0.0).count(),
            x.data.iter().filter(|&&v| v != 0.0).count()
        );
        // Resizing with identity matrices changes nothing; other matrices give Ry·x·Rxᵀ.
        let eye =
            |n: usize| -> Vec<f32> { (0..n * n).map(|i| f32::from(i / n == i % n)).collect() };
        assert_eq!(
            resize(
                &x,
                &sparse_rows(&eye(4), 4),
                &eye(5),
                &[2, 3, 4, 5],
                &mut pool
            ),
            x.data
        );
        let (ry, rx) = (ramp(6 * 4), ramp(7 * 5));
        let rx_t: Vec<f32> = (0..5 * 7).map(|i| rx[(i % 7) * 5 + i / 7]).collect();
        let mut want = Vec::new();
        for plane in x.data.chunks_exact(4 * 5) {
            for oy in 0..6 {
                for ox in 0..7 {
                    let mut acc = 0.0;
                    for iy in 0..4 {
                        for ix in 0..5 {
                            acc += ry[oy * 4 + iy] * plane[iy * 5 + ix] * rx[ox * 5 + ix];
                        }
                    }
                    want.push(acc);
                }
            }
        }
        let got = resize(&x, &sparse_rows(&ry, 4), &rx_t, &[2, 3, 6, 7], &mut pool);
        close(&got, &want);
        // NCHW → NHWC → NCHW.
        let nhwc = nchw_to_nhwc(&x.data, [2, 3, 4, 5], &mut pool);
        assert_eq!(nhwc[1], x.data[20]);
        assert_eq!(nhwc_to_nchw(&nhwc, [2, 4, 5, 3], &mut pool), x.data);
    }
}
