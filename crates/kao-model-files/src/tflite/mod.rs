//! A small, bounded reader for TensorFlow Lite flatbuffers (schema v3).
//!
//! It reads what a hand-written runtime for MediaPipe BlazeFace needs: the tensors of
//! the first subgraph (name, shape, type, constant data), its operators with the
//! builtin options of CONV_2D, DEPTHWISE_CONV_2D, MAX/AVERAGE_POOL_2D, CONCATENATION,
//! ADD, RESIZE_BILINEAR and RESHAPE, and the graph inputs and outputs. Constant
//! weights stored as FLOAT16 behind DEQUANTIZE ops come out as `f32` through
//! [`Model::constant_f32`]. It is not an interpreter.
//!
//! Every offset, length and index is checked; a truncated or corrupt file gives a
//! [`TfliteError`] naming the file and the problem.

mod flatbuf;

use flatbuf::{Buf, Fault, Table};
use std::path::Path;

/// A read or validation error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: at byte {offset}: {what}", file.as_deref().unwrap_or("<tflite bytes>"))]
pub struct TfliteError {
    /// The file, when read from one.
    pub file: Option<String>,
    /// Byte offset of the problem (0 when it is not tied to a position).
    pub offset: usize,
    /// What was wrong.
    pub what: String,
}

/// Element type of a tensor (`TensorType` in the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    /// 32-bit float.
    Float32,
    /// IEEE half float.
    Float16,
    /// 32-bit signed integer.
    Int32,
    /// 8-bit unsigned integer.
    Uint8,
    /// 64-bit signed integer.
    Int64,
    /// 8-bit signed integer.
    Int8,
    /// Any other schema type, by its code.
    Other(u8),
}

impl TensorType {
    fn from_code(code: u8) -> Self {
        match code {
            0 => TensorType::Float32,
            1 => TensorType::Float16,
            2 => TensorType::Int32,
            3 => TensorType::Uint8,
            4 => TensorType::Int64,
            9 => TensorType::Int8,
            c => TensorType::Other(c),
        }
    }

    /// Bytes per element, for the fixed-size types this crate decodes.
    pub fn size(self) -> Option<usize> {
        match self {
            TensorType::Float32 | TensorType::Int32 => Some(4),
            TensorType::Float16 => Some(2),
            TensorType::Uint8 | TensorType::Int8 => Some(1),
            TensorType::Int64 => Some(8),
            TensorType::Other(_) => None,
        }
    }
}

/// One tensor of the subgraph.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Tensor name.
    pub name: String,
    /// Shape (NHWC for activations, OHWI / `[1,kh,kw,C]` for conv weights).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: TensorType,
    /// Index into the model's buffers (0 is the empty sentinel buffer).
    pub buffer: usize,
}

impl Tensor {
    /// Number of elements (product of the shape; 1 for a scalar).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Operator kind (`BuiltinOperator` in the schema), for the ops BlazeFace and the
/// face-mesh model use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// ADD.
    Add,
    /// AVERAGE_POOL_2D.
    AveragePool2d,
    /// CONCATENATION.
    Concatenation,
    /// CONV_2D.
    Conv2d,
    /// DEPTHWISE_CONV_2D.
    DepthwiseConv2d,
    /// DEQUANTIZE.
    Dequantize,
    /// LOGISTIC.
    Logistic,
    /// MAX_POOL_2D.
    MaxPool2d,
    /// RELU.
    Relu,
    /// RELU6.
    Relu6,
    /// RESHAPE.
    Reshape,
    /// RESIZE_BILINEAR.
    ResizeBilinear,
    /// PAD.
    Pad,
    /// PRELU.
    Prelu,
    /// Any other builtin, by its code (CUSTOM is 32).
    Other(i32),
}

impl OpKind {
    fn from_code(code: i32) -> Self {
        match code {
            0 => OpKind::Add,
            1 => OpKind::AveragePool2d,
            2 => OpKind::Concatenation,
            3 => OpKind::Conv2d,
            4 => OpKind::DepthwiseConv2d,
            6 => OpKind::Dequantize,
            14 => OpKind::Logistic,
            17 => OpKind::MaxPool2d,
            19 => OpKind::Relu,
            21 => OpKind::Relu6,
            22 => OpKind::Reshape,
            23 => OpKind::ResizeBilinear,
            34 => OpKind::Pad,
            54 => OpKind::Prelu,
            c => OpKind::Other(c),
        }
    }
}

