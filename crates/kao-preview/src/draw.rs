//! Drawing on RGB24 frames: face boxes and their labels in an 8×8 bitmap font.

use font8x8::legacy::{BASIC_LEGACY, HIRAGANA_LEGACY, LATIN_LEGACY};

/// Colour of a face with an identity (solid box).
pub const MATCHED: [u8; 3] = [0, 220, 0];
/// Colour of a face without one (dashed box).
pub const UNMATCHED: [u8; 3] = [255, 140, 0];
/// Colour of the label text.
const TEXT: [u8; 3] = [0, 0, 0];

/// One face to draw: its box and what its label says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaceBox {
    /// Box: left, top, width, height, in the frame's pixels.
    pub x: f32,
    /// Top.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
    /// The matched person, if any.
    pub identity: Option<String>,
    /// The group of unknown people, for a face without an identity.
    pub cluster: Option<u32>,
    /// FACE01's percentage for the distance to the nearest reference.
    pub percentage: Option<f32>,
    /// Distance to the nearest reference, shown when there is no percentage.
    pub distance: Option<f32>,
    /// The face's track.
    pub track: Option<u64>,
}

impl FaceBox {
    /// The label: name (or `unknown/<cluster>`, `unknown`), similarity (`99.1%`, or the
    /// distance `d=0.42`) and track (`#3`), as far as known.
    pub fn label(&self) -> String {
        let mut parts = vec![match (&self.identity, self.cluster) {
            (Some(name), _) => name.clone(),
            (None, Some(c)) => format!("unknown/{c}"),
            (None, None) => "unknown".to_string(),
        }];
        match (self.percentage, self.distance) {
            (Some(p), _) if p.is_finite() => parts.push(format!("{p:.1}%")),
            (_, Some(d)) if d.is_finite() => parts.push(format!("d={d:.2}")),
            _ => {}
        }
        if let Some(t) = self.track {
            parts.push(format!("#{t}"));
        }
        parts.join(" ")
    }

    /// True when the face has an identity.
    pub fn matched(&self) -> bool {
        self.identity.is_some()
    }
}

/// Sizes that grow with the frame, so that boxes and labels read the same at any resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Box line thickness, pixels (drawn outside the face box).
    pub thickness: usize,
    /// Text scale: each font pixel is a `scale × scale` square.
    pub scale: usize,
}

impl Style {
    /// The style for frames of `width × height`: a 4 px line and 16 px text at 720p.
    pub fn for_frame(width: usize, height: usize) -> Style {
        let short = width.min(height) as f32;
        Style {
            thickness: ((short / 180.0).round() as usize).max(2),
            scale: ((short / 360.0).round() as usize).max(1),
        }
    }
}

/// A mutable RGB24 frame.
pub struct Canvas<'a> {
    width: usize,
    height: usize,
    rgb: &'a mut [u8],
}

impl<'a> Canvas<'a> {
    /// Wraps `width × height` packed RGB24 pixels; `None` when the sizes disagree.
    pub fn new(width: usize, height: usize, rgb: &'a mut [u8]) -> Option<Canvas<'a>> {
        (width.checked_mul(height)?.checked_mul(3)? == rgb.len()).then_some(Canvas {
            width,
            height,
            rgb,
        })
    }

    /// Fills the rectangle `[x0, x1) × [y0, y1)`, clipped to the frame.
    pub fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, colour: [u8; 3]) {
        let (x0, x1) = (clip(x0, self.width), clip(x1, self.width));
        let (y0, y1) = (clip(y0, self.height), clip(y1, self.height));
        for y in y0..y1 {
            let row = &mut self.rgb[(y * self.width + x0) * 3..(y * self.width + x1) * 3];
            for px in row.chunks_exact_mut(3) {
                px.copy_from_slice(&colour);
            }
        }
    }

    /// Outlines `[x0, x1) × [y0, y1)` with a line `t` pixels thick just outside it. Dashed
    /// lines start and end every side with a dash, so the corners are always drawn.
    pub fn outline(&mut self, r: [i64; 4], t: usize, colour: [u8; 3], dashed: bool) {
        let [x0, y0, x1, y1] = r;
        let t = t as i64;
        let (ox0, oy0, ox1, oy1) = (x0 - t, y0 - t, x1 + t, y1 + t);
        if !dashed {
            self.fill(ox0, oy0, ox1, y0, colour);
            self.fill(ox0, y1, ox1, oy1, colour);
            self.fill(ox0, y0, x0, y1, colour);
            self.fill(x1, y0, ox1, y1, colour);
            return;
        }
        let (on, off) = (3 * t, 2 * t);
        for (from, to) in dashes(ox0, ox1, on, off) {
            self.fill(from, oy0, to, y0, colour);
            self.fill(from, y1, to, oy1, colour);
        }
        for (from, to) in dashes(oy0, oy1, on, off) {
            self.fill(ox0, from, x0, to, colour);
            self.fill(x1, from, ox1, to, colour);
        }
    }

