//! MediaPipe BlazeFace (`face_detection_{short,full}_range.tflite`, `models.md` §3),
//! built from the tflite graph itself and run by two executors of that one graph.
//!
//! `Graph` walks the model's compute ops in order (the fp16 weights' DEQUANTIZE ops are
//! resolved by `kao_model_files::tflite`), checks each, and keeps it with its constants:
//!
//! | tflite op | graph op |
//! |---|---|
//! | CONV_2D | conv, OHWI → OIHW weights |
//! | DEPTHWISE_CONV_2D | grouped conv (`groups = C`), `[1,kh,kw,C·m]` → `[C·m,1,kh,kw]` |
//! | MAX_POOL_2D | max pool |
//! | PAD | zero padding (BlazeFace pads channels for its residual adds) |
//! | ADD, RELU | add, relu (fused RELU activations too) |
//! | RESIZE_BILINEAR | `Ry · x · Rxᵀ` with TF's sampling rule |
//! | RESHAPE | NHWC flatten to `[N, M, K]` (the head's `[1, -1, 16]` / `[1, -1, 1]`) |
//! | CONCATENATION | concat |
//!
//! TF's SAME padding puts the odd pixel at the bottom/right (a 3×3 stride-2 conv on an
//! even input pads 0 above and 1 below), so every window op keeps explicit
//! `[before, after]` padding. Every op's output shape is computed at load time and
//! checked against the shape the file declares, so a graph this module does not
//! understand is an error at load, not a panic or a wrong result later. The ops are
//! batch-agnostic: both executors take any batch size.
//!
//! * [`BlazeFaceNet`] runs the graph on a burn backend (NCHW): CUDA, and the CPU
//!   backends for comparison.
//! * [`NativeBlazeFace`] runs it on the CPU in NHWC with fused kernels (the `gemm` crate
//!   for 1×1 and im2col convolutions, channel-vectorised depthwise convolutions). burn-flex
//!   spent ~26 ms of one core per full-range image, mostly in its depthwise convolutions,
//!   adds and pools; the native executor does the same graph in a fraction of that
//!   (docs/benchmarks.md), and the tests hold both to the TFLite runtime's outputs.

mod burn;
mod native;
pub mod processing;

pub use burn::BlazeFaceNet;
pub use native::NativeBlazeFace;
pub use processing::{BlazeFace, BlazeFaceConfig};

use std::path::Path;

use kao_model_files::tflite::{
    Activation, Model, OpKind, OpOptions, Operator, Padding, TfliteError,
};

/// Errors from building or running a [`BlazeFaceNet`].
#[derive(Debug, thiserror::Error)]
pub enum BlazeFaceError {
    /// The file could not be read or parsed.
    #[error(transparent)]
    Tflite(#[from] TfliteError),
    /// An operator this module does not implement, or implements only partly.
    #[error("op {index} ({kind:?}): {what}")]
    Op {
        /// Position among the model's compute ops.
        index: usize,
        /// The op kind.
        kind: OpKind,
        /// What is wrong or unsupported.
        what: String,
    },
    /// The graph's inputs or outputs are not BlazeFace's.
    #[error("model graph: {0}")]
    Graph(String),
    /// `KAO_CPU` names no CPU level, or one this CPU cannot run.
    #[error(transparent)]
    Cpu(#[from] kao_kernels::CpuLevelError),
    /// An input tensor of the wrong size.
    #[error("input has {found} values; expected a multiple of {per_image} (N×{height}×{width}×3)")]
    InputSize {
        /// Values given.
        found: usize,
        /// Values per image.
        per_image: usize,
        /// Input height.
        height: usize,
        /// Input width.
        width: usize,
    },
}

/// `[before, after]` padding of the height and width axes.
type Pad2 = [[usize; 2]; 2];

/// One op of the graph, in the file's NHWC terms, with its constants as plain values.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// A convolution; `groups == in channels` for a depthwise one.
    Conv {
        /// OIHW filters.
        weight: Vec<f32>,
        /// `[out channels, in channels per group, kh, kw]`.
        shape: [usize; 4],
        bias: Option<Vec<f32>>,
        stride: [usize; 2],
        pad: Pad2,
        groups: usize,
        relu: bool,
    },
    /// Max pooling; padded cells never win.
    MaxPool {
        window: [usize; 2],
        stride: [usize; 2],
        pad: Pad2,
    },
    /// Zero padding `[before, after]` of each NHWC dim.
    Pad([(usize, usize); 4]),
    Add {
        relu: bool,
    },
    Relu,
    /// Bilinear resize: `out = Ry · x · Rxᵀ` per channel, `Ry` `[OH, H]` and `Rx` `[OW, W]`.
    Resize {
        ry: Vec<f32>,
        rx: Vec<f32>,
    },
    /// NHWC flatten to `[N, rows, cols]`.
    Reshape {
        rows: usize,
        cols: usize,
    },
    /// Concatenation along this NHWC (or rank-3) axis.
    Concat {
        axis: usize,
    },
}

/// An op with its operands: `(tensor index, last use)` per input.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) op: Op,
    pub(crate) inputs: Vec<(usize, bool)>,
    pub(crate) output: usize,
    /// The output's shape for a batch of one (NHWC or `[1, rows, cols]`).
    pub(crate) shape: Vec<usize>,
}

