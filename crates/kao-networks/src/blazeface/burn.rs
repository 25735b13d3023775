//! [`BlazeFaceNet`]: the BlazeFace [`Graph`] on a burn backend, in NCHW.
//!
//! burn pads symmetrically, so asymmetric SAME padding gets an explicit pad before a
//! VALID conv or pool.

use std::path::Path;

use burn_tensor::backend::Backend;
use burn_tensor::module::{conv2d, max_pool2d};
use burn_tensor::ops::{ConvOptions, PadMode};
use burn_tensor::{Tensor, TensorData, activation};
use kao_model_files::tflite::Model;

use super::{BlazeFaceError, Graph, Io, Op, Pad2};

/// A value flowing through the graph: images in NCHW, or the head's rank-3 tensors.
#[derive(Debug, Clone)]
enum Value<B: Backend> {
    Image(Tensor<B, 4>),
    Rows(Tensor<B, 3>),
}

impl<B: Backend> Value<B> {
    /// The NCHW tensor (load-time shape checks guarantee the rank).
    fn image(self) -> Tensor<B, 4> {
        match self {
            Value::Image(t) => t,
            Value::Rows(_) => unreachable!("rank checked at load time"),
        }
    }

    /// The rank-3 tensor (load-time shape checks guarantee the rank).
    fn rows(self) -> Tensor<B, 3> {
        match self {
            Value::Rows(t) => t,
            Value::Image(_) => unreachable!("rank checked at load time"),
        }
    }
}

/// One step of the network.
#[derive(Debug, Clone)]
enum Step<B: Backend> {
    Conv {
        weight: Tensor<B, 4>,
        bias: Option<Tensor<B, 1>>,
        stride: [usize; 2],
        pad: Pad2,
        groups: usize,
        relu: bool,
    },
    MaxPool {
        window: [usize; 2],
        stride: [usize; 2],
        pad: Pad2,
    },
    /// 2×2 stride-2 max pool without padding, on an even-sized input as two pairwise
    /// maxima (burn-flex's `max_pool2d` is several times slower on these shapes).
    MaxPool2x2,
    /// Zero padding of the NCHW dims.
    Pad([(usize, usize); 4]),
    /// Zero channels appended at the end (a concat with zeros; burn-flex's generic pad
    /// is slow).
    PadChannels(usize),
    Add {
        relu: bool,
    },
    Relu,
    /// `out = Ry · x · Rxᵀ` per plane; stored as `Ryᵀ` `[1,1,H,OH]` and `Rxᵀ` `[1,1,W,OW]`.
    Resize {
        ry_t: Tensor<B, 4>,
        rx_t: Tensor<B, 4>,
    },
    /// NCHW → NHWC, then `[N, rows, cols]`.
    Reshape {
        rows: usize,
        cols: usize,
    },
    /// Concatenation along this dim of our layout.
    Concat {
        dim: usize,
    },
}

/// An op with its operands: `(tensor index, last use)` per input.
#[derive(Debug, Clone)]
struct Node<B: Backend> {
    step: Step<B>,
    inputs: Vec<(usize, bool)>,
    output: usize,
}

/// BlazeFace on a burn backend.
#[derive(Debug, Clone)]
pub struct BlazeFaceNet<B: Backend> {
    nodes: Vec<Node<B>>,
    io: Io,
    device: B::Device,
}

