//! FACE01's `config.ini`: a reader that follows Python's `configparser` (the way FACE01 reads the
//! file, `face01lib/Initialize.py`) and a mapping of one section onto kao's options.
//!
//! # Reading
//! [`read`] and [`Config::parse`] follow `configparser.ConfigParser()` with its defaults:
//! `[NAME]` section headers (names are case-sensitive, kept as written), a `[DEFAULT]` section
//! whose keys every section inherits, `key = value` and `key: value` lines (the first `=` or `:`
//! splits; keys are case-insensitive and stored lowercased), whole-line comments starting with
//! `#` or `;` (indented ones too; there are no inline comments), values continued on following
//! lines indented deeper than their key (joined with newlines; blank lines inside are kept,
//! trailing ones dropped), empty values (`user =`), and strict mode: a section or a key given
//! twice in one section is an error (`[DEFAULT]` itself may appear twice, its keys may not).
//! Values are interpolated when read ([`Section::get`]): `%(name)s` is the value of `name` in the
//! same section or `[DEFAULT]`, `%%` is `%`, up to 10 levels deep. Booleans are
//! `1/yes/true/on` and `0/no/false/off`, any case. Every error is one line naming the file and,
//! where there is one, the line.
//!
//! # Mapping
//! [`map`] turns a section into kao's settings ([`Mapping`]). Every key lands in exactly one of
//! [`Mapping::mapped`] (it sets a kao option, or kao does what it asks), [`Mapping::ignored`]
//! (it has no effect in kao: FACE01's preview window, keys FACE01 reads without effect, keys
//! whose only effect needs another key, keys at an inactive value) or a refusal (an
//! [`Error::Refused`] naming every such key; a key at its inactive value is never refused);
//! [`Mapping::warnings`] says, one line per key, where kao's result will differ from FACE01's,
//! and names unknown keys ("unknown key, ignored"). Values of ignored keys are not checked.
//!
//! | key | kao |
//! |---|---|
//! | `deep_learning_model` | 0 → dlib; 1 → JAPANESE FACE V1 ([`EmbedderSetting::Face01V1`], model file from FACE01's tree when it is there); other values refused |
//! | `similar_percentage` | `--similar-percentage`, and [`Mapping::threshold`] on the embedder's curve ([`crate::matching::similar`]); out of the curve's range: error. dlib: warning (FACE01_DEV's current code solves another curve) |
//! | `jitters` | `--jitters` for dlib; ignored for JAPANESE FACE V1 (warning when > 1: FACE01 ignores it too) |
//! | `use_pipe` | chooses the detector family: true → BlazeFace, false → MMOD |
//! | `model_selection` | with `use_pipe`: 0 (or unset) → `blazeface`, 1 → `blazeface-full`, others: error; else ignored |
//! | `min_detection_confidence` | with `use_pipe`: `--min-score` (0..=1); else ignored |
//! | `mode` | without `use_pipe`: `mmod` (`cnn`; any other value is HOG in FACE01: `mmod` with a warning); else ignored |
//! | `upsampling` | with MMOD: `--upsample`; else ignored |
//! | `set_width` | `--detect-width`, with a warning (kao embeds and crops from native pixels) |
//! | `frame_skip` | `--every N+1`: FACE01 keeps one frame in N+1 of a file or stream (its first kept frame is frame N−1, kao's frame 0); for `usb` and http URLs, whose loop keeps one in N−1, `--every max(N−1, 1)` |
//! | `movie` | the input: a file (relative to the config file's folder), `usb` → `/dev/video0` (warning), a URL (http: warning); empty: warning |
//! | `user`, `passwd` | put into the `movie` URL as `user:passwd@` (percent-encoded); ignored for files and cameras |
//! | `set_area` | `NONE`: ignored; a crop area: warning (kao looks at the whole frame) |
//! | `number_of_people` | warning: FACE01 skips frames with this many faces or more, kao does not (not refused: it only drops frames, so kao's crops are a superset, and the shipped `[DEFAULT]` sets it, so refusing it would refuse every section) |
//! | `crop_face_image` | true: mapped (kao writes crops); false: warning (kao writes them anyway) |
//! | `frequency_crop_image` | warning when crops are on: kao keeps crops by difference, not one in N+2 |
//! | `person_frame_face_encoding` | false: ignored; true with `use_pipe`: warning; true without: refused (FACE01 stops too) |
//! | `anti_spoof`, `detect_eye_blinks` | false: ignored; true: refused (kao has no spoof or blink check) |
//! | `number_of_blinks`, `EAR_THRESHOLD_CLOSE`, `EAR_THRESHOLD_OPEN` | ignored (blink check only) |
//! | `headless`, `rectangle`, `target_rectangle`, `show_overlay`, `alpha`, `show_percentage`, `show_name`, `draw_telop_and_logo`, `default_face_image_draw`, `show_video` | ignored (preview window) |
//! | `preset_face_images_jitters`, `same_time_recognize`, `output_debug_log`, `log_level`, `number_of_crops`, `crop_with_multithreading`, `Python_version`, `cpu_freq`, `cpu_count`, `memory`, `gpu_check`, `calculate_time`, `RootDir` | ignored (no effect on FACE01's result either) |
//!
//! The reference photos are FACE01's `preset_face_images/` folder next to `config.ini`
//! ([`Mapping::references`]): FACE01 reads `config.ini` from its own root folder and takes the
//! photos from `<root>/preset_face_images/` whatever `RootDir` says (it overwrites `RootDir`
//! with that folder), and it opens a relative `movie` from there too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::matching::similar::Curve;

/// The section every other section inherits from.
pub const DEFAULT_SECTION: &str = "DEFAULT";

/// configparser's `MAX_INTERPOLATION_DEPTH`.
const MAX_INTERPOLATION_DEPTH: usize = 10;

/// Where FACE01 loads JAPANESE FACE V1 from, relative to its root (the folder of `config.ini`).
pub const FACE01_V1_MODEL_PATH: &str = "face01lib/models/JAPANESE_FACE_V1.onnx";

/// FACE01's reference photo folder, relative to its root (the folder of `config.ini`).
pub const PRESET_FACE_IMAGES: &str = "preset_face_images";

/// The camera kao opens for FACE01's `movie = usb`.
pub const USB_CAMERA: &str = "/dev/video0";

/// Keys that only drive FACE01's preview window.
const DISPLAY_KEYS: &[&str] = &[
    "headless",
    "rectangle",
    "target_rectangle",
    "show_overlay",
    "alpha",
    "show_percentage",
    "show_name",
    "draw_telop_and_logo",
    "default_face_image_draw",
    "show_video",
];

/// Keys FACE01 reads without effect on what it finds (or that only tune how it runs).
const NO_EFFECT_KEYS: &[&str] = &[
    "preset_face_images_jitters",
    "same_time_recognize",
    "output_debug_log",
    "log_level",
    "number_of_crops",
    "crop_with_multithreading",
    "python_version",
    "cpu_freq",
    "cpu_count",
    "memory",
    "gpu_check",
    "calculate_time",
    "rootdir",
    "number_of_blinks",
    "ear_threshold_close",
    "ear_threshold_open",
];

/// Keys [`map`] decides on one by one.
const DECIDED_KEYS: &[&str] = &[
    "deep_learning_model",
    "similar_percentage",
    "jitters",
    "use_pipe",
    "model_selection",
    "min_detection_confidence",
    "mode",
    "upsampling",
    "set_width",
    "frame_skip",
    "movie",
    "user",
    "passwd",
    "set_area",
    "number_of_people",
    "crop_face_image",
    "frequency_crop_image",
    "person_frame_face_encoding",
    "anti_spoof",
    "detect_eye_blinks",
];

/// FACE01's `set_area` crop areas besides `NONE`.
const SET_AREAS: &[&str] = &[
    "TOP_LEFT",
    "TOP_RIGHT",
    "BOTTOM_LEFT",
    "BOTTOM_RIGHT",
    "CENTER",
];

/// A key's value as written, with where it was written.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    /// The raw value (continuation lines joined with `\n`), before interpolation.
    value: String,
    /// The line of the key.
    line: usize,
    /// The section the key was written in (`DEFAULT` for inherited keys).
    section: String,
}

/// A parsed `config.ini`.
#[derive(Clone, Debug)]
pub struct Config {
    path: PathBuf,
    defaults: BTreeMap<String, Entry>,
    sections: Vec<(String, BTreeMap<String, Entry>)>,
}

/// Reads and parses a `config.ini` (UTF-8, as FACE01 reads it).
pub fn read(path: impl AsRef<Path>) -> Result<Config, Error> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        Error::Syntax {
            path: path.to_path_buf(),
            line: valid.iter().filter(|b| **b == b'\n').count() + 1,
            message: "not UTF-8 text".to_string(),
        }
    })?;
    Config::parse(&text, path)
}