/// BlazeFace's graph as read from the `.tflite` file: the one network definition that
/// both executors ([`BlazeFaceNet`] on burn, [`NativeBlazeFace`] on the CPU) run.
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) io: Io,
}

/// Where values enter and leave a [`Graph`], and how many tensors it has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Io {
    /// Tensor index of the graph input.
    pub(crate) input: usize,
    /// Input `[height, width]`.
    pub(crate) size: [usize; 2],
    /// Tensor indices of `regressors` and `classificators`.
    pub(crate) outputs: [usize; 2],
    /// Number of anchors (rows of each output).
    pub(crate) anchors: usize,
    pub(crate) tensor_count: usize,
}

impl Graph {
    /// Reads the graph of a `.tflite` file.
    pub(crate) fn load(path: impl AsRef<Path>) -> Result<Self, BlazeFaceError> {
        Self::from_model(&Model::load(path)?)
    }

    /// Reads the graph of a parsed model: one input `[1, H, W, 3]`, two outputs
    /// `[1, N, 16]` (regressors) and `[1, N, 1]` (classificators), in either order.
    pub(crate) fn from_model(model: &Model) -> Result<Self, BlazeFaceError> {
        let graph = |m: String| BlazeFaceError::Graph(m);
        let [input] = model.inputs[..] else {
            return Err(graph(format!("{} inputs (expected 1)", model.inputs.len())));
        };
        let in_shape = model.tensor(input)?.shape.clone();
        let [1, h, w, 3] = in_shape[..] else {
            return Err(graph(format!(
                "input shape {in_shape:?} (expected [1, H, W, 3])"
            )));
        };
        let mut builder = Builder {
            model,
            shapes: vec![None; model.tensors.len()],
        };
        builder.shapes[input] = Some(in_shape.clone());
        let mut nodes = Vec::new();
        for (index, op) in model.compute_ops().enumerate() {
            let (step, shape) = builder.step(index, op)?;
            let [output] = op.outputs[..] else {
                return Err(Builder::op_error(
                    index,
                    op,
                    format!("{} outputs", op.outputs.len()),
                ));
            };
            let declared = &model.tensor(output)?.shape;
            if *declared != shape {
                return Err(Builder::op_error(
                    index,
                    op,
                    format!("computed output shape {shape:?}, file declares {declared:?}"),
                ));
            }
            builder.shapes[output] = Some(shape.clone());
            let inputs = match step {
                // Only the first input is an activation; the rest are constants.
                Op::Conv { .. }
                | Op::MaxPool { .. }
                | Op::Pad(_)
                | Op::Relu
                | Op::Resize { .. }
                | Op::Reshape { .. } => {
                    vec![op.inputs[0].unwrap_or_default()]
                }
                Op::Add { .. } | Op::Concat { .. } => {
                    op.inputs.iter().map(|i| i.unwrap_or_default()).collect()
                }
            };
            nodes.push((step, inputs, output, shape));
        }
        // Find the outputs by their last dim.
        let mut found = [None, None];
        for &o in &model.outputs {
            let shape =
                builder.shapes.get(o).cloned().flatten().ok_or_else(|| {
                    graph(format!("output tensor {o} is not computed by the graph"))
                })?;
            match shape[..] {
                [1, n, 16] => found[0] = Some((o, n)),
                [1, n, 1] => found[1] = Some((o, n)),
                _ => return Err(graph(format!("output shape {shape:?}"))),
            }
        }
        let (Some((reg, n_reg)), Some((cls, n_cls)), 2) = (found[0], found[1], model.outputs.len())
        else {
            return Err(graph(format!(
                "outputs {:?} (expected regressors [1, N, 16] and classificators [1, N, 1])",
                model.outputs
            )));
        };
        if n_reg != n_cls {
            return Err(graph(format!(
                "{n_reg} regressor rows but {n_cls} classificators"
            )));
        }
        // Mark each operand's last use (graph outputs are never released).
        let mut last_use = vec![usize::MAX; model.tensors.len()];
        for (i, (_, inputs, _, _)) in nodes.iter().enumerate() {
            for &t in inputs {
                last_use[t] = i;
            }
        }
        let nodes = nodes
            .into_iter()
            .enumerate()
            .map(|(i, (op, inputs, output, shape))| {
                let operands = inputs
                    .iter()
                    .enumerate()
                    .map(|(pos, &t)| {
                        let last = last_use[t] == i
                            && t != reg
                            && t != cls
                            && !inputs[pos + 1..].contains(&t);
                        (t, last)
                    })
                    .collect();
                Node {
                    op,
                    inputs: operands,
                    output,
                    shape,
                }
            })
            .collect();
        Ok(Self {
            nodes,
            io: Io {
                input,
                size: [h, w],
                outputs: [reg, cls],
                anchors: n_reg,
                tensor_count: model.tensors.len(),
            },
        })
    }
}

