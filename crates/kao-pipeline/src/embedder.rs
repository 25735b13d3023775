//! Face embedders as a choice: dlib's ResNet (native), FACE01's JAPANESE FACE V1 and any ONNX
//! face embedder a user brings.
//!
//! An [`Embedder`] knows its [`EmbeddingSpace`] (name, dimension, metric, model sha256), the
//! geometry of the aligned chip it reads, and embeds a batch of chips. [`EmbedderSpec`] names
//! one (`dlib`, `face01-v1:PATH`, `onnx:PATH` with its preprocessing) and [`load`] turns a
//! name into a running embedder, one copy per process. Adding a model is one implementation
//! of [`Embedder`] plus one arm in [`EmbedderKind`] and in the registry, `load_new`
//! (docs/architecture.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use kao_dlib::RgbView;
use kao_nn::Device;
use kao_record::{EmbeddingSpace, Metric};

/// The aligned chip an embedder reads: dlib's 5-point alignment at this side and padding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChipGeometry {
    /// Side of the square chip, in pixels.
    pub size: usize,
    /// Margin around dlib's 5-point template, as a fraction of the face.
    pub padding: f64,
}

/// dlib's ResNet chip: 150 px, padding 0.25.
pub const DLIB_CHIP: ChipGeometry = ChipGeometry {
    size: 150,
    padding: 0.25,
};

/// A face embedder: aligned chips in, one vector per chip out.
pub trait Embedder: Send + Sync {
    /// What its vectors are and how they are compared.
    fn space(&self) -> &EmbeddingSpace;
    /// The chip it reads.
    fn chip(&self) -> ChipGeometry;
    /// Embeds chips of [`Embedder::chip`]'s size, in order: one vector of `space().dim` each.
    fn embed(&self, chips: &[RgbView<'_>]) -> Result<Vec<Vec<f32>>>;
    /// Where it runs, for the log (`native CPU kernels`, `ONNX Runtime on CPU`).
    fn runs_on(&self) -> String;
}

/// Which embedder, by name.
#[derive(Clone, Debug, PartialEq)]
pub enum EmbedderKind {
    /// dlib's ResNet (kao's native port; `dlib_face_recognition_resnet_model_v1.dat`).
    Dlib,
    /// FACE01's JAPANESE FACE V1 (an ONNX file the user brings), with its fixed contract.
    Face01V1(PathBuf),
    /// Any ONNX face embedder, with the preprocessing the options give.
    Onnx(PathBuf),
}

impl std::str::FromStr for EmbedderKind {
    type Err = String;

    /// `dlib`, `face01-v1:PATH` or `onnx:PATH`.
    fn from_str(s: &str) -> Result<Self, String> {
        let path = |p: &str, kind: &str| {
            if p.is_empty() {
                Err(format!(
                    "`{kind}:` needs the model file's path, as {kind}:PATH"
                ))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        match s.split_once(':') {
            None if s == "dlib" || s == "dlib-resnet" => Ok(EmbedderKind::Dlib),
            Some(("face01-v1", p)) => path(p, "face01-v1").map(EmbedderKind::Face01V1),
            Some(("onnx", p)) => path(p, "onnx").map(EmbedderKind::Onnx),
            None if s == "face01-v1" || s == "onnx" => {
                Err(format!("`{s}` needs the model file's path, as {s}:PATH"))
            }
            _ => Err(format!(
                "unknown embedder `{s}` (dlib, face01-v1:PATH or onnx:PATH)"
            )),
        }
    }
}

/// The order of the colour channels a model reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Channels {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV's order).
    Bgr,
}

/// How an ONNX embedder's input is made from a chip: each channel value `v` (0–255) becomes
/// `(v · pixel_scale − mean[c]) / std[c]`, with `c` in the model's channel order.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocessing {
    /// Side of the chip and of the model's input (`None`: the graph's static size).
    pub input_size: Option<usize>,
    /// Margin around dlib's 5-point template.
    pub chip_padding: f64,
    /// Factor applied to 0–255 values first.
    pub pixel_scale: f32,
    /// Subtracted per channel, in the model's channel order.
    pub mean: [f32; 3],
    /// Divided by per channel, in the model's channel order.
    pub std: [f32; 3],
    /// The model's channel order.
    pub channels: Channels,
    /// How its vectors are compared.
    pub metric: Metric,
    /// Scale every vector to unit length.
    pub l2_normalize: bool,
}

impl Preprocessing {
    /// A generic ONNX embedder's defaults: padding 0.1, values /255, no mean or std, RGB,
    /// cosine.
    pub fn onnx_defaults() -> Preprocessing {
        Preprocessing {
            input_size: None,
            chip_padding: 0.1,
            pixel_scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            channels: Channels::Rgb,
            metric: Metric::Cosine,
            l2_normalize: false,
        }
    }

    /// JAPANESE FACE V1's contract (FACE01's `api.py`): a 224 px chip at padding 0.1, RGB/255
    /// with ImageNet's mean and std, 512-d, compared by cosine.
    pub fn face01_v1() -> Preprocessing {
        Preprocessing {
            input_size: Some(224),
            chip_padding: 0.1,
            pixel_scale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            channels: Channels::Rgb,
            metric: Metric::Cosine,
            l2_normalize: false,
        }
    }

    /// One line naming every setting (part of the embedding space's identity).
    pub fn describe(&self, size: usize) -> String {
        let list = |v: &[f32; 3]| v.map(|x| format!("{x}")).join(",");
        format!(
            "chip {size} padding {}; {} x*{} mean {} std {}{}",
            self.chip_padding,
            match self.channels {
                Channels::Rgb => "rgb",
                Channels::Bgr => "bgr",
            },
            self.pixel_scale,
            list(&self.mean),
            list(&self.std),
            if self.l2_normalize {
                "; l2-normalized"
            } else {
                ""
            },
        )
    }
}

/// A chosen embedder with its options.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedderSpec {
    /// Which embedder.
    pub kind: EmbedderKind,
    /// The preprocessing of ONNX embedders (ignored for dlib).
    pub preprocessing: Preprocessing,
}

impl Default for EmbedderSpec {
    /// dlib's ResNet.
    fn default() -> Self {
        EmbedderSpec {
            kind: EmbedderKind::Dlib,
            preprocessing: Preprocessing::onnx_defaults(),
        }
    }
}

impl EmbedderSpec {
    /// A short name for messages: `dlib-resnet`, `face01-v1 JAPANESE_FACE_V1.onnx`.
    pub fn name(&self) -> String {
        let file = |p: &Path| {
            p.file_name()
                .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
        };
        match &self.kind {
            EmbedderKind::Dlib => "dlib-resnet".into(),
            EmbedderKind::Face01V1(p) => format!("face01-v1 {}", file(p)),
            EmbedderKind::Onnx(p) => format!("onnx {}", file(p)),
        }
    }

