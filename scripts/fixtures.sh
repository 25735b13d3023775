#!/usr/bin/env bash
# Builds the test fixtures in tests/fixtures/ (git-ignored), idempotently: real photos from the
# face_recognition==1.3.0 sdist (fetched with pip), and small videos generated with the ffmpeg CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/fixtures
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kao/fixtures"
mkdir -p "$out/photos" "$cache"

# Real photos (several of Obama, one of Biden) from a registry package; not committed.
sdist="$cache/face_recognition-1.3.0.tar.gz"
if [ ! -s "$sdist" ]; then
  tmp=$(mktemp -d "$cache/.dl-XXXXXX")
  python3 -m pip download -q --no-deps --no-binary :all: face_recognition==1.3.0 -d "$tmp"
  mv "$tmp/face_recognition-1.3.0.tar.gz" "$sdist"; rmdir "$tmp"
fi
echo "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec  $sdist" | sha256sum -c --quiet
for name in obama.jpg obama2.jpg obama3.jpg biden.jpg obama_partial_face.jpg; do
  [ -s "$out/photos/$name" ] || tar -xzf "$sdist" -O "face_recognition-1.3.0/tests/test_images/$name" > "$out/photos/$name"
done
cp -f tests/data/astronaut.png "$out/photos/astronaut.png"

ff() { ffmpeg -hide_banner -loglevel error -nostdin -y "$@"; }
make() { # make TARGET CMD...: run CMD (writing $tmp) unless TARGET exists, then rename into place
  local target="$out/$1"; shift
  [ -s "$target" ] && return 0
  tmp="$target.part.${target##*.}"
  "$@"; mv "$tmp" "$target"
}

# Constant frame rate, 100 frames at 25 fps, B-frames (x264 defaults).
make cfr.mp4 eval 'ff -f lavfi -i testsrc2=size=320x240:rate=25 -t 4 -c:v libx264 -pix_fmt yuv420p "$tmp"'
# Variable frame rate: 30 fps, then 10 fps, then 30 fps again (60 frames in 4 s).
make vfr.mkv eval 'ff -f lavfi -i testsrc2=size=320x240:rate=30 -t 4 -vf "setpts='"'"'if(lt(N,30),N/30,if(lt(N,60),1+(N-30)/10,4+(N-60)/30))/TB'"'"'" -fps_mode passthrough -c:v libx264 "$tmp"'
# A faststart MP4 (index first) cut at 40 %: the index promises 100 frames, the data stops early.
make faststart.mp4 eval 'ff -f lavfi -i testsrc2=size=320x240:rate=25 -t 4 -c:v libx264 -pix_fmt yuv420p -movflags +faststart "$tmp"'
make truncated.mp4 eval 'head -c $(( $(stat -c %s "$out/faststart.mp4") * 2 / 5 )) "$out/faststart.mp4" > "$tmp"'
# Same stream in AVI with its codec tag replaced by one no decoder knows.
make unknown-codec.avi eval 'ff -i "$out/cfr.mp4" -c:v copy "$tmp.avi" && python3 -c "import sys; p=sys.argv[1]; d=open(p,\"rb\").read(); open(p,\"wb\").write(d.replace(b\"avc1\", b\"kao0\"))" "$tmp.avi" && mv "$tmp.avi" "$tmp"'
make not-a-video.mp4 eval 'printf "this is a text file, not a video\n" > "$tmp"'
make tiny.png eval 'ff -f lavfi -i color=gray:s=2x2 -frames:v 1 -vf scale=1:1 "$tmp"'
make huge.png eval 'ff -f lavfi -i color=gray:s=8000x8000 -frames:v 1 "$tmp"'
make astronaut.webp eval 'ff -i tests/data/astronaut.png "$tmp"'

# The sample "interview": four real photos, two seconds each, 1280x720 at 25 fps.
make sample.mp4 eval 'ff -loop 1 -t 2 -i "$out/photos/obama.jpg" -loop 1 -t 2 -i "$out/photos/biden.jpg" \
  -loop 1 -t 2 -i "$out/photos/obama2.jpg" -loop 1 -t 2 -i "$out/photos/astronaut.png" -filter_complex \
  "[0]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[a];[1]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[b];[2]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[c];[3]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[d];[a][b][c][d]concat=n=4:v=1[v]" \
  -map "[v]" -r 25 -c:v libx264 -pix_fmt yuv420p "$tmp"'

# A moving face (tests/fast.rs): Obama crosses a 640x360 picture in 5 s, bobbing, and Biden's
# face, hidden under a patch of the background until 1.5 s, appears mid-shot (too small a change
# for the shot detector to call it a cut).
make moving.mp4 eval 'ff -f lavfi -i "color=c=0x3a5a70:s=640x360:r=25:d=5" -i "$out/photos/obama.jpg" -i "$out/photos/biden.jpg" \
  -filter_complex "[1]scale=170:-2[a];[2]scale=150:-2[b];[0][a]overlay=x='"'"'20+t*70'"'"':y='"'"'50+20*sin(t*4)'"'"'[v];[v][b]overlay=x=440:y=120,drawbox=x=485:y=120:w=85:h=100:color=0x3a5a70:t=fill:enable='"'"'lt(t,1.5)'"'"',format=yuv420p" \
  -r 25 -c:v libx264 -pix_fmt yuv420p "$tmp"'

# A receding face (tests/fast.rs): Obama's photo, its top-left corner at (800, 300) of a 1080p
# picture, shrinks from 480 to 80 pixels wide in 4 s; BlazeFace full range loses the face.
make receding.mp4 eval 'ff -f lavfi -i "color=c=0x3a5a70:s=1920x1080:r=25:d=4" -loop 1 -i "$out/photos/obama.jpg" \
  -filter_complex "[1]scale=w='"'"'trunc((480-100*t)/2)*2'"'"':h=-2:eval=frame[a];[0][a]overlay=x=800:y=300:shortest=1,format=yuv420p" \
  -r 25 -t 4 -c:v libx264 -pix_fmt yuv420p "$tmp"'

# A small face (tests/fast.rs): Obama's photo, 200 px wide (a face of about 60 px), at (1500, 700)
# of a 1080p picture for 2 s; BlazeFace full range does not see it on the whole frame.
make small.mp4 eval 'ff -f lavfi -i "color=c=0x3a5a70:s=1920x1080:r=25:d=2" -i "$out/photos/obama.jpg" \
  -filter_complex "[1]scale=200:-2[a];[0][a]overlay=x=1500:y=700,format=yuv420p" -r 25 -t 2 -c:v libx264 -pix_fmt yuv420p "$tmp"'

# ---- ONNX fixtures (scripts/onnx_env.sh: a venv with numpy, onnx and onnxruntime from PyPI) ----
# dlib's ResNet as ONNX, malformed models (tests/fixtures/onnx/), and, if missing, the committed
# tests/data/onnx/ and tests/data/yunet/reference.json.
./scripts/onnx_env.sh
"$(./scripts/onnx_env.sh --python)" scripts/onnx_fixtures.py
"$(./scripts/onnx_env.sh --python)" scripts/yunet_ref.py
echo "kao: fixtures ready in $out" >&2
