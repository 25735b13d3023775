//! Combing removal for interlaced frames.
//!
//! An interlaced frame weaves two fields taken a field period apart: where anything moved, or
//! across a cut or a dissolve, its rows alternate between two pictures ("combing"), and a crop
//! cut there shows it. kao keeps the field shown first and, in the other field, replaces each
//! pixel that sticks out from both its vertical neighbours the same way (a comb tooth) by
//! their mean; still parts, where the fields agree, keep their full resolution, and so do
//! frames only flagged interlaced (film in a 1080i broadcast) whose fields agree.

/// How far a pixel's luma (r + 2g + b, 0–1020) must stick out from both neighbours, squared:
/// 40 (10 levels of 8-bit luma) on each side.
const COMB: i32 = 40 * 40;

/// Removes combing from a packed RGB24 `width × height` frame in place, keeping the top field
/// (even rows) when `top_first`, else the bottom field (odd rows).
pub(crate) fn deinterlace(rgb: &mut [u8], width: usize, height: usize, top_first: bool) {
    let row = width * 3;
    assert_eq!(rgb.len(), row * height, "an RGB24 frame of the size given");
    let luma = |p: &[u8]| i32::from(p[0]) + 2 * i32::from(p[1]) + i32::from(p[2]);
    // The other field's rows; one at the frame's edge has one neighbour, too little to tell a
    // tooth from an edge, so it stays.
    let first = if top_first { 1 } else { 2 };
    for y in (first..height.saturating_sub(1)).step_by(2) {
        let (before, rest) = rgb.split_at_mut(y * row);
        let (line, after) = rest.split_at_mut(row);
        let (up, down) = (&before[(y - 1) * row..y * row], &after[..row]);
        for x in 0..width {
            let px = x * 3..x * 3 + 3;
            let (a, c) = (&up[px.clone()], &down[px.clone()]);
            let own = luma(&line[px]);
            if (luma(a) - own) * (luma(c) - own) > COMB {
                for k in 0..3 {
                    line[x * 3 + k] = (u16::from(a[k]) + u16::from(c[k])).div_ceil(2) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame whose rows are `rows` (one grey level each), `width` pixels wide.
    fn frame(rows: &[u8], width: usize) -> Vec<u8> {
        rows.iter()
            .flat_map(|&v| std::iter::repeat_n(v, width * 3))
            .collect()
    }

    fn greys(rgb: &[u8], width: usize) -> Vec<u8> {
        rgb.chunks_exact(width * 3).map(|r| r[0]).collect()
    }

    #[test]
    fn two_pictures_woven_become_the_first_one() {
        // Top field dark (20), bottom field light (200): every bottom row is a tooth.
        let mut rgb = frame(&[20, 200, 20, 200, 20, 200], 4);
        deinterlace(&mut rgb, 4, 6, true);
        assert_eq!(greys(&rgb, 4), [20, 20, 20, 20, 20, 200]);
        // Bottom field first: the light picture stays.
        let mut rgb = frame(&[20, 200, 20, 200, 20, 200], 4);
        deinterlace(&mut rgb, 4, 6, false);
        assert_eq!(greys(&rgb, 4), [20, 200, 200, 200, 200, 200]);
    }

    #[test]
    fn detail_where_the_fields_agree_is_kept() {
        // A ramp, an edge, and a thin line only a little brighter than its neighbours.
        for rows in [
            &[0u8, 40, 80, 120, 160, 200][..],
            &[10, 10, 10, 240, 240, 240],
            &[100, 108, 100, 100, 100, 100],
        ] {
            let mut rgb = frame(rows, 3);
            deinterlace(&mut rgb, 3, rows.len(), true);
            assert_eq!(greys(&rgb, 3), rows);
        }
    }

    #[test]
    fn frames_of_a_row_or_two_are_left_alone() {
        for (w, h) in [(0, 0), (3, 0), (3, 1), (3, 2), (1, 3)] {
            let mut rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 97 % 256) as u8).collect();
            let before = rgb.clone();
            deinterlace(&mut rgb, w, h, true);
            deinterlace(&mut rgb, w, h, false);
            if h < 3 {
                assert_eq!(rgb, before, "{w}×{h}");
            }
        }
    }

    #[test]
    fn only_the_combed_part_of_a_row_changes() {
        // Left half still (both fields 50), right half moved (fields 50 and 250).
        let (w, h) = (4, 5);
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let v = if x >= 2 && y % 2 == 1 { 250 } else { 50 };
                rgb.extend_from_slice(&[v, v, v]);
            }
        }
        deinterlace(&mut rgb, w, h, true);
        assert!(rgb.iter().all(|&v| v == 50), "{rgb:?}");
    }
}
