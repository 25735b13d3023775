//! Which decoded frames to keep: `--every`, `--fps`, `--start`, `--end`, `--max-frames`.

/// What to do with a decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Emit it.
    Keep,
    /// Drop it and go on.
    Skip,
    /// Drop it and stop decoding: nothing later can be kept.
    Stop,
}

/// The frame selection rules, applied in decode order.
#[derive(Debug)]
pub struct Selector {
    every: u64,
    fps: Option<f64>,
    start: Option<f64>,
    end: Option<f64>,
    max_frames: Option<u64>,
    first_index: Option<u64>,
    origin: Option<f64>,
    last_bucket: Option<i64>,
    kept: u64,
}

/// Tolerance for comparing times, well under any frame duration.
const EPS: f64 = 1e-6;

impl Selector {
    /// Rules: keep every `every`-th frame of the range, at most one per 1/`fps` seconds of pts,
    /// frames with `start <= pts < end`, and at most `max_frames` frames.
    pub fn new(
        every: u64,
        fps: Option<f64>,
        start: Option<f64>,
        end: Option<f64>,
        max_frames: Option<u64>,
    ) -> Self {
        Selector {
            every: every.max(1),
            fps,
            start,
            end,
            max_frames,
            first_index: None,
            origin: None,
            last_bucket: None,
            kept: 0,
        }
    }

    /// True when [`Selector::judge`] skips a frame at `pts` (seconds) whatever came before it:
    /// it is before `--start`.
    pub fn before_start(&self, pts: f64) -> bool {
        self.start.is_some_and(|start| pts < start - EPS)
    }

    /// The `--fps` slot of a frame at `pts` (seconds) when [`Selector::judge`] keeps just the
    /// first frame of each slot and counts no frames (`--every 1`): known once the first frame
    /// set the origin, or from `--start`.
    pub fn slot(&self, pts: f64) -> Option<i64> {
        let rate = self.fps.filter(|_| self.every == 1)?;
        let origin = self.origin.or(self.start)?;
        Some(slot(origin, rate, pts))
    }

    /// `--every`: keeps one frame in this many.
    pub fn every(&self) -> u64 {
        self.every
    }

    /// True when [`Selector::judge`] skips the frame at `index` whatever its time, for
    /// `--every`: once the range's first frame is known, the frames between every `every`-th.
    pub fn every_drops(&self, index: u64) -> bool {
        self.first_index
            .is_some_and(|first| index > first && !(index - first).is_multiple_of(self.every))
    }

    /// Decides about the frame at `index` with presentation time `pts` (seconds).
    pub fn judge(&mut self, index: u64, pts: f64) -> Verdict {
        if self.max_frames.is_some_and(|m| self.kept >= m) {
            return Verdict::Stop;
        }
        if self.end.is_some_and(|end| pts >= end - EPS) {
            return Verdict::Stop;
        }
        if self.before_start(pts) {
            return Verdict::Skip;
        }
        let first = *self.first_index.get_or_insert(index);
        if !(index - first.min(index)).is_multiple_of(self.every) {
            return Verdict::Skip;
        }
        if let Some(rate) = self.fps {
            let origin = *self.origin.get_or_insert(self.start.unwrap_or(pts));
            let bucket = slot(origin, rate, pts);
            if self.last_bucket == Some(bucket) {
                return Verdict::Skip;
            }
            self.last_bucket = Some(bucket);
        }
        self.kept += 1;
        Verdict::Keep
    }
}

/// The `--fps` slot (1/`rate` seconds long, counted from `origin`) of a frame at `pts`.
fn slot(origin: f64, rate: f64, pts: f64) -> i64 {
    ((pts - origin) * rate + EPS).floor() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(mut s: Selector, frames: &[(u64, f64)]) -> Vec<u64> {
        let mut out = Vec::new();
        for &(i, t) in frames {
            match s.judge(i, t) {
                Verdict::Keep => out.push(i),
                Verdict::Skip => {}
                Verdict::Stop => break,
            }
        }
        out
    }

    fn cfr(n: u64, rate: f64) -> Vec<(u64, f64)> {
        (0..n).map(|i| (i, i as f64 / rate)).collect()
    }

    #[test]
    fn every_nth_counts_skipped_frames() {
        assert_eq!(
            kept(Selector::new(3, None, None, None, None), &cfr(10, 25.0)),
            [0, 3, 6, 9]
        );
    }

    #[test]
    fn fps_samples_by_pts() {
        // 30 fps sampled at 10 fps keeps every third frame.
        assert_eq!(
            kept(
                Selector::new(1, Some(10.0), None, None, None),
                &cfr(9, 30.0)
            ),
            [0, 3, 6]
        );
        // Variable rate: a burst of frames keeps only one per 0.5 s bucket.
        let vfr = [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.6), (4, 1.5), (5, 1.55)];
        assert_eq!(
            kept(Selector::new(1, Some(2.0), None, None, None), &vfr),
            [0, 3, 4]
        );
    }

    #[test]
    fn start_end_and_max_frames() {
        let frames = cfr(100, 10.0);
        assert_eq!(
            kept(Selector::new(1, None, Some(2.0), Some(2.5), None), &frames),
            [20, 21, 22, 23, 24]
        );
        assert_eq!(
            kept(Selector::new(2, None, Some(2.1), None, Some(3)), &frames),
            [21, 23, 25]
        );
    }
}
