//! Building blocks shared by kao's dlib-style networks (the ResNet embedder now, the
//! MMOD detector and BlazeFace later), generic over burn's [`Backend`].
//!
//! Each block is built from a layer record parsed by `kao_model_files::dat` and checks the
//! record's sizes before it makes tensors, so a bad file gives an [`Error`], not a panic.

use burn_tensor::backend::Backend;
use burn_tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn_tensor::ops::ConvOptions;
use burn_tensor::{Tensor, TensorData, activation};
use kao_model_files::dat::{self, AffineMode, Layer};

use crate::Error;

/// dlib's default padding for a `con`/pool window of size `k`: `k/2` when the stride
/// is 1, otherwise 0 (so a strided 3×3 conv is VALID).
pub fn dlib_padding(k: usize, stride: usize) -> usize {
    if stride == 1 { k / 2 } else { 0 }
}

/// A 2-D convolution (cross-correlation, OIHW filters) with optional bias, optionally
/// followed by dlib's per-channel affine `y = γ·x + β` (`affine_`, a folded batch norm).
///
/// The affine is folded into the filters at load time, `γ·(W∗x + b) + β =
/// (γW)∗x + (γb + β)`, which saves a pass over the output (and burn-flex's broadcast
/// multiply is slow on batches); the result differs from dlib's by float rounding only.
#[derive(Debug, Clone)]
pub struct Conv2d<B: Backend> {
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    stride: [usize; 2],
    padding: [usize; 2],
}

/// A convolution's constants as plain values, with any following affine folded in: what
/// [`Conv2d`] puts on a burn device, and what the native executors read.
#[derive(Debug, Clone)]
pub(crate) struct ConvSpec {
    /// OIHW filters.
    pub(crate) weight: Vec<f32>,
    /// One value per filter, or empty.
    pub(crate) bias: Vec<f32>,
    /// `[filters, in channels, rows, cols]`.
    pub(crate) shape: [usize; 4],
    pub(crate) stride: [usize; 2],
    pub(crate) padding: [usize; 2],
}

impl ConvSpec {
    /// Reads a dlib `con` record (with the record's own stride and padding) and, if
    /// given, folds in the `affine` record that follows it. Fails if the filter, bias, γ
    /// or β count does not match the record's shape, if the record fuses a relu
    /// (`con_6`), or if the affine is per element rather than per channel.
    pub(crate) fn from_dlib(c: &dat::Conv, affine: Option<&dat::Affine>) -> Result<Self, Error> {
        let shape = [c.num_filters, c.in_channels, c.kernel_rows, c.kernel_cols];
        let count: usize = shape.iter().product();
        check_len("con filters", count, c.filters.len())?;
        if count == 0 || c.fused_relu || c.stride_y == 0 || c.stride_x == 0 {
            return Err(Error::Unsupported(format!(
                "con {:?} with fused relu {} and stride {}x{}",
                shape, c.fused_relu, c.stride_y, c.stride_x
            )));
        }
        if !c.bias.is_empty() {
            check_len("con bias", c.num_filters, c.bias.len())?;
        }
        let mut weight = c.filters.clone();
        let mut bias = c.bias.clone();
        if let Some(a) = affine.filter(|a| !a.disabled) {
            if a.mode != AffineMode::Conv {
                return Err(Error::Unsupported("affine in FC (per-element) mode".into()));
            }
            check_len("affine gamma", c.num_filters, a.gamma.len())?;
            check_len("affine beta", c.num_filters, a.beta.len())?;
            for (filter, gamma) in weight.chunks_exact_mut(count / c.num_filters).zip(&a.gamma) {
                filter.iter_mut().for_each(|w| *w *= gamma);
            }
            bias.resize(c.num_filters, 0.0);
            for ((b, gamma), beta) in bias.iter_mut().zip(&a.gamma).zip(&a.beta) {
                *b = *b * gamma + beta;
            }
        }
        Ok(Self {
            weight,
            bias,
            shape,
            stride: [c.stride_y, c.stride_x],
            padding: [c.pad_y, c.pad_x],
        })
    }
}

impl<B: Backend> Conv2d<B> {
    /// Builds the convolution from a dlib `con` record and the `affine` record that may
    /// follow it (see `ConvSpec::from_dlib` for what is checked).
    pub fn from_dlib(
        c: &dat::Conv,
        affine: Option<&dat::Affine>,
        device: &B::Device,
    ) -> Result<Self, Error> {
        Ok(Self::from_spec(&ConvSpec::from_dlib(c, affine)?, device))
    }

