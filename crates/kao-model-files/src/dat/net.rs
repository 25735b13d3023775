//! Layer records of dlib DNN model files (`dlib/dnn/core.h`, `layers.h`, `input.h`,
//! `loss.h`): the face-recognition ResNet and the MMOD face detector.
//!
//! A serialized net is nested: every `add_layer` / `add_tag_layer` / `add_skip_layer`
//! wrapper writes its version, then its sub-network, then its own details. So the file
//! holds the loss record, a prefix of wrapper versions (outermost first), the input
//! record, and then the layer details from the input side to the output side. The
//! nesting is fixed by the C++ net type, so each model has a `Spec` list that the
//! parser checks the file against, record by record.

use std::path::Path;

use super::{DatError, DatErrorKind, Reader, Tensor, read_file};

/// Convolution (`con_4` / `con_5` / `con_6`); applied as cross-correlation.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    /// Number of output channels.
    pub num_filters: usize,
    /// Number of input channels.
    pub in_channels: usize,
    /// Kernel height.
    pub kernel_rows: usize,
    /// Kernel width.
    pub kernel_cols: usize,
    /// Vertical stride.
    pub stride_y: usize,
    /// Horizontal stride.
    pub stride_x: usize,
    /// Zero padding above and below.
    pub pad_y: usize,
    /// Zero padding left and right.
    pub pad_x: usize,
    /// Filters, OIHW: `[num_filters][in_channels][kernel_rows][kernel_cols]`.
    pub filters: Vec<f32>,
    /// One bias per filter; empty when the layer has no bias.
    pub bias: Vec<f32>,
    /// `con_6` only: a relu fused into the layer.
    pub fused_relu: bool,
}

/// Whether an [`Affine`] scales per channel or per element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffineMode {
    /// `CONV_MODE`: one γ/β per channel.
    Conv,
    /// `FC_MODE`: one γ/β per element of a sample.
    Fc,
}

/// Affine layer `y = γ·x + β` (`affine_`, `affine_2`, or a `bn_con2`/`bn_fc2` batch
/// norm converted at load time as dlib's `affine_(const bn_&)` does).
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    /// Per-channel (or per-element) scale.
    pub gamma: Vec<f32>,
    /// Per-channel (or per-element) offset.
    pub beta: Vec<f32>,
    /// What γ and β index.
    pub mode: AffineMode,
    /// `affine_2` only: the layer is an identity.
    pub disabled: bool,
}

/// Max or average pooling window (`max_pool_2` / `avg_pool_2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// Window height; 0 (with `cols` 0) pools over the whole input.
    pub rows: usize,
    /// Window width; 0 (with `rows` 0) pools over the whole input.
    pub cols: usize,
    /// Vertical stride.
    pub stride_y: usize,
    /// Horizontal stride.
    pub stride_x: usize,
    /// Padding above and below.
    pub pad_y: usize,
    /// Padding left and right.
    pub pad_x: usize,
}

impl Pool {
    /// True for `avg_pool_everything` / `max_pool_everything` (window 0×0).
    pub fn is_global(&self) -> bool {
        self.rows == 0 && self.cols == 0
    }
}

/// Fully connected layer (`fc_2` / `fc_3`): `y = x·W (+ b)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fc {
    /// Input length.
    pub num_inputs: usize,
    /// Output length.
    pub num_outputs: usize,
    /// Weights, row-major `[num_inputs][num_outputs]`.
    pub weights: Vec<f32>,
    /// One bias per output; empty for `fc_no_bias`.
    pub bias: Vec<f32>,
}

/// One entry of a net, in order from the input side to the output side.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// Convolution.
    Con(Conv),
    /// Per-channel affine transform (folded batch norm).
    Affine(Affine),
    /// `max(x, 0)`; `disabled` (from `relu_2`) makes it an identity.
    Relu {
        /// The layer is an identity.
        disabled: bool,
    },
    /// Max pooling.
    MaxPool(Pool),
    /// Average pooling.
    AvgPool(Pool),
    /// `add_prev<tagN>`: adds the output saved by tag `tag` to the current output.
    /// dlib zero-pads mismatched shapes (output = max of each dimension, top-left aligned).
    AddPrev {
        /// Id of the tag whose output is added.
        tag: u32,
    },
    /// Fully connected layer.
    Fc(Fc),
    /// `tagN`: remembers the current output under id `N`; passes it through.
    Tag(u32),
    /// `skipN`: replaces the current output with the one remembered by tag `N`.
    Skip(u32),
}

