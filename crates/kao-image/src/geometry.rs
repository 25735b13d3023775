//! Geometry shared by the shape predictor, chip extraction, the detectors and the tracker:
//! dlib's similarity fit between point sets, and the overlap of two boxes.

/// A similarity transform `p ↦ m·p + t`.
pub struct Similarity {
    /// The rotation·scale matrix.
    pub m: [[f64; 2]; 2],
    /// The translation.
    pub t: [f64; 2],
}

/// dlib's `find_similarity_transform` (Umeyama's least-squares similarity from `from`
/// to `to`). In 2-D the optimal rotation·scale has the closed form
/// `[[p, −q], [q, p]]` with `p = (c00 + c11)/σ²`, `q = (c10 − c01)/σ²` for the
/// covariance `c` and the variance `σ²` of `from`; this equals dlib's SVD route
/// including its reflection handling (the result is always a rotation).
pub fn similarity(from: &[[f64; 2]], to: &[[f64; 2]]) -> Similarity {
    let n = from.len() as f64;
    let mut mean_from = [0.0; 2];
    let mut mean_to = [0.0; 2];
    for (f, t) in from.iter().zip(to) {
        for k in 0..2 {
            mean_from[k] += f[k];
            mean_to[k] += t[k];
        }
    }
    for k in 0..2 {
        mean_from[k] /= n;
        mean_to[k] /= n;
    }
    let mut sigma_from = 0.0;
    let mut cov = [[0.0; 2]; 2];
    for (f, t) in from.iter().zip(to) {
        let df = [f[0] - mean_from[0], f[1] - mean_from[1]];
        let dt = [t[0] - mean_to[0], t[1] - mean_to[1]];
        sigma_from += df[0] * df[0] + df[1] * df[1];
        for (row, dtr) in cov.iter_mut().zip(dt) {
            for (c, dfc) in row.iter_mut().zip(df) {
                *c += dtr * dfc;
            }
        }
    }
    sigma_from /= n;
    let cov = cov.map(|row| row.map(|c| c / n));
    let (p, q) = if sigma_from != 0.0 {
        (
            (cov[0][0] + cov[1][1]) / sigma_from,
            (cov[1][0] - cov[0][1]) / sigma_from,
        )
    } else {
        // dlib keeps c = 1 with the rotation of the covariance.
        let (a, b) = (cov[0][0] + cov[1][1], cov[1][0] - cov[0][1]);
        let norm = a.hypot(b);
        if norm == 0.0 {
            (1.0, 0.0)
        } else {
            (a / norm, b / norm)
        }
    };
    let m = [[p, -q], [q, p]];
    let t = [
        mean_to[0] - (m[0][0] * mean_from[0] + m[0][1] * mean_from[1]),
        mean_to[1] - (m[1][0] * mean_from[0] + m[1][1] * mean_from[1]),
    ];
    Similarity { m, t }
}

/// Intersection over union of two `[left, top, right, bottom]` boxes (0 when the union is
/// empty): the overlap every detector's NMS and the tracker measure.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_corner_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[10.0, 0.0, 20.0, 10.0]), 0.0);
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0; 4], &[0.0; 4]), 0.0);
    }
}
