//! The ResNet embedder against dlib's own outputs (`tests/data/`, copied from
//! `shared/golden/astronaut/`): every intermediate tensor on the astronaut chip and the
//! final embeddings, plus load-time errors for files that do not match the architecture.
//! The native executor's golden tests run at every [`CpuLevel`] this CPU has, scalar
//! included.

mod support;

use std::sync::OnceLock;

use burn_tensor::{Tensor, TensorData};
use kao_image::{RgbImage, get_face_chip};
use kao_model_files::dat::{Layer, ResnetModel};
use kao_networks::{CpuBackend, CpuLevel, Device, EMBEDDING_LEN, Error, ResNet, ResNetEmbedder};
use support::{golden_landmarks, max_abs_diff, model_path, read_f32, read_rgb};

const MODEL: &str = "dlib_face_recognition_resnet_model_v1.dat";
const TOL: f32 = 1e-4;

fn model() -> &'static ResnetModel {
    static MODEL_ONCE: OnceLock<ResnetModel> = OnceLock::new();
    MODEL_ONCE.get_or_init(|| ResnetModel::load(model_path(MODEL)).unwrap())
}

fn rgb(name: &str) -> RgbImage {
    let (width, height, data) = read_rgb(name);
    RgbImage {
        width,
        height,
        data,
    }
}

fn values<const D: usize>(t: &Tensor<CpuBackend, D>) -> (Vec<usize>, Vec<f32>) {
    (t.dims().to_vec(), t.to_data().into_vec().unwrap())
}

/// Checks one tapped stage (batch of 1) against a golden tensor without the batch axis.
fn check_stage<const D: usize>(stage: &str, t: &Tensor<CpuBackend, D>, golden: &str) -> f32 {
    let (shape, got) = values(t);
    let (want_shape, want) = read_f32(golden);
    assert_eq!(shape[0], 1, "{stage}: batch");
    assert_eq!(shape[1..], want_shape[..], "{stage}: shape");
    let diff = max_abs_diff(&got, &want);
    assert!(diff <= TOL, "{stage} vs {golden}: max |diff| {diff}");
    diff
}

#[test]
fn every_stage_matches_dlib_on_the_chip() {
    let net = ResNet::<CpuBackend>::from_model(model(), &Default::default()).unwrap();
    let chip = rgb("chip150.npy");
    let stages = net.forward_stages(net.input(&[chip.view()]).unwrap());
    let mut report: Vec<(String, f32)> = vec![
        (
            "input".into(),
            check_stage("input", &stages.input, "00_input_normalized.npy"),
        ),
        (
            "stem".into(),
            check_stage("stem", &stages.stem, "02_maxpool.npy"),
        ),
    ];
    assert_eq!(stages.blocks.len(), 14);
    for (i, block) in stages.blocks.iter().enumerate() {
        let golden = format!("{:02}_resblock{:02}_out.npy", i + 3, i + 1);
        report.push((
            format!("block {}", i + 1),
            check_stage(&golden, block, &golden),
        ));
    }
    report.push((
        "pooled".into(),
        check_stage("pooled", &stages.pooled, "90_global_avgpool.npy"),
    ));
    report.push((
        "embedding".into(),
        check_stage("embedding", &stages.embedding, "99_embedding.npy"),
    ));
    eprintln!("max |diff| per stage: {report:?}");
}

fn embedder() -> ResNetEmbedder {
    ResNetEmbedder::from_model(model(), Device::cpu()).unwrap()
}

/// The native embedder at each CPU level this machine has (built at that level, not
/// through `KAO_CPU`: the tests run side by side in one process).
fn embedders_at_every_level() -> Vec<(CpuLevel, ResNetEmbedder)> {
    CpuLevel::available()
        .into_iter()
        .map(|level| {
            (
                level,
                ResNetEmbedder::from_model_at(model(), level).unwrap(),
            )
        })
        .collect()
}

