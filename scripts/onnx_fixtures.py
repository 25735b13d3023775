"""ONNX test fixtures for kao, idempotent (existing files are kept) and deterministic (fixed seeds).

Run with the venv of scripts/onnx_env.sh:  "$(./scripts/onnx_env.sh --python)" scripts/onnx_fixtures.py

Writes (tests/fixtures/ is git-ignored; tests/data/onnx/ is committed, regenerated only if missing):
  tests/fixtures/onnx/dlib_resnet.onnx   dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1
                                         .dat from $KAO_MODELS or ~/.cache/kao/models) as an ONNX graph:
                                         input `chip` float32 [N,3,150,150] (already normalised), output
                                         `embedding` [N,128]; checked with ONNX Runtime against dlib's own
                                         descriptor of crates/kao-testdata/golden/chip150.npy (crates/kao-testdata/golden/embedding128.npy)
  tests/fixtures/onnx/dlib_resnet.json   its preprocessing: x = (pixel * pixel_scale - mean) / std, RGB
  tests/data/onnx/effnet.onnx            a small generated EfficientNetV2-style net, input `input`
                                         [N,3,112,112], output `features` [N,512]
  tests/data/onnx/effnet_{in,out}_b{1,3}.npy   inputs and ONNX Runtime (CPU, default options) outputs;
                                         effnet_in_b3[0] == effnet_in_b1[0]
  tests/fixtures/onnx/{two_inputs,wrong_rank,truncated,not_onnx,rank3_input}.onnx   malformed models
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from dlib_dat import parse_resnet  # noqa: E402

FIX = os.path.join(ROOT, "tests", "fixtures", "onnx")
DATA = os.path.join(ROOT, "tests", "data", "onnx")
OPSET, IR_VERSION = 17, 8
PRODUCER = "kao scripts/onnx_fixtures.py"


def log(msg):
    print(f"kao onnx_fixtures: {msg}", file=sys.stderr)


def models_dir():
    if os.environ.get("KAO_MODELS"):
        return os.environ["KAO_MODELS"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "kao", "models")


def save_atomic(path, write):
    """write(tmp_path) then rename into place, so an interrupted run leaves no half file."""
    tmp = path + ".part"
    write(tmp)
    os.replace(tmp, path)


def save_model(model, path):
    onnx.checker.check_model(model, full_check=True)
    save_atomic(path, lambda p: onnx.save(model, p))


def save_npy(path, arr):
    save_atomic(path, lambda p: np.save(open(p, "wb"), arr))


def dims(shape):
    return [d if isinstance(d, (int, str)) else None for d in shape]


class Graph:
    """A tiny onnx.helper wrapper: nodes, float32 initializers, unique names."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], {}

    def name(self, base):
        k = self.count.get(base, 0)
        self.count[base] = k + 1
        return f"{base}_{k}"

    def const(self, base, arr, dtype=np.float32):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=dtype), name))
        return name

    def op(self, op_type, inputs, out=None, **attrs):
        out = out or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def model(self, name, inputs, outputs, doc=""):
        g = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name=PRODUCER, ir_version=IR_VERSION)
        m.doc_string = doc
        return m


def value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims(shape) if shape is not None else None)


# ---------------------------------------------------------------------------------------------
# a. dlib's ResNet
# ---------------------------------------------------------------------------------------------

def dlib_preprocessing(avg):
    # dlib input_rgb_image_sized<150>::to_tensor: (pixel - avg[c]) / 256 for c = R, G, B
    # (resnet_np.py, which matches dlib within 2.7e-7, does the same).
    return {"input_size": 150, "pixel_scale": 1.0, "mean": [float(a) for a in avg],
            "std": [256.0, 256.0, 256.0], "channels": "rgb"}