impl Layer {
    /// Number of learned parameters stored for this layer.
    pub fn param_count(&self) -> usize {
        match self {
            Layer::Con(c) => c.filters.len() + c.bias.len(),
            Layer::Affine(a) => a.gamma.len() + a.beta.len(),
            Layer::Fc(f) => f.weights.len() + f.bias.len(),
            _ => 0,
        }
    }
}

/// Input record `input_rgb_image_sized`: fixed-size RGB input, `x = (p − mean)/256`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRgbSized {
    /// Means subtracted from R, G, B.
    pub mean: [f32; 3],
    /// Required input height.
    pub rows: usize,
    /// Required input width.
    pub cols: usize,
}

/// Input record `input_rgb_image_pyramid` / `…pyramid2`: RGB input tiled as an image
/// pyramid, `x = (p − mean)/256`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRgbPyramid {
    /// Means subtracted from R, G, B.
    pub mean: [f32; 3],
    /// Padding between pyramid levels (dlib's default 10 for the old record).
    pub pyramid_padding: usize,
    /// Padding around the tiled canvas (dlib's default 11 for the old record).
    pub outer_padding: usize,
}

/// Loss record `loss_metric_2` of the face-recognition net.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossMetric {
    /// Training margin.
    pub margin: f32,
    /// Distance below which two embeddings are the same person.
    pub dist_thresh: f32,
}

/// One MMOD detector window.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorWindow {
    /// Window width in pixels.
    pub width: u64,
    /// Window height in pixels.
    pub height: u64,
    /// Label of the objects it finds (empty when unlabelled).
    pub label: String,
}

/// dlib's `test_box_overlap`: two boxes overlap if IoU exceeds `iou_thresh` or either
/// box is covered by more than `percent_covered_thresh`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxOverlap {
    /// Intersection-over-union threshold.
    pub iou_thresh: f64,
    /// Covered-fraction threshold.
    pub percent_covered_thresh: f64,
}

/// `mmod_options` stored in the `loss_mmod_` record.
#[derive(Debug, Clone, PartialEq)]
pub struct MmodOptions {
    /// Sliding windows (one for the face detector: 80×80).
    pub detector_windows: Vec<DetectorWindow>,
    /// Training loss per false alarm.
    pub loss_per_false_alarm: f64,
    /// Training loss per missed target.
    pub loss_per_missed_target: f64,
    /// IoU needed to match a truth box in training.
    pub truth_match_iou_threshold: f64,
    /// Non-maximum suppression test.
    pub overlaps_nms: BoxOverlap,
    /// Test for boxes ignored in training.
    pub overlaps_ignore: BoxOverlap,
    /// Whether the input is an image pyramid (always true before options version 3).
    pub assume_image_pyramid: bool,
    /// Bounding-box regression λ, when regression is used (options version 4).
    pub bbr_lambda: Option<f64>,
}

/// The parsed `dlib_face_recognition_resnet_model_v1.dat`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResnetModel {
    /// Input record (150×150 RGB, means).
    pub input: InputRgbSized,
    /// Layers, tags and skips from the input side to the output side (130 entries).
    pub layers: Vec<Layer>,
    /// Loss record.
    pub loss: LossMetric,
}

/// The parsed `mmod_human_face_detector.dat`.
#[derive(Debug, Clone, PartialEq)]
pub struct MmodModel {
    /// Input record (pyramid paddings, means).
    pub input: InputRgbPyramid,
    /// Layers from the input side to the output side (19 entries).
    pub layers: Vec<Layer>,
    /// Loss options (detector window, NMS thresholds).
    pub loss: MmodOptions,
}

impl ResnetModel {
    /// Reads and parses the model file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DatError> {
        let path = path.as_ref();
        Self::parse(&read_file(path)?, Some(&path.display().to_string()))
    }

    /// Parses the model from its bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Self, DatError> {
        Self::parse(data, None)
    }

    fn parse(data: &[u8], file: Option<&str>) -> Result<Self, DatError> {
        let mut r = Reader::new(data, file);
        r.set_record("loss layer");
        read_version(&mut r, &[1], "add_loss_layer")?;
        expect_string(&mut r, &["loss_metric_2"])?;
        let loss = LossMetric {
            margin: r.f32()?,
            dist_thresh: r.f32()?,
        };
        let (input, layers) = parse_layers(&mut r, &resnet_spec(), |r| {
            expect_string(r, &["input_rgb_image_sized"])?;
            let mean = [r.f32()?, r.f32()?, r.f32()?];
            Ok(InputRgbSized {
                mean,
                rows: r.size(8, usize::MAX)?,
                cols: r.size(8, usize::MAX)?,
            })
        })?;
        r.expect_end()?;
        Ok(ResnetModel {
            input,
            layers,
            loss,
        })
    }

    /// Total number of learned parameters (5,614,592 for the dlib file).
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(Layer::param_count).sum()
    }
}

