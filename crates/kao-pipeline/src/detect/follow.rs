//! Following faces between detector passes: the detect stage's fast path.
//!
//! Within a shot a face moves little from one frame to the next. So the detector runs on a
//! frame now and then (every [`FollowOptions::interval`] seconds of video, at a shot cut, at a
//! new source, and sooner when faces move fast), and on the frames between, each face of the
//! last detector pass is carried forward by its landmarks: dlib's 5-point shape predictor,
//! started from the face's box in the previous frame (and once more from the box they moved to,
//! when that is more than a twentieth of the face's width away), finds the landmarks in this
//! frame, and the box follows them (the similarity transform from the landmarks at the detector's pass to these
//! moves the detector's box). A followed face must still look like the face the detector found:
//! its aligned grey-level chip is compared with the chip at the detector's pass (normalised
//! cross-correlation). When one face of a frame fails that test (it turned away, a hand covers
//! it, the shot changed without a cut the shot detector saw), the detector runs on that very
//! frame, so a frame's faces are either all the detector's or all followed.
//!
//! A face that enters the picture between two passes is found at the next pass, at most
//! `interval` seconds later. `--exact` (no [`FollowOptions`]) runs the detector on every frame.

use std::cmp::Ordering;

use kao_image::{RgbView, get_face_chip_details};

/// A face a detector pass found (or a face followed into a frame).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Found {
    /// The detector's score.
    pub score: f32,
    /// Box `[left, top, right, bottom)` in native pixels.
    pub bbox: [f32; 4],
    /// dlib's 5 landmarks.
    pub marks: [(f32, f32); 5],
    /// Found or placed by a second detector (or followed from such a face): its box and
    /// score are that detector's.
    pub second: bool,
}

/// A 2-D similarity transform: scale, rotation as (cos, sin), shift.
type Similarity = (f32, (f32, f32), (f32, f32));

/// Side of the grey-level chip that checks a followed face.
const TEMPLATE: usize = 24;

/// How the detect stage follows faces between detector passes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FollowOptions {
    /// Longest stretch of video, in seconds, between two detector passes.
    pub interval: f64,
    /// Least normalised cross-correlation between a followed face's aligned chip and its chip
    /// at the last detector pass; below it the detector runs on the frame.
    pub min_fit: f32,
}

/// The default [`FollowOptions::interval`].
pub const DEFAULT_INTERVAL: f64 = 0.4;
/// The default [`FollowOptions::min_fit`].
pub const DEFAULT_MIN_FIT: f32 = 0.8;

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            interval: DEFAULT_INTERVAL,
            min_fit: DEFAULT_MIN_FIT,
        }
    }
}

/// A face carried from frame to frame.
#[derive(Clone, Debug)]
pub(crate) struct Followed {
    /// The detector's score at its last pass.
    pub score: f32,
    /// Found or placed by a second detector at its last pass.
    pub second: bool,
    /// Box `[left, top, right, bottom)` and landmarks at the last detector pass.
    anchor_box: [f32; 4],
    anchor_marks: [(f32, f32); 5],
    /// The aligned grey-level chip at the last detector pass.
    template: Vec<f32>,
    /// Box and landmarks in the latest frame.
    pub bbox: [f32; 4],
    pub marks: [(f32, f32); 5],
}

/// What the follower knows of the frames so far: the faces of the latest frame and when the
/// detector last ran.
#[derive(Default)]
pub struct Follower {
    source: Option<String>,
    shot: u32,
    last_pass: f64,
    /// The time of the latest frame.
    last_frame: f64,
    /// Video and time of the latest sweep for small faces.
    last_sweep: Option<(String, f64)>,
    faces: Vec<Followed>,
    detect_next: bool,
}

/// A face in a new frame, found by following.
pub(crate) struct Step {
    pub bbox: [f32; 4],
    pub marks: [(f32, f32); 5],
    fit: f32,
    motion: f32,
}

/// How far box `a` lies from box `b`: the largest edge shift over `b`'s width.
pub(crate) fn shift(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let width = (b[2] - b[0]).max(1.0);
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max)
        / width
}

impl Follower {
    /// A follower with nothing to follow yet.
    pub fn new() -> Follower {
        Follower::default()
    }

    /// True when the frame at `pts` of `source` and `shot` needs a detector pass.
    pub(crate) fn due(&self, options: &FollowOptions, source: &str, shot: u32, pts: f64) -> bool {
        self.detect_next
            || self.source.as_deref() != Some(source)
            || self.shot != shot
            || (pts - self.last_pass).partial_cmp(&options.interval) != Some(Ordering::Less)
            // A stream running backwards (seeks, concatenated clips) starts over.
            || pts < self.last_pass
    }

