//! kao's face detectors and embedders, one module per model: its graph or layer spec, its
//! pre- and post-processing, and its executors. kao's own networks are read and checked once
//! from their model files (`kao-model-files`), then run in burn 0.21 (generic over burn's
//! `Backend`; feature `cuda` for NVIDIA GPUs) or, on the CPU, by kao's own kernels
//! ([`NativeResNet`], [`NativeBlazeFace`], on the `kao-kernels` crate), which
//! [`ResNetEmbedder`] and [`FaceDetector`] pick for [`Device::cpu`]. The native
//! executors choose their [`CpuLevel`] (`scalar`, `avx2`, `avx512`) once, at load: the
//! one `KAO_CPU` names, or the widest this CPU has. burn-flex spent most of its
//! time outside its matrix products on these small networks (depthwise convolutions,
//! element-wise passes, fresh allocations); the native executors are 1.5–4× faster
//! (docs/benchmarks.md) and are held to the same golden outputs.
//!
//! * [`detector`]: the [`Detector`] trait, the registry of detectors by name
//!   ([`DetectorKind`], [`detector::load`]) and [`FaceDetector`], BlazeFace or MMOD on a
//!   chosen [`Device`] with its pre- and post-processing.
//! * [`embedder`]: the [`Embedder`] trait and the registry of embedders by name
//!   ([`EmbedderSpec`], [`embedder::load`]).
//! * [`blazeface`]: MediaPipe BlazeFace, built from the `.tflite` graph; run on burn or
//!   natively; its letterbox, anchors, decoding and weighted NMS ([`blazeface::processing`]).
//! * [`mmod`]: dlib's MMOD face-detector CNN (`mmod_human_face_detector.dat`); its tiled
//!   pyramid, score-map decoding and NMS ([`mmod::processing`]).
//! * [`resnet`]: dlib's face-recognition ResNet (128-d embeddings), weights read from
//!   `dlib_face_recognition_resnet_model_v1.dat` through `kao_model_files::dat`;
//!   [`ResNetEmbedder`] picks its executor for a [`Device`], [`DlibResnet`] is the registry's
//!   embedder.
//! * [`shape_predictor`]: dlib's 5-point landmark cascade, which aligns every face whichever
//!   detector found it.
//! * [`onnx`]: models a user brings, on ONNX Runtime: the runtime, [`onnx::Yunet`] (a
//!   detector) and [`onnx::OnnxEmbedder`] (FACE01's JAPANESE FACE V1 or any embedder).
//! * [`layers`]: dlib-style building blocks shared by the burn networks.
//!
//! Backends (cargo features): `flex` (default; burn's pure-Rust CPU backend on the `gemm`
//! crate) with `avx512` (default; AVX-512 gemm kernels, picked at run time), `ndarray` and
//! `candle` (CPU, for comparison; burn deprecates them), `cuda` (burn-cuda/CubeCL;
//! compiles without the CUDA toolkit, needs the driver and NVRTC at run time).
//!
//! The burn backends, measured with `examples/bench.rs` before the native ResNet existed
//! (2 threads, median wall ms per face; in brackets the process CPU ms per face). The
//! 2-core build machine was shared with other builds (load about 2), so wall times are
//! upper bounds; CPU time is the steadier figure, and an idle machine should give roughly
//! CPU/2 at batch 32.
//!
//! | backend (burn 0.21) | batch 1 | batch 32 |
//! |---|---|---|
//! | flex + avx512 (default) | 23–36 (28–36) | 9.5–11.7 (15–18) |
//! | flex, AVX2 | 26–33 (31–39) | 12.5 (20) |
//! | candle | 45 (56) | 20 (34) |
//! | ndarray (matrixmultiply) | 66 (110) | 36 (68) |
//! | cuda, H200, autotune | 3.8 | 0.39 |
//!
//! For comparison, a hand-written im2col + `gemm` port measured 5.1 ms per face at batch
//! 32 on an idle machine (measured in an earlier session; git history). burn-flex is slower at batch 1
//! because it parallelises a convolution over (image, 512-pixel tile) pairs, so the 17×17
//! and smaller layers of a single image run on one thread.
//!
//! Accuracy: with flex every stage matches dlib within 1e-4 (the tests); ndarray and
//! candle gave the same embedding as flex within 3e-7. CUDA was 3.5e-4 (max |Δ|) from
//! flex: burn's autotune may pick tensor-core kernels, which run f32 as TF32. That is
//! inside the ~1e-3 that `models.md` §6 allows on a GPU.

// Every SIMD and unsafe line is in kao-kernels.
#![forbid(unsafe_code)]

#[cfg(not(any(
    feature = "flex",
    feature = "ndarray",
    feature = "candle",
    feature = "cuda"
)))]
compile_error!("kao-networks needs at least one backend feature: flex, ndarray, candle or cuda");

pub mod blazeface;
pub mod detector;
pub mod embedder;
pub mod layers;
pub mod mmod;
pub mod onnx;
pub mod resnet;
pub mod shape_predictor;

use kao_model_files::dat::DatError;

pub use blazeface::{BlazeFaceError, BlazeFaceNet, NativeBlazeFace};
pub use detector::{
    DetectError, Detection, Detector, DetectorError, DetectorKind, Face, FaceDetector, Range,
};
pub use embedder::{Embedder, EmbedderKind, EmbedderSpec};
pub use kao_kernels::{CpuLevel, CpuLevelError};
pub use mmod::MmodNet;
pub use resnet::{
    DlibResnet, EMBEDDING_LEN, INPUT_SIZE, NativeResNet, ResNet, ResNetEmbedder, Stages,
};
pub use shape_predictor::ShapePredictor;

