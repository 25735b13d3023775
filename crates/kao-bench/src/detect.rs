//! `kao-bench detect`: kao's detectors against dlib's HOG and CNN detectors on the same frames.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kao_image::RgbView;
use kao_networks::{Device, FaceDetector, Range};

use crate::embed::dlib_python;

/// The anchor script.
const ANCHOR: &str = include_str!("../anchors/dlib_detect.py");
/// Frame sizes of the benchmark.
const SIZES: [(usize, usize); 3] = [(640, 360), (1280, 720), (1920, 1080)];

/// `frames` RGB frames of `video` scaled to `w`×`h` (one per second), via the ffmpeg CLI.
fn frames(video: &Path, w: usize, h: usize, frames: usize) -> Result<Vec<Vec<u8>>> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-nostdin", "-i"])
        .arg(video)
        .args([
            "-vf",
            &format!("fps=1,scale={w}:{h}"),
            "-frames:v",
            &frames.to_string(),
        ])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .context("running ffmpeg")?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!("ffmpeg could not read frames from {}", video.display());
    }
    Ok(out
        .stdout
        .chunks_exact(w * h * 3)
        .map(<[u8]>::to_vec)
        .collect())
}

/// Writes frames as a uint8 `.npy` of shape (n, h, w, 3) for the dlib anchor.
fn write_npy(path: &Path, frames: &[Vec<u8>], w: usize, h: usize) -> Result<()> {
    let mut header = format!(
        "{{'descr': '|u1', 'fortran_order': False, 'shape': ({}, {h}, {w}, 3), }}",
        frames.len()
    );
    while (header.len() + 11) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for f in frames {
        bytes.extend_from_slice(f);
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Median milliseconds per frame of `detector` over `rounds` passes, and faces per pass.
fn kao_ms(
    detector: &FaceDetector,
    frames: &[Vec<u8>],
    w: usize,
    h: usize,
    rounds: usize,
) -> Result<(f64, usize)> {
    let views: Vec<RgbView<'_>> = frames
        .iter()
        .map(|f| RgbView::new(w, h, f).expect("frame size"))
        .collect();
    detector.detect(&views[0])?;
    let mut times = Vec::new();
    let mut faces = 0;
    for _ in 0..rounds {
        for v in &views {
            let t = Instant::now();
            faces += detector.detect(v)?.len();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], faces / rounds))
}

/// Milliseconds per frame with one clone of `detector` per core, each on its share of
/// `rounds` passes over `frames` (how kao-extract's detection workers run): throughput,
/// not latency.
fn kao_side_by_side_ms(
    detector: &FaceDetector,
    frames: &[Vec<u8>],
    w: usize,
    h: usize,
    rounds: usize,
) -> Result<f64> {
    let views: Vec<RgbView<'_>> = frames
        .iter()
        .map(|f| RgbView::new(w, h, f).expect("frame size"))
        .collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = views.len() * rounds.max(workers);
    detector.detect(&views[0])?;
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|k| {
                let (detector, views) = (detector.clone(), &views);
                scope.spawn(move || -> Result<()> {
                    for j in (k..jobs).step_by(workers) {
                        detector.detect(&views[j % views.len()])?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a detection worker panicked"))??;
        }
        Ok(())
    })?;
    Ok(start.elapsed().as_secs_f64() * 1e3 / jobs as f64)
}

/// `kao-bench detect --no-anchor`: the BlazeFace columns of the full table.
fn bench_blazeface(
    video: &Path,
    count: usize,
    rounds: usize,
    detectors: &[(&str, FaceDetector)],
) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "detect: median ms per frame, {count} frames of {} × {rounds} rounds, {cores} cores",
        video.display()
    );
    println!(
        "{:<10} {:>10} {:>15} {:>10} {:>15} {:>11}",
        "frame",
        "blazeface",
        "blazeface-full",
        format!("full ×{cores}"),
        "full on burn",
        "native/burn"
    );
    for (w, h) in SIZES {
        let frames = frames(video, w, h, count)?;
        let ms = detectors
            .iter()
            .map(|(_, d)| kao_ms(d, &frames, w, h, rounds).map(|(ms, _)| ms))
            .collect::<Result<Vec<f64>>>()?;
        let side_by_side = kao_side_by_side_ms(&detectors[1].1, &frames, w, h, rounds)?;
        println!(
            "{:<10} {:>10.1} {:>15.1} {:>10.1} {:>15.1} {:>10.2}x",
            format!("{w}x{h}"),
            ms[0],
            ms[1],
            side_by_side,
            ms[2],
            ms[1] / ms[2]
        );
    }
    Ok(())
}