    /// Writes `text` with its top-left corner at `(x, y)`, each font pixel `scale` wide;
    /// characters the font lacks are drawn as `?`.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, colour: [u8; 3]) {
        let s = scale as i64;
        for (i, c) in text.chars().enumerate() {
            let glyph = glyph(c);
            let gx = x + i as i64 * 8 * s;
            if gx >= self.width as i64 {
                break;
            }
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        let px = gx + col * s;
                        let py = y + row as i64 * s;
                        self.fill(px, py, px + s, py + s, colour);
                    }
                }
            }
        }
    }

    /// Draws a face: its box (solid for a matched face, dashed otherwise) and its label on
    /// a patch of the box's colour above the box (below it at the frame's top edge, inside
    /// it when neither fits).
    pub fn face(&mut self, face: &FaceBox, style: Style) {
        let colour = if face.matched() { MATCHED } else { UNMATCHED };
        let r = [
            face.x.floor() as i64,
            face.y.floor() as i64,
            (face.x + face.w).ceil() as i64,
            (face.y + face.h).ceil() as i64,
        ];
        let t = style.thickness as i64;
        self.outline(r, style.thickness, colour, !face.matched());
        let label = face.label();
        let s = style.scale as i64;
        let pad = s.max(1) * 2;
        let (lw, lh) = (
            label.chars().count() as i64 * 8 * s + 2 * pad,
            8 * s + 2 * pad,
        );
        let mut lx = r[0] - t;
        if lx + lw > self.width as i64 {
            lx = (self.width as i64 - lw).max(0);
        }
        let ly = if r[1] - t - lh >= 0 {
            r[1] - t - lh
        } else if r[3] + t + lh <= self.height as i64 {
            r[3] + t
        } else {
            r[1].max(0)
        };
        self.fill(lx, ly, lx + lw, ly + lh, colour);
        self.text(lx + pad, ly + pad, &label, style.scale, TEXT);
    }
}

/// `v` clipped to `[0, n]`.
fn clip(v: i64, n: usize) -> usize {
    v.clamp(0, n as i64) as usize
}

/// The dashes `[from, to)` of a line from `a` to `b`: `on` long, at least `off` apart,
/// spread so that the first starts at `a` and the last ends at `b` (a short line is solid).
fn dashes(a: i64, b: i64, on: i64, off: i64) -> Vec<(i64, i64)> {
    let len = b - a;
    if len <= 0 {
        return Vec::new();
    }
    let n = (len + off) / (on + off);
    let gaps = len - n * on;
    if n < 2 || gaps < 0 {
        return vec![(a, b)];
    }
    (0..n)
        .map(|k| {
            let start = a + k * on + gaps * k / (n - 1);
            (start, start + on)
        })
        .collect()
}

