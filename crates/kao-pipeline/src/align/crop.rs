//! Aligned face crops as files: dlib's 5-point aligned chip (FACE01's aligner geometry,
//! `dlib.get_face_chip(img, shape, size=400, padding=0.1)`), PNG/JPEG encoding, safe
//! file and folder names, and atomic writes.
//!
//! A crop of frame `F` of `talk.mp4`, face `K`, goes to
//! `<out>/<sanitize_identity(identity)>/<crop_file_name(stem, F, K, format)>`, where the stem
//! is the one [`CropStems::claim`] gives the video (`talk`, or `talk-<hash>` when another
//! video of the run took `talk` first).

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail, ensure};
use clap::Args;
use kao_image::{RgbImage, RgbView};

/// The longest name, in bytes, that [`sanitize_identity`] returns (and so the longest
/// video stem in [`crop_file_name`] before [`CropStems`] adds a hash): well under the 255
/// bytes most file systems allow for one path component, with room for the hash and the
/// frame and face suffix.
pub const MAX_NAME_BYTES: usize = 100;

/// The largest crop side [`cut_crop`] accepts, in pixels.
pub const MAX_CROP_SIZE: usize = 8192;

/// Characters that are never kept in a name: path separators and the characters
/// Windows reserves in file names. Control characters (NUL included) are dropped too.
const BAD_CHARS: &[char] = &['/', '\\', '<', '>', ':', '"', '|', '?', '*'];

/// Makes `name` safe to use as one path component (a folder named after an identity).
///
/// Path separators (`/`, `\`), the characters Windows reserves (`<>:"|?*`) and control
/// characters (NUL included) become `_`; a leading `.` becomes `_`, so the result is
/// never hidden, `.` or `..`. A name that is empty, `.`, `..`, or made only of such
/// characters becomes `_`. The result is cut to at most [`MAX_NAME_BYTES`] bytes on a
/// character boundary. Everything else, Unicode letters included, is kept as it is:
/// `katy_perry` and `新垣結衣` come back unchanged.
pub fn sanitize_identity(name: &str) -> String {
    if name == "." || name == ".." {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(name.len().min(MAX_NAME_BYTES));
    let mut kept_any = false;
    for c in name.chars() {
        let bad = c.is_control() || BAD_CHARS.contains(&c) || (out.is_empty() && c == '.');
        let c = if bad { '_' } else { c };
        kept_any |= !bad;
        if out.len() + c.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    if kept_any { out } else { "_".to_owned() }
}

/// The file name of one crop: `<stem>_f<frame_index:06>_<face_index>.<ext>`, with the
/// video's stem from [`CropStems::claim`].
pub fn crop_file_name(
    stem: &str,
    frame_index: u64,
    face_index: u32,
    format: ImageFormat,
) -> String {
    format!(
        "{stem}_f{frame_index:06}_{face_index}.{}",
        format.extension()
    )
}

/// The stem each video's crops are named with, first come first named. A video's stem is
/// the last path segment of its source without the extension; for a URL (`scheme://…`) the
/// query and fragment are dropped first, so `http://host/a/talk.mp4?x=1` gives `talk`,
/// `/dev/video0` gives `video0`; made safe with [`sanitize_identity`]. Cameras name every
/// card's files alike (`day1/C0001.MP4`, `day2/C0001.MP4`): the first video to claim a stem
/// keeps it, and a later one gets the stem and the first 12 hex digits of the sha256 of its
/// source string (`day2/C0001.MP4`: `C0001-7b5258bf1ca4`, as shards' partition keys), so
/// neither overwrites the other's crops. Stems are compared without case, as macOS's and
/// Windows's file systems compare names.
#[derive(Debug, Default)]
pub struct CropStems {
    /// Each claimed source's stem.
    of: std::collections::HashMap<String, String>,
    /// The stems taken, in lower case.
    taken: std::collections::HashSet<String>,
}

impl CropStems {
    /// `source`'s stem: the one it claimed before, else its own when no other source has
    /// taken that, else one with its source's hash.
    pub fn claim(&mut self, source: &str) -> &str {
        if !self.of.contains_key(source) {
            let plain = sanitize_identity(source_stem(source));
            let hash = source_hash(source);
            // The full hash cannot be taken but by a file named after another's hash; a
            // counter settles even that.
            let stem = [plain.clone(), format!("{plain}-{}", &hash[..12])]
                .into_iter()
                .chain((1..).map(|k| format!("{plain}-{hash}-{k}")))
                .find(|stem| !self.taken.contains(&stem.to_lowercase()))
                .expect("the counter never runs out");
            self.taken.insert(stem.to_lowercase());
            self.of.insert(source.to_string(), stem);
        }
        &self.of[source]
    }
}

/// The sha256 of `source` as given, in hex.
pub fn source_hash(source: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(source.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The last non-empty path segment of `source` (query and fragment removed for URLs),
/// without its extension; `stdin` for standard input (`-`). A name whose only dot is its
/// first character keeps it, as in [`Path::file_stem`].
fn source_stem(source: &str) -> &str {
    if source == kao_video::STDIN {
        return "stdin";
    }
    let path = match source.find("://") {
        Some(scheme_end) => {
            let rest = &source[scheme_end + 3..];
            rest.split(['?', '#']).next().unwrap_or(rest)
        }
        None => source,
    };
    let segment = path
        .split(['/', '\\'])
        .rev()
        .find(|s| !s.is_empty())
        .unwrap_or("");
    match segment.rfind('.') {
        Some(dot) if dot > 0 => &segment[..dot],
        _ => segment,
    }
}

/// The image format of the crop files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ImageFormat {
    /// Lossless PNG, 8-bit RGB.
    #[default]
    Png,
    /// Baseline JPEG, 8-bit RGB (YCbCr), at [`CropSpec::quality`].
    Jpg,
}

impl ImageFormat {
    /// The file extension, without the dot: `png` or `jpg`.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpg => "jpg",
        }
    }
}

impl fmt::Display for ImageFormat {
    /// Writes the extension, which [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// A string that names no [`ImageFormat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseImageFormatError(String);

impl fmt::Display for ParseImageFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown image format {:?}: expected png, jpg or jpeg",
            self.0
        )
    }
}

