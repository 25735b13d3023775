//! Reads the two BlazeFace models and checks them against the op inventory of
//! docs/models.md §3 (counts from `reference/tflite_ops.py` / `tflite_opts.py`).

mod support;

use kao_model_files::tflite::{Activation, Model, OpKind, OpOptions, Padding};
use support::model_path;

const SHORT: &str = "face_detection_short_range.tflite";
const FULL: &str = "face_detection_full_range.tflite";

fn load(name: &str) -> Model {
    Model::load(model_path(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn shape(m: &Model, idx: usize) -> Vec<usize> {
    m.tensors[idx].shape.clone()
}

#[test]
fn short_range_inventory() {
    let m = load(SHORT);
    assert_eq!(m.version, 3);
    let counts = [
        (OpKind::Conv2d, 21),
        (OpKind::DepthwiseConv2d, 16),
        (OpKind::MaxPool2d, 3),
        (OpKind::Pad, 11),
        (OpKind::Add, 16),
        (OpKind::Relu, 17),
        (OpKind::Reshape, 4),
        (OpKind::Concatenation, 2),
        (OpKind::Dequantize, 74),
    ];
    for (kind, n) in counts {
        assert_eq!(m.op_count(kind), n, "{kind:?}");
    }
    assert_eq!(m.operators.len(), counts.iter().map(|c| c.1).sum::<usize>());
    assert_eq!(m.compute_ops().count(), m.operators.len() - 74);
    assert_eq!(m.inputs.len(), 1);
    assert_eq!(shape(&m, m.inputs[0]), [1, 128, 128, 3]);
    let outs: Vec<_> = m
        .outputs
        .iter()
        .map(|&o| (m.tensors[o].name.as_str(), shape(&m, o)))
        .collect();
    assert_eq!(
        outs,
        [
            ("regressors", vec![1, 896, 16]),
            ("classificators", vec![1, 896, 1])
        ]
    );
    for op in &m.operators {
        if op.kind == OpKind::Concatenation {
            assert!(matches!(
                op.options,
                OpOptions::Concatenation {
                    axis: 1,
                    activation: Activation::None
                }
            ));
        }
    }
}

#[test]
fn full_range_inventory() {
    let m = load(FULL);
    let counts = [
        (OpKind::Conv2d, 49),
        (OpKind::DepthwiseConv2d, 40),
        (OpKind::MaxPool2d, 4),
        (OpKind::Pad, 8),
        (OpKind::Add, 23),
        (OpKind::Relu, 47),
        (OpKind::Reshape, 2),
        (OpKind::ResizeBilinear, 3),
        (OpKind::Dequantize, 178),
        (OpKind::Concatenation, 0),
    ];
    for (kind, n) in counts {
        assert_eq!(m.op_count(kind), n, "{kind:?}");
    }
    assert_eq!(m.operators.len(), counts.iter().map(|c| c.1).sum::<usize>());
    assert_eq!(shape(&m, m.inputs[0]), [1, 192, 192, 3]);
    assert_eq!(shape(&m, m.outputs[0]), [1, 2304, 16]);
    assert_eq!(shape(&m, m.outputs[1]), [1, 2304, 1]);
    for op in &m.operators {
        if op.kind == OpKind::ResizeBilinear {
            assert_eq!(
                op.options,
                OpOptions::ResizeBilinear {
                    align_corners: false,
                    half_pixel_centers: true
                }
            );
        }
    }
}

/// Conv options, weight layouts and the float16 weights (sums from the `tflite` Python
/// package reading the same buffers).
#[test]
fn conv_options_and_weights() {
    for (name, first_kernel, first_sum, first4, all_sum) in [
        (
            SHORT,
            5,
            -3.608_857_4,
            [0.046_112_06, 0.033_569_336, 0.000_649_929, 0.030_700_684],
            -727.425_816,
        ),
        (
            FULL,
            3,
            -5.084_251,
            [0.192_871_1, -0.318_359_4, 0.108_703_6, 0.442_626_95],
            -15.739_921,
        ),
    ] {
        let m = load(name);
        let mut total = 0f64;
        for op in &m.operators {
            if op.kind == OpKind::Dequantize {
                let w = m.constant_f32(op.outputs[0]).unwrap().expect("constant");
                total += w.data.iter().map(|&v| v as f64).sum::<f64>();
            }
        }
        assert!((total - all_sum).abs() < 1e-3, "{name}: {total}");

        let mut kinds = Vec::new();
        for op in m.compute_ops() {
            match (&op.kind, &op.options) {
                (OpKind::Conv2d, OpOptions::Conv(o)) => {
                    let w = m.constant_f32(op.inputs[1].unwrap()).unwrap().unwrap();
                    let b = m.constant_f32(op.inputs[2].unwrap()).unwrap().unwrap();
                    let input_c = *shape(&m, op.inputs[0].unwrap()).last().unwrap();
                    assert_eq!(w.shape.len(), 4);
                    assert_eq!(w.shape[3], input_c, "OHWI");
                    assert_eq!(b.shape, [w.shape[0]]);
                    assert_eq!(w.data.len(), w.shape.iter().product::<usize>());
                    assert_eq!((o.dilation_h, o.dilation_w, o.depth_multiplier), (1, 1, 1));
                    assert_eq!(o.activation, Activation::None);
                    if kinds.is_empty() {
                        assert_eq!((w.shape[1], w.shape[2]), (first_kernel, first_kernel));
                        assert_eq!((o.stride_h, o.stride_w, o.padding), (2, 2, Padding::Same));
                        let s: f64 = w.data.iter().map(|&v| v as f64).sum();
                        assert!((s - first_sum).abs() < 1e-4, "{s}");
                        for (a, b) in w.data.iter().zip(first4) {
                            assert!((a - b).abs() < 1e-6, "{a} {b}");
                        }
                    } else {
                        assert_eq!((w.shape[1], w.shape[2]), (1, 1));
                    }
                    kinds.push("conv");
                }
                (OpKind::DepthwiseConv2d, OpOptions::Conv(o)) => {
                    let w = m.constant_f32(op.inputs[1].unwrap()).unwrap().unwrap();
                    let c = *shape(&m, op.inputs[0].unwrap()).last().unwrap();
                    assert_eq!(w.shape, [1, 3, 3, c]);
                    assert_eq!(o.depth_multiplier, 1);
                    assert_eq!(o.padding, Padding::Same);
                    assert!(o.stride_h == o.stride_w && (1..=2).contains(&o.stride_h));
                    kinds.push("dw");
                }
                (OpKind::MaxPool2d, OpOptions::Pool(p)) => {
                    assert_eq!(
                        (p.filter_h, p.filter_w, p.stride_h, p.stride_w),
                        (2, 2, 2, 2)
                    );
                    assert_eq!(p.padding, Padding::Same);
                }
                (OpKind::Pad, _) => {
                    let pads = m.constant_i32(op.inputs[1].unwrap()).unwrap().unwrap();
                    assert_eq!(pads.len(), 8);
                    assert!(pads[..7].iter().all(|&p| p == 0) && pads[7] > 0, "{pads:?}");
                }
                (OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::MaxPool2d, o) => {
                    panic!("unexpected options {o:?}")
                }
                _ => {}
            }
        }
        assert!(kinds.len() > 30);
    }
}

/// Truncated files always fail with an error naming the file; corrupted bytes never
/// panic.
#[test]
fn corrupt_files_error_without_panicking() {
    let path = model_path(SHORT);
    let data = std::fs::read(&path).unwrap();
    let mut cut = 0;
    while cut < data.len() - 16 {
        assert!(
            Model::from_bytes(&data[..cut]).is_err(),
            "cut at {cut} parsed"
        );
        cut += 997;
    }
    let dir = std::env::temp_dir().join(format!("kao-model-files-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cut_file = dir.join("cut.tflite");
    std::fs::write(&cut_file, &data[..data.len() / 2]).unwrap();
    let err = Model::load(&cut_file).unwrap_err().to_string();
    assert!(
        err.contains("cut.tflite")
            && (err.contains("outside the file") || err.contains("past the end")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // Flip bytes all over the structural part (and a few in the weights).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut errors = 0;
    for i in 0..3000 {
        let mut bad = data.clone();
        let flips = 1 + i % 4;
        for _ in 0..flips {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state as usize) % bad.len();
            bad[at] ^= (state >> 32) as u8 | 1;
        }
        if let Ok(m) = Model::from_bytes(&bad) {
            for t in 0..m.tensors.len() {
                let _ = m.constant_f32(t);
                let _ = m.constant_i32(t);
            }
        } else {
            errors += 1;
        }
    }
    assert!(errors > 0);
}
