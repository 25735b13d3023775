//! A video to look at: a kao run's faces drawn on its source frames, encoded as H.264.
//!
//! Every frame of each video (of the range the run processed) is decoded again, the
//! manifest's faces are drawn on it — a box, the name or cluster, the similarity and the
//! track — and the frame is encoded at the source's frame rate and time base, with the
//! source's frame times counted from the first frame drawn (later videos follow on). A face exists
//! only on the frames the run processed (`--every`, `--fps`): its box stays on the frames
//! after it until the next processed frame, which shows its own faces (or none).

#![forbid(unsafe_code)]

pub mod draw;
pub mod faces;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kao_video::{DecodeOptions, EncodeOptions, Encoder, Verdict};

use crate::draw::{Canvas, FaceBox, Style};
use crate::faces::{Faces, Frames};

/// The preview's conventional name in an output folder, which kao-report links.
pub const PREVIEW: &str = "preview.mp4";

/// libx264's constant rate factor kao uses unless told otherwise (visually clean, ~250 kB
/// for the 8 s 720p sample).
pub const DEFAULT_CRF: u8 = 20;

/// What to render.
pub struct Preview<'a> {
    /// The run: an output folder or its manifest file.
    pub manifest: &'a Path,
    /// The videos to draw, in this order, each matched to the manifest's `source` as
    /// recorded or by file name; empty: every video of the manifest.
    pub videos: &'a [String],
    /// Where else to look for a video not found as recorded (see [`kao_video::locate`]).
    pub video_dir: Option<&'a Path>,
    /// The file to write (`.mp4`, `.mov` or `.mkv`).
    pub out: &'a Path,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Set to stop early; the output is then not written.
    pub stop: Option<&'a AtomicBool>,
    /// libx264's constant rate factor.
    pub crf: u8,
}

/// What a finished preview holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The file written.
    pub path: PathBuf,
    /// Videos drawn.
    pub videos: usize,
    /// Frames encoded.
    pub frames: u64,
    /// Face boxes drawn, counting a box held over several frames once per frame.
    pub boxes: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// One video to draw: where to read it and its faces.
struct Job<'a> {
    /// Where it is read.
    input: String,
    faces: Option<&'a Frames>,
}