/// How many `size` RGB images the NHWC values `nhwc` hold: a whole number, at least one.
fn images_in(nhwc: &[f32], [height, width]: [usize; 2]) -> Result<usize, BlazeFaceError> {
    let per_image = height * width * 3;
    if nhwc.is_empty() || !nhwc.len().is_multiple_of(per_image) {
        return Err(BlazeFaceError::InputSize {
            found: nhwc.len(),
            per_image,
            height,
            width,
        });
    }
    Ok(nhwc.len() / per_image)
}

/// TF SAME padding `[before, after]` for one axis.
fn same_padding(input: usize, window: usize, stride: usize) -> [usize; 2] {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + window).saturating_sub(input);
    [total / 2, total - total / 2]
}

/// Output size of a window op on one axis after padding.
fn window_out(input: usize, pad: [usize; 2], window: usize, stride: usize) -> Option<usize> {
    (input + pad[0] + pad[1])
        .checked_sub(window)
        .map(|n| n / stride + 1)
}

/// TF's bilinear sampling matrix `[out, in]` (`ComputeInterpolationValues`).
fn resize_matrix(input: usize, output: usize, align_corners: bool, half_pixel: bool) -> Vec<f32> {
    let scale = if align_corners && output > 1 {
        (input - 1) as f32 / (output - 1) as f32
    } else {
        input as f32 / output as f32
    };
    let mut m = vec![0f32; output * input];
    for o in 0..output {
        let src = if half_pixel {
            (o as f32 + 0.5) * scale - 0.5
        } else {
            o as f32 * scale
        };
        let lower = (src.floor() as i64).max(0) as usize;
        let upper = (src.ceil() as i64).clamp(0, input as i64 - 1) as usize;
        let lower = lower.min(input - 1);
        let frac = src - lower as f32;
        m[o * input + lower] += 1.0 - frac;
        m[o * input + upper] += frac;
    }
    m
}

/// Builds the node list, checking shapes as it goes.
struct Builder<'m> {
    model: &'m Model,
    /// NHWC (or rank-3) shape of every computed tensor so far.
    shapes: Vec<Option<Vec<usize>>>,
}

