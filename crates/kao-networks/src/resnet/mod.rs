//! dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`), from
//! `tools/python/src/face_recognition.cpp`; see docs/models.md §1.1.
//!
//! ```text
//! input 150×150 RGB, x = (pixel − mean)/256, NCHW
//! stem      con 32 7×7/2 (150→72) → affine → relu → max_pool 3×3/2 (72→35)
//! alevel4   3 × ares 32                                   35×35
//! alevel3   ares_down 64  + 3 × ares 64                   17×17
//! alevel2   ares_down 128 + 2 × ares 128                  8×8
//! alevel1   ares_down 256 + 2 × ares 256                  4×4 (conv branch 3×3, zero-padded)
//! alevel0   ares_down 256                                 2×2 (conv branch 1×1, zero-padded)
//! head      avg_pool_everything → fc_no_bias 128 (no normalisation)
//!
//! ares(x)      = relu(x + affine(con3×3(relu(affine(con3×3(x))))))
//! ares_down(x) = relu(B(x) ⊕ avg_pool 2×2/2(x)), B's first con has stride 2 (pad 0),
//!                ⊕ = dlib's zero-padded add (channels and bottom/right space padded)
//! ```
//!
//! The file lists the layers from the input side: the stem, then per block
//! `tag1 con affine relu con affine add_prev1 relu` (`ares`) or
//! `tag1 con affine relu con affine tag2 skip1 avg_pool add_prev2 relu` (`ares_down`),
//! then `avg_pool_everything fc`. [`ResNet::from_model`] walks that list and checks
//! every record against the architecture. Each affine is folded into the con before it
//! (see [`Conv2d`]).

use burn_tensor::backend::Backend;
use burn_tensor::{Tensor, TensorData};
use kao_image::RgbView;
use kao_model_files::dat::{AffineMode, Layer, ResnetModel};

use crate::Error;
use crate::layers::{
    Conv2d, ConvSpec, Pool2d, PoolKind, add_zero_padded, describe, dlib_padding, relu,
};

mod embedder;
mod native;

pub use embedder::{DlibResnet, ResNetEmbedder};
pub use native::NativeResNet;
pub(crate) use native::check_sizes;

/// Side of the square input chip.
pub const INPUT_SIZE: usize = 150;
/// Length of the embedding.
pub const EMBEDDING_LEN: usize = 128;

/// A residual block kind (models.md §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `ares`: same size in and out.
    Ares,
    /// `ares_down`: stride-2 conv branch plus a 2×2 average-pooled shortcut.
    AresDown,
}

/// The 14 residual blocks from the input side: (kind, output channels).
const BLOCKS: [(Kind, usize); 14] = [
    // alevel4
    (Kind::Ares, 32),
    (Kind::Ares, 32),
    (Kind::Ares, 32),
    // alevel3
    (Kind::AresDown, 64),
    (Kind::Ares, 64),
    (Kind::Ares, 64),
    (Kind::Ares, 64),
    // alevel2
    (Kind::AresDown, 128),
    (Kind::Ares, 128),
    (Kind::Ares, 128),
    // alevel1
    (Kind::AresDown, 256),
    (Kind::Ares, 256),
    (Kind::Ares, 256),
    // alevel0
    (Kind::AresDown, 256),
];

/// `con → affine → relu → con → affine`: the conv branch of both block kinds (each
/// affine folded into its con).
#[derive(Debug, Clone)]
struct Branch<B: Backend> {
    conv1: Conv2d<B>,
    conv2: Conv2d<B>,
}

impl<B: Backend> Branch<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.conv2.forward(relu(self.conv1.forward(x)))
    }
}

/// One residual block.
#[derive(Debug, Clone)]
enum Block<B: Backend> {
    /// `relu(x + branch(x))`.
    Ares(Branch<B>),
    /// `relu(branch(x) ⊕ avg_pool(x))`.
    AresDown(Branch<B>, Pool2d),
}