impl Config {
    /// Parses `text`; `path` names the file in errors and anchors relative paths in [`map`].
    pub fn parse(text: &str, path: impl Into<PathBuf>) -> Result<Config, Error> {
        let path = path.into();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let syntax = |line: usize, message: &str| Error::Syntax {
            path: path.clone(),
            line,
            message: message.to_string(),
        };

        /// Keys and their value lines while reading, per section.
        type Raw = BTreeMap<String, (Vec<String>, usize)>;
        let mut defaults: Raw = BTreeMap::new();
        let mut sections: Vec<(String, Raw)> = Vec::new();
        // None: before any header; Some(None): DEFAULT; Some(Some(i)): sections[i].
        let mut current: Option<Option<usize>> = None;
        let mut current_name = String::new();
        let mut keys_seen: BTreeSet<(String, String)> = BTreeSet::new();
        let mut option: Option<String> = None;
        let mut indent_level = usize::MAX;

        for (index, raw_line) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
            let stripped = line.trim();
            let comment = stripped.starts_with('#') || stripped.starts_with(';');
            let value = if comment { "" } else { stripped };
            if value.is_empty() {
                // A blank line inside a value is part of it; a comment line is not.
                if !comment && let (Some(cur), Some(key)) = (current, option.as_ref()) {
                    let raw = match cur {
                        None => &mut defaults,
                        Some(i) => &mut sections[i].1,
                    };
                    if let Some((parts, _)) = raw.get_mut(key) {
                        parts.push(String::new());
                    }
                }
                continue;
            }
            let indent = line.chars().take_while(|c| c.is_whitespace()).count();
            if let (Some(cur), Some(key)) = (current, option.as_ref())
                && indent > indent_level
            {
                let raw = match cur {
                    None => &mut defaults,
                    Some(i) => &mut sections[i].1,
                };
                if let Some((parts, _)) = raw.get_mut(key) {
                    parts.push(value.to_string());
                }
                continue;
            }
            indent_level = indent;
            if let Some(name) = section_header(value) {
                if name == DEFAULT_SECTION {
                    current = Some(None);
                } else if sections.iter().any(|(n, _)| n == name) {
                    return Err(Error::Duplicate {
                        path,
                        line: line_no,
                        section: name.to_string(),
                        key: None,
                    });
                } else {
                    sections.push((name.to_string(), BTreeMap::new()));
                    current = Some(Some(sections.len() - 1));
                }
                current_name = name.to_string();
                option = None;
                continue;
            }
            let Some(cur) = current else {
                return Err(syntax(line_no, "a key before the first [section] header"));
            };
            let Some(split) = value.find(['=', ':']) else {
                return Err(syntax(
                    line_no,
                    "not a [section] header, a `key = value` line or a comment",
                ));
            };
            let key = value[..split].trim_end();
            if key.is_empty() {
                return Err(syntax(line_no, "a value without a key"));
            }
            let key = key.to_lowercase();
            if !keys_seen.insert((current_name.clone(), key.clone())) {
                return Err(Error::Duplicate {
                    path,
                    line: line_no,
                    section: current_name,
                    key: Some(key),
                });
            }
            let raw = match cur {
                None => &mut defaults,
                Some(i) => &mut sections[i].1,
            };
            raw.insert(
                key.clone(),
                (vec![value[split + 1..].trim().to_string()], line_no),
            );
            option = Some(key);
        }

        let finish = |raw: Raw, section: &str| -> BTreeMap<String, Entry> {
            raw.into_iter()
                .map(|(key, (parts, line))| {
                    let value = parts.join("\n").trim_end().to_string();
                    (
                        key,
                        Entry {
                            value,
                            line,
                            section: section.to_string(),
                        },
                    )
                })
                .collect()
        };
        Ok(Config {
            defaults: finish(defaults, DEFAULT_SECTION),
            sections: sections
                .into_iter()
                .map(|(name, raw)| {
                    let e = finish(raw, &name);
                    (name, e)
                })
                .collect(),
            path,
        })
    }

    /// The file this was read from (as given).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The section names in file order, without `DEFAULT` (like configparser's `sections()`).
    pub fn sections(&self) -> Vec<&str> {
        self.sections
            .iter()
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// One section with the `[DEFAULT]` keys it inherits (`DEFAULT` gives those alone). Names
    /// are case-sensitive; a missing section is an error listing the ones there are.
    pub fn section(&self, name: &str) -> Result<Section, Error> {
        let mut entries = self.defaults.clone();
        if name != DEFAULT_SECTION {
            let Some((_, own)) = self.sections.iter().find(|(n, _)| n == name) else {
                return Err(Error::NoSection {
                    path: self.path.clone(),
                    name: name.to_string(),
                    available: std::iter::once(DEFAULT_SECTION.to_string())
                        .chain(self.sections.iter().map(|(n, _)| n.clone()))
                        .collect(),
                });
            };
            entries.extend(own.iter().map(|(k, e)| (k.clone(), e.clone())));
        }
        Ok(Section {
            path: self.path.clone(),
            name: name.to_string(),
            entries,
        })
    }
}

/// Tells whether a stripped line is a `[name]` header (configparser's `\[(?P<header>.+)\]`:
/// from the first `[` to the last `]`, at least one character between) and returns the name.
fn section_header(value: &str) -> Option<&str> {
    let rest = value.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    (end > 0).then(|| &rest[..end])
}

/// One section of a [`Config`], with the `[DEFAULT]` keys it inherits.
#[derive(Clone, Debug)]
pub struct Section {
    path: PathBuf,
    name: String,
    entries: BTreeMap<String, Entry>,
}

impl Section {
    /// The section's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the section was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The section's keys (lowercased, inherited ones included), in the order of their lines.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<(&str, usize)> = self
            .entries
            .iter()
            .map(|(k, e)| (k.as_str(), e.line))
            .collect();
        keys.sort_by_key(|&(k, line)| (line, k));
        keys.into_iter().map(|(k, _)| k).collect()
    }

    /// The line of `key` (of `[DEFAULT]`'s for an inherited key).
    pub fn line(&self, key: &str) -> Option<usize> {
        self.entries.get(&key.to_lowercase()).map(|e| e.line)
    }

    /// `key`'s value as written, without interpolation.
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.entries
            .get(&key.to_lowercase())
            .map(|e| e.value.as_str())
    }

    /// `key`'s value with `%(name)s` and `%%` interpolated; `None` when the key is not set.
    pub fn get(&self, key: &str) -> Result<Option<String>, Error> {
        let key = key.to_lowercase();
        let Some(entry) = self.entries.get(&key) else {
            return Ok(None);
        };
        let mut out = String::new();
        self.interpolate(&key, entry, &entry.value, &mut out, 1)?;
        Ok(Some(out))
    }

    /// configparser's `BasicInterpolation._interpolate_some`.
    fn interpolate(
        &self,
        key: &str,
        entry: &Entry,
        mut rest: &str,
        out: &mut String,
        depth: usize,
    ) -> Result<(), Error> {
        if depth > MAX_INTERPOLATION_DEPTH {
            return Err(self.value_error(
                key,
                entry,
                "`%(name)s` references nested more than 10 deep (a loop?)",
            ));
        }
        while !rest.is_empty() {
            let Some(p) = rest.find('%') else {
                out.push_str(rest);
                return Ok(());
            };
            out.push_str(&rest[..p]);
            rest = &rest[p..];
            match rest[1..].chars().next() {
                Some('%') => {
                    out.push('%');
                    rest = &rest[2..];
                }
                Some('(') => {
                    let after = &rest[2..];
                    let name = match after.find(')') {
                        Some(end) if end > 0 && after[end + 1..].starts_with('s') => {
                            let name = after[..end].to_lowercase();
                            rest = &after[end + 2..];
                            name
                        }
                        _ => {
                            return Err(self.value_error(
                                key,
                                entry,
                                &format!("bad `%(name)s` reference at `{}`", shown(key, rest)),
                            ));
                        }
                    };
                    let Some(target) = self.entries.get(&name) else {
                        return Err(self.value_error(
                            key,
                            entry,
                            &format!(
                                "`%({name})s` refers to a key that is not set in [{}] or [DEFAULT]",
                                self.name
                            ),
                        ));
                    };
                    if target.value.contains('%') {
                        self.interpolate(key, entry, &target.value, out, depth + 1)?;
                    } else {
                        out.push_str(&target.value);
                    }
                }
                _ => {
                    return Err(self.value_error(
                        key,
                        entry,
                        &format!("'%' must be followed by '%' or '(' (write %% for a percent sign), found `{}`", shown(key, rest)),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `key` as a boolean (`1/yes/true/on`, `0/no/false/off`, any case).
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, Error> {
        self.get_parsed(
            key,
            "a boolean (1/yes/true/on or 0/no/false/off)",
            |v| match v.to_lowercase().as_str() {
                "1" | "yes" | "true" | "on" => Some(true),
                "0" | "no" | "false" | "off" => Some(false),
                _ => None,
            },
        )
    }

    /// `key` as a whole number (like Python's `int()`: surrounding spaces, a sign, `_` between
    /// digits).
    pub fn get_int(&self, key: &str) -> Result<Option<i64>, Error> {
        self.get_parsed(key, "a whole number", |v| {
            let v = v.trim();
            let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
            if digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
                return None;
            }
            v.replace('_', "").parse().ok()
        })
    }

    /// `key` as a number (like Python's `float()` for plain decimal and exponent forms).
    pub fn get_float(&self, key: &str) -> Result<Option<f64>, Error> {
        self.get_parsed(key, "a number", |v| v.trim().parse::<f64>().ok())
    }

    /// The interpolated value parsed by `parse`; an error naming `expected` when it fails.
    fn get_parsed<T>(
        &self,
        key: &str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        let Some(value) = self.get(key)? else {
            return Ok(None);
        };
        match parse(&value) {
            Some(v) => Ok(Some(v)),
            None => Err(self.value_error(
                key,
                &self.entries[&key.to_lowercase()],
                &format!("not {expected}"),
            )),
        }
    }

    /// A one-line error about `key`'s value.
    fn value_error(&self, key: &str, entry: &Entry, message: &str) -> Error {
        Error::Value(Box::new(ValueError {
            path: self.path.clone(),
            line: entry.line,
            section: entry.section.clone(),
            key: key.to_lowercase(),
            value: shown(key, &entry.value),
            message: message.to_string(),
        }))
    }
}

/// Which embedder a section asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedderSetting {
    /// dlib's ResNet (`deep_learning_model = 0`): kao's `--embedder dlib`.
    Dlib,
    /// JAPANESE FACE V1 (`deep_learning_model = 1`): kao's `--embedder face01-v1:PATH`.
    ///
    /// FACE01 loads `face01lib/models/JAPANESE_FACE_V1.onnx` from its root; `model` is that file
    /// when it exists next to the `config.ini` read, and `None` otherwise, when the user has to
    /// name the file (no package ships it). The model is Apache-2.0 for research and
    /// non-production use; production use needs its author's terms.
    Face01V1 {
        /// The ONNX file, when found in FACE01's tree.
        model: Option<PathBuf>,
    },
}

impl EmbedderSetting {
    /// The percentage curve of this embedder.
    pub fn curve(&self) -> Curve {
        match self {
            EmbedderSetting::Dlib => Curve::Dlib,
            EmbedderSetting::Face01V1 { .. } => Curve::JapaneseFaceV1,
        }
    }

    /// The `--embedder` value (`dlib`, `face01-v1:PATH`), or `None` while the model path is
    /// missing.
    pub fn spec(&self) -> Option<String> {
        match self {
            EmbedderSetting::Dlib => Some("dlib".to_string()),
            EmbedderSetting::Face01V1 { model: Some(path) } => {
                Some(format!("face01-v1:{}", path.display()))
            }
            EmbedderSetting::Face01V1 { model: None } => None,
        }
    }
}

/// A detector of kao's (`--detector`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detector {
    /// MediaPipe BlazeFace short range (FACE01's `use_pipe` with `model_selection = 0`).
    Blazeface,
    /// MediaPipe BlazeFace full range (`use_pipe` with `model_selection = 1`).
    BlazefaceFull,
    /// dlib's MMOD CNN (FACE01's `mode = cnn`, and kao's stand-in for its HOG detector).
    Mmod,
}

impl Detector {
    /// The `--detector` value.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Blazeface => "blazeface",
            Detector::BlazefaceFull => "blazeface-full",
            Detector::Mmod => "mmod",
        }
    }
}