impl Builder<'_> {
    fn op_error(index: usize, op: &Operator, what: impl Into<String>) -> BlazeFaceError {
        BlazeFaceError::Op {
            index,
            kind: op.kind,
            what: what.into(),
        }
    }

    /// The tensor index of input `pos` of `op`, which must be present.
    fn input(index: usize, op: &Operator, pos: usize) -> Result<usize, BlazeFaceError> {
        op.inputs
            .get(pos)
            .copied()
            .flatten()
            .ok_or_else(|| Self::op_error(index, op, format!("input {pos} missing")))
    }

    /// The shape of a computed input of `op`.
    fn input_shape(
        &self,
        index: usize,
        op: &Operator,
        pos: usize,
    ) -> Result<Vec<usize>, BlazeFaceError> {
        let t = Self::input(index, op, pos)?;
        self.shapes.get(t).cloned().flatten().ok_or_else(|| {
            Self::op_error(
                index,
                op,
                format!("input {pos} (tensor {t}) is not computed before this op"),
            )
        })
    }

    fn image_shape(
        &self,
        index: usize,
        op: &Operator,
        pos: usize,
    ) -> Result<[usize; 4], BlazeFaceError> {
        let s = self.input_shape(index, op, pos)?;
        s.as_slice().try_into().map_err(|_| {
            Self::op_error(
                index,
                op,
                format!("input {pos} has shape {s:?}, expected NHWC"),
            )
        })
    }

    fn constant(
        &self,
        op: &Operator,
        pos: usize,
    ) -> Result<Option<kao_model_files::tflite::Weights>, BlazeFaceError> {
        match op.inputs.get(pos).copied().flatten() {
            Some(t) => Ok(self.model.constant_f32(t)?),
            None => Ok(None),
        }
    }

    fn constant_i32(
        &self,
        index: usize,
        op: &Operator,
        pos: usize,
    ) -> Result<Vec<i32>, BlazeFaceError> {
        let t = Self::input(index, op, pos)?;
        self.model
            .constant_i32(t)?
            .ok_or_else(|| Self::op_error(index, op, format!("input {pos} is not a constant")))
    }

    fn fused_relu(index: usize, op: &Operator, a: Activation) -> Result<bool, BlazeFaceError> {
        match a {
            Activation::None => Ok(false),
            Activation::Relu => Ok(true),
            other => Err(Self::op_error(
                index,
                op,
                format!("fused activation {other:?}"),
            )),
        }
    }

    /// Builds the step for `op` and returns it with its output shape.
    fn step(&self, index: usize, op: &Operator) -> Result<(Op, Vec<usize>), BlazeFaceError> {
        let err = |what: String| Self::op_error(index, op, what);
        match (op.kind, &op.options) {
            (OpKind::Conv2d | OpKind::DepthwiseConv2d, OpOptions::Conv(o)) => {
                let [n, h, w, c] = self.image_shape(index, op, 0)?;
                if o.dilation_h != 1 || o.dilation_w != 1 {
                    return Err(err(format!("dilation {}x{}", o.dilation_h, o.dilation_w)));
                }
                let relu = Self::fused_relu(index, op, o.activation)?;
                let wt = self
                    .constant(op, 1)?
                    .ok_or_else(|| err("weights are not constant".into()))?;
                let [a, kh, kw, d]: [usize; 4] = wt
                    .shape
                    .as_slice()
                    .try_into()
                    .map_err(|_| err(format!("weights of shape {:?}", wt.shape)))?;
                if wt.data.len() != a * kh * kw * d || kh == 0 || kw == 0 {
                    return Err(err(format!(
                        "{} weights for shape {:?}",
                        wt.data.len(),
                        wt.shape
                    )));
                }
                let depthwise = op.kind == OpKind::DepthwiseConv2d;
                // (out channels, in channels per group, groups, OIHW weights)
                let (out_c, groups, oihw) = if depthwise {
                    let m = o.depth_multiplier;
                    if a != 1 || m == 0 || d != c * m {
                        return Err(err(format!(
                            "depthwise weights {:?} with multiplier {m} on {c} channels",
                            wt.shape
                        )));
                    }
                    // [1, kh, kw, C·m] → [C·m, 1, kh, kw]
                    let mut oihw = vec![0f32; d * kh * kw];
                    for (p, chunk) in wt.data.chunks_exact(d).enumerate() {
                        for (ch, &v) in chunk.iter().enumerate() {
                            oihw[ch * kh * kw + p] = v;
                        }
                    }
                    (d, c, oihw)
                } else {
                    if d != c {
                        return Err(err(format!("weights {:?} on {c} input channels", wt.shape)));
                    }
                    // [O, kh, kw, I] → [O, I, kh, kw]
                    let mut oihw = vec![0f32; a * d * kh * kw];
                    for (op_idx, filter) in wt.data.chunks_exact(kh * kw * d).enumerate() {
                        for (p, pixel) in filter.chunks_exact(d).enumerate() {
                            for (i, &v) in pixel.iter().enumerate() {
                                oihw[(op_idx * d + i) * kh * kw + p] = v;
                            }
                        }
                    }
                    (a, 1, oihw)
                };
                let bias = match self.constant(op, 2)? {
                    None => None,
                    Some(b) if b.data.len() == out_c => Some(b.data),
                    Some(b) => {
                        return Err(err(format!(
                            "{} bias values for {out_c} outputs",
                            b.data.len()
                        )));
                    }
                };
                let (stride, pad) = self.window_geometry(
                    index,
                    op,
                    o.padding,
                    [o.stride_h, o.stride_w],
                    [kh, kw],
                    [h, w],
                )?;
                let oh = window_out(h, pad[0], kh, stride[0]);
                let ow = window_out(w, pad[1], kw, stride[1]);
                let (Some(oh), Some(ow)) = (oh, ow) else {
                    return Err(err(format!(
                        "{kh}x{kw} window larger than the {h}x{w} input"
                    )));
                };
                let in_per_group = c / groups;
                Ok((
                    Op::Conv {
                        weight: oihw,
                        shape: [out_c, in_per_group, kh, kw],
                        bias,
                        stride,
                        pad,
                        groups,
                        relu,
                    },
                    vec![n, oh, ow, out_c],
                ))
            }
            (OpKind::MaxPool2d, OpOptions::Pool(o)) => {
                let [n, h, w, c] = self.image_shape(index, op, 0)?;
                if o.activation != Activation::None {
                    return Err(err(format!("fused activation {:?}", o.activation)));
                }
                let window = [o.filter_h, o.filter_w];
                if window.contains(&0) {
                    return Err(err("empty pool window".into()));
                }
                let (stride, pad) = self.window_geometry(
                    index,
                    op,
                    o.padding,
                    [o.stride_h, o.stride_w],
                    window,
                    [h, w],
                )?;
                let oh = window_out(h, pad[0], window[0], stride[0]);
                let ow = window_out(w, pad[1], window[1], stride[1]);
                let (Some(oh), Some(ow)) = (oh, ow) else {
                    return Err(err(format!("pool window larger than the {h}x{w} input")));
                };
                Ok((
                    Op::MaxPool {
                        window,
                        stride,
                        pad,
                    },
                    vec![n, oh, ow, c],
                ))
            }
            (OpKind::Pad, _) => {
                let shape = self.image_shape(index, op, 0)?;
                let p = self.constant_i32(index, op, 1)?;
                if p.len() != 8 || p.iter().any(|&v| v < 0) || p[0] != 0 || p[1] != 0 {
                    return Err(err(format!(
                        "paddings {p:?} (need 4×2, non-negative, none on the batch)"
                    )));
                }
                let pair = |d: usize| (p[2 * d] as usize, p[2 * d + 1] as usize);
                let out: Vec<usize> = (0..4).map(|d| shape[d] + pair(d).0 + pair(d).1).collect();
                Ok((Op::Pad([pair(0), pair(1), pair(2), pair(3)]), out))
            }
            (OpKind::Add, OpOptions::Add { activation }) => {
                let relu = Self::fused_relu(index, op, *activation)?;
                let a = self.image_shape(index, op, 0)?;
                let b = self.image_shape(index, op, 1)?;
                if a != b {
                    return Err(err(format!(
                        "operands {a:?} and {b:?} (broadcasting is not supported)"
                    )));
                }
                Ok((Op::Add { relu }, a.to_vec()))
            }
            (OpKind::Relu, _) => Ok((Op::Relu, self.image_shape(index, op, 0)?.to_vec())),
            (
                OpKind::ResizeBilinear,
                OpOptions::ResizeBilinear {
                    align_corners,
                    half_pixel_centers,
                },
            ) => {
                let [n, h, w, c] = self.image_shape(index, op, 0)?;
                let size = self.constant_i32(index, op, 1)?;
                let [oh, ow] = size[..] else {
                    return Err(err(format!("size {size:?}")));
                };
                if oh <= 0 || ow <= 0 || (*align_corners && *half_pixel_centers) {
                    return Err(err(format!(
                        "size {size:?}, align_corners {align_corners}, half_pixel_centers {half_pixel_centers}"
                    )));
                }
                let (oh, ow) = (oh as usize, ow as usize);
                let ry = resize_matrix(h, oh, *align_corners, *half_pixel_centers);
                let rx = resize_matrix(w, ow, *align_corners, *half_pixel_centers);
                Ok((Op::Resize { ry, rx }, vec![n, oh, ow, c]))
            }
            (OpKind::Reshape, OpOptions::Reshape { .. }) => {
                let [n, h, w, c] = self.image_shape(index, op, 0)?;
                // The declared output shape resolves any -1 of the options.
                let out = &self.model.tensor(op.outputs[0])?.shape;
                let [on, rows, cols] = out[..] else {
                    return Err(err(format!("reshape to {out:?} (only NHWC → [N, M, K])")));
                };
                if on != n || rows * cols != h * w * c {
                    return Err(err(format!("reshape of {:?} to {out:?}", [n, h, w, c])));
                }
                Ok((Op::Reshape { rows, cols }, out.clone()))
            }
            (OpKind::Concatenation, OpOptions::Concatenation { axis, activation }) => {
                if *activation != Activation::None {
                    return Err(err(format!("fused activation {activation:?}")));
                }
                let shapes = (0..op.inputs.len())
                    .map(|pos| self.input_shape(index, op, pos))
                    .collect::<Result<Vec<_>, _>>()?;
                let rank = shapes.first().map_or(0, Vec::len);
                let axis = if *axis < 0 {
                    *axis + rank as i32
                } else {
                    *axis
                };
                if !(rank == 3 || rank == 4) || !(1..rank as i32).contains(&axis) {
                    return Err(err(format!("axis {axis} of rank-{rank} inputs")));
                }
                let axis = axis as usize;
                let mut out = shapes[0].clone();
                out[axis] = 0;
                for s in &shapes {
                    let same = s.len() == rank && (0..rank).all(|d| d == axis || s[d] == out[d]);
                    if !same {
                        return Err(err(format!("inputs {shapes:?} along axis {axis}")));
                    }
                    out[axis] += s[axis];
                }
                Ok((Op::Concat { axis }, out))
            }
            (kind, options) => Err(Self::op_error(
                index,
                op,
                format!("unsupported op {kind:?} with options {options:?}"),
            )),
        }
    }

    /// Stride and explicit padding of a conv or pool.
    fn window_geometry(
        &self,
        index: usize,
        op: &Operator,
        padding: Padding,
        stride: [usize; 2],
        window: [usize; 2],
        input: [usize; 2],
    ) -> Result<([usize; 2], Pad2), BlazeFaceError> {
        if stride.contains(&0) {
            return Err(Self::op_error(index, op, "zero stride"));
        }
        let pad = match padding {
            Padding::Valid => [[0, 0], [0, 0]],
            Padding::Same => [
                same_padding(input[0], window[0], stride[0]),
                same_padding(input[1], window[1], stride[1]),
            ],
        };
        Ok((stride, pad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_is_asymmetric_for_stride_two() {
        assert_eq!(same_padding(128, 5, 2), [1, 2]);
        assert_eq!(same_padding(64, 3, 2), [0, 1]);
        assert_eq!(same_padding(64, 3, 1), [1, 1]);
        assert_eq!(same_padding(64, 2, 2), [0, 0]);
        assert_eq!(same_padding(5, 2, 2), [0, 1]);
        assert_eq!(window_out(64, [0, 1], 3, 2), Some(32));
        assert_eq!(window_out(2, [0, 0], 3, 1), None);
    }

    #[test]
    fn half_pixel_resize_matches_tf() {
        // 2× upsampling: rows sample at i/2 − 0.25, clamped at the edges.
        let m = resize_matrix(3, 6, false, true);
        let want: [[f32; 3]; 6] = [
            [1.0, 0.0, 0.0],
            [0.75, 0.25, 0.0],
            [0.25, 0.75, 0.0],
            [0.0, 0.75, 0.25],
            [0.0, 0.25, 0.75],
            [0.0, 0.0, 1.0],
        ];
        for (row, want) in m.chunks_exact(3).zip(want) {
            for (a, b) in row.iter().zip(want) {
                assert!((a - b).abs() < 1e-6, "{row:?} vs {want:?}");
            }
        }
        // align_corners: the ends map onto the ends.
        let m = resize_matrix(2, 3, true, false);
        assert_eq!(m, [1.0, 0.0, 0.5, 0.5, 0.0, 1.0]);
    }
}
