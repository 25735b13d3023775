//! A face embedder a user brings as an ONNX file (FACE01's JAPANESE FACE V1 with its fixed
//! contract, or any embedder with the preprocessing the options give), run by ONNX Runtime.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use kao_image::RgbView;
use kao_record::EmbeddingSpace;

use super::{Model, describe_all, onnx_device};
use crate::Device;
use crate::embedder::{Channels, ChipGeometry, Embedder, Preprocessing};

/// Chips per ONNX run when the graph's batch is open.
const ONNX_MAX_BATCH: usize = 32;

/// A user's ONNX embedder: one image input `[N, 3, S, S]` (or `[N, S, S, 3]`), one output
/// `[N, D]`, run by ONNX Runtime.
pub struct OnnxEmbedder {
    model: Model,
    preprocessing: Preprocessing,
    size: usize,
    /// Channels last (`[N, S, S, 3]`).
    nhwc: bool,
    /// The graph's fixed batch size, if it has one.
    fixed_batch: Option<usize>,
    space: EmbeddingSpace,
}

impl OnnxEmbedder {
    /// Loads `path` as embedder `name` and checks its graph against `preprocessing`.
    pub fn load(
        path: &Path,
        name: &str,
        preprocessing: &Preprocessing,
        device: Device,
    ) -> Result<OnnxEmbedder> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let model = Model::load(path, onnx_device(device), threads)?;
        let input = match model.inputs() {
            [one] => one.clone(),
            more => {
                return Err(model
                    .graph_error(format!(
                        "a face embedder has one image input; this graph has {}: {}",
                        more.len(),
                        describe_all(more)
                    ))
                    .into());
            }
        };
        let output = match model.outputs() {
            [one] => one.clone(),
            more => {
                return Err(model
                    .graph_error(format!(
                        "a face embedder has one output [N, D]; this graph has {}: {}",
                        more.len(),
                        describe_all(more)
                    ))
                    .into());
            }
        };
        if input.shape.len() != 4 {
            return Err(model
                .graph_error(format!(
                    "the input {} has rank {}; a face embedder reads images [N, 3, H, W] (rank 4)",
                    input.describe(),
                    input.shape.len()
                ))
                .into());
        }
        if output.shape.len() != 2 {
            return Err(model
                .graph_error(format!(
                    "the output {} has rank {}; a face embedder writes [N, D] (rank 2)",
                    output.describe(),
                    output.shape.len()
                ))
                .into());
        }
        let s = &input.shape;
        let nhwc = s[1] != 3 && s[3] == 3;
        if s[1] != 3 && !nhwc {
            return Err(model
                .graph_error(format!(
                    "the input {} has no 3-channel axis ([N, 3, H, W] or [N, H, W, 3])",
                    input.describe()
                ))
                .into());
        }
        let (h, w) = if nhwc { (s[1], s[2]) } else { (s[2], s[3]) };
        let size =
            match (preprocessing.input_size, h, w) {
                (Some(size), -1, -1) => size,
                (Some(size), h, w) if h == size as i64 && w == size as i64 => size,
                (Some(size), h, w) if h > 0 && w > 0 => {
                    return Err(model.graph_error(format!(
                    "the input {} is {h}×{w}, not the {size}×{size} that --input-size asks for",
                    input.describe()
                )).into());
                }
                (None, h, w) if h > 0 && h == w => h as usize,
                (None, h, w) if h > 0 && w > 0 => {
                    return Err(model
                        .graph_error(format!(
                            "the input {} is not square ({h}×{w}); kao's chips are square",
                            input.describe()
                        ))
                        .into());
                }
                _ => {
                    return Err(model
                        .graph_error(format!(
                            "the input {} leaves its size open: give --input-size",
                            input.describe()
                        ))
                        .into());
                }
            };
        let fixed_batch = (s[0] > 0).then_some(s[0] as usize);
        let sha256 = kao_model_files::sha256_file(path)?;
        let mut embedder = OnnxEmbedder {
            model,
            preprocessing: preprocessing.clone(),
            size,
            nhwc,
            fixed_batch,
            space: EmbeddingSpace {
                embedder: name.into(),
                model: path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into()),
                sha256,
                dim: 0,
                metric: preprocessing.metric,
                normalized: preprocessing.l2_normalize,
                preprocessing: preprocessing.describe(size),
            },
        };
        embedder.space.dim = match output.shape[1] {
            d if d > 0 => d as usize,
            // An open dimension: run one grey chip to learn it.
            _ => {
                let grey = vec![128u8; size * size * 3];
                let chip = RgbView::new(size, size, &grey).expect("the buffer fits");
                let probe = embedder.run(&[chip])?;
                probe.first().map_or(0, Vec::len)
            }
        };
        if embedder.space.dim == 0 {
            return Err(embedder
                .model
                .graph_error(format!(
                    "the output {} has no values per face",
                    output.describe()
                ))
                .into());
        }
        Ok(embedder)
    }

    /// The model's input for `chips`: normalised values in its layout, padded with zeros to
    /// `rows` chips.
    fn input(&self, chips: &[RgbView<'_>], rows: usize) -> Result<Vec<f32>> {
        let s = self.size;
        let p = &self.preprocessing;
        let mut data = vec![0f32; rows * 3 * s * s];
        for (n, chip) in chips.iter().enumerate() {
            if chip.width() != s || chip.height() != s {
                bail!(
                    "chip {n} is {}×{}; the model reads {s}×{s}",
                    chip.width(),
                    chip.height()
                );
            }
            let image = &mut data[n * 3 * s * s..(n + 1) * 3 * s * s];
            for y in 0..s {
                for x in 0..s {
                    let rgb = chip.pixel(x, y);
                    let ordered = match p.channels {
                        Channels::Rgb => rgb,
                        Channels::Bgr => [rgb[2], rgb[1], rgb[0]],
                    };
                    for (c, &v) in ordered.iter().enumerate() {
                        let value = (f32::from(v) * p.pixel_scale - p.mean[c]) / p.std[c];
                        let at = if self.nhwc {
                            (y * s + x) * 3 + c
                        } else {
                            (c * s + y) * s + x
                        };
                        image[at] = value;
                    }
                }
            }
        }
        Ok(data)
    }

    /// Runs one batch (at most the graph's fixed batch) and returns one vector per chip.
    fn run(&self, chips: &[RgbView<'_>]) -> Result<Vec<Vec<f32>>> {
        let rows = self.fixed_batch.unwrap_or(chips.len());
        let input = self.input(chips, rows)?;
        let s = self.size;
        let shape = if self.nhwc {
            [rows, s, s, 3]
        } else {
            [rows, 3, s, s]
        };
        let outputs = self.model.run(&input, &shape)?;
        let out = outputs.into_iter().next().ok_or_else(|| {
            anyhow!(
                "{}: the model returned no output",
                self.model.path().display()
            )
        })?;
        if out.shape.len() != 2 || out.shape[0] != rows || out.values.is_empty() {
            bail!(
                "{}: the output has shape {:?} for a batch of {rows}; expected [{rows}, D]",
                self.model.path().display(),
                out.shape
            );
        }
        let dim = out.shape[1];
        Ok(out
            .values
            .chunks_exact(dim)
            .take(chips.len())
            .map(|v| {
                let mut v = v.to_vec();
                if self.preprocessing.l2_normalize {
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    if norm > 0.0 {
                        v.iter_mut().for_each(|x| *x /= norm);
                    }
                }
                v
            })
            .collect())
    }
}

impl Embedder for OnnxEmbedder {
    fn space(&self) -> &EmbeddingSpace {
        &self.space
    }

    fn chip(&self) -> ChipGeometry {
        ChipGeometry {
            size: self.size,
            padding: self.preprocessing.chip_padding,
        }
    }

    fn embed(&self, chips: &[RgbView<'_>]) -> Result<Vec<Vec<f32>>> {
        let batch = self.fixed_batch.unwrap_or(ONNX_MAX_BATCH).max(1);
        let mut out = Vec::with_capacity(chips.len());
        for part in chips.chunks(batch) {
            let vectors = self.run(part)?;
            if vectors.iter().any(|v| v.len() != self.space.dim) {
                bail!(
                    "{}: the model returned vectors of another length than {}",
                    self.model.path().display(),
                    self.space.dim
                );
            }
            out.extend(vectors);
        }
        Ok(out)
    }

    fn runs_on(&self) -> String {
        format!("ONNX Runtime on {}", self.model.runs_on())
    }
}
