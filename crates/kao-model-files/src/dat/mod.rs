//! Reader for dlib's `serialize()` byte format (`dlib/serialize.h`, `float_details.h`,
//! `cuda/tensor.h`), plus parsers for the DNN model files built on it ([`net`]).
//!
//! Every read is bounded: lengths and element counts are checked against the bytes
//! that remain before anything is allocated, and every failure is a [`DatError`]
//! naming the file, the record being read and the byte offset.

pub mod net;

pub use net::{
    Affine, AffineMode, BoxOverlap, Conv, DetectorWindow, Fc, InputRgbPyramid, InputRgbSized,
    Layer, LossMetric, MmodModel, MmodOptions, Pool, ResnetModel,
};

use std::fmt;
use std::path::Path;

/// What went wrong while reading a dlib file (see [`DatError`] for the location).
#[derive(Debug, thiserror::Error)]
pub enum DatErrorKind {
    /// The data ends before the value being read.
    #[error("unexpected end of data: needed {needed} bytes, {left} left")]
    Truncated {
        /// Bytes the value needs.
        needed: u64,
        /// Bytes that remain.
        left: u64,
    },
    /// An integer control byte with a bad length, or a sign on an unsigned field.
    #[error("invalid integer control byte {0:#04x}")]
    BadInt(u8),
    /// A `bool` byte other than ASCII `'0'` / `'1'`.
    #[error("invalid bool byte {0:#04x}")]
    BadBool(u8),
    /// A float in dlib's old text format, or with an unknown special exponent.
    #[error("invalid float: {0}")]
    BadFloat(String),
    /// A version number or version string this reader does not know.
    #[error("unexpected version {found} (expected {expected})")]
    BadVersion {
        /// What the file holds.
        found: String,
        /// What the reader accepts.
        expected: String,
    },
    /// A value that is well-formed but inconsistent (a negative size, mismatched shapes, ...).
    #[error("{0}")]
    Invalid(String),
    /// Bytes left over after the complete model was read.
    #[error("{0} trailing bytes after the end of the model")]
    TrailingBytes(u64),
    /// The file could not be read.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// An error while reading a dlib file: where it happened and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {record} at byte {offset}: {kind}", .file.as_deref().unwrap_or("<bytes>"))]
pub struct DatError {
    /// The file name, when the data came from a file.
    pub file: Option<String>,
    /// The record being read, e.g. `layer 17 (con)` or `forest 3 tree 12`.
    pub record: String,
    /// Byte offset of the value that failed.
    pub offset: u64,
    /// What went wrong.
    #[source]
    pub kind: DatErrorKind,
}

/// Reads a whole file, mapping I/O failures to a [`DatError`] that names it.
pub fn read_file(path: &Path) -> Result<Vec<u8>, DatError> {
    std::fs::read(path).map_err(|e| DatError {
        file: Some(path.display().to_string()),
        record: "file".to_owned(),
        offset: 0,
        kind: DatErrorKind::Io(e),
    })
}

/// A DNN tensor (`resizable_tensor`): shape `[n, k, nr, nc]` and its f32 values.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    /// Shape `[num_samples, k (channels), nr (rows), nc (columns)]`.
    pub shape: [usize; 4],
    /// The values, row-major over the shape.
    pub data: Vec<f32>,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

/// A failed primitive read (kept small so the hot paths stay cheap).
#[derive(Debug, Clone, Copy)]
enum Fail {
    Truncated { at: usize, needed: usize },
    BadInt { at: usize, ctrl: u8 },
}

/// Exponent values `float_details` uses for +inf, -inf and NaN.
const EXP_INF: i64 = 32000;
const EXP_NINF: i64 = 32001;
const EXP_NAN: i64 = 32002;

/// A cursor over dlib-serialized bytes with bounded, error-reporting reads.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    file: Option<String>,
    record: String,
}

impl<'a> Reader<'a> {
    /// Starts reading `data`; `file` is only used in error messages.
    pub fn new(data: &'a [u8], file: Option<&str>) -> Self {
        Reader {
            data,
            pos: 0,
            file: file.map(str::to_owned),
            record: "header".to_owned(),
        }
    }

    /// Current byte offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Names the record being read, for error messages.
    pub fn set_record(&mut self, record: impl Into<String>) {
        self.record = record.into();
    }

