//! dlib's `shape_predictor` (`dlib/image_processing/shape_predictor.h`): an ensemble of
//! regression trees (Kazemi & Sullivan) that refines a mean shape into landmarks.
//!
//! File format (`serialize(shape_predictor)`): int version 1; `initial_shape` as a
//! `matrix<float,0,1>` (−nr, −nc, then compact floats); the forests as
//! `vector<vector<tree>>` where a tree is `splits` (idx1, idx2, thresh) and
//! `leaf_values` (one shape delta per leaf); `anchor_idx` as `vector<vector<ulong>>`;
//! and `deltas` as `vector<vector<vector<float,2>>>`.

use std::path::Path;

use kao_image::geometry::similarity;
use kao_image::view::floor_to_i64;
use kao_image::{Rect, RgbView};
use kao_kernels::prefetch;
use kao_model_files::dat::{DatError, DatErrorKind, Reader, read_file};

/// One split node: go left if `f[idx1] − f[idx2] > thresh`. Eight bytes, so that a
/// depth-4 tree's 15 splits take two cache lines.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Split {
    idx1: u16,
    idx2: u16,
    thresh: f32,
}

/// Most feature pixels a split may name (dlib's default pool is 400 pixels, its models
/// use 500).
const MAX_FEATURE_PIXELS: usize = 1 << 16;

/// A complete binary regression tree: `n` splits and `n + 1` leaves.
#[derive(Debug, Clone, PartialEq)]
struct Tree {
    splits: Vec<Split>,
    /// Leaf deltas, `leaves × shape_len` values.
    leaves: Vec<f32>,
}

/// One cascade level: its trees and the feature pixels they compare. The trees are stored
/// flat, one after another, so that a prediction reads them in order (7,500 trees, ~6 MB
/// for the 5-point model: more than a core's cache).
#[derive(Debug, Clone, PartialEq)]
struct Cascade {
    /// Every tree's splits, tree after tree.
    splits: Vec<Split>,
    /// Every tree's leaf deltas, tree after tree; tree `t`'s `n + 1` leaves start at
    /// leaf `bounds[t] + t`.
    leaves: Vec<f32>,
    /// Tree `t`'s splits are `splits[bounds[t]..bounds[t + 1]]`.
    bounds: Vec<usize>,
    /// For each feature pixel: the landmark it is anchored to.
    anchors: Vec<usize>,
    /// For each feature pixel: its offset from the anchor in mean-shape coordinates.
    deltas: Vec<[f32; 2]>,
}

/// A loaded dlib shape predictor (e.g. `shape_predictor_5_face_landmarks.dat`).
#[derive(Debug, Clone, PartialEq)]
pub struct ShapePredictor {
    /// Mean shape, x/y interleaved, in box-normalised coordinates.
    initial_shape: Vec<f32>,
    cascades: Vec<Cascade>,
}

