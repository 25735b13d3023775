//! kao's neural networks: each read and checked once from its model file, then run in
//! burn 0.21 (generic over burn's `Backend`; feature `cuda` for NVIDIA GPUs) or, on the
//! CPU, by kao's own kernels ([`NativeResNet`], [`NativeBlazeFace`], on the `kao-kernels`
//! crate), which [`Embedder`] and [`FaceDetector`] pick for [`Device::cpu`]. The native
//! executors choose their [`CpuLevel`] (`scalar`, `avx2`, `avx512`) once, at load: the
//! one `KAO_CPU` names, or the widest this CPU has. burn-flex spent most of its
//! time outside its matrix products on these small networks (depthwise convolutions,
//! element-wise passes, fresh allocations); the native executors are 1.5–4× faster
//! (docs/benchmarks.md) and are held to the same golden outputs.
//!
//! * [`resnet`]: dlib's face-recognition ResNet (128-d embeddings), weights read from
//!   `dlib_face_recognition_resnet_model_v1.dat` through `kao_dlib::dat`.
//! * [`layers`]: dlib-style building blocks shared with the detectors.
//! * [`Embedder`]: a backend-erased embedder for binaries (`Embedder::load(path, Device)`).
//! * [`blazeface`]: MediaPipe BlazeFace, built from the `.tflite` graph.
//! * [`mmod`]: dlib's MMOD face-detector CNN (`mmod_human_face_detector.dat`).
//! * [`FaceDetector`]: a backend-erased face detector for binaries (BlazeFace or MMOD,
//!   with `kao_detector`'s pre- and post-processing).
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
compile_error!("kao-nn needs at least one backend feature: flex, ndarray, candle or cuda");

pub mod blazeface;
pub mod detector;
pub mod layers;
pub mod mmod;
pub mod resnet;

use std::path::Path;

use kao_dlib::dat::{DatError, ResnetModel};
use kao_dlib::image::RgbView;

pub use blazeface::{BlazeFaceError, BlazeFaceNet, NativeBlazeFace};
pub use detector::{DetectError, Face, FaceDetector, Range};
pub use kao_kernels::{CpuLevel, CpuLevelError};
pub use mmod::MmodNet;
pub use resnet::{EMBEDDING_LEN, INPUT_SIZE, NativeResNet, ResNet, Stages};

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

/// Where an [`Embedder`] runs: which compiled-in backend, and for CUDA which GPU.
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

/// The ResNet on one of the compiled-in backends, or on the native CPU kernels.
#[derive(Debug, Clone)]
enum Net {
    Native(Box<NativeResNet>),
    #[cfg(feature = "flex")]
    Flex(Box<ResNet<FlexBackend>>),
    #[cfg(feature = "ndarray")]
    NdArray(Box<ResNet<NdArrayBackend>>),
    #[cfg(feature = "candle")]
    Candle(Box<ResNet<CandleBackend>>),
    #[cfg(feature = "cuda")]
    Cuda(Box<ResNet<CudaBackend>>),
}