impl<B: Backend> Block<B> {
    fn new(spec: &BlockSpec, device: &B::Device) -> Self {
        let branch = Branch {
            conv1: Conv2d::from_spec(&spec.conv1, device),
            conv2: Conv2d::from_spec(&spec.conv2, device),
        };
        match spec.shortcut {
            None => Block::Ares(branch),
            Some(pool) => Block::AresDown(branch, pool),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        relu(match self {
            Block::Ares(branch) => branch.forward(x.clone()).add(x),
            Block::AresDown(branch, pool) => {
                add_zero_padded(branch.forward(x.clone()), pool.forward(x))
            }
        })
    }
}

/// Every intermediate tensor of one forward pass (for layer-by-layer checks against dlib).
#[derive(Debug, Clone)]
pub struct Stages<B: Backend> {
    /// Normalised input `[N, 3, 150, 150]`.
    pub input: Tensor<B, 4>,
    /// Stem output after the max pool `[N, 32, 35, 35]`.
    pub stem: Tensor<B, 4>,
    /// Output of each of the 14 residual blocks, input side first.
    pub blocks: Vec<Tensor<B, 4>>,
    /// Global average pool `[N, 256]`.
    pub pooled: Tensor<B, 2>,
    /// Embedding `[N, 128]`.
    pub embedding: Tensor<B, 2>,
}

/// dlib's face-recognition ResNet-29 on a burn backend.
#[derive(Debug, Clone)]
pub struct ResNet<B: Backend> {
    mean: [f32; 3],
    /// Stem con 7×7/2 with its affine folded in.
    stem_conv: Conv2d<B>,
    stem_pool: Pool2d,
    blocks: Vec<Block<B>>,
    global_pool: Pool2d,
    /// fc_no_bias weights `[256, 128]` (`y = x·W`).
    fc: Tensor<B, 2>,
    device: B::Device,
}

impl<B: Backend> ResNet<B> {
    /// Builds the network on `device` from a parsed model file, checking every layer
    /// record (kind, sizes, strides, padding, parameter counts) against the architecture.
    pub fn from_model(model: &ResnetModel, device: &B::Device) -> Result<Self, Error> {
        Ok(Self::from_spec(&ResnetSpec::from_model(model)?, device))
    }