impl std::error::Error for ParseImageFormatError {}

impl FromStr for ImageFormat {
    type Err = ParseImageFormatError;

    /// Parses `png`, `jpg` or `jpeg`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "png" => Ok(ImageFormat::Png),
            "jpg" | "jpeg" => Ok(ImageFormat::Jpg),
            _ => Err(ParseImageFormatError(s.to_owned())),
        }
    }
}

/// How crops are cut and stored (kao-align's options; sizes from 1 to [`MAX_CROP_SIZE`]). Each
/// field's doc is its `--help` text; its default is [`CropSpec::default`]'s.
#[derive(Args, Debug, Clone, Copy, PartialEq)]
pub struct CropSpec {
    /// Side of the square aligned crops, in pixels.
    #[arg(long, value_name = "PX", default_value_t = CropSpec::default().size)]
    pub size: usize,
    /// Margin around dlib's 5-point template, as a fraction of the face (FACE01's aligner: 0.1).
    #[arg(long, value_name = "P", default_value_t = CropSpec::default().padding)]
    pub padding: f64,
    /// Crop file format: png or jpg.
    #[arg(long, value_name = "FORMAT", default_value_t = CropSpec::default().format)]
    pub format: ImageFormat,
    /// JPEG quality (1–100).
    #[arg(long, value_name = "Q", default_value_t = CropSpec::default().quality, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
}

impl Default for CropSpec {
    /// FACE01's crops: 400 × 400, padding 0.1, PNG (quality 95 if JPEG is chosen).
    fn default() -> Self {
        CropSpec {
            size: 400,
            padding: 0.1,
            format: ImageFormat::Png,
            quality: 95,
        }
    }
}