/// burn's flex CPU backend (f32).
#[cfg(feature = "flex")]
pub type FlexBackend = burn_flex::Flex<f32>;
/// burn's ndarray CPU backend (f32).
#[cfg(feature = "ndarray")]
pub type NdArrayBackend = burn_ndarray::NdArray<f32>;
/// burn's candle CPU backend (f32).
#[cfg(feature = "candle")]
#[allow(deprecated)] // burn 0.21 marks burn-candle deprecated (it is gone in 0.22)
pub type CandleBackend = burn_candle::Candle<f32>;
/// burn's CUDA backend (f32).
#[cfg(feature = "cuda")]
pub type CudaBackend = burn_cuda::Cuda<f32>;

/// The default CPU backend: flex when enabled, else ndarray, else candle.
#[cfg(feature = "flex")]
pub type CpuBackend = FlexBackend;
/// The default CPU backend: flex when enabled, else ndarray, else candle.
#[cfg(all(feature = "ndarray", not(feature = "flex")))]
pub type CpuBackend = NdArrayBackend;
/// The default CPU backend: flex when enabled, else ndarray, else candle.
#[cfg(all(feature = "candle", not(any(feature = "flex", feature = "ndarray"))))]
pub type CpuBackend = CandleBackend;

/// Errors from loading a network or running it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model file could not be read or parsed.
    #[error(transparent)]
    Dat(#[from] DatError),
    /// A layer record (or the input record, `index` `None`) is not the one the
    /// architecture expects at this position.
    #[error("model layer {}: expected {expected}, found {found}", index.map_or("input".to_string(), |i| i.to_string()))]
    Layout {
        /// Position in the model's layer list (`None`: the input record).
        index: Option<usize>,
        /// What the architecture needs there.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A layer record's parameter count does not match its declared shape.
    #[error("{what}: expected {expected} values, found {found}")]
    Params {
        /// Which parameter array.
        what: &'static str,
        /// Count implied by the record's shape.
        expected: usize,
        /// Count stored.
        found: usize,
    },
    /// A layer option these blocks do not implement.
    #[error("unsupported layer: {0}")]
    Unsupported(String),
    /// An error in the layer record at `index` of the model's layer list.
    #[error("model layer {index}: {source}")]
    AtLayer {
        /// Position in the model's layer list.
        index: usize,
        /// The error.
        source: Box<Error>,
    },
    /// `KAO_CPU` names no CPU level, or one this CPU cannot run.
    #[error(transparent)]
    Cpu(#[from] CpuLevelError),
    /// An input chip has the wrong size.
    #[error("image {index} is {width}x{height}; the network needs {INPUT_SIZE}x{INPUT_SIZE}")]
    ImageSize {
        /// Position of the image in the batch.
        index: usize,
        /// Its width.
        width: usize,
        /// Its height.
        height: usize,
    },
}

impl Error {
    /// Attaches the position of the layer record this error comes from.
    fn at(self, index: usize) -> Self {
        Error::AtLayer {
            index,
            source: Box::new(self),
        }
    }
}

/// Where a network runs: which compiled-in backend, and for CUDA which GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// burn-flex on the CPU (rayon threads).
    #[cfg(feature = "flex")]
    Flex,
    /// burn-ndarray on the CPU.
    #[cfg(feature = "ndarray")]
    NdArray,
    /// burn-candle on the CPU.
    #[cfg(feature = "candle")]
    Candle,
    /// burn-cuda on the GPU with this index.
    #[cfg(feature = "cuda")]
    Cuda(usize),
}

impl Device {
    /// The default CPU backend (see [`CpuBackend`]).
    #[cfg(any(feature = "flex", feature = "ndarray", feature = "candle"))]
    pub fn cpu() -> Self {
        #[cfg(feature = "flex")]
        return Device::Flex;
        #[cfg(all(feature = "ndarray", not(feature = "flex")))]
        return Device::NdArray;
        #[cfg(all(feature = "candle", not(any(feature = "flex", feature = "ndarray"))))]
        return Device::Candle;
    }

    /// Whether kao's own CPU kernels stand in for burn here: on burn-flex, the default CPU
    /// backend ([`NativeBlazeFace`], [`NativeResNet`]).
    pub fn runs_native(self) -> bool {
        #[cfg(feature = "flex")]
        return matches!(self, Device::Flex);
        #[cfg(not(feature = "flex"))]
        false
    }

    /// Every backend this build has (CUDA as GPU 0), for benchmarks that compare them.
    pub fn compiled() -> Vec<Device> {
        vec![
            #[cfg(feature = "flex")]
            Device::Flex,
            #[cfg(feature = "ndarray")]
            Device::NdArray,
            #[cfg(feature = "candle")]
            Device::Candle,
            #[cfg(feature = "cuda")]
            Device::Cuda(0),
        ]
    }
}

/// `cpu` (the default CPU backend) or `cuda` / `cuda:N` (GPU N, in builds with the `cuda`
/// feature), as the binaries' `--device` takes it.
impl std::str::FromStr for Device {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            #[cfg(any(feature = "flex", feature = "ndarray", feature = "candle"))]
            "cpu" => Ok(Device::cpu()),
            #[cfg(feature = "cuda")]
            "cuda" => Ok(Device::Cuda(0)),
            #[cfg(feature = "cuda")]
            gpu if gpu.starts_with("cuda:") => gpu[5..]
                .parse()
                .map(Device::Cuda)
                .map_err(|_| format!("`{gpu}`: expected cuda:N with a GPU index N")),
            #[cfg(not(feature = "cuda"))]
            gpu if gpu.starts_with("cuda") => {
                Err("this build has no CUDA support: rebuild with `--features cuda`".into())
            }
            other => Err(format!("unknown device `{other}` (cpu, cuda or cuda:N)")),
        }
    }
}
