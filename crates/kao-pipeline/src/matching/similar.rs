//! FACE01's `similar_percentage`: the percentage FACE01 shows for a face and the matching
//! threshold it stands for, on each of FACE01's two embedders.
//!
//! kao measures every face by a distance and matches when the distance is at most a threshold:
//! the Euclidean distance of dlib's embeddings, and the cosine *distance* (1 − cosine
//! similarity) of JAPANESE FACE V1's. [`Curve::percentage`] turns such a distance into FACE01's
//! percentage and [`Curve::threshold`] turns a `similar_percentage` into the distance threshold
//! it stands for, so the two round-trip: `threshold(percentage(d)) ≈ d` for `0 < d < 1`.
//!
//! The curves (FACE01_DEV `face01lib/Calc.py`, `return_percentage` and `to_tolerance`):
//! - dlib: P(d) = 100 − 0.380952375·d − 4.76190475·d² for Euclidean distance d.
//! - JAPANESE FACE V1: P(c) = −23.71·c² + 49.98·c + 73.69 for cosine similarity c; a face
//!   matches when its cosine is at least the root c in (0, 1) of P(c) = `similar_percentage`.

use std::fmt;

use kao_networks::embedder::{EmbedderKind, EmbedderSpec};

/// dlib curve: P(d) = 100 − DLIB_B·d − DLIB_A·d².
const DLIB_A: f64 = 4.76190475;
/// dlib curve, linear coefficient.
const DLIB_B: f64 = 0.380952375;
/// JAPANESE FACE V1 curve: P(c) = −JFV1_A·c² + JFV1_B·c + JFV1_C.
const JFV1_A: f64 = 23.71;
/// JAPANESE FACE V1 curve, linear coefficient.
const JFV1_B: f64 = 49.98;
/// JAPANESE FACE V1 curve, constant term (the percentage at cosine 0).
const JFV1_C: f64 = 73.69;

/// One of FACE01's percentage curves, chosen by its embedder (`deep_learning_model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Curve {
    /// dlib's ResNet (`deep_learning_model = 0`); distances are Euclidean.
    ///
    /// The threshold for a percentage follows FACE01_SAMPLE's
    /// `similar_percentage_to_tolerance.py`: the root d in (0, 1) of the curve FACE01 displays,
    /// P(d) = 100 − 0.380952375·d − 4.76190475·d² (98.72 → 0.48, 99.1 → 0.3966). That is the
    /// exact inverse of the percentage FACE01 shows next to a face, so a percentage and a
    /// threshold round-trip. FACE01_DEV's current `to_tolerance` solves a different, logistic
    /// curve instead (99.1 → 1.27, a distance that accepts nearly any face), and the code it
    /// replaced took the negative root (99.1 → 0.4766); kao follows neither.
    Dlib,
    /// JAPANESE FACE V1 (`deep_learning_model = 1`); kao's distances are cosine distances
    /// (1 − cosine similarity), FACE01's curve is in cosine similarity c:
    /// P(c) = −23.71·c² + 49.98·c + 73.69, and the threshold is the root c in (0, 1), as in
    /// FACE01_DEV's `to_tolerance` (90 → c = 0.4036, distance 0.5964; 95 → c = 0.593).
    JapaneseFaceV1,
}

impl Curve {
    /// The curve of FACE01's `deep_learning_model` value (0 dlib, 1 JAPANESE FACE V1).
    pub fn from_deep_learning_model(model: i64) -> Option<Curve> {
        match model {
            0 => Some(Curve::Dlib),
            1 => Some(Curve::JapaneseFaceV1),
            _ => None,
        }
    }

    /// The curve of an embedder, if FACE01 has one for it: dlib's ResNet and JAPANESE FACE V1;
    /// `None` for other ONNX embedders.
    pub fn of(embedder: &EmbedderSpec) -> Option<Curve> {
        match embedder.kind {
            EmbedderKind::Dlib => Some(Curve::Dlib),
            EmbedderKind::Face01V1(_) => Some(Curve::JapaneseFaceV1),
            EmbedderKind::Onnx(_) => None,
        }
    }

