"""How the dlib-made golden chips in this folder were generated (dlib-bin 20.0.1).

    python3 -m venv /tmp/oracle && /tmp/oracle/bin/pip install numpy dlib-bin
    /tmp/oracle/bin/python gen_chips.py <golden/astronaut dir> <this dir>

astronaut.npy, landmarks5.npy and chip150.npy are copies of the project's golden
astronaut data (landmarks from dlib's 5-point predictor on the HOG box [175,76,265,166];
chip150 = dlib.get_face_chip(img, shape, 150, 0.25)).

The others: the 512x512 astronaut upscaled k times by pixel repetition, the 5 landmarks
mapped to k*p + k//2, and dlib.get_face_chip(image, shape, size, padding):
  chip150_x3.npy   k=3, 150, 0.25  (face rect > 4x chip area: one pyramid_down<2> level)
  chip150_x6.npy   k=6, 150, 0.25  (two pyramid_down<2> levels)
  chip151.npy      k=1, 151, 0.25  (odd size)
  chip75_pad01.npy k=1,  75, 0.10  (odd size, other padding)
"""
import sys, numpy as np, dlib

golden, out = sys.argv[1], sys.argv[2]
img = np.load(golden + '/astronaut.npy')
p5 = np.load(golden + '/landmarks5.npy')


def chip(k, size, padding):
    im = np.ascontiguousarray(np.repeat(np.repeat(img, k, 0), k, 1))
    pts = [dlib.point(int(k * x + k // 2), int(k * y + k // 2)) for x, y in p5]
    det = dlib.full_object_detection(dlib.rectangle(175 * k, 76 * k, 265 * k, 166 * k), pts)
    return dlib.get_face_chip(im, det, size, padding)


assert np.array_equal(chip(1, 150, 0.25), np.load(golden + '/chip150.npy'))
for k, size, padding, name in ((3, 150, 0.25, 'chip150_x3.npy'), (6, 150, 0.25, 'chip150_x6.npy'),
                               (1, 151, 0.25, 'chip151.npy'), (1, 75, 0.1, 'chip75_pad01.npy')):
    np.save(out + '/' + name, chip(k, size, padding))