/// [`NativeResNet::embed`] with the two halves of the batch on rayon's threads (one
/// forward pass runs on one thread; see `resnet/native.rs`).
fn embed_halves(
    net: &NativeResNet,
    chips: &[RgbView<'_>],
) -> Result<Vec<[f32; EMBEDDING_LEN]>, Error> {
    // Sizes first, so an error names the chip's index in the whole batch.
    resnet::check_sizes(chips)?;
    if chips.len() < 2 {
        return net.embed(chips);
    }
    let (a, b) = chips.split_at(chips.len() / 2);
    let (a, b) = rayon::join(|| net.embed(a), || net.embed(b));
    let mut out = a?;
    out.extend(b?);
    Ok(out)
}

/// The flattened `[N, 128]` embeddings of `chips` from the burn network.
fn embed_on_burn<B: burn_tensor::backend::Backend>(
    net: &ResNet<B>,
    chips: &[RgbView<'_>],
) -> Result<Vec<f32>, Error> {
    let y = net.forward(net.input(chips)?);
    Ok(y.into_data()
        .into_vec()
        .expect("the network's output is f32"))
}

/// dlib's face embedder on a chosen [`Device`]: 150×150 aligned chips in, 128-d
/// embeddings out (dlib's raw fc output, not normalised; compare by Euclidean distance,
/// same person below 0.6).
#[derive(Debug, Clone)]
pub struct Embedder {
    net: Net,
    device: Device,
}

impl Embedder {
    /// Chips per forward pass; larger batches are split (bounds memory, ~0.7 MB per chip).
    pub const MAX_BATCH: usize = 32;

    /// Loads `dlib_face_recognition_resnet_model_v1.dat` onto `device`.
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Self, Error> {
        Self::from_model(&ResnetModel::load(path)?, device)
    }

    /// Builds the embedder from an already parsed model. On the default CPU device
    /// ([`Device::cpu`]) the network runs on [`NativeResNet`], elsewhere on burn.
    pub fn from_model(model: &ResnetModel, device: Device) -> Result<Self, Error> {
        Self::build(model, device, false)
    }

    /// [`Embedder::from_model`] on the CPU with [`NativeResNet`]'s kernels at `level`
    /// (rather than the level `KAO_CPU` names or the widest): for tests that run every
    /// level side by side.
    #[cfg(feature = "flex")]
    pub fn from_model_at(model: &ResnetModel, level: CpuLevel) -> Result<Self, Error> {
        Ok(Self {
            net: Net::Native(Box::new(NativeResNet::from_model_at(model, level)?)),
            device: Device::Flex,
        })
    }

    /// [`Embedder::load`] with the network on burn on every device (the CPU too), to
    /// compare the two executors.
    pub fn load_on_burn(path: impl AsRef<Path>, device: Device) -> Result<Self, Error> {
        Self::build(&ResnetModel::load(path)?, device, true)
    }

    fn build(model: &ResnetModel, device: Device, burn: bool) -> Result<Self, Error> {
        let net = match device {
            _ if !burn && device.runs_native() => {
                Net::Native(Box::new(NativeResNet::from_model(model)?))
            }
            #[cfg(feature = "flex")]
            Device::Flex => Net::Flex(Box::new(ResNet::from_model(model, &Default::default())?)),
            #[cfg(feature = "ndarray")]
            Device::NdArray => {
                Net::NdArray(Box::new(ResNet::from_model(model, &Default::default())?))
            }
            #[cfg(feature = "candle")]
            Device::Candle => {
                Net::Candle(Box::new(ResNet::from_model(model, &Default::default())?))
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(index) => Net::Cuda(Box::new(ResNet::from_model(
                model,
                &burn_cuda::CudaDevice { index },
            )?)),
        };
        Ok(Self { net, device })
    }

    /// The device this embedder runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Embeds a batch of any size of 150×150 RGB chips (as made by
    /// `kao_dlib::chip::get_face_chip`), in order.
    pub fn embed(&self, chips: &[RgbView<'_>]) -> Result<Vec<[f32; EMBEDDING_LEN]>, Error> {
        let mut out = Vec::with_capacity(chips.len());
        for batch in chips.chunks(Self::MAX_BATCH) {
            let values = match &self.net {
                Net::Native(net) => {
                    out.extend(embed_halves(net, batch)?);
                    continue;
                }
                #[cfg(feature = "flex")]
                Net::Flex(net) => embed_on_burn(net, batch)?,
                #[cfg(feature = "ndarray")]
                Net::NdArray(net) => embed_on_burn(net, batch)?,
                #[cfg(feature = "candle")]
                Net::Candle(net) => embed_on_burn(net, batch)?,
                #[cfg(feature = "cuda")]
                Net::Cuda(net) => embed_on_burn(net, batch)?,
            };
            out.extend(values.chunks_exact(EMBEDDING_LEN).map(|e| {
                let mut v = [0f32; EMBEDDING_LEN];
                v.copy_from_slice(e);
                v
            }));
        }
        Ok(out)
    }
}
