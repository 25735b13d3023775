//! Shot cuts: a frame starts a new shot when its colour histogram or the layout of its
//! brightness jumps away from the previous frame's (a hard cut), or its colour histogram
//! from the frame half a second earlier in the same shot (a dissolve or fade, which
//! changes little from one frame to the next). Flat borders (letterbox and pillarbox
//! bars) are left out of both, so two portraits between the same bars are as different
//! as the portraits are.

use kao_image::RgbView;

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
/// A hard cut is also a layout change above the cut threshold divided by this. On
/// `devdata`'s clips a grid cell's brightness changes by at most 0.02 between frames of
/// one shot and by 0.08–0.52 at a cut; the sample's cuts between portraits of similar
/// colours (histograms 0.27–0.42 apart) change it by 0.17–0.24.
const LAYOUT_SCALE: f32 = 7.0;

/// Largest difference, per channel, between the pixels of a border line and its first
/// pixel: black bars are flat to within compression noise.
const FLAT: u8 = 12;

/// Whether every pixel `pixels` yields is within [`FLAT`] of the first, per channel.
fn flat<'a>(mut pixels: impl Iterator<Item = &'a [u8]>) -> bool {
    let Some(first) = pixels.next() else {
        return true;
    };
    pixels.all(|p| p.iter().zip(first).all(|(&a, &b)| a.abs_diff(b) <= FLAT))
}

/// The frame's rows and columns without its flat borders (letterbox and pillarbox
/// bars), so two portraits between the same black bars differ as much as the portraits
/// do. A frame that is flat all over is kept whole.
fn content(frame: &RgbView<'_>) -> [std::ops::Range<usize>; 2] {
    let (w, h) = (frame.width(), frame.height());
    let row_flat = |y: usize| flat(frame.row(y).chunks_exact(3).step_by(STEP));
    // Every STEP-th row and column, like the histogram's sample.
    let Some(top) = (0..h).step_by(STEP).find(|&y| !row_flat(y)) else {
        return [0..h, 0..w];
    };
    let bottom = (top..h)
        .rev()
        .step_by(STEP)
        .find(|&y| !row_flat(y))
        .unwrap_or(top)
        + 1;
    let column_flat = |x: usize| {
        flat(
            (top..bottom)
                .step_by(STEP)
                .map(|y| &frame.row(y)[x * 3..x * 3 + 3]),
        )
    };
    let left = (0..w).step_by(STEP).find(|&x| !column_flat(x)).unwrap_or(0);
    let right = (left..w)
        .rev()
        .step_by(STEP)
        .find(|&x| !column_flat(x))
        .map_or(w, |x| x + 1);
    [top..bottom, left..right]
}

/// Cells per side of the layout grid.
const GRID: usize = 8;

/// What a frame looks like, coarsely: its colours and their layout.
struct Signature {
    /// A normalised `BINS³` RGB histogram of a pixel sample of the content (see
    /// [`content`]).
    colours: Vec<f32>,
    /// The mean brightness (0–1) of each cell of a `GRID × GRID` grid over the content.
    layout: Vec<f32>,
}