    /// Puts a convolution's constants on `device`.
    pub(crate) fn from_spec(spec: &ConvSpec, device: &B::Device) -> Self {
        let weight = Tensor::from_data(TensorData::new(spec.weight.clone(), spec.shape), device);
        let bias = (!spec.bias.is_empty()).then(|| {
            Tensor::from_data(TensorData::new(spec.bias.clone(), [spec.shape[0]]), device)
        });
        Self {
            weight,
            bias,
            stride: spec.stride,
            padding: spec.padding,
        }
    }

    /// Applies the convolution (and folded affine) to an NCHW tensor.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv2d(
            x,
            self.weight.clone(),
            self.bias.clone(),
            ConvOptions::new(self.stride, self.padding, [1, 1], 1),
        )
    }
}

/// `Err(Error::Params)` unless `found == expected`.
fn check_len(what: &'static str, expected: usize, found: usize) -> Result<(), Error> {
    if found == expected {
        Ok(())
    } else {
        Err(Error::Params {
            what,
            expected,
            found,
        })
    }
}

/// `max(x, 0)`.
pub fn relu<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    activation::relu(x)
}

/// What a [`Pool2d`] computes over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum.
    Max,
    /// Mean.
    Avg,
}

/// Max or average pooling over a window, or over the whole plane (dlib's
/// `*_pool_everything`, stored as a 0×0 window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    pub(crate) kind: PoolKind,
    /// Window `[rows, cols]`; `None` pools the whole plane.
    pub(crate) window: Option<[usize; 2]>,
    pub(crate) stride: [usize; 2],
    pub(crate) padding: [usize; 2],
}

impl Pool2d {
    /// Builds the pooling from a dlib `max_pool`/`avg_pool` record. Padded average pools
    /// divide by the in-bounds part of the window (no dlib net used here has one).
    pub fn from_dlib(kind: PoolKind, p: &dat::Pool) -> Result<Self, Error> {
        if p.is_global() {
            return Ok(Self {
                kind,
                window: None,
                stride: [1, 1],
                padding: [0, 0],
            });
        }
        if p.rows == 0 || p.cols == 0 || p.stride_y == 0 || p.stride_x == 0 {
            return Err(Error::Unsupported(format!(
                "pool window {}x{} stride {}x{}",
                p.rows, p.cols, p.stride_y, p.stride_x
            )));
        }
        Ok(Self {
            kind,
            window: Some([p.rows, p.cols]),
            stride: [p.stride_y, p.stride_x],
            padding: [p.pad_y, p.pad_x],
        })
    }

    /// Pools an NCHW tensor; a global pool gives `[N, C, 1, 1]`.
    pub fn forward<B: Backend>(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match (self.kind, self.window) {
            (PoolKind::Max, None) => x.max_dim(2).max_dim(3),
            (PoolKind::Avg, None) => x.mean_dim(2).mean_dim(3),
            (PoolKind::Max, Some(w)) => max_pool2d(x, w, self.stride, self.padding, [1, 1], false),
            (PoolKind::Avg, Some(w)) => {
                // Counting the padding or not is the same when there is none; burn-candle
                // implements only the counting variant.
                let count_include_pad = self.padding == [0, 0];
                avg_pool2d(x, w, self.stride, self.padding, count_include_pad, false)
            }
        }
    }
}

/// dlib's `add_prev` on tensors of different shapes: the output takes the larger size
/// in every dimension, both inputs are aligned top-left and missing entries count as 0
/// (channels padded at the end, space padded at the bottom/right).
pub fn add_zero_padded<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 4> {
    let (da, db) = (a.dims(), b.dims());
    if da == db {
        return a.add(b);
    }
    let out: [usize; 4] = std::array::from_fn(|i| da[i].max(db[i]));
    zero_pad_to(a, out).add(zero_pad_to(b, out))
}

/// Zero-pads an NCHW tensor at the end of each dimension up to `shape`.
fn zero_pad_to<B: Backend>(x: Tensor<B, 4>, shape: [usize; 4]) -> Tensor<B, 4> {
    let d = x.dims();
    if d == shape {
        return x;
    }
    Tensor::zeros(shape, &x.device()).slice_assign([0..d[0], 0..d[1], 0..d[2], 0..d[3]], x)
}

