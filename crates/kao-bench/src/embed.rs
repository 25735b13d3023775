//! `kao-bench embed`: kao's ResNet against dlib's on the same chips, and kao-embed's memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kao_image::{RgbImage, RgbView};
use kao_networks::{Device, ResNetEmbedder};
use kao_record::schema::{FaceRow, FrameMeta, face_batch, face_schema};
use kao_record::{Provenance, RecordWriter};

use crate::{sibling, wait_peak_mb};

/// The dlib build the anchor uses (PyPI wheel, CPU).
const DLIB_BIN: &str = "dlib-bin==20.0.1.post1";
/// The anchor script.
const ANCHOR: &str = include_str!("../anchors/dlib_embed.py");
/// Our golden data: dlib's astronaut photo and its 150×150 chip (uint8 .npy).
/// dlib's 5 landmarks on the astronaut.
const LANDMARKS: [f32; 10] = [
    255.0, 104.0, 238.0, 105.0, 195.0, 101.0, 212.0, 103.0, 224.0, 135.0,
];

/// A Python with dlib-bin and numpy, in a venv under `cache` (made once).
pub fn dlib_python(cache: &Path) -> Result<PathBuf> {
    let venv = cache.join("venv-dlib");
    let python = venv.join("bin/python");
    let ready = venv.join(".ready");
    if !ready.exists() {
        eprintln!("kao-bench: making {} with {DLIB_BIN}", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?
            .success()
            && Command::new(&python)
                .args(["-m", "pip", "install", "-q", "numpy", DLIB_BIN])
                .status()?
                .success();
        if !ok {
            bail!("could not install {DLIB_BIN} into {}", venv.display());
        }
        std::fs::write(&ready, DLIB_BIN)?;
    }
    Ok(python)
}

/// Best-of-3 milliseconds per face for kao at `batch`.
fn kao_ms(embedder: &ResNetEmbedder, chip: &RgbImage, faces: usize, batch: usize) -> Result<f64> {
    let views: Vec<RgbView<'_>> = vec![chip.view(); faces];
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        for chunk in views.chunks(batch) {
            embedder.embed(chunk)?;
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e3 / faces as f64);
    }
    Ok(best)
}

/// Runs the embedder comparison and the memory run.
pub fn bench_embed(faces: usize, stream_faces: usize, cache: &Path) -> Result<()> {
    std::fs::create_dir_all(cache)?;
    let model = kao_model_files::locate("dlib-resnet")?;
    let chip_path = kao_testdata::golden("chip150.npy");
    let (width, height, data) = kao_testdata::read_rgb(&chip_path);
    if (width, height) != (150, 150) {
        bail!("{}: not a 150×150 RGB chip", chip_path.display());
    }
    let chip = RgbImage {
        width,
        height,
        data,
    };
    let embedder = ResNetEmbedder::load(&model.path, Device::cpu())?;
    embedder.embed(&[chip.view()])?;
    let kao = [
        kao_ms(&embedder, &chip, faces, 1)?,
        kao_ms(&embedder, &chip, faces, 32)?,
    ];

    let script = cache.join("dlib_embed.py");
    std::fs::write(&script, ANCHOR)?;
    let out = Command::new(dlib_python(cache)?)
        .arg(&script)
        .arg(&model.path)
        .arg(&chip_path)
        .arg(faces.to_string())
        .output()?;
    if !out.status.success() {
        bail!(
            "dlib anchor failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("dlib anchor output")?;
    let dlib = [
        json["batch1_ms"].as_f64().context("batch1_ms")?,
        json["batch32_ms"].as_f64().context("batch32_ms")?,
    ];

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "embed: ms per face, best of 3 rounds of {faces} faces, {cores} cores, kao's native CPU executor"
    );
    println!(
        "{:<8} {:>10} {:>10} {:>14}",
        "batch", "dlib", "kao", "kao/dlib time"
    );
    for (i, batch) in [1, 32].iter().enumerate() {
        println!(
            "{:<8} {:>10.2} {:>10.2} {:>13.3}x",
            batch,
            dlib[i],
            kao[i],
            kao[i] / dlib[i]
        );
    }
    if stream_faces > 0 {
        let (peak_mb, secs) = stream_memory(stream_faces)?;
        println!(
            "kao-embed on a stream of {stream_faces} face records: peak RSS {peak_mb:.0} MB, {:.1} faces/s",
            stream_faces as f64 / secs
        );
    }
    Ok(())
}

/// Peak resident memory (MB) and wall time of kao-embed on `faces` face records piped in.
fn stream_memory(faces: usize) -> Result<(f64, f64)> {
    let (_, _, pixels) = kao_testdata::read_rgb(&kao_testdata::golden("astronaut.npy"));
    // A 240×250 patch around the face, as kao-detect would cut it.
    let (x0, y0, w, h) = (120usize, 10usize, 240usize, 250usize);
    let mut patch = Vec::with_capacity(w * h * 3);
    for y in y0..y0 + h {
        patch.extend_from_slice(&pixels[(y * 512 + x0) * 3..(y * 512 + x0 + w) * 3]);
    }
    let schema = face_schema(&Provenance::new(
        "kao-bench",
        env!("CARGO_PKG_VERSION"),
        serde_json::Value::Null,
    ))
    .map_err(anyhow::Error::msg)?;
    let mut child = Command::new(sibling("kao-embed")?)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdin = child.stdin.take().context("kao-embed stdin")?;
    let started = Instant::now();
    let writer = std::thread::spawn(move || -> Result<()> {
        let mut out = RecordWriter::stream("kao-embed stdin", Box::new(stdin), &schema)?;
        let per_frame = 10;
        for frame_index in 0..faces.div_ceil(per_frame) {
            let frame = FrameMeta {
                source: "astronaut".into(),
                frame_index: frame_index as u64,
                pts: 0.0,
                width: 512,
                height: 512,
            };
            let n = per_frame.min(faces - frame_index * per_frame);
            let rows: Vec<FaceRow> = (0..n)
                .map(|i| FaceRow {
                    face_index: i as u32,
                    x: 175.0,
                    y: 76.0,
                    w: 91.0,
                    h: 91.0,
                    score: 1.0,
                    landmarks: LANDMARKS,
                    patch: patch.clone(),
                    patch_x: x0 as i32,
                    patch_y: y0 as i32,
                    patch_w: w as u32,
                    patch_h: h as u32,
                    track_id: None,
                })
                .collect();
            out.write(&face_batch(&schema, &frame, rows)?)?;
        }
        out.finish()?;
        Ok(())
    });
    let peak_mb = wait_peak_mb(&mut child)?;
    let secs = started.elapsed().as_secs_f64();
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("record writer panicked"))??;
    if !child.wait()?.success() {
        bail!("kao-embed failed on the face stream");
    }
    Ok((peak_mb, secs))
}
