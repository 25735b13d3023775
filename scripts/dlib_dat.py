"""Parser for dlib DNN .dat files (dlib::serialize of a net type), used by scripts/onnx_fixtures.py.

Copied from the project's numpy oracles (shared/reference/dlib_dat.py), unchanged below the docstring.

Mirrors dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h,
dlib/dnn/core.h (add_layer / add_tag_layer / add_skip_layer / add_loss_layer),
dlib/dnn/layers.h, input.h, loss.h.
"""
import struct, sys
import numpy as np


class R:
    def __init__(self, data):
        self.b = data
        self.p = 0

    # --- serialize.h primitives -------------------------------------------
    def int_(self, signed=True):
        """dlib pack_int: 1 control byte (bit7 = negative for signed types,
        low nibble = number of following bytes), then little-endian magnitude."""
        ctrl = self.b[self.p]; self.p += 1
        neg = bool(ctrl & 0x80) if signed else False
        n = ctrl & 0x0F
        if n == 0 or n > 8:
            raise ValueError(f"bad int control byte {ctrl:#x} at {self.p-1}")
        v = int.from_bytes(self.b[self.p:self.p + n], 'little'); self.p += n
        return -v if neg else v

    def uint(self):
        return self.int_(signed=False)

    def float_(self):
        """float_details: int64 mantissa, int16 exponent, value = m * 2**e."""
        if self.b[self.p] & 0x70:
            raise ValueError("old ASCII float format not supported")
        m = self.int_(); e = self.int_()
        if e == 32000: return float('inf')
        if e == 32001: return float('-inf')
        if e == 32002: return float('nan')
        return float(m) * 2.0 ** e

    def str_(self):
        n = self.uint()
        s = self.b[self.p:self.p + n].decode('latin1'); self.p += n
        return s

    def bool_(self):
        c = self.b[self.p:self.p + 1]; self.p += 1
        if c not in (b'0', b'1'):
            raise ValueError(f"bad bool {c!r} at {self.p-1}")
        return c == b'1'

    def byte(self):
        c = self.b[self.p]; self.p += 1
        return c

    # --- tensor.h ----------------------------------------------------------
    def tensor(self):
        v = self.int_()
        assert v == 2, f"tensor version {v} at {self.p}"
        n, k, nr, nc = (self.int_() for _ in range(4))
        cnt = n * k * nr * nc
        a = np.frombuffer(self.b, dtype='<f4', count=cnt, offset=self.p).copy()
        self.p += 4 * cnt
        return a.reshape(n, k, nr, nc)

    def alias_tensor(self):
        v = self.int_(); assert v == 1
        return tuple(self.int_() for _ in range(4))


# --------------------------------------------------------------------------
# layer "details" parsers (dispatch on the version string)
# --------------------------------------------------------------------------

