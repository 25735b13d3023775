use std::time::Instant;
use kao_dlib::image::RgbView;
fn main() {
    let (w, h) = (1280usize, 720usize);
    let data: Vec<u8> = (0..w * h * 3).map(|i| ((i * 2654435761usize) >> 13) as u8).collect();
    let view = RgbView::new(w, h, &data).unwrap();
    for scale in [1.0f32, 1.5, 2.5] {
        // A face ~ 120·scale px wide.
        let c = (640.0f32, 360.0f32);
        let s = 60.0 * scale;
        let marks = [(c.0 + s * 0.7, c.1 - s * 0.3), (c.0 + s * 0.3, c.1 - s * 0.3), (c.0 - s * 0.7, c.1 - s * 0.3), (c.0 - s * 0.3, c.1 - s * 0.3), (c.0, c.1 + s * 0.4)];
        let mut best = f64::MAX;
        for _ in 0..30 {
            let t = Instant::now();
            for _ in 0..10 { std::hint::black_box(kao_dlib::get_face_chip(&view, &marks, 150, 0.25).unwrap()); }
            best = best.min(t.elapsed().as_secs_f64() * 1e3 / 10.0);
        }
        println!("face {:.0} px: chip best {best:.4} ms", 2.0 * s);
    }
}
