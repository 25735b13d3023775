//! `--face01-config FILE [--face01-section S]`: a FACE01 user's config.ini as kao-extract's
//! options. The file is read with configparser's rules (kao_pipeline::face01); each key with
//! a kao meaning sets its option unless the command line gives that option, keys that map
//! only approximately are warnings, keys whose effect kao lacks are refused, and the
//! display-only keys are named in one line.

use anyhow::{Result, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;
use kao_networks::detector::DetectorKind;
use kao_networks::embedder::EmbedderKind;
use kao_pipeline::face01::{self, Detector, EmbedderSetting};

use crate::Args;

/// Applies the config file's section to `args`, where `matches` says which options the
/// command line gave; `say` prints a line for the user.
pub fn apply(args: &mut Args, matches: &ArgMatches, say: &mut dyn FnMut(&str)) -> Result<()> {
    let Some(path) = args.face01_config.clone() else {
        return Ok(());
    };
    let config = face01::read(&path)?;
    let section = config.section(&args.face01_section)?;
    let mapping = face01::map(&section)?;
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);

    if let Some(embedder) = &mapping.embedder
        && !given("embedder")
    {
        args.embedder.embedder = match embedder {
            EmbedderSetting::Dlib => EmbedderKind::Dlib,
            EmbedderSetting::Face01V1 { model: Some(model) } => {
                EmbedderKind::Face01V1(model.clone())
            }
            EmbedderSetting::Face01V1 { model: None } => bail!(
                "{}: [{}] deep_learning_model = 1 asks for JAPANESE FACE V1, which is not at {}: give --embedder face01-v1:PATH",
                path.display(),
                args.face01_section,
                path.parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(face01::FACE01_V1_MODEL_PATH)
                    .display()
            ),
        };
    }
    // The percentage is on the config's embedder's curve: it holds only for that embedder.
    let same_embedder = matches!(
        (&mapping.embedder, &args.embedder.embedder),
        (None | Some(EmbedderSetting::Dlib), EmbedderKind::Dlib)
            | (
                Some(EmbedderSetting::Face01V1 { .. }),
                EmbedderKind::Face01V1(_)
            )
    );
    if let Some(p) = mapping.similar_percentage
        && !given("threshold")
        && !given("similar_percentage")
    {
        if same_embedder {
            args.matching.similar_percentage = Some(p);
        } else {
            eprintln!(
                "kao-extract: warning: {}: similar_percentage = {p} is on the curve of the config's deep_learning_model, not of --embedder {}: using the embedder's default threshold",
                path.display(),
                match &args.embedder.embedder {
                    EmbedderKind::Dlib => "dlib".to_string(),
                    EmbedderKind::Face01V1(m) | EmbedderKind::Onnx(m) => m.display().to_string(),
                }
            );
        }
    }
    if let Some(j) = mapping.jitters
        && !given("jitters")
    {
        args.embed.jitters = j;
    }
    if let Some(d) = mapping.detector
        && !given("detector")
    {
        args.detect.detector = match d {
            Detector::Blazeface => DetectorKind::Blazeface,
            Detector::BlazefaceFull => DetectorKind::BlazefaceFull,
            Detector::Mmod => DetectorKind::Mmod,
        };
    }
    if let Some(s) = mapping.min_score
        && !given("min_score")
    {
        args.detect.min_score = Some(s);
    }
    if let Some(u) = mapping.upsample
        && !given("upsample")
    {
        args.detect.upsample = u;
    }
    if let Some(w) = mapping.detect_width
        && !given("detect_width")
    {
        args.detect.detect_width = Some(w);
    }
    if let Some(n) = mapping.every
        && !given("every")
    {
        args.decode.every = n;
    }
    if let Some(input) = &mapping.input
        && !given("inputs")
    {
        say(&format!("face01 config: movie = {input}"));
        args.inputs = vec![input.as_arg()];
    }
    if let Some(refs) = &mapping.references
        && !given("refs")
    {
        args.matching.refs = vec![refs.clone()];
    }
    say(&format!(
        "face01 config {} [{}]: used {}",
        path.display(),
        args.face01_section,
        if mapping.mapped.is_empty() {
            "no key".to_string()
        } else {
            mapping.mapped.join(", ")
        }
    ));
    for w in &mapping.warnings {
        eprintln!("kao-extract: warning: {w}");
    }
    if !mapping.ignored.is_empty() {
        say(&format!(
            "face01 config: ignored (display-only, or without effect in kao): {}",
            mapping.ignored.join(", ")
        ));
    }
    Ok(())
}