/// The input a section names (`movie`).
#[derive(Clone, PartialEq, Eq)]
pub enum Input {
    /// A video file; a relative `movie` is taken from the config file's folder, as FACE01 does.
    File(PathBuf),
    /// A URL (`rtsp://`, `http(s)://`, …), with `user`/`passwd` put in when given.
    Url(String),
    /// A camera device (`movie = usb`).
    Device(PathBuf),
}

impl Input {
    /// The input as kao's command line takes it (a URL keeps its password: see [`fmt::Display`]
    /// for a form to print).
    pub fn as_arg(&self) -> String {
        match self {
            Input::File(p) | Input::Device(p) => p.to_string_lossy().into_owned(),
            Input::Url(u) => u.clone(),
        }
    }
}

/// Prints the input with a URL's password replaced by `***`.
impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::File(p) | Input::Device(p) => write!(f, "{}", p.display()),
            Input::Url(u) => f.write_str(&redact(u)),
        }
    }
}

/// Debug prints the redacted form too, so a password never lands in a log.
impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::File(p) => write!(f, "File({p:?})"),
            Input::Device(p) => write!(f, "Device({p:?})"),
            Input::Url(u) => write!(f, "Url({:?})", redact(u)),
        }
    }
}

/// kao's settings from one section of FACE01's `config.ini`; `None` where the section does not
/// say (kao's default applies).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapping {
    /// `deep_learning_model`: the embedder.
    pub embedder: Option<EmbedderSetting>,
    /// `similar_percentage`, checked against the embedder's curve (dlib's without
    /// `deep_learning_model`).
    pub similar_percentage: Option<f32>,
    /// The distance threshold `similar_percentage` stands for on that curve (Euclidean for
    /// dlib, cosine distance for JAPANESE FACE V1); recompute it from `similar_percentage`
    /// when the command line picks another embedder.
    pub threshold: Option<f32>,
    /// `jitters`: jittered copies per face (dlib only).
    pub jitters: Option<u32>,
    /// `use_pipe`, `model_selection`, `mode`: the detector.
    pub detector: Option<Detector>,
    /// `min_detection_confidence` (BlazeFace only): the detector score floor.
    pub min_score: Option<f32>,
    /// `upsampling` (MMOD only).
    pub upsample: Option<u32>,
    /// `set_width`: the width detection runs at.
    pub detect_width: Option<u32>,
    /// `frame_skip`: keep one frame in this many.
    pub every: Option<u64>,
    /// `movie` (with `user`, `passwd`): the input.
    pub input: Option<Input>,
    /// FACE01's reference photos: `preset_face_images/` in the config file's folder (not
    /// checked for existence).
    pub references: Option<PathBuf>,
    /// Keys that set one of the fields above or ask for what kao does anyway, in line order.
    pub mapped: Vec<String>,
    /// One line per key where kao's result differs from FACE01's, and per unknown key.
    pub warnings: Vec<String>,
    /// Keys without effect in kao (preview window, no effect in FACE01 either, needing another
    /// key's setting, or at an inactive value), in line order.
    pub ignored: Vec<String>,
}

/// A key whose effect kao does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The key (lowercased).
    pub key: String,
    /// Its value.
    pub value: String,
    /// Its line.
    pub line: usize,
    /// Why kao cannot do what it asks.
    pub reason: String,
}

/// Maps one section onto kao's options (see the module documentation for the table).
pub fn map(section: &Section) -> Result<Mapping, Error> {
    Mapper::new(section).run()
}

/// The state of one [`map`] call.
struct Mapper<'a> {
    section: &'a Section,
    out: Mapping,
    /// (line, text) until sorted.
    warnings: Vec<(usize, String)>,
    mapped: Vec<(usize, String)>,
    ignored: Vec<(usize, String)>,
    refusals: Vec<Refusal>,
    decided: BTreeSet<String>,
}

impl<'a> Mapper<'a> {
    fn new(section: &'a Section) -> Self {
        Mapper {
            section,
            out: Mapping::default(),
            warnings: Vec::new(),
            mapped: Vec::new(),
            ignored: Vec::new(),
            refusals: Vec::new(),
            decided: BTreeSet::new(),
        }
    }

    fn line(&self, key: &str) -> usize {
        self.section.line(key).unwrap_or(0)
    }

    /// `key`'s value for a message; a password shows as `***`.
    fn raw(&self, key: &str) -> String {
        shown(key, self.section.raw(key).unwrap_or(""))
    }

    fn mapped(&mut self, key: &str) {
        if self.decided.insert(key.to_string()) {
            self.mapped.push((self.line(key), key.to_string()));
        }
    }

    fn ignored(&mut self, key: &str) {
        if self.section.raw(key).is_some() && self.decided.insert(key.to_string()) {
            self.ignored.push((self.line(key), key.to_string()));
        }
    }

    fn warn(&mut self, key: &str, message: &str) {
        let line = self.line(key);
        let text = format!("line {line}: {key} = {}: {message}", self.raw(key));
        self.warnings.push((line, text));
    }

    fn refuse(&mut self, key: &str, reason: &str) {
        self.decided.insert(key.to_string());
        self.refusals.push(Refusal {
            key: key.to_string(),
            value: self.raw(key),
            line: self.line(key),
            reason: reason.to_string(),
        });
    }

    fn value_error(&self, key: &str, message: &str) -> Error {
        self.section
            .value_error(key, &self.section.entries[key], message)
    }