impl ShapePredictor {
    /// Reads and parses a shape predictor file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DatError> {
        let path = path.as_ref();
        Self::parse(&read_file(path)?, Some(&path.display().to_string()))
    }

    /// Parses a shape predictor from its bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Self, DatError> {
        Self::parse(data, None)
    }

    /// Number of landmarks it predicts.
    pub fn num_parts(&self) -> usize {
        self.initial_shape.len() / 2
    }

    /// Number of cascade levels.
    pub fn num_cascades(&self) -> usize {
        self.cascades.len()
    }

    /// Total number of regression trees.
    pub fn num_trees(&self) -> usize {
        self.cascades.iter().map(|c| c.bounds.len() - 1).sum()
    }

    /// Number of feature pixels sampled at each cascade level.
    pub fn num_feature_pixels(&self) -> Vec<usize> {
        self.cascades.iter().map(|c| c.deltas.len()).collect()
    }

    fn parse(data: &[u8], file: Option<&str>) -> Result<Self, DatError> {
        let mut r = Reader::new(data, file);
        let start = r.position();
        let version = r.i32()?;
        if version != 1 {
            let kind = DatErrorKind::BadVersion {
                found: version.to_string(),
                expected: "shape_predictor version 1".into(),
            };
            return Err(r.error_at(start, kind));
        }
        r.set_record("initial_shape");
        let mut initial_shape = Vec::new();
        read_float_column(&mut r, &mut initial_shape)?;
        if initial_shape.is_empty() || initial_shape.len() % 2 != 0 {
            return Err(r.invalid(
                start,
                format!("initial shape has {} values", initial_shape.len()),
            ));
        }
        let n_shape = initial_shape.len();

        // A tree takes at least 2 count bytes; a split 8 bytes; a leaf 4 bytes.
        r.set_record("forests");
        let n_forests = r.count(1)?;
        let mut forests = Vec::with_capacity(n_forests);
        for f in 0..n_forests {
            r.set_record(format!("forest {f}"));
            let n_trees = r.count(4)?;
            let mut trees = Vec::with_capacity(n_trees);
            for t in 0..n_trees {
                r.set_record(format!("forest {f} tree {t}"));
                trees.push(read_tree(&mut r, n_shape)?);
            }
            forests.push(trees);
        }

        r.set_record("anchor_idx");
        let n_anchor_sets = r.count(1)?;
        let mut anchor_sets = Vec::with_capacity(n_anchor_sets);
        for i in 0..n_anchor_sets {
            r.set_record(format!("anchor_idx {i}"));
            let n = r.count(2)?;
            let mut anchors = Vec::with_capacity(n);
            for _ in 0..n {
                let at = r.position();
                let a = r.size(8, usize::MAX)?;
                if a >= n_shape / 2 {
                    return Err(r.invalid(
                        at,
                        format!("anchor {a} is not one of the {} parts", n_shape / 2),
                    ));
                }
                anchors.push(a);
            }
            anchor_sets.push(anchors);
        }

        r.set_record("deltas");
        let n_delta_sets = r.count(1)?;
        let mut delta_sets = Vec::with_capacity(n_delta_sets);
        for i in 0..n_delta_sets {
            r.set_record(format!("deltas {i}"));
            let n = r.count(8)?;
            let mut deltas = Vec::with_capacity(n);
            for _ in 0..n {
                deltas.push([r.f32()?, r.f32()?]);
            }
            delta_sets.push(deltas);
        }
        r.set_record("end of model");
        r.expect_end()?;

        if anchor_sets.len() != forests.len() || delta_sets.len() != forests.len() {
            return Err(r.invalid(
                r.position(),
                format!(
                    "{} forests but {} anchor sets and {} delta sets",
                    forests.len(),
                    anchor_sets.len(),
                    delta_sets.len()
                ),
            ));
        }
        let mut cascades = Vec::with_capacity(forests.len());
        for (i, ((trees, anchors), deltas)) in forests
            .into_iter()
            .zip(anchor_sets)
            .zip(delta_sets)
            .enumerate()
        {
            if anchors.len() != deltas.len() {
                return Err(r.invalid(
                    r.position(),
                    format!(
                        "cascade {i}: {} anchors but {} deltas",
                        anchors.len(),
                        deltas.len()
                    ),
                ));
            }
            let bad_split = trees
                .iter()
                .flat_map(|t| &t.splits)
                .any(|s| s.idx1 as usize >= deltas.len() || s.idx2 as usize >= deltas.len());
            if bad_split {
                return Err(r.invalid(
                    r.position(),
                    format!(
                        "cascade {i}: a split reads a pixel beyond the {} feature pixels",
                        deltas.len()
                    ),
                ));
            }
            let mut cascade = Cascade {
                splits: Vec::new(),
                leaves: Vec::new(),
                bounds: vec![0],
                anchors,
                deltas,
            };
            for tree in trees {
                cascade.splits.extend(tree.splits);
                cascade.leaves.extend(tree.leaves);
                cascade.bounds.push(cascade.splits.len());
            }
            cascades.push(cascade);
        }
        Ok(ShapePredictor {
            initial_shape,
            cascades,
        })
    }

    /// Predicts the landmarks of the object inside `rect` (dlib's inclusive box, e.g.
    /// a face detection). Points are in image pixels, rounded to integers as dlib's
    /// `full_object_detection` stores them.
    pub fn predict(&self, image: &RgbView<'_>, rect: Rect) -> Vec<(f32, f32)> {
        let to_image = Unnormalize::new(rect);
        let reference: Vec<[f64; 2]> = self
            .initial_shape
            .chunks_exact(2)
            .map(|p| [p[0] as f64, p[1] as f64])
            .collect();
        let mut shape = self.initial_shape.clone();
        let (width, height) = (image.width() as i64, image.height() as i64);
        let (mut spots, mut features, mut leaves) = (Vec::new(), Vec::new(), Vec::new());
        for cascade in &self.cascades {
            // Only the rotation/scale part of the mean→current similarity is used, in f32.
            let current: Vec<[f64; 2]> = shape
                .chunks_exact(2)
                .map(|p| [p[0] as f64, p[1] as f64])
                .collect();
            let m = similarity(&reference, &current)
                .m
                .map(|row| row.map(|v| v as f32));
            // Where the feature pixels lie, each fetched from memory as soon as it is known;
            // then their grey levels (dlib's rgb → grayscale intensity; 0 outside the image).
            spots.clear();
            spots.extend(cascade.anchors.iter().zip(&cascade.deltas).map(|(&a, d)| {
                let x = m[0][0] * d[0] + m[0][1] * d[1] + shape[2 * a];
                let y = m[1][0] * d[0] + m[1][1] * d[1] + shape[2 * a + 1];
                let (px, py) = to_image.apply(x, y);
                let inside = (0..width).contains(&px) && (0..height).contains(&py);
                let spot = inside.then_some((px as usize, py as usize));
                if let Some((px, py)) = spot {
                    prefetch(&image.row(py)[3 * px]);
                }
                spot
            }));
            features.clear();
            features.extend(spots.iter().map(|spot| {
                spot.map_or(0.0, |(x, y)| {
                    let [r, g, b] = image.pixel(x, y);
                    ((r as u32 + g as u32 + b as u32) / 3) as f32
                })
            }));
            // Every tree's leaf first: the walks do not depend on each other, so their
            // memory reads overlap. Then the deltas, added in dlib's order.
            leaves.clear();
            // Each leaf's deltas are fetched from memory while later trees are walked.
            leaves.extend(cascade.bounds.windows(2).enumerate().map(|(t, b)| {
                let leaf = b[0] + t + leaf_for(&cascade.splits[b[0]..b[1]], &features);
                let delta = &cascade.leaves[leaf * shape.len()..(leaf + 1) * shape.len()];
                if let (Some(first), Some(last)) = (delta.first(), delta.last()) {
                    prefetch(first);
                    prefetch(last);
                }
                leaf
            }));
            for &leaf in &leaves {
                let delta = &cascade.leaves[leaf * shape.len()..(leaf + 1) * shape.len()];
                for (s, d) in shape.iter_mut().zip(delta) {
                    *s += d;
                }
            }
        }
        shape
            .chunks_exact(2)
            .map(|p| {
                let (x, y) = to_image.apply(p[0], p[1]);
                (x as f32, y as f32)
            })
            .collect()
    }
}

