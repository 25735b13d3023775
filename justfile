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
    cargo build --release --locked --workspace

# The stages as a pipe: decode the sample at 2 frames/s, find and embed the faces, store
# the face records as Parquet.
pipe video="tests/fixtures/sample.mp4" out="out/faces.parquet": build fixtures
    mkdir -p "$(dirname {{out}})"
    {{bin}}/kao-decode {{video}} --fps 2 | {{bin}}/kao-detect | {{bin}}/kao-embed | {{bin}}/kao-cat -o {{out}}
    {{bin}}/kao-cat {{out}} --summary

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

# The stage binaries with the networks on NVIDIA GPUs (`--device cuda`; needs the driver and
# NVRTC at run time, not the CUDA toolkit at build time).
build-cuda:
    cargo build --release --locked -p kao-embed -p kao-detect --features kao-embed/cuda,kao-detect/cuda
