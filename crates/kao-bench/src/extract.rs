//! The main job end to end: kao-extract against the face_recognition pipeline
//! (devdata's baseline_fr.py: dlib HOG, 5-point landmarks, ResNet, tolerance 0.6) on the same
//! clip, every frame, in one run; then kao-extract's peak memory on a 1080p copy of the clip.
//! kao-extract runs several times on each input (its time is the median: this kind of
//! machine varies by 15–30 % from run to run), face_recognition once (it takes minutes).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{ffmpeg, sibling, wait_peak_mb};

/// The face_recognition pipeline's packages: dlib's wheel and the model files face_recognition 1.3.0 uses.
const FR_PACKAGES: &[&str] = &[
    "dlib-bin==20.0.1.post1",
    "face_recognition_models==0.3.0",
    "numpy",
    "pillow",
    "pyarrow",
];
/// face_recognition itself, installed without its dependencies (it asks for `dlib`, a source
/// build; dlib-bin provides the same module).
const FR: &str = "face_recognition==1.3.0";

/// A Python with the face_recognition pipeline's packages, in a venv under `cache` (made once).
fn fr_python(cache: &Path) -> Result<PathBuf> {
    let venv = cache.join("venv-fr");
    let python = venv.join("bin/python");
    let ready = venv.join(".ready");
    if !ready.exists() {
        eprintln!(
            "kao-bench: making {} with {}",
            venv.display(),
            FR_PACKAGES.join(" ")
        );
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?
            .success()
            && Command::new(&python)
                .args(["-m", "pip", "install", "-q"])
                .args(FR_PACKAGES)
                .status()?
                .success()
            && Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--no-deps", FR])
                .status()?
                .success();
        if !ok {
            bail!(
                "could not install the face_recognition pipeline into {}",
                venv.display()
            );
        }
        std::fs::write(&ready, FR_PACKAGES.join("\n"))?;
    }
    Ok(python)
}

/// Runs `cmd` to completion; returns wall seconds and peak resident memory (MB) of the
/// process (polled from /proc, so a child process of it is not counted).
fn measured(cmd: &mut Command) -> Result<(f64, f64)> {
    let started = Instant::now();
    let mut child: Child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{cmd:?}"))?;
    let peak_mb = wait_peak_mb(&mut child)?;
    let secs = started.elapsed().as_secs_f64();
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((secs, peak_mb))
}

/// Runs `cmd` (a kao-extract writing into `out`) `runs` times, each into an empty `out`;
/// returns the median wall seconds, every run's, and the highest peak memory (MB).
fn median_of_runs(cmd: &mut Command, out: &Path, runs: usize) -> Result<(f64, Vec<f64>, f64)> {
    let mut secs = Vec::with_capacity(runs);
    let mut peak = 0f64;
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(out);
        let (s, mb) = measured(cmd)?;
        secs.push(s);
        peak = peak.max(mb);
    }
    let mut sorted = secs.clone();
    sorted.sort_by(f64::total_cmp);
    Ok((sorted[sorted.len() / 2], secs, peak))
}

/// Every run's wall seconds, for the lines under the table.
fn run_times(secs: &[f64]) -> String {
    let each: Vec<String> = secs.iter().map(|s| format!("{s:.1}")).collect();
    each.join(", ")
}

