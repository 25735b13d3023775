//! User-supplied ONNX models, run by ONNX Runtime.
//!
//! kao's own networks are native ports; a model a user brings (FACE01's JAPANESE FACE V1, an
//! ArcFace embedder, OpenCV's YuNet detector) runs here. ONNX Runtime was chosen by
//! measurement (docs/embedders.md, "The runtime"): it runs any standard graph at its own speed, where
//! tract was about 3.5× slower on an EfficientNetV2-style embedder. Its library is loaded at
//! run time, so nothing is downloaded or linked at build time: [`library_path`] says where it
//! is looked for (`ORT_DYLIB_PATH`, then the wheel that `scripts/deps.sh` installs, then the
//! system's loader path).
//!
//! [`Model::load`] opens a graph, checks its inputs and outputs are float tensors, and
//! explains a bad file in one line; callers check the shapes their use needs: [`Yunet`] (a
//! face detector, `yunet.rs`) and [`OnnxEmbedder`] (any face embedder, `embedder.rs`).

mod embedder;
mod yunet;

pub use embedder::OnnxEmbedder;
pub use yunet::Yunet;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{TensorRef, ValueType};

/// Errors from finding ONNX Runtime, loading a model or running it; each is one line naming
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// ONNX Runtime's library was not found or could not be loaded.
    #[error("ONNX Runtime is not available: {0}")]
    Runtime(String),
    /// The model file is missing, not a file, or unreadable.
    #[error("{path}: {message}")]
    File {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// ONNX Runtime could not read the file as a model.
    #[error("{path}: not a valid ONNX model ({message})")]
    NotOnnx {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's reason, first line.
        message: String,
    },
    /// The graph's inputs or outputs are not what this use needs.
    #[error("{path}: {message}")]
    Graph {
        /// The model file.
        path: PathBuf,
        /// What the graph has and what is needed.
        message: String,
    },
    /// Running the model failed.
    #[error("{path}: running the model failed: {message}")]
    Run {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's reason, first line.
        message: String,
    },
}

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// The CUDA provider on this GPU (falls back to the CPU with a warning when the
    /// library has no CUDA provider).
    Cuda(usize),
}

/// The first line of an ONNX Runtime message, without its `[ONNXRuntimeError] : N : CODE :`
/// prefix.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or("").trim();
    match line.strip_prefix("[ONNXRuntimeError] : ") {
        Some(rest) => rest
            .splitn(3, " : ")
            .last()
            .unwrap_or(rest)
            .trim()
            .to_string(),
        None => line.to_string(),
    }
}

/// The wheel's library under `$XDG_CACHE_HOME/kao/pyenv` (or `~/.cache/kao/pyenv`), where
/// `scripts/onnx_env.sh` installs the `onnxruntime` package.
fn wheel_library() -> Option<PathBuf> {
    let lib = kao_model_files::cache_dir()?.join("pyenv").join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .flatten()
        .map(|python| python.path().join("site-packages/onnxruntime/capi"))
        .filter_map(|capi| std::fs::read_dir(capi).ok())
        .flat_map(|dir| dir.flatten().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// The ONNX Runtime library kao loads: `ORT_DYLIB_PATH` when set, else the wheel installed by
/// `scripts/deps.sh` in kao's cache, else `libonnxruntime.so` from the system's loader path.
pub fn library_path() -> PathBuf {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    wheel_library().unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}onnxruntime{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ))
    })
}

/// The process's one ONNX Runtime environment, made on first use.
fn environment() -> Result<&'static Environment, OnnxError> {
    static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| {
            let path = library_path();
            let builder = ort::init_from(&path).map_err(|e| {
                format!(
                    "{e}; run scripts/deps.sh (it installs PyPI's onnxruntime wheel) or set ORT_DYLIB_PATH to libonnxruntime.so"
                )
            })?;
            builder
                .with_name("kao")
                .with_telemetry(false)
                .build()
                .map_err(|e| first_line(&e.to_string()))
        })
        .as_ref()
        .map_err(|e| OnnxError::Runtime(e.clone()))
}