impl<B: Backend> Step<B> {
    /// The burn step for a graph op whose output has NHWC (or rank-3) shape `out`.
    fn new(op: Op, out: &[usize], device: &B::Device) -> Self {
        match op {
            Op::Conv {
                weight,
                shape,
                bias,
                stride,
                pad,
                groups,
                relu,
            } => Step::Conv {
                weight: Tensor::from_data(TensorData::new(weight, shape), device),
                bias: bias.map(|b| Tensor::from_data(TensorData::new(b, [shape[0]]), device)),
                stride,
                pad,
                groups,
                relu,
            },
            Op::MaxPool {
                window: [2, 2],
                stride: [2, 2],
                pad: [[0, 0], [0, 0]],
            } => Step::MaxPool2x2,
            Op::MaxPool {
                window,
                stride,
                pad,
            } => Step::MaxPool {
                window,
                stride,
                pad,
            },
            // NHWC dims 1, 2, 3 are NCHW dims 2, 3, 1.
            Op::Pad([_, (0, 0), (0, 0), (0, after)]) if after > 0 => Step::PadChannels(after),
            Op::Pad([n, h, w, c]) => Step::Pad([n, c, h, w]),
            Op::Add { relu } => Step::Add { relu },
            Op::Relu => Step::Relu,
            Op::Resize { ry, rx } => {
                let (oh, ow) = (out[1], out[2]);
                let (h, w) = (ry.len() / oh, rx.len() / ow);
                let ry_t = Tensor::<B, 2>::from_data(TensorData::new(ry, [oh, h]), device)
                    .transpose()
                    .reshape([1, 1, h, oh]);
                let rx_t = Tensor::<B, 2>::from_data(TensorData::new(rx, [ow, w]), device)
                    .transpose()
                    .reshape([1, 1, w, ow]);
                Step::Resize { ry_t, rx_t }
            }
            Op::Reshape { rows, cols } => Step::Reshape { rows, cols },
            Op::Concat { axis } => Step::Concat {
                dim: if out.len() == 4 {
                    [0, 2, 3, 1][axis]
                } else {
                    axis
                },
            },
        }
    }
}

/// Padding burn's conv/pool can apply itself (the same before and after on each axis), or
/// else `x` padded explicitly with `fill` and no padding left for the op.
fn symmetric_padding<B: Backend>(
    x: Tensor<B, 4>,
    pad: &Pad2,
    fill: f32,
) -> (Tensor<B, 4>, [usize; 2]) {
    if pad[0][0] == pad[0][1] && pad[1][0] == pad[1][1] {
        (x, [pad[0][0], pad[1][0]])
    } else {
        (
            x.pad(
                [(pad[0][0], pad[0][1]), (pad[1][0], pad[1][1])],
                PadMode::Constant(fill),
            ),
            [0, 0],
        )
    }
}