/// Frames and duration of `video` by ffprobe.
fn probe(video: &Path) -> Result<(u64, f64)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames:format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(video)
        .output()
        .context("running ffprobe")?;
    if !out.status.success() {
        bail!(
            "{}: ffprobe: {}",
            video.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut values = text.split_whitespace().map(|v| v.trim_matches(','));
    let frames = values
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{}: ffprobe gave no frame count", video.display()))?;
    let duration = values
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{}: ffprobe gave no duration", video.display()))?;
    Ok((frames, duration))
}

/// Scores a manifest with devdata's score.py, when it is there; returns "recall / precision".
fn score(python: &Path, scorer: &Path, case: &str, manifest: &Path) -> String {
    let Ok(out) = Command::new(python)
        .arg(scorer)
        .arg(case)
        .arg(manifest)
        .output()
    else {
        return "-".into();
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return "-".into();
    };
    format!("{} / {}", json["recall"], json["precision"])
}

/// The benchmark; `refs` are the reference photos, `case` the score.py case for them.
pub fn bench_extract(
    video: &Path,
    refs: &Path,
    case: &str,
    skip_fr: bool,
    runs: usize,
    cache: &Path,
) -> Result<()> {
    let kao_extract = sibling("kao-extract")?;
    let (frames, duration) = probe(video)?;
    let out = cache.join("extract");
    let _ = std::fs::remove_dir_all(&out);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scorer = video
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("score.py"))
        .filter(|p| p.exists());
    println!(
        "end to end on {} ({frames} frames, {duration:.2} s), every frame, {cores} cores",
        video.display()
    );
    println!(
        "{:<28} {:>8} {:>8} {:>10} {:>9} {:>18}",
        "pipeline", "wall s", "fps", "× realtime", "peak MB", "recall / precision"
    );

    // Reference enrollment is cached by kao (and takes ~2 s in baseline_fr.py): warm it first
    // so both pipelines are timed on the video.
    let ref_cache = cache.join("ref-cache");
    let warm = out.join("warm");
    measured(
        Command::new(&kao_extract)
            .arg(video)
            .arg("--ref")
            .arg(refs)
            .arg("--ref-cache")
            .arg(&ref_cache)
            .args(["--max-frames", "1", "-q", "--out"])
            .arg(&warm),
    )?;
    // kao-extract on `video` with `extra` options: (median wall s, every run's, peak MB).
    let kao_run = |video: &Path, out: &Path, extra: &[&str]| {
        median_of_runs(
            Command::new(&kao_extract)
                .arg(video)
                .arg("--ref")
                .arg(refs)
                .arg("--ref-cache")
                .arg(&ref_cache)
                .arg("-q")
                .args(extra)
                .arg("--out")
                .arg(out),
            out,
            runs,
        )
    };
    let kao_out = out.join("kao");
    let (kao_secs, kao_runs, kao_mb) = kao_run(video, &kao_out, &[])?;
    let exact_out = out.join("kao-exact");
    let (exact_secs, exact_runs, exact_mb) = kao_run(video, &exact_out, &["--exact"])?;
    let fr_python = if skip_fr {
        None
    } else {
        Some(fr_python(cache)?)
    };
    let kao_score = |out: &Path| match (&scorer, &fr_python) {
        (Some(s), Some(py)) => score(py, s, case, &out.join("manifest.parquet")),
        _ => "-".into(),
    };
    let row = |name: &str, secs: f64, mb: f64, scored: &str| {
        println!(
            "{:<28} {:>8.1} {:>8.1} {:>9.2}× {:>9.0} {:>18}",
            name,
            secs,
            frames as f64 / secs,
            duration / secs,
            mb,
            scored
        );
    };
    row("kao-extract", kao_secs, kao_mb, &kao_score(&kao_out));
    row(
        "kao-extract --exact",
        exact_secs,
        exact_mb,
        &kao_score(&exact_out),
    );
    if let Some(python) = &fr_python {
        let baseline = video
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("baseline_fr.py"))
            .filter(|p| p.exists());
        let Some(baseline) = baseline else {
            bail!("baseline_fr.py not found beside {}", video.display())
        };
        let fr_out = out.join("face_recognition");
        let (fr_secs, fr_mb) = measured(
            Command::new(python)
                .arg(&baseline)
                .arg(video)
                .arg("--ref")
                .arg(refs)
                .arg("--out")
                .arg(&fr_out),
        )?;
        let fr_score = scorer.as_ref().map_or("-".into(), |s| {
            score(python, s, case, &fr_out.join("manifest.parquet"))
        });
        row("face_recognition (HOG, 0.6)", fr_secs, fr_mb, &fr_score);
        println!(
            "kao-extract is {:.1}× faster than the face_recognition pipeline",
            fr_secs / kao_secs
        );
    }

    // Peak memory on 1080p: the same clip scaled up.
    let hd = cache.join(format!(
        "{}_1080p.mp4",
        video.file_stem().and_then(|s| s.to_str()).unwrap_or("clip")
    ));
    if !hd.exists() {
        let tmp = hd.with_extension("part.mp4");
        let ok = ffmpeg()
            .arg("-i")
            .arg(video)
            .args([
                "-vf",
                "scale=1920:1080",
                "-c:v",
                "libx264",
                "-crf",
                "23",
                "-an",
                "-y",
            ])
            .arg(&tmp)
            .status()?
            .success();
        if !ok {
            bail!("ffmpeg could not make {}", hd.display());
        }
        std::fs::rename(&tmp, &hd)?;
    }
    let hd_out = out.join("kao-1080p");
    let (hd_secs, hd_runs, hd_mb) = kao_run(&hd, &hd_out, &[])?;
    row("kao-extract, 1080p copy", hd_secs, hd_mb, "-");
    let hd_exact_out = out.join("kao-1080p-exact");
    let (hd_exact_secs, hd_exact_runs, hd_exact_mb) = kao_run(&hd, &hd_exact_out, &["--exact"])?;
    row(
        "kao-extract --exact, 1080p",
        hd_exact_secs,
        hd_exact_mb,
        "-",
    );
    println!(
        "kao-extract is {:.2}× faster than --exact (1080p: {:.2}×)",
        exact_secs / kao_secs,
        hd_exact_secs / hd_secs
    );
    println!(
        "kao-extract: median of {runs} runs (wall s: {}; --exact: {}; 1080p: {}; 1080p --exact: {})",
        run_times(&kao_runs),
        run_times(&exact_runs),
        run_times(&hd_runs),
        run_times(&hd_exact_runs)
    );
    Ok(())
}
