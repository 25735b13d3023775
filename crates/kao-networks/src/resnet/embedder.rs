//! dlib's face embedder on a device: [`ResNetEmbedder`] picks the executor (kao's native CPU
//! kernels or burn) and batches chips; [`DlibResnet`] is the registry's `dlib` embedder
//! ([`crate::embedder`]), the same network with its embedding space.

use std::path::Path;

use anyhow::{Context, Result};
use kao_image::RgbView;
use kao_model_files::dat::ResnetModel;
use kao_record::EmbeddingSpace;

#[cfg(feature = "candle")]
use crate::CandleBackend;
#[cfg(feature = "cuda")]
use crate::CudaBackend;
#[cfg(feature = "flex")]
use crate::FlexBackend;
#[cfg(feature = "ndarray")]
use crate::NdArrayBackend;
use crate::embedder::{ChipGeometry, DLIB_CHIP, Embedder};
use crate::{CpuLevel, Device, Error};

use super::{EMBEDDING_LEN, NativeResNet, ResNet};

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
    super::check_sizes(chips)?;
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
pub struct ResNetEmbedder {
    net: Net,
    device: Device,
}

impl ResNetEmbedder {
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

    /// [`ResNetEmbedder::from_model`] on the CPU with [`NativeResNet`]'s kernels at `level`
    /// (rather than the level `KAO_CPU` names or the widest): for tests that run every
    /// level side by side.
    #[cfg(feature = "flex")]
    pub fn from_model_at(model: &ResnetModel, level: CpuLevel) -> Result<Self, Error> {
        Ok(Self {
            net: Net::Native(Box::new(NativeResNet::from_model_at(model, level)?)),
            device: Device::Flex,
        })
    }

    /// [`ResNetEmbedder::load`] with the network on burn on every device (the CPU too), to
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
    /// `kao_image::get_face_chip`), in order.
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

/// dlib's ResNet on kao's native CPU kernels or burn.
pub struct DlibResnet {
    net: ResNetEmbedder,
    space: EmbeddingSpace,
}

impl DlibResnet {
    /// Loads `dlib_face_recognition_resnet_model_v1.dat` from the model folder.
    pub fn load(device: Device) -> Result<DlibResnet> {
        let model = kao_model_files::locate("dlib-resnet")?;
        let net = ResNetEmbedder::load(&model.path, device)
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