    /// An error of `kind` at byte `offset` in the current record.
    pub fn error_at(&self, offset: usize, kind: DatErrorKind) -> DatError {
        DatError {
            file: self.file.clone(),
            record: self.record.clone(),
            offset: offset as u64,
            kind,
        }
    }

    /// An [`DatErrorKind::Invalid`] error at byte `offset`.
    pub fn invalid(&self, offset: usize, msg: impl Into<String>) -> DatError {
        self.error_at(offset, DatErrorKind::Invalid(msg.into()))
    }

    /// Takes the next `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DatError> {
        self.take(n).map_err(|f| self.fail(f))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        if n > self.remaining() {
            return Err(Fail::Truncated {
                at: self.pos,
                needed: n,
            });
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Turns a failed primitive read into a [`DatError`].
    #[cold]
    #[inline(never)]
    fn fail(&self, fail: Fail) -> DatError {
        match fail {
            Fail::Truncated { at, needed } => {
                let left = self.data.len().saturating_sub(at) as u64;
                self.error_at(
                    at,
                    DatErrorKind::Truncated {
                        needed: needed as u64,
                        left,
                    },
                )
            }
            Fail::BadInt { at, ctrl } => self.error_at(at, DatErrorKind::BadInt(ctrl)),
        }
    }

    /// dlib's integer encoding: a control byte (bit 7 = negative, low nibble = byte
    /// count) and that many little-endian magnitude bytes. `width` is the byte size of
    /// the C++ type; `signed` says whether a negative sign is allowed.
    #[inline]
    fn int(&mut self, width: u8, signed: bool) -> Result<i128, Fail> {
        let at = self.pos;
        let ctrl = self.take(1)?[0];
        let n = ctrl & 0x0F;
        let negative = ctrl & 0x80 != 0;
        if n == 0 || n > width || ctrl & 0x70 != 0 || (negative && !signed) {
            return Err(Fail::BadInt { at, ctrl });
        }
        let magnitude = self
            .take(n as usize)?
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | b as u64);
        Ok(if negative {
            -(magnitude as i128)
        } else {
            magnitude as i128
        })
    }

    /// A signed integer of C++ width `width` bytes (e.g. 4 for `int`, 8 for `long`).
    #[inline]
    pub fn signed(&mut self, width: u8) -> Result<i64, DatError> {
        let start = self.pos;
        let v = self.int(width, true).map_err(|f| self.fail(f))?;
        // A 64-bit magnitude with the sign bit set can exceed i64.
        i64::try_from(v).map_err(|_| self.invalid(start, format!("integer {v} out of range")))
    }

    /// An unsigned integer of C++ width `width` bytes.
    pub fn unsigned(&mut self, width: u8) -> Result<u64, DatError> {
        // Non-negative and at most 8 bytes, so it always fits.
        Ok(self.int(width, false).map_err(|f| self.fail(f))? as u64)
    }

    /// A C++ `int` (4 bytes, signed).
    pub fn i32(&mut self) -> Result<i32, DatError> {
        Ok(self.signed(4)? as i32)
    }

    /// A non-negative size stored in a signed or unsigned field of `width` bytes,
    /// checked to be at most `max`.
    pub fn size(&mut self, width: u8, max: usize) -> Result<usize, DatError> {
        let start = self.pos;
        let v = self.int(width, true).map_err(|f| self.fail(f))?;
        if v < 0 || v > max as i128 {
            return Err(self.invalid(start, format!("size {v} out of range 0..={max}")));
        }
        Ok(v as usize)
    }

    /// An element count (`unsigned long`) for a sequence whose elements take at least
    /// `min_elem_bytes` bytes each; rejected if the remaining data cannot hold it.
    pub fn count(&mut self, min_elem_bytes: usize) -> Result<usize, DatError> {
        let start = self.pos;
        let n = self.unsigned(8)?;
        let need = (n as u128) * (min_elem_bytes.max(1) as u128);
        if need > self.remaining() as u128 {
            let kind = DatErrorKind::Truncated {
                needed: u64::try_from(need).unwrap_or(u64::MAX),
                left: self.remaining() as u64,
            };
            return Err(self.error_at(start, kind));
        }
        Ok(n as usize)
    }

