//! Test helpers shared by kao's crates: model files by name (from the model folder that
//! `models/fetch.py` fills) and the small golden files every crate's tests compare with
//! (`golden/`), with a reader of their `.npy` format. Tests fail, never skip, when a model is missing.

#![forbid(unsafe_code)]

pub mod dat;

use std::path::{Path, PathBuf};

/// Path of model file `file` in the model folder; panics with the fetch command when missing.
pub fn model_path(file: &str) -> PathBuf {
    let path = kao_model_files::model_dir().join(file);
    assert!(
        path.is_file(),
        "model file {} is missing: {}",
        path.display(),
        kao_model_files::FETCH_HINT
    );
    path
}

/// Element values of a `.npy` file.
#[derive(Debug, PartialEq)]
pub enum NpyData {
    /// `|u1`
    U8(Vec<u8>),
    /// `<i8`
    I64(Vec<i64>),
    /// `<f4`
    F32(Vec<f32>),
    /// `<f8`
    F64(Vec<f64>),
}

/// A C-order `.npy` array.
#[derive(Debug)]
pub struct Npy {
    /// Array shape.
    pub shape: Vec<usize>,
    /// Values in C order.
    pub data: NpyData,
}

/// Reads a version 1/2 `.npy` file holding a little-endian C-order array of `u1`, `i8`,
/// `f4` or `f8`.
pub fn read_npy(path: &Path) -> Npy {
    let name = path.display();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        bytes.len() > 10 && bytes.starts_with(b"\x93NUMPY"),
        "{name}: not a .npy file"
    );
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

/// An `(height, width, 3)` u8 `.npy` image as (width, height, bytes).
pub fn read_rgb(path: &Path) -> (usize, usize, Vec<u8>) {
    let npy = read_npy(path);
    assert!(
        npy.shape.len() == 3 && npy.shape[2] == 3,
        "{}: not an RGB image",
        path.display()
    );
    match npy.data {
        NpyData::U8(d) => (npy.shape[1], npy.shape[0], d),
        other => panic!("{}: expected u8, got {other:?}", path.display()),
    }
}

/// A float `.npy` file (f32 or f64) as f32 values, with its shape.
pub fn read_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let npy = read_npy(path);
    let values = match npy.data {
        NpyData::F32(v) => v,
        NpyData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        other => panic!("{}: expected floats, got {other:?}", path.display()),
    };
    (npy.shape, values)
}

/// Points of an int64 `(n, 2)` `.npy` file (e.g. dlib's golden `landmarks5.npy`).
pub fn read_points(path: &Path) -> Vec<(f32, f32)> {
    let npy = read_npy(path);
    assert!(
        npy.shape.len() == 2 && npy.shape[1] == 2,
        "{}: not (n, 2) points",
        path.display()
    );
    let NpyData::I64(v) = npy.data else {
        panic!("{}: expected int64", path.display())
    };
    v.chunks_exact(2)
        .map(|p| (p[0] as f32, p[1] as f32))
        .collect()
}

/// Largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Path of a golden file: dlib's and TFLite's outputs on the public-domain astronaut photo and
/// the scripts that made them, in this crate's `golden/` (one copy for every crate's tests).
pub fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(name)
}

/// Defines a test crate's helpers over the golden files ([`golden`]): `data_path`,
/// `read_rgb`, `read_f32`, `golden_landmarks` (dlib's `landmarks5.npy`) and `model_bytes`.
#[macro_export]
macro_rules! data_helpers {
    () => {
        /// Path of a golden file (`kao_testdata::golden`).
        pub fn data_path(name: &str) -> std::path::PathBuf {
            $crate::golden(name)
        }

        /// Bytes of a model file (see `model_path`).
        pub fn model_bytes(name: &str) -> Vec<u8> {
            std::fs::read($crate::model_path(name)).unwrap()
        }

        /// An `(height, width, 3)` u8 `.npy` golden image as (width, height, bytes).
        pub fn read_rgb(name: &str) -> (usize, usize, Vec<u8>) {
            $crate::read_rgb(&data_path(name))
        }

        /// A float `.npy` golden file as (shape, f32 values).
        pub fn read_f32(name: &str) -> (Vec<usize>, Vec<f32>) {
            $crate::read_f32(&data_path(name))
        }

        /// dlib's golden 5 landmarks (`landmarks5.npy`).
        pub fn golden_landmarks() -> Vec<(f32, f32)> {
            $crate::read_points(&data_path("landmarks5.npy"))
        }
    };
}