/// Walks a tree's splits and returns the index of the leaf reached.
fn leaf_for(splits: &[Split], features: &[f32]) -> usize {
    let n = splits.len();
    let mut i = 0;
    while i < n {
        let s = splits[i];
        // Without a branch, so that walks of different trees overlap.
        let left = features[s.idx1 as usize] - features[s.idx2 as usize] > s.thresh;
        i = 2 * i + 2 - usize::from(left);
    }
    i - n
}

/// dlib's `unnormalizing_tform(rect)`: (0,0) → top-left, (1,1) → bottom-right, followed
/// by the conversion of the resulting `dpoint` to an integer `point` (round half up).
struct Unnormalize {
    origin: [f64; 2],
    scale: [f64; 2],
}

impl Unnormalize {
    fn new(rect: Rect) -> Self {
        Unnormalize {
            origin: [rect.left as f64, rect.top as f64],
            scale: [
                rect.right as f64 - rect.left as f64,
                rect.bottom as f64 - rect.top as f64,
            ],
        }
    }

    fn apply(&self, x: f32, y: f32) -> (i64, i64) {
        let px = self.scale[0] * x as f64 + self.origin[0];
        let py = self.scale[1] * y as f64 + self.origin[1];
        (floor_to_i64(px + 0.5), floor_to_i64(py + 0.5))
    }
}

/// A `matrix<float,0,1>`: −nr and −nc (a negative sign marks the current format; dlib
/// also reads positive values), then nr·nc compact floats, appended to `out`. Returns
/// the number of values read.
fn read_float_column(r: &mut Reader<'_>, out: &mut Vec<f32>) -> Result<usize, DatError> {
    let at = r.position();
    let nr = r.signed(8)?.unsigned_abs();
    let nc = r.signed(8)?.unsigned_abs();
    // Each compact float takes at least 4 bytes.
    let n = nr
        .checked_mul(nc)
        .filter(|&n| n <= (r.remaining() / 4) as u64);
    let Some(n) = n else {
        return Err(r.invalid(
            at,
            format!(
                "a {nr}x{nc} matrix does not fit in the {} bytes left",
                r.remaining()
            ),
        ));
    };
    out.reserve(n as usize);
    for _ in 0..n {
        out.push(r.f32()?);
    }
    Ok(n as usize)
}

fn read_tree(r: &mut Reader<'_>, n_shape: usize) -> Result<Tree, DatError> {
    let n_splits = r.count(8)?;
    let mut splits = Vec::with_capacity(n_splits);
    for _ in 0..n_splits {
        splits.push(Split {
            idx1: r.size(8, MAX_FEATURE_PIXELS - 1)? as u16,
            idx2: r.size(8, MAX_FEATURE_PIXELS - 1)? as u16,
            thresh: r.f32()?,
        });
    }
    let at = r.position();
    let n_leaves = r.count(4)?;
    if n_leaves != n_splits + 1 {
        return Err(r.invalid(at, format!("{n_leaves} leaves for {n_splits} splits")));
    }
    let mut leaves = Vec::new();
    for _ in 0..n_leaves {
        let at = r.position();
        let n = read_float_column(r, &mut leaves)?;
        if n != n_shape {
            return Err(r.invalid(at, format!("leaf has {n} values, the shape {n_shape}")));
        }
    }
    Ok(Tree { splits, leaves })
}
