//! Reference photos → enrolled embeddings, for `kao-match --ref PATH... --neg PATH...` and
//! `kao-extract`.
//!
//! [`collect`] turns the paths a user passes (image files and folders) into named
//! [`Reference`]s; [`enroll`] finds the face in each photo with dlib's MMOD detector and embeds
//! it with dlib's ResNet (averaging jittered copies, like FACE01's references). Embeddings are
//! cached per photo content and model set, so a second run over the same references loads no
//! model at all ([`ref_cache`](super::ref_cache)). User files are only ever read.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use kao_image::RgbView;
use kao_networks::Device;
use kao_networks::mmod::MAX_PIXELS;
use kao_record::schema::FaceRow;
use sha2::{Digest, Sha256};

use crate::detect::{DetectOptions, DetectorKind, Finder};
use crate::embed::{EmbedOptions, FaceEmbedder};
use crate::matching::ref_cache::{Cache, default_cache_dir, hex, recipe_key};
use kao_networks::embedder::EmbedderSpec;

/// File extensions (lowercase) of the images [`collect`] takes.
pub const IMAGE_EXTENSIONS: [&str; 9] = [
    "png", "jpg", "jpeg", "jfif", "webp", "avif", "bmp", "tif", "tiff",
];

/// Photo formats the FFmpeg kao builds against cannot read (HEIC, iPhones' default): named
/// with a way to convert them instead of being passed over in silence.
const UNREADABLE_EXTENSIONS: [&str; 2] = ["heic", "heif"];

/// How to make a HEIC photo readable.
const HEIC_HINT: &str = "HEIC photos cannot be read by the FFmpeg kao uses; convert them to \
                         JPEG (`heif-convert photo.heic photo.jpg`, or export from Photos)";

/// How an embedding is made, beyond the models, jitters and seed (part of the cache key).
pub(super) const RECIPE: &str = "mmod width<=1200 pixels<=2160000; upsample 1 when none and short side<600; largest box; \
                      chip 150 padding 0.25 from a 0.25 patch; jitter row 0; turned by EXIF Orientation";
/// Widest image the detector sees: wider photos are scaled down for detection only.
const DETECT_WIDTH: usize = 1200;
/// Most pixels the detector sees without upsampling (1200 × 1800, a 2:3 portrait).
const DETECT_PIXELS: usize = 1200 * 1800;
/// Photos whose short side is below this get a second, upsampled detection when the first
/// finds no face.
const SMALL_SIDE: usize = 600;

/// One reference photo and the person it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The person: the file name up to its first `_`, or the sub-folder's name.
    pub name: String,
    /// The photo, as found (not canonicalised).
    pub path: PathBuf,
}

/// True when `path` has one of the [`IMAGE_EXTENSIONS`] (any case).
fn is_image(path: &Path) -> bool {
    has_extension(path, &IMAGE_EXTENSIONS)
}

/// True when `path` has one of the [`UNREADABLE_EXTENSIONS`] (any case).
fn is_unreadable_photo(path: &Path) -> bool {
    has_extension(path, &UNREADABLE_EXTENSIONS)
}

/// True when `path`'s extension is one of `extensions` (lowercase), in any case.
fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// A name starting with `.`.
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// FACE01's naming rule: `name_default.png`, `name_1.png` → `name`; `name.png` → `name`.
fn name_from_file(path: &Path) -> Result<String> {
    let stem = utf8(path, path.file_stem())?;
    let name = match stem.split('_').next() {
        Some(prefix) if !prefix.is_empty() => prefix.to_string(),
        _ => stem.to_string(),
    };
    check_name(&name, path)?;
    Ok(name)
}

/// The name part of `path` as text; not valid UTF-8 is an error (two such names would
/// otherwise read alike and become one person).
fn utf8<'a>(path: &Path, part: Option<&'a std::ffi::OsStr>) -> Result<&'a str> {
    part.unwrap_or_default().to_str().ok_or_else(|| {
        anyhow!(
            "{}: the name is not valid UTF-8, so it cannot name a person; rename it",
            path.display()
        )
    })
}

/// Names that would collide with what kao writes into the output folder, or are no folder
/// name at all, cannot name a person (`path` names where the name came from).
pub fn check_name(name: &str, path: &Path) -> Result<()> {
    let taken = match name {
        "" | "." | ".." => Some("is not a folder name"),
        crate::align::manifest::MANIFEST => Some("is the manifest's file name"),
        crate::align::UNKNOWN_DIR => Some("is the folder of unmatched faces (--all)"),
        "report.html" => Some("is kao-report's page"),
        _ if name.starts_with('.') => Some("starts with `.` (kao's hidden files)"),
        _ => None,
    };
    match taken {
        Some(why) => bail!(
            "{}: `{name}` cannot name a person: in the output folder it {why}; rename the file or folder",
            path.display()
        ),
        None => Ok(()),
    }
}