    /// A `float_details` value (int64 mantissa, int16 exponent; value = m·2^e) as f64.
    pub fn f64(&mut self) -> Result<f64, DatError> {
        let (m, e) = self.float_details()?;
        Ok(match e {
            EXP_INF => f64::INFINITY,
            EXP_NINF => f64::NEG_INFINITY,
            EXP_NAN => f64::NAN,
            _ => ldexp(m as f64, e),
        })
    }

    /// A `float_details` value read into a C++ `float`.
    #[inline]
    pub fn f32(&mut self) -> Result<f32, DatError> {
        let (m, e) = self.float_details()?;
        Ok(match e {
            EXP_INF => f32::INFINITY,
            EXP_NINF => f32::NEG_INFINITY,
            EXP_NAN => f32::NAN,
            // dlib writes floats with mantissas of at most 24 bits; then m·2^e is exact
            // in f64 and the cast rounds once, as dlib's `ldexp((float)m, e)` does.
            _ => ldexp(m as f64, e) as f32,
        })
    }

    #[inline]
    fn float_details(&mut self) -> Result<(i64, i64), DatError> {
        let start = self.pos;
        if let Some(&b) = self.data.get(self.pos)
            && b & 0x70 != 0
        {
            return Err(self.error_at(
                start,
                DatErrorKind::BadFloat("old text float format".into()),
            ));
        }
        let m = self.int(8, true).map_err(|f| self.fail(f))?;
        let e = self.int(2, true).map_err(|f| self.fail(f))?;
        // The mantissa is an int64: a 64-bit magnitude may not fit.
        match (i64::try_from(m), i64::try_from(e)) {
            (Ok(m), Ok(e)) if e <= EXP_NAN => Ok((m, e)),
            _ => Err(self.error_at(
                start,
                DatErrorKind::BadFloat(format!("mantissa {m}, exponent {e}")),
            )),
        }
    }

    /// A `bool`: the ASCII byte `'0'` or `'1'`.
    pub fn bool(&mut self) -> Result<bool, DatError> {
        let start = self.pos;
        match self.bytes(1)?[0] {
            b'0' => Ok(false),
            b'1' => Ok(true),
            b => Err(self.error_at(start, DatErrorKind::BadBool(b))),
        }
    }

    /// A `std::string`: a length and the raw bytes (decoded lossily as UTF-8).
    pub fn string(&mut self) -> Result<String, DatError> {
        let n = self.count(1)?;
        Ok(String::from_utf8_lossy(self.bytes(n)?).into_owned())
    }

    /// The header of a DNN tensor (version 2, then four `long long` dimensions);
    /// returns the shape and the number of elements, checked against the data left.
    fn tensor_header(&mut self) -> Result<([usize; 4], usize), DatError> {
        let start = self.pos;
        let version = self.i32()?;
        if version != 2 {
            let kind = DatErrorKind::BadVersion {
                found: version.to_string(),
                expected: "tensor version 2".into(),
            };
            return Err(self.error_at(start, kind));
        }
        let mut shape = [0usize; 4];
        for d in &mut shape {
            *d = self.size(8, usize::MAX)?;
        }
        let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        match count.and_then(|c| c.checked_mul(4)) {
            Some(bytes) if bytes <= self.remaining() => Ok((shape, bytes / 4)),
            _ => Err(self.invalid(
                start,
                format!(
                    "tensor shape {shape:?} does not fit in the {} bytes left",
                    self.remaining()
                ),
            )),
        }
    }

    /// A DNN tensor with its raw little-endian f32 payload.
    pub fn tensor(&mut self) -> Result<Tensor, DatError> {
        let (shape, count) = self.tensor_header()?;
        let data = self
            .bytes(count * 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Tensor { shape, data })
    }

    /// Skips a DNN tensor (e.g. a stored gradient) and returns its shape.
    pub fn skip_tensor(&mut self) -> Result<[usize; 4], DatError> {
        let (shape, count) = self.tensor_header()?;
        self.bytes(count * 4)?;
        Ok(shape)
    }

    /// An `alias_tensor`: version 1 and a shape, no data.
    pub fn alias_tensor(&mut self) -> Result<[usize; 4], DatError> {
        let start = self.pos;
        let version = self.i32()?;
        if version != 1 {
            let kind = DatErrorKind::BadVersion {
                found: version.to_string(),
                expected: "alias_tensor version 1".into(),
            };
            return Err(self.error_at(start, kind));
        }
        let mut shape = [0usize; 4];
        for d in &mut shape {
            *d = self.size(8, usize::MAX)?;
        }
        Ok(shape)
    }

