//! dlib's MMOD CNN face detector network (`mmod_human_face_detector.dat`, `models.md`
//! §2.1): the convolutions from the tiled pyramid canvas to the score map.
//!
//! ```text
//! input  3 × rows × cols canvas ([`MmodInput`])
//! 3 × (con5d → affine → relu)   16, 32, 32 filters, 5×5, stride 2, no padding
//! 3 × (con5 → affine → relu)    45 filters, 5×5, stride 1, padding 2
//! con 1                         9×9, stride 1, padding 4 → 1 × rows/8 × cols/8 scores
//! ```
//!
//! The file lists the 19 layer records from the input side; [`MmodNet::from_model`]
//! checks each against this table and folds every affine into the con before it.
//!
//! The first con gets a 17th, all-zero filter (and the second con a matching zero
//! input channel): burn-flex runs convs with at most 16 filters and few input channels
//! on a direct loop that is about 3× slower than its im2col + gemm path on this
//! full-canvas layer. The extra channel is 0 after the relu, so the scores are unchanged.
//! Decoding the score map (pyramid levels, NMS) is [`MmodDecoder`] ([`processing`]).

use burn_tensor::backend::Backend;
use burn_tensor::{Tensor, TensorData};
use kao_model_files::dat::{Affine, Conv, Layer, MmodModel};

use crate::Error;
use crate::layers::{Conv2d, describe, relu};

pub mod processing;

pub use processing::{MAX_PIXELS, MmodDecoder, MmodInput, pyramid_up, rect_down};

/// The convolutions from the input side: (filters, kernel, stride, padding), each but
/// the last followed by an affine and a relu.
const CONVS: [(usize, usize, usize, usize); 7] = [
    (16, 5, 2, 0),
    (32, 5, 2, 0),
    (32, 5, 2, 0),
    (45, 5, 1, 2),
    (45, 5, 1, 2),
    (45, 5, 1, 2),
    (1, 9, 1, 4),
];

/// dlib's MMOD face detector CNN on a burn backend.
#[derive(Debug, Clone)]
pub struct MmodNet<B: Backend> {
    /// con + affine (folded), each followed by a relu.
    hidden: Vec<Conv2d<B>>,
    /// The final 1-filter con.
    score: Conv2d<B>,
    device: B::Device,
}

/// Appends an all-zero filter (affine γ = 1, β = 0) to the first con and a zero input
/// channel to the second (see the module docs). Records whose sizes do not add up are
/// left alone for `Conv2d::from_dlib` to report.
fn widen_first_layer(records: &mut [(usize, Conv, Option<Affine>)]) {
    let [(_, first, Some(affine)), (_, second, _), ..] = records else {
        return;
    };
    let k1 = first.in_channels * first.kernel_rows * first.kernel_cols;
    let plane = second.kernel_rows * second.kernel_cols;
    let sizes_ok = first.filters.len() == first.num_filters * k1
        && (first.bias.is_empty() || first.bias.len() == first.num_filters)
        && affine.gamma.len() == first.num_filters
        && affine.beta.len() == first.num_filters
        && second.in_channels == first.num_filters
        && second.filters.len() == second.num_filters * second.in_channels * plane;
    if !sizes_ok {
        return;
    }
    first.filters.resize(first.filters.len() + k1, 0.0);
    if !first.bias.is_empty() {
        first.bias.push(0.0);
    }
    first.num_filters += 1;
    affine.gamma.push(1.0);
    affine.beta.push(0.0);
    let per_filter = second.in_channels * plane;
    second.filters = second
        .filters
        .chunks_exact(per_filter)
        .flat_map(|f| f.iter().copied().chain(std::iter::repeat_n(0.0, plane)))
        .collect();
    second.in_channels += 1;
}

impl<B: Backend> MmodNet<B> {
    /// Builds the network on `device` from a parsed model, checking every layer record
    /// (kind, filter count, input channels, kernel, stride, padding, parameter counts).
    pub fn from_model(model: &MmodModel, device: &B::Device) -> Result<Self, Error> {
        let layers = &model.layers;
        let layout = |index: usize, expected: String| Error::Layout {
            index: Some(index),
            expected,
            found: layers
                .get(index)
                .map_or_else(|| "end of the layer list".into(), describe),
        };
        let mut pos = 0;
        let mut in_channels = 3;
        let mut records: Vec<(usize, Conv, Option<Affine>)> = Vec::with_capacity(CONVS.len());
        for (i, &(filters, k, stride, pad)) in CONVS.iter().enumerate() {
            let expected = format!(
                "con {filters}x{in_channels}x{k}x{k} stride {stride}x{stride} pad {pad}x{pad}"
            );
            let Some(Layer::Con(c)) = layers.get(pos) else {
                return Err(layout(pos, expected));
            };
            let shape_ok = (c.num_filters, c.in_channels, c.kernel_rows, c.kernel_cols)
                == (filters, in_channels, k, k)
                && (c.stride_y, c.stride_x, c.pad_y, c.pad_x) == (stride, stride, pad, pad);
            if !shape_ok {
                return Err(layout(pos, expected));
            }
            let con_at = pos;
            pos += 1;
            let last = i + 1 == CONVS.len();
            let affine = if last {
                None
            } else {
                let Some(Layer::Affine(a)) = layers.get(pos) else {
                    return Err(layout(pos, "affine".into()));
                };
                pos += 1;
                if !matches!(layers.get(pos), Some(Layer::Relu { disabled: false })) {
                    return Err(layout(pos, "relu".into()));
                }
                pos += 1;
                Some(a)
            };
            records.push((con_at, c.clone(), affine.cloned()));
            in_channels = filters;
        }
        if pos != layers.len() {
            return Err(layout(pos, "end of the layer list".into()));
        }
        widen_first_layer(&mut records);
        let mut convs = records
            .iter()
            .map(|(at, c, a)| Conv2d::from_dlib(c, a.as_ref(), device).map_err(|e| e.at(*at)))
            .collect::<Result<Vec<_>, _>>()?;
        let score = convs.pop().expect("CONVS is not empty");
        Ok(Self {
            hidden: convs,
            score,
            device: device.clone(),
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The canvas as an NCHW tensor `[1, 3, rows, cols]`.
    pub fn input(&self, canvas: &MmodInput) -> Tensor<B, 4> {
        Tensor::from_data(
            TensorData::new(canvas.data.clone(), [1, 3, canvas.rows, canvas.cols]),
            &self.device,
        )
    }

    /// The score map `[N, 1, rows', cols']` of a canvas batch `[N, 3, rows, cols]`
    /// (`rows' = ((rows − 5)/2 + 1)` three times over, likewise `cols'`).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.hidden.iter().fold(x, |x, conv| relu(conv.forward(x)));
        self.score.forward(x)
    }

    /// The score map of one canvas: `(values, rows, cols)`. Canvases smaller than the
    /// network's 29-pixel receptive field of the strided layers give an empty map.
    pub fn scores(&self, canvas: &MmodInput) -> (Vec<f32>, usize, usize) {
        let shrink = |n: usize| (0..3).try_fold(n, |n, _| n.checked_sub(5).map(|m| m / 2 + 1));
        let (Some(rows), Some(cols)) = (shrink(canvas.rows), shrink(canvas.cols)) else {
            return (Vec::new(), 0, 0);
        };
        let y = self.forward(self.input(canvas));
        let values = y
            .into_data()
            .into_vec()
            .expect("the network's output is f32");
        (values, rows, cols)
    }
}
