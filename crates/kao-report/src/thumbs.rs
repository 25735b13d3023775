//! Thumbnails as `data:` URIs: written crops read back from the output folder, and rejected
//! faces cut from their video's frames (which the manifest does not keep).

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::path::Path;

use base64::Engine;
use kao_analysis::{Face, Manifest};
use kao_image::RgbView;
use kao_video::{DecodeOptions, Frame};

use crate::html::Plan;

/// Margin around a face box, as a share of its longer side, for rejected-face thumbnails.
const MARGIN: f32 = 0.25;
/// JPEG quality of the thumbnails.
const QUALITY: u8 = 80;

/// The thumbnails of one page, by face index.
pub struct Thumbs {
    /// Thumbnail side, pixels.
    pub size: u32,
    /// `data:image/jpeg;base64,...` per face that has one.
    uris: HashMap<usize, String>,
    /// Crops shown.
    pub crops: usize,
    /// Rejected faces shown with a picture.
    pub rejected: usize,
}

impl Thumbs {
    /// The thumbnail of face `i`, if it has one.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.uris.get(&i).map(String::as_str)
    }
}

/// Where the rejected faces' videos are looked for.
pub enum Videos<'a> {
    /// Do not open videos.
    Skip,
    /// Open each video where [`kao_video::locate`] finds it, also trying this folder.
    Open(Option<&'a Path>),
}

/// Makes the thumbnails `plan` shows: every written crop, and (unless `videos` says skip)
/// the rejected faces, cut from their videos. What cannot be read is reported once on
/// stderr and shown without a picture.
pub fn make(
    manifest: &Manifest,
    faces: &[Face],
    plan: &Plan,
    size: u32,
    videos: Videos<'_>,
) -> Thumbs {
    let mut thumbs = Thumbs {
        size,
        uris: HashMap::new(),
        crops: 0,
        rejected: 0,
    };
    for i in plan.kept() {
        let Some(rel) = &faces[i].crop_path else {
            continue;
        };
        let path = manifest.dir().join(rel);
        match read_image(&path.to_string_lossy()) {
            Ok(frame) => {
                let view = RgbView::new(frame.width as usize, frame.height as usize, &frame.rgb);
                if let Some(uri) = view.and_then(|v| thumbnail(&v, size)) {
                    thumbs.uris.insert(i, uri);
                    thumbs.crops += 1;
                }
            }
            Err(e) => eprintln!(
                "kao-report: {}: cannot read the crop ({e}); shown without a picture",
                path.display()
            ),
        }
    }
    let Videos::Open(video_dir) = videos else {
        return thumbs;
    };
    // Rejected faces, per video, per frame.
    let mut wanted: BTreeMap<&str, BTreeMap<u64, Vec<usize>>> = BTreeMap::new();
    for i in plan.rejected_shown() {
        wanted
            .entry(faces[i].source.as_str())
            .or_default()
            .entry(faces[i].frame_index)
            .or_default()
            .push(i);
    }
    for (source, frames) in wanted {
        let last = frames.keys().next_back().copied().unwrap_or(0);
        let found = kao_video::locate(source, manifest.dir(), video_dir);
        if found != source {
            eprintln!("kao-report: {source} not found as recorded; reading {found}");
        }
        let result = kao_video::decode(&found, &DecodeOptions::default(), |frame: Frame| {
            if let Some(list) = frames.get(&frame.index) {
                for &i in list {
                    if let Some(uri) = cut(&frame, faces[i].bbox, size) {
                        thumbs.uris.insert(i, uri);
                        thumbs.rejected += 1;
                    }
                }
            }
            if frame.index >= last {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if let Err(e) = result {
            eprintln!(
                "kao-report: {e}; its rejected faces are shown without a picture (--videos DIR \
                 says where to look, --no-video skips videos)"
            );
        }
    }
    thumbs
}

/// Decodes an image file (PNG or JPEG crop) to RGB.
fn read_image(path: &str) -> Result<Frame, kao_video::DecodeError> {
    let mut first = None;
    kao_video::decode(
        path,
        &DecodeOptions {
            max_frames: Some(1),
            ..DecodeOptions::default()
        },
        |frame| {
            first = Some(frame);
            ControlFlow::Break(())
        },
    )?;
    first.ok_or_else(|| kao_video::DecodeError::NoVideo { input: path.into() })
}

/// The face box with a margin, squared and clamped to the frame, as a thumbnail.
fn cut(frame: &Frame, bbox: [f32; 4], size: u32) -> Option<String> {
    let [x, y, w, h] = bbox;
    let side = w.max(h) * (1.0 + 2.0 * MARGIN);
    let (cx, cy) = (x + w / 2.0, y + h / 2.0);
    let (fw, fh) = (frame.width as f32, frame.height as f32);
    let x0 = (cx - side / 2.0).clamp(0.0, fw) as usize;
    let y0 = (cy - side / 2.0).clamp(0.0, fh) as usize;
    let x1 = (cx + side / 2.0).clamp(0.0, fw) as usize;
    let y1 = (cy + side / 2.0).clamp(0.0, fh) as usize;
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let stride = frame.width as usize * 3;
    let view = RgbView::with_stride(x1 - x0, y1 - y0, stride, &frame.rgb[y0 * stride + x0 * 3..])?;
    thumbnail(&view, size)
}

/// `image` scaled so its longer side is `size` (never enlarged), as a JPEG `data:` URI.
fn thumbnail(image: &RgbView<'_>, size: u32) -> Option<String> {
    let (w, h) = (image.width(), image.height());
    let scale = (size as f32 / w.max(h) as f32).min(1.0);
    let (tw, th) = (
        ((w as f32 * scale).round() as usize).max(1),
        ((h as f32 * scale).round() as usize).max(1),
    );
    let small = kao_image::resize_bilinear(image, tw, th);
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, QUALITY)
        .encode(
            &small.data,
            tw as u16,
            th as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .ok()?;
    Some(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    ))
}
