//! kao-bench: each benchmark runs a kao stage and its anchor on the same input in one run and
//! prints a table with the ratio.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod detect;
mod embed;
mod extract;

/// kao's benchmarks. Each compares a kao stage with its anchor in the same run.
#[derive(Parser, Debug)]
#[command(name = "kao-bench", version)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Decode-to-RGB throughput: kao-decode (records to /dev/null) against
    /// `ffmpeg -i X -f rawvideo -pix_fmt rgb24 -y /dev/null` on the same files.
    Decode {
        /// Frames in each generated test video (720p and 1080p, H.264).
        #[arg(long, default_value_t = 600)]
        frames: u32,
        /// Runs per tool and input; the best (fastest) run is reported.
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Also benchmark these videos (e.g. ../shared/devdata/video/dev_interview.mp4).
        #[arg(long = "video", value_name = "FILE")]
        videos: Vec<PathBuf>,
        /// Where generated videos are kept between runs.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("kao-bench"))]
        cache: PathBuf,
    },
    /// Embedding speed: ms per face at batch 1 and 32, kao's ResNet against dlib's own
    /// (dlib-bin in a venv this benchmark makes) on the same chips; then kao-embed's peak
    /// memory on a stream of face records.
    Embed {
        /// Faces per timing round.
        #[arg(long, default_value_t = 64)]
        faces: usize,
        /// Faces in the kao-embed memory run (0 skips it).
        #[arg(long, default_value_t = 10_000)]
        stream_faces: usize,
        /// Where the dlib venv is kept between runs.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("kao-bench"))]
        cache: PathBuf,
    },
    /// Detection speed: ms per frame at 640×360, 1280×720 and 1920×1080 for BlazeFace short,
    /// full and MMOD, against dlib's HOG and CNN detectors (dlib-bin) on the same frames.
    Detect {
        /// Video to take frames from (one per second), e.g. tests/fixtures/sample.mp4.
        #[arg(long, default_value = "tests/fixtures/sample.mp4")]
        video: PathBuf,
        /// Frames per size.
        #[arg(long, default_value_t = 4)]
        frames: usize,
        /// Passes over the frames.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Where the dlib venv is kept between runs.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("kao-bench"))]
        cache: PathBuf,
        /// Time kao's detectors only (no dlib anchors, no MMOD): for quick comparisons.
        #[arg(long)]
        no_anchor: bool,
    },
    /// The main job end to end: kao-extract against the face_recognition pipeline (devdata's
    /// baseline_fr.py in a venv this benchmark makes) on the same clip, every frame, with
    /// both scored by devdata's score.py, and kao-extract --exact (every network on every
    /// frame and face) in the same run; then the same two on a 1080p copy.
    Extract {
        /// The clip.
        #[arg(long, default_value = "../shared/devdata/video/dev_interview.mp4")]
        video: PathBuf,
        /// Reference photos of the target.
        #[arg(long = "ref", default_value = "../shared/devdata/refs/katy")]
        refs: PathBuf,
        /// score.py's case for the clip and references.
        #[arg(long, default_value = "dev_interview_katy")]
        case: String,
        /// Skip the face_recognition pipeline (it takes minutes).
        #[arg(long)]
        no_baseline: bool,
        /// kao-extract runs per input; the table shows the median wall time (and the
        /// highest peak memory), and every run's time is printed.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where the venv, outputs and the 1080p copy are kept.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("kao-bench"))]
        cache: PathBuf,
    },
}

fn main() {
    kao_record::cli::init_logging("kao-bench");
    let args = Args::parse();
    println!("{}", machine());
    let result = match args.bench {
        Bench::Decode {
            frames,
            runs,
            videos,
            cache,
        } => bench_decode(frames, runs.max(1), &videos, &cache),
        Bench::Embed {
            faces,
            stream_faces,
            cache,
        } => embed::bench_embed(faces.max(1), stream_faces, &cache),
        Bench::Detect {
            video,
            frames,
            rounds,
            cache,
            no_anchor,
        } => detect::bench_detect(&video, frames.max(1), rounds.max(1), &cache, !no_anchor),
        Bench::Extract {
            video,
            refs,
            case,
            no_baseline,
            runs,
            cache,
        } => extract::bench_extract(&video, &refs, &case, no_baseline, runs.max(1), &cache),
    };
    if let Err(e) = result {
        eprintln!("kao-bench: {}", kao_record::cli::one_line(&e));
        std::process::exit(1);
    }
}

