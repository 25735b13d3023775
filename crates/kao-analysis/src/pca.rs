//! Principal component analysis of embeddings (nalgebra's symmetric eigendecomposition of the
//! covariance matrix), to look at them in two dimensions.

use nalgebra::{DMatrix, SymmetricEigen};

/// Embeddings projected onto their first principal components.
#[derive(Clone, Debug)]
pub struct Projection {
    /// One point per input vector, in input order: coordinates along the components.
    pub points: Vec<Vec<f64>>,
    /// Share of the total variance along each component, largest first.
    pub explained: Vec<f64>,
}

/// Projects `vectors` (all of one length) onto their first `components` principal components.
/// Fewer than two vectors, or vectors of zero length, give no components.
pub fn project(vectors: &[Vec<f32>], components: usize) -> Projection {
    let n = vectors.len();
    let d = vectors.first().map_or(0, Vec::len);
    if n < 2 || d == 0 || vectors.iter().any(|v| v.len() != d) {
        return Projection {
            points: vec![Vec::new(); n],
            explained: Vec::new(),
        };
    }
    let data = DMatrix::from_fn(n, d, |i, j| f64::from(vectors[i][j]));
    let mean = data.row_mean();
    let centered = DMatrix::from_fn(n, d, |i, j| data[(i, j)] - mean[j]);
    let covariance = centered.transpose() * &centered / (n as f64 - 1.0);
    let eigen = SymmetricEigen::new(covariance);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    let k = components.min(d);
    let total: f64 = eigen.eigenvalues.iter().map(|v| v.max(0.0)).sum();
    let explained = order[..k]
        .iter()
        .map(|&c| {
            if total > 0.0 {
                eigen.eigenvalues[c].max(0.0) / total
            } else {
                0.0
            }
        })
        .collect();
    let points = (0..n)
        .map(|i| {
            order[..k]
                .iter()
                .map(|&c| {
                    centered
                        .row(i)
                        .dot(&eigen.eigenvectors.column(c).transpose())
                })
                .collect()
        })
        .collect();
    Projection { points, explained }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_component_follows_the_widest_spread() {
        // Points along the line y = 2x in 3-D, with a little noise in z.
        let vectors: Vec<Vec<f32>> = (0..20)
            .map(|i| {
                vec![
                    i as f32,
                    2.0 * i as f32,
                    if i % 2 == 0 { 0.1 } else { -0.1 },
                ]
            })
            .collect();
        let p = project(&vectors, 2);
        assert_eq!(p.points.len(), 20);
        assert!(p.explained[0] > 0.99, "{:?}", p.explained);
        // Distances along the first component match distances along the line.
        let span = (p.points[19][0] - p.points[0][0]).abs();
        assert!((span - 19.0 * 5f64.sqrt()).abs() < 1e-2, "{span}");
        assert!(p.points.iter().all(|q| q[1].abs() < 0.2));
    }

    #[test]
    fn too_few_vectors_give_no_components() {
        assert!(project(&[vec![1.0, 2.0]], 2).explained.is_empty());
        assert!(project(&[], 2).points.is_empty());
    }
}
