"""Anchor for `kao-bench detect`: dlib's HOG and CNN (MMOD) face detectors on the same frames.

Usage: python dlib_detect.py MMOD.dat FRAMES.npy ROUNDS
FRAMES.npy is a uint8 array (n, h, w, 3). Prints one JSON line with the median ms per frame of
each detector at upsample 0: {"hog_ms": ..., "cnn_ms": ..., "hog_faces": n, "cnn_faces": n}.
"""
import json
import statistics
import sys
import time

import dlib
import numpy as np

cnn = dlib.cnn_face_detection_model_v1(sys.argv[1])
hog = dlib.get_frontal_face_detector()
frames = np.load(sys.argv[2])
rounds = int(sys.argv[3])


def per_frame(detect):
    detect(frames[0])  # warm-up
    times, faces = [], 0
    for _ in range(rounds):
        for frame in frames:
            t = time.perf_counter()
            faces += len(detect(frame))
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), faces // rounds


hog_ms, hog_faces = per_frame(lambda f: hog(f, 0))
cnn_ms, cnn_faces = per_frame(lambda f: cnn(f, 0))
print(json.dumps({"hog_ms": hog_ms, "cnn_ms": cnn_ms, "hog_faces": hog_faces, "cnn_faces": cnn_faces}))