/// A graph input or output: its name, its shape (`-1` for a symbolic dimension) and whether
/// it holds float32.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Name in the graph.
    pub name: String,
    /// Dimensions; `-1` where the graph leaves one open (a symbolic batch).
    pub shape: Vec<i64>,
    /// The element type, as ONNX Runtime names it.
    pub element: String,
    /// True for float32 tensors.
    pub is_f32: bool,
}

impl TensorInfo {
    fn of(name: &str, ty: &ValueType) -> TensorInfo {
        match ty {
            ValueType::Tensor { ty, shape, .. } => TensorInfo {
                name: name.to_string(),
                shape: shape.iter().copied().collect(),
                element: format!("{ty}"),
                is_f32: *ty == ort::value::TensorElementType::Float32,
            },
            other => TensorInfo {
                name: name.to_string(),
                shape: Vec::new(),
                element: format!("{other}"),
                is_f32: false,
            },
        }
    }

    /// `input [-1, 3, 224, 224] float32`, for messages.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|&d| if d < 0 { "N".into() } else { d.to_string() })
            .collect();
        format!("`{}` [{}] {}", self.name, dims.join(", "), self.element)
    }
}

/// One output of a run: its name, shape and values.
#[derive(Clone, Debug)]
pub struct Output {
    /// Name in the graph.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values in row-major order.
    pub values: Vec<f32>,
}

/// An ONNX model loaded into ONNX Runtime.
pub struct Model {
    path: PathBuf,
    session: Mutex<Session>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    runs_on: String,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("runs_on", &self.runs_on)
            .finish()
    }
}

