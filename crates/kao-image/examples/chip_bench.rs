//! Times dlib's 150 px face chip (the one every face gets for its quality measures, hash and
//! embedding) on a synthetic 1280×720 frame: `cargo run --release -p kao-image --example
//! chip_bench [ROUNDS]`. Prints milliseconds per chip, the best of five runs of ROUNDS chips,
//! for a face small enough to sample directly and one large enough to go through dlib's
//! pyramid.

use std::time::Instant;

use kao_image::{RgbImage, get_face_chip};

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(Ok(500), |s| s.parse())
        .expect("ROUNDS must be a number");
    let (width, height) = (1280, 720);
    let mut rng = fastrand::Rng::with_seed(7);
    let frame = RgbImage {
        width,
        height,
        data: (0..width * height * 3).map(|_| rng.u8(..)).collect(),
    };
    // dlib's 5 points (eye corners, nose) of a face `side` pixels wide, turned by 0.1 rad.
    let face = |side: f32| -> Vec<(f32, f32)> {
        let (cx, cy, turn) = (640.0f32, 360.0f32, 0.1f32);
        [
            (0.36, -0.2),
            (0.14, -0.18),
            (-0.36, -0.2),
            (-0.14, -0.18),
            (0.0, 0.18),
        ]
        .iter()
        .map(|&(x, y)| {
            let (x, y) = (x * side, y * side);
            (
                cx + x * turn.cos() - y * turn.sin(),
                cy + x * turn.sin() + y * turn.cos(),
            )
        })
        .collect()
    };
    for (name, side) in [
        ("direct (120 px face)", 120.0),
        ("pyramid (300 px face)", 300.0),
    ] {
        let marks = face(side);
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..rounds {
                let chip =
                    get_face_chip(&frame.view(), &marks, 150, 0.25).expect("valid landmarks");
                std::hint::black_box(chip);
            }
            best = best.min(start.elapsed().as_secs_f64() * 1e3 / rounds as f64);
        }
        println!("{name}: {best:.3} ms per chip");
    }
}
