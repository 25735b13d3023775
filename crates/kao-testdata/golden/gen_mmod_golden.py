"""Regenerates the small MMOD goldens in this folder from dlib 20.0.1 and the verified
numpy oracle (reference/mmod_np.py, whose pyramid + decoding match dlib exactly).

  python3 -m venv /tmp/oracle && /tmp/oracle/bin/pip install numpy dlib-bin
  DLIB_MODELS=~/.cache/kao/models REFERENCE=/work/shared/reference \
      GOLDEN=/work/shared/golden/astronaut /tmp/oracle/bin/python gen_mmod_golden.py

Writes:
  mmod_pyramid_samples.json  tiled-pyramid rects, canvas size, per-channel sums and 1000
                             sampled values of mmod_np.to_tensor() for astronaut.npy, plus
                             rects/size for the 900x1000 multiscale canvas
  pyramid_up_in.npy / pyramid_up_out.npy
                             a 37x53 RGB crop of the astronaut and dlib's pyramid_up of it
                             (= resize_image to rect_up(get_rect(img)) size, bilinear)
  pyramid_rects.json         dlib pyramid_down<2>::rect_down / rect_up on a few rectangles
"""
import json, os, sys
import numpy as np
import dlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ['REFERENCE'])
import mmod_np  # noqa: E402  (parses the model at import; needs DLIB_MODELS)

golden = os.environ['GOLDEN']
ast = np.load(os.path.join(golden, 'astronaut.npy'))
canvas = np.load(os.path.join(golden, 'mmod_multiscale_canvas.npy'))

x, rects = mmod_np.to_tensor(ast)
rng = np.random.default_rng(7)
idx = [(int(c), int(y), int(xx)) for c, y, xx in zip(rng.integers(0, 3, 1000),
                                                      rng.integers(0, x.shape[1], 1000),
                                                      rng.integers(0, x.shape[2], 1000))]
_, crects, cnr, cnc = (None,) + mmod_np.tiled_rects(*canvas.shape[:2], 10, 11)
out = dict(
    astronaut=dict(shape=list(x.shape), rects=[list(r) for r in rects],
                   channel_sums=[float(x[c].astype(np.float64).sum()) for c in range(3)],
                   samples=[[c, y, xx, float(x[c, y, xx])] for c, y, xx in idx]),
    canvas=dict(shape=[3, cnr, cnc], rects=[list(r) for r in crects]),
)
json.dump(out, open(os.path.join(HERE, 'mmod_pyramid_samples.json'), 'w'))

pyr = dlib.pyramid_down(2)
crop = np.ascontiguousarray(ast[61:98, 150:203])
up = pyr.rect_up(dlib.rectangle(0, 0, crop.shape[1] - 1, crop.shape[0] - 1))
np.save(os.path.join(HERE, 'pyramid_up_in.npy'), crop)
np.save(os.path.join(HERE, 'pyramid_up_out.npy'), dlib.resize_image(crop, up.bottom() + 1, up.right() + 1))

cases = []
for (l, t, r, b) in ((0, 0, 99, 49), (330, 146, 526, 342), (10, 11, 13, 17), (-7, -3, 40, 41), (331, 147, 527, 343)):
    rc = dlib.rectangle(l, t, r, b)
    cases.append(dict(rect=[l, t, r, b],
                      down1=[getattr(pyr.rect_down(rc), k)() for k in ('left', 'top', 'right', 'bottom')],
                      down2=[getattr(pyr.rect_down(rc, 2), k)() for k in ('left', 'top', 'right', 'bottom')],
                      up1=[getattr(pyr.rect_up(rc), k)() for k in ('left', 'top', 'right', 'bottom')]))
json.dump(cases, open(os.path.join(HERE, 'pyramid_rects.json'), 'w'), indent=1)
print('pyramid', x.shape, len(rects), 'levels; pyramid_up', crop.shape, '->', (up.bottom() + 1, up.right() + 1))