    /// True for dlib's ResNet.
    pub fn is_dlib(&self) -> bool {
        self.kind == EmbedderKind::Dlib
    }

    /// The [`similar`](crate::similar) curve of FACE01 for this embedder, if it has one.
    pub fn curve(&self) -> Option<crate::similar::Curve> {
        match self.kind {
            EmbedderKind::Dlib => Some(crate::similar::Curve::Dlib),
            EmbedderKind::Face01V1(_) => Some(crate::similar::Curve::JapaneseFaceV1),
            EmbedderKind::Onnx(_) => None,
        }
    }

    /// The embedding space this spec produces. dlib's is known without loading anything; an
    /// ONNX model is loaded (on the CPU) to read its input size and dimension.
    pub fn space(&self) -> Result<EmbeddingSpace> {
        match self.kind {
            EmbedderKind::Dlib => Ok(EmbeddingSpace::dlib_resnet()),
            _ => Ok(load(self, Device::cpu())?.space().clone()),
        }
    }
}

/// The default `--threshold` of an embedding space: dlib's 0.48 (docs/matching.md),
/// JAPANESE FACE V1's FACE01 default (similar_percentage 90, cosine ≥ 0.4036);
/// `None` for other models, which have no calibrated threshold.
pub fn default_threshold(space: &EmbeddingSpace) -> Option<f32> {
    match space.embedder.as_str() {
        "dlib-resnet" => Some(crate::identify::DEFAULT_THRESHOLD),
        "face01-v1" => crate::similar::Curve::JapaneseFaceV1.threshold(90.0).ok(),
        _ => None,
    }
}

/// The default largest embedding distance between consecutive faces of a track: 0.6 for
/// dlib (its same-person bound), 0.75 for cosine spaces (cosine similarity ≥ 0.25: a track
/// also needs overlapping boxes, so the bound only has to separate different people);
/// `None` for other Euclidean spaces, whose scale kao cannot know.
pub fn default_link_distance(space: &EmbeddingSpace) -> Option<f32> {
    match (space.embedder.as_str(), space.metric) {
        ("dlib-resnet", _) => Some(0.6),
        (_, Metric::Cosine) => Some(0.75),
        _ => None,
    }
}

/// Embedders this process has loaded, so that enrolling references and embedding faces
/// share one copy of the model (kao-extract would otherwise load it up to three times).
type Loaded = Vec<((EmbedderSpec, Device), Arc<dyn Embedder>)>;
static LOADED: std::sync::Mutex<Loaded> = std::sync::Mutex::new(Vec::new());

/// The embedder `spec` names, on `device`: loaded on first use, then shared.
pub fn load(spec: &EmbedderSpec, device: Device) -> Result<Arc<dyn Embedder>> {
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = (spec.clone(), device);
    if let Some((_, embedder)) = loaded.iter().find(|(k, _)| *k == key) {
        return Ok(embedder.clone());
    }
    let embedder = load_new(spec, device)?;
    loaded.push((key, embedder.clone()));
    Ok(embedder)
}

/// Loads the embedder `spec` names, on `device`. The registry: one arm per embedder.
fn load_new(spec: &EmbedderSpec, device: Device) -> Result<Arc<dyn Embedder>> {
    Ok(match &spec.kind {
        EmbedderKind::Dlib => Arc::new(DlibResnet::load(device)?),
        EmbedderKind::Face01V1(path) => Arc::new(OnnxEmbedder::load(
            path,
            "face01-v1",
            &Preprocessing::face01_v1(),
            device,
        )?),
        EmbedderKind::Onnx(path) => Arc::new(OnnxEmbedder::load(
            path,
            "onnx",
            &spec.preprocessing,
            device,
        )?),
    })
}

/// dlib's ResNet on kao's native CPU kernels or burn.
pub struct DlibResnet {
    net: kao_nn::Embedder,
    space: EmbeddingSpace,
}

impl DlibResnet {
    /// Loads `dlib_face_recognition_resnet_model_v1.dat` from the model folder.
    pub fn load(device: Device) -> Result<DlibResnet> {
        let model = kao_models::locate("dlib-resnet")?;
        let net = kao_nn::Embedder::load(&model.path, device)
            .with_context(|| format!("loading {}", model.path.display()))?;
        Ok(DlibResnet {
            net,
            space: EmbeddingSpace::dlib_resnet(),
        })
    }
}

impl Embedder for DlibResnet {
    fn space(&self) -> &EmbeddingSpace {
        &self.space
    }

