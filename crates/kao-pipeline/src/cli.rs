//! Command-line options of each stage, shared by the stage binaries and `kao-extract` so
//! both take the same flags with the same defaults.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use kao_networks::Device;
use kao_record::{Metric, Provenance};
use kao_video::DecodeOptions;

use crate::detect::follow::{self, FollowOptions};
use crate::detect::{DetectOptions, DetectorKind};
use crate::embed::EmbedOptions;
use crate::embed::sample::{self, SampleOptions};
use crate::matching::default_threshold;
use crate::matching::enroll::{self as refs, EnrollOptions};
use crate::matching::identify::{
    DEFAULT_TRACK_BEST, DEFAULT_VIDEO_THRESHOLD, Gallery, MatchOptions, Matcher,
};
use crate::matching::similar::Curve;
use kao_networks::embedder::{Channels, EmbedderKind, EmbedderSpec, Preprocessing};

/// Which frames of each input: kao-decode's options, and kao-extract's.
#[derive(Args, Clone, Debug)]
pub struct DecodeArgs {
    /// Keep every Nth frame (FACE01's frame_skip); indices still count every frame.
    #[arg(long, value_name = "N", default_value_t = DecodeOptions::default().every, value_parser = clap::value_parser!(u64).range(1..))]
    pub every: u64,
    /// Keep at most R frames per second of video time (sampled by pts).
    #[arg(long, value_name = "R", value_parser = positive_f64)]
    pub fps: Option<f64>,
    /// Start at this time in seconds (seeks when frame indices stay exact).
    #[arg(long, value_name = "S", value_parser = non_negative_f64)]
    pub start: Option<f64>,
    /// Stop before this time in seconds.
    #[arg(long, value_name = "S", value_parser = positive_f64)]
    pub end: Option<f64>,
    /// Keep at most N frames from each input.
    #[arg(long, value_name = "N")]
    pub max_frames: Option<u64>,
}

impl DecodeArgs {
    /// The decoder's options with `threads` decoding threads, checked: `--end` after
    /// `--start`, and (for values set other than on the command line, whose parsers refuse
    /// them already, e.g. from FACE01's config.ini) `--every` of 1 or more, a positive
    /// `--fps` and `--end`, a `--start` of 0 or more. kao-decode and kao-extract both check
    /// here.
    pub fn options(&self, threads: usize) -> Result<DecodeOptions> {
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end <= start
        {
            bail!("--end ({end}) must be after --start ({start})");
        }
        if self.every == 0 {
            bail!("--every must be 1 or more");
        }
        if self.fps.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            bail!("--fps must be a positive number");
        }
        if self.start.is_some_and(|t| !(t >= 0.0 && t.is_finite())) {
            bail!("--start must be a number >= 0");
        }
        if self.end.is_some_and(|t| !(t > 0.0 && t.is_finite())) {
            bail!("--end must be a positive number");
        }
        Ok(DecodeOptions {
            every: self.every,
            fps: self.fps,
            start: self.start,
            end: self.end,
            max_frames: self.max_frames,
            threads,
        })
    }
}

/// A number above 0 (and finite), as `--fps` and `--end` take it.
fn positive_f64(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// A number of 0 or more (and finite), as `--start` takes it.
fn non_negative_f64(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a number >= 0")),
    }
}

