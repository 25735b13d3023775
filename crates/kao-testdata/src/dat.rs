//! Damaged copies of dlib's model files: every parser of `.dat` bytes (kao-model-files' `dat`,
//! kao-networks' shape predictor) must refuse them with an error, never panic.

use kao_model_files::dat::{DatError, DatErrorKind};

use crate::model_path;

/// Bytes of a model file (see [`model_path`]).
fn model_bytes(name: &str) -> Vec<u8> {
    std::fs::read(model_path(name)).unwrap()
}

/// The byte offsets to cut at: the first 64, and 50 spread through the file.
fn cut_points(len: usize) -> Vec<usize> {
    (0..64.min(len))
        .chain((0..50).map(|i| 64 + (len - 65) * i / 49))
        .collect()
}

/// Parses model file `name` whole (which must succeed), cut short at `cut_points` (each an
/// error at or before the cut) and with one byte more (a trailing-bytes error).
pub fn check_truncations(name: &str, parse: fn(&[u8]) -> Result<(), DatError>) {
    let bytes = model_bytes(name);
    parse(&bytes).unwrap();
    for cut in cut_points(bytes.len()) {
        let err = parse(&bytes[..cut]).expect_err(&format!("{name} cut at {cut} parsed"));
        assert!(
            err.offset as usize <= cut,
            "{name} cut at {cut}: error offset {} ({err})",
            err.offset
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let err = parse(&longer).expect_err("trailing byte accepted");
    assert!(matches!(err.kind, DatErrorKind::TrailingBytes(1)), "{err}");
}

/// Flips bytes all through the file: parsing must return (Ok or Err), never panic or
/// allocate without bound. Flips in the first `strict` bytes (versions, record names
/// and sizes, which have no slack) must be errors; later ones may hit a float payload
/// and legitimately parse.
pub fn check_flips(name: &str, strict: usize, parse: fn(&[u8]) -> Result<(), DatError>) {
    let mut bytes = model_bytes(name);
    let len = bytes.len();
    let offsets = (0..32).chain((0..64).map(|i| 32 + (len - 33) * i / 63));
    for (i, at) in offsets.enumerate() {
        let mask = [0xFF, 0x80, 0x0F][i % 3];
        bytes[at] ^= mask;
        let result = parse(&bytes);
        if at < strict {
            assert!(
                result.is_err(),
                "{name}: flipping byte {at} with {mask:#x} parsed"
            );
        }
        bytes[at] ^= mask;
    }
}