impl Signature {
    /// The signature of `frame`, from every `STEP`-th pixel of every `STEP`-th row.
    fn of(frame: &RgbView<'_>) -> Signature {
        let [rows, columns] = content(frame);
        // Integer sums: exact, and cheaper per pixel than adding floats. The histogram is
        // kept in LANES copies, one per sample of a group, so that runs of one colour do not
        // wait on their previous count's store (a 1080p frame 0.31 → 0.18 ms); the copies
        // add up at the end.
        const LANES: usize = 4;
        let mut histograms = [[0u32; BINS * BINS * BINS]; LANES];
        let mut layout = [0u32; GRID * GRID];
        let mut counts = [0u32; GRID * GRID];
        let (top, height) = (rows.start, rows.len().max(1));
        let width = columns.len().max(1);
        // The sampled columns of each grid cell: column i is in cell i·GRID / width.
        let first_of = |cell: usize| (cell * width).div_ceil(GRID).next_multiple_of(STEP);
        let cell_columns: Vec<std::ops::Range<usize>> = (0..GRID)
            .map(|cell| first_of(cell).min(width)..first_of(cell + 1).min(width))
            .collect();
        let colour = |px: &[u8]| {
            let bin = |v: u8| usize::from(v) * BINS / 256;
            (bin(px[0]) * BINS + bin(px[1])) * BINS + bin(px[2])
        };
        let brightness = |px: &[u8]| u32::from(px[0]) + 2 * u32::from(px[1]) + u32::from(px[2]);
        for y in rows.step_by(STEP) {
            let row = &frame.row(y)[columns.start * 3..columns.end * 3];
            let grid_row = (y - top) * GRID / height * GRID;
            let cells = layout[grid_row..][..GRID].iter_mut();
            let counted = counts[grid_row..][..GRID].iter_mut();
            for ((sum, count), span) in cells.zip(counted).zip(&cell_columns) {
                // Every STEP-th pixel of the span, LANES at a time, then the rest.
                let pixels = &row[3 * span.start..3 * span.end];
                let groups = pixels.chunks_exact(3 * STEP * LANES);
                let rest = groups.remainder();
                for group in groups {
                    for (lane, histogram) in histograms.iter_mut().enumerate() {
                        let px = &group[3 * STEP * lane..][..3];
                        histogram[colour(px)] += 1;
                        *sum += brightness(px);
                    }
                }
                for px in rest.chunks(3 * STEP) {
                    histograms[0][colour(px)] += 1;
                    *sum += brightness(px);
                }
                *count += span.len().div_ceil(STEP) as u32;
            }
        }
        let mut colours = [0u32; BINS * BINS * BINS];
        for histogram in &histograms {
            colours.iter_mut().zip(histogram).for_each(|(c, h)| *c += h);
        }
        let n = counts.iter().sum::<u32>() as f32;
        let floats = |v: &[u32]| v.iter().map(|&c| c as f32).collect::<Vec<f32>>();
        let (colours, layout, counts) = (floats(&colours), floats(&layout), floats(&counts));
        Signature::from_sums(colours, layout, &counts, n)
    }

    /// The signature from its sampled sums: colour counts over `n` pixels, and each grid
    /// cell's summed brightness (R + 2G + B) over its `counts` pixels.
    fn from_sums(mut colours: Vec<f32>, mut layout: Vec<f32>, counts: &[f32], n: f32) -> Signature {
        if n > 0.0 {
            colours.iter_mut().for_each(|h| *h /= n);
        }
        for (cell, &count) in layout.iter_mut().zip(counts) {
            *cell = if count > 0.0 {
                *cell / (count * 4.0 * 255.0)
            } else {
                0.0
            };
        }
        Signature { colours, layout }
    }

    /// How much the colours changed: half the L1 distance of the histograms (0: the
    /// same colours, 1: disjoint).
    fn colour_change(&self, other: &Signature) -> f32 {
        l1(&self.colours, &other.colours) / 2.0
    }

    /// How much the layout changed: the mean brightness change of a grid cell (0–1).
    fn layout_change(&self, other: &Signature) -> f32 {
        l1(&self.layout, &other.layout) / (GRID * GRID) as f32
    }
}