/// The 8×8 glyph of `c` (rows top to bottom, bit 0 the leftmost pixel): ASCII, Latin-1 and
/// hiragana; `?` for anything else.
pub fn glyph(c: char) -> [u8; 8] {
    let code = c as usize;
    match code {
        0x20..=0x7e => BASIC_LEGACY[code],
        0xa0..=0xff => LATIN_LEGACY[code - 0xa0],
        0x3040..=0x309f => HIRAGANA_LEGACY[code - 0x3040],
        _ => BASIC_LEGACY[b'?' as usize],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canvas(w: usize, h: usize) -> Vec<u8> {
        vec![50u8; w * h * 3]
    }

    fn at(rgb: &[u8], w: usize, x: usize, y: usize) -> [u8; 3] {
        rgb[(y * w + x) * 3..(y * w + x) * 3 + 3]
            .try_into()
            .unwrap()
    }

    #[test]
    fn labels_say_who_how_close_and_which_track() {
        let mut f = FaceBox {
            identity: Some("obama".into()),
            percentage: Some(99.123),
            distance: Some(0.3),
            track: Some(3),
            ..FaceBox::default()
        };
        assert_eq!(f.label(), "obama 99.1% #3");
        f.identity = None;
        f.cluster = Some(2);
        f.percentage = None;
        assert_eq!(f.label(), "unknown/2 d=0.30 #3");
        f.cluster = None;
        f.distance = None;
        f.track = None;
        assert_eq!(f.label(), "unknown");
    }

    #[test]
    fn a_matched_box_is_a_solid_line_outside_the_face() {
        let (w, h) = (200, 150);
        let mut rgb = canvas(w, h);
        let face = FaceBox {
            x: 60.0,
            y: 60.0,
            w: 40.0,
            h: 50.0,
            identity: Some("ann".into()),
            ..FaceBox::default()
        };
        let style = Style {
            thickness: 3,
            scale: 1,
        };
        Canvas::new(w, h, &mut rgb).unwrap().face(&face, style);
        for (x, y) in [
            (57, 80),
            (59, 80),
            (100, 80),
            (102, 80),
            (80, 57),
            (80, 112),
        ] {
            assert_eq!(at(&rgb, w, x, y), MATCHED, "({x}, {y})");
        }
        // The face itself and pixels beyond the line are untouched.
        for (x, y) in [(60, 80), (99, 80), (56, 80), (103, 80), (80, 113)] {
            assert_eq!(at(&rgb, w, x, y), [50; 3], "({x}, {y})");
        }
        // The label sits above the box, its text in black on the box's colour.
        // (1 px scale: 8 px glyphs with 2 px of padding, 12 px tall, ending at the line.)
        let label: Vec<[u8; 3]> = (45..57)
            .flat_map(|y| (57..100).map(move |x| (x, y)))
            .map(|(x, y)| at(&rgb, w, x, y))
            .collect();
        assert!(label.contains(&MATCHED) && label.contains(&TEXT));
        assert_ne!(at(&rgb, w, 57, 44), MATCHED, "nothing above the label");
    }

    #[test]
    fn an_unmatched_box_is_dashed_with_its_corners_drawn() {
        let (w, h) = (300, 300);
        let mut rgb = canvas(w, h);
        let face = FaceBox {
            x: 100.0,
            y: 100.0,
            w: 101.0,
            h: 101.0,
            ..FaceBox::default()
        };
        let style = Style {
            thickness: 2,
            scale: 1,
        };
        Canvas::new(w, h, &mut rgb).unwrap().face(&face, style);
        let top: Vec<bool> = (98..203).map(|x| at(&rgb, w, x, 99) == UNMATCHED).collect();
        assert!(top[0] && top[top.len() - 1], "corners drawn");
        assert!(top.iter().any(|on| !on), "gaps between dashes");
        let left: Vec<bool> = (98..203).map(|y| at(&rgb, w, 98, y) == UNMATCHED).collect();
        assert!(left[0] && left[left.len() - 1] && left.iter().any(|on| !on));
    }

    #[test]
    fn drawing_is_clipped_at_the_frame_edges() {
        let (w, h) = (40, 30);
        let mut rgb = canvas(w, h);
        let face = FaceBox {
            x: -10.0,
            y: -5.0,
            w: 100.0,
            h: 100.0,
            identity: Some("a very long name that does not fit".into()),
            percentage: Some(97.0),
            track: Some(12345),
            ..FaceBox::default()
        };
        Canvas::new(w, h, &mut rgb)
            .unwrap()
            .face(&face, Style::for_frame(w, h));
        assert_eq!(rgb.len(), w * h * 3);
        assert!(Canvas::new(w, h, &mut rgb[1..]).is_none());
    }

    #[test]
    fn dashes_cover_both_ends() {
        for (a, b) in [(0, 1), (0, 5), (0, 6), (3, 40), (0, 100)] {
            let d = dashes(a, b, 6, 4);
            assert_eq!(d[0].0, a, "{a}..{b}: {d:?}");
            assert_eq!(d.last().unwrap().1, b, "{a}..{b}: {d:?}");
            assert!(d.iter().all(|&(f, t)| a <= f && f < t && t <= b), "{d:?}");
        }
    }

    #[test]
    fn glyphs_cover_ascii_latin1_and_hiragana() {
        assert_eq!(glyph('A'), BASIC_LEGACY[0x41]);
        assert_ne!(glyph('é'), glyph('?'));
        assert_ne!(glyph('あ'), glyph('?'));
        assert_eq!(glyph('顔'), glyph('?'));
        assert_eq!(
            Style::for_frame(1280, 720),
            Style {
                thickness: 4,
                scale: 2
            }
        );
    }
}