def parse_details(r):
    start = r.p
    ver = r.str_()
    d = {'type': ver}
    if ver in ('con_4', 'con_5', 'con_6'):
        d['params'] = r.tensor()
        d['num_filters'] = r.int_()
        d['nr'] = r.int_(); d['nc'] = r.int_()
        d['stride_y'] = r.int_(); d['stride_x'] = r.int_()
        d['pad_y'] = r.int_(); d['pad_x'] = r.int_()
        d['filters'] = r.alias_tensor(); d['biases'] = r.alias_tensor()
        d['lr_mult'] = r.float_(); d['wd_mult'] = r.float_()
        d['bias_lr_mult'] = r.float_(); d['bias_wd_mult'] = r.float_()
        d['use_bias'] = r.bool_() if ver in ('con_5', 'con_6') else True
        d['use_relu'] = r.bool_() if ver == 'con_6' else False
    elif ver in ('affine_', 'affine_2'):
        d['params'] = r.tensor()
        d['gamma'] = r.alias_tensor(); d['beta'] = r.alias_tensor()
        d['mode'] = r.int_()   # 0 = CONV_MODE, 1 = FC_MODE
        d['disabled'] = r.bool_() if ver == 'affine_2' else False
    elif ver in ('bn_con2', 'bn_fc2'):
        d['params'] = r.tensor()
        d['gamma'] = r.alias_tensor(); d['beta'] = r.alias_tensor()
        d['means'] = r.tensor(); d['invstds'] = r.tensor()
        d['running_means'] = r.tensor(); d['running_variances'] = r.tensor()
        d['num_updates'] = r.int_(); d['window'] = r.int_()
        for f in ('lr', 'wd', 'blr', 'bwd', 'eps'):
            d[f] = r.float_()
    elif ver in ('relu_', 'relu_2'):
        if ver == 'relu_2':
            d['disabled'] = r.bool_()
    elif ver in ('max_pool_2', 'avg_pool_2'):
        d['nr'] = r.int_(); d['nc'] = r.int_()
        d['stride_y'] = r.int_(); d['stride_x'] = r.int_()
        d['pad_y'] = r.int_(); d['pad_x'] = r.int_()
    elif ver == 'add_prev_':
        pass
    elif ver in ('fc_2', 'fc_3'):
        d['num_outputs'] = r.int_(); d['num_inputs'] = r.int_()
        d['params'] = r.tensor()
        d['weights'] = r.alias_tensor(); d['biases'] = r.alias_tensor()
        d['bias_mode'] = r.int_()  # 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS
        for f in ('lr', 'wd', 'blr', 'bwd'):
            d[f] = r.float_()
        d['use_bias'] = r.bool_() if ver == 'fc_3' else True
    elif ver in ('input_rgb_image_sized', 'input_rgb_image', 'input_rgb_image_pyramid'):
        d['avg'] = (r.float_(), r.float_(), r.float_())
        if ver == 'input_rgb_image_sized':
            d['nr'] = r.uint(); d['nc'] = r.uint()
        if ver == 'input_rgb_image_pyramid':
            # old version string: no padding fields; dlib uses defaults 10 / 11
            d['pyramid_padding'] = 10; d['pyramid_outer_padding'] = 11
    elif ver == 'input_rgb_image_pyramid2':
        d['avg'] = (r.float_(), r.float_(), r.float_())
        d['pyramid_padding'] = r.uint(); d['pyramid_outer_padding'] = r.uint()
    elif ver == 'loss_mmod_':
        v = r.int_(); d['options_version'] = v
        if v == 1:
            d['detector_windows'] = [(r.uint(), r.uint(), '')]
        else:
            n = r.uint(); wins = []
            for _ in range(n):
                wv = r.int_(); w = r.uint(); h = r.uint(); lab = r.str_() if wv == 2 else ''
                wins.append((w, h, lab))
            d['detector_windows'] = wins
        d['loss_per_false_alarm'] = r.float_(); d['loss_per_missed_target'] = r.float_()
        d['truth_match_iou_threshold'] = r.float_()
        d['overlaps_nms'] = (r.float_(), r.float_())      # (iou_thresh, percent_covered_thresh)
        d['overlaps_ignore'] = (r.float_(), r.float_())
        if v >= 3: d['assume_image_pyramid'] = r.byte()
        if v >= 4: d['use_bbr'] = r.bool_(); d['bbr_lambda'] = r.float_()
    elif ver == 'loss_metric_2':
        d['margin'] = r.float_(); d['dist_thresh'] = r.float_()
    elif ver == 'loss_metric_':
        pass
    else:
        raise ValueError(f"unknown layer version string {ver!r} at {start}")
    return d


# --------------------------------------------------------------------------
# structural deserialisation (core.h).  A net type is described as nested
# tuples, outermost first:
#   ('loss', sub)  ('layer', sub)  ('tag', id, sub)  ('skip', id, sub)  ('input',)
# 'layer' whose sub is ('input',) uses the input-layer add_layer specialisation.
# --------------------------------------------------------------------------

def parse_net(r, node, out):
    kind = node[0]
    if kind == 'loss':
        v = r.int_(); assert v == 1, v
        out.append(('loss', parse_details(r)))
        parse_net(r, node[1], out)
    elif kind in ('tag', 'skip'):
        v = r.int_(); assert v == 1, (kind, v, r.p)
        parse_net(r, node[2], out)
        out.append((kind + str(node[1]), None))
    elif kind == 'layer' and node[1][0] == 'input':
        v = r.int_(); assert v in (2, 3), v
        out.append(('input', parse_details(r)))
        d = parse_details(r)
        d['_trailer'] = [r.bool_(), r.bool_(), r.bool_(), r.tensor().shape, r.tensor().shape, r.tensor().shape]
        if v >= 3:
            d['_trailer'].append(r.uint())
        out.append(('layer', d))
    elif kind == 'layer':
        v = r.int_(); assert v in (1, 2), (v, r.p)
        parse_net(r, node[1], out)
        d = parse_details(r)
        d['_trailer'] = [r.bool_(), r.bool_(), r.bool_(), r.tensor().shape, r.tensor().shape]
        if v == 2:
            d['_trailer'].append(r.tensor().shape)
        out.append(('layer', d))
    else:
        raise ValueError(node)


