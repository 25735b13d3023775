//! Face detectors as a choice: MediaPipe BlazeFace (short and full range) and dlib's MMOD on
//! kao's own networks ([`KaoNetwork`] over [`FaceDetector`]), and OpenCV's YuNet (or a
//! compatible ONNX file) on ONNX Runtime ([`Yunet`]).
//!
//! A [`Detector`] turns an RGB frame into [`Detection`]s in one box convention: pixel
//! corners `[left, top, right, bottom)` in the frame's pixels. [`DetectorKind`] names one
//! (`blazeface`, `blazeface-full`, `mmod`, `yunet:PATH`) and [`load`] is the registry that
//! turns a name into a running detector. Adding a detector is one implementation of
//! [`Detector`] plus one arm in [`DetectorKind`] and [`load`] (docs/architecture.md).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kao_image::RgbView;
use kao_record::schema::ModelRef;

use crate::Device;
use crate::onnx::Yunet;

mod face_detector;

pub use face_detector::{DetectError, DetectorError, Face, FaceDetector, Range};

/// One face a detector found.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// The detector's confidence (BlazeFace and YuNet: 0–1; MMOD: dlib's margin, ~0–2).
    pub score: f32,
    /// `[left, top, right, bottom)`: pixel corners in the frame's pixels, so a box of one
    /// pixel at (x, y) is `[x, y, x + 1, y + 1]`.
    pub bbox: [f32; 4],
    /// The detector's own keypoints as (x, y) in frame pixels, in its order (BlazeFace: eyes,
    /// nose, mouth, tragions; YuNet: right eye, left eye, nose, right and left mouth corner);
    /// empty for MMOD. kao aligns faces with dlib's 5-point predictor, not with these.
    pub keypoints: Vec<[f32; 2]>,
}

/// A face detector: an RGB frame in, faces out.
pub trait Detector: Send + Sync {
    /// Finds the faces of `frame`, in no particular order.
    fn detect(&self, frame: &RgbView<'_>) -> Result<Vec<Detection>>;
    /// The model file it runs, for provenance.
    fn model(&self) -> &ModelRef;
    /// Where it runs, for the log.
    fn runs_on(&self) -> String;
}

/// Which face detector, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectorKind {
    /// MediaPipe BlazeFace short range (128², faces near the camera).
    Blazeface,
    /// MediaPipe BlazeFace full range (192², faces at any distance).
    BlazefaceFull,
    /// dlib's MMOD CNN face detector.
    Mmod,
    /// OpenCV's YuNet, an ONNX file the user brings (`yunet:PATH`).
    Yunet(PathBuf),
}

impl DetectorKind {
    /// The name used on the command line and in provenance (`yunet` without its path).
    pub fn name(&self) -> &'static str {
        match self {
            DetectorKind::Blazeface => "blazeface",
            DetectorKind::BlazefaceFull => "blazeface-full",
            DetectorKind::Mmod => "mmod",
            DetectorKind::Yunet(_) => "yunet",
        }
    }
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DetectorKind::Yunet(path) => write!(f, "yunet:{}", path.display()),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for DetectorKind {
    type Err = String;

    /// `blazeface`, `blazeface-full`, `mmod` or `yunet:PATH`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "blazeface" => Ok(DetectorKind::Blazeface),
            "blazeface-full" => Ok(DetectorKind::BlazefaceFull),
            "mmod" => Ok(DetectorKind::Mmod),
            "yunet" | "yunet:" => Err(
                "yunet needs its ONNX file: --detector yunet:PATH (OpenCV Zoo's face_detection_yunet)"
                    .into(),
            ),
            _ => match s.strip_prefix("yunet:") {
                Some(path) => Ok(DetectorKind::Yunet(PathBuf::from(path))),
                None => Err(format!(
                    "unknown detector `{s}` (blazeface, blazeface-full, mmod or yunet:PATH)"
                )),
            },
        }
    }
}

/// Loads the detector `kind` names, on `device`; `upsample` is MMOD's (ignored by the others).
/// The registry: one arm per detector.
pub fn load(kind: &DetectorKind, device: Device, upsample: u32) -> Result<Arc<dyn Detector>> {
    Ok(match kind {
        DetectorKind::Blazeface => Arc::new(KaoNetwork::load(kind, device, upsample)?),
        DetectorKind::BlazefaceFull => Arc::new(KaoNetwork::load(kind, device, upsample)?),
        DetectorKind::Mmod => Arc::new(KaoNetwork::load(kind, device, upsample)?),
        DetectorKind::Yunet(path) => Arc::new(Yunet::load(path, device)?),
    })
}

/// BlazeFace or MMOD on kao's networks (native CPU kernels or burn), weights fetched by name.
pub struct KaoNetwork {
    net: FaceDetector,
    /// MMOD reports dlib's inclusive rectangles: one pixel is added at the right and bottom.
    inclusive: bool,
    model: ModelRef,
}

impl KaoNetwork {
    /// Loads the model of `kind` (BlazeFace or MMOD) from the model folder.
    fn load(kind: &DetectorKind, device: Device, upsample: u32) -> Result<KaoNetwork> {
        let name = match kind {
            DetectorKind::Blazeface => "blazeface-short",
            DetectorKind::BlazefaceFull => "blazeface-full",
            DetectorKind::Mmod => "dlib-mmod",
            DetectorKind::Yunet(_) => bail!("YuNet is not one of kao's networks"),
        };
        let model = kao_model_files::locate(name)?;
        let path = &model.path;
        let net = match kind {
            DetectorKind::Blazeface => FaceDetector::blazeface(path, Range::Short, device),
            DetectorKind::BlazefaceFull => FaceDetector::blazeface(path, Range::Full, device),
            _ => FaceDetector::mmod(path, device, upsample),
        }
        .with_context(|| path.display().to_string())?;
        Ok(KaoNetwork {
            net,
            inclusive: *kind == DetectorKind::Mmod,
            model: ModelRef {
                name: model.spec.name.into(),
                sha256: model.spec.sha256.into(),
            },
        })
    }
}

impl Detector for KaoNetwork {
    fn detect(&self, frame: &RgbView<'_>) -> Result<Vec<Detection>> {
        let extra = if self.inclusive { 1.0 } else { 0.0 };
        Ok(self
            .net
            .detect(frame)?
            .into_iter()
            .map(|f| {
                let [l, t, r, b] = f.bbox;
                Detection {
                    score: f.score,
                    bbox: [l, t, r + extra, b + extra],
                    keypoints: f.keypoints.map(|k| k.to_vec()).unwrap_or_default(),
                }
            })
            .collect())
    }

    fn model(&self) -> &ModelRef {
        &self.model
    }

    fn runs_on(&self) -> String {
        if self.net.device().runs_native() {
            "kao's native CPU kernels".into()
        } else {
            format!("burn on {:?}", self.net.device())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for name in ["blazeface", "blazeface-full", "mmod", "yunet:/m/y.onnx"] {
            assert_eq!(name.parse::<DetectorKind>().unwrap().to_string(), name);
        }
        assert!(
            "yunet"
                .parse::<DetectorKind>()
                .unwrap_err()
                .contains("yunet:PATH")
        );
        assert!(
            "hog"
                .parse::<DetectorKind>()
                .unwrap_err()
                .contains("unknown detector `hog`")
        );
    }
}