/// Why a path cannot be used, in a few words.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or folder".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The entries of `dir` that are not hidden, sorted by path.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let read =
        std::fs::read_dir(dir).map_err(|e| anyhow!("{}: {}", dir.display(), io_reason(&e)))?;
    let mut paths = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| anyhow!("{}: {}", dir.display(), io_reason(&e)))?;
        let path = entry.path();
        if !is_hidden(&path) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// The references in folder `dir`: its images (named by the file-name rule) and the images of
/// its sub-folders (named after the sub-folder). Deeper folders are not searched. Returns how
/// many HEIC photos it passed over (each named in a warning).
fn collect_dir(dir: &Path, out: &mut Vec<Reference>) -> Result<usize> {
    let mut unreadable = 0;
    let mut pass_over = |path: &Path| {
        tracing::warn!("{}: skipped: {HEIC_HINT}", path.display());
        unreadable += 1;
    };
    for path in entries(dir)? {
        // Follows symbolic links; a dangling one is not an image.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() && is_image(&path) {
            out.push(Reference {
                name: name_from_file(&path)?,
                path,
            });
        } else if meta.is_file() && is_unreadable_photo(&path) {
            pass_over(&path);
        } else if meta.is_dir() {
            let name = utf8(&path, path.file_name())?.to_string();
            let mut named = false;
            for inner in entries(&path)? {
                let is_file = std::fs::metadata(&inner).is_ok_and(|m| m.is_file());
                if is_image(&inner) && is_file {
                    if !named {
                        check_name(&name, &path)?;
                        named = true;
                    }
                    out.push(Reference {
                        name: name.clone(),
                        path: inner,
                    });
                } else if is_unreadable_photo(&inner) && is_file {
                    pass_over(&inner);
                } else if inner.is_dir() {
                    tracing::debug!(
                        "{}: not searched (references are at most one folder deep)",
                        inner.display()
                    );
                }
            }
        }
    }
    Ok(unreadable)
}

/// The reference photos under `paths`, sorted by name then path. A path `NAME=PATH` names
/// every photo under PATH NAME.
///
/// Each path is an image file or a folder. A photo's person is its file name up to the first
/// `_` (`name_default.png`, `name_1.png`; a name without `_` is its stem); images in a
/// sub-folder of a passed folder (`DIR/<name>/*.jpg`) are named after the sub-folder. Images
/// are the [`IMAGE_EXTENSIONS`] in any case; other and hidden files are ignored in folders.
/// Errors (one line naming the path): a path that does not exist, a folder without images, a
/// file that is not an image.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<Reference>> {
    let mut refs = Vec::new();
    for path in paths {
        // `NAME=PATH`: every photo under PATH is NAME (a folder kao-name made, whose crops are
        // named after their video).
        if !path.exists()
            && let Some((name, target)) = path.to_str().and_then(|p| p.split_once('='))
            && !name.is_empty()
            && !name.contains('/')
        {
            check_name(name, path)?;
            for found in collect(&[PathBuf::from(target)])? {
                refs.push(Reference {
                    name: name.to_string(),
                    path: found.path,
                });
            }
            continue;
        }
        let meta = std::fs::metadata(path)
            .map_err(|e| anyhow!("{}: {}", path.display(), io_reason(&e)))?;
        if meta.is_dir() {
            let before = refs.len();
            let unreadable = collect_dir(path, &mut refs)?;
            if refs.len() == before && unreadable > 0 {
                bail!(
                    "{}: only HEIC photos ({unreadable}) in this folder or its sub-folders: {HEIC_HINT}",
                    path.display()
                );
            }
            if refs.len() == before {
                bail!(
                    "{}: no reference images ({}) in this folder or its sub-folders",
                    path.display(),
                    IMAGE_EXTENSIONS.join(", ")
                );
            }
        } else if is_unreadable_photo(path) {
            bail!("{}: {HEIC_HINT}", path.display());
        } else if is_image(path) {
            refs.push(Reference {
                name: name_from_file(path)?,
                path: path.clone(),
            });
        } else {
            bail!(
                "{}: not an image file (expected {})",
                path.display(),
                IMAGE_EXTENSIONS.join(", ")
            );
        }
    }
    refs.sort_by(|a, b| (&a.name, &a.path).cmp(&(&b.name, &b.path)));
    refs.dedup();
    // One photo reached twice (a symbolic link, a folder given twice): once per person, and
    // never as two people.
    let mut seen: std::collections::HashMap<PathBuf, (String, PathBuf)> = Default::default();
    let mut unique = Vec::with_capacity(refs.len());
    for r in refs {
        let file = std::fs::canonicalize(&r.path).unwrap_or_else(|_| r.path.clone());
        match seen.get(&file) {
            Some((name, _)) if *name == r.name => continue,
            Some((name, first)) => bail!(
                "{} and {} are the same photo (through a symbolic link?) but name two people, `{name}` and `{}`; remove the link or one of them",
                first.display(),
                r.path.display(),
                r.name
            ),
            None => {
                seen.insert(file, (r.name.clone(), r.path.clone()));
                unique.push(r);
            }
        }
    }
    Ok(unique)
}

