//! Times dlib's 5-point shape predictor on one face of a 1280×720 frame: warm (the same face
//! again and again, the model in the caches) and cold (16 MB of other memory written between
//! calls, as when the predictor runs between decoding and the networks in kao-extract).
//!
//! `cargo run --release -p kao-networks --example landmarks_bench -- MODEL [ROUNDS]`
//! (MODEL: path of `shape_predictor_5_face_landmarks.dat`). Prints the median, 10th and 90th
//! percentile milliseconds per face. The frame is synthetic: the trees' paths depend on pixel
//! values, their cost hardly.

use std::time::Instant;

use kao_image::{Rect, RgbImage};
use kao_networks::ShapePredictor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: landmarks_bench MODEL [ROUNDS]")?;
    let rounds: usize = args.next().map_or(Ok(400), |r| r.parse())?;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let predictor = ShapePredictor::load(&model)?;
    let mut frame = RgbImage::new(1280, 720);
    for (i, p) in frame.data.iter_mut().enumerate() {
        *p = (i * 7 % 251) as u8;
    }
    // A face of 314 pixels, as in an interview shot.
    let face = Rect::new(197, 146, 511, 460);
    let mut other = vec![0u8; 16 << 20];
    for cold in [false, true] {
        let mut times: Vec<f64> = (0..rounds)
            .map(|round| {
                if cold {
                    for (k, v) in other.iter_mut().step_by(64).enumerate() {
                        *v = v.wrapping_add((k ^ round) as u8);
                    }
                }
                let t = Instant::now();
                std::hint::black_box(predictor.predict(&frame.view(), face));
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let at = |q: usize| times[(rounds - 1) * q / 100];
        println!(
            "{}: {:.3} ms per face (10th percentile {:.3}, 90th {:.3})",
            if cold { "cold" } else { "warm" },
            at(50),
            at(10),
            at(90)
        );
    }
    Ok(())
}