    /// The faces to follow into the next frame.
    pub(crate) fn faces(&self) -> &[Followed] {
        &self.faces
    }

    /// True when a detector pass on the frame at `pts` of `source` should also sweep it for
    /// small faces: at a new video, and `interval` seconds after the last sweep. Marks the
    /// sweep as done.
    pub(crate) fn sweep(&mut self, source: &str, pts: f64, interval: f64) -> bool {
        let due = match &self.last_sweep {
            Some((s, t)) => s != source || pts < *t || pts - t >= interval || pts.is_nan(),
            None => true,
        };
        if due {
            self.last_sweep = Some((source.to_string(), pts));
        }
        due
    }

    /// The faces of the latest frame, when the frame at `pts` of `source` and `shot` comes
    /// right after it (same video and shot, at most `gap` seconds later); empty otherwise.
    pub(crate) fn previous(&self, source: &str, shot: u32, pts: f64, gap: f64) -> &[Followed] {
        let next = self.source.as_deref() == Some(source)
            && self.shot == shot
            && pts > self.last_frame
            && pts - self.last_frame <= gap;
        if next { &self.faces } else { &[] }
    }

    /// Starts over from a detector pass on `frame` that found `faces`.
    pub(crate) fn detected(
        &mut self,
        frame: &RgbView<'_>,
        source: &str,
        shot: u32,
        pts: f64,
        faces: impl IntoIterator<Item = Found>,
    ) {
        self.source = Some(source.to_string());
        self.shot = shot;
        self.last_pass = pts;
        self.last_frame = pts;
        self.detect_next = false;
        self.faces = faces
            .into_iter()
            .filter_map(|f| {
                Some(Followed {
                    score: f.score,
                    second: f.second,
                    anchor_box: f.bbox,
                    anchor_marks: f.marks,
                    template: template(frame, &f.marks)?,
                    bbox: f.bbox,
                    marks: f.marks,
                })
            })
            .collect();
    }

    /// Takes the faces followed into the frame at `pts`; false (and nothing changes) when one
    /// of them no longer fits, so the frame needs the detector.
    pub(crate) fn advance(&mut self, options: &FollowOptions, pts: f64, steps: &[Step]) -> bool {
        if steps.len() != self.faces.len()
            || steps
                .iter()
                .any(|s| s.fit.is_nan() || s.fit < options.min_fit)
        {
            return false;
        }
        // Fast motion (a tenth of the face's width in one frame) brings the next pass forward.
        if steps.iter().any(|s| s.motion > 0.1) {
            self.detect_next = true;
        }
        for (face, step) in self.faces.iter_mut().zip(steps) {
            face.bbox = step.bbox;
            face.marks = step.marks;
        }
        self.last_frame = pts;
        true
    }
}

impl Followed {
    /// This face where it is now, as a detector pass would report it.
    pub(crate) fn found(&self) -> Found {
        Found {
            score: self.score,
            bbox: self.bbox,
            marks: self.marks,
            second: self.second,
        }
    }

    /// The detector's box at the last pass, moved as the landmarks moved from there to
    /// `marks`; `None` when the landmarks define no face.
    pub(crate) fn place(&self, marks: &[(f32, f32); 5]) -> Option<[f32; 4]> {
        let (scale, rotation, shift) = similarity(&self.anchor_marks, marks)?;
        let [l, t, r, b] = self.anchor_box;
        let (cx, cy) = apply(scale, rotation, shift, ((l + r) / 2.0, (t + b) / 2.0));
        let (hw, hh) = ((r - l) / 2.0 * scale, (b - t) / 2.0 * scale);
        Some([cx - hw, cy - hh, cx + hw, cy + hh])
    }

    /// This face in a new frame given its landmarks there (`marks`, found from its box in the
    /// previous frame); `None` when the landmarks define no face.
    pub(crate) fn step(&self, frame: &RgbView<'_>, marks: [(f32, f32); 5]) -> Option<Step> {
        let bbox = self.place(&marks)?;
        let fit = ncc(&self.template, &template(frame, &marks)?);
        let width = (self.bbox[2] - self.bbox[0]).max(1.0);
        let moved = |a: &[(f32, f32); 5], b: &[(f32, f32); 5]| {
            a.iter()
                .zip(b)
                .map(|(p, q)| ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt())
                .sum::<f32>()
                / 5.0
        };
        Some(Step {
            bbox,
            marks,
            fit,
            motion: moved(&self.marks, &marks) / width,
        })
    }
}

