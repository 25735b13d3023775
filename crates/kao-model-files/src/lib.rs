//! kao's model files: where they are, that they are the right ones, and what is in them.
//!
//! * This module: finds a model by its name in `models/manifest.tsv` ([`locate`]) and checks
//!   the file's sha256. The folder is `$KAO_MODELS`, else `$XDG_CACHE_HOME/kao/models`, else
//!   `~/.cache/kao/models` — the same rule as `models/fetch.py`, which fills it.
//! * [`dat`]: a bounded reader for dlib's `serialize()` format and parsers for the
//!   face-recognition ResNet and the MMOD face detector (layer records only); the shape
//!   predictor's parser is beside its predictor (`kao_networks::shape_predictor`).
//! * [`tflite`]: a bounded reader of TensorFlow Lite flatbuffers (BlazeFace's weights and
//!   graph).
//!
//! Every parser here reads bytes from outside (a user's model folder) and is fuzzed
//! (docs/fuzzing.md); the format notes they rely on are in docs/models.md.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dat;
pub mod tflite;

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The manifest, compiled in so binaries need no source tree.
const MANIFEST: &str = include_str!("../../../models/manifest.tsv");

/// The command that fetches the models, for error messages.
pub const FETCH_HINT: &str =
    "fetch the models with `python3 models/fetch.py` (or set KAO_MODELS to a folder that has them)";

/// One model file of the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name, e.g. `dlib-resnet`.
    pub name: &'static str,
    /// File name inside the model folder.
    pub file: &'static str,
    /// Expected sha256, lowercase hex.
    pub sha256: &'static str,
    /// Licence of the file.
    pub licence: &'static str,
}

/// A model file that is present and verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// The manifest entry.
    pub spec: ModelSpec,
    /// Where the file is.
    pub path: PathBuf,
}

/// Why a model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The name is not in the manifest.
    #[error("unknown model `{0}`")]
    Unknown(String),
    /// The file is not in the model folder.
    #[error("model {name} not found at {path}: {FETCH_HINT}")]
    Missing {
        /// Model name.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file is there but is not the file of the manifest.
    #[error(
        "model file {path} has sha256 {found}, expected {expected}: delete it and {FETCH_HINT}"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Its sha256.
        found: String,
        /// The manifest's sha256.
        expected: String,
    },
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error (shown in the message, so not a `source` that would print it twice).
        error: std::io::Error,
    },
}

/// Every model in the manifest.
pub fn manifest() -> Vec<ModelSpec> {
    MANIFEST
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let cols: Vec<&'static str> = line.split('\t').collect();
            let member = cols.get(5)?;
            Some(ModelSpec {
                name: cols.first()?,
                file: member.rsplit('/').next()?,
                sha256: cols.get(6)?,
                licence: cols.get(7)?,
            })
        })
        .collect()
}

/// kao's folder in the user cache: `$XDG_CACHE_HOME/kao`, else `~/.cache/kao`; `None` when
/// neither variable is set.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .map(|cache| cache.join("kao"))
}

/// The model folder: `$KAO_MODELS`, else [`cache_dir`] + `models` (`.cache/kao/models` when
/// there is no user cache).
pub fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KAO_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache").join("kao"))
        .join("models")
}

/// Finds model `name` in the model folder and verifies its sha256.
pub fn locate(name: &str) -> Result<Model, ModelError> {
    locate_in(&model_dir(), name)
}

/// Finds model `name` in `dir` and verifies its sha256.
pub fn locate_in(dir: &Path, name: &str) -> Result<Model, ModelError> {
    let spec = manifest()
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ModelError::Unknown(name.into()))?;
    let path = dir.join(spec.file);
    if path.is_dir() {
        return Err(ModelError::Io {
            path,
            error: std::io::Error::other("is a folder, not the model file"),
        });
    }
    if !path.is_file() {
        return Err(ModelError::Missing {
            name: name.into(),
            path,
        });
    }
    let found = sha256_file(&path)?;
    if found != spec.sha256 {
        return Err(ModelError::Mismatch {
            path,
            found,
            expected: spec.sha256.into(),
        });
    }
    Ok(Model { spec, path })
}

/// The sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let io = |error| ModelError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lists_the_default_models_and_never_the_68_point_predictor() {
        let names: Vec<_> = manifest().iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "dlib-resnet",
                "dlib-mmod",
                "dlib-sp5",
                "blazeface-short",
                "blazeface-full"
            ]
        );
        assert!(
            manifest()
                .iter()
                .all(|m| m.sha256.len() == 64 && !m.file.contains("68"))
        );
    }

    #[test]
    fn missing_wrong_and_right_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate_in(dir.path(), "dlib-sp5").unwrap_err();
        assert!(err.to_string().contains("python3 models/fetch.py"), "{err}");
        assert!(matches!(
            locate_in(dir.path(), "nope"),
            Err(ModelError::Unknown(_))
        ));
        let spec = manifest()
            .into_iter()
            .find(|m| m.name == "dlib-sp5")
            .unwrap();
        std::fs::write(dir.path().join(spec.file), b"not the model").unwrap();
        assert!(matches!(
            locate_in(dir.path(), "dlib-sp5"),
            Err(ModelError::Mismatch { .. })
        ));
        std::fs::write(dir.path().join("abc"), b"abc").unwrap();
        assert_eq!(
            sha256_file(&dir.path().join("abc")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn fetched_models_verify() {
        // scripts/test.sh fetches the models first; a missing one fails with the fetch hint.
        for spec in manifest() {
            let model = locate(spec.name).unwrap_or_else(|e| panic!("{e}"));
            assert!(model.path.ends_with(spec.file));
        }
    }
}
