//! Run folders in object storage: `--out s3://bucket/prefix` (also `gs://`, `az://`,
//! `file://`). The store itself is `kao_pipeline::scale_out::store`, built with the `object-store` feature;
//! without it, a URL is refused in one line naming the feature.

/// Whether `out` names object storage (`scheme://…`) rather than a folder.
pub fn is_url(out: &str) -> bool {
    match out.split_once("://") {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// `url` as it may be shown: without a user name, password or query (which may hold
/// credentials).
pub fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}{path}")
}

/// The one-line refusal of a URL in a build without the `object-store` feature.
pub fn needs_feature(url: &str, binary: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: object storage needs {binary} built with the `object-store` feature (cargo build --release -p kao-cli --features kao-cli/object-store); see docs/scale-out.md",
        display_url(url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_folders_and_shown_without_credentials() {
        for url in ["s3://b/p", "gs://b", "az://c/p", "file:///tmp/x"] {
            assert!(is_url(url), "{url}");
        }
        for folder in ["out", "/data/run", "./a://b", "", "://x"] {
            assert!(!is_url(folder), "{folder}");
        }
        assert_eq!(
            display_url("az://user:secret@acct/c/p?sig=abc"),
            "az://acct/c/p"
        );
        assert_eq!(display_url("s3://bucket/run"), "s3://bucket/run");
        let e = needs_feature("s3://k:s@b/run", "kao-extract").to_string();
        assert!(e.starts_with("s3://b/run: ") && !e.contains("k:s"), "{e}");
        assert!(e.contains("object-store") && !e.contains('\n'), "{e}");
    }
}