/// A short description of a layer record for error messages.
pub(crate) fn describe(layer: &Layer) -> String {
    match layer {
        Layer::Con(c) => format!(
            "con {}x{}x{}x{} stride {}x{} pad {}x{}{} ({} filter values, {} biases)",
            c.num_filters,
            c.in_channels,
            c.kernel_rows,
            c.kernel_cols,
            c.stride_y,
            c.stride_x,
            c.pad_y,
            c.pad_x,
            if c.fused_relu { " +relu" } else { "" },
            c.filters.len(),
            c.bias.len()
        ),
        Layer::Affine(a) => format!(
            "affine ({:?} mode{}) with {} gammas, {} betas",
            a.mode,
            if a.disabled { ", disabled" } else { "" },
            a.gamma.len(),
            a.beta.len()
        ),
        Layer::Relu { disabled } => format!("relu{}", if *disabled { " (disabled)" } else { "" }),
        Layer::MaxPool(p) | Layer::AvgPool(p) => {
            let name = if matches!(layer, Layer::MaxPool(_)) {
                "max_pool"
            } else {
                "avg_pool"
            };
            if p.is_global() {
                format!("{name}_everything")
            } else {
                format!(
                    "{name} {}x{} stride {}x{} pad {}x{}",
                    p.rows, p.cols, p.stride_y, p.stride_x, p.pad_y, p.pad_x
                )
            }
        }
        Layer::AddPrev { tag } => format!("add_prev{tag}"),
        Layer::Fc(f) => format!(
            "fc {} -> {} ({} weights, {} biases)",
            f.num_inputs,
            f.num_outputs,
            f.weights.len(),
            f.bias.len()
        ),
        Layer::Tag(id) => format!("tag{id}"),
        Layer::Skip(id) => format!("skip{id}"),
    }
}

#[cfg(all(test, any(feature = "flex", feature = "ndarray", feature = "candle")))]
mod tests {
    use super::*;
    use crate::CpuBackend;

    fn tensor(v: &[f32], shape: [usize; 4]) -> Tensor<CpuBackend, 4> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), &Default::default())
    }

    fn values(t: Tensor<CpuBackend, 4>) -> Vec<f32> {
        t.into_data().into_vec().unwrap()
    }

    #[test]
    fn padding_rule() {
        assert_eq!(dlib_padding(3, 1), 1);
        assert_eq!(dlib_padding(7, 2), 0);
        assert_eq!(dlib_padding(3, 2), 0);
        assert_eq!(dlib_padding(2, 2), 0);
    }

    #[test]
    fn zero_padded_add_pads_channels_and_space_at_the_end() {
        // a: 1 channel 1x1, b: 2 channels 2x2.
        let a = tensor(&[10.0], [1, 1, 1, 1]);
        let b = tensor(&[1., 2., 3., 4., 5., 6., 7., 8.], [1, 2, 2, 2]);
        assert_eq!(
            values(add_zero_padded(a, b)),
            [11., 2., 3., 4., 5., 6., 7., 8.]
        );
        // Each input larger in a different dimension.
        let a = tensor(&[1., 2.], [1, 2, 1, 1]);
        let b = tensor(&[1., 1., 1., 1.], [1, 1, 2, 2]);
        assert_eq!(
            values(add_zero_padded(a, b)),
            [2., 1., 1., 1., 2., 0., 0., 0.]
        );
    }

    #[test]
    fn bad_records_are_errors() {
        let device = Default::default();
        let mut conv = dat::Conv {
            num_filters: 2,
            in_channels: 1,
            kernel_rows: 3,
            kernel_cols: 3,
            stride_y: 1,
            stride_x: 1,
            pad_y: 1,
            pad_x: 1,
            filters: vec![0.0; 17],
            bias: vec![0.0; 2],
            fused_relu: false,
        };
        assert!(matches!(
            Conv2d::<CpuBackend>::from_dlib(&conv, None, &device),
            Err(Error::Params {
                expected: 18,
                found: 17,
                ..
            })
        ));
        conv.filters.push(0.0);
        let mut affine = dat::Affine {
            gamma: vec![1.0; 2],
            beta: vec![0.0; 1],
            mode: AffineMode::Conv,
            disabled: false,
        };
        assert!(matches!(
            Conv2d::<CpuBackend>::from_dlib(&conv, Some(&affine), &device),
            Err(Error::Params {
                what: "affine beta",
                ..
            })
        ));
        affine.beta.push(0.0);
        affine.mode = AffineMode::Fc;
        assert!(matches!(
            Conv2d::<CpuBackend>::from_dlib(&conv, Some(&affine), &device),
            Err(Error::Unsupported(_))
        ));
    }
}
