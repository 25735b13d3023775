//! Fuzz targets for every parser that reads user or third-party bytes.
//!
//! One function per target, each taking arbitrary bytes and returning nothing: an error from
//! the code under test is a correct answer, a panic (or, under the fuzzer's sanitizer, a memory
//! error) is a bug. `fuzz/` (cargo-fuzz, nightly) runs them coverage-guided; `tests/replay.rs`
//! replays every seed and regression input on the stable toolchain. See `docs/fuzzing.md`.
//!
//! The functions stay fast and local: no network (strings that name one are rewritten to a
//! scheme FFmpeg does not know), no device, no files outside a fresh temporary folder.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::Cursor;
use std::ops::ControlFlow;
use std::path::Path;

/// A target's function: any bytes in, nothing out, never a panic.
pub type Target = fn(&[u8]);

/// Every target: its name (the file under `fuzz/fuzz_targets/` and the corpus folder) and
/// its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("dat", dat),
    ("tflite", tflite),
    ("onnx", onnx),
    ("records_ipc", records_ipc),
    ("records_parquet", records_parquet),
    ("image", image),
    ("face01_config", face01_config),
    ("video_list", video_list),
];

/// Sets up a fuzzer process the way the stage binaries set up theirs, once, before the first
/// input (`fuzz_target!(init: kao_fuzz::init(), …)`): kao-record's panic hook in front of the
/// one already installed, so that a reader's panic that kao-record catches and turns into a
/// one-line error (arrow-ipc's on a buffer past its message body) stays an error, as in the
/// stages, instead of reaching libFuzzer's hook, which aborts on every panic, caught or not.
/// Every other panic still goes on to libFuzzer's hook. Warnings are logged to stderr.
pub fn init() {
    kao_record::cli::init_logging("kao-fuzz");
}

/// A fresh temporary folder holding `data` as `name`; `None` when the disk refuses.
fn temp_file(name: &str, data: &[u8]) -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().join(name);
    std::fs::write(&path, data).ok()?;
    Some((dir, path))
}

/// True when `data` contains `needle`.
fn contains(data: &[u8], needle: &[u8]) -> bool {
    data.windows(needle.len()).any(|w| w == needle)
}

