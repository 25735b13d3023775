//! The videos a run processes: files, folders of videos, and text files listing videos.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// File extensions taken from a folder.
const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "mts", "m2ts", "flv", "wmv",
    "3gp", "ogv",
];

/// File extensions read as lists of videos, one per line.
const LIST_EXTENSIONS: &[&str] = &["txt", "list"];

/// Expands the command line's inputs: a folder gives its videos (sorted, not recursive), a
/// `.txt` or `.list` file gives the videos it lists (one per line, `#` comments, relative paths
/// from the list's folder); anything else (a video file, URL or device) is taken as is.
/// `lists` are files listing videos whatever their names, read after `inputs`.
pub fn expand(inputs: &[String], lists: &[PathBuf]) -> Result<Vec<String>> {
    let mut videos = Vec::new();
    for input in inputs {
        let path = Path::new(input);
        if is_url(input) || input.starts_with("/dev/") {
            videos.push(input.clone());
        } else if path.is_dir() {
            let found = folder(path)?;
            if found.is_empty() {
                bail!("{input}: no video files in this folder");
            }
            videos.extend(found);
        } else if has_extension(path, LIST_EXTENSIONS) {
            videos.extend(list(path)?);
        } else if path.exists() {
            videos.push(input.clone());
        } else {
            bail!("{input}: no such file or folder");
        }
    }
    for path in lists {
        videos.extend(list(path)?);
    }
    // A video named twice is processed once.
    let mut seen = std::collections::HashSet::new();
    videos.retain(|v| seen.insert(v.clone()));
    Ok(videos)
}

fn is_url(input: &str) -> bool {
    input.contains("://")
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn folder(dir: &Path) -> Result<Vec<String>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the folder", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && has_extension(p, VIDEO_EXTENSIONS))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    found.sort();
    Ok(found
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect())
}

fn list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the list of videos", path.display()))?;
    let base = path.parent().unwrap_or(Path::new(""));
    let mut videos = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if is_url(line) || line.starts_with("/dev/") {
            videos.push(line.to_string());
            continue;
        }
        let video = if Path::new(line).is_absolute() {
            PathBuf::from(line)
        } else {
            base.join(line)
        };
        if !video.is_file() {
            bail!(
                "{}: line {}: {} is not a file",
                path.display(),
                n + 1,
                video.display()
            );
        }
        videos.push(video.to_string_lossy().into_owned());
    }
    if videos.is_empty() {
        bail!("{}: lists no videos", path.display());
    }
    Ok(videos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_lists_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["b.mp4", "a.MKV", "notes.md", ".hidden.mp4"] {
            std::fs::write(d.join(name), b"x").unwrap();
        }
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/c.mp4"), b"x").unwrap();
        let s = |p: &str| d.join(p).to_string_lossy().into_owned();
        assert_eq!(expand(&[s("")], &[]).unwrap(), vec![s("a.MKV"), s("b.mp4")]);
        std::fs::write(
            d.join("videos.txt"),
            "# talks\nsub/c.mp4\n\n  b.mp4  \nhttp://host/x.mp4\n",
        )
        .unwrap();
        assert_eq!(
            expand(&[s("videos.txt")], &[]).unwrap(),
            vec![s("sub/c.mp4"), s("b.mp4"), "http://host/x.mp4".to_string()]
        );
        // Named twice, processed once.
        assert_eq!(
            expand(&[s("b.mp4"), s("b.mp4")], &[]).unwrap(),
            vec![s("b.mp4")]
        );
    }

    #[test]
    fn bad_inputs_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let s = |p: &str| d.join(p).to_string_lossy().into_owned();
        assert!(
            expand(&[s("missing.mp4")], &[])
                .unwrap_err()
                .to_string()
                .contains("no such file")
        );
        assert!(
            expand(&[s("")], &[])
                .unwrap_err()
                .to_string()
                .contains("no video files")
        );
        std::fs::write(d.join("l.txt"), "gone.mp4\n").unwrap();
        let e = expand(&[s("l.txt")], &[]).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("gone.mp4"), "{e}");
        std::fs::write(d.join("empty.txt"), "# nothing\n").unwrap();
        assert!(
            expand(&[s("empty.txt")], &[])
                .unwrap_err()
                .to_string()
                .contains("lists no videos")
        );
    }
}