    /// Puts the network's constants on `device`.
    pub(crate) fn from_spec(spec: &ResnetSpec, device: &B::Device) -> Self {
        let [inputs, outputs] = [spec.fc.len() / EMBEDDING_LEN, EMBEDDING_LEN];
        Self {
            mean: spec.mean,
            stem_conv: Conv2d::from_spec(&spec.stem, device),
            stem_pool: spec.stem_pool,
            blocks: spec.blocks.iter().map(|b| Block::new(b, device)).collect(),
            global_pool: spec.global_pool,
            fc: Tensor::from_data(TensorData::new(spec.fc.clone(), [inputs, outputs]), device),
            device: device.clone(),
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Planar NCHW input `(pixel − mean)/256` for a batch of 150×150 RGB chips.
    pub fn input(&self, chips: &[RgbView<'_>]) -> Result<Tensor<B, 4>, Error> {
        let plane = INPUT_SIZE * INPUT_SIZE;
        let mut data = vec![0f32; chips.len() * 3 * plane];
        for (index, (chip, out)) in chips
            .iter()
            .zip(data.chunks_exact_mut(3 * plane))
            .enumerate()
        {
            if (chip.width(), chip.height()) != (INPUT_SIZE, INPUT_SIZE) {
                return Err(Error::ImageSize {
                    index,
                    width: chip.width(),
                    height: chip.height(),
                });
            }
            let (r, gb) = out.split_at_mut(plane);
            let (g, b) = gb.split_at_mut(plane);
            normalise(chip, self.mean, [r, g, b]);
        }
        let shape = [chips.len(), 3, INPUT_SIZE, INPUT_SIZE];
        Ok(Tensor::from_data(
            TensorData::new(data, shape),
            &self.device,
        ))
    }

    /// Embeddings `[N, 128]` of a normalised input batch `[N, 3, 150, 150]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = self.stem(x);
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.head(x).1
    }

    /// Like [`forward`](Self::forward), keeping every intermediate tensor.
    pub fn forward_stages(&self, input: Tensor<B, 4>) -> Stages<B> {
        let stem = self.stem(input.clone());
        let mut blocks: Vec<Tensor<B, 4>> = Vec::with_capacity(self.blocks.len());
        let mut x = stem.clone();
        for block in &self.blocks {
            x = block.forward(x);
            blocks.push(x.clone());
        }
        let (pooled, embedding) = self.head(x);
        Stages {
            input,
            stem,
            blocks,
            pooled,
            embedding,
        }
    }

    /// con 7×7/2 + affine → relu → max_pool 3×3/2.
    fn stem(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.stem_pool.forward(relu(self.stem_conv.forward(x)))
    }

    /// Global average pool, then fc_no_bias: (pooled, embedding).
    fn head(&self, x: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let pooled: Tensor<B, 2> = self.global_pool.forward(x).flatten(1, 3);
        let embedding = pooled.clone().matmul(self.fc.clone());
        (pooled, embedding)
    }
}

/// Writes a 150×150 chip's channels into `planes` as `(pixel − mean)/256` (dlib's input
/// layer).
pub(crate) fn normalise(chip: &RgbView<'_>, mean: [f32; 3], planes: [&mut [f32]; 3]) {
    for (c, plane) in planes.into_iter().enumerate() {
        for (y, out) in plane.chunks_exact_mut(INPUT_SIZE).enumerate() {
            let row = chip.row(y);
            for (o, p) in out.iter_mut().zip(row.chunks_exact(3)) {
                *o = (f32::from(p[c]) - mean[c]) / 256.0;
            }
        }
    }
}

/// One residual block's constants: the two convolutions of its branch (affines folded),
/// and for `ares_down` the average pool of its shortcut.
#[derive(Debug, Clone)]
pub(crate) struct BlockSpec {
    pub(crate) conv1: ConvSpec,
    pub(crate) conv2: ConvSpec,
    /// `None` for `ares` (identity shortcut).
    pub(crate) shortcut: Option<Pool2d>,
}

/// The ResNet as read and checked from the file, constants as plain values: the one
/// network definition that [`ResNet`] (burn) and [`NativeResNet`] run.
#[derive(Debug, Clone)]
pub(crate) struct ResnetSpec {
    pub(crate) mean: [f32; 3],
    /// Stem con 7×7/2 with its affine folded in.
    pub(crate) stem: ConvSpec,
    pub(crate) stem_pool: Pool2d,
    pub(crate) blocks: Vec<BlockSpec>,
    pub(crate) global_pool: Pool2d,
    /// fc_no_bias weights `[256, 128]` (`y = x·W`).
    pub(crate) fc: Vec<f32>,
}

impl ResnetSpec {
    /// Walks the model's layer list, checking every record (kind, sizes, strides,
    /// padding, parameter counts) against the architecture.
    pub(crate) fn from_model(model: &ResnetModel) -> Result<Self, Error> {
        let input = &model.input;
        if (input.rows, input.cols) != (INPUT_SIZE, INPUT_SIZE) {
            return Err(Error::Layout {
                index: None,
                expected: format!("input {INPUT_SIZE}x{INPUT_SIZE}"),
                found: format!("input {}x{}", input.rows, input.cols),
            });
        }
        let mut walk = Walk {
            layers: &model.layers,
            pos: 0,
        };
        let stem = walk.conv_affine(32, 3, 7, 2)?;
        walk.relu()?;
        let stem_pool = walk.pool(PoolKind::Max, 3, 2)?;
        let mut in_channels = 32;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        for (kind, channels) in BLOCKS {
            walk.tag(1)?;
            let stride = if kind == Kind::Ares { 1 } else { 2 };
            let conv1 = walk.conv_affine(channels, in_channels, 3, stride)?;
            walk.relu()?;
            let conv2 = walk.conv_affine(channels, channels, 3, 1)?;
            let shortcut = match kind {
                Kind::Ares => {
                    walk.add_prev(1)?;
                    None
                }
                Kind::AresDown => {
                    walk.tag(2)?;
                    walk.skip(1)?;
                    let pool = walk.pool(PoolKind::Avg, 2, 2)?;
                    walk.add_prev(2)?;
                    Some(pool)
                }
            };
            walk.relu()?;
            blocks.push(BlockSpec {
                conv1,
                conv2,
                shortcut,
            });
            in_channels = channels;
        }
        let global_pool = walk.global_avg_pool()?;
        let fc = walk.fc(in_channels, EMBEDDING_LEN)?;
        walk.end()?;
        Ok(Self {
            mean: input.mean,
            stem,
            stem_pool,
            blocks,
            global_pool,
            fc,
        })
    }
}

/// Walks a model's layer list in order, checking each record against the expected one.
struct Walk<'a> {
    layers: &'a [Layer],
    pos: usize,
}

impl<'a> Walk<'a> {
    /// The next record, or a "file ends early" error naming what was expected.
    fn next(&mut self, expected: impl FnOnce() -> String) -> Result<(usize, &'a Layer), Error> {
        let index = self.pos;
        let layer = self.layers.get(index).ok_or_else(|| Error::Layout {
            index: Some(index),
            expected: expected(),
            found: "end of the layer list".into(),
        })?;
        self.pos += 1;
        Ok((index, layer))
    }

    fn mismatch(index: usize, expected: String, found: &Layer) -> Error {
        Error::Layout {
            index: Some(index),
            expected,
            found: describe(found),
        }
    }