/// dlib `.dat` model files: the MMOD detector, the ResNet embedder (and its native executor's
/// checks of the layer stack) and the 5-point shape predictor, each read from the bytes.
pub fn dat(data: &[u8]) {
    if let Err(e) = kao_model_files::dat::MmodModel::from_bytes(data) {
        let _ = e.to_string();
    }
    match kao_model_files::dat::ResnetModel::from_bytes(data) {
        Ok(model) => {
            let _ = model.param_count();
            if let Err(e) = kao_networks::NativeResNet::from_model(&model) {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Err(e) = kao_networks::ShapePredictor::from_bytes(data) {
        let _ = e.to_string();
    }
}

/// TensorFlow Lite flatbuffers: the reader, every tensor's constant data, and the BlazeFace
/// executor's checks of the graph.
pub fn tflite(data: &[u8]) {
    let model = match kao_model_files::tflite::Model::from_bytes(data) {
        Ok(model) => model,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for i in 0..model.tensors.len() {
        let _ = model.tensor_data(i);
        let _ = model.constant_f32(i);
        let _ = model.constant_i32(i);
    }
    let _ = model.compute_ops().count();
    if let Err(e) = kao_networks::NativeBlazeFace::from_model(&model) {
        let _ = e.to_string();
    }
}

/// ONNX models: ONNX Runtime's loading and kao's checks of the graph (`kao_networks::onnx::Model::load`),
/// then the embedder's and YuNet's checks. Returns at once when ONNX Runtime's library is not
/// installed (`scripts/deps.sh`).
pub fn onnx(data: &[u8]) {
    let Some((_dir, path)) = temp_file("model.onnx", data) else {
        return;
    };
    match kao_networks::onnx::Model::load(&path, kao_networks::onnx::Device::Cpu, 1) {
        Err(kao_networks::onnx::OnnxError::Runtime(_)) => return,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
        Ok(model) => {
            let _ = format!("{model:?}");
        }
    }
    let device = kao_networks::Device::cpu();
    let preprocessing = kao_networks::embedder::Preprocessing::onnx_defaults();
    if let Err(e) = kao_networks::onnx::OnnxEmbedder::load(&path, "onnx", &preprocessing, device) {
        let _ = format!("{e:#}");
    }
    if let Err(e) = kao_networks::onnx::Yunet::load(&path, device) {
        let _ = format!("{e:#}");
    }
}

/// Reads every batch of `reader` and runs the checks stages make on records they are given
/// (provenance, embedding space, face boxes, patches and landmarks).
fn drain(reader: kao_record::RecordReader) {
    let schema = reader.schema();
    let name = reader.name().to_string();
    let _ = reader.provenance();
    let _ = kao_record::EmbeddingSpace::of_schema(&schema);
    let _ = reader.require("fuzz", &kao_pipeline::embed::Patches::columns());
    let mut first_row = 0u64;
    for batch in reader {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        };
        let _ = kao_pipeline::check_boxes(&batch, &name, first_row);
        if let Ok(patches) = kao_pipeline::embed::Patches::of(&batch, &name) {
            for i in 0..batch.num_rows() {
                let _ = patches.face(i, first_row + i as u64);
            }
        }
        first_row += batch.num_rows() as u64;
    }
}

/// Arrow IPC record streams, as stages read them from a pipe.
pub fn records_ipc(data: &[u8]) {
    match kao_record::RecordReader::from_stream("fuzz", Cursor::new(data.to_vec())) {
        Ok(reader) => drain(reader),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Record files: Parquet, Arrow IPC files and IPC streams on disk (`RecordReader::open` picks
/// the format by magic bytes, whatever the extension).
pub fn records_parquet(data: &[u8]) {
    let Some((_dir, path)) = temp_file("x.parquet", data) else {
        return;
    };
    match kao_record::RecordReader::open(Some(&path)) {
        Ok(reader) => drain(reader),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The extension a reference photo with these first bytes would have.
fn image_extension(data: &[u8]) -> &'static str {
    if data.starts_with(b"\x89PNG") {
        "png"
    } else if data.starts_with(b"RIFF") && data.get(8..12) == Some(b"WEBP") {
        "webp"
    } else if data.starts_with(b"BM") {
        "bmp"
    } else if data.starts_with(b"II*\0") || data.starts_with(b"MM\0*") {
        "tif"
    } else {
        "jpg"
    }
}

/// Reference photos: the first frame decoded as `kao_pipeline::matching::enroll` reads one (FFmpeg, then
/// kao's conversion to RGB). Bytes containing `://` are skipped: FFmpeg could read them as a
/// playlist naming network URLs.
pub fn image(data: &[u8]) {
    if data.is_empty() || contains(data, b"://") {
        return;
    }
    let name = format!("reference.{}", image_extension(data));
    let Some((_dir, path)) = temp_file(&name, data) else {
        return;
    };
    let Some(input) = path.to_str() else {
        return;
    };
    let options = kao_video::DecodeOptions {
        max_frames: Some(1),
        ..Default::default()
    };
    let result = kao_video::decode(input, &options, |frame| {
        assert_eq!(
            frame.rgb.len(),
            frame.width as usize * frame.height as usize * 3,
            "a frame's RGB buffer matches its size"
        );
        ControlFlow::Break(())
    });
    if let Err(e) = result {
        let _ = e.to_string();
    }
}

/// FACE01's `config.ini` (bytes as lossy UTF-8): the configparser-compatible reader, every
/// key of every section read as text, bool, int and float, and the mapping of every section
/// onto kao's options.
pub fn face01_config(data: &[u8]) {
    use kao_pipeline::face01;
    let text = String::from_utf8_lossy(data);
    // A folder that does not exist: the mapping looks for FACE01's files next to it.
    let config = match face01::Config::parse(&text, "/nonexistent/kao-fuzz/config.ini") {
        Ok(config) => config,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = config.path();
    for name in config.sections() {
        let section = match config.section(name) {
            Ok(section) => section,
            Err(e) => {
                let _ = e.to_string();
                continue;
            }
        };
        for key in section.keys() {
            let _ = section.line(key);
            let _ = section.raw(key);
            let _ = section.get(key).map_err(|e| e.to_string());
            let _ = section.get_bool(key).map_err(|e| e.to_string());
            let _ = section.get_int(key).map_err(|e| e.to_string());
            let _ = section.get_float(key).map_err(|e| e.to_string());
        }
        match face01::map(&section) {
            Ok(mapping) => {
                let _ = format!("{mapping:?}");
                if let Some(input) = &mapping.input {
                    let _ = (input.to_string(), input.as_arg());
                }
                if let Some(embedder) = &mapping.embedder {
                    let _ = (embedder.spec(), embedder.curve());
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

/// An input name as kao-video opens it, made safe to try: a URL's scheme is replaced by one
/// FFmpeg has no protocol for (no network), and devices, standard input (`-`) and existing
/// paths are left out (no camera, no waiting on the fuzzer's stdin, no reading of the
/// machine's files). `None`: not tried.
fn safe_input(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with("/dev/") || line == kao_video::STDIN {
        return None;
    }
    if let Some((scheme, rest)) = line.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+')
    {
        return Some(format!("kaofuzz://{rest}"));
    }
    // Paths with a NUL byte cannot exist; `exists` answers false for them.
    (!Path::new(line).exists()).then(|| line.to_string())
}

/// `.txt` video lists and URL or path arguments (see `docs/fuzzing.md`: the list expansion
/// itself lives in the kao-extract binary, so this target feeds what it hands on): the bytes as
/// a list file given to kao-video directly, then each line (at most 16) as an input name to
/// `kao_video::probe` and `kao_video::decode`.
pub fn video_list(data: &[u8]) {
    let options = kao_video::DecodeOptions {
        max_frames: Some(1),
        ..Default::default()
    };
    let stop = |_| ControlFlow::Break(());
    if !data.is_empty()
        && !contains(data, b"://")
        && let Some((_dir, path)) = temp_file("videos.txt", data)
        && let Some(input) = path.to_str()
    {
        let _ = kao_video::probe(input).map_err(|e| e.to_string());
        let _ = kao_video::decode(input, &options, stop).map_err(|e| e.to_string());
    }
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(16) {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let Some(input) = safe_input(line) else {
            continue;
        };
        let _ = kao_video::probe(&input).map_err(|e| e.to_string());
        let _ = kao_video::decode(&input, &options, stop).map_err(|e| e.to_string());
    }
}