def normalise(chip_hwc_u8, pre):
    x = chip_hwc_u8.astype(np.float32) * np.float32(pre["pixel_scale"])
    x = (x - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
    return x.transpose(2, 0, 1)[None]  # [1,3,H,W]


def export_dlib(dat):
    layers, _, _ = parse_resnet(dat)
    inp = layers[1][1]
    assert inp["type"] == "input_rgb_image_sized" and inp["nr"] == inp["nc"] == 150, inp
    g = Graph()
    x, shape = "chip", (3, 150, 150)  # shape without the batch dimension
    tags, prev = {}, None
    for kind, d in layers[2:]:
        if kind.startswith("tag"):
            tags[kind] = (x, shape)
            continue
        if kind.startswith("skip"):
            x, shape = tags["tag" + kind[4:]]
            continue
        t = d["type"]
        if t.startswith("con_"):
            F, C, kh, kw = d["filters"]
            p = d["params"].reshape(-1)
            w = p[:F * C * kh * kw].reshape(F, C, kh, kw)
            ins = [x, g.const("conv_w", w)]
            if d["use_bias"]:
                ins.append(g.const("conv_b", p[F * C * kh * kw:F * C * kh * kw + F]))
            sy, sx, py, px = d["stride_y"], d["stride_x"], d["pad_y"], d["pad_x"]
            x = g.op("Conv", ins, kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px])
            assert not d["use_relu"]
            shape = (F, (shape[1] + 2 * py - kh) // sy + 1, (shape[2] + 2 * px - kw) // sx + 1)
        elif t.startswith("affine"):
            assert d["mode"] == 0, "only conv-mode affine layers"
            if not d["disabled"]:
                C = d["gamma"][1]
                p = d["params"].reshape(-1)
                x = g.op("Mul", [x, g.const("affine_gamma", p[:C].reshape(1, C, 1, 1))])
                x = g.op("Add", [x, g.const("affine_beta", p[C:2 * C].reshape(1, C, 1, 1))])
        elif t.startswith("relu"):
            if not d.get("disabled", False):
                x = g.op("Relu", [x])
        elif t.startswith(("max_pool", "avg_pool")):
            kh, kw, sy, sx, py, px = (d[k] for k in ("nr", "nc", "stride_y", "stride_x", "pad_y", "pad_x"))
            if kh == 0:  # avg_pool_everything
                x = g.op("GlobalAveragePool", [x])
                shape = (shape[0], 1, 1)
            else:
                assert t.startswith("max_pool") or (py, px) == (0, 0), "padded avg_pool not mapped"
                x = g.op("MaxPool" if t.startswith("max_pool") else "AveragePool", [x],
                         kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px])
                shape = (shape[0], (shape[1] + 2 * py - kh) // sy + 1, (shape[2] + 2 * px - kw) // sx + 1)
        elif t == "add_prev_":
            # add_prev2 follows avg_pool (adds tag2), add_prev1 follows a block (adds tag1); dlib adds
            # tensors of different sizes as if the smaller were zero-padded at the end: Pad + Add.
            other, oshape = tags["tag2" if prev.startswith("avg_pool") else "tag1"]
            out_shape = tuple(max(a, b) for a, b in zip(shape, oshape))
            terms = []
            for name, s in ((x, shape), (other, oshape)):
                if s != out_shape:
                    pads = [0, 0, 0, 0, 0] + [o - i for o, i in zip(out_shape, s)]
                    name = g.op("Pad", [name, g.const("pad", np.array(pads, np.int64), np.int64)], mode="constant")
                terms.append(name)
            x, shape = g.op("Add", terms), out_shape
        elif t.startswith("fc"):
            n_in, n_out = d["num_inputs"], d["num_outputs"]
            p = d["params"].reshape(-1, n_out)
            assert n_in == shape[0] * shape[1] * shape[2], (n_in, shape)
            x = g.op("Flatten", [x], axis=1)
            has_bias = d["use_bias"] and d["bias_mode"] == 0
            x = g.op("MatMul", [x, g.const("fc_w", p[:n_in])], out=None if has_bias else "embedding")
            if has_bias:
                x = g.op("Add", [x, g.const("fc_b", p[n_in])], out="embedding")
            shape = (n_out,)
        else:
            raise ValueError(f"layer {t} not mapped")
        prev = t
    assert x == "embedding" and shape == (128,), (x, shape)
    m = g.model("dlib_face_recognition_resnet_model_v1",
                [value("chip", ["N", 3, 150, 150])], [value("embedding", ["N", 128])],
                doc="dlib_face_recognition_resnet_model_v1 (dlib, Boost licence) converted by " + PRODUCER
                    + "; input normalised as in dlib_resnet.json: (pixel - mean) / 256, RGB, NCHW")
    return m, dlib_preprocessing(inp["avg"])


def make_dlib():
    onnx_path, json_path = os.path.join(FIX, "dlib_resnet.onnx"), os.path.join(FIX, "dlib_resnet.json")
    chip_path = os.path.join(ROOT, "crates", "kao-testdata", "golden", "chip150.npy")
    if os.path.exists(onnx_path) and os.path.exists(json_path):
        return
    dat = os.path.join(models_dir(), "dlib_face_recognition_resnet_model_v1.dat")
    if not os.path.exists(dat):
        sys.exit(f"kao onnx_fixtures: {dat} is missing: run python3 models/fetch.py first")
    log(f"converting {dat}")
    model, pre = export_dlib(dat)
    # Check before saving: dlib's own descriptor of the same chip, and batch independence.
    chip = np.load(chip_path)
    assert chip.dtype == np.uint8 and chip.shape == (150, 150, 3), (chip.dtype, chip.shape)
    want = np.load(os.path.join(ROOT, "crates", "kao-testdata", "golden", "embedding128.npy"))  # dlib's, float64
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = normalise(chip, pre)
    got = sess.run(None, {"chip": x})[0]
    batch = sess.run(None, {"chip": np.ascontiguousarray(np.concatenate([x[:, :, ::-1], x, x[:, :, :, ::-1]]))})[0]
    diff = float(np.abs(got[0] - want).max())
    bdiff = float(np.abs(batch[1] - got[0]).max())
    log(f"dlib_resnet.onnx vs dlib's descriptor: max abs diff {diff:.3g} (batch-of-3 row vs batch 1: {bdiff:.3g})")
    if not (diff < 1e-4 and bdiff < 1e-5):
        sys.exit("kao onnx_fixtures: dlib_resnet.onnx does not match dlib")
    save_model(model, onnx_path)
    save_atomic(json_path, lambda p: open(p, "w").write(json.dumps(pre, indent=2) + "\n"))


# ---------------------------------------------------------------------------------------------
# b. a small EfficientNetV2-style net
# ---------------------------------------------------------------------------------------------

class EffNet:
    """Builds the graph; batch-norm statistics are placeholders until calibrate()."""

    def __init__(self, seed=20260512):
        self.rng = np.random.default_rng(seed)
        self.g = Graph()
        self.bns = []  # (input name, mean init, var init, channels)

    def w(self, base, shape, scale):
        return self.g.const(base, self.rng.standard_normal(shape) * scale)

    def conv(self, x, cin, cout, k, s=1, groups=1, bias=False, gain=1.0):
        fan_in = cin // groups * k * k
        ins = [x, self.w("conv_w", (cout, cin // groups, k, k), gain / np.sqrt(fan_in))]
        if bias:
            ins.append(self.w("conv_b", (cout,), 0.1))
        p = k // 2
        return self.g.op("Conv", ins, kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p], group=groups)

    def bn(self, x, c):
        g = self.g
        gamma = g.const("bn_gamma", self.rng.uniform(0.7, 1.3, c))
        beta = g.const("bn_beta", self.rng.normal(0.0, 0.2, c))
        mean, var = g.const("bn_mean", np.zeros(c)), g.const("bn_var", np.ones(c))
        self.bns.append((x, mean, var, c))
        return g.op("BatchNormalization", [x, gamma, beta, mean, var], epsilon=1e-3)

    def silu(self, x):
        return self.g.op("Mul", [x, self.g.op("Sigmoid", [x])])

    def se(self, x, c, squeeze):
        s = self.g.op("GlobalAveragePool", [x])
        s = self.silu(self.conv(s, c, squeeze, 1, bias=True, gain=2.0))
        s = self.g.op("Sigmoid", [self.conv(s, squeeze, c, 1, bias=True, gain=2.0)])
        return self.g.op("Mul", [x, s])

    def fused_mbconv(self, x, cin, cout, expand, s):
        h = self.silu(self.bn(self.conv(x, cin, cin * expand, 3, s), cin * expand))
        h = self.bn(self.conv(h, cin * expand, cout, 1), cout)
        return self.g.op("Add", [x, h]) if s == 1 and cin == cout else h

    def mbconv(self, x, cin, cout, expand, s):
        c = cin * expand
        h = self.silu(self.bn(self.conv(x, cin, c, 1), c))
        h = self.silu(self.bn(self.conv(h, c, c, 3, s, groups=c), c))
        h = self.se(h, c, max(1, cin // 4))
        h = self.bn(self.conv(h, c, cout, 1), cout)
        return self.g.op("Add", [x, h]) if s == 1 and cin == cout else h

    def build(self):
        x = self.silu(self.bn(self.conv("input", 3, 24, 3, 2), 24))       # 56x56
        x = self.fused_mbconv(x, 24, 24, 2, 1)
        x = self.fused_mbconv(x, 24, 40, 4, 2)                             # 28x28
        x = self.fused_mbconv(x, 40, 40, 4, 1)
        x = self.mbconv(x, 40, 64, 4, 2)                                   # 14x14
        x = self.mbconv(x, 64, 64, 4, 1)
        x = self.mbconv(x, 64, 96, 4, 2)                                   # 7x7
        x = self.mbconv(x, 96, 96, 4, 1)
        x = self.silu(self.bn(self.conv(x, 96, 320, 1), 320))              # head
        x = self.g.op("Flatten", [self.g.op("GlobalAveragePool", [x])], axis=1)
        w = self.w("fc_w", (512, 320), 1.0 / np.sqrt(320))
        self.g.op("Gemm", [x, w, self.w("fc_b", (512,), 0.05)], out="features", transB=1)

    def model(self, extra_outputs=()):
        m = self.g.model("effnet_tiny", [value("input", ["N", 3, 112, 112])],
                         [value("features", ["N", 512])] + [value(n, None) for n in extra_outputs],
                         doc="a small random EfficientNetV2-style net (fused-MBConv, MBConv with "
                             "squeeze-excite) generated by " + PRODUCER + " for tests")
        return m

    def calibrate(self, batch):
        """Set each BN's running mean/var, in order, to the statistics of its input on `batch`, so
        that every BN output is about N(beta, gamma^2): activations stay in a sane range."""
        inits = {t.name: t for t in self.g.inits}
        for x, mean, var, c in self.bns:
            sess = ort.InferenceSession(self.model([x]).SerializeToString(), providers=["CPUExecutionProvider"])
            a = sess.run([x], {"input": batch})[0].astype(np.float64)
            inits[mean].CopyFrom(numpy_helper.from_array(a.mean(axis=(0, 2, 3)).astype(np.float32), mean))
            inits[var].CopyFrom(numpy_helper.from_array(a.var(axis=(0, 2, 3)).astype(np.float32), var))


def image_like(seed, n):
    """n image-like [3,112,112] inputs: a smooth random field (8x8 noise, bilinearly upsampled), a
    per-channel offset and fine noise, so that items differ after global pooling too."""
    rng = np.random.default_rng(seed)
    t = np.clip((np.arange(112) + 0.5) * 8 / 112 - 0.5, 0, 7)
    i0 = np.floor(t).astype(int)
    i1, f = np.minimum(i0 + 1, 7), t - i0
    up = np.zeros((112, 8))
    up[np.arange(112), i0] += 1 - f
    up[np.arange(112), i1] += f
    field = up @ rng.standard_normal((n, 3, 8, 8)) @ up.T
    offset = rng.normal(0.0, 0.5, (n, 3, 1, 1))
    return (offset + field + 0.3 * rng.standard_normal((n, 3, 112, 112))).astype(np.float32)


def effnet_inputs():
    b3 = image_like(112, 3)
    return b3[:1].copy(), b3


def make_effnet():
    path = os.path.join(DATA, "effnet.onnx")
    if not os.path.exists(path):
        log("generating effnet.onnx")
        net = EffNet()
        net.build()
        net.calibrate(image_like(7, 8))
        save_model(net.model(), path)
    b1, b3 = effnet_inputs()
    sess = None
    for tag, x in (("b1", b1), ("b3", b3)):
        inp, out = os.path.join(DATA, f"effnet_in_{tag}.npy"), os.path.join(DATA, f"effnet_out_{tag}.npy")
        if not os.path.exists(inp):
            save_npy(inp, x)
        if not os.path.exists(out):
            sess = sess or ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            y = sess.run(None, {"input": np.load(inp)})[0]
            log(f"effnet_out_{tag}: shape {y.shape}, mean {y.mean():.3f}, std {y.std():.3f}, max |y| {np.abs(y).max():.3f}")
            save_npy(out, y)


# ---------------------------------------------------------------------------------------------
# c. malformed models
# ---------------------------------------------------------------------------------------------

def small_head(g, x, c, n_out):
    """GlobalAveragePool, Flatten, Gemm to n_out: [N,c,H,W] -> [N,n_out]."""
    rng = np.random.default_rng(3)
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    return g.op("Gemm", [x, g.const("w", rng.standard_normal((c, n_out))), g.const("b", np.zeros(n_out))],
                out="features")


def make_malformed():
    def two_inputs():
        g = Graph()
        small_head(g, g.op("Add", ["image_a", "image_b"]), 3, 16)
        return g.model("two_inputs", [value("image_a", ["N", 3, 112, 112]), value("image_b", ["N", 3, 112, 112])],
                       [value("features", ["N", 16])], doc="valid, but two image inputs")

    def wrong_rank():
        g = Graph()
        rng = np.random.default_rng(4)
        x = g.op("Conv", ["input", g.const("w", rng.standard_normal((16, 3, 1, 1)))], kernel_shape=[1, 1])
        g.op("GlobalAveragePool", [x], out="features")
        return g.model("wrong_rank", [value("input", ["N", 3, 112, 112])], [value("features", ["N", 16, 1, 1])],
                       doc="valid, but the output has rank 4")

    def rank3_input():
        g = Graph()
        x = g.op("ReduceMean", ["input"], axes=[1, 2], keepdims=0)                # [3]
        x = g.op("Unsqueeze", [x, g.const("axes", np.array([0], np.int64), np.int64)])  # [1,3]
        rng = np.random.default_rng(5)
        g.op("MatMul", [x, g.const("w", rng.standard_normal((3, 16)))], out="features")
        return g.model("rank3_input", [value("input", [3, 112, 112])], [value("features", [1, 16])],
                       doc="valid, but the input has rank 3 (CHW, no batch)")

    for name, make in (("two_inputs", two_inputs), ("wrong_rank", wrong_rank), ("rank3_input", rank3_input)):
        path = os.path.join(FIX, name + ".onnx")
        if not os.path.exists(path):
            model = make()
            save_model(model, path)
            ort.InferenceSession(path, providers=["CPUExecutionProvider"])  # loads: only the shape is wrong

    path = os.path.join(FIX, "truncated.onnx")
    if not os.path.exists(path):
        data = open(os.path.join(DATA, "effnet.onnx"), "rb").read()
        save_atomic(path, lambda p: open(p, "wb").write(data[:len(data) // 2]))
    path = os.path.join(FIX, "not_onnx.onnx")
    if not os.path.exists(path):
        save_atomic(path, lambda p: open(p, "w").write("this is a text file, not an ONNX model\n"))


def main():
    os.makedirs(FIX, exist_ok=True)
    os.makedirs(DATA, exist_ok=True)
    make_dlib()
    make_effnet()
    make_malformed()


if __name__ == "__main__":
    main()