# ----- the dlib_face_recognition_resnet_model_v1 net type ------------------
L = lambda sub: ('layer', sub)
tag = lambda i, sub: ('tag', i, sub)
skip = lambda i, sub: ('skip', i, sub)

def block(sub):           # BN<con<N,3,3,1,1,relu<BN<con<N,3,3,s,s,SUB>>>>>
    return L(L(L(L(L(sub)))))

def ares(sub):            # relu<add_prev1<block<...,tag1<SUB>>>>
    return L(L(block(tag(1, sub))))

def ares_down(sub):       # relu<add_prev2<avg_pool<skip1<tag2<block<tag1<SUB>>>>>>>
    return L(L(L(skip(1, tag(2, block(tag(1, sub)))))))

def resnet_type():
    x = ('input',)
    x = L(L(L(L(x))))                      # max_pool<relu<affine<con<32,7,7,2,2,input>>>>
    for _ in range(3): x = ares(x)         # alevel4 (32)
    x = ares_down(x);  [x := ares(x) for _ in range(3)]   # alevel3 (64)
    x = ares_down(x);  [x := ares(x) for _ in range(2)]   # alevel2 (128)
    x = ares_down(x);  [x := ares(x) for _ in range(2)]   # alevel1 (256)
    x = ares_down(x)                                       # alevel0 (256)
    x = L(x)                               # avg_pool_everything
    x = L(x)                               # fc_no_bias<128>
    return ('loss', x)


def nparams(d):
    if d is None: return 0
    n = 0
    for k in ('params',):
        if k in d and hasattr(d[k], 'size'):
            n += d[k].size
    return n


def mmod_type():
    x = ('input',)
    x = L(L(L(x)))            # relu<affine<con5d<16,input>>>
    x = L(L(L(x)))            # relu<affine<con5d<32,...>>>
    x = L(L(L(x)))            # relu<affine<con5d<32,...>>>
    for _ in range(3):
        x = L(L(L(x)))        # rcon5<45>
    x = L(x)                  # con<1,9,9,1,1>
    return ('loss', x)


def parse_file(path, net):
    data = open(path, 'rb').read()
    r = R(data); out = []
    parse_net(r, net, out)
    return out, r.p, len(data)


def parse_resnet(path):
    data = open(path, 'rb').read()
    r = R(data)
    out = []
    parse_net(r, resnet_type(), out)
    return out, r.p, len(data)


if __name__ == '__main__':
    path = sys.argv[1]
    net = mmod_type() if 'mmod' in path else resnet_type()
    out, pos, size = parse_file(path, net)
    total = 0; nbytes_tensors = 0
    for i, (kind, d) in enumerate(out):
        if d is None:
            print(f"{i:3d} {kind}")
            continue
        t = d['type']
        extra = ''
        if t.startswith('con_'):
            extra = f"filters={d['filters']} bias={d['biases']} k={d['nr']}x{d['nc']} s={d['stride_y']} pad={d['pad_y']} use_bias={d['use_bias']}"
        elif t.startswith('affine'):
            extra = f"gamma={d['gamma']} mode={d['mode']} disabled={d['disabled']}"
        elif t.startswith(('max_pool', 'avg_pool')):
            extra = f"win={d['nr']}x{d['nc']} s={d['stride_y']} pad={d['pad_y']}"
        elif t.startswith('fc'):
            extra = f"in={d['num_inputs']} out={d['num_outputs']} w={d['weights']} bias_mode={d['bias_mode']}"
        elif t.startswith('input'):
            extra = {k: v for k, v in d.items() if k != 'type'}
        elif t.startswith('loss'):
            extra = {k: v for k, v in d.items() if k != 'type'}
        p = nparams(d); total += p
        print(f"{i:3d} {t:22s} params={p:8d} {extra} trailer={d.get('_trailer')}")
    print(f"total params: {total}  ({total*4} bytes of f32); parsed {pos} of {size} bytes; "
          f"non-tensor overhead {size - total*4} bytes")
    assert pos == size, "did not consume the whole file"