impl MmodModel {
    /// Reads and parses the model file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DatError> {
        let path = path.as_ref();
        Self::parse(&read_file(path)?, Some(&path.display().to_string()))
    }

    /// Parses the model from its bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Self, DatError> {
        Self::parse(data, None)
    }

    fn parse(data: &[u8], file: Option<&str>) -> Result<Self, DatError> {
        let mut r = Reader::new(data, file);
        r.set_record("loss layer");
        read_version(&mut r, &[1], "add_loss_layer")?;
        expect_string(&mut r, &["loss_mmod_"])?;
        let loss = parse_mmod_options(&mut r)?;
        let (input, layers) = parse_layers(&mut r, &mmod_spec(), |r| {
            let kind = expect_string(r, &["input_rgb_image_pyramid", "input_rgb_image_pyramid2"])?;
            let mean = [r.f32()?, r.f32()?, r.f32()?];
            let (pyramid_padding, outer_padding) = if kind == "input_rgb_image_pyramid2" {
                (r.size(8, usize::MAX)?, r.size(8, usize::MAX)?)
            } else {
                // The old record has no padding fields; dlib then uses these defaults.
                (10, 11)
            };
            Ok(InputRgbPyramid {
                mean,
                pyramid_padding,
                outer_padding,
            })
        })?;
        r.expect_end()?;
        Ok(MmodModel {
            input,
            layers,
            loss,
        })
    }

    /// Total number of learned parameters (181,141 for the dlib file).
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(Layer::param_count).sum()
    }
}

/// What the C++ net type puts at one nesting level, innermost (input side) first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// An `add_layer` whose details must be of this kind.
    Layer(Kind),
    /// `add_tag_layer<N>`.
    Tag(u32),
    /// `add_skip_layer<tagN>`.
    Skip(u32),
}

/// The layer kind an `add_layer` must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Con,
    Affine,
    Relu,
    MaxPool,
    AvgPool,
    AddPrev(u32),
    Fc,
}

/// `dlib_face_recognition_resnet_model_v1`'s net type (`face_recognition.cpp`).
fn resnet_spec() -> Vec<Spec> {
    use Kind::*;
    use Spec::{Layer as L, Skip, Tag};
    let block = [L(Con), L(Affine), L(Relu), L(Con), L(Affine)];
    let mut s = vec![L(Con), L(Affine), L(Relu), L(MaxPool)];
    let ares = |s: &mut Vec<Spec>| {
        s.push(Tag(1));
        s.extend(block);
        s.extend([L(AddPrev(1)), L(Relu)]);
    };
    let ares_down = |s: &mut Vec<Spec>| {
        s.push(Tag(1));
        s.extend(block);
        s.extend([Tag(2), Skip(1), L(AvgPool), L(AddPrev(2)), L(Relu)]);
    };
    for _ in 0..3 {
        ares(&mut s);
    }
    for repeats in [3, 2, 2] {
        ares_down(&mut s);
        for _ in 0..repeats {
            ares(&mut s);
        }
    }
    ares_down(&mut s);
    s.extend([L(AvgPool), L(Fc)]);
    s
}

/// `mmod_human_face_detector`'s net type (`cnn_face_detector.cpp`): three strided
/// con5d/bn/relu, three con5/bn/relu, and a 9×9 con.
fn mmod_spec() -> Vec<Spec> {
    let unit = [
        Spec::Layer(Kind::Con),
        Spec::Layer(Kind::Affine),
        Spec::Layer(Kind::Relu),
    ];
    let mut s: Vec<Spec> = unit.iter().copied().cycle().take(18).collect();
    s.push(Spec::Layer(Kind::Con));
    s
}

/// Reads an `int` version and checks it is one of `allowed`.
fn read_version(r: &mut Reader<'_>, allowed: &[i32], what: &str) -> Result<i32, DatError> {
    let start = r.position();
    let v = r.i32()?;
    if !allowed.contains(&v) {
        let kind = DatErrorKind::BadVersion {
            found: v.to_string(),
            expected: format!("{what} version {allowed:?}"),
        };
        return Err(r.error_at(start, kind));
    }
    Ok(v)
}