#[test]
fn chip_embedding_matches_dlib() {
    let chip = rgb("chip150.npy");
    let (_, want) = read_f32("embedding128.npy");
    for (level, embedder) in embedders_at_every_level() {
        let got = embedder.embed(&[chip.view()]).unwrap();
        assert_eq!(got.len(), 1);
        let diff = max_abs_diff(&got[0], &want);
        eprintln!("{level}: max |diff| {diff:.2e}");
        assert!(diff <= TOL, "{level}: max |diff| {diff}");
    }
}

#[test]
fn image_and_landmarks_embedding_matches_dlib() {
    let image = rgb("astronaut.npy");
    let chip = get_face_chip(&image.view(), &golden_landmarks(), 150, 0.25).unwrap();
    let (_, want) = read_f32("embedding128.npy");
    for (level, embedder) in embedders_at_every_level() {
        let got = embedder.embed(&[chip.view()]).unwrap();
        let diff = max_abs_diff(&got[0], &want);
        eprintln!("{level}: max |diff| {diff:.2e}");
        assert!(diff <= TOL, "{level}: max |diff| {diff}");
    }
}

#[test]
fn every_level_gives_the_batch_results() {
    // A batch takes other paths than one chip at the scalar level (im2col over several
    // images): every level must give each chip what the widest gives it alone.
    let chip = rgb("chip150.npy");
    let mut chips = vec![chip.clone()];
    for k in 1..4u8 {
        let mut c = chip.clone();
        c.data.iter_mut().for_each(|p| *p = p.wrapping_add(k * 37));
        chips.push(c);
    }
    let views: Vec<_> = chips.iter().map(|c| c.view()).collect();
    let widest = ResNetEmbedder::from_model_at(model(), CpuLevel::detect()).unwrap();
    let alone: Vec<_> = views
        .iter()
        .map(|v| widest.embed(std::slice::from_ref(v)).unwrap()[0])
        .collect();
    for (level, embedder) in embedders_at_every_level() {
        let batch = embedder.embed(&views).unwrap();
        for (i, (a, b)) in batch.iter().zip(&alone).enumerate() {
            let diff = max_abs_diff(a, b);
            assert!(diff <= 1e-5, "{level}, chip {i}: max |diff| {diff}");
        }
    }
}

#[test]
fn batches_of_any_size_give_the_single_chip_results() {
    let chip = rgb("chip150.npy");
    let mut other = chip.clone();
    other.data.iter_mut().for_each(|p| *p = p.wrapping_mul(7));
    let single = embedder().embed(&[chip.view()]).unwrap()[0];
    let other_single = embedder().embed(&[other.view()]).unwrap()[0];
    assert!(max_abs_diff(&single, &other_single) > 0.1);

    // More than one chunk: MAX_BATCH + 1 chips.
    let n = ResNetEmbedder::MAX_BATCH + 1;
    let views: Vec<_> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                chip.view()
            } else {
                other.view()
            }
        })
        .collect();
    let batch = embedder().embed(&views).unwrap();
    assert_eq!(batch.len(), n);
    for (i, e) in batch.iter().enumerate() {
        let want = if i % 2 == 0 { &single } else { &other_single };
        assert!(max_abs_diff(e, want) <= 1e-5, "chip {i}");
    }
    assert!(embedder().embed(&[]).unwrap().is_empty());
}

#[test]
fn native_and_burn_agree_on_a_batch() {
    // The default CPU embedder runs NativeResNet; the same file on burn-flex must give the
    // same embeddings, image by image, for a batch that spans several im2col chunks.
    let chip = rgb("chip150.npy");
    let mut chips = vec![chip.clone()];
    for k in 1..6u8 {
        let mut c = chip.clone();
        c.data.iter_mut().for_each(|p| *p = p.wrapping_add(k * 29));
        chips.push(c);
    }
    let views: Vec<_> = chips.iter().map(|c| c.view()).collect();
    let native = embedder().embed(&views).unwrap();
    let burn = ResNetEmbedder::load_on_burn(model_path(MODEL), Device::cpu())
        .unwrap()
        .embed(&views)
        .unwrap();
    for (i, (a, b)) in native.iter().zip(&burn).enumerate() {
        let diff = max_abs_diff(a, b);
        assert!(diff <= 1e-5, "chip {i}: max |diff| {diff}");
    }
    let native = kao_networks::NativeResNet::from_model(model()).unwrap();
    assert_eq!(
        native.embed(&views[..1]).unwrap()[0],
        embedder().embed(&views[..1]).unwrap()[0]
    );
}