/// TF padding scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Output = ceil(input / stride); the extra pixel of odd totals goes bottom/right.
    Same,
    /// No padding.
    Valid,
}

/// Fused activation of an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// None.
    None,
    /// max(x, 0).
    Relu,
    /// clamp(x, −1, 1).
    ReluN1To1,
    /// clamp(x, 0, 6).
    Relu6,
    /// tanh.
    Tanh,
    /// Any other code.
    Other(u8),
}

impl Activation {
    fn from_code(code: u8) -> Self {
        match code {
            0 => Activation::None,
            1 => Activation::Relu,
            2 => Activation::ReluN1To1,
            3 => Activation::Relu6,
            4 => Activation::Tanh,
            c => Activation::Other(c),
        }
    }
}

/// Options of CONV_2D and DEPTHWISE_CONV_2D.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvOptions {
    /// Padding scheme.
    pub padding: Padding,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Vertical dilation.
    pub dilation_h: usize,
    /// Horizontal dilation.
    pub dilation_w: usize,
    /// Depth multiplier (depthwise only; 1 for CONV_2D).
    pub depth_multiplier: usize,
    /// Fused activation.
    pub activation: Activation,
}

/// Options of MAX_POOL_2D and AVERAGE_POOL_2D.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Padding scheme.
    pub padding: Padding,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Window height.
    pub filter_h: usize,
    /// Window width.
    pub filter_w: usize,
    /// Fused activation.
    pub activation: Activation,
}

/// The builtin options this reader decodes.
#[derive(Debug, Clone, PartialEq)]
pub enum OpOptions {
    /// No options, or options of an op kind this reader does not decode.
    None,
    /// CONV_2D / DEPTHWISE_CONV_2D.
    Conv(ConvOptions),
    /// MAX_POOL_2D / AVERAGE_POOL_2D.
    Pool(PoolOptions),
    /// CONCATENATION.
    Concatenation {
        /// Axis (may be negative, counted from the end).
        axis: i32,
        /// Fused activation.
        activation: Activation,
    },
    /// ADD.
    Add {
        /// Fused activation.
        activation: Activation,
    },
    /// RESIZE_BILINEAR.
    ResizeBilinear {
        /// Align the corner pixels.
        align_corners: bool,
        /// Sample at pixel centres (`(x + 0.5)·scale − 0.5`).
        half_pixel_centers: bool,
    },
    /// RESHAPE (the target shape may also, or only, be the second input tensor).
    Reshape {
        /// Target shape from the options (empty when absent).
        new_shape: Vec<i32>,
    },
}

/// One operator of the subgraph.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    /// Operator kind.
    pub kind: OpKind,
    /// Input tensor indices; `None` for an omitted optional input (−1 in the file).
    pub inputs: Vec<Option<usize>>,
    /// Output tensor indices.
    pub outputs: Vec<usize>,
    /// Decoded builtin options.
    pub options: OpOptions,
}

/// Constant weights as `f32`, with their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// Shape (OHWI for CONV_2D, `[1,kh,kw,C]` for DEPTHWISE_CONV_2D).
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// A parsed `.tflite` model (first subgraph).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Schema version (3).
    pub version: u32,
    /// Model description string.
    pub description: Option<String>,
    /// Tensors of the subgraph.
    pub tensors: Vec<Tensor>,
    /// Operators in execution order.
    pub operators: Vec<Operator>,
    /// Graph input tensor indices.
    pub inputs: Vec<usize>,
    /// Graph output tensor indices.
    pub outputs: Vec<usize>,
    buffers: Vec<Vec<u8>>,
    file: Option<String>,
}

/// Largest tensor rank and total element count accepted (corrupt shapes are
/// rejected before anything is allocated from them).
const MAX_RANK: usize = 8;
const MAX_ELEMENTS: usize = 1 << 31;