/// Cuts the aligned `spec.size × spec.size` crop of the face in `patch`, as dlib's
/// `get_face_chip(patch, landmarks, size, padding)` does: the similarity transform
/// that best maps dlib's 5-point template onto the landmarks, sampled bilinearly.
/// Parts of the crop outside the patch are black.
///
/// `landmarks_in_patch` are dlib's 5 points in patch pixel coordinates, in dlib's
/// order: the two corners of the eye on the image's right (outer, inner), the two of
/// the eye on the image's left (outer, inner), then the bottom of the nose.
///
/// Errors for an empty patch, a size of 0 or above [`MAX_CROP_SIZE`], a padding that is
/// negative or not finite, a landmark count other than 5, non-finite landmarks, and
/// landmarks that span less than a pixel (a degenerate face).
pub fn cut_crop(
    patch: &RgbView<'_>,
    landmarks_in_patch: &[(f32, f32)],
    spec: &CropSpec,
) -> anyhow::Result<RgbImage> {
    ensure!(
        patch.width() > 0 && patch.height() > 0,
        "cannot crop a face from an empty {}x{} patch",
        patch.width(),
        patch.height()
    );
    ensure!(
        (1..=MAX_CROP_SIZE).contains(&spec.size),
        "crop size {} is outside 1..={MAX_CROP_SIZE}",
        spec.size
    );
    ensure!(
        landmarks_in_patch
            .iter()
            .all(|&(x, y)| x.is_finite() && y.is_finite()),
        "face landmarks are not finite: {landmarks_in_patch:?}"
    );
    let details = kao_image::get_face_chip_details(landmarks_in_patch, spec.size, spec.padding)
        .context("cannot align the face crop")?;
    // The chip's side in patch pixels: 0 when the landmarks coincide.
    let side = details.rect.width();
    ensure!(
        side.is_finite() && side >= 1.0,
        "face landmarks are degenerate (the face spans less than a pixel): \
         {landmarks_in_patch:?}"
    );
    Ok(kao_image::extract_image_chip(patch, &details))
}

/// Encodes an RGB image as PNG or baseline JPEG (8 bits per channel). `quality`
/// (1 to 100) applies to JPEG only.
///
/// Errors for an empty image, pixel data whose length is not `width · height · 3`,
/// a JPEG side above 65 535 pixels, or a JPEG quality outside 1 to 100.
pub fn encode(image: &RgbImage, format: ImageFormat, quality: u8) -> anyhow::Result<Vec<u8>> {
    let (w, h) = (image.width, image.height);
    ensure!(w > 0 && h > 0, "cannot encode an empty {w}x{h} image");
    let expected = w
        .checked_mul(h)
        .and_then(|n| n.checked_mul(3))
        .with_context(|| format!("image size {w}x{h} overflows"))?;
    ensure!(
        image.data.len() == expected,
        "{w}x{h} RGB image has {} bytes of pixels, expected {expected}",
        image.data.len()
    );
    match format {
        ImageFormat::Png => encode_png(image).with_context(|| format!("encoding {w}x{h} PNG")),
        ImageFormat::Jpg => {
            encode_jpeg(image, quality).with_context(|| format!("encoding {w}x{h} JPEG"))
        }
    }
}

/// PNG, RGB8, fast compression; the caller has checked the data length.
fn encode_png(image: &RgbImage) -> anyhow::Result<Vec<u8>> {
    let width = u32::try_from(image.width).context("width does not fit PNG")?;
    let height = u32::try_from(image.height).context("height does not fit PNG")?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // fdeflate's fast mode: about 5× faster than the default for ~10 % larger files.
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&image.data)?;
    writer.finish()?;
    Ok(out)
}

