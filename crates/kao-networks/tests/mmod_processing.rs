//! MMOD pyramid, decoding and upsampling against dlib 20.0.1 and the verified numpy
//! oracle (`reference/mmod_np.py`); the small goldens come from
//! `tests/data/gen_mmod_golden.py`.

mod support;

use kao_image::{Rect, RgbView};
use kao_model_files::dat::MmodModel;
use kao_networks::mmod::processing::{
    MmodDecoder, MmodInput, PyramidLayout, pyramid_up, rect_down, rect_up,
};
use serde_json::Value;
use support::{model_path, read_f32, read_json, read_rgb};

fn model() -> MmodModel {
    MmodModel::load(model_path("mmod_human_face_detector.dat")).unwrap()
}

/// `[left, top, width, height]` JSON rects as inclusive rects.
fn ltwh(v: &Value) -> Vec<Rect> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r: Vec<i64> = r
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            Rect::new(r[0], r[1], r[0] + r[2] - 1, r[1] + r[3] - 1)
        })
        .collect()
}

fn ltrb(v: &Value) -> Rect {
    let r: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    Rect::new(r[0], r[1], r[2], r[3])
}

/// Output size of the three 5×5 stride-2 unpadded convolutions (the other layers keep
/// the size).
fn score_map_size(n: usize) -> usize {
    (0..3).fold(n, |n, _| (n - 5) / 2 + 1)
}

#[test]
fn astronaut_pyramid_matches_numpy() {
    let (w, h, rgb) = read_rgb("astronaut.npy");
    let input = MmodInput::new(&RgbView::new(w, h, &rgb).unwrap(), &model().input).unwrap();
    let golden = &read_json("mmod_pyramid_samples.json")["astronaut"];
    assert_eq!([3, input.rows, input.cols], [3, 1895, 534]);
    assert_eq!(
        golden["shape"],
        serde_json::json!([3, input.rows, input.cols])
    );
    assert_eq!(input.levels, ltwh(&golden["rects"]));
    assert_eq!(input.levels.len(), 24);
    let plane = input.rows * input.cols;
    for (c, want) in golden["channel_sums"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let sum: f64 = input.data[c * plane..(c + 1) * plane]
            .iter()
            .map(|&v| v as f64)
            .sum();
        let want = want.as_f64().unwrap();
        assert!(
            (sum - want).abs() < 1e-6 * want.abs().max(1.0),
            "channel {c}: {sum} vs {want}"
        );
    }
    let mut worst = 0f64;
    for s in golden["samples"].as_array().unwrap() {
        let s: Vec<f64> = s
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let v = input.data[s[0] as usize * plane + s[1] as usize * input.cols + s[2] as usize];
        worst = worst.max((v as f64 - s[3]).abs());
    }
    assert!(worst <= 1e-6, "{worst}");
    let (shape, _) = read_f32("mmod_scoremap_astronaut.npy");
    assert_eq!(
        shape,
        [score_map_size(input.rows), score_map_size(input.cols)]
    );
}

#[test]
fn canvas_layout_matches_numpy() {
    let golden = &read_json("mmod_pyramid_samples.json")["canvas"];
    let layout = PyramidLayout::new(900, 1000, 10, 11);
    assert_eq!(
        golden["shape"],
        serde_json::json!([3, layout.rows, layout.cols])
    );
    assert_eq!(layout.levels, ltwh(&golden["rects"]));
    let (shape, _) = read_f32("mmod_scoremap_canvas.npy");
    assert_eq!(
        shape,
        [score_map_size(layout.rows), score_map_size(layout.cols)]
    );
}

#[test]
fn decoder_from_the_model() {
    let d = MmodDecoder::new(&model()).unwrap();
    assert_eq!((d.stride, d.offset), (8, 14));
    assert_eq!((d.window_width, d.window_height), (80.0, 80.0));
    assert!((d.nms.iou_thresh - 0.33828).abs() < 1e-5);
    assert_eq!(d.nms.percent_covered_thresh, 1.0);
}

