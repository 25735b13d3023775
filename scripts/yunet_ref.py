"""Independent numpy reference for YuNet face detection (tests/data/yunet/face_detection_yunet_2026may.onnx),
written to tests/data/yunet/reference.json for kao's Rust tests to compare with.

Run with the venv of scripts/onnx_env.sh (needs tests/fixtures/photos from ./scripts/fixtures.sh):
    "$(./scripts/onnx_env.sh --python)" scripts/yunet_ref.py [--force]

Policy (recorded in the JSON):
  * resize: the image is scaled by s = 640 / max(width, height) (up or down) to (round(w*s), round(h*s))
    with Pillow's BILINEAR filter on 8-bit RGB (antialiased when shrinking), then zero-padded at the
    right and bottom to the next multiples of 32: that padded size is the network input size;
  * input: float32 [1,3,H,W], BGR, 0-255, no normalisation;
  * decode, per stride S in 8, 16, 32, one anchor per cell of the (H/S) x (W/S) grid in row-major order:
    centre = ((col + bbox0) S, (row + bbox1) S), size = (exp(bbox2) S, exp(bbox3) S),
    keypoint k = ((col + kps[2k]) S, (row + kps[2k+1]) S), score = sqrt(clip(cls,0,1) clip(obj,0,1));
  * keep score > 0.6, then greedy NMS (highest score first, drop boxes with IoU > 0.3 against a kept one);
  * map back to original image pixels by dividing by s (padding is at the right/bottom, so no offset);
    boxes are not clipped to the image.
Keypoints: right eye, left eye, nose tip, right mouth corner, left mouth corner (the subject's right,
so on the image's left for a frontal face), as (x, y) pairs.
Also records ONNX Runtime (Python, CPU, intra_op_num_threads=2) median ms per frame.
"""
import hashlib
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "tests", "data", "yunet")
MODEL = os.path.join(DIR, "face_detection_yunet_2026may.onnx")
SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg", "astronaut.png"]
MAX_SIDE, SCORE_THRESHOLD, NMS_IOU = 640, 0.6, 0.3
STRIDES = (8, 16, 32)


def prepare(path):
    """-> (input [1,3,H,W] float32 BGR, scale s, resized (w, h), image (w, h))."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = MAX_SIDE / max(w, h)
    rw, rh = round(w * s), round(h * s)
    small = np.asarray(im.resize((rw, rh), Image.BILINEAR))  # [rh, rw, 3] RGB uint8
    H, W = -(-rh // 32) * 32, -(-rw // 32) * 32
    x = np.zeros((1, 3, H, W), np.float32)
    x[0, :, :rh, :rw] = small[:, :, ::-1].transpose(2, 0, 1)  # RGB -> BGR, HWC -> CHW
    return x, s, (rw, rh), (w, h)


def decode(outs, H, W):
    """outs: name -> array. Returns boxes [n,4] (x, y, w, h), scores [n], keypoints [n,10], network pixels."""
    boxes, scores, kps = [], [], []
    for S in STRIDES:
        rows, cols = H // S, W // S
        cls = np.clip(outs[f"cls_{S}"][0, :, 0].astype(np.float64), 0, 1)
        obj = np.clip(outs[f"obj_{S}"][0, :, 0].astype(np.float64), 0, 1)
        bb = outs[f"bbox_{S}"][0].astype(np.float64)
        kp = outs[f"kps_{S}"][0].astype(np.float64)
        assert cls.shape[0] == rows * cols, (S, cls.shape, rows, cols)
        r, c = np.divmod(np.arange(rows * cols), cols)
        cx, cy = (c + bb[:, 0]) * S, (r + bb[:, 1]) * S
        bw, bh = np.exp(bb[:, 2]) * S, np.exp(bb[:, 3]) * S
        boxes.append(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1))
        scores.append(np.sqrt(cls * obj))
        k = np.empty_like(kp)
        k[:, 0::2] = (c[:, None] + kp[:, 0::2]) * S
        k[:, 1::2] = (r[:, None] + kp[:, 1::2]) * S
        kps.append(k)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps)


def iou(a, b):
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1 = np.minimum(a[0] + a[2], b[:, 0] + b[:, 2])
    y1 = np.minimum(a[1] + a[3], b[:, 1] + b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / (a[2] * a[3] + b[:, 2] * b[:, 3] - inter)


def nms(boxes, scores):
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > SCORE_THRESHOLD]
    keep = []
    for i in order:
        if not keep or (iou(boxes[i], boxes[keep]) <= NMS_IOU).all():
            keep.append(i)
    return keep


def main():
    out_path = os.path.join(DIR, "reference.json")
    if os.path.exists(out_path) and "--force" not in sys.argv:
        return
    digest = hashlib.sha256(open(MODEL, "rb").read()).hexdigest()
    if digest != SHA256:
        sys.exit(f"yunet_ref: {MODEL} has sha256 {digest}, want {SHA256}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(MODEL, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    photos = {}
    for name in PHOTOS:
        path = os.path.join(ROOT, "tests", "fixtures", "photos", name)
        if not os.path.exists(path):
            sys.exit(f"yunet_ref: {path} is missing: run ./scripts/fixtures.sh")
        x, s, (rw, rh), (w, h) = prepare(path)
        H, W = x.shape[2:]
        outs = dict(zip(names, sess.run(names, {"input": x})))
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            sess.run(names, {"input": x})
            times.append((time.perf_counter() - t0) * 1000)
        boxes, scores, kps = decode(outs, H, W)
        faces = [{"box": [round(float(v) / s, 3) for v in boxes[i]],
                  "score": round(float(scores[i]), 5),
                  "keypoints": [round(float(v) / s, 3) for v in kps[i]]} for i in nms(boxes, scores)]
        photos[name] = {"image_size": [w, h], "scale": s, "resized_size": [rw, rh], "input_size": [W, H],
                        "ort_ms": round(float(np.median(times)), 2), "faces": faces}
        print(f"yunet_ref: {name}: {w}x{h} -> input {W}x{H}, {len(faces)} face(s), "
              f"scores {[f['score'] for f in faces]}, {photos[name]['ort_ms']} ms", file=sys.stderr)
    ref = {
        "model": os.path.basename(MODEL), "sha256": SHA256,
        "policy": {
            "max_side": MAX_SIDE,
            "resize": "scale s = max_side / max(w, h); resized to (round(w*s), round(h*s)) with Pillow "
                      "BILINEAR on 8-bit RGB; zero padding at right/bottom to multiples of 32 = input_size",
            "input": "float32 [1,3,H,W], BGR, 0-255, no normalisation",
            "score": "sqrt(clip(cls,0,1) * clip(obj,0,1))",
            "score_threshold": SCORE_THRESHOLD, "score_rule": "score > threshold",
            "nms_iou": NMS_IOU, "nms_rule": "greedy by score, drop if IoU > nms_iou with a kept box",
            "box": "[x, y, w, h] in original image pixels (network pixels / scale), not clipped",
            "keypoints": "right eye, left eye, nose tip, right mouth corner, left mouth corner; (x, y) each; "
                         "the subject's right (image left for a frontal face)",
        },
        "ort": {"version": ort.__version__, "api": "python", "provider": "CPUExecutionProvider",
                "intra_op_num_threads": 2, "ort_ms": "median of 10 runs after one warm-up, per frame"},
        "photos": photos,
    }
    tmp = out_path + ".part"
    with open(tmp, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    os.replace(tmp, out_path)


if __name__ == "__main__":
    main()
