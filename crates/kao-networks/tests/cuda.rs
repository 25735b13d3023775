//! The same networks on burn's CUDA backend against dlib's golden outputs and the CPU path.
//! Built only with `--features cuda` and run on a machine with an NVIDIA GPU. The GPU may
//! compute f32 convolutions with TF32 tensor cores, so the tolerance is models.md's 1e-3
//! for GPUs instead of the CPU's 1e-4.
#![cfg(feature = "cuda")]

mod support;

use kao_image::RgbImage;
use kao_networks::{Device, FaceDetector, Range, ResNetEmbedder};
use support::{max_abs_diff, model_path, read_f32, read_rgb};

const GPU_TOL: f32 = 1e-3;

fn rgb(name: &str) -> RgbImage {
    let (width, height, data) = read_rgb(name);
    RgbImage {
        width,
        height,
        data,
    }
}

#[test]
fn resnet_on_cuda_matches_dlib() {
    let model = model_path("dlib_face_recognition_resnet_model_v1.dat");
    let chip = rgb("chip150.npy");
    let (_, want) = read_f32("embedding128.npy");
    let gpu = ResNetEmbedder::load(&model, Device::Cuda(0)).unwrap();
    let views = vec![chip.view(); 40];
    for (i, got) in gpu.embed(&views).unwrap().iter().enumerate() {
        let diff = max_abs_diff(got, &want);
        assert!(diff <= GPU_TOL, "chip {i}: max |diff| {diff} from dlib");
    }
}

#[test]
fn detectors_on_cuda_find_the_cpu_boxes() {
    let image = rgb("astronaut.npy");
    let cases = [
        ("face_detection_short_range.tflite", Some(Range::Short)),
        ("face_detection_full_range.tflite", Some(Range::Full)),
        ("mmod_human_face_detector.dat", None),
    ];
    for (file, range) in cases {
        let path = model_path(file);
        let make = |device| match range {
            Some(r) => FaceDetector::blazeface(&path, r, device).unwrap(),
            None => FaceDetector::mmod(&path, device, 0).unwrap(),
        };
        let cpu = make(Device::cpu()).detect(&image.view()).unwrap();
        let gpu = make(Device::Cuda(0)).detect(&image.view()).unwrap();
        assert_eq!(cpu.len(), gpu.len(), "{file}");
        for (c, g) in cpu.iter().zip(&gpu) {
            assert!(
                max_abs_diff(&c.bbox, &g.bbox) <= 0.5,
                "{file}: box {:?} vs CPU {:?}",
                g.bbox,
                c.bbox
            );
            assert!(
                (c.score - g.score).abs() <= 1e-2,
                "{file}: score {} vs CPU {}",
                g.score,
                c.score
            );
        }
    }
}
