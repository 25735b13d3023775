"""ONNX Runtime (Python, CPU, intra_op_num_threads=2) median ms per item for kao's ONNX test models, as a
small table for the benchmarks doc: dlib_resnet.onnx and effnet.onnx at batch 1 and 32.

Run with the venv of scripts/onnx_env.sh after scripts/onnx_fixtures.py:
    "$(./scripts/onnx_env.sh --python)" scripts/onnx_bench.py [--runs N]
Each (model, batch) gets one warm-up run, then N timed runs (default 20 at batch 1, 5 at batch 32).
"""
import argparse
import os
import platform
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = [("dlib_resnet", os.path.join(ROOT, "tests", "fixtures", "onnx", "dlib_resnet.onnx")),
          ("effnet", os.path.join(ROOT, "tests", "data", "onnx", "effnet.onnx"))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, help="timed runs per (model, batch)")
    ap.add_argument("--threads", type=int, default=2, help="intra_op_num_threads (default 2)")
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    rng = np.random.default_rng(0)
    cpu = platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"ONNX Runtime {ort.__version__} (Python, CPUExecutionProvider, intra_op_num_threads={args.threads}); "
          f"{cpu}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print(f"| model | batch | ms/batch | ms/item | runs |")
    print(f"|---|---:|---:|---:|---:|")
    for name, path in MODELS:
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        for batch in (1, 32):
            x = (0.5 * rng.standard_normal([batch] + list(inp.shape[1:]))).astype(np.float32)
            sess.run(None, {inp.name: x})
            runs = args.runs or (20 if batch == 1 else 5)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                sess.run(None, {inp.name: x})
                times.append((time.perf_counter() - t0) * 1000)
            ms = float(np.median(times))
            print(f"| {name} | {batch} | {ms:.2f} | {ms / batch:.2f} | {runs} |")


if __name__ == "__main__":
    main()
