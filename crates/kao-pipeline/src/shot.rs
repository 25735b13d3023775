//! Shot cuts: a frame starts a new shot when its colour histogram jumps away from the
//! previous frame's (a hard cut), or from the frame half a second earlier in the same shot
//! (a dissolve or fade, which changes little from one frame to the next).

use kao_dlib::RgbView;

/// Bins per colour channel of the frame signature.
const BINS: usize = 4;
/// Every STEP-th pixel of every STEP-th row goes into the histogram.
const STEP: usize = 4;

/// The default cut threshold: half the L1 distance between normalised histograms (0–1).
pub const DEFAULT_CUT_THRESHOLD: f32 = 0.35;
/// A gradual transition is a change above this fraction of the cut threshold over
/// [`GRADUAL_WINDOW`] seconds.
const GRADUAL_FRACTION: f32 = 0.8;
/// Seconds over which gradual transitions are measured.
const GRADUAL_WINDOW: f64 = 0.5;

/// A frame's colour signature: a normalised `BINS³` RGB histogram of a pixel sample.
fn signature(frame: &RgbView<'_>) -> Vec<f32> {
    let mut histogram = vec![0f32; BINS * BINS * BINS];
    let mut n = 0f32;
    for y in (0..frame.height()).step_by(STEP) {
        for px in frame.row(y).chunks_exact(3).step_by(STEP) {
            let bin = |v: u8| usize::from(v) * BINS / 256;
            histogram[(bin(px[0]) * BINS + bin(px[1])) * BINS + bin(px[2])] += 1.0;
            n += 1.0;
        }
    }
    if n > 0.0 {
        histogram.iter_mut().for_each(|h| *h /= n);
    }
    histogram
}

/// Half the L1 distance between two signatures (0: same colours, 1: disjoint).
fn change(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / 2.0
}

/// Numbers the shots of a stream of frames, per source.
pub struct ShotDetector {
    threshold: f32,
    source: Option<String>,
    /// Signatures of the current shot's recent frames, with their times, oldest first.
    recent: std::collections::VecDeque<(f64, Vec<f32>)>,
    shot: u32,
}

impl ShotDetector {
    /// A detector that cuts where half the L1 distance of consecutive histograms exceeds
    /// `threshold`, or 0.8 × `threshold` over half a second within a shot.
    pub fn new(threshold: f32) -> ShotDetector {
        ShotDetector {
            threshold,
            source: None,
            recent: std::collections::VecDeque::new(),
            shot: 0,
        }
    }

    /// The shot (0-based within its source) of the next frame, at `pts` seconds, given in
    /// stream order.
    pub fn observe(&mut self, source: &str, pts: f64, frame: &RgbView<'_>) -> u32 {
        let current = signature(frame);
        if self.source.as_deref() != Some(source) {
            self.source = Some(source.to_string());
            self.shot = 0;
            self.recent.clear();
        } else if !self.recent.is_empty() {
            // The frame from about half a second ago (or the shot's first, if it is younger).
            while self.recent.len() > 1
                && self
                    .recent
                    .get(1)
                    .is_some_and(|(t, _)| pts - t >= GRADUAL_WINDOW)
            {
                self.recent.pop_front();
            }
            let (Some((_, earlier)), Some((_, last))) = (self.recent.front(), self.recent.back())
            else {
                unreachable!("checked not empty")
            };
            if change(last, &current) > self.threshold
                || change(earlier, &current) > GRADUAL_FRACTION * self.threshold
            {
                self.shot += 1;
                self.recent.clear();
            }
        }
        self.recent.push_back((pts, current));
        self.shot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(rgb: [u8; 3]) -> Vec<u8> {
        rgb.iter().copied().cycle().take(64 * 48 * 3).collect()
    }

    #[test]
    fn cuts_on_a_colour_jump_and_restarts_per_source() {
        let (grey, red) = (flat([120, 120, 120]), flat([200, 30, 30]));
        fn view(d: &[u8]) -> RgbView<'_> {
            RgbView::new(64, 48, d).unwrap()
        }
        let mut shots = ShotDetector::new(DEFAULT_CUT_THRESHOLD);
        assert_eq!(shots.observe("a", 0.0, &view(&grey)), 0);
        assert_eq!(shots.observe("a", 0.04, &view(&grey)), 0);
        assert_eq!(shots.observe("a", 0.08, &view(&red)), 1);
        assert_eq!(shots.observe("a", 0.12, &view(&red)), 1);
        assert_eq!(shots.observe("a", 0.16, &view(&grey)), 2);
        assert_eq!(shots.observe("b", 0.0, &view(&red)), 0);
        // Noise within a bin's width is no cut.
        let near: Vec<u8> = flat([121, 119, 122]);
        assert_eq!(shots.observe("b", 0.04, &view(&near)), 1);
        assert_eq!(shots.observe("b", 0.08, &view(&grey)), 1);
    }

    #[test]
    fn a_dissolve_is_a_cut_and_a_still_shot_is_not() {
        // Grey dissolves into red over 12 frames at 25 fps: each step is small.
        let mut shots = ShotDetector::new(DEFAULT_CUT_THRESHOLD);
        let mut seen = Vec::new();
        for k in 0..40 {
            let t = ((k as f32 - 10.0) / 12.0).clamp(0.0, 1.0);
            let frame: Vec<u8> = (0..64 * 48)
                .flat_map(|i| {
                    // Half the pixels switch early, half late, as a real dissolve's colours do.
                    let late = i % 2 == 0;
                    let t2 = if late {
                        (t * 2.0 - 1.0).max(0.0)
                    } else {
                        (t * 2.0).min(1.0)
                    };
                    let m = |a: u8, b: u8| (a as f32 * (1.0 - t2) + b as f32 * t2).round() as u8;
                    [m(120, 200), m(120, 30), m(120, 30)]
                })
                .collect();
            seen.push(shots.observe("a", k as f64 * 0.04, &RgbView::new(64, 48, &frame).unwrap()));
        }
        assert_eq!(seen[0], 0);
        assert!(
            *seen.last().unwrap() >= 1,
            "the dissolve was not cut: {seen:?}"
        );
        assert!(seen.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn empty_frames_are_handled() {
        let mut shots = ShotDetector::new(DEFAULT_CUT_THRESHOLD);
        let empty: Vec<u8> = Vec::new();
        assert_eq!(
            shots.observe("a", 0.0, &RgbView::new(0, 0, &empty).unwrap()),
            0
        );
        assert_eq!(
            shots.observe("a", 0.04, &RgbView::new(0, 0, &empty).unwrap()),
            0
        );
    }
}
