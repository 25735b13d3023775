//! Times the face detectors (BlazeFace short and full range, dlib's MMOD) per frame at
//! 640×360, 1280×720 and 1920×1080: BlazeFace on the native CPU executor (what
//! `Device::cpu()` runs), then every detector on burn on every compiled-in backend.
//!
//! `cargo run --release -p kao-networks --example detect_bench [--features cuda] -- MODELS_DIR [ROUNDS]`
//! (MODELS_DIR holds `face_detection_{short,full}_range.tflite` and
//! `mmod_human_face_detector.dat`). Prints the median wall milliseconds per frame of
//! `FaceDetector::detect` after one warm-up frame, the process CPU time per frame, and
//! the part of the wall time spent in pre-processing (`blazeface::processing`'s letterbox
//! resize, or `mmod::processing`'s pyramid canvas). MMOD runs `ROUNDS.div_ceil(4)` rounds. The frames are
//! synthetic: the network cost does not depend on pixel values.

use std::path::Path;
use std::time::Instant;

use kao_image::{RgbImage, RgbView};
use kao_model_files::dat::MmodModel;
use kao_networks::blazeface::processing::{BlazeFace, BlazeFaceConfig};
use kao_networks::mmod::processing::MmodInput;
use kao_networks::{Device, FaceDetector, Range};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: detect_bench MODELS_DIR [ROUNDS]")?;
    let dir = Path::new(&dir);
    let rounds: usize = args.next().map_or(Ok(20), |r| r.parse())?;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let devices = Device::compiled();
    let mmod_input = MmodModel::load(dir.join("mmod_human_face_detector.dat"))?.input;
    let short = BlazeFace::new(BlazeFaceConfig::short_range());
    let full = BlazeFace::new(BlazeFaceConfig::full_range());
    let short_model = dir.join("face_detection_short_range.tflite");
    let full_model = dir.join("face_detection_full_range.tflite");
    let mut engines = vec![(
        "native".to_string(),
        vec![
            (
                "blazeface-short",
                FaceDetector::blazeface(&short_model, Range::Short, Device::cpu())?,
                rounds,
            ),
            (
                "blazeface-full",
                FaceDetector::blazeface(&full_model, Range::Full, Device::cpu())?,
                rounds,
            ),
        ],
    )];
    for &device in &devices {
        engines.push((
            format!("burn {device:?}"),
            vec![
                (
                    "blazeface-short",
                    FaceDetector::blazeface_on_burn(&short_model, Range::Short, device)?,
                    rounds,
                ),
                (
                    "blazeface-full",
                    FaceDetector::blazeface_on_burn(&full_model, Range::Full, device)?,
                    rounds,
                ),
                (
                    "mmod",
                    FaceDetector::mmod(dir.join("mmod_human_face_detector.dat"), device, 0)?,
                    rounds.div_ceil(4),
                ),
            ],
        ));
    }
    for (device, detectors) in &engines {
        for (width, height) in [(640, 360), (1280, 720), (1920, 1080)] {
            let mut frame = RgbImage::new(width, height);
            for (i, p) in frame.data.iter_mut().enumerate() {
                *p = (i * 7 % 251) as u8;
            }
            let view = frame.view();
            for (name, detector, rounds) in detectors {
                let pre = |v: &RgbView<'_>| -> Result<(), Box<dyn std::error::Error>> {
                    match *name {
                        "blazeface-short" => drop(short.preprocess(v)?),
                        "blazeface-full" => drop(full.preprocess(v)?),
                        _ => drop(MmodInput::new(v, &mmod_input)?),
                    }
                    Ok(())
                };
                let (wall, cpu) = time(*rounds, || {
                    detector.detect(&view).map(drop).map_err(Into::into)
                })?;
                let (pre_wall, _) = time(*rounds, || pre(&view))?;
                println!(
                    "{device} {name:>15} {width}x{height}: {wall:7.2} ms/frame median ({rounds} rounds), \
                     CPU {cpu:7.2} ms/frame, pre-processing {pre_wall:6.2} ms"
                );
            }
        }
    }
    Ok(())
}

/// Median wall ms and mean process CPU ms of `rounds` calls of `f`, after one warm-up.
fn time(
    rounds: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    f()?;
    let cpu_start = cpu_ms();
    let mut times = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f().map(|()| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<Vec<f64>, _>>()?;
    let cpu = match (cpu_start, cpu_ms()) {
        (Some(a), Some(b)) => (b - a) / rounds as f64,
        _ => f64::NAN,
    };
    times.sort_by(f64::total_cmp);
    Ok((times[rounds / 2], cpu))
}

/// CPU time (user + system, all threads) of this process so far, in ms, from
/// `/proc/self/stat` (Linux; `USER_HZ` is 100).
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: f64 = rest.next()?.parse().ok()?;
    let stime: f64 = rest.next()?.parse().ok()?;
    Some((utime + stime) * 10.0)
}
