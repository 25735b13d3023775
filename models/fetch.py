#!/usr/bin/env python3
"""Fetch kao's model files by package name, verify them by sha256, and place them in the model folder.

Usage: python3 models/fetch.py [--dir DIR] [NAME ...]

The folder is DIR, else $KAO_MODELS, else $XDG_CACHE_HOME/kao/models (~/.cache/kao/models).
Without NAMEs it fetches every model marked default in models/manifest.tsv. Packages are downloaded
with pip (the ordinary client, by name and exact version), checked against the manifest's sha256, and
kept under DIR/.packages so a second run needs no network. Files already present with the right
sha256 are left alone, so the script is idempotent. Only the files listed in the manifest are
extracted (face-recognition-models also ships the non-commercial 68-point predictor: it is never
extracted).
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def default_dir():
    if os.environ.get("KAO_MODELS"):
        return os.environ["KAO_MODELS"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "kao", "models")


def read_manifest():
    rows = []
    with open(os.path.join(HERE, "manifest.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            keys = ["name", "package", "version", "package_file", "package_sha256", "member", "sha256",
                    "licence", "default"]
            if len(cols) != len(keys):
                sys.exit(f"models/manifest.tsv: expected {len(keys)} columns, got {len(cols)}: {line!r}")
            rows.append(dict(zip(keys, cols)))
    return rows


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_package(row, pkg_dir):
    path = os.path.join(pkg_dir, row["package_file"])
    if os.path.exists(path) and sha256_of(path) == row["package_sha256"]:
        return path
    os.makedirs(pkg_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=pkg_dir) as tmp:
        spec = f"{row['package']}=={row['version']}"
        kind = ["--no-binary", ":all:"] if row["package_file"].endswith(".tar.gz") else ["--only-binary", ":all:"]
        print(f"kao models: downloading {spec}", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *kind, spec, "-d", tmp]
        if subprocess.call(cmd) != 0:
            sys.exit(f"kao models: pip could not download {spec}")
        got = os.path.join(tmp, row["package_file"])
        if not os.path.exists(got):
            sys.exit(f"kao models: pip did not produce {row['package_file']} for {spec}")
        digest = sha256_of(got)
        if digest != row["package_sha256"]:
            sys.exit(f"kao models: {row['package_file']}: sha256 {digest} does not match the manifest")
        os.replace(got, path)
    return path


def extract(row, package, out_dir):
    target = os.path.join(out_dir, os.path.basename(row["member"]))
    if os.path.exists(target) and sha256_of(target) == row["sha256"]:
        return target, False
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            if package.endswith(".tar.gz"):
                with tarfile.open(package, "r:gz") as tar:
                    src = tar.extractfile(row["member"])
                    if src is None:
                        sys.exit(f"kao models: {row['member']} is not a file in {package}")
                    out.write(src.read())
            else:
                with zipfile.ZipFile(package) as z:
                    out.write(z.read(row["member"]))
        digest = sha256_of(tmp)
        if digest != row["sha256"]:
            sys.exit(f"kao models: {target}: sha256 {digest} does not match the manifest")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target, True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=default_dir(), help="model folder (default: $KAO_MODELS or the user cache)")
    ap.add_argument("names", nargs="*", help="models to fetch (default: every default model)")
    args = ap.parse_args()
    rows = read_manifest()
    known = {r["name"] for r in rows}
    for n in args.names:
        if n not in known:
            sys.exit(f"kao models: unknown model {n!r} (known: {', '.join(sorted(known))})")
    wanted = [r for r in rows if (r["name"] in args.names if args.names else r["default"] == "yes")]
    os.makedirs(args.dir, exist_ok=True)
    for row in wanted:
        package = fetch_package(row, os.path.join(args.dir, ".packages"))
        target, new = extract(row, package, args.dir)
        print(f"{row['name']}\t{target}\t{'fetched' if new else 'ok'}", file=sys.stderr)


if __name__ == "__main__":
    main()