/// Runs the comparison on `count` frames of `video` at each size; without `anchors`,
/// kao's BlazeFace detectors only.
pub fn bench_detect(
    video: &Path,
    count: usize,
    rounds: usize,
    cache: &Path,
    anchors: bool,
) -> Result<()> {
    std::fs::create_dir_all(cache)?;
    let cpu = Device::cpu();
    let short = kao_model_files::locate("blazeface-short")?;
    let full = kao_model_files::locate("blazeface-full")?;
    let mmod = kao_model_files::locate("dlib-mmod")?;
    let detectors = [
        (
            "blazeface",
            FaceDetector::blazeface(&short.path, Range::Short, cpu)?,
        ),
        (
            "blazeface-full",
            FaceDetector::blazeface(&full.path, Range::Full, cpu)?,
        ),
        (
            "blazeface-full on burn",
            FaceDetector::blazeface_on_burn(&full.path, Range::Full, cpu)?,
        ),
        ("mmod", FaceDetector::mmod(&mmod.path, cpu, 0)?),
    ];
    if !anchors {
        return bench_blazeface(video, count, rounds, &detectors[..3]);
    }
    let python = dlib_python(cache)?;
    let script = cache.join("dlib_detect.py");
    std::fs::write(&script, ANCHOR)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "detect: median ms per frame, {count} frames of {} × {rounds} rounds, {cores} cores, kao's BlazeFace native, MMOD on burn {cpu:?}",
        video.display()
    );
    println!(
        "(full ×{cores}: ms per frame with {cores} BlazeFace-full detectors side by side, throughput; burn: BlazeFace-full's network on burn-flex)"
    );
    println!(
        "{:<10} {:>10} {:>15} {:>10} {:>15} {:>11} {:>10} {:>10} {:>10} {:>14}",
        "frame",
        "blazeface",
        "blazeface-full",
        format!("full ×{cores}"),
        "full on burn",
        "native/burn",
        "kao mmod",
        "dlib hog",
        "dlib cnn",
        "mmod kao/dlib"
    );
    for (w, h) in SIZES {
        let frames = frames(video, w, h, count)?;
        let mut kao = Vec::new();
        for (_, detector) in &detectors {
            kao.push(kao_ms(detector, &frames, w, h, rounds)?);
        }
        let side_by_side = kao_side_by_side_ms(&detectors[1].1, &frames, w, h, rounds)?;
        let npy = cache.join(format!("frames_{w}x{h}.npy"));
        write_npy(&npy, &frames, w, h)?;
        let out = Command::new(&python)
            .arg(&script)
            .arg(&mmod.path)
            .arg(&npy)
            .arg(rounds.to_string())
            .output()?;
        if !out.status.success() {
            bail!(
                "dlib anchor failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("dlib anchor output")?;
        let (hog, cnn) = (
            json["hog_ms"].as_f64().context("hog_ms")?,
            json["cnn_ms"].as_f64().context("cnn_ms")?,
        );
        println!(
            "{:<10} {:>10.1} {:>15.1} {:>10.1} {:>15.1} {:>10.2}x {:>10.1} {:>10.1} {:>10.1} {:>13.2}x",
            format!("{w}x{h}"),
            kao[0].0,
            kao[1].0,
            side_by_side,
            kao[2].0,
            kao[1].0 / kao[2].0,
            kao[3].0,
            hog,
            cnn,
            kao[3].0 / cnn
        );
        println!(
            "{:<10} {:>10} {:>15} {:>10} {:>15} {:>11} {:>10} {:>10} {:>10}   (faces found per pass)",
            "",
            kao[0].1,
            kao[1].1,
            "",
            kao[2].1,
            "",
            kao[3].1,
            json["hog_faces"],
            json["cnn_faces"]
        );
    }
    Ok(())
}
