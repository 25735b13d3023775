//! People without reference photos: kao-extract without --ref groups every face into people
//! (`cluster_id`), kao-name turns a cluster into an identity, and its crops serve as
//! references for the next run.
//!
//! The sample shows Obama (0–2 s and 4–6 s, two different photos), Biden (2–4 s) and the
//! astronaut (6–8 s).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow_array::{Array, Float64Array, StringArray, UInt32Array};
use kao_tests::*;

/// Who the sample shows at `pts`.
fn person_at(pts: f64) -> &'static str {
    match pts {
        t if t < 2.0 => "obama",
        t if t < 4.0 => "biden",
        t if t < 6.0 => "obama",
        _ => "astronaut",
    }
}

struct Rows {
    pts: Vec<f64>,
    identity: Vec<Option<String>>,
    cluster: Vec<Option<u32>>,
    crop: Vec<Option<String>>,
}

fn rows(out: &Path) -> Rows {
    let b = read_file(&out.join("manifest.parquet"));
    let strings = |name: &str| {
        column::<StringArray, _>(&b, name, |a, i| {
            a.is_valid(i).then(|| a.value(i).to_string())
        })
    };
    Rows {
        pts: column::<Float64Array, _>(&b, "pts", |a, i| a.value(i)),
        identity: strings("identity"),
        cluster: column::<UInt32Array, _>(&b, "cluster_id", |a, i| {
            a.is_valid(i).then(|| a.value(i))
        }),
        crop: strings("crop_path"),
    }
}

fn extract(out: &Path, extra: &[&str]) {
    let result = run(kao("kao-extract")
        .arg(fixture("sample.mp4"))
        .args([
            "--every",
            "5",
            "-q",
            "--ref-jitters",
            "1",
            "--no-ref-cache",
            "--out",
        ])
        .arg(out)
        .args(extra));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

#[test]
fn without_references_everyone_is_clustered_named_and_found_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("people");
    extract(&out, &[]);
    let r = rows(&out);
    assert!(!r.pts.is_empty());
    // Every face is in a cluster; each cluster is one person; a person splits at most in two.
    let mut people: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
    for (i, pts) in r.pts.iter().enumerate() {
        assert_eq!(r.identity[i], None);
        let c = r.cluster[i].unwrap_or_else(|| panic!("row {i} has no cluster"));
        people.entry(c).or_default().insert(person_at(*pts));
        // Crops of unknown people are under unknown/<cluster>/.
        if let Some(crop) = &r.crop[i] {
            assert!(crop.starts_with(&format!("unknown/{c}/")), "{crop}");
            assert!(out.join(crop).is_file(), "{crop}");
        }
    }
    assert!(
        people.values().all(|p| p.len() == 1),
        "impure clusters: {people:?}"
    );
    for who in ["obama", "biden", "astronaut"] {
        let n = people.values().filter(|p| p.contains(who)).count();
        assert!((1..=2).contains(&n), "{who} is in {n} clusters: {people:?}");
    }

    // Name Biden's cluster.
    let biden = *people.iter().find(|(_, p)| p.contains("biden")).unwrap().0;
    let named =
        run(kao("kao-name")
            .arg(&out)
            .args(["--cluster", &biden.to_string(), "--as", "biden"]));
    assert!(
        named.status.success(),
        "{}",
        String::from_utf8_lossy(&named.stderr)
    );
    let r = rows(&out);
    for i in 0..r.pts.len() {
        if person_at(r.pts[i]) == "biden" {
            assert_eq!(r.identity[i].as_deref(), Some("biden"));
            assert_eq!(r.cluster[i], None);
            if let Some(crop) = &r.crop[i] {
                assert!(
                    crop.starts_with("biden/") && out.join(crop).is_file(),
                    "{crop}"
                );
            }
        }
    }
    assert!(!out.join(format!("unknown/{biden}")).exists());
    // A cluster that does not exist, and a reserved name: one-line errors.
    for (cluster, name, expected) in [
        ("99", "x", "no cluster 99"),
        ("0", "unknown", "cannot name a person"),
    ] {
        let bad = run(kao("kao-name")
            .arg(&out)
            .args(["--cluster", cluster, "--as", name]));
        let err = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(1), "{err}");
        assert!(
            err.contains(expected) && err.trim().lines().count() == 1,
            "{err}"
        );
    }

    // The named crops as references: Biden is found in a new run.
    let again = dir.path().join("again");
    let refs = format!("biden={}", out.join("biden").display());
    extract(&again, &["--ref", &refs]);
    let r = rows(&again);
    let found: BTreeSet<&str> = (0..r.pts.len())
        .filter(|&i| r.identity[i].as_deref() == Some("biden"))
        .map(|i| person_at(r.pts[i]))
        .collect();
    assert_eq!(found, BTreeSet::from(["biden"]));
}
