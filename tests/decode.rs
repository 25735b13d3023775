//! End-to-end tests of kao-decode on generated fixtures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use arrow_array::{BinaryArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use kao_tests::*;

fn decode(args: &[&str]) -> (Vec<RecordBatch>, std::process::Output) {
    let out = run(kao("kao-decode").args(args));
    let batches = if out.stdout.is_empty() {
        Vec::new()
    } else {
        batches(&out.stdout)
    };
    (batches, out)
}

fn indices(b: &[RecordBatch]) -> Vec<u64> {
    column(b, "frame_index", |a: &UInt64Array, i| a.value(i))
}

fn pts(b: &[RecordBatch]) -> Vec<f64> {
    column(b, "pts", |a: &Float64Array, i| a.value(i))
}

fn pixels(b: &[RecordBatch]) -> Vec<Vec<u8>> {
    column(b, "pixels", |a: &BinaryArray, i| a.value(i).to_vec())
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_pts_equal(ours: &[f64], theirs: &[f64]) {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "frame count: kao {} vs ffprobe {}",
        ours.len(),
        theirs.len()
    );
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!((a - b).abs() < 1e-5, "frame {i}: pts {a} vs ffprobe {b}");
    }
}

/// Mean absolute difference between two byte buffers of equal length.
fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as i32 - *y as i32).unsigned_abs() as f64)
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn constant_rate_video_matches_ffprobe_and_ffmpeg() {
    let path = fixture("cfr.mp4");
    let (b, out) = decode(&[path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stderr.is_empty(),
        "stderr should be quiet: {}",
        stderr(&out)
    );
    assert_eq!(indices(&b), (0..100).collect::<Vec<_>>());
    assert_pts_equal(&pts(&b), &ffprobe_pts(&path));
    assert!(
        column(&b, "width", |a: &UInt32Array, i| a.value(i))
            .iter()
            .all(|&w| w == 320)
    );
    assert!(
        column(&b, "height", |a: &UInt32Array, i| a.value(i))
            .iter()
            .all(|&h| h == 240)
    );
    let sources = column(&b, "source", |a: &StringArray, i| a.value(i).to_string());
    assert!(sources.iter().all(|s| s == path.to_str().unwrap()));
    let ours: Vec<u8> = pixels(&b).concat();
    let theirs = ffmpeg_rgb(&path);
    assert!(
        mean_abs_diff(&ours, &theirs) < 2.0,
        "pixels differ from ffmpeg's rgb24 by {}",
        mean_abs_diff(&ours, &theirs)
    );
}

#[test]
fn variable_rate_video_matches_ffprobe() {
    let path = fixture("vfr.mkv");
    let (b, out) = decode(&[path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let theirs = ffprobe_pts(&path);
    assert_eq!(theirs.len(), 60);
    assert_pts_equal(&pts(&b), &theirs);
    assert_eq!(indices(&b), (0..60).collect::<Vec<_>>());
    // The middle second runs at 10 fps: gaps of 0.1 s between 30 fps stretches.
    let t = pts(&b);
    assert!((t[31] - t[30] - 0.1).abs() < 1e-3 && (t[2] - t[1] - 1.0 / 30.0).abs() < 1e-3);
}

#[test]
fn every_fps_start_end_and_max_frames_select_exact_frames() {
    let cfr = fixture("cfr.mp4");
    let cfr = cfr.to_str().unwrap();
    let (all, _) = decode(&[cfr]);
    let all_pts = pts(&all);

    let (b, out) = decode(&[cfr, "--every", "7"]);
    assert!(out.status.success());
    assert_eq!(indices(&b), (0..100).step_by(7).collect::<Vec<_>>());

    // --start seeks in this constant-rate file; indices and pixels must equal a full decode's.
    let (b, out) = decode(&[cfr, "--start", "2.5", "--end", "3.0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Frame 62 is at 2.48 s, frame 75 at 3.0 s.
    assert_eq!(indices(&b), (63..75).collect::<Vec<_>>());
    assert_pts_equal(&pts(&b), &all_pts[63..75]);
    assert_eq!(pixels(&b), pixels(&all)[63..75]);

    let (b, _) = decode(&[cfr, "--fps", "5", "--max-frames", "4"]);
    assert_eq!(indices(&b), [0, 5, 10, 15]);

    // Variable rate: --start decodes from the beginning, indices stay exact.
    let vfr = fixture("vfr.mkv");
    let (b, out) = decode(&[vfr.to_str().unwrap(), "--start", "2.0"]);
    assert!(out.status.success());
    let expected: Vec<u64> = ffprobe_pts(&vfr)
        .iter()
        .enumerate()
        .filter(|(_, t)| **t >= 2.0 - 1e-6)
        .map(|(i, _)| i as u64)
        .collect();
    assert_eq!(indices(&b), expected);
    // --fps 5 over the 10 fps stretch keeps every other frame.
    let (b, _) = decode(&[
        vfr.to_str().unwrap(),
        "--fps",
        "5",
        "--start",
        "1.0",
        "--end",
        "2.0",
    ]);
    assert_eq!(indices(&b), [30, 32, 34, 36, 38]);
}

#[test]
fn frames_left_undecoded_change_no_selected_frame() {
    // With --fps, --every and --start kao-decode leaves undecoded the non-reference frames
    // (B-frames) the selection drops; the frames it keeps, their indices and pixels must be
    // those of decoding every frame and selecting afterwards. The clips have B-frames (x264's default),
    // B-pyramids and open GOPs, and a variable rate.
    let dir = tempfile::tempdir().unwrap();
    let pyramid = dir.path().join("pyramid.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=30",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-x264-params",
        "bframes=5:b-pyramid=normal:keyint=20:open-gop=1",
        "-pix_fmt",
        "yuv420p",
        pyramid.to_str().unwrap(),
    ]);
    let videos = [
        fixture("cfr.mp4"),
        fixture("vfr.mkv"),
        fixture("sample.mp4"),
        pyramid,
    ];
    let selections: [&[&str]; 10] = [
        &["--fps", "5"],
        &["--fps", "1"],
        &["--fps", "7", "--start", "0.5", "--end", "3.5"],
        &["--fps", "3", "--start", "1.3"],
        &["--start", "2.5"],
        &["--fps", "2", "--max-frames", "3"],
        &["--every", "6"],
        &["--every", "2"],
        &["--every", "5", "--start", "1.3", "--end", "2.9"],
        &["--every", "3", "--fps", "4", "--max-frames", "7"],
    ];
    for video in &videos {
        let video = video.to_str().unwrap();
        let (all, out) = decode(&[video]);
        assert!(out.status.success(), "{}", stderr(&out));
        let (all_indices, all_pts, all_pixels) = (indices(&all), pts(&all), pixels(&all));
        for args in selections {
            let value = |name: &str| {
                let at = args.iter().position(|a| *a == name)?;
                args[at + 1].parse::<f64>().ok()
            };
            let mut selector = kao_video::Selector::new(
                value("--every").map_or(1, |n| n as u64),
                value("--fps"),
                value("--start"),
                value("--end"),
                value("--max-frames").map(|m| m as u64),
            );
            let mut want = Vec::new();
            for (i, (index, pts)) in all_indices.iter().zip(&all_pts).enumerate() {
                match selector.judge(*index, *pts) {
                    kao_video::Verdict::Keep => want.push(i),
                    kao_video::Verdict::Skip => {}
                    kao_video::Verdict::Stop => break,
                }
            }
            let (b, out) = decode(&[&[video], args].concat());
            assert!(out.status.success(), "{video} {args:?}: {}", stderr(&out));
            let want_indices: Vec<u64> = want.iter().map(|i| all_indices[*i]).collect();
            assert_eq!(indices(&b), want_indices, "{video} {args:?}");
            let want_pts: Vec<f64> = want.iter().map(|i| all_pts[*i]).collect();
            assert_pts_equal(&pts(&b), &want_pts);
            let got = pixels(&b);
            for (n, i) in want.iter().enumerate() {
                assert!(
                    got[n] == all_pixels[*i],
                    "{video} {args:?}: frame {}",
                    all_indices[*i]
                );
            }
        }
    }
}

#[test]
fn still_images_are_one_frame_each_and_inputs_are_told_apart() {
    let png = fixture("photos/astronaut.png");
    let jpg = fixture("photos/obama.jpg");
    let webp = fixture("astronaut.webp");
    let args = [
        png.to_str().unwrap(),
        jpg.to_str().unwrap(),
        webp.to_str().unwrap(),
    ];
    let (b, out) = decode(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let sources = column(&b, "source", |a: &StringArray, i| a.value(i).to_string());
    assert_eq!(sources, args);
    assert_eq!(indices(&b), [0, 0, 0]);
    let widths = column(&b, "width", |a: &UInt32Array, i| a.value(i));
    assert_eq!((widths[0], widths[2]), (512, 512));
    // A PNG is already RGB24: the pixels must be exactly the file's.
    assert_eq!(pixels(&b)[0], ffmpeg_rgb(&png));
}

#[test]
fn output_files_round_trip_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let sample = fixture("cfr.mp4");
    let (piped, _) = decode(&[sample.to_str().unwrap(), "--every", "10"]);
    for name in ["frames.parquet", "frames.arrow", "frames.arrows"] {
        let path = dir.path().join(name);
        let out = run(kao("kao-decode")
            .arg(&sample)
            .args(["--every", "10", "-o"])
            .arg(&path));
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let b = read_file(&path);
        assert_eq!(indices(&b), indices(&piped), "{name}");
        assert_eq!(pixels(&b), pixels(&piped), "{name}");
    }
    // kao-cat converts between formats and reads stdin.
    let parquet = dir.path().join("frames.parquet");
    let copy = dir.path().join("copy.arrows");
    let out = run(kao("kao-cat").arg(&parquet).arg("-o").arg(&copy));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(pixels(&read_file(&copy)), pixels(&piped));
    let out = run(kao("kao-cat").arg(&parquet).arg("--summary"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rows: 10") && text.contains("kao-decode"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        4,
        "no temporary files left"
    );
}

#[test]
fn pipe_into_kao_cat_round_trips() {
    let sample = fixture("sample.mp4");
    let mut decoder = kao("kao-decode")
        .arg(&sample)
        .args(["--fps", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("frames.parquet");
    let cat = kao("kao-cat")
        .stdin(decoder.stdout.take().unwrap())
        .arg("-o")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(decoder.wait().unwrap().success());
    assert!(cat.status.success(), "{}", stderr(&cat));
    let b = read_file(&out_path);
    assert_eq!(indices(&b), (0..200).step_by(25).collect::<Vec<_>>());
    let provenance = kao_record::RecordReader::open(Some(&out_path))
        .unwrap()
        .provenance()
        .unwrap();
    assert_eq!(provenance[0].stage, "kao-decode");
    assert_eq!(provenance[0].options["fps"], 1.0);
}

fn assert_one_line_error(out: &std::process::Output, input: &str, words: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status for {input}: {}",
        stderr(out)
    );
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(
        err.contains(input) && err.contains(words),
        "{input}: expected `{words}` in: {err}"
    );
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.mp4");
    let cases = [
        (missing.to_str().unwrap().to_string(), "no such file"),
        (
            fixture("not-a-video.mp4").to_str().unwrap().to_string(),
            "not a video",
        ),
        (
            fixture("unknown-codec.avi").to_str().unwrap().to_string(),
            "unsupported video codec",
        ),
        (dir.path().to_str().unwrap().to_string(), "is a folder"),
        (
            "http://127.0.0.1:9/nothing.mp4".to_string(),
            "Connection refused",
        ),
        (
            "gopher+x://nowhere/x.mp4".to_string(),
            "unsupported URL scheme",
        ),
    ];
    for (input, words) in &cases {
        let (b, out) = decode(&[input]);
        assert_one_line_error(&out, input, words);
        assert!(b.is_empty());
    }
    // With --output, a failed run leaves no file behind.
    let target = dir.path().join("frames.parquet");
    let out = run(kao("kao-decode").arg(&missing).arg("-o").arg(&target));
    assert_eq!(out.status.code(), Some(1));
    assert!(!target.exists());
    // Bad options are usage errors (status 2).
    let out = run(kao("kao-decode").args(["x.mp4", "--every", "0"]));
    assert_eq!(out.status.code(), Some(2));
    let out = run(kao("kao-decode").args(["x.mp4", "--start", "3", "--end", "2"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--end"));
}

/// Cameras are read through FFmpeg's libavdevice, which kao-decode loads only when one is
/// opened (linking it cost every decoding process ~0.12 s of start-up).
#[test]
fn cameras_load_libavdevice_only_when_opened() {
    // A missing camera reaches v4l2 itself: the device's own error, not a missing library
    // or input format.
    let camera = "/dev/video987";
    let (b, out) = decode(&[camera]);
    assert_one_line_error(&out, camera, "No such file or directory");
    assert!(b.is_empty());
    let elf = run(Command::new("readelf")
        .arg("--dynamic")
        .arg(bin("kao-decode")));
    assert!(elf.status.success(), "readelf: {}", stderr(&elf));
    let needed = String::from_utf8_lossy(&elf.stdout);
    assert!(needed.contains("libavformat"), "{needed}");
    assert!(!needed.contains("libavdevice"), "{needed}");
}

#[test]
fn truncated_video_keeps_decoded_frames_and_warns() {
    let path = fixture("truncated.mp4");
    let (b, out) = decode(&[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains("truncated.mp4") && err.contains("at frame"),
        "{err}"
    );
    let n = indices(&b).len();
    assert!(n > 10 && n < 100, "{n} frames from a file cut at 40 %");
    // The frames that decoded are the true frames of the full file.
    let (full, _) = decode(&[fixture("faststart.mp4").to_str().unwrap()]);
    assert_eq!(pixels(&b)[..10], pixels(&full)[..10]);
}

#[test]
fn truncated_video_keeps_every_decodable_frame_with_any_thread_count() {
    // The frames ffprobe decodes from the same file.
    let ffmpeg_frames = ffprobe_pts(&fixture("truncated.mp4")).len();
    let path = fixture("truncated.mp4");
    for threads in ["1", "2", "4", "8"] {
        let (b, out) = decode(&[path.to_str().unwrap(), "--threads", threads]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert_eq!(
            indices(&b).len(),
            ffmpeg_frames,
            "{threads} decoder threads: {}",
            stderr(&out)
        );
    }
}

#[test]
fn closed_stdout_ends_quietly() {
    let mut child = kao("kao-decode")
        .arg(fixture("sample.mp4"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 1000];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "status {:?}", out.status);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

/// Serves one file over HTTP/1.1 on loopback, with byte ranges, until the test ends.
fn serve(path: &Path) -> String {
    let data = std::fs::read(path).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let data = data.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut range: Option<(usize, usize)> = None;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0
                            || header.trim().is_empty()
                        {
                            break;
                        }
                        let lower = header.to_ascii_lowercase();
                        if let Some(spec) = lower.strip_prefix("range: bytes=") {
                            let (a, b) = spec.trim().split_once('-').unwrap();
                            let start: usize = a.parse().unwrap_or(0);
                            let end = b.parse().unwrap_or(data.len() - 1).min(data.len() - 1);
                            range = Some((start, end));
                        }
                    }
                    let (head, body) = match range {
                        Some((s, e)) if s < data.len() => (
                            format!(
                                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{e}/{}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n\r\n",
                                data.len(),
                                e - s + 1
                            ),
                            &data[s..=e],
                        ),
                        _ => (
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n\r\n",
                                data.len()
                            ),
                            &data[..],
                        ),
                    };
                    if stream
                        .write_all(head.as_bytes())
                        .and_then(|_| stream.write_all(body))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!(
        "http://127.0.0.1:{port}/{}",
        path.file_name().unwrap().to_str().unwrap()
    )
}

#[test]
fn http_input_from_loopback_decodes_like_the_file() {
    let path = fixture("cfr.mp4");
    let url = serve(&path);
    let (from_http, out) = decode(&[&url, "--every", "9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (from_file, _) = decode(&[path.to_str().unwrap(), "--every", "9"]);
    assert_eq!(indices(&from_http), indices(&from_file));
    assert_eq!(pixels(&from_http), pixels(&from_file));
    assert_eq!(
        column(&from_http, "source", |a: &StringArray, i| a
            .value(i)
            .to_string())[0],
        url
    );
}

#[test]
fn a_full_disk_and_a_wrong_input_are_one_line_errors_said_once() {
    // /dev/full: every write fails with ENOSPC, as on a full disk.
    let out = run(kao("kao-decode")
        .arg(fixture("sample.mp4"))
        .args(["-o", "/dev/full"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/dev/full: cannot write the records: No space left"),
        "{err}"
    );
    // A video given where records are expected: said once, not once per error in the chain.
    let out = run(kao("kao-detect").arg(fixture("not-a-video.mp4")));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not a valid Arrow record stream"), "{err}");
    assert_eq!(err.matches("Unexpected end of stream").count(), 1, "{err}");
    // FFmpeg's own lines (`[mjpeg @ 0x…] …`) stay out of stderr unless --verbose.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.jpg");
    std::fs::write(&broken, b"not a jpeg").unwrap();
    let out = run(kao("kao-decode").arg(&broken).args(["-o", "/dev/null"]));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains(" @ 0x"), "{err}");
}

/// GStreamer's RTSP server (tests/rtsp_server.py, Debian's python3-gi) serving `path` on a
/// free loopback port: the process and the URL, once it listens.
fn rtsp_server(path: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("/usr/bin/python3")
        .arg(tests_dir().join("rtsp_server.py"))
        .arg(path)
        .arg(port.to_string())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect(
            "/usr/bin/python3 (scripts/deps.sh installs python3-gi and GStreamer's RTSP server)",
        );
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("RTSP server: {line:?}"))
        .to_string();
    (child, url)
}

#[test]
fn rtsp_streams_are_read_and_a_dying_server_keeps_what_came() {
    let sample = fixture("sample.mp4");
    let whole = ffprobe_pts(&sample).len();
    // The whole clip, in real time.
    let (mut server, url) = rtsp_server(&sample, &[]);
    let (b, out) = decode(&[&url]);
    let _ = server.kill();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // RTP over UDP may drop a packet now and then, even on loopback.
    let got = indices(&b).len();
    assert!(
        got <= whole && got * 100 >= whole * 95,
        "{got} of {whole} frames"
    );
    // A server that dies 3 s into the stream: the frames that came, and the truncation status.
    let (mut server, url) = rtsp_server(&sample, &["--die-after", "3"]);
    let (b, out) = decode(&[&url]);
    let _ = server.kill();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("the stream ended after") && err.lines().count() == 1,
        "{err}"
    );
    let got = indices(&b).len();
    assert!(got > 25 && got < whole, "{got} of {whole} frames");
    // kao-extract reads the same stream.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("refs/obama")).unwrap();
    std::fs::copy(
        fixture("photos/obama3.jpg"),
        dir.path().join("refs/obama/obama3.jpg"),
    )
    .unwrap();
    let (mut server, url) = rtsp_server(&sample, &[]);
    let out = run(kao("kao-extract")
        .arg(&url)
        .arg("--ref")
        .arg(dir.path().join("refs"))
        .args([
            "--ref-jitters",
            "1",
            "--no-ref-cache",
            "--every",
            "5",
            "-q",
            "--out",
        ])
        .arg(dir.path().join("out")));
    let _ = server.kill();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = read_file(&dir.path().join("out/manifest.parquet"));
    assert!(rows.iter().map(RecordBatch::num_rows).sum::<usize>() > 0);
}

/// `ffmpeg` with `args`, which must succeed.
fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg (installed by scripts/deps.sh)");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The size and pixels of the one frame kao-decode gives for `path`.
fn decode_one(path: &Path) -> (u32, u32, Vec<u8>) {
    let (b, out) = decode(&[path.to_str().unwrap(), "--max-frames", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let w = column(&b, "width", |a: &UInt32Array, i| a.value(i))[0];
    let h = column(&b, "height", |a: &UInt32Array, i| a.value(i))[0];
    (w, h, pixels(&b).remove(0))
}

/// The first RGB24 frame the ffmpeg CLI decodes from `path` with `filter` (the CLI turns
/// frames as players do).
fn ffmpeg_first(path: &Path, filter: Option<&str>) -> Vec<u8> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-frames:v", "1"]);
    if let Some(f) = filter {
        cmd.args(["-vf", f]);
    }
    let out = cmd
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out.stdout
}

/// `jpeg` with an EXIF block whose Orientation tag is `orientation` (1–8).
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], b"\xff\xd8", "a JPEG");
    // A big-endian TIFF header, one IFD entry: Orientation (0x0112), SHORT, count 1.
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = b"\xff\xd8\xff\xe1".to_vec();
    out.extend_from_slice(&(app1.len() as u16 + 2).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn turned_videos_and_photos_come_out_as_players_show_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfr = fixture("cfr.mp4");
    let (_, _, upright) = decode_one(&cfr);
    // A phone's portrait video: stored sideways, with a display matrix saying how to turn it.
    for (rotate, undo) in [("90", "transpose=cclock"), ("270", "transpose=clock")] {
        let turned = dir.path().join(format!("rotate{rotate}.mp4"));
        let stored = dir.path().join(format!("stored{rotate}.mp4"));
        let redo = if rotate == "90" {
            "transpose=clock"
        } else {
            "transpose=cclock"
        };
        ffmpeg(&[
            "-i",
            cfr.to_str().unwrap(),
            "-frames:v",
            "5",
            "-vf",
            redo,
            "-c:v",
            "libx264",
            "-qp",
            "0",
            stored.to_str().unwrap(),
        ]);
        ffmpeg(&[
            "-i",
            stored.to_str().unwrap(),
            "-c",
            "copy",
            "-metadata:s:v:0",
            &format!("rotate={rotate}"),
            turned.to_str().unwrap(),
        ]);
        let (w, h, ours) = decode_one(&turned);
        assert_eq!((w, h), (320, 240), "rotate={rotate}");
        assert_eq!(ours, ffmpeg_first(&turned, None), "rotate={rotate}");
        // Turned back, the frame is the stored one undone: close to the original frame.
        assert_eq!(ours, ffmpeg_first(&stored, Some(undo)), "rotate={rotate}");
        assert!(mean_abs_diff(&ours, &upright) < 3.0, "rotate={rotate}");
    }
    // A photo with EXIF Orientation 6 (turn 90° clockwise to view) and 8 (counterclockwise).
    let plain = dir.path().join("plain.jpg");
    ffmpeg(&[
        "-i",
        cfr.to_str().unwrap(),
        "-frames:v",
        "1",
        plain.to_str().unwrap(),
    ]);
    let photo = std::fs::read(&plain).unwrap();
    for orientation in [6u16, 8] {
        let path = dir.path().join(format!("exif{orientation}.jpg"));
        std::fs::write(&path, with_exif_orientation(&photo, orientation)).unwrap();
        let (w, h, ours) = decode_one(&path);
        assert_eq!((w, h), (240, 320), "orientation {orientation}");
        assert_eq!(ours, ffmpeg_first(&path, None), "orientation {orientation}");
        let undo = if orientation == 6 {
            "transpose=clock"
        } else {
            "transpose=cclock"
        };
        assert_eq!(
            ours,
            ffmpeg_first(&plain, Some(undo)),
            "orientation {orientation}"
        );
    }
}

#[test]
fn yuv_frames_convert_with_their_own_matrix_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let source = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=5",
        "-frames:v",
        "1",
    ];
    let bt601 = "scale=in_color_matrix=bt601:in_range=tv";
    let bt709 = "scale=in_color_matrix=bt709:in_range=tv";
    // Tagged BT.709 (HD cameras and phones), tagged BT.601 at HD size, and untagged HD, which
    // players show as BT.709.
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "bt709.mp4",
            &[
                "-vf",
                "scale=out_color_matrix=bt709",
                "-colorspace",
                "bt709",
            ],
            bt709,
        ),
        (
            "bt601.mp4",
            &[
                "-vf",
                "scale=out_color_matrix=bt601",
                "-colorspace",
                "smpte170m",
            ],
            bt601,
        ),
        (
            "untagged.mp4",
            &["-vf", "scale=out_color_matrix=bt709"],
            bt709,
        ),
        (
            "full.mp4",
            &[
                "-vf",
                "scale=out_color_matrix=bt709:out_range=pc",
                "-colorspace",
                "bt709",
                "-color_range",
                "pc",
            ],
            "scale=in_color_matrix=bt709:in_range=pc",
        ),
    ];
    for (name, tags, reading) in cases {
        let path = dir.path().join(name);
        let mut args: Vec<&str> = source.to_vec();
        args.extend_from_slice(tags);
        args.extend_from_slice(&["-pix_fmt", "yuv420p", "-c:v", "libx264", "-qp", "0"]);
        args.push(path.to_str().unwrap());
        ffmpeg(&args);
        let (_, _, ours) = decode_one(&path);
        let right = ffmpeg_first(&path, Some(reading));
        assert!(
            mean_abs_diff(&ours, &right) < 0.5,
            "{name}: {} from its own matrix",
            mean_abs_diff(&ours, &right)
        );
        // The test can tell: the other matrix is measurably off.
        let wrong = if reading == bt601 { bt709 } else { bt601 };
        assert!(
            mean_abs_diff(&ours, &ffmpeg_first(&path, Some(wrong))) > 1.0,
            "{name}"
        );
    }
}

/// Three lossless 720 × 480 frames of the sample, their bitstream's pixel aspect `sar`
/// (`0`: none), in MP4 at `path`.
fn dvd_like(path: &Path, sar: &str) {
    ffmpeg(&[
        "-i",
        fixture("cfr.mp4").to_str().unwrap(),
        "-frames:v",
        "3",
        "-vf",
        &format!("scale=720:480,setsar={sar}"),
        "-c:v",
        "libx264",
        "-qp",
        "0",
        path.to_str().unwrap(),
    ]);
}

#[test]
fn non_square_pixels_come_out_square() {
    // A DVD-like frame: 720 × 480 pixels each 32:27 wide (16:9 on screen).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anamorphic.mp4");
    dvd_like(&path, "32/27");
    let (w, h, ours) = decode_one(&path);
    assert_eq!((w, h), (853, 480));
    let theirs = ffmpeg_first(&path, Some("scale=853:480:flags=bicubic"));
    assert!(
        mean_abs_diff(&ours, &theirs) < 1.0,
        "{} from the ffmpeg command's square pixels",
        mean_abs_diff(&ours, &theirs)
    );
    // A bitstream without a pixel aspect takes the container's (MP4/MOV's `pasp` box, where
    // ProRes and DNxHD files keep it), as players do.
    let plain = dir.path().join("plain.mp4");
    dvd_like(&plain, "0");
    let boxed = dir.path().join("pasp.mp4");
    ffmpeg(&[
        "-i",
        plain.to_str().unwrap(),
        "-c",
        "copy",
        "-aspect",
        "16:9",
        boxed.to_str().unwrap(),
    ]);
    assert_eq!(decode_one(&plain).0, 720);
    let (w, h, ours) = decode_one(&boxed);
    assert_eq!((w, h), (853, 480));
    let theirs = ffmpeg_first(&boxed, Some("scale=853:480:flags=bicubic"));
    assert!(
        mean_abs_diff(&ours, &theirs) < 1.0,
        "{} from the ffmpeg command's square pixels (pasp)",
        mean_abs_diff(&ours, &theirs)
    );
    // A photo's pixel aspect (JFIF density) is ignored, as image viewers do.
    let photo = dir.path().join("aspect.jpg");
    ffmpeg(&[
        "-i",
        fixture("cfr.mp4").to_str().unwrap(),
        "-frames:v",
        "1",
        "-vf",
        "setsar=4/3",
        photo.to_str().unwrap(),
    ]);
    assert_eq!(decode_one(&photo).0, 320);
}

/// Of the pixels of the second field (odd rows, between two rows of the first), the share that
/// sticks out from both neighbours the same way by more than 10 luma levels: comb teeth.
fn comb_teeth(rgb: &[u8], width: usize, height: usize) -> f64 {
    let luma = |x: usize, y: usize| {
        let p = &rgb[(y * width + x) * 3..];
        i32::from(p[0]) + 2 * i32::from(p[1]) + i32::from(p[2])
    };
    let (mut teeth, mut all) = (0usize, 0usize);
    for y in (1..height - 1).step_by(2) {
        for x in 0..width {
            let own = luma(x, y);
            teeth += usize::from((luma(x, y - 1) - own) * (luma(x, y + 1) - own) > 1600);
            all += 1;
        }
    }
    teeth as f64 / all as f64
}

#[test]
fn interlaced_frames_lose_their_combing() {
    // Two moving frames woven into one, coded as interlaced H.264 (top field first).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interlaced.mp4");
    ffmpeg(&[
        "-i",
        fixture("cfr.mp4").to_str().unwrap(),
        "-vf",
        "tinterlace=mode=interleave_top",
        "-flags",
        "+ildct+ilme",
        "-c:v",
        "libx264",
        "-qp",
        "0",
        path.to_str().unwrap(),
    ]);
    let (b, out) = decode(&[path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let theirs = ffmpeg_rgb(&path);
    let frame = 320 * 240 * 3;
    let woven: Vec<f64> = theirs
        .chunks_exact(frame)
        .map(|f| comb_teeth(f, 320, 240))
        .collect();
    let ours: Vec<f64> = pixels(&b).iter().map(|f| comb_teeth(f, 320, 240)).collect();
    assert_eq!(ours.len(), woven.len());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&woven) > 0.01,
        "the woven frames comb: {}",
        mean(&woven)
    );
    assert!(
        mean(&ours) < 0.001,
        "kao's frames still comb: {}",
        mean(&ours)
    );
    // The first field is kept as it is.
    for (o, t) in pixels(&b).iter().zip(theirs.chunks_exact(frame)) {
        for y in (0..240).step_by(2) {
            assert_eq!(
                o[y * 960..y * 960 + 960],
                t[y * 960..y * 960 + 960],
                "row {y}"
            );
        }
    }
}

#[test]
fn standard_input_decodes_like_the_file() {
    // `-` reads a video piped in (`yt-dlp -o - URL | kao-decode - | …`).
    let path = fixture("cfr.mp4");
    let (file, _) = decode(&[path.to_str().unwrap()]);
    let out = run(kao("kao-decode")
        .arg("-")
        .stdin(std::fs::File::open(&path).unwrap()));
    assert!(out.status.success(), "{}", stderr(&out));
    let piped = batches(&out.stdout);
    assert_eq!(indices(&piped), indices(&file));
    assert_eq!(pts(&piped), pts(&file));
    assert_eq!(pixels(&piped), pixels(&file));
    let sources = column(&piped, "source", |a: &StringArray, i| {
        a.value(i).to_string()
    });
    assert!(sources.iter().all(|s| s == "-"));
    // Nothing piped in: a one-line error naming `-`.
    let out = run(kao("kao-decode").arg("-").stdin(Stdio::null()));
    assert_one_line_error(&out, "-", "not a video");
    // Through a pipe: an MP4 with its index first decodes; one with its index at the end
    // cannot (no seeking back), and the error says what to do.
    let through_pipe = |path: &Path| {
        let mut child = kao("kao-decode")
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let bytes = std::fs::read(path).unwrap();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        out
    };
    let out = through_pipe(&fixture("faststart.mp4"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!indices(&batches(&out.stdout)).is_empty());
    let out = through_pipe(&path);
    assert_one_line_error(&out, "-", "-movflags +faststart");
}

/// PQ's signal (0–1) for display light `nits` (SMPTE ST 2084's inverse EOTF).
fn pq_signal(nits: f64) -> f64 {
    let y = (nits / 10_000.0).powf(0.159_301_757_812_5);
    ((0.835_937_5 + 18.851_562_5 * y) / (1.0 + 18.6875 * y)).powf(78.843_75)
}

/// HLG's display light (cd/m², 1,000 cd/m² display, BT.2100) for the grey of signal `e`.
fn hlg_grey_nits(e: f64) -> f64 {
    let scene = if e <= 0.5 {
        e * e / 3.0
    } else {
        (((e - 0.559_910_73) / 0.178_832_77).exp() + 0.284_668_92) / 12.0
    };
    1000.0 * scene.powf(1.2)
}

/// A 10-bit BT.2020 video of one frame (FFV1, lossless) tagged with `transfer`, of 16 × 16
/// patches side by side of the 16-bit RGB signal levels `patches`.
fn hdr_patches(dir: &Path, name: &str, transfer: &str, patches: &[[u16; 3]]) -> std::path::PathBuf {
    let (w, h) = (16 * patches.len(), 16);
    let mut rgb48 = Vec::with_capacity(w * h * 6);
    for _ in 0..h {
        for patch in patches {
            for _ in 0..16 {
                for level in patch {
                    rgb48.extend_from_slice(&level.to_le_bytes());
                }
            }
        }
    }
    let raw = dir.join(format!("{name}.rgb48"));
    std::fs::write(&raw, rgb48).unwrap();
    let path = dir.join(format!("{name}.mkv"));
    let size = format!("{w}x{h}");
    ffmpeg(&[
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb48le",
        "-s",
        &size,
        "-i",
        raw.to_str().unwrap(),
        "-vf",
        "scale=out_color_matrix=bt2020:out_range=tv,format=yuv420p10le",
        "-color_primaries",
        "bt2020",
        "-color_trc",
        transfer,
        "-colorspace",
        "bt2020nc",
        "-c:v",
        "ffv1",
        path.to_str().unwrap(),
    ]);
    path
}

#[test]
fn hdr_video_comes_out_as_an_sdr_display_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    // BT.2408: HDR reference white (203 cd/m²) becomes SDR white, light under three quarters
    // of it passes unchanged and a BT.1886 display (gamma 2.4) shows it; above, highlights
    // roll off to white.
    let sdr = |light: f64| 255.0 * light.powf(1.0 / 2.4);
    let code = |signal: f64| (signal * 65535.0).round() as u16;
    let pq = |nits: f64| code(pq_signal(nits));
    let greys = [2.0, 10.0, 30.0, 60.0, 100.0, 140.0];
    let mut patches: Vec<[u16; 3]> = greys.iter().map(|n| [pq(*n); 3]).collect();
    let mut want: Vec<[f64; 3]> = greys.iter().map(|n| [sdr(n / 203.0); 3]).collect();
    // A skin tone in BT.709 light (shares of reference white), stored in BT.2020's primaries
    // (BT.2087's matrix): the YUV matrix and the primaries both count.
    let skin = [0.55, 0.32, 0.22];
    let to_2020 = [
        [0.6274, 0.3293, 0.0433],
        [0.0691, 0.9195, 0.0114],
        [0.0164, 0.0880, 0.8956],
    ];
    patches
        .push(to_2020.map(|row| pq(203.0 * row.iter().zip(skin).map(|(m, v)| m * v).sum::<f64>())));
    want.push(skin.map(sdr));
    let pq_end = [[pq(203.0); 3], [pq(1000.0); 3]];
    let hlg_signals = [0.2, 0.35, 0.5, 0.6, 0.7];
    let hlg_want = hlg_signals.map(|s| [sdr(hlg_grey_nits(s) / 203.0); 3]);
    let hlg_patches: Vec<[u16; 3]> = hlg_signals
        .iter()
        .chain(&[0.75])
        .map(|s| [code(*s); 3])
        .collect();
    let cases = [
        ("pq", "smpte2084", [patches, pq_end.to_vec()].concat(), want),
        ("hlg", "arib-std-b67", hlg_patches, hlg_want.to_vec()),
    ];
    for (name, transfer, patches, want) in cases {
        let path = hdr_patches(dir.path(), name, transfer, &patches);
        let (w, _, rgb) = decode_one(&path);
        let centre = |i: usize| -> [u8; 3] {
            rgb[(8 * w as usize + 16 * i + 8) * 3..][..3]
                .try_into()
                .unwrap()
        };
        for (i, want) in want.iter().enumerate() {
            let got = centre(i);
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (f64::from(*g) - w).abs() <= 2.5,
                    "{name} patch {i}: {got:?} against {want:.1?}"
                );
            }
        }
        // Reference white just under SDR white (HLG's 75 % signal is reference white too).
        let white = centre(want.len())[0];
        assert!(
            (235..255).contains(&white),
            "{name}: reference white at {white}"
        );
        if name == "pq" {
            assert_eq!(
                centre(want.len() + 1),
                [255; 3],
                "the 1,000 cd/m² peak is white"
            );
        }
        // The test can tell: read as SDR (what the ffmpeg command does), 100 cd/m² of PQ comes
        // out ~60 levels darker, and HLG's greys lighter.
        let stored = ffmpeg_first(&path, None);
        let off = (f64::from(stored[(8 * w as usize + 16 * 4 + 8) * 3]) - want[4][0]).abs();
        assert!(off > 20.0, "{name}: the untreated frame is {off:.1} off");
    }
}