/// kao-detect's options.
#[derive(Args, Clone, Debug)]
pub struct DetectArgs {
    /// Which detector: `blazeface` (MediaPipe BlazeFace short range, faces near the camera),
    /// `blazeface-full` (full range, faces at any distance), `mmod` (dlib's MMOD CNN: slow,
    /// dlib's own boxes) or `yunet:PATH` (OpenCV Zoo's YuNet ONNX file, run by ONNX Runtime).
    #[arg(long, value_name = "NAME", default_value_t = DetectOptions::default().detector)]
    pub detector: DetectorKind,
    /// Run the detector on the frame scaled down to this width (FACE01's set_width); boxes,
    /// landmarks and patches still come from the native frame.
    #[arg(long, value_name = "W")]
    pub detect_width: Option<u32>,
    /// Drop faces whose box is narrower than this many native pixels.
    #[arg(long, value_name = "PX", default_value_t = DetectOptions::default().min_size)]
    pub min_size: f32,
    /// Drop faces scoring below this (BlazeFace scores are 0–1; MMOD's are margins, ~0–2).
    #[arg(long, value_name = "S")]
    pub min_score: Option<f32>,
    /// Keep at most this many faces per frame, the highest-scoring ones.
    #[arg(long, value_name = "N")]
    pub max_faces: Option<usize>,
    /// MMOD only: upsample the frame N times first (finds faces down to ~40/2^N px).
    #[arg(long, value_name = "N", default_value_t = DetectOptions::default().upsample)]
    pub upsample: u32,
    /// Patch margin: the patch covers dlib's aligned crop at this padding (0.25 covers the
    /// embedder's chip; kao-align's default is 0.1).
    #[arg(long, value_name = "P", default_value_t = DetectOptions::default().patch_padding)]
    pub patch_padding: f64,
    /// A frame whose colour histogram differs from the previous frame's by more than this
    /// (half the L1 distance, 0–1), or whose brightness layout differs by more than a
    /// seventh of it, starts a new shot (the `shot` column; tracks end at cuts).
    #[arg(long, value_name = "D", default_value_t = DetectOptions::default().cut_threshold)]
    pub cut_threshold: f32,
    /// Run the detector at most this many seconds of video apart, at shot cuts and where a
    /// face moves fast or stops looking like itself; between passes each face is followed by
    /// its landmarks (the `detected` column says which). A face entering the picture is found
    /// at the next pass. 0 runs the detector on every frame (kao-extract --exact).
    #[arg(long, value_name = "S", default_value_t = follow::DEFAULT_INTERVAL)]
    pub follow_interval: f64,
    /// A followed face whose aligned grey chip correlates less than this with its chip at the
    /// last detector pass sends the frame to the detector.
    #[arg(long, value_name = "C", default_value_t = follow::DEFAULT_MIN_FIT)]
    pub min_fit: f32,
    /// Detectors that, in turn, look again around a face on an enlarged crop (the
    /// `second_detector` column): where a detector pass misses a face of the previous frame
    /// (turned, half hidden), for faces the detector sees only on tiles of a large frame (every
    /// 2 s), and to place small faces the detector boxes loosely. A comma-separated list of
    /// `blazeface`, `blazeface-full`, `mmod`, `yunet:PATH`, or `none`. Only while following
    /// faces (not with --follow-interval 0).
    #[arg(long, value_name = "LIST", default_value_t = SecondDetectors(DetectOptions::default().second))]
    pub second_detector: SecondDetectors,
}

/// `--second-detector`: detectors in the order they are tried (`none`: no detector).
#[derive(Clone, Debug)]
pub struct SecondDetectors(pub Vec<DetectorKind>);

impl std::fmt::Display for SecondDetectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&names.join(","))
    }
}

impl std::str::FromStr for SecondDetectors {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s == "none" {
            return Ok(SecondDetectors(Vec::new()));
        }
        s.split(',')
            .map(|name| {
                name.trim()
                    .parse::<DetectorKind>()
                    .map_err(|e| e.to_string())
            })
            .collect::<std::result::Result<_, _>>()
            .map(SecondDetectors)
    }
}

impl DetectArgs {
    /// The detect stage's options, running on `device`.
    pub fn options(&self, device: Device) -> DetectOptions {
        DetectOptions {
            detector: self.detector.clone(),
            detect_width: self.detect_width.filter(|w| *w > 0),
            min_size: self.min_size,
            min_score: self.min_score,
            max_faces: self.max_faces,
            upsample: self.upsample,
            patch_padding: self.patch_padding,
            device,
            cut_threshold: self.cut_threshold,
            follow: (self.follow_interval != 0.0).then_some(FollowOptions {
                interval: self.follow_interval,
                min_fit: self.min_fit,
            }),
            second: self.second_detector.0.clone(),
        }
    }
}

