//! [`FaceDetector`]: BlazeFace or dlib's MMOD on a chosen [`Device`], frames in, faces
//! in frame pixels out (for binaries; no backend type parameter).
//!
//! Pre- and post-processing are [`blazeface::processing`](crate::blazeface::processing)'s
//! and [`mmod::processing`](crate::mmod::processing)'s: the letterbox, anchors and weighted
//! NMS for BlazeFace; the tiled pyramid, score-map decoding, dlib's NMS and the
//! `pyramid_up` / `rect_down` upsampling path for MMOD.

use std::path::Path;

use kao_image::{RgbImage, RgbView};
use kao_model_files::dat::{DatError, InputRgbPyramid, MmodModel};

#[cfg(feature = "candle")]
use crate::CandleBackend;
#[cfg(feature = "cuda")]
use crate::CudaBackend;
#[cfg(feature = "flex")]
use crate::FlexBackend;
#[cfg(feature = "ndarray")]
use crate::NdArrayBackend;
use crate::blazeface::processing::NUM_KEYPOINTS;
use crate::blazeface::{BlazeFace, BlazeFaceConfig, BlazeFaceError, BlazeFaceNet, NativeBlazeFace};
use crate::mmod::{MmodDecoder, MmodInput, MmodNet, pyramid_up, rect_down};
use crate::{CpuLevel, Device};

/// Pre- or post-processing error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectorError {
    /// The frame has no pixels.
    #[error("empty frame ({width}x{height})")]
    EmptyFrame {
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
    },
    /// The frame is larger than the MMOD pipeline accepts.
    #[error(
        "frame {width}x{height} is too large for the MMOD detector ({pixels} pixels, limit {max}); \
         downscale it first (e.g. --detect-width)"
    )]
    FrameTooLarge {
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
        /// Pixels the pipeline would process (after upsampling, if any).
        pixels: usize,
        /// The limit, [`crate::mmod::MAX_PIXELS`].
        max: usize,
    },
    /// A network output has the wrong number of values.
    #[error("{what}: expected {expected} values, got {got}")]
    OutputSize {
        /// Which output.
        what: &'static str,
        /// Expected number of values.
        expected: usize,
        /// Actual number of values.
        got: usize,
    },
    /// The MMOD model has a layout this crate does not handle.
    #[error("unsupported MMOD model: {0}")]
    UnsupportedModel(String),
}
/// Errors from loading or running a [`FaceDetector`].
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The BlazeFace model could not be loaded, or its graph is not supported.
    #[error("BlazeFace: {0}")]
    BlazeFace(#[from] BlazeFaceError),
    /// The MMOD model file could not be read or parsed.
    #[error("MMOD model: {0}")]
    Dat(#[from] DatError),
    /// The MMOD model's layers are not the face detector's.
    #[error("MMOD network: {0}")]
    Net(#[from] crate::Error),
    /// Pre- or post-processing refused the frame or the model (e.g. an MMOD frame
    /// above [`crate::mmod::MAX_PIXELS`]).
    #[error(transparent)]
    Frame(#[from] DetectorError),
    /// `KAO_CPU` names no CPU level, or one this CPU cannot run.
    #[error(transparent)]
    Cpu(#[from] kao_kernels::CpuLevelError),
    /// The `.tflite` model's input size does not match the chosen BlazeFace variant.
    #[error(
        "the model's input is {found:?}, the {range:?} configuration needs {expected}x{expected}"
    )]
    InputSize {
        /// The chosen variant.
        range: Range,
        /// Its input side.
        expected: usize,
        /// The model's `[height, width]`.
        found: [usize; 2],
    },
}

/// Which BlazeFace model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `face_detection_short_range.tflite`: 128×128 input, faces within ~2 m.
    Short,
    /// `face_detection_full_range.tflite`: 192×192 input, smaller faces too.
    Full,
}

/// One detected face in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    /// Detector confidence: BlazeFace's sigmoid score in (0, 1), or MMOD's raw score
    /// (dlib's `confidence`, above 0).
    pub score: f32,
    /// `[left, top, right, bottom]`. BlazeFace: fractional box corners. MMOD: dlib's
    /// inclusive pixel rectangle, the numbers dlib reports.
    pub bbox: [f32; 4],
    /// BlazeFace's 6 keypoints `[x, y]` (left eye, right eye, nose tip, mouth, left and
    /// right tragion); `None` for MMOD.
    pub keypoints: Option<[[f32; 2]; NUM_KEYPOINTS]>,
}

