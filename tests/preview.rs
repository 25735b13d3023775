//! End-to-end tests of kao-preview and `kao-extract --preview`: the preview is decoded again
//! and its pixels checked at the manifest's boxes and away from them.
//!
//! The sample (1280×720, 25 fps, 200 frames) shows Obama (matched by the reference), Biden
//! and the astronaut (unmatched); see tests/extract.rs.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use kao_preview::draw::{MATCHED, Style, UNMATCHED};
use kao_record::{Provenance, RecordWriter};
use kao_tests::*;

/// Frames `wanted` of `path`, decoded by kao-video, by index.
fn frames(path: &Path, wanted: &[u64]) -> BTreeMap<u64, kao_video::Frame> {
    let last = *wanted.iter().max().unwrap();
    let mut out = BTreeMap::new();
    kao_video::decode(
        path.to_str().unwrap(),
        &kao_video::DecodeOptions::default(),
        |f| {
            let index = f.index;
            if wanted.contains(&index) {
                out.insert(index, f);
            }
            if index >= last {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    assert_eq!(
        out.len(),
        wanted.len(),
        "frames {wanted:?} of {}",
        path.display()
    );
    out
}

fn pixel(f: &kao_video::Frame, x: i64, y: i64) -> [u8; 3] {
    let at = (y as usize * f.width as usize + x as usize) * 3;
    f.rgb[at..at + 3].try_into().unwrap()
}

/// Euclidean distance of two RGB colours.
fn distance(a: [u8; 3], b: [u8; 3]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&p, q)| (f64::from(p) - f64::from(q)).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// How far a drawn colour may come back from H.264 (4:2:0 chroma, CRF 20).
const DRAWN: f64 = 60.0;

/// The middle of each side of the line drawn `t` pixels thick just outside the box.
fn line_points(b: [f32; 4], t: i64) -> [(i64, i64); 4] {
    let [x0, y0] = [b[0].floor() as i64, b[1].floor() as i64];
    let [x1, y1] = [(b[0] + b[2]).ceil() as i64, (b[1] + b[3]).ceil() as i64];
    let (cx, cy) = ((x0 + x1) / 2, (y0 + y1) / 2);
    [
        (x0 - t + t / 2, cy),
        (x1 + t / 2 - 1, cy),
        (cx, y0 - t + t / 2),
        (cx, y1 + t / 2 - 1),
    ]
}

/// The corner square of the line drawn around the box (drawn by dashed lines too).
fn corner(b: [f32; 4], t: i64) -> (i64, i64) {
    (b[0].floor() as i64 - t / 2, b[1].floor() as i64 - t / 2)
}

/// Asserts that `preview` shows `colour` at `points` where `source` does not.
fn assert_drawn(
    preview: &kao_video::Frame,
    source: &kao_video::Frame,
    points: &[(i64, i64)],
    colour: [u8; 3],
    what: &str,
) {
    for &(x, y) in points {
        let (p, s) = (pixel(preview, x, y), pixel(source, x, y));
        assert!(
            distance(p, colour) < DRAWN,
            "{what}: ({x}, {y}) is {p:?}, not {colour:?}"
        );
        assert!(
            distance(s, colour) > DRAWN,
            "{what}: the source is already {s:?} at ({x}, {y})"
        );
    }
}

/// Asserts that `preview` shows the source at `points` (within H.264's error).
fn assert_not_drawn(
    preview: &kao_video::Frame,
    source: &kao_video::Frame,
    points: &[(i64, i64)],
    what: &str,
) {
    for &(x, y) in points {
        let (p, s) = (pixel(preview, x, y), pixel(source, x, y));
        assert!(
            distance(p, s) < 30.0,
            "{what}: ({x}, {y}) is {p:?} where the source has {s:?}"
        );
    }
}

/// Mean absolute difference of two frames outside `boxes` grown by a margin that holds the
/// line and label, and the share of pixels that differ by more than 40.
fn difference_outside(
    a: &kao_video::Frame,
    b: &kao_video::Frame,
    boxes: &[[f32; 4]],
) -> (f64, f64) {
    let (w, h) = (a.width as i64, a.height as i64);
    let covered = |x: i64, y: i64| {
        boxes.iter().any(|b| {
            let (x0, y0) = (b[0] as i64 - 40, b[1] as i64 - 80);
            let (x1, y1) = ((b[0] + b[2]) as i64 + 40, (b[1] + b[3]) as i64 + 40);
            // The label may be wider than the box.
            x >= x0 && x < x1.max(x0 + 480) && y >= y0 && y < y1
        })
    };
    let (mut sum, mut n, mut far) = (0.0, 0u64, 0u64);
    for y in 0..h {
        for x in 0..w {
            if covered(x, y) {
                continue;
            }
            let (p, q) = (pixel(a, x, y), pixel(b, x, y));
            let d = p
                .iter()
                .zip(q)
                .map(|(&u, v)| (i32::from(u) - i32::from(v)).abs())
                .max()
                .unwrap();
            sum += f64::from(d);
            far += u64::from(d > 40);
            n += 1;
        }
    }
    (sum / n as f64, far as f64 / n as f64)
}

fn refs(dir: &Path) -> PathBuf {
    let refs = dir.join("refs");
    std::fs::create_dir_all(refs.join("obama")).unwrap();
    std::fs::copy(fixture("photos/obama3.jpg"), refs.join("obama/obama3.jpg")).unwrap();
    refs
}

/// Files whose name marks an unfinished write (`.kao-*.part`) under `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect()
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One manifest row's box.
fn bbox(b: &[RecordBatch], i: usize) -> [f32; 4] {
    ["x", "y", "w", "h"].map(|c| column::<Float32Array, _>(b, c, |a, j| a.value(j))[i])
}

#[test]
fn preview_of_the_sample_draws_every_face_at_its_box() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let sample = fixture("sample.mp4");
    let extracted = run(kao("kao-extract")
        .arg(&sample)
        .arg("--ref")
        .arg(refs(dir.path()))
        .args(["--ref-jitters", "3", "--ref-cache"])
        .arg(dir.path().join("cache"))
        .arg("--out")
        .arg(&out_dir)
        .arg("--preview")
        .arg(out_dir.join("preview.mp4"))
        .arg("-q"));
    ok(&extracted, "kao-extract --preview");
    assert!(out_dir.join("preview.mp4").is_file());
    let again = dir.path().join("again.mp4");
    let started = std::time::Instant::now();
    ok(
        &run(kao("kao-preview")
            .arg(&out_dir)
            .arg("-o")
            .arg(&again)
            .arg("-q")),
        "kao-preview",
    );
    eprintln!("kao-preview: {:.2} s", started.elapsed().as_secs_f64());
    assert!(leftovers(&out_dir).is_empty() && leftovers(dir.path()).is_empty());

    // The source's frames, timestamps and rate.
    let source_pts = ffprobe_pts(&sample);
    let source_probe = kao_video::probe(sample.to_str().unwrap()).unwrap();
    for preview in [out_dir.join("preview.mp4"), again.clone()] {
        assert_eq!(ffprobe_pts(&preview), source_pts, "{}", preview.display());
        let probe = kao_video::probe(preview.to_str().unwrap()).unwrap();
        assert_eq!(probe.frame_rate, source_probe.frame_rate);
        assert_eq!(probe.frame_rate, Some((25, 1)));
    }

    let manifest = read_file(&out_dir.join("manifest.parquet"));
    let identity = column::<StringArray, _>(&manifest, "identity", |a, i| {
        a.is_valid(i).then(|| a.value(i).to_string())
    });
    let frame = column::<UInt64Array, _>(&manifest, "frame_index", |a, i| a.value(i));
    let cluster = column::<UInt32Array, _>(&manifest, "cluster_id", |a, i| {
        a.is_valid(i).then(|| a.value(i))
    });
    let matched = identity
        .iter()
        .position(|i| i.as_deref() == Some("obama"))
        .unwrap();
    let unmatched = (0..identity.len())
        .rev()
        .find(|&i| identity[i].is_none() && cluster[i].is_some())
        .expect("an unknown face (Biden or the astronaut)");
    let (fm, fu) = (frame[matched], frame[unmatched]);
    let wanted = [fm, fu];
    let preview = frames(&again, &wanted);
    let source = frames(&sample, &wanted);
    let t = Style::for_frame(1280, 720).thickness as i64;

    let b = bbox(&manifest, matched);
    assert_drawn(
        &preview[&fm],
        &source[&fm],
        &line_points(b, t),
        MATCHED,
        "matched face",
    );
    let u = bbox(&manifest, unmatched);
    let (cx, cy) = corner(u, t);
    assert_drawn(
        &preview[&fu],
        &source[&fu],
        &[(cx, cy), (cx, cy + 2 * t)],
        UNMATCHED,
        "unmatched face",
    );

    // Away from the faces, the preview is the source.
    for f in wanted {
        let boxes: Vec<[f32; 4]> = (0..frame.len())
            .filter(|&i| frame[i] == f)
            .map(|i| bbox(&manifest, i))
            .collect();
        let (mean, far) = difference_outside(&preview[&f], &source[&f], &boxes);
        assert!(
            mean < 2.0 && far < 0.001,
            "frame {f}: mean {mean}, far {far}"
        );
    }
}

/// A manifest of `rows` (frame, box, identity) on `source`, recorded as made with
/// `--every 5 --max-frames 20`.
fn synthetic_manifest(path: &Path, source: &str, rows: &[(u64, [f32; 4], Option<&str>)]) {
    let entry = Provenance::new(
        "kao-decode",
        "0",
        serde_json::json!({"inputs": [source], "every": 5, "fps": null, "start": null,
                           "end": null, "max_frames": 20}),
    );
    let fields = vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("frame_index", DataType::UInt64, false),
        Field::new("x", DataType::Float32, false),
        Field::new("y", DataType::Float32, false),
        Field::new("w", DataType::Float32, false),
        Field::new("h", DataType::Float32, false),
        Field::new("track_id", DataType::UInt64, true),
        Field::new("identity", DataType::Utf8, true),
        Field::new("similar_percentage", DataType::Float32, true),
    ];
    let schema = kao_record::schema::stage_schema(&Schema::empty(), &[], fields, &entry).unwrap();
    let f32s = |k: usize| -> ArrayRef {
        Arc::new(Float32Array::from(
            rows.iter().map(|r| r.1[k]).collect::<Vec<_>>(),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![source; rows.len()])),
        Arc::new(UInt64Array::from(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        )),
        f32s(0),
        f32s(1),
        f32s(2),
        f32s(3),
        Arc::new(UInt64Array::from(
            (0..rows.len() as u64).map(Some).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )),
        Arc::new(Float32Array::from(
            rows.iter().map(|r| r.2.map(|_| 99.0)).collect::<Vec<_>>(),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut writer = RecordWriter::create(Some(path), &schema).unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
}

#[test]
fn a_sampled_runs_boxes_stay_until_the_next_processed_frame() {
    let dir = tempfile::tempdir().unwrap();
    let sample = fixture("sample.mp4");
    let source = sample.to_str().unwrap();
    let (a, b) = ([600.0, 300.0, 100.0, 120.0], [200.0, 280.0, 90.0, 110.0]);
    // Frame 0: a matched face; frame 5: processed, no face; frame 10: an unmatched one.
    synthetic_manifest(
        &dir.path().join("manifest.parquet"),
        source,
        &[(0, a, Some("ann")), (10, b, None)],
    );
    let out = dir.path().join("p.mp4");
    ok(
        &run(kao("kao-preview")
            .arg(dir.path())
            .arg("-o")
            .arg(&out)
            .arg("-q")),
        "kao-preview",
    );
    // --max-frames 20 of every 5th frame: the run stopped after frame 95.
    let pts = ffprobe_pts(&out);
    assert_eq!(pts.len(), 96);
    assert_eq!(pts[..], ffprobe_pts(&sample)[..96]);
    let wanted = [0, 4, 5, 9, 10, 14, 15];
    let preview = frames(&out, &wanted);
    let src = frames(&sample, &wanted);
    let t = Style::for_frame(1280, 720).thickness as i64;
    let (la, lb) = (line_points(a, t), [corner(b, t)]);
    for f in [0, 4] {
        assert_drawn(&preview[&f], &src[&f], &la, MATCHED, &format!("frame {f}"));
        assert_not_drawn(&preview[&f], &src[&f], &lb, &format!("frame {f}"));
    }
    for f in [5, 9, 15] {
        assert_not_drawn(&preview[&f], &src[&f], &la, &format!("frame {f}"));
        assert_not_drawn(&preview[&f], &src[&f], &lb, &format!("frame {f}"));
    }
    for f in [10, 14] {
        assert_drawn(
            &preview[&f],
            &src[&f],
            &lb,
            UNMATCHED,
            &format!("frame {f}"),
        );
        assert_not_drawn(&preview[&f], &src[&f], &la, &format!("frame {f}"));
    }
}

/// Runs kao-preview with `args`; asserts a one-line error containing `expected`.
fn fails(args: &[&std::ffi::OsStr], expected: &str) {
    let out = run(kao("kao-preview").args(args));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(
        err.starts_with("kao-preview: ")
            && err.contains(expected)
            && err.trim().lines().count() == 1,
        "{args:?}: expected one line with {expected:?}, got {err:?}"
    );
}

#[test]
fn bad_input_is_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let os = |p: &Path| p.as_os_str().to_owned();
    let out = d.join("p.mp4");
    let o = std::ffi::OsString::from("-o");

    // No manifest: a missing path, a folder without one.
    fails(
        &[os(&d.join("nowhere")).as_ref(), &o, out.as_ref()],
        "nowhere: no such file",
    );
    fails(
        &[d.as_os_str(), &o, out.as_ref()],
        "no manifest.parquet here",
    );
    // Not a manifest: text, and records without the boxes.
    let text = d.join("notes.parquet");
    std::fs::write(&text, "not records\n").unwrap();
    fails(&[text.as_os_str(), &o, out.as_ref()], "notes.parquet");
    let frames_only = d.join("frames.parquet");
    {
        let schema = Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("frame_index", DataType::UInt64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a.mp4"])),
                Arc::new(UInt64Array::from(vec![0u64])),
            ],
        )
        .unwrap();
        let mut w = RecordWriter::create(Some(&frames_only), &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    fails(&[frames_only.as_os_str(), &o, out.as_ref()], "`x`");

    // A manifest whose video is gone.
    let gone = d.join("gone");
    std::fs::create_dir(&gone).unwrap();
    synthetic_manifest(
        &gone.join("manifest.parquet"),
        "/nowhere/talk.mp4",
        &[(0, [1.0, 1.0, 5.0, 5.0], None)],
    );
    fails(&[gone.as_os_str()], "/nowhere/talk.mp4: no such file");
    assert!(!gone.join("preview.mp4").exists() && leftovers(&gone).is_empty());

    // A good manifest, but an output in a missing folder, or not a video name.
    let good = d.join("good");
    std::fs::create_dir(&good).unwrap();
    let sample = fixture("sample.mp4");
    synthetic_manifest(
        &good.join("manifest.parquet"),
        sample.to_str().unwrap(),
        &[(0, [1.0, 1.0, 5.0, 5.0], None)],
    );
    let missing = d.join("missing/p.mp4");
    fails(&[good.as_os_str(), &o, missing.as_ref()], "does not exist");
    assert!(!d.join("missing").exists());
    fails(
        &[good.as_os_str(), &o, d.join("p.avi").as_ref()],
        ".mp4, .mov or .mkv",
    );
    fails(&[good.as_os_str(), &o, d.as_os_str()], ".mp4");
    assert!(!out.exists() && leftovers(d).is_empty() && leftovers(&good).is_empty());

    // kao-extract refuses such a preview before it starts.
    let refused = run(kao("kao-extract")
        .arg(&sample)
        .arg("--out")
        .arg(d.join("ex"))
        .arg("--preview")
        .arg(&missing)
        .arg("-q"));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("does not exist") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!d.join("ex/manifest.parquet").exists());
}
