//! Command-line options of each stage, shared by the stage binaries and `kao-extract` so
//! both take the same flags with the same defaults.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use kao_nn::Device;
use kao_record::Provenance;

use crate::align::{AlignOptions, DEFAULT_MIN_HASH_BITS, Selection};
use crate::crop::{CropSpec, ImageFormat};
use crate::detect::{DetectOptions, DetectorKind};
use crate::embed::EmbedOptions;
use crate::identify::{DEFAULT_THRESHOLD, DEFAULT_TRACK_BEST, Gallery, MatchOptions, Matcher};
use crate::refs::{self, EnrollOptions};
use crate::shot::DEFAULT_CUT_THRESHOLD;
use crate::track::TrackOptions;

/// Which detector finds faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DetectorArg {
    /// MediaPipe BlazeFace short range (faces near the camera).
    Blazeface,
    /// MediaPipe BlazeFace full range (faces at any distance).
    BlazefaceFull,
    /// dlib's MMOD CNN (slow, dlib's own boxes).
    Mmod,
}

/// kao-detect's options.
#[derive(Args, Clone, Debug)]
pub struct DetectArgs {
    /// Which detector: MediaPipe BlazeFace short range (faces near the camera), full range,
    /// or dlib's MMOD CNN.
    #[arg(long, value_enum, default_value_t = DetectorArg::BlazefaceFull)]
    pub detector: DetectorArg,
    /// Run the detector on the frame scaled down to this width (FACE01's set_width); boxes,
    /// landmarks and patches still come from the native frame.
    #[arg(long, value_name = "W")]
    pub detect_width: Option<u32>,
    /// Drop faces whose box is narrower than this many native pixels.
    #[arg(long, value_name = "PX", default_value_t = 0.0)]
    pub min_size: f32,
    /// Drop faces scoring below this (BlazeFace scores are 0–1; MMOD's are margins, ~0–2).
    #[arg(long, value_name = "S")]
    pub min_score: Option<f32>,
    /// Keep at most this many faces per frame, the highest-scoring ones.
    #[arg(long, value_name = "N")]
    pub max_faces: Option<usize>,
    /// MMOD only: upsample the frame N times first (finds faces down to ~40/2^N px).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub upsample: u32,
    /// Patch margin: the patch covers dlib's aligned crop at this padding (0.25 covers the
    /// embedder's chip; kao-align's default is 0.1).
    #[arg(long, value_name = "P", default_value_t = 0.25)]
    pub patch_padding: f64,
    /// A frame whose colour histogram differs from the previous frame's by more than this
    /// (half the L1 distance, 0–1), or whose brightness layout differs by more than a
    /// seventh of it, starts a new shot (the `shot` column; tracks end at cuts).
    #[arg(long, value_name = "D", default_value_t = DEFAULT_CUT_THRESHOLD)]
    pub cut_threshold: f32,
}

impl DetectArgs {
    /// The detect stage's options, running on `device`.
    pub fn options(&self, device: Device) -> DetectOptions {
        DetectOptions {
            detector: match self.detector {
                DetectorArg::Blazeface => DetectorKind::Blazeface,
                DetectorArg::BlazefaceFull => DetectorKind::BlazefaceFull,
                DetectorArg::Mmod => DetectorKind::Mmod,
            },
            detect_width: self.detect_width.filter(|w| *w > 0),
            min_size: self.min_size,
            min_score: self.min_score,
            max_faces: self.max_faces,
            upsample: self.upsample,
            patch_padding: self.patch_padding,
            device,
            cut_threshold: self.cut_threshold,
        }
    }
}

/// kao-embed's options.
#[derive(Args, Clone, Debug)]
pub struct EmbedArgs {
    /// Average the embeddings of N jittered copies of each chip, like dlib's num_jitters
    /// (slower by N×). 0 or 1: the plain chip.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jitters: u32,
    /// Seed of the jitter generator (same seed, same embeddings).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Faces per network batch (16 is as fast as 32 on CPU and needs ~80 MB less memory).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch: u32,
}

impl EmbedArgs {
    /// The embed stage's options, running on `device`.
    pub fn options(&self, device: Device) -> EmbedOptions {
        EmbedOptions {
            jitters: self.jitters,
            seed: self.seed,
            batch: self.batch as usize,
            device,
        }
    }
}

/// kao-match's options: the references and the matching rule.
#[derive(Args, Clone, Debug)]
pub struct MatchArgs {
    /// Reference photos of the people to find: image files or folders. A person's name is the
    /// file name up to the first `_` (`ann_1.jpg`), or the sub-folder (`refs/ann/*.jpg`).
    #[arg(long = "ref", value_name = "PATH", required = true, num_args = 1..)]
    pub refs: Vec<PathBuf>,
    /// Photos of people to reject (look-alikes): a face nearer to one of them than to the best
    /// reference (by --margin) stays unmatched. Same naming as --ref.
    #[arg(long = "neg", value_name = "PATH", num_args = 1..)]
    pub negs: Vec<PathBuf>,
    /// Largest Euclidean distance between a face's embedding and a person's nearest reference
    /// for a match (see README, "Choosing the threshold").
    #[arg(long, value_name = "D", default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f32,
    /// The best reference must be at least this much nearer than the nearest --neg photo.
    #[arg(long, value_name = "D", default_value_t = 0.0)]
    pub margin: f32,
    /// Let one person match several faces of one frame (by default only the nearest face of
    /// a frame can match a given person).
    #[arg(long)]
    pub allow_repeats: bool,
    /// Decide per face track (from kao-track): a track matches when the median of its K
    /// nearest faces is within --threshold, and all its faces take that identity. 0 decides
    /// every face on its own.
    #[arg(long, value_name = "K", default_value_t = DEFAULT_TRACK_BEST)]
    pub track_best: usize,
    /// Jittered copies averaged per reference photo (FACE01's references use 100).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub ref_jitters: u32,
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
    /// The matching rule.
    pub fn options(&self) -> MatchOptions {
        MatchOptions {
            threshold: self.threshold,
            margin: self.margin,
            allow_repeats: self.allow_repeats,
            track_best: self.track_best,
        }
    }