impl<B: Backend> BlazeFaceNet<B> {
    /// Loads a `.tflite` BlazeFace model onto `device`.
    pub fn load(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, BlazeFaceError> {
        Ok(Self::from_graph(Graph::load(path)?, device))
    }

    /// Builds the network from a parsed model: one input `[1, H, W, 3]`, two outputs
    /// `[1, N, 16]` (regressors) and `[1, N, 1]` (classificators), in either order.
    pub fn from_model(model: &Model, device: &B::Device) -> Result<Self, BlazeFaceError> {
        Ok(Self::from_graph(Graph::from_model(model)?, device))
    }

    /// Puts the graph's constants on `device`.
    pub(crate) fn from_graph(graph: Graph, device: &B::Device) -> Self {
        let nodes = graph
            .nodes
            .into_iter()
            .map(|node| Node {
                step: Step::new(node.op, &node.shape, device),
                inputs: node.inputs,
                output: node.output,
            })
            .collect();
        Self {
            nodes,
            io: graph.io,
            device: device.clone(),
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

    /// The device the weights live on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// An NCHW input tensor from NHWC values ([`processing`](super::processing);
    /// one or more images back to back).
    pub fn input(&self, nhwc: &[f32]) -> Result<Tensor<B, 4>, BlazeFaceError> {
        let [h, w] = self.io.size;
        let n = super::images_in(nhwc, self.io.size)?;
        Ok(
            Tensor::<B, 4>::from_data(TensorData::new(nhwc.to_vec(), [n, h, w, 3]), &self.device)
                .permute([0, 3, 1, 2]),
        )
    }

    /// Runs the network on an NCHW batch `[N, 3, H, W]`: `(regressors [N, anchors, 16],
    /// classificators [N, anchors, 1])`, raw (before the sigmoid).
    pub fn forward(&self, x: Tensor<B, 4>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let mut values: Vec<Option<Value<B>>> = vec![None; self.io.tensor_count];
        values[self.io.input] = Some(Value::Image(x));
        for node in &self.nodes {
            let mut args = node.inputs.iter().map(|&(t, last)| {
                let v = if last {
                    values[t].take()
                } else {
                    values[t].clone()
                };
                v.expect("operands are computed before use (checked at load time)")
            });
            let mut next = || args.next().expect("operand count checked at load time");
            let out = match &node.step {
                Step::Conv {
                    weight,
                    bias,
                    stride,
                    pad,
                    groups,
                    relu,
                } => {
                    let (x, padding) = symmetric_padding(next().image(), pad, 0.0);
                    let y = conv2d(
                        x,
                        weight.clone(),
                        bias.clone(),
                        ConvOptions::new(*stride, padding, [1, 1], *groups),
                    );
                    Value::Image(if *relu { activation::relu(y) } else { y })
                }
                Step::MaxPool {
                    window,
                    stride,
                    pad,
                } => {
                    // TF ignores the padded cells; −∞ never wins the max.
                    let (x, padding) = symmetric_padding(next().image(), pad, f32::NEG_INFINITY);
                    Value::Image(max_pool2d(x, *window, *stride, padding, [1, 1], false))
                }
                Step::MaxPool2x2 => {
                    let x = next().image();
                    let [n, c, h, w] = x.dims();
                    let (oh, ow) = (h / 2, w / 2);
                    Value::Image(if h % 2 == 0 && w % 2 == 0 {
                        x.reshape([n * c * oh, 2, ow, 2])
                            .max_dim(3)
                            .max_dim(1)
                            .reshape([n, c, oh, ow])
                    } else {
                        max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false)
                    })
                }
                Step::Pad(pads) => Value::Image(next().image().pad(*pads, PadMode::Constant(0.0))),
                Step::PadChannels(after) => {
                    let x = next().image();
                    let [n, _, h, w] = x.dims();
                    let zeros = Tensor::zeros([n, *after, h, w], &x.device());
                    Value::Image(Tensor::cat(vec![x, zeros], 1))
                }
                Step::Add { relu } => {
                    let y = next().image().add(next().image());
                    Value::Image(if *relu { activation::relu(y) } else { y })
                }
                Step::Relu => Value::Image(activation::relu(next().image())),
                Step::Resize { ry_t, rx_t } => {
                    let x = next().image().matmul(rx_t.clone());
                    Value::Image(x.swap_dims(2, 3).matmul(ry_t.clone()).swap_dims(2, 3))
                }
                Step::Reshape { rows, cols } => {
                    let x = next().image();
                    let n = x.dims()[0];
                    Value::Rows(x.permute([0, 2, 3, 1]).reshape([n, *rows, *cols]))
                }
                Step::Concat { dim } => {
                    let parts: Vec<Value<B>> = args.collect();
                    match parts.first() {
                        Some(Value::Image(_)) => Value::Image(Tensor::cat(
                            parts.into_iter().map(Value::image).collect(),
                            *dim,
                        )),
                        _ => Value::Rows(Tensor::cat(
                            parts.into_iter().map(Value::rows).collect(),
                            *dim,
                        )),
                    }
                }
            };
            values[node.output] = Some(out);
        }
        let mut take = |t: usize| {
            values[t]
                .take()
                .expect("outputs are computed (checked at load time)")
                .rows()
        };
        (take(self.io.outputs[0]), take(self.io.outputs[1]))
    }

    /// Runs the network on NHWC input values (one or more images): the flattened
    /// `(regressors, classificators)` in the layout [`processing`](super::processing) decodes,
    /// `N·anchors·16` and `N·anchors` values.
    pub fn run(&self, nhwc: &[f32]) -> Result<(Vec<f32>, Vec<f32>), BlazeFaceError> {
        let (reg, cls) = self.forward(self.input(nhwc)?);
        let vec = |t: Tensor<B, 3>| {
            t.into_data()
                .into_vec::<f32>()
                .expect("the network's outputs are f32")
        };
        Ok((vec(reg), vec(cls)))
    }
}