/// How references are enrolled.
#[derive(Clone, Debug)]
pub struct EnrollOptions {
    /// The embedder (the faces' own: references and faces must share one space).
    pub embedder: EmbedderSpec,
    /// Average the embeddings of this many jittered copies of each face (0 or 1: the plain chip).
    pub jitters: u32,
    /// Seed of the jitter generator.
    pub seed: u64,
    /// Record photos without a usable face in [`Enrollment::skipped`] instead of failing.
    pub skip_bad: bool,
    /// Folder of cached embeddings; `None` disables the cache.
    pub cache: Option<PathBuf>,
    /// Where the networks run.
    pub device: Device,
}

impl Default for EnrollOptions {
    /// 100 jitters (FACE01's references), seed 0, failing on bad photos, the default cache
    /// folder ([`default_cache_dir`]), the CPU.
    fn default() -> Self {
        EnrollOptions {
            embedder: EmbedderSpec::default(),
            jitters: 100,
            seed: 0,
            skip_bad: false,
            cache: default_cache_dir(),
            device: Device::cpu(),
        }
    }
}

/// One enrolled reference photo.
#[derive(Clone, Debug, PartialEq)]
pub struct EnrolledFace {
    /// The person.
    pub name: String,
    /// The photo.
    pub path: PathBuf,
    /// sha256 of the photo's bytes, lowercase hex.
    pub sha256: String,
    /// The embedding of the photo's face (the largest one when there are several).
    pub embedding: Vec<f32>,
    /// How many faces the detector found in the photo.
    pub faces_found: usize,
}

/// The result of [`enroll`].
#[derive(Clone, Debug, Default)]
pub struct Enrollment {
    /// One entry per usable photo, in the order of the references.
    pub faces: Vec<EnrolledFace>,
    /// Photos without a usable face and why (only with [`EnrollOptions::skip_bad`]).
    pub skipped: Vec<(PathBuf, String)>,
    /// One line each, for the user (several faces in a photo, cache problems); callers print them.
    pub warnings: Vec<String>,
    /// How many photos came from the cache (faces and skipped ones).
    pub from_cache: usize,
}

/// What a photo gave.
#[derive(Clone, Debug)]
pub(super) enum Outcome {
    /// A face: the embedding of the largest one, how many there were, its box (x, y, w, h).
    Face {
        embedding: Vec<f32>,
        faces_found: usize,
        bbox: [f32; 4],
    },
    /// The detector found no face.
    NoFace,
    /// The photo cannot be used (not decodable, too odd for the detector); never cached.
    Bad(String),
}

/// The networks, loaded on the first photo that misses the cache.
struct Models {
    embedder: FaceEmbedder,
    /// Finders by (detect width, upsample), each loaded on first use.
    finders: Vec<((usize, u32), Finder)>,
    device: Device,
}

impl Models {
    fn load(options: &EnrollOptions) -> Result<Models> {
        let embedder = FaceEmbedder::load(&EmbedOptions {
            embedder: options.embedder.clone(),
            jitters: options.jitters,
            seed: options.seed,
            device: options.device,
            // Photos are embedded one by one.
            sample: None,
            ..EmbedOptions::default()
        })?;
        Ok(Models {
            embedder,
            finders: Vec::new(),
            device: options.device,
        })
    }

    /// The MMOD finder for this detect width and upsampling.
    fn finder(&mut self, width: usize, upsample: u32) -> Result<&Finder> {
        let key = (width, upsample);
        let at = match self.finders.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                let finder = Finder::load(DetectOptions {
                    detector: DetectorKind::Mmod,
                    detect_width: Some(width as u32),
                    upsample,
                    device: self.device,
                    // Photos, not frames: nothing to follow.
                    follow: None,
                    ..DetectOptions::default()
                })?;
                self.finders.push((key, finder));
                self.finders.len() - 1
            }
        };
        Ok(&self.finders[at].1)
    }
}