    /// The embedder's name as FACE01 writes it.
    pub fn name(self) -> &'static str {
        match self {
            Curve::Dlib => "dlib",
            Curve::JapaneseFaceV1 => "JAPANESE FACE V1",
        }
    }

    /// FACE01's percentage for a kao distance (Euclidean for dlib, cosine distance for
    /// JAPANESE FACE V1): the curve's value, clamped to [0, 100].
    ///
    /// Distances outside (0, 1) are not an error: the curve is evaluated there too and the
    /// result clamped (dlib's curve passes 100 for distances just below 0; a cosine distance of
    /// 2, opposite embeddings, gives 0). NaN gives NaN.
    pub fn percentage(self, distance: f32) -> f32 {
        let d = f64::from(distance);
        let p = match self {
            Curve::Dlib => dlib_curve(d),
            Curve::JapaneseFaceV1 => jfv1_curve(1.0 - d),
        };
        (p as f32).clamp(0.0, 100.0)
    }

    /// The percentages this curve reaches for distances strictly inside (0, 1), as
    /// `(low, high)`: dlib (94.857142875, 100), JAPANESE FACE V1 (73.69, 99.96).
    pub fn percentage_range(self) -> (f32, f32) {
        let (low, high) = self.range_f64();
        (low as f32, high as f32)
    }

    /// The range in f64, from the formulas at distance 1 and 0.
    fn range_f64(self) -> (f64, f64) {
        match self {
            Curve::Dlib => (dlib_curve(1.0), dlib_curve(0.0)),
            Curve::JapaneseFaceV1 => (jfv1_curve(0.0), jfv1_curve(1.0)),
        }
    }

    /// The distance threshold (Euclidean for dlib, cosine distance for JAPANESE FACE V1) that
    /// a `similar_percentage` stands for: a face matches when its distance is at most this.
    ///
    /// Fails when the percentage lies outside what the curve reaches for distances strictly
    /// inside (0, 1) (see [`Curve::percentage_range`]), as FACE01 only takes roots in (0, 1).
    pub fn threshold(self, percentage: f32) -> Result<f32, Error> {
        let (low, high) = self.percentage_range();
        // Compared in f32, so that a percentage written as the bound itself (73.69) is out.
        if !(percentage > low && percentage < high) {
            return Err(Error::OutOfRange {
                curve: self,
                percentage,
                low,
                high,
            });
        }
        let p = f64::from(percentage);
        let distance = match self {
            // 4.76·d² + 0.38·d − (100 − P) = 0; the positive root, written without cancellation.
            Curve::Dlib => {
                let k = 100.0 - p;
                2.0 * k / (DLIB_B + (DLIB_B * DLIB_B + 4.0 * DLIB_A * k).sqrt())
            }
            // −23.71·c² + 49.98·c − (P − 73.69) = 0; the smaller root, the one in (0, 1).
            Curve::JapaneseFaceV1 => {
                let k = p - JFV1_C;
                let c = 2.0 * k / (JFV1_B + (JFV1_B * JFV1_B - 4.0 * JFV1_A * k).sqrt());
                1.0 - c
            }
        };
        Ok(distance as f32)
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// dlib's displayed percentage for Euclidean distance `d`.
fn dlib_curve(d: f64) -> f64 {
    100.0 - DLIB_B * d - DLIB_A * d * d
}

/// JAPANESE FACE V1's percentage for cosine similarity `c`.
fn jfv1_curve(c: f64) -> f64 {
    -JFV1_A * c * c + JFV1_B * c + JFV1_C
}

/// Why a percentage has no threshold.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// The percentage is outside what the curve reaches for distances in (0, 1).
    OutOfRange {
        /// The curve asked.
        curve: Curve,
        /// The percentage given.
        percentage: f32,
        /// The curve's value at distance 1 (cosine 0 for JAPANESE FACE V1).
        low: f32,
        /// The curve's value at distance 0 (cosine 1 for JAPANESE FACE V1).
        high: f32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::OutOfRange {
                curve,
                percentage,
                low,
                high,
            } => {
                let what = match curve {
                    Curve::Dlib => "Euclidean distance 1 to 0",
                    Curve::JapaneseFaceV1 => "cosine similarity 0 to 1",
                };
                write!(
                    f,
                    "similar percentage {percentage} is outside the {curve} curve: it must lie strictly \
                     between {low} and {high} ({what})"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn jfv1_doc_values() {
        // 90 → cosine 0.4036 (distance 0.5964); 95 → cosine 0.593.
        let d90 = Curve::JapaneseFaceV1.threshold(90.0).unwrap();
        assert!(close(1.0 - d90, 0.4036, 1e-4), "{d90}");
        let d95 = Curve::JapaneseFaceV1.threshold(95.0).unwrap();
        assert!(close(1.0 - d95, 0.593, 1e-3), "{d95}");
    }

    #[test]
    fn dlib_doc_values() {
        assert!(close(Curve::Dlib.threshold(98.72).unwrap(), 0.48, 1e-4));
        assert!(close(Curve::Dlib.threshold(99.1).unwrap(), 0.3966, 1e-4));
        assert!(close(Curve::Dlib.percentage(0.48), 98.72, 1e-4));
    }

    #[test]
    fn round_trips() {
        for curve in [Curve::Dlib, Curve::JapaneseFaceV1] {
            for i in 1..100 {
                let d = i as f32 / 100.0;
                let back = curve.threshold(curve.percentage(d)).unwrap();
                assert!(close(back, d, 2e-4), "{curve}: {d} → {back}");
            }
        }
    }

    #[test]
    fn percentage_is_monotonic_in_distance() {
        for curve in [Curve::Dlib, Curve::JapaneseFaceV1] {
            let mut last = f32::INFINITY;
            for i in 0..=200 {
                let p = curve.percentage(i as f32 / 100.0);
                assert!(p <= last, "{curve} at {i}");
                last = p;
            }
        }
    }

    #[test]
    fn ranges_come_from_the_formulas() {
        let (low, high) = Curve::Dlib.percentage_range();
        assert!(close(low, 94.857_14, 1e-4) && high == 100.0, "{low} {high}");
        let (low, high) = Curve::JapaneseFaceV1.percentage_range();
        assert!(
            close(low, 73.69, 1e-4) && close(high, 99.96, 1e-4),
            "{low} {high}"
        );
    }

    #[test]
    fn out_of_range_percentages_fail_naming_the_range() {
        for (curve, p) in [
            (Curve::JapaneseFaceV1, 99.97),
            (Curve::JapaneseFaceV1, 73.69),
            (Curve::JapaneseFaceV1, 50.0),
            (Curve::JapaneseFaceV1, f32::NAN),
            (Curve::Dlib, 100.0),
            (Curve::Dlib, 94.8),
            (Curve::Dlib, 90.0),
        ] {
            let err = curve.threshold(p).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("strictly between"), "{msg}");
        }
        let msg = Curve::JapaneseFaceV1
            .threshold(99.99)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("73.69") && msg.contains("99.96") && msg.contains("JAPANESE FACE V1"),
            "{msg}"
        );
        let msg = Curve::Dlib.threshold(94.0).unwrap_err().to_string();
        assert!(msg.contains("94.857") && msg.contains("100"), "{msg}");
    }

    #[test]
    fn percentages_outside_the_unit_interval_are_clamped() {
        assert_eq!(Curve::Dlib.percentage(-0.02), 100.0);
        assert!(close(Curve::Dlib.percentage(-0.5), 99.0, 1e-4));
        assert_eq!(Curve::Dlib.percentage(0.0), 100.0);
        assert_eq!(Curve::Dlib.percentage(10.0), 0.0);
        assert!(close(Curve::Dlib.percentage(1.5), 88.714_29, 1e-3));
        assert!(close(Curve::JapaneseFaceV1.percentage(0.0), 99.96, 1e-4));
        assert!(close(Curve::JapaneseFaceV1.percentage(1.0), 73.69, 1e-4));
        assert!(close(Curve::JapaneseFaceV1.percentage(2.0), 0.0, 1e-4));
        assert_eq!(Curve::JapaneseFaceV1.percentage(3.0), 0.0);
        assert!(Curve::Dlib.percentage(f32::NAN).is_nan());
    }

    #[test]
    fn curve_of_deep_learning_model() {
        assert_eq!(Curve::from_deep_learning_model(0), Some(Curve::Dlib));
        assert_eq!(
            Curve::from_deep_learning_model(1),
            Some(Curve::JapaneseFaceV1)
        );
        assert_eq!(Curve::from_deep_learning_model(2), None);
    }
}