    /// A `con` record followed by an `affine` record, folded into one convolution.
    fn conv_affine(
        &mut self,
        filters: usize,
        in_channels: usize,
        k: usize,
        stride: usize,
    ) -> Result<ConvSpec, Error> {
        let pad = dlib_padding(k, stride);
        let want =
            || format!("con {filters}x{in_channels}x{k}x{k} stride {stride} pad {pad} with bias");
        let (index, layer) = self.next(want)?;
        let conv = match layer {
            Layer::Con(c)
                if (c.num_filters, c.in_channels, c.kernel_rows, c.kernel_cols)
                    == (filters, in_channels, k, k)
                    && (c.stride_y, c.stride_x, c.pad_y, c.pad_x) == (stride, stride, pad, pad)
                    && c.bias.len() == filters
                    && !c.fused_relu =>
            {
                c
            }
            other => return Err(Self::mismatch(index, want(), other)),
        };
        let want = || format!("affine (conv mode) over {filters} channels");
        let (affine_index, layer) = self.next(want)?;
        let affine = match layer {
            Layer::Affine(a)
                if a.mode == AffineMode::Conv
                    && a.gamma.len() == filters
                    && a.beta.len() == filters =>
            {
                a
            }
            other => return Err(Self::mismatch(affine_index, want(), other)),
        };
        ConvSpec::from_dlib(conv, Some(affine)).map_err(|e| e.at(index))
    }

    fn pool(&mut self, kind: PoolKind, k: usize, stride: usize) -> Result<Pool2d, Error> {
        let pad = dlib_padding(k, stride);
        let name = match kind {
            PoolKind::Max => "max_pool",
            PoolKind::Avg => "avg_pool",
        };
        let want = || format!("{name} {k}x{k} stride {stride} pad {pad}");
        let (index, layer) = self.next(want)?;
        let p = match (kind, layer) {
            (PoolKind::Max, Layer::MaxPool(p)) | (PoolKind::Avg, Layer::AvgPool(p)) => p,
            (_, other) => return Err(Self::mismatch(index, want(), other)),
        };
        if (p.rows, p.cols, p.stride_y, p.stride_x, p.pad_y, p.pad_x)
            != (k, k, stride, stride, pad, pad)
        {
            return Err(Self::mismatch(index, want(), layer));
        }
        Pool2d::from_dlib(kind, p).map_err(|e| e.at(index))
    }

    fn global_avg_pool(&mut self) -> Result<Pool2d, Error> {
        let want = || "avg_pool_everything".to_string();
        let (index, layer) = self.next(want)?;
        match layer {
            Layer::AvgPool(p) if p.is_global() => {
                Pool2d::from_dlib(PoolKind::Avg, p).map_err(|e| e.at(index))
            }
            other => Err(Self::mismatch(index, want(), other)),
        }
    }

    fn fc(&mut self, inputs: usize, outputs: usize) -> Result<Vec<f32>, Error> {
        let want = || format!("fc_no_bias {inputs} -> {outputs}");
        let (index, layer) = self.next(want)?;
        match layer {
            Layer::Fc(f)
                if (f.num_inputs, f.num_outputs) == (inputs, outputs)
                    && f.weights.len() == inputs * outputs
                    && f.bias.is_empty() =>
            {
                Ok(f.weights.clone())
            }
            other => Err(Self::mismatch(index, want(), other)),
        }
    }

    /// Expects a record equal to `expected` (tags, skips, relus, add_prevs).
    fn exact(&mut self, expected: Layer) -> Result<(), Error> {
        let (index, layer) = self.next(|| describe(&expected))?;
        if *layer == expected {
            Ok(())
        } else {
            Err(Self::mismatch(index, describe(&expected), layer))
        }
    }

    fn relu(&mut self) -> Result<(), Error> {
        self.exact(Layer::Relu { disabled: false })
    }

    fn tag(&mut self, id: u32) -> Result<(), Error> {
        self.exact(Layer::Tag(id))
    }

    fn skip(&mut self, id: u32) -> Result<(), Error> {
        self.exact(Layer::Skip(id))
    }

    fn add_prev(&mut self, tag: u32) -> Result<(), Error> {
        self.exact(Layer::AddPrev { tag })
    }

    fn end(&self) -> Result<(), Error> {
        match self.layers.get(self.pos) {
            None => Ok(()),
            Some(layer) => Err(Self::mismatch(self.pos, "end of the network".into(), layer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_count_matches_the_file_layout() {
        // stem 4, ares 8 each, ares_down 11 each, head 2: the file's 130 records.
        let per_block: usize = BLOCKS
            .iter()
            .map(|(kind, _)| if *kind == Kind::Ares { 8 } else { 11 })
            .sum();
        assert_eq!(4 + per_block + 2, 130);
    }

    #[test]
    fn describe_names_the_record() {
        assert_eq!(describe(&Layer::AddPrev { tag: 2 }), "add_prev2");
        let pool = kao_model_files::dat::Pool {
            rows: 0,
            cols: 0,
            stride_y: 1,
            stride_x: 1,
            pad_y: 0,
            pad_x: 0,
        };
        assert_eq!(describe(&Layer::AvgPool(pool)), "avg_pool_everything");
    }
}
