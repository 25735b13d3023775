//! Where to read a video that a manifest records by the name it was given.

use std::path::Path;

/// Where to read a video recorded as `source` (the input as given to kao-extract or
/// kao-decode, often relative to a folder the reader does not run in): as recorded if
/// that exists (or is not a local path), else the first existing of `DIR/source` and
/// `DIR/<file name>` for `video_dir`, the manifest's folder and the folder above it; else
/// as recorded (so the error names it).
pub fn locate(source: &str, manifest_dir: &Path, video_dir: Option<&Path>) -> String {
    let recorded = Path::new(source);
    if source.contains("://") || recorded.exists() {
        return source.to_string();
    }
    let name = recorded.file_name().map(Path::new);
    let bases = video_dir
        .into_iter()
        .chain([manifest_dir])
        .chain(manifest_dir.parent());
    bases
        .flat_map(|base| {
            let relative = recorded.is_relative().then(|| base.join(recorded));
            relative.into_iter().chain(name.map(|n| base.join(n)))
        })
        .find(|candidate| candidate.is_file())
        .map_or_else(|| source.to_string(), |p| p.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_moved_video_beside_or_above_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(dir.path().join("talk.mp4"), b"x").unwrap();
        let found = locate("elsewhere/talk.mp4", &out, None);
        assert_eq!(found, dir.path().join("talk.mp4").to_string_lossy());
        assert_eq!(locate("missing.mp4", &out, None), "missing.mp4");
        assert_eq!(locate("rtsp://h/x", &out, None), "rtsp://h/x");
    }
}