    /// Enrolls the --ref and --neg photos (warnings go to `warn`) and returns the matcher
    /// with kao-match's provenance entry.
    pub fn matcher(
        &self,
        device: Device,
        warn: &mut dyn FnMut(&str),
    ) -> Result<(Matcher, Provenance)> {
        let enroll = self.enroll_options(device);
        let mut gallery = |paths: &[PathBuf]| -> Result<(Gallery, serde_json::Value)> {
            let mut g = Gallery::default();
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
                g.add(&face.name, face.embedding);
            }
            Ok((g, refs::describe(&enrolled)))
        };
        let (positives, described_refs) = gallery(&self.refs)?;
        let (negatives, described_negs) = gallery(&self.negs)?;
        let options = self.options();
        let provenance = Provenance::new(
            "kao-match",
            env!("CARGO_PKG_VERSION"),
            serde_json::json!({
                "threshold": options.threshold, "margin": options.margin, "allow_repeats": options.allow_repeats,
                "track_best": options.track_best,
                "ref_jitters": enroll.jitters, "refs": described_refs, "negs": described_negs,
            }),
        );
        Ok((Matcher::new(positives, negatives, options)?, provenance))
    }

    /// How references are enrolled, on `device`.
    pub fn enroll_options(&self, device: Device) -> EnrollOptions {
        let mut options = EnrollOptions {
            jitters: self.ref_jitters,
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

/// kao-align's options.
#[derive(Args, Clone, Debug)]
pub struct AlignArgs {
    /// Side of the square aligned crops, in pixels.
    #[arg(long, value_name = "PX", default_value_t = 400)]
    pub size: usize,
    /// Margin around dlib's 5-point template, as a fraction of the face (FACE01's aligner: 0.1).
    #[arg(long, value_name = "P", default_value_t = 0.1)]
    pub padding: f64,
    /// Crop file format: png or jpg.
    #[arg(long, value_name = "FORMAT", default_value = "png")]
    pub format: ImageFormat,
    /// JPEG quality (1–100).
    #[arg(long, value_name = "Q", default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Also write crops of unmatched faces, under `unknown/`.
    #[arg(long)]
    pub all: bool,
    /// No crop for faces whose aligned chip is blurrier than this (variance of the Laplacian;
    /// 0 keeps all). The manifest says why: `reject_reason`.
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    pub min_sharpness: f32,
    /// No crop for faces narrower than this many native pixels.
    #[arg(long, value_name = "PX", default_value_t = 0.0)]
    pub min_face: f32,
    /// No crop for faces turned further than this many degrees (estimated from the landmarks).
    #[arg(long, value_name = "DEG", default_value_t = 90.0)]
    pub max_yaw: f32,
    /// Within a track, no crop that differs from one already kept by fewer than this many of
    /// the 64 bits of its perceptual hash (near-duplicates); 0 keeps them all.
    #[arg(long, value_name = "BITS", default_value_t = DEFAULT_MIN_HASH_BITS)]
    pub min_hash_bits: u32,
    /// Within a track, at least this many seconds between crops.
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    pub min_gap: f64,
    /// At most this many crops per track (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_per_track: usize,
}

impl AlignArgs {
    /// The align stage's options.
    pub fn options(&self) -> AlignOptions {
        AlignOptions {
            crop: CropSpec {
                size: self.size,
                padding: self.padding,
                format: self.format,
                quality: self.quality,
            },
            all: self.all,
            select: Selection {
                min_sharpness: self.min_sharpness,
                min_face: self.min_face,
                max_yaw: self.max_yaw,
                min_hash_bits: self.min_hash_bits,
                min_gap: self.min_gap,
                max_per_track: self.max_per_track,
            },
        }
    }
}

/// kao-track's options.
#[derive(Args, Clone, Debug)]
pub struct TrackArgs {
    /// Longest gap, in seconds of video, that a face track bridges.
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    pub max_gap: f64,
    /// Least box overlap (IoU) between a track's last face and the next.
    #[arg(long, value_name = "F", default_value_t = 0.2)]
    pub min_iou: f32,
    /// Largest embedding distance between a track's last face and the next.
    #[arg(long, value_name = "D", default_value_t = 0.6)]
    pub link_distance: f32,
}

impl TrackArgs {
    /// The track stage's options.
    pub fn options(&self) -> TrackOptions {
        TrackOptions {
            max_gap: self.max_gap,
            min_iou: self.min_iou,
            max_distance: self.link_distance,
        }
    }
}