/// A kao binary built alongside this one.
fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found: build the workspace first (cargo build --release)",
            path.display()
        );
    }
    Ok(path)
}

fn ffmpeg() -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-v", "error", "-nostdin"]);
    cmd
}

/// Generates (once) an H.264 test video of `frames` frames at `width`x`height`, 30 fps.
fn test_video(cache: &Path, width: u32, height: u32, frames: u32) -> Result<PathBuf> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let path = cache.join(format!("testsrc2_{width}x{height}_{frames}.mp4"));
    if path.exists() {
        return Ok(path);
    }
    let tmp = path.with_extension("part.mp4");
    eprintln!("kao-bench: generating {}", path.display());
    let status = ffmpeg()
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={width}x{height}:rate=30"),
        ])
        .args([
            "-frames:v",
            &frames.to_string(),
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-y",
        ])
        .arg(&tmp)
        .status()
        .context("running ffmpeg (scripts/deps.sh installs it)")?;
    if !status.success() {
        bail!("ffmpeg could not generate {}", path.display());
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Waits for `child` to end, polling its peak resident memory (VmHWM, in MB) from /proc;
/// memory of its own child processes is not counted.
fn wait_peak_mb(child: &mut std::process::Child) -> Result<f64> {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    while child.try_wait()?.is_none() {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok());
            peak_kb = peak_kb.max(hwm.unwrap_or(0));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(peak_kb as f64 / 1024.0)
}

/// Runs `cmd` with stdout to /dev/null and returns the wall time in seconds.
fn time(cmd: &mut Command) -> Result<f64> {
    let started = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(secs)
}

/// Frames kao-decode emits for `video` (its --verbose summary).
fn count_frames(kao_decode: &Path, video: &Path) -> Result<u64> {
    let out = Command::new(kao_decode)
        .arg(video)
        .arg("--verbose")
        .stdout(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| {
            l.split(": ")
                .nth(2)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
        })
        .with_context(|| {
            format!(
                "no frame count from kao-decode on {}: {text}",
                video.display()
            )
        })
}

fn bench_decode(frames: u32, runs: u32, videos: &[PathBuf], cache: &Path) -> Result<()> {
    let kao_decode = sibling("kao-decode")?;
    let mut inputs = vec![
        test_video(cache, 1280, 720, frames)?,
        test_video(cache, 1920, 1080, frames)?,
    ];
    inputs.extend(videos.iter().cloned());
    println!(
        "decode to RGB24, best of {runs} runs, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<40} {:>7} {:>12} {:>12} {:>7}",
        "input", "frames", "ffmpeg fps", "kao fps", "ratio"
    );
    for video in &inputs {
        let n = count_frames(&kao_decode, video)? as f64;
        let mut best_ffmpeg = f64::INFINITY;
        let mut best_kao = f64::INFINITY;
        for _ in 0..runs {
            let ff = time(ffmpeg().arg("-i").arg(video).args([
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-y",
                "/dev/null",
            ]))?;
            best_ffmpeg = best_ffmpeg.min(ff);
            best_kao = best_kao.min(time(Command::new(&kao_decode).arg(video))?);
        }
        let name = video.file_name().map_or_else(
            || video.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        println!(
            "{:<40} {:>7} {:>12.1} {:>12.1} {:>6.2}x",
            name,
            n,
            n / best_ffmpeg,
            n / best_kao,
            best_ffmpeg / best_kao
        );
    }
    Ok(())
}

/// One line naming the machine a table was measured on: the CPU as the kernel reports it
/// (model name, x86 family and model, clock), the cores this process may use and the CPU
/// level kao's kernels run at (`KAO_CPU`). Machines of one name differ by 2× (a first-generation
/// EPYC against a later one), so every table says which it came from.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let level = kao_networks::CpuLevel::from_env().map_or_else(
        |e| format!("KAO_CPU invalid: {e}"),
        |l| l.name().to_string(),
    );
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let cpu = match (
        field("model name"),
        field("cpu family"),
        field("model"),
        field("cpu MHz"),
    ) {
        (Some(name), Some(family), Some(model), mhz) => {
            let clock = mhz
                .and_then(|m| m.parse::<f64>().ok())
                .map_or(String::new(), |m| format!(", {:.2} GHz", m / 1000.0));
            format!("{name} (family {family} model {model}{clock})")
        }
        (Some(name), ..) => name,
        _ => std::env::consts::ARCH.to_string(),
    };
    format!("machine: {cpu}, {cores} cores, kao CPU level {level}")
}