impl Model {
    /// Reads and parses the model file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TfliteError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let data = std::fs::read(path).map_err(|e| TfliteError {
            file: Some(name.clone()),
            offset: 0,
            what: format!("cannot read: {e}"),
        })?;
        Self::parse(&data, Some(name))
    }

    /// Parses a model from its bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Self, TfliteError> {
        Self::parse(data, None)
    }

    fn parse(data: &[u8], file: Option<String>) -> Result<Self, TfliteError> {
        let err = |f: Fault| TfliteError {
            file: file.clone(),
            offset: f.offset,
            what: f.what,
        };
        let mut model = parse_model(Buf(data)).map_err(err)?;
        model.file = file;
        Ok(model)
    }

    fn error(&self, what: String) -> TfliteError {
        TfliteError {
            file: self.file.clone(),
            offset: 0,
            what,
        }
    }

    /// The tensor at index `idx`.
    pub fn tensor(&self, idx: usize) -> Result<&Tensor, TfliteError> {
        self.tensors
            .get(idx)
            .ok_or_else(|| self.error(format!("no tensor {idx}")))
    }

    /// The constant bytes stored for tensor `idx`; `None` for activations.
    pub fn tensor_data(&self, idx: usize) -> Result<Option<&[u8]>, TfliteError> {
        let t = self.tensor(idx)?;
        Ok(self
            .buffers
            .get(t.buffer)
            .filter(|b| !b.is_empty())
            .map(Vec::as_slice))
    }

    /// Raw constant data of tensor `idx` checked against its shape and type.
    fn checked_data(&self, idx: usize) -> Result<Option<(&Tensor, &[u8])>, TfliteError> {
        let t = self.tensor(idx)?;
        let Some(data) = self.tensor_data(idx)? else {
            return Ok(None);
        };
        let size = t.dtype.size().ok_or_else(|| {
            self.error(format!(
                "tensor {idx} '{}': unsupported type {:?}",
                t.name, t.dtype
            ))
        })?;
        if data.len() != t.len() * size {
            return Err(self.error(format!(
                "tensor {idx} '{}': {} data bytes for shape {:?} of {:?}",
                t.name,
                data.len(),
                t.shape,
                t.dtype
            )));
        }
        Ok(Some((t, data)))
    }

    /// Constant `f32` values of tensor `idx`: FLOAT32 data, FLOAT16 data widened, or —
    /// for an activation produced by a DEQUANTIZE op of a constant FLOAT16 tensor — that
    /// constant widened. `None` when the tensor is not constant.
    pub fn constant_f32(&self, idx: usize) -> Result<Option<Weights>, TfliteError> {
        let source = match self.checked_data(idx)? {
            Some(found) => Some(found),
            None => match self.dequantize_source(idx) {
                Some(src) => self.checked_data(src)?,
                None => None,
            },
        };
        let Some((t, data)) = source else {
            return Ok(None);
        };
        let values = match t.dtype {
            TensorType::Float32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            TensorType::Float16 => data
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            other => {
                return Err(self.error(format!(
                    "tensor {idx} '{}': {other:?} is not a float type",
                    t.name
                )));
            }
        };
        Ok(Some(Weights {
            shape: self.tensor(idx)?.shape.clone(),
            data: values,
        }))
    }

    /// Constant INT32 values of tensor `idx` (PAD paddings, RESHAPE shapes).
    pub fn constant_i32(&self, idx: usize) -> Result<Option<Vec<i32>>, TfliteError> {
        let Some((t, data)) = self.checked_data(idx)? else {
            return Ok(None);
        };
        if t.dtype != TensorType::Int32 {
            return Err(self.error(format!(
                "tensor {idx} '{}': {:?} is not INT32",
                t.name, t.dtype
            )));
        }
        Ok(Some(
            data.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }

    /// The constant input of the DEQUANTIZE op that produces tensor `idx`, if any.
    fn dequantize_source(&self, idx: usize) -> Option<usize> {
        self.operators
            .iter()
            .find(|op| op.kind == OpKind::Dequantize && op.outputs.first() == Some(&idx))
            .and_then(|op| op.inputs.first().copied().flatten())
            .filter(|&src| {
                self.buffers
                    .get(self.tensors[src].buffer)
                    .is_some_and(|b| !b.is_empty())
            })
    }

    /// The operators that compute activations: every op except the DEQUANTIZE ops of
    /// constant weights (their outputs are read with [`Model::constant_f32`]).
    pub fn compute_ops(&self) -> impl Iterator<Item = &Operator> {
        self.operators.iter().filter(|op| {
            !(op.kind == OpKind::Dequantize
                && op
                    .outputs
                    .first()
                    .is_some_and(|&o| self.dequantize_source(o).is_some()))
        })
    }

    /// Number of operators of each kind.
    pub fn op_count(&self, kind: OpKind) -> usize {
        self.operators.iter().filter(|op| op.kind == kind).count()
    }
}

/// IEEE 754 half → single precision (exact; subnormals, infinities and NaN kept).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m · 2^-24 (exact in f32).
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn index(v: i32, len: usize, what: &str, at: usize) -> Result<usize, Fault> {
    usize::try_from(v)
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| Fault {
            offset: at,
            what: format!("{what}: index {v} out of range (0..{len})"),
        })
}

