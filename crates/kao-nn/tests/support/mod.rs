//! Shared helpers for the kao-nn integration tests (copied from kao-dlib's): locating model files and
//! reading the small `.npy` golden files in `tests/data/`.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

/// The model directory: `$KAO_MODELS`, else `$XDG_CACHE_HOME/kao/models`, else
/// `$HOME/.cache/kao/models`.
pub fn models_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env("KAO_MODELS") {
        return dir;
    }
    if let Some(cache) = env("XDG_CACHE_HOME") {
        return cache.join("kao/models");
    }
    env("HOME")
        .expect("neither KAO_MODELS, XDG_CACHE_HOME nor HOME is set")
        .join(".cache/kao/models")
}

/// Path of a model file; fails the test (never skips) when it is missing.
pub fn model_path(name: &str) -> PathBuf {
    let path = models_dir().join(name);
    assert!(
        path.is_file(),
        "model file {} is missing: run `python3 models/fetch.py` (or set KAO_MODELS)",
        path.display()
    );
    path
}

/// Path of a file in `tests/data/`.
pub fn data_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Element values of a `.npy` file.
#[derive(Debug, PartialEq)]
pub enum NpyData {
    U8(Vec<u8>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// A C-order `.npy` array.
#[derive(Debug)]
pub struct Npy {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

/// Reads a version 1/2 `.npy` file holding a little-endian C-order array of
/// `u1`, `i8`, `f4` or `f8`.
pub fn read_npy(name: &str) -> Npy {
    let path = data_path(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{name}: not a .npy file");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    let field = |key: &str| {
        let at = header
            .find(key)
            .unwrap_or_else(|| panic!("{name}: no {key} in {header}"))
            + key.len();
        header[at..].trim_start_matches([':', ' ', '\''])
    };
    assert!(
        field("'fortran_order'").starts_with("False"),
        "{name}: Fortran order"
    );
    let descr = field("'descr'");
    let descr = &descr[..descr.find('\'').unwrap()];
    let shape_text = field("'shape'");
    let shape: Vec<usize> = shape_text[1..shape_text.find(')').unwrap()]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let body = &bytes[start + header_len..];
    let count: usize = shape.iter().product();
    let chunks = |n: usize| {
        assert_eq!(body.len(), count * n, "{name}: payload size");
        body.chunks_exact(n)
    };
    let data = match descr {
        "|u1" => NpyData::U8(chunks(1).map(|c| c[0]).collect()),
        "<i8" => NpyData::I64(
            chunks(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        "<f4" => NpyData::F32(
            chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        "<f8" => NpyData::F64(
            chunks(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        other => panic!("{name}: unsupported dtype {other}"),
    };
    Npy { shape, data }
}

/// An `(height, width, 3)` u8 `.npy` file as (width, height, bytes).
pub fn read_rgb(name: &str) -> (usize, usize, Vec<u8>) {
    let npy = read_npy(name);
    assert_eq!(npy.shape.len(), 3, "{name}: not an RGB image");
    assert_eq!(npy.shape[2], 3, "{name}: not an RGB image");
    match npy.data {
        NpyData::U8(d) => (npy.shape[1], npy.shape[0], d),
        other => panic!("{name}: expected u8, got {other:?}"),
    }
}

/// The golden 5 landmarks (`landmarks5.npy`, int64 (5, 2)).
pub fn golden_landmarks() -> Vec<(f32, f32)> {
    let npy = read_npy("landmarks5.npy");
    assert_eq!(npy.shape, [5, 2]);
    let NpyData::I64(v) = npy.data else {
        panic!("landmarks5.npy: expected int64")
    };
    v.chunks_exact(2)
        .map(|p| (p[0] as f32, p[1] as f32))
        .collect()
}

/// A float `.npy` file (f32 or f64) as f32 values, with its shape.
pub fn read_f32(name: &str) -> (Vec<usize>, Vec<f32>) {
    let npy = read_npy(name);
    let values = match npy.data {
        NpyData::F32(v) => v,
        NpyData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        other => panic!("{name}: expected floats, got {other:?}"),
    };
    (npy.shape, values)
}

/// Largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