    fn chip(&self) -> ChipGeometry {
        DLIB_CHIP
    }

    fn embed(&self, chips: &[RgbView<'_>]) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .net
            .embed(chips)?
            .into_iter()
            .map(|v| v.to_vec())
            .collect())
    }

    fn runs_on(&self) -> String {
        if self.net.device().runs_native() {
            "kao's native CPU kernels".into()
        } else {
            format!("burn on {:?}", self.net.device())
        }
    }
}

/// `input [N, 3, 112, 112] float32, ...`: each tensor of a graph's input or output list.
pub(crate) fn describe_all(tensors: &[kao_onnx::TensorInfo]) -> String {
    tensors
        .iter()
        .map(kao_onnx::TensorInfo::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Chips per ONNX run when the graph's batch is open.
const ONNX_MAX_BATCH: usize = 32;

/// A user's ONNX embedder: one image input `[N, 3, S, S]` (or `[N, S, S, 3]`), one output
/// `[N, D]`, run by ONNX Runtime.
pub struct OnnxEmbedder {
    model: kao_onnx::Model,
    preprocessing: Preprocessing,
    size: usize,
    /// Channels last (`[N, S, S, 3]`).
    nhwc: bool,
    /// The graph's fixed batch size, if it has one.
    fixed_batch: Option<usize>,
    space: EmbeddingSpace,
}

/// The ONNX Runtime device for kao's device.
pub(crate) fn onnx_device(device: Device) -> kao_onnx::Device {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(index) => kao_onnx::Device::Cuda(index),
        #[allow(unreachable_patterns)]
        _ => kao_onnx::Device::Cpu,
    }
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
        let model = kao_onnx::Model::load(path, onnx_device(device), threads)?;
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
        let sha256 = kao_models::sha256_file(path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_model_per_spec_and_device_is_loaded() {
        let spec = EmbedderSpec::default();
        let first = load(&spec, Device::cpu()).unwrap();
        let again = load(&spec, Device::cpu()).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
    }

    #[test]
    fn embedder_names_parse() {
        assert_eq!("dlib".parse(), Ok(EmbedderKind::Dlib));
        assert_eq!(
            "face01-v1:/m/JAPANESE_FACE_V1.onnx".parse(),
            Ok(EmbedderKind::Face01V1("/m/JAPANESE_FACE_V1.onnx".into()))
        );
        assert_eq!(
            "onnx:a:b.onnx".parse(),
            Ok(EmbedderKind::Onnx("a:b.onnx".into()))
        );
        for bad in ["onnx", "onnx:", "face01-v1", "arcface:x.onnx", "DLIB"] {
            let e = bad.parse::<EmbedderKind>().unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn preprocessing_is_described_in_one_line() {
        let face01 = Preprocessing::face01_v1().describe(224);
        assert_eq!(
            face01,
            "chip 224 padding 0.1; rgb x*0.003921569 mean 0.485,0.456,0.406 std 0.229,0.224,0.225"
        );
        let mut other = Preprocessing::face01_v1();
        other.channels = Channels::Bgr;
        assert_ne!(other.describe(224), face01);
    }

    #[test]
    fn thresholds_by_space() {
        let dlib = EmbeddingSpace::dlib_resnet();
        assert_eq!(default_threshold(&dlib), Some(0.48));
        assert_eq!(default_link_distance(&dlib), Some(0.6));
        let mut face01 = dlib.clone();
        face01.embedder = "face01-v1".into();
        face01.metric = Metric::Cosine;
        let t = default_threshold(&face01).unwrap();
        assert!((t - (1.0 - 0.4036)).abs() < 1e-3, "{t}");
        let mut onnx = face01.clone();
        onnx.embedder = "onnx".into();
        assert_eq!(default_threshold(&onnx), None);
        assert_eq!(default_link_distance(&onnx), Some(0.75));
        onnx.metric = Metric::Euclidean;
        assert_eq!(default_link_distance(&onnx), None);
    }
}