    fn config_dir(&self) -> PathBuf {
        match self.section.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    fn run(mut self) -> Result<Mapping, Error> {
        let dir = self.config_dir();
        self.out.references = Some(dir.join(PRESET_FACE_IMAGES));
        self.embedding(&dir)?;
        self.detection()?;
        self.input(&dir)?;
        self.rest()?;

        for key in self.section.keys() {
            if self.decided.contains(key) {
                continue;
            }
            if DISPLAY_KEYS.contains(&key) || NO_EFFECT_KEYS.contains(&key) {
                self.ignored(key);
            } else {
                debug_assert!(!DECIDED_KEYS.contains(&key), "{key} left undecided");
                self.warn(key, "unknown key, ignored");
            }
        }
        if !self.refusals.is_empty() {
            self.refusals.sort_by_key(|r| r.line);
            return Err(Error::Refused {
                path: self.section.path.clone(),
                section: self.section.name.clone(),
                refusals: self.refusals,
            });
        }
        let sorted = |mut v: Vec<(usize, String)>| {
            v.sort_by_key(|(line, _)| *line);
            v.into_iter().map(|(_, s)| s).collect()
        };
        self.out.mapped = sorted(self.mapped);
        self.out.ignored = sorted(self.ignored);
        self.out.warnings = sorted(self.warnings);
        Ok(self.out)
    }

    /// `deep_learning_model`, `similar_percentage`, `jitters`.
    fn embedding(&mut self, dir: &Path) -> Result<(), Error> {
        if let Some(model) = self.section.get_int("deep_learning_model")? {
            match model {
                0 => {
                    self.out.embedder = Some(EmbedderSetting::Dlib);
                    self.mapped("deep_learning_model");
                }
                1 => {
                    let file = dir.join(FACE01_V1_MODEL_PATH);
                    self.out.embedder = Some(EmbedderSetting::Face01V1 {
                        model: file.is_file().then_some(file),
                    });
                    self.mapped("deep_learning_model");
                }
                _ => self.refuse(
                    "deep_learning_model",
                    "kao has FACE01's embedders 0 (dlib) and 1 (JAPANESE FACE V1) only",
                ),
            }
        }
        let curve = self
            .out
            .embedder
            .as_ref()
            .map_or(Curve::Dlib, EmbedderSetting::curve);

        if let Some(p) = self.section.get_float("similar_percentage")? {
            let p = p as f32;
            let threshold = curve
                .threshold(p)
                .map_err(|e| self.value_error("similar_percentage", &e.to_string()))?;
            self.out.similar_percentage = Some(p);
            self.out.threshold = Some(threshold);
            self.mapped("similar_percentage");
            if curve == Curve::Dlib {
                self.warn(
                    "similar_percentage",
                    &format!(
                        "kao matches within Euclidean distance {threshold:.4}, whose percentage FACE01 displays as {p} \
                         (FACE01_SAMPLE's conversion); FACE01_DEV's current code solves a logistic curve instead \
                         (99.1 → 1.27, which matches nearly any face)"
                    ),
                );
            }
        }

        if let Some(n) = self.section.get_int("jitters")? {
            let n = u32::try_from(n).map_err(|_| self.value_error("jitters", "not a count ≥ 0"))?;
            if curve == Curve::JapaneseFaceV1 {
                if n > 1 {
                    self.warn("jitters", "JAPANESE FACE V1 embeds the plain chip (FACE01 ignores jitters for it too)");
                }
                self.ignored("jitters");
            } else {
                self.out.jitters = Some(n);
                self.mapped("jitters");
            }
        }
        Ok(())
    }

    /// `use_pipe`, `model_selection`, `min_detection_confidence`, `mode`, `upsampling`,
    /// `person_frame_face_encoding`, `set_width`, `set_area`, `number_of_people`.
    fn detection(&mut self) -> Result<(), Error> {
        let use_pipe = self.section.get_bool("use_pipe")?;
        let mode = self.section.get("mode")?;
        if use_pipe.is_some() {
            self.mapped("use_pipe");
        }
        if use_pipe == Some(true) {
            let selection = self.section.get_int("model_selection")?;
            self.out.detector = Some(match selection {
                None | Some(0) => Detector::Blazeface,
                Some(1) => Detector::BlazefaceFull,
                Some(_) => {
                    return Err(self
                        .value_error("model_selection", "not 0 (short range) or 1 (full range)"));
                }
            });
            if selection.is_some() {
                self.mapped("model_selection");
            }
            if let Some(c) = self.section.get_float("min_detection_confidence")? {
                if !(0.0..=1.0).contains(&c) {
                    return Err(self.value_error("min_detection_confidence", "not between 0 and 1"));
                }
                self.out.min_score = Some(c as f32);
                self.mapped("min_detection_confidence");
            }
            for key in ["mode", "upsampling"] {
                self.ignored(key);
            }
        } else {
            if use_pipe == Some(false) || mode.is_some() {
                self.out.detector = Some(Detector::Mmod);
            }
            if let Some(mode) = &mode {
                if mode != "cnn" {
                    self.warn(
                        "mode",
                        "FACE01 runs dlib's HOG detector for any mode but `cnn`; kao has no HOG and uses MMOD \
                         (it finds more faces, small and turned ones too, and is slower)",
                    );
                }
                self.mapped("mode");
            }
            if let Some(n) = self.section.get_int("upsampling")? {
                let n = u32::try_from(n)
                    .map_err(|_| self.value_error("upsampling", "not a count ≥ 0"))?;
                if self.out.detector == Some(Detector::Mmod) {
                    self.out.upsample = Some(n);
                    self.mapped("upsampling");
                }
            }
            for key in ["model_selection", "min_detection_confidence", "upsampling"] {
                self.ignored(key);
            }
        }

        if let Some(person_frame) = self.section.get_bool("person_frame_face_encoding")? {
            if !person_frame {
                self.ignored("person_frame_face_encoding");
            } else if use_pipe == Some(true) {
                self.warn(
                    "person_frame_face_encoding",
                    "kao embeds each face from the frame (FACE01 embedded faces from a mosaic of their crops)",
                );
                self.ignored("person_frame_face_encoding");
            } else {
                self.refuse(
                    "person_frame_face_encoding",
                    "FACE01 itself stops on it without use_pipe = True",
                );
            }
        }

        if let Some(width) = self.section.get_int("set_width")? {
            let width = u32::try_from(width)
                .ok()
                .filter(|w| *w > 0)
                .ok_or_else(|| self.value_error("set_width", "not a width > 0"))?;
            self.out.detect_width = Some(width);
            self.mapped("set_width");
            self.warn(
                "set_width",
                "kao detects on the frame scaled down to this width (--detect-width) but embeds and crops from \
                 native pixels; FACE01 scaled every frame to it and did everything from the scaled frame",
            );
        }

        if let Some(area) = self.section.get("set_area")? {
            if area == "NONE" {
                // The whole frame, as kao does.
            } else if SET_AREAS.contains(&area.as_str()) {
                self.warn(
                    "set_area",
                    "FACE01 looks only at this part of each frame; kao has no crop area and looks at the whole frame",
                );
            } else {
                self.warn(
                    "set_area",
                    "not an area FACE01 knows; FACE01 then looks at the whole frame, as kao does",
                );
            }
            self.ignored("set_area");
        }

        if let Some(n) = self.section.get_int("number_of_people")? {
            self.warn(
                "number_of_people",
                &format!(
                    "FACE01 skips every frame with {n} or more faces; kao processes every frame \
                     (--max-faces keeps the highest-scoring faces of a frame instead)"
                ),
            );
            self.ignored("number_of_people");
        }
        Ok(())
    }

    /// `movie`, `user`, `passwd`, `frame_skip`.
    fn input(&mut self, dir: &Path) -> Result<(), Error> {
        let movie = self.section.get("movie")?;
        let user = self.section.get("user")?.unwrap_or_default();
        let passwd = self.section.get("passwd")?.unwrap_or_default();
        // FACE01 reads a USB camera and an http snapshot URL in a loop that keeps one frame
        // in N−1; files and rtsp in one that keeps one in N+1.
        let mut polled = false;
        match movie.as_deref() {
            None => {}
            Some("") => {
                self.warn(
                    "movie",
                    "empty (FACE01 stops); give kao the input on its command line",
                );
                self.ignored("movie");
            }
            Some(m) if m.eq_ignore_ascii_case("usb") => {
                self.out.input = Some(Input::Device(PathBuf::from(USB_CAMERA)));
                self.mapped("movie");
                self.warn(
                    "movie",
                    &format!("FACE01 takes the first of cameras 0–4 that delivers a frame; kao opens {USB_CAMERA}"),
                );
                polled = true;
            }
            Some(m) if url_scheme(m).is_some() => {
                let scheme = url_scheme(m).unwrap_or_default().to_ascii_lowercase();
                let mut url = m.to_string();
                if scheme == "http" || scheme == "https" {
                    polled = true;
                    self.warn(
                        "movie",
                        "FACE01 fetched this URL again and again as a camera's JPEG snapshot (HTTP digest auth); \
                         kao reads it once as a video or image",
                    );
                }
                if !user.is_empty() {
                    match with_credentials(m, &user, &passwd) {
                        Some(u) => {
                            url = u;
                            self.mapped("user");
                            if !passwd.is_empty() {
                                self.mapped("passwd");
                            }
                        }
                        None => self.warn(
                            "user",
                            "movie already holds credentials; user and passwd are not put in",
                        ),
                    }
                } else if !passwd.is_empty() {
                    self.warn(
                        "passwd",
                        "a password without a user is not put into the URL",
                    );
                }
                self.out.input = Some(Input::Url(url));
                self.mapped("movie");
            }
            Some(m) => {
                let path = PathBuf::from(m);
                self.out.input = Some(Input::File(if path.is_absolute() {
                    path
                } else {
                    dir.join(path)
                }));
                self.mapped("movie");
            }
        }
        for key in ["user", "passwd"] {
            self.ignored(key);
        }

        if let Some(n) = self.section.get_int("frame_skip")? {
            let every = if polled { (n - 1).max(1) } else { n.max(0) + 1 };
            self.out.every = Some(every as u64);
            self.mapped("frame_skip");
        }
        Ok(())
    }

    /// `crop_face_image`, `frequency_crop_image`, `anti_spoof`, `detect_eye_blinks`.
    fn rest(&mut self) -> Result<(), Error> {
        let crops = self.section.get_bool("crop_face_image")?;
        match crops {
            Some(true) => self.mapped("crop_face_image"),
            Some(false) => {
                self.warn(
                    "crop_face_image",
                    "kao writes crops of the matched faces anyway (FACE01 saved none)",
                );
                self.ignored("crop_face_image");
            }
            None => {}
        }
        if let Some(n) = self.section.get_int("frequency_crop_image")? {
            if crops != Some(false) {
                self.warn(
                    "frequency_crop_image",
                    &format!(
                        "FACE01 saved one face in {} (unknown faces counted too); kao keeps a crop when it differs \
                         from its track's other crops (--min-hash-bits; --max-per-track, --min-gap cap them)",
                        n.max(-1) + 2
                    ),
                );
            }
            self.ignored("frequency_crop_image");
        }
        if self.section.get_bool("anti_spoof")? == Some(true) {
            self.refuse(
                "anti_spoof",
                "kao has no anti-spoofing model (FACE01 labels each face real or spoof)",
            );
        }
        self.ignored("anti_spoof");
        if self.section.get_bool("detect_eye_blinks")? == Some(true) {
            self.refuse(
                "detect_eye_blinks",
                "kao has no blink check (FACE01 counts blinks to tell a live face)",
            );
        }
        self.ignored("detect_eye_blinks");
        Ok(())
    }
}

/// The scheme of `s` when it looks like a URL (`scheme://…`, scheme letters first).
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    (chars.next()?.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
    .then_some(scheme)
}

/// `url` with `user:passwd@` put before its host (percent-encoded); `None` when the URL
/// already has credentials.
fn with_credentials(url: &str, user: &str, passwd: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return None;
    }
    let mut userinfo = percent_encode(user);
    if !passwd.is_empty() {
        userinfo.push(':');
        userinfo.push_str(&percent_encode(passwd));
    }
    Some(format!("{scheme}://{userinfo}@{rest}"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with the password of its credentials replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    match authority[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// `value` of `key` for a message: on one line, and `***` for a password.
fn shown(key: &str, value: &str) -> String {
    if key.eq_ignore_ascii_case("passwd") && !value.is_empty() {
        "***".to_string()
    } else {
        one_line(value)
    }
}

/// `s` on one line (newlines of multi-line values written as `\n`).
fn one_line(s: &str) -> String {
    s.replace('\n', "\\n")
}

/// A value that cannot be read as what its key needs ([`Error::Value`]).
#[derive(Debug)]
pub struct ValueError {
    /// The file.
    pub path: PathBuf,
    /// The key's line.
    pub line: usize,
    /// The section the key is written in (`DEFAULT` for an inherited key).
    pub section: String,
    /// The key (lowercased).
    pub key: String,
    /// The value as written.
    pub value: String,
    /// What is wrong.
    pub message: String,
}

/// What went wrong reading or mapping a `config.ini`; every message is one line naming the file.
#[derive(Debug)]
pub enum Error {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line that is not a header, a `key = value` line or a comment (or text that is not UTF-8).
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A section, or a key within one section, given twice (configparser's strict mode).
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The second occurrence's line.
        line: usize,
        /// The section.
        section: String,
        /// The key, for a duplicate key.
        key: Option<String>,
    },
    /// A value that cannot be read as what its key needs.
    Value(Box<ValueError>),
    /// No section of that name.
    NoSection {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The sections there are, `DEFAULT` first.
        available: Vec<String>,
    },
    /// Keys set to something kao cannot do.
    Refused {
        /// The file.
        path: PathBuf,
        /// The section mapped.
        section: String,
        /// Every refused key, in line order.
        refusals: Vec<Refusal>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Syntax {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
            Error::Duplicate {
                path,
                line,
                section,
                key: None,
            } => {
                write!(
                    f,
                    "{}:{line}: section [{section}] appears twice",
                    path.display()
                )
            }
            Error::Duplicate {
                path,
                line,
                section,
                key: Some(key),
            } => {
                write!(
                    f,
                    "{}:{line}: key `{key}` appears twice in section [{section}]",
                    path.display()
                )
            }
            Error::Value(v) => {
                let ValueError {
                    path,
                    line,
                    section,
                    key,
                    value,
                    message,
                } = &**v;
                write!(
                    f,
                    "{}:{line}: [{section}] {key} = {}: {message}",
                    path.display(),
                    one_line(value)
                )
            }
            Error::NoSection {
                path,
                name,
                available,
            } => {
                write!(
                    f,
                    "{}: no section [{name}] (sections: {})",
                    path.display(),
                    available.join(", ")
                )
            }
            Error::Refused {
                path,
                section,
                refusals,
            } => {
                write!(
                    f,
                    "{}: [{section}] asks for what kao does not do: ",
                    path.display()
                )?;
                for (i, r) in refusals.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(
                        f,
                        "{sep}line {}: {} = {}: {}",
                        r.line, r.key, r.value, r.reason
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FACE01's shipped config.ini, copied into the repository.
    const SHIPPED: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/face01/config.ini"
    );

    fn parse(text: &str) -> Config {
        Config::parse(text, "/face01/config.ini").unwrap()
    }

    fn parse_err(text: &str) -> String {
        Config::parse(text, "/face01/config.ini")
            .unwrap_err()
            .to_string()
    }

    fn map_text(text: &str, section: &str) -> Result<Mapping, Error> {
        map(&parse(text).section(section).unwrap())
    }

    /// A fresh folder under the system's temporary folder.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kao-face01-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const FACE01_LIKE: &str = "\
# comment
; another
[DEFAULT]
headless = True
Similar_Percentage = 99.1
movie: assets/test.mp4
user =
base = /data
  # indented comment

[CUDA]
similar_percentage = 95
path = %(base)s/videos
pct = 100%%

[other]
base = /elsewhere
note = first line
  second line

  third line
    # a comment inside is dropped
after = x
";

    #[test]
    fn default_is_inherited_and_overridden() {
        let config = parse(FACE01_LIKE);
        assert_eq!(config.sections(), vec!["CUDA", "other"]);
        let cuda = config.section("CUDA").unwrap();
        assert_eq!(
            cuda.get("similar_percentage").unwrap().as_deref(),
            Some("95")
        );
        assert_eq!(
            cuda.get("SIMILAR_percentage").unwrap().as_deref(),
            Some("95")
        );
        assert_eq!(cuda.get("headless").unwrap().as_deref(), Some("True"));
        assert_eq!(
            cuda.get("movie").unwrap().as_deref(),
            Some("assets/test.mp4")
        );
        assert_eq!(cuda.get("user").unwrap().as_deref(), Some(""));
        assert_eq!(cuda.get("missing").unwrap(), None);
        assert_eq!(cuda.line("headless"), Some(4));
        assert_eq!(cuda.line("similar_percentage"), Some(12));
        let default = config.section("DEFAULT").unwrap();
        assert_eq!(
            default.get("similar_percentage").unwrap().as_deref(),
            Some("99.1")
        );
        assert_eq!(default.get("path").unwrap(), None);
        assert_eq!(
            default.keys(),
            vec!["headless", "similar_percentage", "movie", "user", "base"]
        );
    }

    #[test]
    fn interpolation_reads_the_section_and_default() {
        let config = parse(FACE01_LIKE);
        let cuda = config.section("CUDA").unwrap();
        assert_eq!(cuda.get("path").unwrap().as_deref(), Some("/data/videos"));
        assert_eq!(cuda.raw("path"), Some("%(base)s/videos"));
        assert_eq!(cuda.get("pct").unwrap().as_deref(), Some("100%"));
        // A DEFAULT value referring to a key a section overrides takes the section's value.
        let config = parse(
            "[DEFAULT]\nroot = /a\nmovie = %(root)s/m.mp4\n[S]\nroot = /b\n[T]\nx = %(y)s\ny = %(z)s\nz = %%z\n",
        );
        assert_eq!(
            config
                .section("S")
                .unwrap()
                .get("movie")
                .unwrap()
                .as_deref(),
            Some("/b/m.mp4")
        );
        assert_eq!(
            config
                .section("DEFAULT")
                .unwrap()
                .get("movie")
                .unwrap()
                .as_deref(),
            Some("/a/m.mp4")
        );
        assert_eq!(
            config.section("T").unwrap().get("x").unwrap().as_deref(),
            Some("%z")
        );
    }

    #[test]
    fn interpolation_errors_name_line_and_key() {
        let config = parse("[S]\na = 50%\nb = %(nope)s\nc = %(c)s\nd = %(d\n");
        let s = config.section("S").unwrap();
        let e = s.get("a").unwrap_err().to_string();
        assert!(
            e.starts_with("/face01/config.ini:2: [S] a = 50%: '%' must be followed"),
            "{e}"
        );
        let e = s.get("b").unwrap_err().to_string();
        assert!(
            e.starts_with("/face01/config.ini:3:") && e.contains("`%(nope)s`"),
            "{e}"
        );
        let e = s.get("c").unwrap_err().to_string();
        assert!(
            e.starts_with("/face01/config.ini:4:") && e.contains("10 deep"),
            "{e}"
        );
        let config = parse("[S]\npasswd = 50%secret\n");
        let e = config
            .section("S")
            .unwrap()
            .get("passwd")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret") && e.contains("passwd = ***"), "{e}");
        let e = s.get("d").unwrap_err().to_string();
        assert!(
            e.starts_with("/face01/config.ini:5:") && e.contains("bad `%(name)s`"),
            "{e}"
        );
    }

    #[test]
    fn multi_line_values_and_comments() {
        let config = parse(FACE01_LIKE);
        let other = config.section("other").unwrap();
        assert_eq!(
            other.get("note").unwrap().as_deref(),
            Some("first line\nsecond line\n\nthird line")
        );
        assert_eq!(other.get("after").unwrap().as_deref(), Some("x"));
        assert_eq!(other.get("base").unwrap().as_deref(), Some("/elsewhere"));
        // Trailing blank lines of a value are dropped; `:` and `=` both split, the first wins.
        let config = parse("[S]\na = 1\n\n\nb: x = y\nc=d:e\n");
        let s = config.section("S").unwrap();
        assert_eq!(s.get("a").unwrap().as_deref(), Some("1"));
        assert_eq!(s.get("b").unwrap().as_deref(), Some("x = y"));
        assert_eq!(s.get("c").unwrap().as_deref(), Some("d:e"));
        // CRLF line ends and a byte-order mark.
        let config = parse("\u{feff}[S]\r\nkey = v\r\n");
        assert_eq!(
            config.section("S").unwrap().get("key").unwrap().as_deref(),
            Some("v")
        );
    }

    #[test]
    fn booleans() {
        let text =
            "[S]\na = 1\nb = YES\nc = true\nd = On\ne = 0\nf = no\ng = FALSE\nh = off\ni = maybe\n";
        let s = parse(text).section("S").unwrap();
        for key in ["a", "b", "c", "d"] {
            assert_eq!(s.get_bool(key).unwrap(), Some(true), "{key}");
        }
        for key in ["e", "f", "g", "h"] {
            assert_eq!(s.get_bool(key).unwrap(), Some(false), "{key}");
        }
        assert_eq!(s.get_bool("zzz").unwrap(), None);
        let e = s.get_bool("i").unwrap_err().to_string();
        assert_eq!(
            e,
            "/face01/config.ini:10: [S] i = maybe: not a boolean (1/yes/true/on or 0/no/false/off)"
        );
    }

    #[test]
    fn numbers() {
        let s = parse("[S]\na = 5\nb = -3\nc = 1_000\nd = 2.5\ne = five\nf = 1e2\n")
            .section("S")
            .unwrap();
        assert_eq!(s.get_int("a").unwrap(), Some(5));
        assert_eq!(s.get_int("b").unwrap(), Some(-3));
        assert_eq!(s.get_int("c").unwrap(), Some(1000));
        assert!(
            s.get_int("d")
                .unwrap_err()
                .to_string()
                .contains(":5: [S] d = 2.5: not a whole number")
        );
        assert_eq!(s.get_float("d").unwrap(), Some(2.5));
        assert_eq!(s.get_float("f").unwrap(), Some(100.0));
        assert!(
            s.get_float("e")
                .unwrap_err()
                .to_string()
                .contains(":6: [S] e = five: not a number")
        );
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        assert_eq!(
            parse_err("key = v\n"),
            "/face01/config.ini:1: a key before the first [section] header"
        );
        assert_eq!(
            parse_err("[S]\na = 1\njust words\n"),
            "/face01/config.ini:3: not a [section] header, a `key = value` line or a comment"
        );
        assert_eq!(
            parse_err("[S]\n = 1\n"),
            "/face01/config.ini:2: a value without a key"
        );
        assert_eq!(
            parse_err("[S]\n[]\n"),
            "/face01/config.ini:2: not a [section] header, a `key = value` line or a comment"
        );
        assert_eq!(
            parse_err("[S]\na = 1\n[T]\n[S]\n"),
            "/face01/config.ini:4: section [S] appears twice"
        );
        assert_eq!(
            parse_err("[S]\na = 1\nA = 2\n"),
            "/face01/config.ini:3: key `a` appears twice in section [S]"
        );
        // [DEFAULT] may come back, its keys may not.
        assert!(Config::parse("[DEFAULT]\na = 1\n[S]\n[DEFAULT]\nb = 2\n", "c.ini").is_ok());
        assert_eq!(
            parse_err("[DEFAULT]\na = 1\n[S]\n[DEFAULT]\na = 2\n"),
            "/face01/config.ini:5: key `a` appears twice in section [DEFAULT]"
        );
        // Section names are case-sensitive: [s] and [S] are two sections.
        assert_eq!(parse("[S]\n[s]\n").sections(), vec!["S", "s"]);
    }

    #[test]
    fn missing_sections_and_files() {
        let config = parse(FACE01_LIKE);
        let e = config.section("cuda").unwrap_err().to_string();
        assert_eq!(
            e,
            "/face01/config.ini: no section [cuda] (sections: DEFAULT, CUDA, other)"
        );
        let dir = temp_dir("missing");
        let e = read(dir.join("nope.ini")).unwrap_err();
        assert!(
            matches!(e, Error::Io { .. }) && e.to_string().contains("nope.ini"),
            "{e}"
        );
        std::fs::write(dir.join("latin1.ini"), b"[S]\na = 1\nb = caf\xe9\n").unwrap();
        let e = read(dir.join("latin1.ini")).unwrap_err().to_string();
        assert!(e.ends_with("latin1.ini:3: not UTF-8 text"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn shipped() -> Config {
        read(SHIPPED).unwrap()
    }

    fn dir_of_shipped() -> PathBuf {
        Path::new(SHIPPED).parent().unwrap().to_path_buf()
    }

    #[test]
    fn shipped_file_parses() {
        let config = shipped();
        assert_eq!(
            config.sections(),
            vec![
                "CUDA",
                "DISPLAY_GUI",
                "bug_DISPLAY_GUI",
                "USB_CAMERA",
                "HLS",
                "RTSP",
                "FACE-COORDINATE",
                "MAKE_QR_CODE",
                "LIGHTWEIGHT_GUI",
                "JAPANESE_FACE_V1_MODEL",
                "JAPANESE_FACE_V1_MODEL_GUI",
                "DETECT_EYE_BLINKS",
                "DISTORT_BARREL",
                "USER_SETTING",
            ]
        );
        let default = config.section("DEFAULT").unwrap();
        assert_eq!(default.keys().len(), 46);
        assert_eq!(
            default.get("ear_threshold_close").unwrap().as_deref(),
            Some("1.4")
        );
        assert_eq!(default.get("RootDir").unwrap().as_deref(), Some("'.'"));
        // `; similar_percentage = 99.1` is a comment.
        assert_eq!(
            default.get("similar_percentage").unwrap().as_deref(),
            Some("90")
        );
        let coordinate = config.section("FACE-COORDINATE").unwrap();
        assert_eq!(
            coordinate.get("similar_percentage").unwrap().as_deref(),
            Some("99.1")
        );
        assert_eq!(coordinate.get("mode").unwrap().as_deref(), Some("cnn"));
    }

    /// The mapping of the shipped [DEFAULT] (and of [JAPANESE_FACE_V1_MODEL], which only
    /// restates its embedder and percentage).
    fn check_default_like(m: &Mapping) {
        let dir = dir_of_shipped();
        assert_eq!(m.embedder, Some(EmbedderSetting::Face01V1 { model: None }));
        assert_eq!(m.embedder.as_ref().unwrap().spec(), None);
        assert_eq!(m.similar_percentage, Some(90.0));
        assert!(
            (1.0 - m.threshold.unwrap() - 0.4036).abs() < 1e-4,
            "{:?}",
            m.threshold
        );
        assert_eq!(m.jitters, None);
        assert_eq!(m.detector, Some(Detector::Mmod));
        assert_eq!(m.upsample, Some(0));
        assert_eq!(m.min_score, None);
        assert_eq!(m.detect_width, Some(750));
        assert_eq!(m.every, Some(6));
        assert_eq!(m.input, Some(Input::File(dir.join("assets/test.mp4"))));
        assert_eq!(m.references, Some(dir.join("preset_face_images")));
        let mut mapped = m.mapped.clone();
        mapped.sort();
        assert_eq!(
            mapped,
            vec![
                "crop_face_image",
                "deep_learning_model",
                "frame_skip",
                "mode",
                "movie",
                "set_width",
                "similar_percentage",
                "upsampling",
                "use_pipe",
            ]
        );
        let warned: Vec<&str> = m
            .warnings
            .iter()
            .map(|w| w.split(' ').nth(2).unwrap())
            .collect();
        assert_eq!(
            warned,
            vec!["set_width", "number_of_people", "frequency_crop_image"],
            "{:#?}",
            m.warnings
        );
        assert!(
            m.warnings[0].starts_with("line 50: set_width = 750: kao detects"),
            "{}",
            m.warnings[0]
        );
        assert!(
            m.warnings[1].contains("3 or more faces"),
            "{}",
            m.warnings[1]
        );
        assert!(m.warnings[2].contains("one face in 5"), "{}", m.warnings[2]);
        for key in [
            "headless",
            "anti_spoof",
            "jitters",
            "model_selection",
            "min_detection_confidence",
            "user",
            "passwd",
            "rootdir",
            "detect_eye_blinks",
            "ear_threshold_open",
            "set_area",
        ] {
            assert!(
                m.ignored.iter().any(|k| k == key),
                "{key} not ignored: {:?}",
                m.ignored
            );
        }
        assert_eq!(m.mapped.len() + m.ignored.len(), 46);
    }

    #[test]
    fn shipped_default_maps() {
        let m = map(&shipped().section("DEFAULT").unwrap()).unwrap();
        check_default_like(&m);
    }

    #[test]
    fn shipped_japanese_face_v1_model_maps() {
        let m = map(&shipped().section("JAPANESE_FACE_V1_MODEL").unwrap()).unwrap();
        check_default_like(&m);
        assert!(m.warnings.iter().all(|w| !w.contains("similar_percentage")));
    }

    /// Every key of every shipped section is classified once, and none is unknown.
    #[test]
    fn shipped_sections_all_classify() {
        let config = shipped();
        for name in config.sections() {
            let section = config.section(name).unwrap();
            match map(&section) {
                Ok(m) => {
                    assert!(
                        m.warnings.iter().all(|w| !w.contains("unknown key")),
                        "[{name}] {:?}",
                        m.warnings
                    );
                    let mut all: Vec<&String> = m.mapped.iter().chain(&m.ignored).collect();
                    all.sort();
                    let before = all.len();
                    all.dedup();
                    assert_eq!(all.len(), before, "[{name}] key in two classes");
                    assert_eq!(
                        all.len(),
                        section.keys().len(),
                        "[{name}] {:?}",
                        section.keys()
                    );
                }
                Err(e) => {
                    assert_eq!(name, "DETECT_EYE_BLINKS", "{e}");
                    let Error::Refused { refusals, .. } = &e else {
                        panic!("{e}")
                    };
                    assert_eq!(refusals.len(), 1);
                    assert_eq!(refusals[0].key, "detect_eye_blinks");
                    assert_eq!(refusals[0].line, 292);
                }
            }
        }
    }

    #[test]
    fn shipped_other_sections() {
        let config = shipped();
        let m = |name: &str| map(&config.section(name).unwrap()).unwrap();
        let coordinate = m("FACE-COORDINATE");
        assert_eq!(coordinate.embedder, Some(EmbedderSetting::Dlib));
        assert_eq!(
            coordinate.embedder.as_ref().unwrap().spec().as_deref(),
            Some("dlib")
        );
        assert!((coordinate.threshold.unwrap() - 0.3966).abs() < 1e-4);
        assert_eq!(coordinate.jitters, Some(0));
        assert!(
            coordinate
                .warnings
                .iter()
                .any(|w| w.contains("similar_percentage = 99.1") && w.contains("0.3966"))
        );
        assert!(
            coordinate
                .warnings
                .iter()
                .any(|w| w.contains("10 or more faces"))
        );
        let usb = m("USB_CAMERA");
        assert_eq!(usb.input, Some(Input::Device(PathBuf::from("/dev/video0"))));
        assert_eq!(usb.every, Some(4));
        for name in ["HLS", "RTSP"] {
            let s = m(name);
            assert_eq!(s.input, None);
            assert!(
                s.warnings.iter().any(|w| w.contains("movie = : empty")),
                "{:?}",
                s.warnings
            );
        }
        assert_eq!(m("MAKE_QR_CODE").every, Some(1));
        assert!(
            m("MAKE_QR_CODE")
                .warnings
                .iter()
                .any(|w| w.contains("crop_face_image = False"))
        );
        assert_eq!(
            m("DISPLAY_GUI").input,
            Some(Input::File(
                dir_of_shipped().join("../FACE01_DEV/assets/some_people.mp4")
            ))
        );
        assert_eq!(m("bug_DISPLAY_GUI").every, Some(2));
    }

    const BASE: &str = "[DEFAULT]\ndeep_learning_model = 0\nsimilar_percentage = 98.72\nuse_pipe = False\nmode = cnn\nupsampling = 1\n";

    #[test]
    fn mediapipe_maps_to_blazeface() {
        let text = format!(
            "{BASE}[P]\nuse_pipe = True\nmodel_selection = 1\nmin_detection_confidence = 0.3\n[Q]\nuse_pipe = yes\nmodel_selection = 0\n[R]\nuse_pipe = 1\nmodel_selection = 2\n[T]\nuse_pipe = on\nmin_detection_confidence = 1.5\n"
        );
        let m = map_text(&text, "P").unwrap();
        assert_eq!(m.detector, Some(Detector::BlazefaceFull));
        assert_eq!(m.min_score, Some(0.3));
        assert_eq!(m.upsample, None);
        assert!(
            m.ignored.contains(&"mode".to_string())
                && m.ignored.contains(&"upsampling".to_string())
        );
        assert!((m.threshold.unwrap() - 0.48).abs() < 1e-4);
        assert_eq!(
            map_text(&text, "Q").unwrap().detector,
            Some(Detector::Blazeface)
        );
        let e = map_text(&text, "R").unwrap_err().to_string();
        assert!(
            e.contains(":16: [R] model_selection = 2: not 0 (short range) or 1 (full range)"),
            "{e}"
        );
        let e = map_text(&text, "T").unwrap_err().to_string();
        assert!(
            e.contains(":19: [T] min_detection_confidence = 1.5: not between 0 and 1"),
            "{e}"
        );
    }

    #[test]
    fn dlib_detectors_map_to_mmod() {
        let text = format!("{BASE}min_detection_confidence = 0.5\n[H]\nmode = hog\n");
        let m = map_text(&text, "DEFAULT").unwrap();
        assert_eq!(m.detector, Some(Detector::Mmod));
        assert_eq!(m.upsample, Some(1));
        assert!(m.warnings.iter().all(|w| !w.contains("mode")));
        assert!(m.ignored.contains(&"min_detection_confidence".to_string()));
        let m = map_text(&text, "H").unwrap();
        assert_eq!(m.detector, Some(Detector::Mmod));
        assert!(
            m.warnings
                .iter()
                .any(|w| w.starts_with("line 9: mode = hog: FACE01 runs dlib's HOG")),
            "{:?}",
            m.warnings
        );
        // Neither use_pipe nor mode: kao's default detector.
        let m = map_text("[S]\nupsampling = 2\n", "S").unwrap();
        assert_eq!((m.detector, m.upsample), (None, None));
        assert_eq!(m.ignored, vec!["upsampling"]);
    }

    #[test]
    fn embedders_and_jitters() {
        let m = map_text("[S]\ndeep_learning_model = 0\njitters = 5\n", "S").unwrap();
        assert_eq!(
            (m.embedder, m.jitters),
            (Some(EmbedderSetting::Dlib), Some(5))
        );
        let m = map_text("[S]\ndeep_learning_model = 1\njitters = 5\n", "S").unwrap();
        assert_eq!(m.jitters, None);
        assert!(m.warnings[0].contains("jitters = 5: JAPANESE FACE V1 embeds the plain chip"));
        // Without deep_learning_model the percentage is read on dlib's curve.
        let m = map_text("[S]\nsimilar_percentage = 99.1\n", "S").unwrap();
        assert_eq!(m.embedder, None);
        assert!((m.threshold.unwrap() - 0.3966).abs() < 1e-4);
        let e = map_text(
            "[S]\ndeep_learning_model = 1\nsimilar_percentage = 99.99\n",
            "S",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("/face01/config.ini:3: [S] similar_percentage = 99.99: similar percentage 99.99 is outside the JAPANESE FACE V1 curve")
                && e.contains("73.69") && e.contains("99.96"),
            "{e}"
        );
        let e = map_text("[S]\ndeep_learning_model = 2\n", "S")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "line 2: deep_learning_model = 2: kao has FACE01's embedders 0 (dlib) and 1"
            ),
            "{e}"
        );
    }

    #[test]
    fn japanese_face_v1_model_found_in_face01s_tree() {
        let dir = temp_dir("model");
        std::fs::create_dir_all(dir.join("face01lib/models")).unwrap();
        let model = dir.join(FACE01_V1_MODEL_PATH);
        std::fs::write(&model, b"onnx").unwrap();
        std::fs::write(
            dir.join("config.ini"),
            "[DEFAULT]\ndeep_learning_model = 1\n",
        )
        .unwrap();
        let m = map(&read(dir.join("config.ini"))
            .unwrap()
            .section("DEFAULT")
            .unwrap())
        .unwrap();
        assert_eq!(
            m.embedder,
            Some(EmbedderSetting::Face01V1 {
                model: Some(model.clone())
            })
        );
        assert_eq!(
            m.embedder.unwrap().spec(),
            Some(format!("face01-v1:{}", model.display()))
        );
        assert_eq!(m.references, Some(dir.join("preset_face_images")));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn frame_skip_keeps_one_in_n_plus_one() {
        for (n, every) in [(0, 1), (1, 2), (5, 6), (-3, 1)] {
            let m = map_text(&format!("[S]\nframe_skip = {n}\n"), "S").unwrap();
            assert_eq!(m.every, Some(every), "{n}");
        }
        for (n, every) in [(0, 1), (1, 1), (2, 1), (5, 4)] {
            let m = map_text(&format!("[S]\nmovie = usb\nframe_skip = {n}\n"), "S").unwrap();
            assert_eq!(m.every, Some(every), "usb {n}");
        }
        let e = map_text("[S]\nframe_skip = five\n", "S")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/face01/config.ini:2: [S] frame_skip = five: not a whole number"
        );
    }

    #[test]
    fn movies_and_credentials() {
        let m = map_text(
            "[S]\nmovie = rtsp://cam.local:554/stream\nuser = admin\npasswd = p@ss:w/rd\n",
            "S",
        )
        .unwrap();
        let input = m.input.unwrap();
        assert_eq!(
            input.as_arg(),
            "rtsp://admin:p%40ss%3Aw%2Frd@cam.local:554/stream"
        );
        assert_eq!(input.to_string(), "rtsp://admin:***@cam.local:554/stream");
        assert!(!format!("{input:?}").contains("p%40ss"));
        assert_eq!(m.mapped, vec!["movie", "user", "passwd"]);
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);

        let m = map_text(
            "[S]\nmovie = rtsp://a:b@cam/s\nuser = admin\npasswd = x\n",
            "S",
        )
        .unwrap();
        assert_eq!(m.input.unwrap().as_arg(), "rtsp://a:b@cam/s");
        assert!(m.warnings[0].contains("user = admin: movie already holds credentials"));
        assert_eq!(m.ignored, vec!["user", "passwd"]);

        let m = map_text("[S]\nmovie = http://219.102.239.58/cgi-bin/camera?resolution=750\nuser =\npasswd = x\nframe_skip = 5\n", "S").unwrap();
        assert_eq!(
            m.input.unwrap().as_arg(),
            "http://219.102.239.58/cgi-bin/camera?resolution=750"
        );
        assert!(m.warnings.iter().any(|w| w.contains("JPEG snapshot")));
        assert!(
            m.warnings
                .iter()
                .any(|w| w.contains("passwd = ***: a password without a user"))
        );
        assert_eq!(m.every, Some(4));

        let m = map_text("[S]\nmovie = /videos/a b.mp4\nuser = admin\n", "S").unwrap();
        assert_eq!(m.input, Some(Input::File(PathBuf::from("/videos/a b.mp4"))));
        assert_eq!(m.ignored, vec!["user"]);
        let m = Config::parse("[S]\nmovie = assets/test.mp4\n", "config.ini").unwrap();
        let m = map(&m.section("S").unwrap()).unwrap();
        assert_eq!(
            m.input,
            Some(Input::File(PathBuf::from("./assets/test.mp4")))
        );
        assert_eq!(m.references, Some(PathBuf::from("./preset_face_images")));
    }

    #[test]
    fn approximations_warn() {
        let text = "[S]\nset_area = CENTER\nnumber_of_people = 2\ncrop_face_image = False\nfrequency_crop_image = 3\nset_width = 640\n[T]\nset_area = MIDDLE\nset_width = 0\n[U]\nset_area = NONE\nsomething_new = 1\n";
        let m = map_text(text, "S").unwrap();
        assert_eq!(m.detect_width, Some(640));
        let w = m.warnings.join("\n");
        assert!(
            w.contains("line 2: set_area = CENTER: FACE01 looks only at this part"),
            "{w}"
        );
        assert!(
            w.contains(
                "line 3: number_of_people = 2: FACE01 skips every frame with 2 or more faces"
            ),
            "{w}"
        );
        assert!(
            w.contains("line 4: crop_face_image = False: kao writes crops"),
            "{w}"
        );
        assert!(!w.contains("frequency_crop_image"), "{w}");
        assert!(w.contains("line 6: set_width = 640"), "{w}");
        assert_eq!(
            m.ignored,
            vec![
                "set_area",
                "number_of_people",
                "crop_face_image",
                "frequency_crop_image"
            ]
        );
        let e = map_text(text, "T").unwrap_err().to_string();
        assert!(e.contains(":9: [T] set_width = 0: not a width > 0"), "{e}");
        let m = map_text("[T]\nset_area = MIDDLE\n", "T").unwrap();
        assert!(m.warnings[0].contains("not an area FACE01 knows"));
        let m = map_text(text, "U").unwrap();
        assert_eq!(
            m.warnings,
            vec!["line 12: something_new = 1: unknown key, ignored"]
        );
        assert_eq!(m.ignored, vec!["set_area"]);
    }

    #[test]
    fn active_keys_without_a_kao_counterpart_are_refused() {
        let text = "[DEFAULT]\nanti_spoof = False\ndetect_eye_blinks = no\nperson_frame_face_encoding = False\nuse_pipe = False\n\
                    [A]\nanti_spoof = True\ndetect_eye_blinks = on\n[B]\nperson_frame_face_encoding = True\n\
                    [C]\nuse_pipe = True\nperson_frame_face_encoding = True\n";
        let m = map_text(text, "DEFAULT").unwrap();
        assert_eq!(
            m.ignored,
            vec![
                "anti_spoof",
                "detect_eye_blinks",
                "person_frame_face_encoding"
            ]
        );
        let e = map_text(text, "A").unwrap_err();
        let Error::Refused {
            refusals, section, ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!(section, "A");
        assert_eq!(
            refusals
                .iter()
                .map(|r| (r.key.as_str(), r.line))
                .collect::<Vec<_>>(),
            vec![("anti_spoof", 7), ("detect_eye_blinks", 8)]
        );
        let text_e = e.to_string();
        assert!(!text_e.contains('\n'));
        assert!(
            text_e.starts_with("/face01/config.ini: [A] asks for what kao does not do: line 7: anti_spoof = True: kao has no anti-spoofing")
                && text_e.contains("; line 8: detect_eye_blinks = on: kao has no blink check"),
            "{text_e}"
        );
        let e = map_text(text, "B").unwrap_err().to_string();
        assert!(
            e.contains("line 10: person_frame_face_encoding = True: FACE01 itself stops"),
            "{e}"
        );
        let m = map_text(text, "C").unwrap();
        assert!(
            m.warnings
                .iter()
                .any(|w| w.contains("person_frame_face_encoding = True: kao embeds each face"))
        );
    }

    #[test]
    fn every_known_key_is_decided() {
        let mut text = String::from("[S]\n");
        for key in DISPLAY_KEYS
            .iter()
            .chain(NO_EFFECT_KEYS)
            .chain(DECIDED_KEYS)
        {
            let value = match *key {
                "deep_learning_model"
                | "anti_spoof"
                | "detect_eye_blinks"
                | "person_frame_face_encoding"
                | "use_pipe" => "0",
                "similar_percentage" => "99",
                "movie" => "a.mp4",
                "set_area" => "NONE",
                "set_width" => "640",
                "mode" => "cnn",
                _ => "1",
            };
            text.push_str(&format!("{key} = {value}\n"));
        }
        let m = map_text(&text, "S").unwrap();
        assert!(
            m.warnings.iter().all(|w| !w.contains("unknown key")),
            "{:?}",
            m.warnings
        );
        assert_eq!(
            m.mapped.len() + m.ignored.len(),
            DISPLAY_KEYS.len() + NO_EFFECT_KEYS.len() + DECIDED_KEYS.len()
        );
    }
}