/// The L1 distance of two vectors.
fn l1(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

/// Numbers the shots of a stream of frames, per source.
pub struct ShotDetector {
    threshold: f32,
    source: Option<String>,
    /// Signatures of the current shot's recent frames, with their times, oldest first.
    recent: std::collections::VecDeque<(f64, Signature)>,
    shot: u32,
}

impl ShotDetector {
    /// A detector that cuts where half the L1 distance of consecutive histograms exceeds
    /// `threshold`, the mean brightness change of a layout grid cell `threshold / 7`, or
    /// the histograms' distance 0.8 × `threshold` over half a second within a shot.
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
        let current = Signature::of(frame);
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
            if last.colour_change(&current) > self.threshold
                || last.layout_change(&current) > self.threshold / LAYOUT_SCALE
                || earlier.colour_change(&current) > GRADUAL_FRACTION * self.threshold
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

    /// [`Signature::of`] the straightforward way: each sampled pixel's cell by division.
    fn signature_per_pixel(frame: &RgbView<'_>) -> Signature {
        let [rows, columns] = content(frame);
        let mut colours = vec![0f32; BINS * BINS * BINS];
        let mut layout = vec![0f32; GRID * GRID];
        let mut counts = vec![0f32; GRID * GRID];
        let (top, height) = (rows.start, rows.len().max(1));
        let width = columns.len().max(1);
        let mut n = 0f32;
        for y in rows.step_by(STEP) {
            let row = &frame.row(y)[columns.start * 3..columns.end * 3];
            let base = (y - top) * GRID / height * GRID;
            for (i, px) in row.chunks_exact(3).enumerate().step_by(STEP) {
                let bin = |v: u8| usize::from(v) * BINS / 256;
                colours[(bin(px[0]) * BINS + bin(px[1])) * BINS + bin(px[2])] += 1.0;
                let cell = base + i * GRID / width;
                layout[cell] += f32::from(px[0]) + 2.0 * f32::from(px[1]) + f32::from(px[2]);
                counts[cell] += 1.0;
                n += 1.0;
            }
        }
        Signature::from_sums(colours, layout, &counts, n)
    }

    #[test]
    fn signature_by_cells_matches_the_per_pixel_one() {
        for (w, h) in [
            (1, 1),
            (3, 2),
            (7, 5),
            (33, 17),
            (64, 48),
            (161, 90),
            (1280, 9),
        ] {
            let data: Vec<u8> = (0..w * h * 3)
                .map(|i| ((i * 2654435761usize) >> 11) as u8)
                .collect();
            let frame = RgbView::new(w, h, &data).unwrap();
            let (fast, slow) = (Signature::of(&frame), signature_per_pixel(&frame));
            assert_eq!(fast.colours, slow.colours, "{w}×{h}");
            assert_eq!(fast.layout, slow.layout, "{w}×{h}");
        }
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

    fn view(d: &[u8]) -> RgbView<'_> {
        RgbView::new(64, 48, d).unwrap()
    }

    /// A 64×48 frame: `content(x, y)` inside columns `16..48`, black bars either side.
    fn pillarboxed(content: impl Fn(usize, usize) -> [u8; 3]) -> Vec<u8> {
        (0..48)
            .flat_map(|y| (0..64).map(move |x| (x, y)))
            .flat_map(|(x, y)| {
                if (16..48).contains(&x) {
                    content(x, y)
                } else {
                    [0; 3]
                }
            })
            .collect()
    }

    #[test]
    fn the_bars_of_a_letterbox_do_not_hide_a_cut() {
        // Red then blue between black bars: half the frame changes colour (a histogram
        // change of 0.5 over the whole frame, 1.0 over the content), at about the same
        // brightness.
        let red = pillarboxed(|_, _| [200, 30, 30]);
        let blue = pillarboxed(|_, _| [30, 30, 230]);
        let mut shots = ShotDetector::new(0.6);
        assert_eq!(shots.observe("a", 0.0, &view(&red)), 0);
        assert_eq!(shots.observe("a", 0.04, &view(&red)), 0);
        assert_eq!(shots.observe("a", 0.08, &view(&blue)), 1);
    }

    #[test]
    fn a_new_layout_of_the_same_colours_is_a_cut_and_a_small_move_is_not() {
        // Stripes 8 px wide, dark and light: moving them by a pixel keeps the shot, and
        // the same stripes turned to run across the frame (the same histogram) cut it.
        let shade = |v: usize| {
            if v % 16 < 8 {
                [40, 40, 40]
            } else {
                [220, 220, 220]
            }
        };
        let upright = |shift: usize| pillarboxed(move |x, _| shade(x + shift));
        let across = pillarboxed(|_, y| shade(y));
        let mut shots = ShotDetector::new(DEFAULT_CUT_THRESHOLD);
        assert_eq!(shots.observe("a", 0.0, &view(&upright(0))), 0);
        assert_eq!(shots.observe("a", 0.04, &view(&upright(1))), 0);
        assert_eq!(shots.observe("a", 0.08, &view(&upright(2))), 0);
        assert_eq!(shots.observe("a", 0.12, &view(&across)), 1);
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
