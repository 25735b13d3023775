//! Times the ResNet embedder at batch 1 and 32: the native CPU executor (what
//! `Device::cpu()` runs), then burn on every compiled-in backend.
//!
//! `cargo run --release -p kao-networks --example bench [--features ndarray,candle,cuda] -- MODEL [ROUNDS]`
//! (MODEL: path of `dlib_face_recognition_resnet_model_v1.dat`). Prints the median
//! milliseconds per face after one warm-up batch, the process CPU time per face, and how
//! far each backend's embedding is from the first one's. The chips are synthetic: speed does
//! not depend on pixel values.

use std::time::Instant;

use kao_image::RgbImage;
use kao_networks::{Device, ResNetEmbedder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: bench MODEL [ROUNDS]")?;
    let rounds: usize = args.next().map_or(Ok(5), |r| r.parse())?;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let mut chip = RgbImage::new(150, 150);
    for (i, p) in chip.data.iter_mut().enumerate() {
        *p = (i * 7 % 251) as u8;
    }
    let devices = Device::compiled();
    // (label, embedder): native first, then burn on each device.
    let mut embedders = vec![(
        "native".to_string(),
        ResNetEmbedder::load(&model, Device::cpu())?,
    )];
    for &device in &devices {
        embedders.push((
            format!("burn {device:?}"),
            ResNetEmbedder::load_on_burn(&model, device)?,
        ));
    }
    let mut first: Option<Vec<[f32; 128]>> = None;
    for (device, embedder) in &embedders {
        let out = embedder.embed(&[chip.view()])?;
        match &first {
            None => first = Some(out),
            Some(reference) => {
                let diff = out[0]
                    .iter()
                    .zip(&reference[0])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                println!("{device}: max |diff| vs native {diff:.2e}");
            }
        }
        for batch in [1, 32] {
            let views = vec![chip.view(); batch];
            embedder.embed(&views)?;
            let cpu_start = cpu_ms();
            let mut times: Vec<f64> = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    embedder
                        .embed(&views)
                        .map(|_| t.elapsed().as_secs_f64() * 1e3 / batch as f64)
                })
                .collect::<Result<_, _>>()?;
            let cpu = match (cpu_start, cpu_ms()) {
                (Some(a), Some(b)) => format!("{:.1}", (b - a) / (rounds * batch) as f64),
                _ => "n/a".into(),
            };
            times.sort_by(f64::total_cmp);
            println!(
                "{device} batch {batch}: {:.2} ms/face median ({:.2}..{:.2}, {rounds} rounds); process CPU {cpu} ms/face",
                times[rounds / 2],
                times[0],
                times[rounds - 1]
            );
        }
    }
    Ok(())
}

/// CPU time (user + system, all threads) of this process so far, in ms, from
/// `/proc/self/stat` (Linux; `USER_HZ` is 100). Shows the work done independently of
/// other load on the machine.
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: f64 = rest.next()?.parse().ok()?;
    let stime: f64 = rest.next()?.parse().ok()?;
    Some((utime + stime) * 10.0)
}