/// The similarity transform (scale, rotation as (cos, sin), shift) taking `from` onto `to` in
/// the least-squares sense; `None` when `from` collapses onto a point or the result is not
/// finite.
fn similarity(from: &[(f32, f32); 5], to: &[(f32, f32); 5]) -> Option<Similarity> {
    let mean = |p: &[(f32, f32); 5]| {
        let (sx, sy) = p.iter().fold((0.0, 0.0), |a, q| (a.0 + q.0, a.1 + q.1));
        (sx / 5.0, sy / 5.0)
    };
    let (fm, tm) = (mean(from), mean(to));
    let (mut a, mut b, mut norm) = (0f32, 0f32, 0f32);
    for (p, q) in from.iter().zip(to) {
        let (x, y) = (p.0 - fm.0, p.1 - fm.1);
        let (u, v) = (q.0 - tm.0, q.1 - tm.1);
        a += x * u + y * v;
        b += x * v - y * u;
        norm += x * x + y * y;
    }
    if norm.is_nan() || norm <= 1e-3 {
        return None;
    }
    let (a, b) = (a / norm, b / norm);
    let scale = (a * a + b * b).sqrt();
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    let rotation = (a / scale, b / scale);
    let moved = apply(scale, rotation, (0.0, 0.0), fm);
    Some((scale, rotation, (tm.0 - moved.0, tm.1 - moved.1)))
}

/// `p` under the similarity transform.
fn apply(scale: f32, (c, s): (f32, f32), shift: (f32, f32), p: (f32, f32)) -> (f32, f32) {
    (
        scale * (c * p.0 - s * p.1) + shift.0,
        scale * (s * p.0 + c * p.1) + shift.1,
    )
}

/// The face's aligned grey-level chip (the inner face, without padding), `TEMPLATE` pixels
/// square, each the mean of four bilinear samples; `None` when the landmarks define no face.
fn template(frame: &RgbView<'_>, marks: &[(f32, f32); 5]) -> Option<Vec<f32>> {
    let details = get_face_chip_details(marks, TEMPLATE, 0.0).ok()?;
    let r = details.rect;
    let (cx, cy) = ((r.left + r.right) / 2.0, (r.top + r.bottom) / 2.0);
    let step = r.width() / TEMPLATE as f64;
    let (sin, cos) = details.angle.sin_cos();
    let (w, h) = (frame.width() as f64, frame.height() as f64);
    let grey = |x: f64, y: f64| -> f32 {
        let x = x.clamp(0.0, w - 1.0);
        let y = y.clamp(0.0, h - 1.0);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w as usize - 1), (y0 + 1).min(h as usize - 1));
        let (fx, fy) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32);
        let g = |x: usize, y: usize| {
            let [r, g, b] = frame.pixel(x, y);
            0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32
        };
        let top = g(x0, y0) * (1.0 - fx) + g(x1, y0) * fx;
        let bottom = g(x0, y1) * (1.0 - fx) + g(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    let mut out = Vec::with_capacity(TEMPLATE * TEMPLATE);
    let half = TEMPLATE as f64 / 2.0;
    for v in 0..TEMPLATE {
        for u in 0..TEMPLATE {
            let mut sum = 0.0;
            for (du, dv) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let (x, y) = ((u as f64 + du - half) * step, (v as f64 + dv - half) * step);
                sum += grey(cx + cos * x - sin * y, cy + sin * x + cos * y);
            }
            out.push(sum / 4.0);
        }
    }
    out.iter().all(|v| v.is_finite()).then_some(out)
}