/// The width the detector should see a `w × h` photo at: at most [`DETECT_WIDTH`], and small
/// enough that the detector's input (after `upsample` doublings) stays within its pixel limit.
/// Widths that leave the photo as the plain width limit would are all [`DETECT_WIDTH`], so most
/// photos share one finder; narrower ones are rounded down to a multiple of 32 for the same
/// reason.
fn detect_width(w: usize, h: usize, upsample: u32) -> usize {
    let budget = if upsample == 0 {
        DETECT_PIXELS
    } else {
        (MAX_PIXELS / 16 * 15) >> (2 * upsample)
    };
    let width = w.min(DETECT_WIDTH);
    let height = (h as f64 * width as f64 / w.max(1) as f64).round() as usize;
    if width * height <= budget {
        return DETECT_WIDTH;
    }
    let fit = (budget as f64 * w as f64 / h.max(1) as f64).sqrt() as usize;
    (fit / 32 * 32).max(fit.min(32)).max(1)
}

/// Whether the bytes of a JPEG or PNG file stop before the image's end (a cut download or
/// copy: FFmpeg fills the missing part in grey and says nothing). Other formats: `false`.
fn is_truncated(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0xff, 0xd8]) {
        return !jpeg_reaches_its_end(bytes);
    }
    if let Some(mut chunks) = bytes.strip_prefix(b"\x89PNG\r\n\x1a\n") {
        // Chunks of length, type, data and CRC, up to IEND.
        while chunks.len() >= 12 {
            let length = u32::from_be_bytes([chunks[0], chunks[1], chunks[2], chunks[3]]) as usize;
            if &chunks[4..8] == b"IEND" {
                return false;
            }
            match chunks.get(12 + length..) {
                Some(rest) => chunks = rest,
                None => return true,
            }
        }
        return true;
    }
    false
}

/// Walks a JPEG's segments (skipping their lengths, so embedded thumbnails do not count) and
/// entropy-coded scans to its end-of-image marker.
fn jpeg_reaches_its_end(bytes: &[u8]) -> bool {
    let mut at = 2;
    while at + 1 < bytes.len() {
        if bytes[at] != 0xff {
            return false;
        }
        let marker = bytes[at + 1];
        at += 2;
        match marker {
            0xd9 => return true,
            0xff => at -= 1, // fill byte
            0x01 | 0xd0..=0xd7 => {}
            _ => {
                let Some(length) = bytes.get(at..at + 2) else {
                    return false;
                };
                at += u16::from_be_bytes([length[0], length[1]]) as usize;
                if marker == 0xda {
                    // Entropy-coded data up to the next marker that is not a stuffed zero or
                    // a restart.
                    while at + 1 < bytes.len()
                        && (bytes[at] != 0xff || matches!(bytes[at + 1], 0x00 | 0xd0..=0xd7))
                    {
                        at += 1;
                    }
                }
            }
        }
    }
    false
}

/// Decodes the first frame of an image file: (width, height, RGB24 bytes).
fn read_image(path: &Path) -> std::result::Result<(usize, usize, Vec<u8>), String> {
    let input = path
        .to_str()
        .ok_or_else(|| "the path is not valid UTF-8".to_string())?;
    let bytes = std::fs::read(path).map_err(|e| io_reason(&e))?;
    if is_truncated(&bytes) {
        return Err("the file ends before the image does (truncated?)".into());
    }
    let mut first = None;
    let options = kao_video::DecodeOptions {
        max_frames: Some(1),
        ..Default::default()
    };
    let result = kao_video::decode(input, &options, |frame| {
        first = Some(frame);
        ControlFlow::Break(())
    });
    match (first, result) {
        (Some(f), _) if f.damaged => Err("the image is damaged".into()),
        (Some(f), _) => Ok((f.width as usize, f.height as usize, f.rgb)),
        (None, Err(kao_video::DecodeError::Corrupt { message, .. })) => {
            Err(format!("not a valid image ({message})"))
        }
        (None, Err(e)) => {
            let message = e.to_string();
            Err(message
                .strip_prefix(&format!("{input}: "))
                .unwrap_or(&message)
                .to_string())
        }
        (None, Ok(_)) => Err("no picture in the file".into()),
    }
}

