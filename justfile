# kao's recipes: the same jobs as scripts/, plus the stages chained by hand.
# `just` is optional (cargo install just, or apt-get install just on newer Debian/Ubuntu).

bin := "target/release"

# Run the main job on the generated sample (README's first command).
demo:
    ./scripts/demo.sh

# Install what the tests need and run them all (README's second command, and CI's).
test:
    ./scripts/test.sh

# Install system packages and fetch the model files (idempotent).
deps:
    ./scripts/deps.sh

# Generate the test fixtures in tests/fixtures/ (idempotent).
fixtures:
    ./scripts/fixtures.sh

# Build every binary once, in the one profile tests and benchmarks share.
build:
    cargo build --release --locked

# The main job in one process: crops of the people in `refs` and a manifest in `out`.
extract video="tests/fixtures/sample.mp4" refs="out/demo/refs" out="out/extract": build fixtures
    mkdir -p out/demo/refs/obama && cp -n tests/fixtures/photos/obama3.jpg out/demo/refs/obama/ || true
    {{bin}}/kao-extract {{video}} --ref {{refs}} --out {{out}}

# The same job as a pipe of the stage binaries (writes the same manifest as `extract`).
pipe video="tests/fixtures/sample.mp4" refs="out/demo/refs" out="out/pipe": build fixtures
    mkdir -p out/demo/refs/obama && cp -n tests/fixtures/photos/obama3.jpg out/demo/refs/obama/ || true
    {{bin}}/kao-decode {{video}} | {{bin}}/kao-detect | {{bin}}/kao-embed | {{bin}}/kao-track | {{bin}}/kao-match --ref {{refs}} | {{bin}}/kao-align --out {{out}} --verbose
    {{bin}}/kao-cat {{out}}/manifest.parquet --summary

# Only the face records: decode at 2 frames/s, detect, embed, store as Parquet.
faces video="tests/fixtures/sample.mp4" out="out/faces.parquet": build fixtures
    mkdir -p "$(dirname {{out}})"
    {{bin}}/kao-decode {{video}} --fps 2 | {{bin}}/kao-detect | {{bin}}/kao-embed | {{bin}}/kao-cat -o {{out}}
    {{bin}}/kao-cat {{out}} --summary

# Score kao-extract on every devdata case (../shared/devdata; needs python3 with pyarrow).
eval-devdata: build
    scripts/eval/devdata.sh

# Decode throughput against the ffmpeg CLI (720p, 1080p, and the dev interview when present).
bench-decode: build
    {{bin}}/kao-bench decode $(test -f ../shared/devdata/video/dev_interview.mp4 && echo --video ../shared/devdata/video/dev_interview.mp4)

# Embedding speed against dlib's own ResNet (dlib-bin in a venv the benchmark makes), and
# kao-embed's peak memory on a 10,000-face stream.
bench-embed: build
    {{bin}}/kao-bench embed

# Detection speed at 360p/720p/1080p against dlib's HOG and CNN detectors.
bench-detect: build fixtures
    {{bin}}/kao-bench detect --video tests/fixtures/sample.mp4

# The main job against the face_recognition pipeline on the dev interview, and peak memory at 1080p.
bench-extract: build
    {{bin}}/kao-bench extract

# The stage binaries with the networks on NVIDIA GPUs (`--device cuda`; needs the driver and
# NVRTC at run time, not the CUDA toolkit at build time).
build-cuda:
    cargo build --release --locked -p kao-cli --features kao-cli/cuda

# kao-report on an output folder: tables on stdout and DIR/report.html (builds kao-report,
# which pulls polars: about 12 minutes once).
report dir="out/demo/dataset":
    cargo build --release --locked -p kao-report
    {{bin}}/kao-report {{dir}}

# docs/report.png: the report of the demo run, rendered by headless Chromium.
report-screenshot: (report "out/demo/dataset")
    chromium --headless --no-sandbox --disable-gpu --disable-background-networking --hide-scrollbars \
      --user-data-dir=$(mktemp -d) --window-size=1280,2400 --screenshot=docs/report.png \
      "file://$PWD/out/demo/dataset/report.html"

# Start JupyterLab on notebooks/ with evcxr's Rust kernel (installs both once).
notebooks:
    ./scripts/notebooks.sh lab

# Run every notebook headless, top to bottom (what CI does); executed copies in out/notebooks/.
notebooks-check:
    ./scripts/notebooks.sh check