/// kao-embed's options.
#[derive(Args, Clone, Debug)]
pub struct EmbedArgs {
    /// Average the embeddings of N jittered copies of each chip, like dlib's num_jitters
    /// (slower by N×). 0 or 1: the plain chip.
    #[arg(long, value_name = "N", default_value_t = EmbedOptions::default().jitters)]
    pub jitters: u32,
    /// Seed of the jitter generator (same seed, same embeddings).
    #[arg(long, default_value_t = EmbedOptions::default().seed)]
    pub seed: u64,
    /// Faces per network batch (16 is as fast as 32 on CPU and needs ~80 MB less memory).
    #[arg(long, value_name = "N", default_value_t = EmbedOptions::default().batch as u32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch: u32,
    /// Embed the first faces of each face followed from frame to frame, then one every S
    /// seconds and every face that looks unlike those embedded before it; the others keep a
    /// null embedding and take their track's identity. 0 embeds every face (kao-extract
    /// --exact).
    #[arg(long, value_name = "S", default_value_t = sample::DEFAULT_EMBED_INTERVAL)]
    pub embed_interval: f64,
}

/// Three comma-separated numbers, as `--mean` and `--std` take them.
fn triple(s: &str) -> std::result::Result<[f32; 3], String> {
    let values: Vec<f32> = s
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("`{s}`: expected three numbers, as r,g,b"))?;
    <[f32; 3]>::try_from(values).map_err(|_| format!("`{s}`: expected three numbers, as r,g,b"))
}

/// Which face embedder, and how an ONNX embedder's input is made. Shared by kao-embed,
/// kao-match (to enroll references in the same space as the faces) and kao-extract.
#[derive(Args, Clone, Debug)]
pub struct EmbedderArgs {
    /// The face embedder: `dlib` (dlib's ResNet: 128-d, Euclidean), `face01-v1:PATH` (FACE01's
    /// JAPANESE FACE V1 ONNX file: 224 px chip, 512-d, cosine) or `onnx:PATH` (any ONNX face
    /// embedder; the options below describe its input). Faces and references must use the same.
    #[arg(long, value_name = "NAME", default_value = "dlib")]
    pub embedder: EmbedderKind,
    /// onnx: side of the model's square input in pixels (default: the graph's fixed size).
    #[arg(long, value_name = "PX", help_heading = "ONNX embedder")]
    pub input_size: Option<usize>,
    /// onnx: margin of the aligned chip around dlib's 5-point template [default: 0.1].
    #[arg(long, value_name = "P", help_heading = "ONNX embedder")]
    pub chip_padding: Option<f64>,
    /// onnx: factor applied to pixel values (0–255) first [default: 1/255].
    #[arg(long, value_name = "S", help_heading = "ONNX embedder")]
    pub pixel_scale: Option<f32>,
    /// onnx: subtracted per channel after scaling, in the model's channel order [default: 0,0,0].
    #[arg(long, value_name = "R,G,B", value_parser = triple, help_heading = "ONNX embedder")]
    pub mean: Option<[f32; 3]>,
    /// onnx: divided by per channel after the mean [default: 1,1,1].
    #[arg(long, value_name = "R,G,B", value_parser = triple, help_heading = "ONNX embedder")]
    pub std: Option<[f32; 3]>,
    /// onnx: the model's channel order [default: rgb].
    #[arg(long, value_enum, help_heading = "ONNX embedder")]
    pub channels: Option<Channels>,
    /// onnx: how its embeddings are compared: cosine or euclidean [default: cosine].
    #[arg(long, value_name = "METRIC", help_heading = "ONNX embedder")]
    pub metric: Option<Metric>,
    /// onnx: scale every embedding to unit length.
    #[arg(long, help_heading = "ONNX embedder")]
    pub l2_normalize: bool,
}