#[test]
fn wrong_chip_size_is_an_error() {
    let small = RgbImage::new(149, 150);
    let chip = rgb("chip150.npy");
    let err = embedder().embed(&[chip.view(), small.view()]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ImageSize {
                index: 1,
                width: 149,
                height: 150
            }
        ),
        "{err}"
    );
}

/// Loads a modified copy of the model; it must fail with an error naming the problem.
fn load_error(edit: impl FnOnce(&mut ResnetModel)) -> String {
    let mut m = model().clone();
    edit(&mut m);
    let err = ResNet::<CpuBackend>::from_model(&m, &Default::default()).unwrap_err();
    err.to_string()
}

#[test]
fn models_that_do_not_match_are_errors_not_panics() {
    // A conv with the wrong number of filters (the first conv of the first block).
    let msg = load_error(|m| {
        let Layer::Con(c) = &mut m.layers[5] else {
            panic!("layer 5 is not a con")
        };
        c.num_filters = 16;
    });
    assert!(
        msg.contains("model layer 5: expected con 32x32x3x3"),
        "{msg}"
    );

    // Filter values that do not fill the declared shape.
    let msg = load_error(|m| {
        let Layer::Con(c) = &mut m.layers[0] else {
            panic!("layer 0 is not a con")
        };
        c.filters.pop();
    });
    assert!(msg.contains("model layer 0"), "{msg}");

    // An affine in per-element mode.
    let msg = load_error(|m| {
        let Layer::Affine(a) = &mut m.layers[1] else {
            panic!("layer 1 is not an affine")
        };
        a.mode = kao_model_files::dat::AffineMode::Fc;
    });
    assert!(msg.contains("model layer 1"), "{msg}");

    // A strided stem conv padded like a stride-1 one.
    let msg = load_error(|m| {
        let Layer::Con(c) = &mut m.layers[0] else {
            panic!("layer 0 is not a con")
        };
        (c.pad_y, c.pad_x) = (3, 3);
    });
    assert!(msg.contains("stride 2 pad 0"), "{msg}");

    // Layers missing, an extra layer, a swapped pair.
    let msg = load_error(|m| m.layers.truncate(60));
    assert!(msg.contains("found end of the layer list"), "{msg}");
    let msg = load_error(|m| m.layers.push(Layer::Relu { disabled: false }));
    assert!(
        msg.contains("expected end of the network, found relu"),
        "{msg}"
    );
    let msg = load_error(|m| m.layers.swap(2, 3));
    assert!(
        msg.contains("model layer 2: expected relu, found max_pool"),
        "{msg}"
    );

    // A different input size.
    let msg = load_error(|m| m.input.rows = 151);
    assert!(msg.contains("input 150x150"), "{msg}");

    // A truncated file is a parse error from kao-model-files.
    let bytes = std::fs::read(model_path(MODEL)).unwrap();
    let dir = std::env::temp_dir().join(format!("kao-networks-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("truncated.dat");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = ResNetEmbedder::load(&path, Device::cpu()).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(err, Error::Dat(_)), "{err}");
}

#[test]
fn forward_accepts_a_prebuilt_input_tensor() {
    // The generic API: any NCHW input, here all zeros (pixel == mean).
    let net = ResNet::<CpuBackend>::from_model(model(), &Default::default()).unwrap();
    let x = Tensor::from_data(
        TensorData::new(vec![0f32; 2 * 3 * 150 * 150], [2, 3, 150, 150]),
        net.device(),
    );
    let y = net.forward(x);
    assert_eq!(y.dims(), [2, EMBEDDING_LEN]);
}