    /// Fails unless every byte has been consumed.
    pub fn expect_end(&self) -> Result<(), DatError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error_at(self.pos, DatErrorKind::TrailingBytes(n as u64))),
        }
    }
}

/// `x · 2^e` without intermediate overflow for the exponents an i16 can hold.
fn ldexp(mut x: f64, mut e: i64) -> f64 {
    // 2^k for a normal exponent k in [-1022, 1023], built from its bits.
    let pow2 = |k: i64| f64::from_bits(((k + 1023) as u64) << 52);
    while e > 1023 {
        x *= pow2(1023);
        e -= 1023;
    }
    while e < -1022 {
        x *= pow2(-1022);
        e += 1022;
    }
    x * pow2(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_the_documented_examples() {
        let mut r = Reader::new(&[0x01, 0x00, 0x01, 0x02, 0x81, 0x1C], None);
        assert_eq!(r.signed(8).unwrap(), 0);
        assert_eq!(r.signed(8).unwrap(), 2);
        assert_eq!(r.signed(8).unwrap(), -28);
        r.expect_end().unwrap();
    }

    #[test]
    fn float_details_example_and_specials() {
        // 0xA3D70A · 2^-28 = 0.04
        let mut r = Reader::new(&[0x03, 0x0A, 0xD7, 0xA3, 0x81, 0x1C], None);
        assert_eq!(r.f32().unwrap(), 0.04f32);
        let inf = [
            0x01, 0x00, 0x02, 0x00, 0x7D, 0x01, 0x00, 0x02, 0x01, 0x7D, 0x01, 0x00, 0x02, 0x02,
            0x7D,
        ];
        let mut r = Reader::new(&inf, None);
        assert_eq!(r.f64().unwrap(), f64::INFINITY);
        assert_eq!(r.f64().unwrap(), f64::NEG_INFINITY);
        assert!(r.f64().unwrap().is_nan());
        let mut r = Reader::new(&[0x01, 0x00, 0x02, 0x03, 0x7D], None);
        assert!(matches!(
            r.f64().unwrap_err().kind,
            DatErrorKind::BadFloat(_)
        ));
    }

    #[test]
    fn bad_ints_and_bools_are_errors() {
        assert!(matches!(
            Reader::new(&[0x00], None).signed(8).unwrap_err().kind,
            DatErrorKind::BadInt(0)
        ));
        assert!(matches!(
            Reader::new(&[0x05, 0, 0, 0, 0, 0], None)
                .i32()
                .unwrap_err()
                .kind,
            DatErrorKind::BadInt(5)
        ));
        assert!(matches!(
            Reader::new(&[0x81, 1], None).unsigned(8).unwrap_err().kind,
            DatErrorKind::BadInt(0x81)
        ));
        assert!(matches!(
            Reader::new(&[0x02, 1], None).signed(8).unwrap_err().kind,
            DatErrorKind::Truncated { .. }
        ));
        assert!(matches!(
            Reader::new(b"2", None).bool().unwrap_err().kind,
            DatErrorKind::BadBool(b'2')
        ));
    }

    #[test]
    fn huge_counts_are_rejected_before_allocating() {
        // A string claiming 2^56 bytes.
        let mut r = Reader::new(&[0x08, 0, 0, 0, 0, 0, 0, 0, 1, b'x'], Some("f.dat"));
        let err = r.string().unwrap_err();
        assert!(matches!(err.kind, DatErrorKind::Truncated { .. }));
        assert_eq!(err.offset, 0);
        assert!(
            err.to_string().starts_with("f.dat: header at byte 0"),
            "{err}"
        );
        // A tensor claiming 2^40 x 2^40 x 1 x 1 elements.
        let t = [
            0x01, 0x02, 0x06, 0, 0, 0, 0, 0, 1, 0x06, 0, 0, 0, 0, 0, 1, 0x01, 1, 0x01, 1,
        ];
        assert!(matches!(
            Reader::new(&t, None).tensor().unwrap_err().kind,
            DatErrorKind::Invalid(_)
        ));
    }
}