/// Detects and embeds the face of one photo, loading the networks on first need.
/// Errors are the networks' (loading or running); problems of the photo are [`Outcome::Bad`].
fn analyse(path: &Path, models: &mut Option<Models>, options: &EnrollOptions) -> Result<Outcome> {
    let (w, h, rgb) = match read_image(path) {
        Ok(image) => image,
        Err(reason) => return Ok(Outcome::Bad(format!("cannot read the image: {reason}"))),
    };
    let Some(frame) = RgbView::new(w, h, &rgb) else {
        return Ok(Outcome::Bad(format!(
            "decoded {} bytes for a {w}×{h} image",
            rgb.len()
        )));
    };
    let models = match models {
        Some(m) => m,
        None => models.insert(Models::load(options)?),
    };
    let mut faces: Vec<FaceRow> = Vec::new();
    for upsample in [0, 1] {
        if upsample > 0 && (!faces.is_empty() || w.min(h) >= SMALL_SIDE) {
            break;
        }
        let finder = models.finder(detect_width(w, h, upsample), upsample)?;
        faces = match finder.faces(&frame) {
            Ok(faces) => faces,
            Err(e) => {
                return Ok(Outcome::Bad(format!(
                    "face detection failed: {}",
                    kao_record::cli::one_line(&e)
                )));
            }
        };
    }
    let faces_found = faces.len();
    let Some(face) = faces
        .into_iter()
        .max_by(|a, b| (a.w * a.h).total_cmp(&(b.w * b.h)))
    else {
        return Ok(Outcome::NoFace);
    };
    let Some(patch) = RgbView::new(face.patch_w as usize, face.patch_h as usize, &face.patch)
    else {
        return Ok(Outcome::Bad("the face patch has the wrong size".into()));
    };
    let (ox, oy) = (face.patch_x as f32, face.patch_y as f32);
    let marks: Vec<(f32, f32)> = face
        .landmarks
        .chunks_exact(2)
        .map(|p| (p[0] - ox, p[1] - oy))
        .collect();
    let chips = match models.embedder.chips(&patch, &marks, 0) {
        Ok(chips) => chips,
        Err(e) => {
            return Ok(Outcome::Bad(format!(
                "cannot align the face: {}",
                kao_record::cli::one_line(&e)
            )));
        }
    };
    let embedding = models
        .embedder
        .embed(&chips)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the embedder returned nothing"))?;
    Ok(Outcome::Face {
        embedding,
        faces_found,
        bbox: [face.x, face.y, face.w, face.h],
    })
}

/// Enrolls reference photos: the embedding of each photo's face (the largest when there are
/// several, with a warning), from the cache when the same photo was enrolled before with the
/// same models and options. The networks are loaded only when a photo misses the cache.
///
/// A photo without a face, or one that cannot be decoded, fails the enrollment with one line
/// naming it, or with [`EnrollOptions::skip_bad`] is listed in [`Enrollment::skipped`]. Cache
/// problems are warnings, never errors.
pub fn enroll(refs: &[Reference], options: &EnrollOptions) -> Result<Enrollment> {
    let mut enrollment = Enrollment::default();
    let mut cache = match &options.cache {
        Some(dir) => match std::fs::create_dir_all(dir) {
            Ok(()) => Some(Cache {
                dir: dir.clone(),
                recipe: recipe_key(options)?,
                writable: true,
            }),
            Err(e) => {
                enrollment.warnings.push(format!(
                    "{}: cannot create the reference cache ({}); continuing without it",
                    dir.display(),
                    io_reason(&e)
                ));
                None
            }
        },
        None => None,
    };
    let mut models: Option<Models> = None;
    for reference in refs {
        let path = &reference.path;
        let started = Instant::now();
        let (sha256, outcome) = match std::fs::read(path) {
            Ok(bytes) => {
                let sha256 = hex(&Sha256::digest(&bytes));
                drop(bytes);
                match cache.as_ref().and_then(|c| c.get(&sha256)) {
                    Some(outcome) => {
                        enrollment.from_cache += 1;
                        (sha256, outcome)
                    }
                    None => {
                        let outcome = analyse(path, &mut models, options)?;
                        if let Some(c) = cache.as_mut() {
                            c.put(&sha256, &outcome, &mut enrollment.warnings);
                        }
                        (sha256, outcome)
                    }
                }
            }
            Err(e) => (String::new(), Outcome::Bad(io_reason(&e))),
        };
        tracing::debug!(
            "{}: {:?} in {:.2} s",
            path.display(),
            outcome_summary(&outcome),
            started.elapsed().as_secs_f64()
        );
        let reason = match outcome {
            Outcome::Face {
                embedding,
                faces_found,
                ..
            } => {
                if faces_found > 1 {
                    enrollment.warnings.push(format!(
                        "{}: {faces_found} faces in reference photo; using the largest",
                        path.display()
                    ));
                }
                enrollment.faces.push(EnrolledFace {
                    name: reference.name.clone(),
                    path: path.clone(),
                    sha256,
                    embedding,
                    faces_found,
                });
                continue;
            }
            Outcome::NoFace => "no face found in reference photo".to_string(),
            Outcome::Bad(reason) => reason,
        };
        if !options.skip_bad {
            bail!("{}: {reason}", path.display());
        }
        enrollment.skipped.push((path.clone(), reason));
    }
    Ok(enrollment)
}

