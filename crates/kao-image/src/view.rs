//! Minimal RGB image types shared by every stage that reads pixels: the detectors, the shape
//! predictor, chip extraction and the embedders.

/// dlib's inclusive integer rectangle: it covers columns `left..=right` and rows
/// `top..=bottom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// First column.
    pub left: i64,
    /// First row.
    pub top: i64,
    /// Last column (inclusive).
    pub right: i64,
    /// Last row (inclusive).
    pub bottom: i64,
}

impl Rect {
    /// A rectangle from its inclusive corners.
    pub fn new(left: i64, top: i64, right: i64, bottom: i64) -> Self {
        Rect {
            left,
            top,
            right,
            bottom,
        }
    }
}

/// A borrowed 8-bit RGB image: `height` rows of `width` interleaved RGB pixels, each
/// row starting `stride` bytes after the previous one.
#[derive(Debug, Clone, Copy)]
pub struct RgbView<'a> {
    width: usize,
    height: usize,
    stride: usize,
    data: &'a [u8],
}

impl<'a> RgbView<'a> {
    /// A tightly packed view (`stride = 3·width`); `None` if `data` is too short.
    pub fn new(width: usize, height: usize, data: &'a [u8]) -> Option<Self> {
        Self::with_stride(width, height, width.checked_mul(3)?, data)
    }

    /// A view with `stride` bytes per row; `None` if the stride is shorter than a row
    /// or `data` cannot hold the image.
    pub fn with_stride(width: usize, height: usize, stride: usize, data: &'a [u8]) -> Option<Self> {
        let row = width.checked_mul(3)?;
        if stride < row {
            return None;
        }
        let needed = match height {
            0 => 0,
            h => (h - 1).checked_mul(stride)?.checked_add(row)?,
        };
        (data.len() >= needed).then_some(RgbView {
            width,
            height,
            stride,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The pixel at column `x`, row `y` (both must be in range).
    #[inline]
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = y * self.stride + 3 * x;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Bytes from one row's start to the next's.
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// The two pixels starting at byte `at` (one that starts a pixel with another after it
    /// in its row) as one little-endian word: r, g, b, r, g, b in its low six bytes (what the
    /// two high bytes hold is not said).
    #[inline(always)]
    pub(crate) fn pixel_pair_at(&self, at: usize) -> u64 {
        match self.data[at..].first_chunk::<8>() {
            Some(bytes) => u64::from_le_bytes(*bytes),
            // The image's last pair: fewer than eight bytes left.
            None => {
                let mut bytes = [0u8; 8];
                bytes[..6].copy_from_slice(&self.data[at..at + 6]);
                u64::from_le_bytes(bytes)
            }
        }
    }

    /// The pixel at (`x`, `y`), or `None` outside the image.
    #[inline]
    pub fn get(&self, x: i64, y: i64) -> Option<[u8; 3]> {
        let (x, y) = (usize::try_from(x).ok()?, usize::try_from(y).ok()?);
        (x < self.width && y < self.height).then(|| self.pixel(x, y))
    }

    /// Row `y` as `3·width` bytes.
    pub fn row(&self, y: usize) -> &'a [u8] {
        &self.data[y * self.stride..y * self.stride + 3 * self.width]
    }

    /// The sub-image covering the inclusive rectangle `r`, without copying; `r` must lie
    /// inside the image and be non-empty.
    pub fn sub(&self, r: Rect) -> RgbView<'a> {
        let (l, t) = (r.left as usize, r.top as usize);
        RgbView {
            width: (r.right - r.left + 1) as usize,
            height: (r.bottom - r.top + 1) as usize,
            stride: self.stride,
            data: &self.data[t * self.stride + 3 * l..],
        }
    }
}

/// An owned, tightly packed 8-bit RGB image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height · width · 3` bytes, row-major RGB.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A black image.
    pub fn new(width: usize, height: usize) -> Self {
        RgbImage {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }

    /// A view of the whole image.
    pub fn view(&self) -> RgbView<'_> {
        RgbView {
            width: self.width,
            height: self.height,
            stride: self.width * 3,
            data: &self.data,
        }
    }
}

/// `v.floor() as i64`, computed without a call into libm (the x86-64 baseline has no
/// rounding instruction, and the shape predictor and chip sampling floor per pixel).
#[inline]
pub fn floor_to_i64(v: f64) -> i64 {
    let t = v as i64;
    if (t as f64) > v {
        t.saturating_sub(1)
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::floor_to_i64;

    #[test]
    fn floor_to_i64_is_floor() {
        for v in [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            2.999,
            -2.999,
            -3.0,
            1e15 + 0.5,
            -1e15 - 0.5,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ] {
            assert_eq!(floor_to_i64(v), v.floor() as i64, "{v}");
        }
    }
}