/// Normalised cross-correlation of two chips: 1 for the same picture up to brightness and
/// contrast, near 0 for unrelated ones; 0 when either is flat.
fn ncc(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len()) as f32;
    let (ma, mb) = (a.iter().sum::<f32>() / n, b.iter().sum::<f32>() / n);
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x - ma, y - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa <= 1e-6 || bb <= 1e-6 {
        return 0.0;
    }
    ab / (aa * bb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks_at(dx: f32, dy: f32, s: f32) -> [(f32, f32); 5] {
        // dlib's 5-point order: right eye corners, left eye corners, nose.
        [
            (130.0, 100.0),
            (115.0, 100.0),
            (70.0, 100.0),
            (85.0, 100.0),
            (100.0, 130.0),
        ]
        .map(|(x, y)| (x * s + dx, y * s + dy))
    }

    /// A frame with a textured blob whose picture moves with `dx`, `dy`.
    fn frame(dx: f32, dy: f32) -> Vec<u8> {
        let (w, h) = (320usize, 240usize);
        let mut px = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let (u, v) = (x as f32 - dx, y as f32 - dy);
                let val = 128.0 + 60.0 * ((u * 0.21).sin() * (v * 0.13).cos()) + (u - v) * 0.2;
                let val = val.clamp(0.0, 255.0) as u8;
                px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[val, val, val]);
            }
        }
        px
    }

    #[test]
    fn similarity_recovers_a_shift_and_a_scale() {
        let (s, (c, sn), (tx, ty)) =
            similarity(&marks_at(0.0, 0.0, 1.0), &marks_at(5.0, -3.0, 1.2)).unwrap();
        assert!((s - 1.2).abs() < 1e-4 && (c - 1.0).abs() < 1e-4 && sn.abs() < 1e-4);
        let p = apply(s, (c, sn), (tx, ty), (100.0, 100.0));
        assert!(
            (p.0 - 125.0).abs() < 1e-3 && (p.1 - 117.0).abs() < 1e-3,
            "{p:?}"
        );
        assert!(similarity(&[(1.0, 1.0); 5], &marks_at(0.0, 0.0, 1.0)).is_none());
    }

    #[test]
    fn a_face_that_moved_with_its_landmarks_fits_and_a_misplaced_one_does_not() {
        let first = frame(0.0, 0.0);
        let view = RgbView::new(320, 240, &first).unwrap();
        let marks = marks_at(0.0, 0.0, 1.0);
        let mut follower = Follower::new();
        follower.detected(
            &view,
            "a",
            0,
            0.0,
            [Found {
                score: 0.9,
                bbox: [60.0, 70.0, 140.0, 150.0],
                marks,
                second: false,
            }],
        );
        let options = FollowOptions::default();
        let next = frame(6.0, 4.0);
        let view = RgbView::new(320, 240, &next).unwrap();
        let face = &follower.faces()[0];
        let good = face.step(&view, marks_at(6.0, 4.0, 1.0)).unwrap();
        assert!(good.fit > 0.95, "fit {}", good.fit);
        assert!((good.bbox[0] - 66.0).abs() < 1e-3 && (good.bbox[1] - 74.0).abs() < 1e-3);
        let bad = face.step(&view, marks_at(60.0, 40.0, 0.7)).unwrap();
        assert!(bad.fit < options.min_fit, "fit {}", bad.fit);
        assert!(!follower.advance(&options, 0.04, &[bad]));
        assert!(follower.advance(&options, 0.04, &[good]));
        assert_eq!(follower.faces()[0].bbox[0], 66.0);
    }

    #[test]
    fn passes_fall_due_by_time_shot_and_source() {
        let pixels = frame(0.0, 0.0);
        let view = RgbView::new(320, 240, &pixels).unwrap();
        let options = FollowOptions::default();
        let mut follower = Follower::new();
        assert!(follower.due(&options, "a", 0, 0.0));
        follower.detected(&view, "a", 0, 1.0, []);
        assert!(!follower.due(&options, "a", 0, 1.2));
        assert!(follower.due(&options, "a", 0, 1.0 + options.interval + 1e-9));
        assert!(follower.due(&options, "a", 1, 1.2));
        assert!(follower.due(&options, "b", 0, 1.2));
        assert!(follower.due(&options, "a", 0, 0.5));
        assert!(follower.due(&options, "a", 0, f64::NAN));
    }

    #[test]
    fn sweeps_fall_due_by_time_and_video() {
        let mut follower = Follower::new();
        assert!(follower.sweep("a", 0.0, 2.0));
        assert!(!follower.sweep("a", 1.9, 2.0));
        assert!(follower.sweep("a", 2.0, 2.0));
        assert!(follower.sweep("b", 2.1, 2.0));
        assert!(!follower.sweep("b", 2.2, 2.0));
        // A stream running backwards starts over.
        assert!(follower.sweep("b", 0.5, 2.0));
    }

    #[test]
    fn ncc_ignores_brightness_and_contrast() {
        let a: Vec<f32> = (0..50).map(|i| (i as f32 * 0.7).sin()).collect();
        let b: Vec<f32> = a.iter().map(|v| 3.0 * v + 10.0).collect();
        assert!((ncc(&a, &b) - 1.0).abs() < 1e-5);
        assert_eq!(ncc(&a, &[5.0; 50]), 0.0);
    }
}