fn positive(v: i32, what: &str) -> Result<usize, Fault> {
    usize::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| Fault {
            offset: 0,
            what: format!("{what} is {v}, must be positive"),
        })
}

fn padding(code: u8, what: &str) -> Result<Padding, Fault> {
    match code {
        0 => Ok(Padding::Same),
        1 => Ok(Padding::Valid),
        c => Err(Fault {
            offset: 0,
            what: format!("{what}: unknown padding code {c}"),
        }),
    }
}

fn parse_model(buf: Buf<'_>) -> Result<Model, Fault> {
    let m = buf.root("model")?;
    let version = m.u32(0, 0, "model version")?;
    let description = m.string(3, "model description")?;

    let mut codes = Vec::new();
    for oc in m.tables(1, "operator_codes")? {
        let deprecated = oc.u8(0, 0, "operator code")? as i8 as i32;
        let builtin = oc.i32(3, 0, "operator code")?;
        codes.push(OpKind::from_code(deprecated.max(builtin)));
    }

    let mut buffers = Vec::new();
    for b in m.tables(4, "buffers")? {
        let data = match b.bytes(0, "buffer data")? {
            Some(d) => d.to_vec(),
            None => {
                // Large models keep data outside the flatbuffer (offset, size > 1).
                let offset = b.u64(1, 0, "buffer offset")?;
                let size = b.u64(2, 0, "buffer size")?;
                if offset > 1 {
                    let (o, s) = (offset as usize, size as usize);
                    match o.checked_add(s) {
                        Some(end) if end <= buf.0.len() => buf.0[o..end].to_vec(),
                        _ => {
                            return Err(Fault {
                                offset: o,
                                what: format!(
                                    "external buffer of {size} bytes at {offset} runs past the end of the file"
                                ),
                            });
                        }
                    }
                } else {
                    Vec::new()
                }
            }
        };
        buffers.push(data);
    }

    let subgraphs = m.tables(2, "subgraphs")?;
    let Some(sg) = subgraphs.first() else {
        return Err(Fault {
            offset: 0,
            what: "the model has no subgraph".into(),
        });
    };

    let mut tensors = Vec::new();
    for (i, t) in sg.tables(0, "tensors")?.iter().enumerate() {
        let what = format!("tensor {i}");
        let dims = t.i32s(0, &what)?;
        if dims.len() > MAX_RANK {
            return Err(Fault {
                offset: 0,
                what: format!("{what}: rank {} is too large", dims.len()),
            });
        }
        let mut shape = Vec::with_capacity(dims.len());
        let mut count: usize = 1;
        for &d in &dims {
            let d = usize::try_from(d).map_err(|_| Fault {
                offset: 0,
                what: format!("{what}: negative dimension in shape {dims:?}"),
            })?;
            count = count
                .checked_mul(d)
                .filter(|&c| c <= MAX_ELEMENTS)
                .ok_or_else(|| Fault {
                    offset: 0,
                    what: format!("{what}: shape {dims:?} is too large"),
                })?;
            shape.push(d);
        }
        let buffer = t.u32(2, 0, &what)? as usize;
        if buffer >= buffers.len().max(1) {
            return Err(Fault {
                offset: 0,
                what: format!(
                    "{what}: buffer index {buffer} out of range (0..{})",
                    buffers.len()
                ),
            });
        }
        tensors.push(Tensor {
            name: t.string(3, &what)?.unwrap_or_default(),
            shape,
            dtype: TensorType::from_code(t.u8(1, 0, &what)?),
            buffer,
        });
    }
    let n = tensors.len();
    let indices = |v: Vec<i32>, what: &str| -> Result<Vec<usize>, Fault> {
        v.into_iter().map(|i| index(i, n, what, 0)).collect()
    };
    let inputs = indices(sg.i32s(1, "subgraph inputs")?, "subgraph input")?;
    let outputs = indices(sg.i32s(2, "subgraph outputs")?, "subgraph output")?;

    let mut operators = Vec::new();
    for (j, op) in sg.tables(3, "operators")?.iter().enumerate() {
        let what = format!("operator {j}");
        let code = op.u32(0, 0, &what)? as i32;
        let kind = *codes.get(code as usize).ok_or_else(|| Fault {
            offset: 0,
            what: format!(
                "{what}: opcode index {code} out of range (0..{})",
                codes.len()
            ),
        })?;
        let op_inputs = op
            .i32s(1, &what)?
            .into_iter()
            .map(|i| {
                if i == -1 {
                    Ok(None)
                } else {
                    index(i, n, &what, 0).map(Some)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let op_outputs = indices(op.i32s(2, &what)?, &what)?;
        let options_type = op.u8(3, 0, &what)?;
        let options = match op.table(4, &what)? {
            Some(o) => parse_options(kind, options_type, &o, &what)?,
            None => parse_options_default(kind, &what)?,
        };
        operators.push(Operator {
            kind,
            inputs: op_inputs,
            outputs: op_outputs,
            options,
        });
    }

    Ok(Model {
        version,
        description,
        tensors,
        operators,
        inputs,
        outputs,
        buffers,
        file: None,
    })
}

/// Ops whose options table is absent behave as if every field had its default, which
/// for convs and pools means a zero stride: reject those.
fn parse_options_default(kind: OpKind, what: &str) -> Result<OpOptions, Fault> {
    match kind {
        OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::MaxPool2d | OpKind::AveragePool2d => {
            Err(Fault {
                offset: 0,
                what: format!("{what}: {kind:?} has no options"),
            })
        }
        _ => Ok(OpOptions::None),
    }
}

fn parse_options(kind: OpKind, ty: u8, o: &Table<'_>, what: &str) -> Result<OpOptions, Fault> {
    // Union type ids from the schema's `BuiltinOptions`.
    let expect = |want: u8| -> Result<(), Fault> {
        if ty == want {
            Ok(())
        } else {
            Err(Fault {
                offset: 0,
                what: format!("{what}: {kind:?} has options of type {ty}, expected {want}"),
            })
        }
    };
    let act = |id| -> Result<Activation, Fault> { Ok(Activation::from_code(o.u8(id, 0, what)?)) };
    Ok(match kind {
        OpKind::Conv2d => {
            expect(1)?;
            OpOptions::Conv(ConvOptions {
                padding: padding(o.u8(0, 0, what)?, what)?,
                stride_w: positive(o.i32(1, 0, what)?, &format!("{what}: stride_w"))?,
                stride_h: positive(o.i32(2, 0, what)?, &format!("{what}: stride_h"))?,
                activation: act(3)?,
                dilation_w: positive(o.i32(4, 1, what)?, &format!("{what}: dilation_w"))?,
                dilation_h: positive(o.i32(5, 1, what)?, &format!("{what}: dilation_h"))?,
                depth_multiplier: 1,
            })
        }
        OpKind::DepthwiseConv2d => {
            expect(2)?;
            OpOptions::Conv(ConvOptions {
                padding: padding(o.u8(0, 0, what)?, what)?,
                stride_w: positive(o.i32(1, 0, what)?, &format!("{what}: stride_w"))?,
                stride_h: positive(o.i32(2, 0, what)?, &format!("{what}: stride_h"))?,
                depth_multiplier: positive(
                    o.i32(3, 0, what)?,
                    &format!("{what}: depth_multiplier"),
                )?,
                activation: act(4)?,
                dilation_w: positive(o.i32(5, 1, what)?, &format!("{what}: dilation_w"))?,
                dilation_h: positive(o.i32(6, 1, what)?, &format!("{what}: dilation_h"))?,
            })
        }
        OpKind::MaxPool2d | OpKind::AveragePool2d => {
            expect(5)?;
            OpOptions::Pool(PoolOptions {
                padding: padding(o.u8(0, 0, what)?, what)?,
                stride_w: positive(o.i32(1, 0, what)?, &format!("{what}: stride_w"))?,
                stride_h: positive(o.i32(2, 0, what)?, &format!("{what}: stride_h"))?,
                filter_w: positive(o.i32(3, 0, what)?, &format!("{what}: filter_width"))?,
                filter_h: positive(o.i32(4, 0, what)?, &format!("{what}: filter_height"))?,
                activation: act(5)?,
            })
        }
        OpKind::Concatenation => {
            expect(10)?;
            OpOptions::Concatenation {
                axis: o.i32(0, 0, what)?,
                activation: act(1)?,
            }
        }
        OpKind::Add => {
            expect(11)?;
            OpOptions::Add {
                activation: act(0)?,
            }
        }
        OpKind::ResizeBilinear => {
            expect(15)?;
            OpOptions::ResizeBilinear {
                align_corners: o.bool(2, what)?,
                half_pixel_centers: o.bool(3, what)?,
            }
        }
        OpKind::Reshape => {
            expect(17)?;
            OpOptions::Reshape {
                new_shape: o.i32s(0, what)?,
            }
        }
        _ => OpOptions::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats() {
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    }
}