/// Reads a version string and checks it is one of `allowed`.
fn expect_string(r: &mut Reader<'_>, allowed: &[&str]) -> Result<String, DatError> {
    let start = r.position();
    let s = r.string()?;
    if !allowed.contains(&s.as_str()) {
        let kind = DatErrorKind::BadVersion {
            found: format!("{s:?}"),
            expected: format!("{allowed:?}"),
        };
        return Err(r.error_at(start, kind));
    }
    Ok(s)
}

/// Parses the wrapper-version prefix, the input record (via `input`) and every layer
/// of `spec`, returning the layers in input-to-output order.
fn parse_layers<I>(
    r: &mut Reader<'_>,
    spec: &[Spec],
    input: impl FnOnce(&mut Reader<'_>) -> Result<I, DatError>,
) -> Result<(I, Vec<Layer>), DatError> {
    // Wrapper versions, written outermost first.
    let mut versions = vec![0; spec.len()];
    for (i, s) in spec.iter().enumerate().rev() {
        r.set_record(format!("version of entry {i}"));
        versions[i] = match s {
            // The add_layer that wraps the input layer is a specialisation (v2 or v3).
            Spec::Layer(_) if i == 0 => read_version(r, &[2, 3], "input add_layer")?,
            Spec::Layer(_) => read_version(r, &[1, 2], "add_layer")?,
            Spec::Tag(_) => read_version(r, &[1], "add_tag_layer")?,
            Spec::Skip(_) => read_version(r, &[1], "add_skip_layer")?,
        };
    }
    r.set_record("input layer");
    let input = input(r)?;
    let mut layers = Vec::with_capacity(spec.len());
    for (i, (s, &version)) in spec.iter().zip(&versions).enumerate() {
        match *s {
            Spec::Tag(id) => layers.push(Layer::Tag(id)),
            Spec::Skip(id) => layers.push(Layer::Skip(id)),
            Spec::Layer(kind) => {
                r.set_record(format!("layer {i} ({kind:?})"));
                layers.push(parse_layer(r, kind)?);
                r.set_record(format!("layer {i} ({kind:?}) trailer"));
                parse_trailer(r, i == 0, version)?;
            }
        }
    }
    Ok((input, layers))
}

/// What `add_layer` writes after the layer details: three bools and the (normally
/// empty) gradient/output tensors, plus `sample_expansion_factor` for the input level.
fn parse_trailer(r: &mut Reader<'_>, input_level: bool, version: i32) -> Result<(), DatError> {
    for _ in 0..3 {
        r.bool()?;
    }
    let tensors = if input_level || version == 2 { 3 } else { 2 };
    for _ in 0..tensors {
        r.skip_tensor()?;
    }
    if input_level && version >= 3 {
        r.unsigned(8)?;
    }
    Ok(())
}

/// Parses one layer's details and checks it is of the expected kind.
fn parse_layer(r: &mut Reader<'_>, kind: Kind) -> Result<Layer, DatError> {
    Ok(match kind {
        Kind::Con => Layer::Con(parse_con(r)?),
        Kind::Affine => Layer::Affine(parse_affine(r)?),
        Kind::Relu => {
            let v = expect_string(r, &["relu_", "relu_2"])?;
            Layer::Relu {
                disabled: v == "relu_2" && r.bool()?,
            }
        }
        Kind::MaxPool => {
            expect_string(r, &["max_pool_2"])?;
            Layer::MaxPool(parse_pool(r)?)
        }
        Kind::AvgPool => {
            expect_string(r, &["avg_pool_2"])?;
            Layer::AvgPool(parse_pool(r)?)
        }
        Kind::AddPrev(tag) => {
            expect_string(r, &["add_prev_"])?;
            Layer::AddPrev { tag }
        }
        Kind::Fc => Layer::Fc(parse_fc(r)?),
    })
}

/// A `long` layer field that must be non-negative.
fn field(r: &mut Reader<'_>) -> Result<usize, DatError> {
    r.size(8, usize::MAX)
}

/// The 4 learning-rate / weight-decay multipliers, which inference does not need.
fn skip_multipliers(r: &mut Reader<'_>) -> Result<(), DatError> {
    for _ in 0..4 {
        r.f64()?;
    }
    Ok(())
}

fn count_of(shape: &[usize; 4]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn parse_con(r: &mut Reader<'_>) -> Result<Conv, DatError> {
    let v = expect_string(r, &["con_4", "con_5", "con_6"])?;
    let params_at = r.position();
    let params = r.tensor()?;
    let num_filters = field(r)?;
    let (kernel_rows, kernel_cols) = (field(r)?, field(r)?);
    let (stride_y, stride_x) = (field(r)?, field(r)?);
    let (pad_y, pad_x) = (field(r)?, field(r)?);
    let filters_shape = r.alias_tensor()?;
    let bias_shape = r.alias_tensor()?;
    skip_multipliers(r)?;
    let use_bias = if v == "con_4" { true } else { r.bool()? };
    let fused_relu = v == "con_6" && r.bool()?;
    let [f, in_channels, kh, kw] = filters_shape;
    if f != num_filters || kh != kernel_rows || kw != kernel_cols || stride_y == 0 || stride_x == 0
    {
        return Err(r.invalid(params_at, format!("inconsistent con fields: filters alias {filters_shape:?}, num_filters {num_filters}, kernel {kernel_rows}x{kernel_cols}, stride {stride_y}x{stride_x}")));
    }
    let n_filters =
        count_of(&filters_shape).ok_or_else(|| r.invalid(params_at, "filter count overflows"))?;
    let n_bias = if use_bias {
        count_of(&bias_shape).unwrap_or(usize::MAX)
    } else {
        0
    };
    if (use_bias && n_bias != num_filters)
        || n_filters.checked_add(n_bias) != Some(params.data.len())
    {
        return Err(r.invalid(
            params_at,
            format!(
                "con params {:?} do not match filters {filters_shape:?} + bias {bias_shape:?}",
                params.shape
            ),
        ));
    }
    let mut filters = params.data;
    let bias = filters.split_off(n_filters);
    Ok(Conv {
        num_filters,
        in_channels,
        kernel_rows,
        kernel_cols,
        stride_y,
        stride_x,
        pad_y,
        pad_x,
        filters,
        bias,
        fused_relu,
    })
}

fn affine_mode(r: &Reader<'_>, at: usize, mode: i64) -> Result<AffineMode, DatError> {
    match mode {
        0 => Ok(AffineMode::Conv),
        1 => Ok(AffineMode::Fc),
        m => Err(r.invalid(at, format!("unknown affine mode {m}"))),
    }
}

/// Splits a params tensor into γ and β checked against their alias shapes.
fn gamma_beta(
    r: &Reader<'_>,
    at: usize,
    params: Tensor,
    g: [usize; 4],
    b: [usize; 4],
) -> Result<(Vec<f32>, Vec<f32>), DatError> {
    let (ng, nb) = (count_of(&g), count_of(&b));
    if ng.is_none() || ng != nb || ng.map(|n| n * 2) != Some(params.data.len()) {
        return Err(r.invalid(
            at,
            format!(
                "params {:?} do not match gamma {g:?} + beta {b:?}",
                params.shape
            ),
        ));
    }
    let mut gamma = params.data;
    let beta = gamma.split_off(gamma.len() / 2);
    Ok((gamma, beta))
}

fn parse_affine(r: &mut Reader<'_>) -> Result<Affine, DatError> {
    let v = expect_string(r, &["affine_", "affine_2", "bn_con2", "bn_fc2"])?;
    let at = r.position();
    let params = r.tensor()?;
    let (g, b) = (r.alias_tensor()?, r.alias_tensor()?);
    let (mut gamma, mut beta) = gamma_beta(r, at, params, g, b)?;
    if v.starts_with("affine") {
        let mode_at = r.position();
        let mode = r.signed(4)?;
        let mode = affine_mode(r, mode_at, mode)?;
        let disabled = v == "affine_2" && r.bool()?;
        return Ok(Affine {
            gamma,
            beta,
            mode,
            disabled,
        });
    }
    // bn_con2 / bn_fc2: running statistics, converted as dlib's affine_(const bn_&):
    // g = γ/√(running_var + eps), b = β − g·running_mean, in f32.
    let mode = if v == "bn_con2" {
        AffineMode::Conv
    } else {
        AffineMode::Fc
    };
    r.tensor()?; // means (training batch statistics)
    r.tensor()?; // invstds
    let running_means = r.tensor()?;
    let running_vars = r.tensor()?;
    r.signed(4)?; // num_updates
    r.signed(4)?; // running_stats_window_size
    skip_multipliers(r)?;
    let eps = r.f64()? as f32;
    if running_means.data.len() != gamma.len() || running_vars.data.len() != gamma.len() {
        return Err(r.invalid(at, "bn running statistics do not match gamma"));
    }
    for (((g, b), m), v) in gamma
        .iter_mut()
        .zip(&mut beta)
        .zip(&running_means.data)
        .zip(&running_vars.data)
    {
        *g /= (v + eps).sqrt();
        *b -= *g * m;
    }
    Ok(Affine {
        gamma,
        beta,
        mode,
        disabled: false,
    })
}

fn parse_pool(r: &mut Reader<'_>) -> Result<Pool, DatError> {
    let at = r.position();
    let pool = Pool {
        rows: field(r)?,
        cols: field(r)?,
        stride_y: field(r)?,
        stride_x: field(r)?,
        pad_y: field(r)?,
        pad_x: field(r)?,
    };
    if pool.stride_y == 0 || pool.stride_x == 0 {
        return Err(r.invalid(at, "pool stride 0"));
    }
    Ok(pool)
}

fn parse_fc(r: &mut Reader<'_>) -> Result<Fc, DatError> {
    let v = expect_string(r, &["fc_2", "fc_3"])?;
    let (num_outputs, num_inputs) = (field(r)?, field(r)?);
    let at = r.position();
    let params = r.tensor()?;
    let weights_shape = r.alias_tensor()?;
    r.alias_tensor()?; // bias alias; its size follows from the bias mode
    let mode_at = r.position();
    let bias_mode = r.signed(4)?;
    skip_multipliers(r)?;
    let use_bias_flag = v != "fc_3" || r.bool()?;
    let has_bias = match bias_mode {
        0 => use_bias_flag,
        1 => false,
        m => return Err(r.invalid(mode_at, format!("unknown fc bias mode {m}"))),
    };
    let n_weights = num_inputs.checked_mul(num_outputs);
    let n_bias = if has_bias { num_outputs } else { 0 };
    if count_of(&weights_shape) != n_weights
        || n_weights.and_then(|n| n.checked_add(n_bias)) != Some(params.data.len())
    {
        return Err(r.invalid(
            at,
            format!(
                "fc params {:?} do not match {num_inputs}x{num_outputs}",
                params.shape
            ),
        ));
    }
    let mut weights = params.data;
    let bias = weights.split_off(num_inputs * num_outputs);
    Ok(Fc {
        num_inputs,
        num_outputs,
        weights,
        bias,
    })
}

fn parse_overlap(r: &mut Reader<'_>) -> Result<BoxOverlap, DatError> {
    Ok(BoxOverlap {
        iou_thresh: r.f64()?,
        percent_covered_thresh: r.f64()?,
    })
}

fn parse_mmod_options(r: &mut Reader<'_>) -> Result<MmodOptions, DatError> {
    let version = read_version(r, &[1, 2, 3, 4], "mmod_options")?;
    let detector_windows = if version == 1 {
        vec![DetectorWindow {
            width: r.unsigned(8)?,
            height: r.unsigned(8)?,
            label: String::new(),
        }]
    } else {
        let n = r.count(5)?;
        let mut windows = Vec::with_capacity(n);
        for _ in 0..n {
            let wv = read_version(r, &[1, 2], "detector_window_details")?;
            let (width, height) = (r.unsigned(8)?, r.unsigned(8)?);
            let label = if wv == 2 { r.string()? } else { String::new() };
            windows.push(DetectorWindow {
                width,
                height,
                label,
            });
        }
        windows
    };
    let loss_per_false_alarm = r.f64()?;
    let loss_per_missed_target = r.f64()?;
    let truth_match_iou_threshold = r.f64()?;
    let overlaps_nms = parse_overlap(r)?;
    let overlaps_ignore = parse_overlap(r)?;
    let assume_image_pyramid = version < 3 || r.unsigned(1)? != 0;
    let bbr_lambda = if version >= 4 {
        let use_bbr = r.bool()?;
        let lambda = r.f64()?;
        use_bbr.then_some(lambda)
    } else {
        None
    };
    Ok(MmodOptions {
        detector_windows,
        loss_per_false_alarm,
        loss_per_missed_target,
        truth_match_iou_threshold,
        overlaps_nms,
        overlaps_ignore,
        assume_image_pyramid,
        bbr_lambda,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_have_the_documented_sizes() {
        // 130 wrappers (+ input + loss = the 132 entries of models.md).
        assert_eq!(resnet_spec().len(), 130);
        assert_eq!(
            resnet_spec()
                .iter()
                .filter(|s| **s == Spec::Layer(Kind::Con))
                .count(),
            29
        );
        assert_eq!(mmod_spec().len(), 19);
    }
}