/// Declares an enum holding a network on one of the compiled-in backends.
macro_rules! backend_enum {
    ($name:ident, $net:ident) => {
        #[derive(Debug, Clone)]
        enum $name {
            #[cfg(feature = "flex")]
            Flex($net<FlexBackend>),
            #[cfg(feature = "ndarray")]
            NdArray($net<NdArrayBackend>),
            #[cfg(feature = "candle")]
            Candle($net<CandleBackend>),
            #[cfg(feature = "cuda")]
            Cuda($net<CudaBackend>),
        }
    };
}

backend_enum!(BurnBlazeNets, BlazeFaceNet);
backend_enum!(MmodNets, MmodNet);

/// BlazeFace on burn, or on the CPU with [`NativeBlazeFace`].
#[derive(Debug, Clone)]
enum BlazeNets {
    Burn(BurnBlazeNets),
    Native(NativeBlazeFace),
}

/// Builds `$enum::<backend>($build)` for `$device`, with `$dev` bound to the burn device.
macro_rules! build_on {
    ($device:expr, $enum:ident, |$dev:ident| $build:expr) => {
        match $device {
            #[cfg(feature = "flex")]
            Device::Flex => {
                let $dev = &Default::default();
                $enum::Flex($build)
            }
            #[cfg(feature = "ndarray")]
            Device::NdArray => {
                let $dev = &Default::default();
                $enum::NdArray($build)
            }
            #[cfg(feature = "candle")]
            Device::Candle => {
                let $dev = &Default::default();
                $enum::Candle($build)
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(index) => {
                let $dev = &burn_cuda::CudaDevice { index };
                $enum::Cuda($build)
            }
        }
    };
}

/// Runs `$body` with `$net` bound to the backend-specific network in `$nets`.
macro_rules! on_net {
    ($nets:expr, $enum:ident, $net:ident => $body:expr) => {
        match $nets {
            #[cfg(feature = "flex")]
            $enum::Flex($net) => $body,
            #[cfg(feature = "ndarray")]
            $enum::NdArray($net) => $body,
            #[cfg(feature = "candle")]
            $enum::Candle($net) => $body,
            #[cfg(feature = "cuda")]
            $enum::Cuda($net) => $body,
        }
    };
}

#[derive(Debug, Clone)]
enum Kind {
    BlazeFace {
        net: BlazeNets,
        pipeline: BlazeFace,
    },
    Mmod {
        net: Box<MmodNets>,
        input: InputRgbPyramid,
        decoder: MmodDecoder,
        upsample: u32,
    },
}

/// A face detector on a chosen [`Device`].
#[derive(Debug, Clone)]
pub struct FaceDetector {
    kind: Kind,
    device: Device,
}

impl FaceDetector {
    /// Loads a BlazeFace `.tflite` model (`range` must match the file: 128×128 input for
    /// short range, 192×192 for full range). On the default CPU device ([`Device::cpu`])
    /// the network runs on [`NativeBlazeFace`], elsewhere on burn.
    pub fn blazeface(
        path: impl AsRef<Path>,
        range: Range,
        device: Device,
    ) -> Result<Self, DetectError> {
        let level = if device.runs_native() {
            Some(CpuLevel::from_env()?)
        } else {
            None
        };
        Self::blazeface_on(path, range, device, level)
    }

    /// [`FaceDetector::blazeface`] on the CPU with [`NativeBlazeFace`]'s kernels at
    /// `level` (rather than the level `KAO_CPU` names or the widest): for tests that run
    /// every level side by side.
    #[cfg(feature = "flex")]
    pub fn blazeface_at(
        path: impl AsRef<Path>,
        range: Range,
        level: CpuLevel,
    ) -> Result<Self, DetectError> {
        Self::blazeface_on(path, range, Device::Flex, Some(level))
    }

    /// [`FaceDetector::blazeface`] with the network on burn on every device (the CPU
    /// too), to compare the two executors.
    pub fn blazeface_on_burn(
        path: impl AsRef<Path>,
        range: Range,
        device: Device,
    ) -> Result<Self, DetectError> {
        Self::blazeface_on(path, range, device, None)
    }

    /// BlazeFace on [`NativeBlazeFace`] at `native`'s level if given, else on burn.
    fn blazeface_on(
        path: impl AsRef<Path>,
        range: Range,
        device: Device,
        native: Option<CpuLevel>,
    ) -> Result<Self, DetectError> {
        let model = kao_model_files::tflite::Model::load(path).map_err(BlazeFaceError::from)?;
        let net = if let Some(level) = native {
            BlazeNets::Native(NativeBlazeFace::from_model_at(&model, level)?)
        } else {
            BlazeNets::Burn(build_on!(device, BurnBlazeNets, |dev| {
                BlazeFaceNet::from_model(&model, dev)?
            }))
        };
        let config = match range {
            Range::Short => BlazeFaceConfig::short_range(),
            Range::Full => BlazeFaceConfig::full_range(),
        };
        let found = match &net {
            BlazeNets::Native(n) => n.input_size(),
            BlazeNets::Burn(nets) => on_net!(nets, BurnBlazeNets, n => n.input_size()),
        };
        if found != [config.input_size; 2] {
            return Err(DetectError::InputSize {
                range,
                expected: config.input_size,
                found,
            });
        }
        Ok(Self {
            kind: Kind::BlazeFace {
                net,
                pipeline: BlazeFace::new(config),
            },
            device,
        })
    }

    /// Loads dlib's `mmod_human_face_detector.dat`. With `upsample` N > 0 every frame is
    /// enlarged N times by dlib's `pyramid_up` (about 2× per step, finds faces down to
    /// ~35 px per step) and the boxes mapped back with `rect_down`, as dlib's
    /// `upsample_num_times`. Frames (after upsampling) above
    /// [`crate::mmod::MAX_PIXELS`] are refused.
    ///
    /// The MMOD network runs on burn (on the CPU burn-flex, whose `gemm` picks its own
    /// instructions), not on kao's kernels; on the CPU a wrong `KAO_CPU` is still refused
    /// here, as for the other networks.
    pub fn mmod(
        path: impl AsRef<Path>,
        device: Device,
        upsample: u32,
    ) -> Result<Self, DetectError> {
        if device.runs_native() {
            CpuLevel::from_env()?;
        }
        let model = MmodModel::load(path)?;
        let net = build_on!(device, MmodNets, |dev| MmodNet::from_model(&model, dev)?);
        Ok(Self {
            kind: Kind::Mmod {
                net: Box::new(net),
                input: model.input.clone(),
                decoder: MmodDecoder::new(&model)?,
                upsample,
            },
            device,
        })
    }

    /// The device the network runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Detects the faces in `frame`, best first for MMOD (BlazeFace: in NMS order).
    pub fn detect(&self, frame: &RgbView<'_>) -> Result<Vec<Face>, DetectError> {
        match &self.kind {
            Kind::BlazeFace { net, pipeline } => {
                let (tensor, letterbox) = pipeline.preprocess(frame)?;
                let (reg, cls) = match net {
                    BlazeNets::Native(n) => n.run(&tensor)?,
                    BlazeNets::Burn(nets) => on_net!(nets, BurnBlazeNets, n => n.run(&tensor))?,
                };
                Ok(pipeline
                    .postprocess(&reg, &cls, &letterbox)?
                    .into_iter()
                    .map(|d| Face {
                        score: d.score,
                        bbox: d.bbox,
                        keypoints: Some(d.keypoints),
                    })
                    .collect())
            }
            Kind::Mmod {
                net,
                input,
                decoder,
                upsample,
            } => {
                let mut upsampled: Option<RgbImage> = None;
                for _ in 0..*upsample {
                    let view = upsampled.as_ref().map_or(*frame, RgbImage::view);
                    upsampled = Some(pyramid_up(&view)?);
                }
                let view = upsampled.as_ref().map_or(*frame, RgbImage::view);
                let canvas = MmodInput::new(&view, input)?;
                let (scores, rows, cols) = on_net!(&**net, MmodNets, n => n.scores(&canvas));
                Ok(decoder
                    .decode(&scores, rows, cols, &canvas.levels, 0.0)?
                    .into_iter()
                    .map(|d| {
                        let r = rect_down(d.rect, *upsample);
                        Face {
                            score: d.score,
                            bbox: [r.left, r.top, r.right, r.bottom].map(|v| v as f32),
                            keypoints: None,
                        }
                    })
                    .collect())
            }
        }
    }
}
