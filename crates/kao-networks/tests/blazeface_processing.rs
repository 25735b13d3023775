//! BlazeFace pre- and post-processing against the golden data of
//! `reference/blazeface_ref.py` (TFLite runtime outputs on the 512² astronaut).

mod support;

use kao_image::RgbView;
use kao_networks::blazeface::processing::{BlazeFace, BlazeFaceConfig, Detection, Letterbox};
use support::{read_f32, read_json, read_rgb};

fn check_golden(key: &str, config: BlazeFaceConfig) {
    let bf = BlazeFace::new(config);
    let (rs, reg) = read_f32(&format!("{key}_regressors.npy"));
    let (cs, cls) = read_f32(&format!("{key}_classificators.npy"));
    let n = bf.anchors().len();
    assert_eq!((rs, cs), (vec![n, 16], vec![n]));
    let golden = &read_json("blazeface_reference.json")[key];
    assert_eq!(golden["n_anchors"].as_u64().unwrap() as usize, n);
    let raw = bf.decode(&reg, &cls).unwrap();
    assert_eq!(raw.len() as u64, golden["n_above_thresh"].as_u64().unwrap());

    // The golden input was the 512² image resized to the input size (no border).
    let lb = Letterbox::new(512, 512, bf.config().input_size).unwrap();
    assert_eq!(
        (lb.left, lb.top, lb.content_width),
        (0, 0, bf.config().input_size)
    );
    let dets = bf.postprocess(&reg, &cls, &lb).unwrap();
    let want = golden["detections_pixels"].as_array().unwrap();
    assert_eq!(dets.len(), want.len());
    for (d, w) in dets.iter().zip(want) {
        assert!((d.score as f64 - w["score"].as_f64().unwrap()).abs() < 1e-5);
        for (a, b) in d.bbox.iter().zip(w["box"].as_array().unwrap()) {
            assert!(
                (*a as f64 - b.as_f64().unwrap()).abs() < 1e-2,
                "{key}: box {:?} vs {}",
                d.bbox,
                w["box"]
            );
        }
        for (k, wk) in d.keypoints.iter().zip(w["kps"].as_array().unwrap()) {
            for (a, b) in k.iter().zip(wk.as_array().unwrap()) {
                assert!(
                    (*a as f64 - b.as_f64().unwrap()).abs() < 1e-2,
                    "{key}: keypoints"
                );
            }
        }
    }
}

#[test]
fn short_range_golden_detections() {
    check_golden("face_detection_short_range", BlazeFaceConfig::short_range());
}

#[test]
fn full_range_golden_detections() {
    check_golden("face_detection_full_range", BlazeFaceConfig::full_range());
}

#[test]
fn wrong_output_sizes_are_errors() {
    let bf = BlazeFace::new(BlazeFaceConfig::short_range());
    assert!(bf.decode(&[0.0; 16], &[0.0; 896]).is_err());
    assert!(bf.decode(&vec![0.0; 896 * 16], &[0.0; 895]).is_err());
    // NaN and huge raw scores do not panic.
    let mut cls = vec![f32::NAN; 896];
    cls[3] = 1e30;
    let dets = bf.decode(&vec![0.0; 896 * 16], &cls).unwrap();
    assert_eq!(dets.len(), 1);
    assert_eq!(dets[0].score, 1.0);
}

/// The pre-processing of the square astronaut is PIL's resize used to make the golden
/// input tensor, but for the order of the two passes: every value is PIL's or one level
/// (1/127.5) off (about one in nine is).
#[test]
fn square_frame_matches_golden_input() {
    let (w, h, rgb) = read_rgb("astronaut.npy");
    let frame = RgbView::new(w, h, &rgb).unwrap();
    let bf = BlazeFace::new(BlazeFaceConfig::short_range());
    let (tensor, lb) = bf.preprocess(&frame).unwrap();
    let (shape, golden) = read_f32("face_detection_short_range_input.npy");
    assert_eq!(shape, [128, 128, 3]);
    assert_eq!(lb, Letterbox::new(512, 512, 128).unwrap());
    let diffs: Vec<f32> = tensor
        .iter()
        .zip(&golden)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let worst = diffs.iter().copied().fold(0f32, f32::max);
    let off = diffs.iter().filter(|&&d| d > 0.0).count();
    eprintln!("{off} of {} values one level off PIL's", diffs.len());
    assert!(worst <= 1.0 / 127.5 + 1e-6, "{worst}");
    assert!(off * 6 < diffs.len(), "{off} values differ");
}

