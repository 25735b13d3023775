//! The reference cache: the outcome of enrolling a photo (its embedding, box and face count, or
//! "no face"), stored per photo content and recipe as `<sha256 of key>.json` in
//! `$XDG_CACHE_HOME/kao/refs` (or `--ref-cache`), so a second run over the same references loads
//! no model at all. The key names the model files' digests, the jitters, the seed, the
//! detection recipe (`enroll::RECIPE`) and, for an ONNX embedder, its file and preprocessing.
//! Entries are written atomically; a corrupt or inconsistent entry is ignored, and a cache that
//! cannot be written is a warning, never an error.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use kao_networks::embedder::EmbedderKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::enroll::{EnrollOptions, Outcome, RECIPE};

/// Version of the cache entries and of the recipe below; bump it when either changes.
const CACHE_FORMAT: u32 = 2;
/// `$XDG_CACHE_HOME/kao/refs`, else `~/.cache/kao/refs`; `None` when neither variable is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    kao_model_files::cache_dir().map(|kao| kao.join("refs"))
}

/// A cache entry on disk.
#[derive(Serialize, Deserialize)]
struct Entry {
    format: u32,
    photo_sha256: String,
    faces_found: usize,
    #[serde(rename = "box")]
    bbox: Option<[f32; 4]>,
    embedding: Option<Vec<f32>>,
}

/// The part of the cache key that does not depend on the photo: models, jitters, seed, recipe.
pub(super) fn recipe_key(options: &EnrollOptions) -> Result<String> {
    let manifest = kao_model_files::manifest();
    let sha = |name: &str| {
        manifest
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.sha256)
            .ok_or_else(|| anyhow!("model {name} is not in the manifest"))
    };
    // `locate` checks every model file against these digests, so they name the loaded weights.
    let mut key = format!(
        "kao-refs {CACHE_FORMAT}\nresnet {}\nmmod {}\nsp5 {}\njitters {}\nseed {}\nrecipe {RECIPE}\n",
        sha("dlib-resnet")?,
        sha("dlib-mmod")?,
        sha("dlib-sp5")?,
        options.jitters.max(1),
        options.seed,
    );
    // Another embedder: its file's content and every preprocessing setting.
    if let EmbedderKind::Face01V1(path) | EmbedderKind::Onnx(path) = &options.embedder.kind {
        let file = kao_model_files::sha256_file(path)?;
        key.push_str(&format!(
            "embedder {:?} {file} {:?}\n",
            options.embedder.kind, options.embedder.preprocessing
        ));
    }
    Ok(key)
}

/// Lowercase hex of a sha256 digest.
pub(super) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache: a folder of `<sha256 of key>.json` files.
pub(super) struct Cache {
    pub(super) dir: PathBuf,
    pub(super) recipe: String,
    /// False after a failed write (one warning is enough).
    pub(super) writable: bool,
}

impl Cache {
    /// The entry file for a photo with content hash `sha256`.
    fn entry_path(&self, sha256: &str) -> PathBuf {
        let key = Sha256::digest(format!("{}photo {sha256}\n", self.recipe).as_bytes());
        self.dir.join(format!("{}.json", hex(&key)))
    }

    /// The cached outcome for the photo, when a valid entry exists.
    pub(super) fn get(&self, sha256: &str) -> Option<Outcome> {
        let path = self.entry_path(sha256);
        let bytes = std::fs::read(&path).ok()?;
        let entry: Entry = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!("{}: ignoring a corrupt cache entry ({e})", path.display());
                return None;
            }
        };
        if entry.format != CACHE_FORMAT || entry.photo_sha256 != sha256 {
            return None;
        }
        match (entry.embedding, entry.bbox) {
            (None, _) if entry.faces_found == 0 => Some(Outcome::NoFace),
            (Some(values), Some(bbox))
                if entry.faces_found > 0 && values.iter().all(|v| v.is_finite()) =>
            {
                Some(Outcome::Face {
                    embedding: values,
                    faces_found: entry.faces_found,
                    bbox,
                })
            }
            _ => {
                tracing::debug!("{}: ignoring an inconsistent cache entry", path.display());
                None
            }
        }
    }

    /// Stores an outcome (faces and no-face results; bad photos are not cached), atomically.
    pub(super) fn put(&mut self, sha256: &str, outcome: &Outcome, warnings: &mut Vec<String>) {
        let entry = match outcome {
            Outcome::Face {
                embedding,
                faces_found,
                bbox,
            } => Entry {
                format: CACHE_FORMAT,
                photo_sha256: sha256.into(),
                faces_found: *faces_found,
                bbox: Some(*bbox),
                embedding: Some(embedding.to_vec()),
            },
            Outcome::NoFace => Entry {
                format: CACHE_FORMAT,
                photo_sha256: sha256.into(),
                faces_found: 0,
                bbox: None,
                embedding: None,
            },
            Outcome::Bad(_) => return,
        };
        if !self.writable {
            return;
        }
        let path = self.entry_path(sha256);
        if let Err(e) = self.write(&path, &entry) {
            self.writable = false;
            warnings.push(format!(
                "{}: cannot write the reference cache ({}); continuing without it",
                self.dir.display(),
                kao_record::cli::one_line(&e)
            ));
        }
    }

    /// Writes `entry` to a temporary file in the cache folder and renames it to `path`.
    fn write(&self, path: &Path, entry: &Entry) -> Result<()> {
        kao_record::write_atomic(path, &serde_json::to_vec(entry)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_cache_key_depends_on_options() {
        let base = EnrollOptions {
            jitters: 4,
            seed: 1,
            cache: None,
            ..EnrollOptions::default()
        };
        let key = recipe_key(&base).unwrap();
        assert_ne!(
            key,
            recipe_key(&EnrollOptions {
                jitters: 5,
                ..base.clone()
            })
            .unwrap()
        );
        assert_ne!(
            key,
            recipe_key(&EnrollOptions {
                seed: 2,
                ..base.clone()
            })
            .unwrap()
        );
        assert_eq!(
            key,
            recipe_key(&EnrollOptions {
                skip_bad: true,
                ..base.clone()
            })
            .unwrap()
        );
        let cache = Cache {
            dir: PathBuf::from("c"),
            recipe: key,
            writable: true,
        };
        assert_ne!(cache.entry_path("aa"), cache.entry_path("ab"));
    }
}
