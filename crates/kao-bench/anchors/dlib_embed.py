"""Anchor for `kao-bench embed`: dlib's own ResNet on the same chips, ms per face.

Usage: python dlib_embed.py MODEL.dat CHIP.npy FACES
Prints one JSON line: {"batch1_ms": ..., "batch32_ms": ...} (per face, best of 3).
"""
import json
import sys
import time

import dlib
import numpy as np

model = dlib.face_recognition_model_v1(sys.argv[1])
chip = np.ascontiguousarray(np.load(sys.argv[2]))
faces = int(sys.argv[3])
chips = [chip.copy() for _ in range(faces)]
model.compute_face_descriptor(chip)  # warm-up


def best(fn, n):
    times = []
    for _ in range(3):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000 / n)
    return min(times)


batch1 = best(lambda: [model.compute_face_descriptor(c) for c in chips], faces)
batch32 = best(lambda: [model.compute_face_descriptor(chips[i:i + 32]) for i in range(0, faces, 32)], faces)
print(json.dumps({"batch1_ms": batch1, "batch32_ms": batch32}))
