//! Face embedders as a choice: dlib's ResNet ([`crate::resnet`]), FACE01's JAPANESE FACE V1 and
//! any ONNX face embedder a user brings ([`crate::onnx`]).
//!
//! An [`Embedder`] knows its [`EmbeddingSpace`] (name, dimension, metric, model sha256), the
//! geometry of the aligned chip it reads, and embeds a batch of chips. [`EmbedderSpec`] names
//! one (`dlib`, `face01-v1:PATH`, `onnx:PATH` with its preprocessing) and [`load`] turns a
//! name into a running embedder, one copy per process. Adding a model is one implementation
//! of [`Embedder`] plus one arm in [`EmbedderKind`] and in the registry, `load_new`
//! (docs/architecture.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use kao_image::RgbView;
use kao_record::{EmbeddingSpace, Metric};

use crate::Device;
use crate::onnx::OnnxEmbedder;
use crate::resnet::DlibResnet;

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

    /// The embedding space this spec produces. dlib's is known without loading anything; an
    /// ONNX model is loaded (on the CPU) to read its input size and dimension.
    pub fn space(&self) -> Result<EmbeddingSpace> {
        match self.kind {
            EmbedderKind::Dlib => Ok(EmbeddingSpace::dlib_resnet()),
            _ => Ok(load(self, Device::cpu())?.space().clone()),
        }
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
}