/// A bright square on a 640×360 frame lands where the letterbox says, and maps back.
#[test]
fn letterbox_round_trip_on_a_wide_frame() {
    let (w, h) = (640usize, 360usize);
    let mut rgb = vec![40u8; w * h * 3];
    let (x0, y0, side) = (400usize, 100usize, 80usize);
    for y in y0..y0 + side {
        for x in x0..x0 + side {
            rgb[(y * w + x) * 3..][..3].copy_from_slice(&[250, 250, 250]);
        }
    }
    let frame = RgbView::new(w, h, &rgb).unwrap();
    let bf = BlazeFace::new(BlazeFaceConfig::short_range());
    let (tensor, lb) = bf.preprocess(&frame).unwrap();
    assert_eq!(
        (lb.content_width, lb.content_height, lb.left, lb.top),
        (128, 72, 0, 28)
    );
    let size = 128;
    // Border rows are black (−1); content rows are not.
    assert!(tensor[..28 * size * 3].iter().all(|&v| v == -1.0));
    assert!(tensor[100 * size * 3..].iter().all(|&v| v == -1.0));
    assert!(
        tensor[28 * size * 3..29 * size * 3]
            .iter()
            .all(|&v| v > -1.0)
    );
    // The bright square's extent in the tensor (pixels above mid-grey).
    let (mut minx, mut miny, mut maxx, mut maxy) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..size {
        for x in 0..size {
            if tensor[(y * size + x) * 3] > 0.0 {
                (minx, miny, maxx, maxy) = (minx.min(x), miny.min(y), maxx.max(x), maxy.max(y));
            }
        }
    }
    let s = size as f32;
    let tl = lb.to_frame([minx as f32 / s, miny as f32 / s]);
    let br = lb.to_frame([(maxx + 1) as f32 / s, (maxy + 1) as f32 / s]);
    for (got, want) in [
        (tl[0], x0),
        (tl[1], y0),
        (br[0], x0 + side),
        (br[1], y0 + side),
    ] {
        assert!((got - want as f32).abs() <= 5.0, "{got} vs {want}");
    }
    for p in [[0.0, 0.0], [640.0, 360.0], [123.4, 301.7]] {
        let back = lb.to_frame(lb.to_tensor(p));
        assert!((back[0] - p[0]).abs() < 1e-3 && (back[1] - p[1]).abs() < 1e-3);
    }
    // A detection is mapped corner by corner.
    let d = Detection {
        score: 0.9,
        bbox: [0.5, 0.25, 0.75, 0.5],
        keypoints: [[0.5, 0.5]; 6],
    };
    let f = lb.detection_to_frame(&d);
    assert_eq!(
        f.bbox,
        [320.0, (32.0 - 28.0) * 5.0, 480.0, (64.0 - 28.0) * 5.0]
    );
}

#[test]
fn tiny_huge_and_thin_frames() {
    let bf = BlazeFace::new(BlazeFaceConfig::full_range());
    let one = RgbView::new(1, 1, &[255, 0, 0]).unwrap();
    let (t, lb) = bf.preprocess(&one).unwrap();
    assert_eq!((t.len(), lb.content_width), (192 * 192 * 3, 192));
    assert!(t.chunks_exact(3).all(|p| p == [1.0, -1.0, -1.0]));

    let thin = vec![128u8; 8000 * 3];
    let (t, lb) = bf
        .preprocess(&RgbView::new(8000, 1, &thin).unwrap())
        .unwrap();
    assert_eq!((lb.content_width, lb.content_height, lb.top), (192, 1, 95));
    assert_eq!(t.len(), 192 * 192 * 3);

    let empty = RgbView::new(0, 0, &[]).unwrap();
    assert!(bf.preprocess(&empty).is_err());

    let big = vec![7u8; 8000 * 8000 * 3];
    let (t, lb) = bf
        .preprocess(&RgbView::new(8000, 8000, &big).unwrap())
        .unwrap();
    assert_eq!(lb.content_width, 192);
    let v = 7.0 / 127.5 - 1.0;
    assert!(t.iter().all(|&x| x == v));
}