impl Model {
    /// Loads `path` for `device` with `threads` CPU threads per run (0: ONNX Runtime's
    /// choice). Every input and output must be a float32 tensor.
    pub fn load(path: &Path, device: Device, threads: usize) -> Result<Model, OnnxError> {
        let file_error = |message: String| OnnxError::File {
            path: path.to_path_buf(),
            message,
        };
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(file_error("model file not found".into()));
            }
            Err(e) => return Err(file_error(format!("cannot read the model file: {e}"))),
            Ok(m) if m.is_dir() => {
                return Err(file_error("is a folder, not an ONNX model file".into()));
            }
            Ok(m) if m.len() == 0 => return Err(file_error("the model file is empty".into())),
            Ok(_) => {}
        }
        let environment = environment()?;
        let ort_error = |e: ort::Error| OnnxError::NotOnnx {
            path: path.to_path_buf(),
            message: first_line(&e.to_string()),
        };
        let mut builder = Session::builder(environment).map_err(ort_error)?;
        if threads > 0 {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| ort_error(e.into()))?;
        }
        let mut runs_on = "CPU".to_string();
        if let Device::Cuda(index) = device {
            match cuda_provider(builder, index) {
                Ok(with_cuda) => {
                    builder = with_cuda;
                    runs_on = format!("CUDA GPU {index}");
                }
                Err((without, reason)) => {
                    builder = without;
                    tracing::warn!(
                        "{}: the ONNX model runs on the CPU: {reason}",
                        path.display()
                    );
                }
            }
        }
        let bytes = std::fs::read(path)
            .map_err(|e| file_error(format!("cannot read the model file: {e}")))?;
        let session = builder.commit_from_memory(&bytes).map_err(ort_error)?;
        let inputs: Vec<TensorInfo> = session
            .inputs()
            .iter()
            .map(|o| TensorInfo::of(o.name(), o.dtype()))
            .collect();
        let outputs: Vec<TensorInfo> = session
            .outputs()
            .iter()
            .map(|o| TensorInfo::of(o.name(), o.dtype()))
            .collect();
        for (what, list) in [("input", &inputs), ("output", &outputs)] {
            if let Some(bad) = list.iter().find(|t| !t.is_f32) {
                return Err(OnnxError::Graph {
                    path: path.to_path_buf(),
                    message: format!("{what} {} is not a float32 tensor", bad.describe()),
                });
            }
        }
        tracing::info!("{}: ONNX model on {runs_on}", path.display());
        Ok(Model {
            path: path.to_path_buf(),
            session: Mutex::new(session),
            inputs,
            outputs,
            runs_on,
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The graph's inputs.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// The graph's outputs.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// Where the model runs (`CPU`, `CUDA GPU 0`).
    pub fn runs_on(&self) -> &str {
        &self.runs_on
    }

    /// An error about this model's graph.
    pub fn graph_error(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Graph {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// Runs the model on one float32 tensor of `shape` fed to its first input; returns
    /// every output.
    pub fn run(&self, input: &[f32], shape: &[usize]) -> Result<Vec<Output>, OnnxError> {
        let run_error = |message: String| OnnxError::Run {
            path: self.path.clone(),
            message,
        };
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let tensor = TensorRef::from_array_view((dims, input))
            .map_err(|e| run_error(first_line(&e.to_string())))?;
        let name = self.inputs[0].name.clone();
        let mut session = self
            .session
            .lock()
            .map_err(|_| run_error("an earlier run panicked".into()))?;
        let outputs = session
            .run(ort::inputs![name => tensor])
            .map_err(|e| run_error(first_line(&e.to_string())))?;
        let mut out = Vec::with_capacity(outputs.len());
        for (name, value) in outputs.iter() {
            let (shape, values) = value.try_extract_tensor::<f32>().map_err(|e| {
                run_error(format!("output `{name}`: {}", first_line(&e.to_string())))
            })?;
            out.push(Output {
                name: name.to_string(),
                shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
                values: values.to_vec(),
            });
        }
        Ok(out)
    }
}

/// The builder with ONNX Runtime's CUDA provider on GPU `index`, or the builder back with the
/// reason it could not be had.
#[cfg(feature = "cuda")]
#[allow(clippy::result_large_err)] // The builder comes back to the caller, which goes on with the CPU.
fn cuda_provider(
    builder: ort::session::builder::SessionBuilder,
    index: usize,
) -> Result<ort::session::builder::SessionBuilder, (ort::session::builder::SessionBuilder, String)>
{
    let provider = ort::ep::CUDA::default()
        .with_device_id(index as i32)
        .build()
        .error_on_failure();
    match builder.with_execution_providers([provider]) {
        Ok(with) => Ok(with),
        Err(e) => {
            let reason = first_line(&e.to_string());
            Err((e.recover(), reason))
        }
    }
}

/// Without the `cuda` feature there is no CUDA provider to ask for.
#[cfg(not(feature = "cuda"))]
#[allow(clippy::result_large_err)] // The builder comes back to the caller, which goes on with the CPU.
fn cuda_provider(
    builder: ort::session::builder::SessionBuilder,
    _index: usize,
) -> Result<ort::session::builder::SessionBuilder, (ort::session::builder::SessionBuilder, String)>
{
    Err((
        builder,
        "this build has no CUDA support for ONNX models (rebuild with `--features cuda`)".into(),
    ))
}

/// `input [N, 3, 112, 112] float32, ...`: each tensor of a graph's input or output list.
pub(crate) fn describe_all(tensors: &[TensorInfo]) -> String {
    tensors
        .iter()
        .map(TensorInfo::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ONNX Runtime device for kao's device.
pub(crate) fn onnx_device(device: crate::Device) -> Device {
    match device {
        #[cfg(feature = "cuda")]
        crate::Device::Cuda(index) => Device::Cuda(index),
        #[allow(unreachable_patterns)]
        _ => Device::Cpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_messages_keep_their_first_line_without_the_prefix() {
        assert_eq!(
            first_line(
                "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model failed:Protobuf parsing failed.\nmore"
            ),
            "Load model failed:Protobuf parsing failed."
        );
        assert_eq!(first_line("plain"), "plain");
    }

    #[test]
    fn missing_and_folder_models_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = Model::load(&dir.path().join("nope.onnx"), Device::Cpu, 1).unwrap_err();
        assert!(
            e.to_string().ends_with("nope.onnx: model file not found"),
            "{e}"
        );
        let e = Model::load(dir.path(), Device::Cpu, 1).unwrap_err();
        assert!(e.to_string().contains("is a folder"), "{e}");
        let empty = dir.path().join("empty.onnx");
        std::fs::write(&empty, b"").unwrap();
        let e = Model::load(&empty, Device::Cpu, 1).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }
}