/// Renders the preview: checks everything it can before decoding (the output's folder and
/// type, the manifest's columns, every video), then writes the file under a temporary name
/// in its folder and renames it into place, so a failed or interrupted run leaves nothing.
/// `say` hears notes (a video read from elsewhere than recorded, one without faces).
pub fn render(p: &Preview<'_>, say: &mut dyn FnMut(&str)) -> Result<Rendered> {
    let started = Instant::now();
    let out = p.out;
    let container = check_output(out)?;
    let faces = Faces::load(p.manifest)?;
    let manifest_dir = faces
        .path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let jobs = jobs(p, &faces, &manifest_dir, say)?;
    kao_video::set_ffmpeg_log_level(kao_video::FfmpegLogLevel::Quiet);
    // Every video must open before anything is written.
    let mut probes = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let probe = kao_video::probe(&job.input).map_err(|e| {
            let missing = !job.input.contains("://") && !Path::new(&job.input).exists();
            let hint = if p.video_dir.is_none() && missing {
                " (--videos DIR says where to look)"
            } else {
                ""
            };
            anyhow::anyhow!("{e}{hint}")
        })?;
        probes.push(probe);
    }
    let sampling = faces.sampling.clone();
    let decode_options = DecodeOptions {
        start: sampling.as_ref().and_then(|s| s.start),
        end: sampling.as_ref().and_then(|s| s.end),
        ..DecodeOptions::default()
    };
    let bar = progress_bar(p.progress, &probes, &decode_options);

    let temp = kao_record::temp_path(out)?;
    let mut state = Encoding {
        temp: &temp,
        container,
        crf: p.crf,
        encoder: None,
        canvas: (0, 0),
        style: Style::for_frame(1, 1),
        offset: 0.0,
        next_start: 0.0,
        frames: 0,
        boxes: 0,
    };
    let result = (|| -> Result<()> {
        for (job, probe) in jobs.iter().zip(&probes) {
            bar.set_message(short_name(&job.input).to_string());
            state.video(job, probe, &decode_options, sampling.as_ref(), p.stop, &bar)?;
            if p.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                bail!("interrupted; no preview written");
            }
        }
        let Some(encoder) = state.encoder.take() else {
            bail!("{}: no frames to draw", out.display());
        };
        encoder.finish()?;
        std::fs::rename(&temp, out).with_context(|| {
            format!(
                "{}: cannot rename {} into place",
                out.display(),
                temp.display()
            )
        })
    })();
    bar.finish_and_clear();
    if let Err(e) = result {
        drop(state.encoder.take());
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(Rendered {
        path: out.to_path_buf(),
        videos: jobs.len(),
        frames: state.frames,
        boxes: state.boxes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Checks that a preview can be written to `out` (an existing folder, a `.mp4`, `.mov` or
/// `.mkv` name) and returns FFmpeg's name for the container.
pub fn check_output(out: &Path) -> Result<&'static str> {
    let container = kao_video::container_for(out).with_context(|| {
        format!(
            "{}: name the preview .mp4, .mov or .mkv (an H.264 video)",
            out.display()
        )
    })?;
    if out.is_dir() {
        bail!("{}: is a folder; name a file", out.display());
    }
    let folder = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!(
            "{}: the folder {} does not exist",
            out.display(),
            folder.display()
        );
    }
    Ok(container)
}

/// The videos to draw and where to read them.
fn jobs<'a>(
    p: &Preview<'_>,
    faces: &'a Faces,
    manifest_dir: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<Job<'a>>> {
    let mut jobs = Vec::new();
    if p.videos.is_empty() {
        if faces.sources.is_empty() {
            bail!(
                "{}: no faces recorded, so no videos named; name the videos to draw",
                faces.path.display()
            );
        }
        for source in &faces.sources {
            let input = kao_video::locate(source, manifest_dir, p.video_dir);
            if &input != source {
                say(&format!("{source} not found as recorded; reading {input}"));
            }
            jobs.push(Job {
                input,
                faces: faces.by_source.get(source),
            });
        }
        return Ok(jobs);
    }
    let file_name = |s: &str| Path::new(s).file_name().map(|n| n.to_owned());
    for video in p.videos {
        let source = if faces.by_source.contains_key(video) {
            Some(video.as_str())
        } else {
            let named: Vec<&String> = faces
                .sources
                .iter()
                .filter(|s| file_name(s).is_some() && file_name(s) == file_name(video))
                .collect();
            match named.as_slice() {
                [one] => Some(one.as_str()),
                [] => None,
                _ => bail!(
                    "{video}: the manifest has several videos of this name ({}); name it as recorded",
                    named
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        };
        if source.is_none() {
            say(&format!(
                "{video}: no faces in the manifest for this video; drawn without boxes"
            ));
        }
        let input = if Path::new(video).exists() || video.contains("://") {
            video.clone()
        } else {
            kao_video::locate(source.unwrap_or(video), manifest_dir, p.video_dir)
        };
        jobs.push(Job {
            input,
            faces: source.and_then(|s| faces.by_source.get(s)),
        });
    }
    Ok(jobs)
}

/// The encoder and the counts across the videos.
struct Encoding<'a> {
    temp: &'a Path,
    container: &'static str,
    crf: u8,
    /// Made at the first frame, whose size the whole preview takes.
    encoder: Option<Encoder>,
    canvas: (usize, usize),
    style: Style,
    /// Added to this video's timestamps.
    offset: f64,
    /// Where the next video starts in the preview's time.
    next_start: f64,
    frames: u64,
    boxes: u64,
}

impl Encoding<'_> {
    /// Draws and encodes every frame of one video.
    fn video(
        &mut self,
        job: &Job<'_>,
        probe: &kao_video::Probe,
        options: &DecodeOptions,
        sampling: Option<&faces::Sampling>,
        stop: Option<&AtomicBool>,
        bar: &ProgressBar,
    ) -> Result<()> {
        let none = Frames::new();
        let frames = job.faces.unwrap_or(&none);
        let mut selector = sampling.map(faces::Sampling::selector);
        let empty: &[FaceBox] = &[];
        let mut held: &[FaceBox] = empty;
        let mut first = true;
        let mut failure: Option<anyhow::Error> = None;
        let duration = probe.rate.map_or(1.0 / 25.0, |r| 1.0 / r);
        let decoded = kao_video::decode(&job.input, options, |mut frame| {
            if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                return ControlFlow::Break(());
            }
            let processed = match selector.as_mut().map(|s| s.judge(frame.index, frame.pts)) {
                None | Some(Verdict::Keep) => true,
                Some(Verdict::Skip) => false,
                // The run stopped here (--max-frames): so does the preview.
                Some(Verdict::Stop) => return ControlFlow::Break(()),
            };
            if processed {
                held = frames.get(&frame.index).map_or(empty, Vec::as_slice);
            }
            if first {
                first = false;
                self.offset = self.next_start - frame.pts;
            }
            let pts = frame.pts + self.offset;
            match self.frame(&mut frame, held, pts, probe) {
                Ok(()) => {
                    bar.inc(1);
                    self.next_start = pts + duration;
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        match decoded {
            Ok(_) => Ok(()),
            // Damage: every frame that decoded was drawn.
            Err(e @ kao_video::DecodeError::Corrupt { .. }) => {
                bar.suspend(|| eprintln!("kao-preview: warning: {e}"));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Draws `faces` on one frame and encodes it at `pts` seconds of the preview.
    fn frame(
        &mut self,
        frame: &mut kao_video::Frame,
        faces: &[FaceBox],
        pts: f64,
        probe: &kao_video::Probe,
    ) -> Result<()> {
        let (w, h) = (frame.width as usize, frame.height as usize);
        if self.encoder.is_none() {
            let frame_rate = probe.frame_rate.unwrap_or((25, 1));
            let time_base = probe.time_base.unwrap_or((frame_rate.1, frame_rate.0));
            let options = EncodeOptions {
                width: frame.width,
                height: frame.height,
                frame_rate,
                time_base,
                crf: self.crf,
                preset: "veryfast",
            };
            // Created only now (FFmpeg opens it), so that failing before leaves nothing.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.temp)
                .with_context(|| format!("{}: cannot create", self.temp.display()))?;
            self.encoder = Some(Encoder::create(self.temp, self.container, &options)?);
            self.canvas = (w, h);
            self.style = Style::for_frame(w, h);
        }
        let mut canvas = Canvas::new(w, h, &mut frame.rgb).context("a frame of the wrong size")?;
        let style = if (w, h) == self.canvas {
            self.style
        } else {
            Style::for_frame(w, h)
        };
        for face in faces {
            canvas.face(face, style);
        }
        self.boxes += faces.len() as u64;
        let encoder = self.encoder.as_mut().expect("made above");
        if (w, h) == self.canvas {
            encoder.push(&frame.rgb, pts)?;
        } else {
            let fitted = fit(&frame.rgb, w, h, self.canvas.0, self.canvas.1);
            encoder.push(&fitted, pts)?;
        }
        self.frames += 1;
        Ok(())
    }
}

/// A `w × h` RGB frame scaled to fit `cw × ch` keeping its shape, centred on black.
fn fit(rgb: &[u8], w: usize, h: usize, cw: usize, ch: usize) -> Vec<u8> {
    let mut out = vec![0u8; cw * ch * 3];
    let scale = (cw as f64 / w as f64).min(ch as f64 / h as f64);
    let (fw, fh) = (
        ((w as f64 * scale).round() as usize).clamp(1, cw),
        ((h as f64 * scale).round() as usize).clamp(1, ch),
    );
    let Some(view) = kao_image::RgbView::new(w, h, rgb) else {
        return out;
    };
    let small = kao_image::resize_bilinear(&view, fw, fh);
    let (x0, y0) = ((cw - fw) / 2, (ch - fh) / 2);
    for y in 0..fh {
        let dst = ((y0 + y) * cw + x0) * 3;
        out[dst..dst + fw * 3].copy_from_slice(&small.data[y * fw * 3..(y + 1) * fw * 3]);
    }
    out
}

fn short_name(input: &str) -> &str {
    Path::new(input)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(input)
}

/// A [`frame_bar`] sized by the frames the videos hold (in the run's time range).
fn progress_bar(show: bool, probes: &[kao_video::Probe], options: &DecodeOptions) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let mut total = 0u64;
    for probe in probes {
        let Some(mut n) = probe.estimated_frames() else {
            continue;
        };
        if let (Some(d), Some(r)) = (probe.duration, probe.rate) {
            let from = options.start.unwrap_or(0.0).clamp(0.0, d);
            let to = options.end.unwrap_or(d).clamp(from, d);
            n = n.min(((to - from) * r).ceil() as u64);
        }
        total += n;
    }
    frame_bar(total)
}

/// The progress bar of kao's long runs (kao-extract, kao-preview), on stderr: `total` frames
/// expected, then the frames done, the rate, a message and the time left.
pub fn frame_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{bar:30} {pos}/{len} frames  {per_sec}  {msg}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_letterboxes_keeping_the_shape() {
        let (w, h) = (4, 2);
        let rgb = vec![200u8; w * h * 3];
        let out = fit(&rgb, w, h, 8, 8);
        assert_eq!(out.len(), 8 * 8 * 3);
        // 8×4 in the middle rows, black above and below.
        assert_eq!(&out[..3], &[0, 0, 0]);
        let mid = (4 * 8 + 4) * 3;
        assert_eq!(&out[mid..mid + 3], &[200, 200, 200]);
    }
}
