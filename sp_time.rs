use std::time::Instant;
use kao_dlib::image::{Rect, RgbView};
use kao_dlib::shape_predictor::ShapePredictor;
fn main() {
    let model = std::env::args().nth(1).unwrap();
    let sp = ShapePredictor::load(&model).unwrap();
    let (w, h) = (1280usize, 720usize);
    let data: Vec<u8> = (0..w * h * 3).map(|i| ((i * 2654435761usize) >> 13) as u8).collect();
    let view = RgbView::new(w, h, &data).unwrap();
    let rect = Rect::new(500, 200, 760, 460);
    let mut best = f64::MAX;
    for _ in 0..50 {
        let t = Instant::now();
        for _ in 0..20 { std::hint::black_box(sp.predict(&view, rect)); }
        best = best.min(t.elapsed().as_secs_f64() * 1e3 / 20.0);
    }
    println!("cascades {} trees {} predict best {best:.4} ms", sp.num_cascades(), sp.num_trees());
}