/// Baseline JPEG of RGB8 pixels; the caller has checked the data length.
fn encode_jpeg(image: &RgbImage, quality: u8) -> anyhow::Result<Vec<u8>> {
    ensure!(
        (1..=100).contains(&quality),
        "JPEG quality {quality} is outside 1..=100"
    );
    let (Ok(width), Ok(height)) = (u16::try_from(image.width), u16::try_from(image.height)) else {
        bail!("JPEG sides are limited to 65535 pixels");
    };
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality).encode(
        &image.data,
        width,
        height,
        jpeg_encoder::ColorType::Rgb,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_identity_cases() {
        assert_eq!(sanitize_identity("katy_perry"), "katy_perry");
        assert_eq!(sanitize_identity("新垣結衣"), "新垣結衣");
        assert_eq!(sanitize_identity("Zoë Saldaña"), "Zoë Saldaña");
        assert_eq!(sanitize_identity("../etc"), "_._etc");
        assert_eq!(sanitize_identity("a/b"), "a_b");
        assert_eq!(sanitize_identity("a\\b"), "a_b");
        assert_eq!(sanitize_identity(".."), "_");
        assert_eq!(sanitize_identity("."), "_");
        assert_eq!(sanitize_identity(".hidden"), "_hidden");
        assert_eq!(sanitize_identity("a.b"), "a.b");
        assert_eq!(sanitize_identity(""), "_");
        assert_eq!(sanitize_identity("///"), "_");
        assert_eq!(sanitize_identity("\0"), "_");
        assert_eq!(sanitize_identity("a\0b\nc\td\u{7f}e\u{85}"), "a_b_c_d_e_");
        assert_eq!(sanitize_identity("<>:\"|?*x"), "_______x");
        for name in ["../etc", "a/b", "..", ".", ".hidden", "", "\u{1}\u{2}"] {
            let s = sanitize_identity(name);
            assert!(!s.is_empty() && !s.starts_with('.'), "{name:?} → {s:?}");
            assert!(!s.contains(['/', '\\']), "{name:?} → {s:?}");
        }
    }

    #[test]
    fn sanitize_identity_bounds_length_on_char_boundaries() {
        let ascii = "a".repeat(500);
        assert_eq!(sanitize_identity(&ascii), "a".repeat(MAX_NAME_BYTES));
        // 3-byte characters: 33 fit in 100 bytes.
        let long = "顔".repeat(200);
        let s = sanitize_identity(&long);
        assert_eq!(s, "顔".repeat(MAX_NAME_BYTES / 3));
        assert!(s.len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn crop_file_names() {
        let png = ImageFormat::Png;
        let name = |source: &str, frame: u64, face: u32, format: ImageFormat| {
            crop_file_name(CropStems::default().claim(source), frame, face, format)
        };
        assert_eq!(name("/videos/talk.mp4", 42, 0, png), "talk_f000042_0.png");
        assert_eq!(
            name("http://host/a/talk.mp4?x=1", 7, 2, ImageFormat::Jpg),
            "talk_f000007_2.jpg"
        );
        assert_eq!(
            name("https://host/a/b.c.webm#t=3", 1234567, 1, png),
            "b.c_f1234567_1.png"
        );
        assert_eq!(name("/dev/video0", 0, 0, png), "video0_f000000_0.png");
        assert_eq!(
            name("rtsp://cam/stream/", 3, 0, png),
            "stream_f000003_0.png"
        );
        assert_eq!(name("clip", 3, 0, png), "clip_f000003_0.png");
        assert_eq!(name("-", 3, 0, png), "stdin_f000003_0.png");
        assert_eq!(name("C:\\v\\talk.mkv", 3, 0, png), "talk_f000003_0.png");
        assert_eq!(name(".mp4", 3, 0, png), "_mp4_f000003_0.png");
        assert_eq!(name("", 3, 0, png), "__f000003_0.png");
        assert_eq!(name("/a/..", 3, 0, png), "__f000003_0.png");
        // A '?' in a local path is part of the name, and is made safe.
        assert_eq!(name("/v/what?.mp4", 3, 0, png), "what__f000003_0.png");
    }

    #[test]
    fn videos_of_one_name_get_stems_of_their_own() {
        let mut stems = CropStems::default();
        assert_eq!(stems.claim("day1/C0001.MP4"), "C0001");
        assert_eq!(stems.claim("x.mp4"), "x");
        // The second C0001 (another extension, or another case, is the same name too).
        assert_eq!(stems.claim("day2/C0001.MP4"), "C0001-7b5258bf1ca4");
        assert_eq!(
            stems.claim("day1/C0001.MP4"),
            "C0001",
            "a source keeps its stem"
        );
        let other = stems.claim("day3/c0001.mov").to_string();
        assert!(other.starts_with("c0001-") && other.len() == 18, "{other}");
        // A file named after another's hashed stem still gets a stem of its own.
        let taken = "C0001-7b5258bf1ca4";
        let named_like = format!("elsewhere/{taken}.mp4");
        let own = stems.claim(&named_like).to_string();
        assert!(own.starts_with(&format!("{taken}-")), "{own}");
        let all = [
            "day1/C0001.MP4",
            "x.mp4",
            "day2/C0001.MP4",
            "day3/c0001.mov",
            &named_like,
        ]
        .map(|s| stems.claim(s).to_lowercase());
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
    }

    #[test]
    fn image_format_parsing() {
        assert_eq!("png".parse::<ImageFormat>(), Ok(ImageFormat::Png));
        assert_eq!("jpg".parse::<ImageFormat>(), Ok(ImageFormat::Jpg));
        assert_eq!("JPEG".parse::<ImageFormat>(), Ok(ImageFormat::Jpg));
        let err = "gif".parse::<ImageFormat>().unwrap_err().to_string();
        assert!(
            err.contains("\"gif\"") && err.contains("png, jpg or jpeg"),
            "{err}"
        );
        for f in [ImageFormat::Png, ImageFormat::Jpg] {
            assert_eq!(f.to_string().parse::<ImageFormat>(), Ok(f));
        }
        assert_eq!(CropSpec::default().format, ImageFormat::Png);
    }

    /// A `w × h` image whose channels are `2x`, `2y` and `x + y` (wrapping at 256).
    fn pattern(w: usize, h: usize) -> RgbImage {
        let mut img = RgbImage::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let p = &mut img.data[(y * w + x) * 3..][..3];
                p.copy_from_slice(&[(x * 2) as u8, (y * 2) as u8, (x + y) as u8]);
            }
        }
        img
    }

    #[test]
    fn png_round_trip() {
        let img = pattern(37, 23);
        let bytes = encode(&img, ImageFormat::Png, 0).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (37, 23));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        assert_eq!(&buf[..info.buffer_size()], &img.data[..]);
    }

    /// Width and height from the baseline start-of-frame (SOF0) segment.
    fn jpeg_size(bytes: &[u8]) -> Option<(u16, u16)> {
        let mut i = 2;
        while i + 9 < bytes.len() {
            if bytes[i] != 0xFF {
                return None;
            }
            let marker = bytes[i + 1];
            let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
            if marker == 0xC0 {
                let h = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]);
                let w = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]);
                return Some((w, h));
            }
            i += 2 + len;
        }
        None
    }

    #[test]
    fn jpeg_output() {
        let img = pattern(41, 17);
        for quality in [1, 50, 95, 100] {
            let bytes = encode(&img, ImageFormat::Jpg, quality).unwrap();
            assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
            assert_eq!(&bytes[bytes.len() - 2..], &[0xFF, 0xD9]);
            assert_eq!(jpeg_size(&bytes), Some((41, 17)));
        }
    }

    #[test]
    fn encode_rejects_bad_input() {
        let empty = RgbImage::new(0, 5);
        for format in [ImageFormat::Png, ImageFormat::Jpg] {
            assert!(encode(&empty, format, 90).is_err());
        }
        let mut short = pattern(4, 4);
        short.data.pop();
        let err = encode(&short, ImageFormat::Png, 90).unwrap_err();
        assert!(format!("{err:#}").contains("expected 48"), "{err:#}");
        let img = pattern(4, 4);
        for quality in [0, 101, 255] {
            let err = encode(&img, ImageFormat::Jpg, quality).unwrap_err();
            assert!(format!("{err:#}").contains("quality"), "{err:#}");
        }
        let wide = RgbImage::new(70_000, 1);
        assert!(encode(&wide, ImageFormat::Jpg, 90).is_err());
    }

    /// dlib's 5-point template (`chip.rs`), in chip units.
    const TEMPLATE: [(f64, f64); 5] = [
        (0.8595674595992, 0.2134981538014),
        (0.6460604764104, 0.2289674387677),
        (0.1205750620789, 0.2137274526848),
        (0.3340850613712, 0.2290642403242),
        (0.4901123135679, 0.6277975316475),
    ];

    #[test]
    fn cut_crop_of_a_plausible_face() {
        let patch = pattern(200, 220);
        // dlib order: right-of-image eye (outer, inner), left-of-image eye (outer,
        // inner), nose bottom; the face is slightly tilted.
        let marks = [
            (140.0, 84.0),
            (116.0, 84.0),
            (60.0, 78.0),
            (84.0, 80.0),
            (102.0, 125.0),
        ];
        for spec in [
            CropSpec::default(),
            CropSpec {
                size: 150,
                padding: 0.25,
                ..CropSpec::default()
            },
        ] {
            let crop = cut_crop(&patch.view(), &marks, &spec).unwrap();
            assert_eq!((crop.width, crop.height), (spec.size, spec.size));
            assert_eq!(crop.data.len(), spec.size * spec.size * 3);
            // The centre of the crop is inside the patch, so it is not black.
            let c = (spec.size / 2 * spec.size + spec.size / 2) * 3;
            assert_ne!(&crop.data[c..c + 3], &[0, 0, 0]);
        }
    }

    #[test]
    fn cut_crop_at_the_template_is_the_identity() {
        // Landmarks exactly where the template puts them in a 100-pixel chip with
        // padding 0.1: the crop is the patch itself, shifted by half a pixel as dlib's
        // chips are (the chip's rectangle is centred on the template, so chip pixel
        // (x, y) samples the patch at (x + 0.5, y + 0.5)). Bilinear sampling leaves the
        // last row and column black.
        let (n, padding) = (100, 0.1);
        let patch = pattern(n, n);
        let marks: Vec<(f32, f32)> = TEMPLATE
            .iter()
            .map(|&(x, y)| {
                let f = |v: f64| ((padding + v) / (1.0 + 2.0 * padding) * n as f64) as f32;
                (f(x), f(y))
            })
            .collect();
        let spec = CropSpec {
            size: n,
            padding,
            ..CropSpec::default()
        };
        let crop = cut_crop(&patch.view(), &marks, &spec).unwrap();
        for y in 0..n - 1 {
            for x in 0..n - 1 {
                let expected = [2 * x + 1, 2 * y + 1, x + y + 1];
                let got = &crop.data[(y * n + x) * 3..][..3];
                for (k, (&g, e)) in got.iter().zip(expected).enumerate() {
                    assert!((g as usize).abs_diff(e) <= 1, "({x}, {y}, {k}): {g}");
                }
            }
        }
        assert!(crop.data[(n * n - 1) * 3..].iter().all(|&v| v == 0));
    }

    /// Plausible landmarks of a face about 20 pixels wide, in dlib's order.
    const SMALL_FACE: [(f32, f32); 5] = [
        (40.0, 20.0),
        (34.0, 20.0),
        (20.0, 20.0),
        (28.0, 20.0),
        (31.0, 36.0),
    ];

    #[test]
    fn cut_crop_rejects_bad_input() {
        let patch = pattern(64, 64);
        let spec = CropSpec::default();
        let ok = SMALL_FACE;
        assert!(cut_crop(&patch.view(), &ok, &spec).is_ok());

        // (landmarks, spec, part of the expected error)
        type Case = (Vec<(f32, f32)>, CropSpec, &'static str);
        let cases: Vec<Case> = vec![
            (vec![(30.0, 30.0); 5], spec, "degenerate"),
            (
                ok.iter().map(|&(x, y)| (x * 1e-3, y * 1e-3)).collect(),
                spec,
                "degenerate",
            ),
            (vec![(f32::NAN, 3.0); 5], spec, "not finite"),
            (vec![(f32::INFINITY, 3.0); 5], spec, "not finite"),
            (ok[..4].to_vec(), spec, "expected 5 landmarks"),
            (ok.to_vec(), CropSpec { size: 0, ..spec }, "crop size"),
            (
                ok.to_vec(),
                CropSpec {
                    size: usize::MAX,
                    ..spec
                },
                "crop size",
            ),
            (
                ok.to_vec(),
                CropSpec {
                    padding: -0.5,
                    ..spec
                },
                "padding",
            ),
        ];
        for (marks, spec, expected) in cases {
            let err = cut_crop(&patch.view(), &marks, &spec).unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{err:#}");
        }
        let empty = RgbImage::new(0, 0);
        let err = cut_crop(&empty.view(), &ok, &spec).unwrap_err();
        assert!(format!("{err:#}").contains("empty"), "{err:#}");
    }

    #[test]
    fn cut_crop_far_outside_the_patch_is_black() {
        let patch = pattern(64, 64);
        let far: Vec<(f32, f32)> = SMALL_FACE
            .iter()
            .map(|&(x, y)| (x + 1e6, y - 1e6))
            .collect();
        let spec = CropSpec {
            size: 32,
            ..CropSpec::default()
        };
        let crop = cut_crop(&patch.view(), &far, &spec).unwrap();
        assert_eq!((crop.width, crop.height), (32, 32));
        assert!(crop.data.iter().all(|&v| v == 0));
    }
}