fn check_decode(name: &str, levels: &[Rect], dlib: &Value) {
    let (shape, scores) = read_f32(&format!("mmod_scoremap_{name}.npy"));
    let dets = MmodDecoder::new(&model())
        .unwrap()
        .decode(&scores, shape[0], shape[1], levels, 0.0)
        .unwrap();
    let want = dlib.as_array().unwrap();
    assert_eq!(dets.len(), want.len(), "{name}: {dets:?}");
    for (d, w) in dets.iter().zip(want) {
        assert_eq!(d.rect, ltrb(&w[1]), "{name}");
        let score = w[0].as_f64().unwrap();
        assert!(
            (d.score as f64 - score).abs() < 1e-4,
            "{name}: {} vs {score}",
            d.score
        );
    }
}

#[test]
fn astronaut_scoremap_gives_dlibs_box() {
    let levels = ltwh(&read_json("mmod_pyramid_samples.json")["astronaut"]["rects"]);
    check_decode(
        "astronaut",
        &levels,
        &read_json("mmod_numpy_vs_dlib.json")["astronaut"]["dlib"],
    );
    let cnn = &read_json("dlib_reference.json")["cnn_upsample0"][0];
    let rect = Rect::new(
        cnn["l"].as_i64().unwrap(),
        cnn["t"].as_i64().unwrap(),
        cnn["r"].as_i64().unwrap(),
        cnn["b"].as_i64().unwrap(),
    );
    assert_eq!(rect, Rect::new(168, 69, 263, 164));
}

#[test]
fn canvas_scoremap_gives_dlibs_five_boxes() {
    let layout = PyramidLayout::new(900, 1000, 10, 11);
    check_decode(
        "canvas",
        &layout.levels,
        &read_json("mmod_numpy_vs_dlib.json")["canvas"]["dlib"],
    );
}

#[test]
fn decode_rejects_bad_shapes_and_handles_empty_maps() {
    let d = MmodDecoder::new(&model()).unwrap();
    let levels = [Rect::new(11, 11, 20, 20)];
    assert!(d.decode(&[1.0; 5], 2, 3, &levels, 0.0).is_err());
    assert!(d.decode(&[], 0, 0, &levels, 0.0).unwrap().is_empty());
    assert!(d.decode(&[1.0], 1, 1, &[], 0.0).is_err());
    assert_eq!(
        d.decode(&[f32::NAN, 2.0], 1, 2, &levels, 0.0)
            .unwrap()
            .len(),
        1
    );
}

/// `pyramid_up` equals dlib's (`resize_image` to `rect_up(get_rect(img))`) on a crop.
#[test]
fn pyramid_up_matches_dlib() {
    let (w, h, rgb) = read_rgb("pyramid_up_in.npy");
    let (ow, oh, want) = read_rgb("pyramid_up_out.npy");
    let up = pyramid_up(&RgbView::new(w, h, &rgb).unwrap()).unwrap();
    assert_eq!((up.width, up.height), (ow, oh));
    assert_eq!((ow, oh), (2 * w + 2, 2 * h + 1));
    let diffs = up.data.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(diffs, 0, "{diffs} of {} bytes differ", want.len());
}

#[test]
fn rect_mapping_matches_dlib() {
    for case in read_json("pyramid_rects.json").as_array().unwrap() {
        let r = ltrb(&case["rect"]);
        assert_eq!(rect_down(r, 1), ltrb(&case["down1"]), "{r:?}");
        assert_eq!(rect_down(r, 2), ltrb(&case["down2"]), "{r:?}");
        assert_eq!(rect_up(r, 1), ltrb(&case["up1"]), "{r:?}");
        assert_eq!(rect_down(r, 0), r);
    }
}

#[test]
fn oversized_frames_are_refused() {
    let data = vec![0u8; 3000 * 1500 * 3];
    let frame = RgbView::new(3000, 1500, &data).unwrap();
    let err = MmodInput::new(&frame, &model().input).unwrap_err();
    assert!(err.to_string().contains("--detect-width"), "{err}");
}