/// A short description of an outcome for debug logs.
fn outcome_summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Face { faces_found, .. } => format!("{faces_found} face(s)"),
        Outcome::NoFace => "no face".into(),
        Outcome::Bad(reason) => reason.clone(),
    }
}

/// The enrolled photos for provenance: `[{"name", "file", "sha256"}, ...]`.
pub fn describe(enrollment: &Enrollment) -> serde_json::Value {
    enrollment
        .faces
        .iter()
        .map(|f| serde_json::json!({ "name": f.name, "file": f.path.display().to_string(), "sha256": f.sha256 }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, b"x").unwrap();
    }

    fn names(refs: &[Reference], root: &Path) -> Vec<(String, String)> {
        refs.iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.path
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn refs_naming_rules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "obama_default.png",
            "obama_1.JPG",
            "biden.jpeg",
            "x_y_z.webp",
            "a.tif",
            "b.TIFF",
            "c.bmp",
            "d.avif",
            "e.jfif",
            "f.HEIC",
            ".hidden.jpg",
            "notes.txt",
            "noext",
            "katy/img42.jpg",
            "katy/img_7.png",
            "katy/readme.md",
            "katy/.thumb.jpg",
            "katy/deeper/ignored.jpg",
            ".secret/ignored.jpg",
        ] {
            touch(&root.join(f));
        }
        let refs = collect(&[root.to_path_buf()]).unwrap();
        assert_eq!(
            names(&refs, root),
            pairs(&[
                ("a", "a.tif"),
                ("b", "b.TIFF"),
                ("biden", "biden.jpeg"),
                ("c", "c.bmp"),
                ("d", "d.avif"),
                ("e", "e.jfif"),
                ("katy", "katy/img42.jpg"),
                ("katy", "katy/img_7.png"),
                ("obama", "obama_1.JPG"),
                ("obama", "obama_default.png"),
                ("x", "x_y_z.webp"),
            ])
        );
        // An explicit file uses the file-name rule; the same photo twice is listed once.
        let file = root.join("katy/img_7.png");
        let refs = collect(&[file.clone(), file.clone(), root.join("biden.jpeg")]).unwrap();
        assert_eq!(
            names(&refs, root),
            pairs(&[("biden", "biden.jpeg"), ("img", "katy/img_7.png")])
        );
        // A sub-folder passed directly: its images use the file-name rule, its own
        // sub-folders name theirs.
        let refs = collect(&[root.join("katy")]).unwrap();
        assert_eq!(
            names(&refs, root),
            pairs(&[
                ("deeper", "katy/deeper/ignored.jpg"),
                ("img", "katy/img_7.png"),
                ("img42", "katy/img42.jpg")
            ])
        );
        // A name starting with `_` keeps its stem.
        touch(&root.join("solo/_x.png"));
        assert_eq!(
            names(&collect(&[root.join("solo/_x.png")]).unwrap(), root),
            pairs(&[("_x", "solo/_x.png")])
        );
    }

    #[test]
    fn refs_collect_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let missing = root.join("nope");
        let e = collect(std::slice::from_ref(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&missing.display().to_string()) && e.contains("no such file"),
            "{e}"
        );
        assert!(!e.contains('\n'));

        let empty = root.join("empty");
        touch(&empty.join("notes.txt"));
        touch(&empty.join(".hidden.png"));
        touch(&empty.join("a/b/too-deep.jpg"));
        let e = collect(std::slice::from_ref(&empty))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&empty.display().to_string()) && e.contains("no reference images"),
            "{e}"
        );

        // HEIC photos are named with the way to convert them, whether alone in a folder or
        // given directly.
        let heic = root.join("iphone");
        touch(&heic.join("IMG_0001.HEIC"));
        touch(&heic.join("katy/IMG_0002.heif"));
        for given in [heic.clone(), heic.join("IMG_0001.HEIC")] {
            let e = collect(std::slice::from_ref(&given))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&given.display().to_string()) && e.contains("heif-convert"),
                "{e}"
            );
            assert!(!e.contains('\n'));
        }
        assert!(
            collect(std::slice::from_ref(&heic))
                .unwrap_err()
                .to_string()
                .contains("only HEIC photos (2)")
        );

        let text = empty.join("notes.txt");
        let e = collect(std::slice::from_ref(&text))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&text.display().to_string()) && e.contains("not an image"),
            "{e}"
        );
    }

    #[test]
    fn refs_names_that_collide_with_the_output_are_refused() {
        for bad in ["manifest.parquet", "unknown", "report.html", ".kao-lock"] {
            let dir = tempfile::tempdir().unwrap();
            let folder = dir.path().join("refs");
            touch(&folder.join(bad).join("a.jpg"));
            // Hidden folders are skipped, so `.kao-lock` is checked as a file given directly.
            let given = if bad.starts_with('.') {
                let file = dir.path().join(format!("{bad}.jpg"));
                touch(&file);
                file
            } else {
                folder
            };
            let e = collect(&[given]).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{bad}` cannot name a person")),
                "{bad}: {e}"
            );
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn refs_one_photo_never_names_two_people() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("katy_perry/a.jpg"));
        std::os::unix::fs::symlink(root.join("katy_perry"), root.join("katy")).unwrap();
        let e = collect(&[root.to_path_buf()]).unwrap_err().to_string();
        assert!(
            e.contains("are the same photo") && e.contains("`katy`") && e.contains("`katy_perry`"),
            "{e}"
        );
        // The same folder given twice, or linked under the same name: one reference.
        std::fs::remove_file(root.join("katy")).unwrap();
        let twice = collect(&[
            root.join("katy_perry/a.jpg"),
            root.join("katy_perry/./a.jpg"),
        ]);
        assert_eq!(twice.unwrap().len(), 1);
    }

    #[test]
    fn refs_names_must_be_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for raw in [&b"caf\xe9"[..], &b"caf\xe8"[..]] {
            touch(&root.join(std::ffi::OsStr::from_bytes(raw)).join("a.jpg"));
        }
        let e = collect(&[root.to_path_buf()]).unwrap_err().to_string();
        assert!(e.contains("not valid UTF-8"), "{e}");
    }

    #[test]
    fn refs_detect_width_stays_within_the_detector_limit() {
        // Typical photos share the default width.
        assert_eq!(detect_width(910, 1137, 0), DETECT_WIDTH);
        assert_eq!(detect_width(4000, 3000, 0), DETECT_WIDTH);
        assert_eq!(detect_width(3024, 4032, 0), DETECT_WIDTH);
        assert_eq!(detect_width(480, 720, 1), DETECT_WIDTH);
        for (w, h, up) in [
            (1000, 9000, 0),
            (300, 20000, 0),
            (500, 3000, 1),
            (590, 1900, 1),
            (30, 100000, 0),
        ] {
            let dw = detect_width(w, h, up);
            assert!((1..DETECT_WIDTH).contains(&dw), "{w}×{h}: {dw}");
            let dh = (h as f64 * dw as f64 / w as f64).round() as usize;
            let (uw, uh) = (0..up).fold((dw, dh), |(a, b), _| (2 * a + 2, 2 * b + 1));
            assert!(uw * uh <= MAX_PIXELS, "{w}×{h} up {up}: {uw}×{uh}");
        }
    }

    /// A photo from `tests/fixtures/photos/` (made by scripts/fixtures.sh).
    fn photo(name: &str) -> PathBuf {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/photos")
            .join(name);
        assert!(
            path.is_file(),
            "missing fixture {}: run scripts/fixtures.sh (scripts/test.sh does)",
            path.display()
        );
        path
    }

    fn options(cache: &Path) -> EnrollOptions {
        EnrollOptions {
            embedder: EmbedderSpec::default(),
            jitters: 2,
            seed: 7,
            skip_bad: false,
            cache: Some(cache.to_path_buf()),
            device: Device::cpu(),
        }
    }

    fn distance(a: &[f32], b: &[f32]) -> f32 {
        kao_record::Metric::Euclidean.distance(a, b)
    }

    /// A flat grey PNG (no face).
    fn grey_png(path: &Path) {
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = png::Encoder::new(file, 160, 120);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(&[128u8; 160 * 120 * 3])
            .unwrap();
    }

    #[test]
    fn refs_enroll_caches_and_never_reuses_a_stale_vector() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let photo_path = dir.path().join("refs/barack_1.jpg");
        std::fs::create_dir_all(photo_path.parent().unwrap()).unwrap();
        std::fs::copy(photo("obama.jpg"), &photo_path).unwrap();
        let refs = collect(&[dir.path().join("refs")]).unwrap();
        assert_eq!(
            refs,
            vec![Reference {
                name: "barack".into(),
                path: photo_path.clone()
            }]
        );

        let first = enroll(&refs, &options(&cache)).unwrap();
        assert_eq!(first.faces.len(), 1);
        assert_eq!(first.from_cache, 0);
        let face = &first.faces[0];
        assert_eq!((face.name.as_str(), face.faces_found), ("barack", 1));
        assert_eq!(face.sha256.len(), 64);
        assert!(
            first.warnings.is_empty() && first.skipped.is_empty(),
            "{first:?}"
        );
        let norm = face.embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
        // dlib's descriptors are not normalised; their norms are around 1.4.
        assert!(
            norm.is_finite() && (0.5..3.0).contains(&norm),
            "norm {norm}"
        );
        assert_eq!(
            describe(&first),
            serde_json::json!([{ "name": "barack", "file": photo_path.display().to_string(), "sha256": face.sha256 }])
        );

        // Same photo, same options: from the cache, the same vector.
        let second = enroll(&refs, &options(&cache)).unwrap();
        assert_eq!(second.from_cache, 1);
        assert_eq!(second.faces, first.faces);

        // Other jitters: another key, computed afresh.
        let other = enroll(
            &refs,
            &EnrollOptions {
                jitters: 3,
                ..options(&cache)
            },
        )
        .unwrap();
        assert_eq!(other.from_cache, 0);
        assert!(distance(&other.faces[0].embedding, &face.embedding) < 0.1);

        // A corrupt entry is ignored and rewritten.
        let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert!(
            entries
                .iter()
                .all(|p| p.extension().is_some_and(|e| e == "json"))
        );
        for entry in &entries {
            std::fs::write(entry, b"{ not json").unwrap();
        }
        let third = enroll(&refs, &options(&cache)).unwrap();
        assert_eq!(third.from_cache, 0);
        assert_eq!(third.faces, first.faces);
        assert_eq!(enroll(&refs, &options(&cache)).unwrap().from_cache, 1);

        // The photo replaced by another person's: a new embedding, not the cached one.
        std::fs::copy(photo("biden.jpg"), &photo_path).unwrap();
        let replaced = enroll(&refs, &options(&cache)).unwrap();
        assert_eq!(replaced.from_cache, 0);
        assert_ne!(replaced.faces[0].sha256, face.sha256);
        let d = distance(&replaced.faces[0].embedding, &face.embedding);
        assert!(d > 0.6, "obama vs biden distance {d}");
    }

    #[test]
    fn refs_enroll_photo_without_face_fails_or_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let grey = dir.path().join("grey_1.png");
        grey_png(&grey);
        let refs = collect(std::slice::from_ref(&grey)).unwrap();
        let e = enroll(&refs, &options(&cache)).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("{}: no face found in reference photo", grey.display())
        );

        let skipped = enroll(
            &refs,
            &EnrollOptions {
                skip_bad: true,
                ..options(&cache)
            },
        )
        .unwrap();
        assert!(skipped.faces.is_empty());
        assert_eq!(
            skipped.skipped,
            vec![(grey.clone(), "no face found in reference photo".to_string())]
        );
        // The no-face result is cached too.
        assert_eq!(skipped.from_cache, 1);
    }

    #[test]
    fn refs_a_truncated_photo_is_not_enrolled() {
        let dir = tempfile::tempdir().unwrap();
        let whole = std::fs::read(photo("obama.jpg")).unwrap();
        let cut = dir.path().join("obama_cut.jpg");
        std::fs::write(&cut, &whole[..whole.len() * 6 / 10]).unwrap();
        let opts = EnrollOptions {
            skip_bad: true,
            jitters: 1,
            ..options(&dir.path().join("cache"))
        };
        let out = enroll(&collect(std::slice::from_ref(&cut)).unwrap(), &opts).unwrap();
        assert!(out.faces.is_empty());
        assert_eq!(out.skipped.len(), 1);
        assert!(out.skipped[0].1.contains("truncated"), "{:?}", out.skipped);
    }

    #[test]
    fn refs_enroll_undecodable_photo_and_unusable_cache() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("broken.jpg");
        std::fs::write(&bad, b"this is not a jpeg").unwrap();
        // A cache folder under a regular file cannot be created: a warning, not an error.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let opts = EnrollOptions {
            skip_bad: true,
            ..options(&blocker.join("cache"))
        };
        let refs = collect(std::slice::from_ref(&bad)).unwrap();
        let out = enroll(&refs, &opts).unwrap();
        assert!(out.faces.is_empty());
        assert_eq!(out.skipped.len(), 1);
        assert_eq!(out.skipped[0].0, bad);
        assert!(
            out.skipped[0].1.starts_with("cannot read the image"),
            "{:?}",
            out.skipped
        );
        assert_eq!(out.warnings.len(), 1);
        assert!(
            out.warnings[0].contains("cannot create the reference cache"),
            "{:?}",
            out.warnings
        );

        let e = enroll(
            &refs,
            &EnrollOptions {
                skip_bad: false,
                ..opts
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read the image", bad.display())),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