impl EmbedderArgs {
    /// The embedder these options name; preprocessing options are refused for dlib and
    /// face01-v1, whose contracts are fixed.
    pub fn spec(&self) -> Result<EmbedderSpec> {
        let given: Vec<&str> = [
            ("--input-size", self.input_size.is_some()),
            ("--chip-padding", self.chip_padding.is_some()),
            ("--pixel-scale", self.pixel_scale.is_some()),
            ("--mean", self.mean.is_some()),
            ("--std", self.std.is_some()),
            ("--channels", self.channels.is_some()),
            ("--metric", self.metric.is_some()),
            ("--l2-normalize", self.l2_normalize),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        let mut preprocessing = Preprocessing::onnx_defaults();
        match &self.embedder {
            EmbedderKind::Onnx(_) => {
                preprocessing.input_size = self.input_size;
                if let Some(p) = self.chip_padding {
                    if !(p.is_finite() && p >= 0.0) {
                        anyhow::bail!("--chip-padding must be a number >= 0");
                    }
                    preprocessing.chip_padding = p;
                }
                if let Some(s) = self.pixel_scale {
                    preprocessing.pixel_scale = s;
                }
                if let Some(m) = self.mean {
                    preprocessing.mean = m;
                }
                if let Some(s) = self.std {
                    if s.iter().any(|v| *v == 0.0 || !v.is_finite()) {
                        anyhow::bail!("--std must be three non-zero numbers");
                    }
                    preprocessing.std = s;
                }
                if let Some(c) = self.channels {
                    preprocessing.channels = c;
                }
                if let Some(m) = self.metric {
                    preprocessing.metric = m;
                }
                preprocessing.l2_normalize = self.l2_normalize;
                if self.input_size == Some(0) {
                    anyhow::bail!("--input-size must be at least 1");
                }
            }
            kind if !given.is_empty() => {
                let name = if *kind == EmbedderKind::Dlib {
                    "dlib"
                } else {
                    "face01-v1"
                };
                anyhow::bail!(
                    "{} only apply to `--embedder onnx:PATH`; {name}'s input is fixed",
                    given.join(", ")
                );
            }
            _ => {}
        }
        Ok(EmbedderSpec {
            kind: self.embedder.clone(),
            preprocessing,
        })
    }
}

impl EmbedArgs {
    /// The embed stage's options for `embedder`, running on `device`.
    pub fn options(&self, embedder: EmbedderSpec, device: Device) -> EmbedOptions {
        EmbedOptions {
            embedder,
            jitters: self.jitters,
            seed: self.seed,
            batch: self.batch as usize,
            device,
            sample: (self.embed_interval != 0.0).then_some(SampleOptions {
                interval: self.embed_interval,
                ..SampleOptions::default()
            }),
        }
    }
}

/// kao-match's options: the references and the matching rule.
#[derive(Args, Clone, Debug)]
pub struct MatchArgs {
    /// Reference photos of the people to find: image files or folders. A person's name is the
    /// file name up to the first `_` (`ann_1.jpg`), or the sub-folder (`refs/ann/*.jpg`).
    #[arg(long = "ref", value_name = "PATH", num_args = 1..)]
    pub refs: Vec<PathBuf>,
    /// Photos of people to reject (look-alikes): a face nearer to one of them than to the best
    /// reference (by --margin) stays unmatched. Same naming as --ref.
    #[arg(long = "neg", value_name = "PATH", num_args = 1..)]
    pub negs: Vec<PathBuf>,
    /// Largest distance between a face's embedding and a person's nearest reference for a
    /// match, in the embedder's metric (default: 0.48 for dlib, FACE01's similar_percentage 90
    /// for face01-v1; required for other ONNX models). See docs/matching.md.
    #[arg(long, value_name = "D")]
    pub threshold: Option<f32>,
    /// FACE01's similar_percentage instead of --threshold: the percentage (e.g. 99.1 for dlib,
    /// 90 for face01-v1) converted by FACE01's curve for the embedder (docs/face01.md).
    #[arg(long, value_name = "P", conflicts_with = "threshold")]
    pub similar_percentage: Option<f32>,
    /// The best reference must be at least this much nearer than the nearest --neg photo.
    #[arg(long, value_name = "D", default_value_t = 0.0)]
    pub margin: f32,
    /// Let one person match several faces of one frame (by default only the nearest face of
    /// a frame can match a given person).
    #[arg(long)]
    pub allow_repeats: bool,
    /// Decide per face track (from kao-track): a track matches when the median of its K
    /// nearest faces is within --threshold, and all its faces take that identity. 0 decides
    /// every face on its own (kao-extract then embeds every face; in a pipe, give kao-embed
    /// --embed-interval 0, or a face kao-embed skipped takes the verdict of the latest
    /// embedded face of its track).
    #[arg(long, value_name = "K", default_value_t = DEFAULT_TRACK_BEST)]
    pub track_best: usize,
    /// Match through the video: a face or track the references leave unmatched takes a
    /// person when it is within D of that person's faces in the same video (faces that matched
    /// on the references, with as many of their track as its verdict needs, two at least:
    /// (K−1)/2+1 for --track-best K) and within 1.35 × --threshold of their
    /// references (default: 0.85 × --threshold; 0 turns it off). See docs/matching.md.
    #[arg(long, value_name = "D")]
    pub video_threshold: Option<f32>,
    /// Jittered copies averaged per reference photo (default: 100 for dlib, as FACE01's
    /// references; 1 for ONNX embedders, which FACE01 runs without jitter).
    #[arg(long, value_name = "N")]
    pub ref_jitters: Option<u32>,
    /// Skip reference photos without a face (with a warning) instead of failing.
    #[arg(long)]
    pub skip_bad_refs: bool,
    /// Where enrolled reference embeddings are cached, keyed by photo content and model
    /// (default: ~/.cache/kao/refs).
    #[arg(long, value_name = "DIR", conflicts_with = "no_ref_cache")]
    pub ref_cache: Option<PathBuf>,
    /// Do not cache reference embeddings.
    #[arg(long)]
    pub no_ref_cache: bool,
}

impl MatchArgs {
    /// The matching rule for faces embedded by `embedder` into `space`.
    pub fn options(
        &self,
        embedder: &EmbedderSpec,
        space: &kao_record::EmbeddingSpace,
    ) -> Result<MatchOptions> {
        let curve = Curve::of(embedder);
        let threshold = match (self.threshold, self.similar_percentage) {
            (Some(t), _) => t,
            (None, Some(p)) => {
                let curve = curve.ok_or_else(|| {
                    anyhow::anyhow!(
                        "--similar-percentage: FACE01 has no percentage curve for {}; give --threshold",
                        embedder.name()
                    )
                })?;
                curve
                    .threshold(p)
                    .map_err(|e| anyhow::anyhow!("--similar-percentage: {e}"))?
            }
            (None, None) => default_threshold(space).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no calibrated default threshold: give --threshold D (a {} distance; docs/matching.md shows how to choose it)",
                    embedder.name(),
                    space.metric
                )
            })?,
        };
        Ok(MatchOptions {
            threshold,
            margin: self.margin,
            allow_repeats: self.allow_repeats,
            track_best: self.track_best,
            curve,
            video_threshold: self
                .video_threshold
                .unwrap_or(DEFAULT_VIDEO_THRESHOLD * threshold),
        })
    }

    /// Enrolls the --ref and --neg photos with `embedder` (warnings go to `warn`) and returns
    /// the matcher with kao-match's provenance entry.
    pub fn matcher(
        &self,
        embedder: &EmbedderSpec,
        device: Device,
        warn: &mut dyn FnMut(&str),
    ) -> Result<(Matcher, Provenance)> {
        self.matcher_or_none(embedder, device, false, warn)
    }

    /// [`MatchArgs::matcher`]; with `allow_none`, no --ref gives a matcher that matches no
    /// one (kao-extract then clusters every face).
    pub fn matcher_or_none(
        &self,
        embedder: &EmbedderSpec,
        device: Device,
        allow_none: bool,
        warn: &mut dyn FnMut(&str),
    ) -> Result<(Matcher, Provenance)> {
        if self.refs.is_empty() && !allow_none {
            anyhow::bail!("no reference photos: give --ref PATH... (image files or folders)");
        }
        let enroll = self.enroll_options(embedder, device);
        let space = embedder.space()?;
        // The rule first: a bad threshold is an error before any photo is enrolled.
        let options = self.options(embedder, &space)?;
        let mut gallery = |paths: &[PathBuf]| -> Result<(Gallery, serde_json::Value)> {
            let mut g = Gallery::new(space.clone());
            if paths.is_empty() {
                return Ok((g, serde_json::Value::Array(Vec::new())));
            }
            let enrolled = refs::enroll(&refs::collect(paths)?, &enroll)?;
            for w in &enrolled.warnings {
                warn(w);
            }
            for (path, why) in &enrolled.skipped {
                warn(&format!("{}: skipped: {why}", path.display()));
            }
            for face in &enrolled.faces {
                g.add(&face.name, face.embedding.clone())?;
            }
            Ok((g, refs::describe(&enrolled)))
        };
        let (positives, described_refs) = gallery(&self.refs)?;
        let (negatives, described_negs) = gallery(&self.negs)?;
        let provenance = Provenance::new(
            "kao-match",
            env!("CARGO_PKG_VERSION"),
            serde_json::json!({
                "threshold": options.threshold, "margin": options.margin, "allow_repeats": options.allow_repeats,
                "track_best": options.track_best, "video_threshold": options.video_threshold, "embedder": space.embedder, "metric": space.metric.name(),
                "ref_jitters": enroll.jitters, "refs": described_refs, "negs": described_negs,
            }),
        );
        Ok((Matcher::new(positives, negatives, options)?, provenance))
    }

    /// How references are enrolled with `embedder`, on `device`.
    pub fn enroll_options(&self, embedder: &EmbedderSpec, device: Device) -> EnrollOptions {
        let default_jitters = if embedder.is_dlib() { 100 } else { 1 };
        let mut options = EnrollOptions {
            embedder: embedder.clone(),
            jitters: self.ref_jitters.unwrap_or(default_jitters),
            skip_bad: self.skip_bad_refs,
            device,
            ..EnrollOptions::default()
        };
        if self.no_ref_cache {
            options.cache = None;
        } else if let Some(dir) = &self.ref_cache {
            options.cache = Some(dir.clone());
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Decode {
        #[command(flatten)]
        decode: DecodeArgs,
    }

    fn decode(args: &[&str]) -> std::result::Result<DecodeArgs, clap::Error> {
        Decode::try_parse_from(std::iter::once("kao-decode").chain(args.iter().copied()))
            .map(|d| d.decode)
    }

    /// Every stage's options on an empty command line.
    #[derive(Parser)]
    struct Stages {
        #[command(flatten)]
        detect: DetectArgs,
        #[command(flatten)]
        embed: EmbedArgs,
        #[command(flatten)]
        track: crate::track::TrackOptions,
        #[command(flatten)]
        align: crate::align::AlignOptions,
    }

    #[test]
    fn the_command_line_defaults_are_the_options_defaults() {
        let cli = Stages::parse_from(["kao"]);
        let (detect, default) = (cli.detect.options(Device::cpu()), DetectOptions::default());
        assert_eq!(detect.detector, default.detector);
        assert_eq!(
            (detect.min_size, detect.upsample, detect.patch_padding),
            (default.min_size, default.upsample, default.patch_padding)
        );
        assert_eq!(detect.cut_threshold, default.cut_threshold);
        assert_eq!(
            detect.follow.map(|f| (f.interval, f.min_fit)),
            default.follow.map(|f| (f.interval, f.min_fit))
        );
        assert_eq!(detect.second, default.second);
        let (embed, default) = (
            cli.embed.options(EmbedderSpec::default(), Device::cpu()),
            EmbedOptions::default(),
        );
        assert_eq!(
            (embed.jitters, embed.seed, embed.batch),
            (default.jitters, default.seed, default.batch)
        );
        let track = crate::track::TrackOptions::default();
        assert_eq!(
            (cli.track.max_gap, cli.track.min_iou, cli.track.max_distance),
            (track.max_gap, track.min_iou, track.max_distance)
        );
        assert_eq!(cli.align.crop, crate::align::crop::CropSpec::default());
        assert_eq!(cli.align.select, crate::align::Selection::default());
        assert!(!cli.align.all);
    }

    #[test]
    fn decode_options_are_checked_in_one_place() {
        let d = decode(&["--every", "2", "--fps", "5", "--start", "1", "--end", "3"]).unwrap();
        let options = d.options(4).unwrap();
        assert_eq!(
            (options.every, options.fps, options.start, options.end),
            (2, Some(5.0), Some(1.0), Some(3.0))
        );
        assert_eq!((options.max_frames, options.threads), (None, 4));
        let e = decode(&["--start", "3", "--end", "2"])
            .unwrap()
            .options(1)
            .unwrap_err();
        assert_eq!(e.to_string(), "--end (2) must be after --start (3)");
        // The command line refuses these as usage errors...
        for bad in [
            &["--fps", "0"][..],
            &["--start", "-1"],
            &["--end", "inf"],
            &["--every", "0"],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        // ... and the check refuses them when they come from elsewhere (FACE01's config.ini).
        let mut d = decode(&[]).unwrap();
        assert_eq!(d.every, DecodeOptions::default().every);
        d.every = 0;
        assert!(d.options(1).is_err());
        d.every = 1;
        d.fps = Some(f64::NAN);
        assert_eq!(
            d.options(1).unwrap_err().to_string(),
            "--fps must be a positive number"
        );
    }
}
