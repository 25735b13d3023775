#!/usr/bin/env python3
"""Threshold study for kao's matching distance, on the labelled photos of ../shared/devdata.

Needs python3 with numpy and pyarrow. If the system python lacks them, make a venv once and run
the script with that venv's python:

    python3 -m venv /tmp/kao-eval/venv && /tmp/kao-eval/venv/bin/pip install numpy pyarrow
    /tmp/kao-eval/venv/bin/python scripts/eval/threshold_study.py [--devdata ../shared/devdata] \
        [--bin target/release] [--cache /tmp/kao-eval] [--no-clip] > /tmp/kao-eval/threshold_study.txt

and the release binaries kao-decode, kao-detect, kao-embed (cargo build --release) plus the model
files (python3 models/fetch.py).

What it does:
  * every photo under faces/ whose MANIFEST.tsv identity is one named person (not unknown/none, not
    ';'-joined), and every photo under refs/<case>/<name>/, is embedded with kao's own tools:
        kao-decode PHOTO | kao-detect --detector mmod [--upsample 1] [--detect-width W] -o det.parquet
        kao-embed det.parquet [--jitters 100] -o emb.parquet
    keeping the largest face (w*h). --upsample 1 when the photo's short side is under 400 px, and as a
    fallback when nothing is found; --detect-width when the photo is over 2048^2 pixels (MMOD refuses
    those). Byte-identical files (refs/ holds copies of faces/deepface photos) are embedded once and
    never paired with themselves.
  * two embeddings per photo: "plain" (jitters 1, like video faces) and "ref-style" (jitters 100, like
    reference photos).
  * reports distance distributions, true/false-accept rates per threshold (ref-style vs plain, all
    ordered pairs of different photos), Matt Damon vs Leonardo DiCaprio, the nearest-reference
    distance for each refs/ set, the closest different-identity and farthest same-identity pairs.
  * unless --no-clip: runs decode | detect | embed (default detector blazeface-full, --clip-detector to
    change) on video/dev_interview.mp4 and video/elon_smoke.mp4, labels each face with the ground
    truth, and scores every threshold with the project's score.py for the cases dev_interview_katy,
    dev_interview_damon and elon_smoke (identity = target when the nearest reference is within the
    threshold), with the references embedded with 100 jitters and, for comparison, plain.
Everything is cached under --cache (default /tmp/kao-eval/cache); the markdown report goes to stdout,
progress to stderr.
"""
import argparse
import csv
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

try:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # pragma: no cover
    sys.exit('threshold_study.py: needs numpy and pyarrow; see the header for the venv commands')

ROOT = Path(__file__).resolve().parents[2]
THRESHOLDS = [round(0.35 + 0.025 * k, 3) for k in range(13)]  # 0.35 .. 0.65
MAX_AREA = 2048 * 2048
SMALL_SIDE = 400
REF_JITTERS = 100


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        raise RuntimeError(f'{cmd}: exit {r.returncode}: {r.stderr.decode(errors="replace").strip()[-400:]}')
    return r


def image_size(path):
    out = run(['ffprobe', '-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=width,height',
               '-of', 'csv=p=0', str(path)]).stdout.decode().strip().split(',')
    return int(out[0]), int(out[1])


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def q(p):
    return "'" + str(p).replace("'", "'\\''") + "'"


# ---------------------------------------------------------------------------------------- photos

def collect_photos(dev):
    """-> list of dict(sha, identity, paths, is_ref_of) for unique photo files."""
    man = list(csv.DictReader(open(dev / 'MANIFEST.tsv', newline=''), delimiter='\t'))
    entries = []
    for r in man:
        p, ident = r['path'], r['identity'].strip()
        if not p.startswith('faces/') or ident in ('unknown', 'none', '-', '') or ';' in ident:
            continue
        entries.append((p, ident))
    for p in sorted((dev / 'refs').glob('*/*/*')):
        if p.is_file():
            entries.append((str(p.relative_to(dev)), p.parent.name))
    by_sha = {}
    for p, ident in entries:
        s = sha256(dev / p)
        d = by_sha.setdefault(s, dict(sha=s, identity=ident, paths=[], ref_cases=[]))
        if d['identity'] != ident:
            log(f'warning: {p} is labelled {ident} but a byte-identical file is {d["identity"]}')
        d['paths'].append(p)
        if p.startswith('refs/'):
            d['ref_cases'].append(p.split('/')[1])
    photos = list(by_sha.values())
    for d in photos:
        faces = [p for p in d['paths'] if p.startswith('faces/')]
        main = faces[0] if faces else d['paths'][0]
        d['path'] = main
        d['name'] = main[len('faces/'):] if main.startswith('faces/') else main
        if d['ref_cases']:
            d['name'] += ' [ref ' + ','.join(d['ref_cases']) + ']'
    photos.sort(key=lambda d: d['path'])
    return photos


def detect_options(w, h, upsample):
    opts = ['--detector', 'mmod']
    if upsample:
        opts += ['--upsample', str(upsample)]
    scale = (2 ** upsample) ** 2
    if w * h * scale > MAX_AREA:
        opts += ['--detect-width', str(int(w * math.sqrt(MAX_AREA * 0.99 / (w * h * scale))))]
    return opts


class Kao:
    def __init__(self, bindir, cache):
        self.bin = Path(bindir)
        self.cache = Path(cache)
        self.cache.mkdir(parents=True, exist_ok=True)
        for b in ('kao-decode', 'kao-detect', 'kao-embed'):
            if not (self.bin / b).exists():
                sys.exit(f'threshold_study.py: {self.bin / b} missing: cargo build --release first')

    def detect(self, photo_path, sha, opts):
        key = sha[:16] + '_' + '_'.join(o.strip('-') for o in opts)
        out = self.cache / f'{key}.det.parquet'
        if not out.exists():
            run(f'{q(self.bin / "kao-decode")} {q(photo_path)} | {q(self.bin / "kao-detect")} '
                + ' '.join(opts) + f' -o {q(out)}')
        return out

    def embed(self, det, jitters):
        out = det.with_name(det.name.replace('.det.parquet', f'.j{jitters}.parquet'))
        if not out.exists():
            run([str(self.bin / 'kao-embed'), str(det), '--jitters', str(jitters), '-o', str(out)])
        return out


def largest_face(det):
    """det parquet -> (row index of its largest face by w*h, n faces); (None, 0) when no face.
    kao-embed keeps the input's rows in order, so the index also picks the embedding."""
    t = pq.read_table(det, columns=['w', 'h'])
    if t.num_rows == 0:
        return None, 0
    area = t.column('w').to_numpy().astype(np.float64) * t.column('h').to_numpy().astype(np.float64)
    return int(np.argmax(area)), t.num_rows


def read_embedding(path, row):
    t = pq.read_table(path, columns=['embedding'])
    return np.asarray(t.column('embedding')[row].as_py(), dtype=np.float64)


def embed_photos(kao, dev, photos):
    stats = dict(no_face=[], settings={})
    for i, d in enumerate(photos):
        path = dev / d['path']
        w, h = image_size(path)
        d['size'] = (w, h)
        tries = [1] if min(w, h) < SMALL_SIDE else [0, 1]
        if min(w, h) < SMALL_SIDE:
            tries.append(2)
        got = None
        for up in tries:
            opts = detect_options(w, h, up)
            det = kao.detect(path, d['sha'], opts)
            row, n = largest_face(det)
            if row is not None:
                got = (opts, det, row, n)
                break
        if got is None:
            stats['no_face'].append(d['name'])
            d['plain'] = d['ref'] = None
            log(f'[{i + 1}/{len(photos)}] {d["name"]}: no face')
            continue
        opts, det, row, n = got
        d['opts'] = ' '.join(opts[2:]) or '(defaults)'
        d['n_faces'] = n
        stats['settings'][d['opts']] = stats['settings'].get(d['opts'], 0) + 1
        d['plain'] = read_embedding(kao.embed(det, 1), row)
        d['ref'] = read_embedding(kao.embed(det, REF_JITTERS), row)
        log(f'[{i + 1}/{len(photos)}] {d["name"]}: {n} face(s), {d["opts"]}')
    return stats


def upsample_check(kao, dev, photos):
    """For small photos: plain-embedding distance between the face found at upsample 0 and at 1."""
    diffs = []
    for d in photos:
        if d.get('plain') is None or min(d['size']) >= SMALL_SIDE:
            continue
        e = {}
        for up in (0, 1):
            opts = detect_options(*d['size'], up)
            det = kao.detect(dev / d['path'], d['sha'], opts)
            row, _ = largest_face(det)
            if row is None:
                break
            e[up] = read_embedding(kao.embed(det, 1), row)
        if len(e) == 2:
            diffs.append(float(np.linalg.norm(e[0] - e[1])))
    return diffs


# ---------------------------------------------------------------------------------------- stats

PCTS = (1, 5, 25, 50, 75, 95, 99)


def dist_row(label, v):
    v = np.asarray(v)
    if v.size == 0:
        return f'| {label} | 0 |' + ' - |' * (len(PCTS) + 2)
    ps = np.percentile(v, PCTS)
    return (f'| {label} | {v.size} | {v.min():.3f} | ' + ' | '.join(f'{p:.3f}' for p in ps) + f' | {v.max():.3f} |')


def dist_header():
    return ('| pairs | n | min | ' + ' | '.join(f'p{p}' for p in PCTS) + ' | max |\n'
            '|---|---|---|' + '---|' * len(PCTS) + '---|')


def pct(a, b):
    return f'{100.0 * a / b:.2f}%' if b else '-'


def is_john(d):
    return '/johns/' in d['path']


# ---------------------------------------------------------------------------------------- clip

def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0.0


CLIP_CASES = ['dev_interview_katy', 'dev_interview_damon', 'elon_smoke']


def clip_faces(kao, dev, clip, detector, every):
    """decode | detect | embed on a clip (cached) -> (table, embeddings)."""
    video = dev / clip
    tag = f'{Path(clip).stem}_{detector}' + (f'_every{every}' if every > 1 else '')
    emb = kao.cache / f'clip_{tag}.parquet'
    if not emb.exists():
        log(f'clip: decode | detect ({detector}) | embed on {video.name} ...')
        dec = [str(kao.bin / 'kao-decode'), str(video)] + (['--every', str(every)] if every > 1 else [])
        # mmod runs at --upsample 0: the clips' smallest target faces (~95 px) are far above its ~40 px floor
        det = [str(kao.bin / 'kao-detect'), '--detector', detector]
        tmp = emb.with_name('tmp_' + emb.name)
        run(' '.join(q(x) for x in dec) + ' | ' + ' '.join(q(x) for x in det) + ' | '
            + q(kao.bin / 'kao-embed') + f' -o {q(tmp)}')
        os.replace(tmp, emb)
    t = pq.read_table(emb, columns=['frame_index', 'pts', 'x', 'y', 'w', 'h', 'score', 'embedding'])
    return t, np.asarray(t.column('embedding').to_pylist(), dtype=np.float64)


def label_faces(dev, c, t):
    """ground-truth label of each face: the best box (IoU >= 0.3) in boxed shots, the shot's identities
    in real footage, '(dissolve)' in dissolves, '(no gt box)' otherwise."""
    segs = list(csv.DictReader(open(dev / c['segments'], newline=''), delimiter='\t'))
    gt = {}
    if c.get('boxes'):
        for r in csv.DictReader(open(dev / c['boxes'], newline=''), delimiter='\t'):
            gt.setdefault(int(r['frame']), []).append((r['identity'], tuple(float(r[k]) for k in ('x1', 'y1', 'x2', 'y2'))))
    seg_of = {}
    for s in segs:
        for f in range(int(s['start_frame']), int(s['end_frame_excl'])):
            seg_of[f] = s
    fi = t.column('frame_index').to_numpy().astype(int)
    box = np.stack([t.column(k).to_numpy().astype(float) for k in ('x', 'y', 'w', 'h')], 1)
    labels = []
    for k in range(len(fi)):
        s = seg_of[fi[k]]
        b = (box[k, 0], box[k, 1], box[k, 0] + box[k, 2], box[k, 1] + box[k, 3])
        if s['shot_kind'] == 'dissolve':
            labels.append('(dissolve)')
        elif s['shot_kind'] == 'real_video' or not c.get('boxes'):
            labels.append(s['identities_on_screen'] + ' (real)')
        else:
            best = max(((iou(b, g), gi) for gi, g in gt.get(int(fi[k]), [])), default=(0.0, None))
            labels.append(best[1] if best[0] >= 0.3 else '(no gt box)')
    return np.array(labels)


def clip_study(kao, dev, photos, detector, every, python, out):
    cases = {r['case']: r for r in csv.DictReader(open(dev / 'cases.tsv', newline=''), delimiter='\t')}
    refsets = {}
    for d in photos:
        for rc in d['ref_cases']:
            if d.get('ref') is not None:
                refsets.setdefault(rc, []).append(d)
    clips = {}
    for cn in CLIP_CASES:
        clips.setdefault(cases[cn]['video'], []).append(cases[cn])
    results = {}
    for clip, cl in clips.items():
        t, E = clip_faces(kao, dev, clip, detector, every)
        fi = t.column('frame_index').to_numpy().astype(int)
        labels = label_faces(dev, cl[0], t)
        print(f'\n## Clip {clip}, kao-detect --detector {detector}' + (f', every {every}th frame' if every > 1 else '')
              + f' ({len(fi)} faces in {len(set(fi))} frames)\n')
        print('Nearest-reference distance of each clip face (plain) by ground-truth label, min / p50 / max; '
              'refs embedded with 100 jitters (j100) and plain (j1):\n')
        dists = {}
        for c in cl:
            rc = Path(c['ref_dir']).name
            for jit in ('ref', 'plain'):
                Rr = np.stack([d[jit] for d in refsets[rc]])
                dists[(c['case'], jit)] = np.sqrt(((E[:, None, :] - Rr[None, :, :]) ** 2).sum(-1)).min(1)
        names = sorted(set(labels), key=lambda x: (x.startswith('('), x))
        print('| face label | faces | ' + ' | '.join(f'{Path(c["ref_dir"]).name} refs j100 | j1' for c in cl) + ' |')
        print('|---|---|' + '---|---|' * len(cl))
        for nm in names:
            m = labels == nm
            cells = []
            for c in cl:
                for jit in ('ref', 'plain'):
                    v = dists[(c['case'], jit)][m]
                    cells.append(f'{v.min():.3f} / {np.median(v):.3f} / {v.max():.3f}')
            print(f'| {nm} | {int(m.sum())} | ' + ' | '.join(cells) + ' |')

        print('\nscore.py on manifests thresholded from these distances (identity = target when nearest ref <= t); '
              'recall (hits/frames), precision, false rows:\n')
        print('| t | ' + ' | '.join(f'{c["case"]} j100 | j1' for c in cl) + ' |')
        print('|---|' + '---|---|' * len(cl))
        mdir = out / (f'clip_manifests_{Path(clip).stem}_{detector}' + (f'_every{every}' if every > 1 else ''))
        for th in THRESHOLDS:
            cells = []
            for c in cl:
                for jit in ('ref', 'plain'):
                    d = dists[(c['case'], jit)]
                    ident = [c['target'] if x <= th else None for x in d]
                    tab = pa.table(dict(frame_index=pa.array(fi, pa.uint64()), pts=t.column('pts'), x=t.column('x'),
                                        y=t.column('y'), w=t.column('w'), h=t.column('h'), score=t.column('score'),
                                        identity=pa.array(ident, pa.string()), distance=pa.array(d, pa.float32())))
                    tab = tab.replace_schema_metadata({'kao.frames_processed': 'all' if every == 1 else f'every:{every}'})
                    mp = mdir / f'{c["case"]}_{jit}_t{th:.3f}' / 'manifest.parquet'
                    mp.parent.mkdir(parents=True, exist_ok=True)
                    pq.write_table(tab, mp)
                    check = [] if th == THRESHOLDS[0] else ['--no-video-check']
                    res = json.loads(run([python, str(dev / 'score.py'), c['case'], str(mp)] + check).stdout)
                    if res.get('warnings'):
                        log(f'score.py {c["case"]} t={th}: warnings: {res["warnings"]}')
                    results[(detector, c['case'], jit, th)] = res
                    prec = f'{res["precision"]:.4f}' if res['precision'] is not None else '-'
                    cells.append(f'{res["recall"]:.3f} ({res["recall_hits"]}/{res["recall_frames"]}), {prec}, {res["fp_rows"]}')
            print(f'| {th:.3f} | ' + ' | '.join(cells) + ' |')
        multi = [c for c in cl if sum(1 for s in results[(detector, c['case'], 'ref', THRESHOLDS[0])]['segments']
                                      if s['target'] == 'yes') >= 2]
        if multi:
            print('\nPer-shot recall of the target shots, refs j100 (hit frames / frames):\n')
        for c in multi:
            segs = [s for s in results[(detector, c['case'], 'ref', THRESHOLDS[0])]['segments'] if s['target'] == 'yes']
            if len(segs) < 2:
                continue
            print(f'| {c["case"]} t | ' + ' | '.join(f'{s["frames"]} {s["kind"]}' for s in segs) + ' |')
            print('|---|' + '---|' * len(segs))
            for th in THRESHOLDS:
                ss = [s for s in results[(detector, c['case'], 'ref', th)]['segments'] if s['target'] == 'yes']
                print(f'| {th:.3f} | ' + ' | '.join(f'{s["hit_frames"]}/{s["processed_frames"]}' for s in ss) + ' |')
            print()
    return results


# ---------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--devdata', default=str(ROOT.parent / 'shared' / 'devdata'))
    ap.add_argument('--bin', default=str(ROOT / 'target' / 'release'))
    ap.add_argument('--cache', default='/tmp/kao-eval/cache')
    ap.add_argument('--no-clip', action='store_true', help='skip the dev_interview.mp4 part')
    ap.add_argument('--clip-detector', action='append', help='kao-detect detector(s) for the clip (default blazeface-full)')
    ap.add_argument('--clip-every', type=int, default=1, help='process every Nth clip frame')
    a = ap.parse_args()
    dev = Path(a.devdata).resolve()
    kao = Kao(a.bin, a.cache)
    photos = collect_photos(dev)
    log(f'{len(photos)} unique photos')
    st = embed_photos(kao, dev, photos)
    ok = [d for d in photos if d.get('plain') is not None]
    P = np.stack([d['plain'] for d in ok])
    R = np.stack([d['ref'] for d in ok])
    ids = np.array([d['identity'] for d in ok])
    john = np.array([is_john(d) for d in ok])
    n = len(ok)
    DRP = np.sqrt(((R[:, None, :] - P[None, :, :]) ** 2).sum(-1))  # [ref-style i, plain j]
    DPP = np.sqrt(((P[:, None, :] - P[None, :, :]) ** 2).sum(-1))
    same = ids[:, None] == ids[None, :]
    off = ~np.eye(n, dtype=bool)
    iu = np.triu(off)
    nj = ~john[:, None] & ~john[None, :]

    print('# kao threshold study (MMOD detector, dlib ResNet via kao-embed)\n')
    print(f'Photos: {len(photos)} unique files ({sum(len(d["paths"]) for d in photos)} paths; refs/ copies of faces/ '
          f'are embedded once and never paired with themselves), {n} with a face, {len(st["no_face"])} without'
          + (': ' + ', '.join(st['no_face']) if st['no_face'] else '') + '.')
    print('Detection settings used: ' + ', '.join(f'`{k}` x{v}' for k, v in sorted(st['settings'].items())) + '.')
    multi = [f'{d["name"]} ({d["n_faces"]})' for d in ok if d['n_faces'] > 1]
    if multi:
        print('Photos with several faces (largest kept): ' + ', '.join(multi) + '.')
    ids_n = {}
    for d in ok:
        ids_n[d['identity']] = ids_n.get(d['identity'], 0) + 1
    print(f'Identities: {len(ids_n)}; johns chips: {int(john.sum())}.')
    diffs = upsample_check(kao, dev, ok)
    if diffs:
        print(f'Small photos (short side < {SMALL_SIDE}px, {len(diffs)}): plain-embedding distance between the face '
              f'found at --upsample 0 and 1: median {np.median(diffs):.3f}, max {max(diffs):.3f} (both find the face; 1 is used).')
    selfd = DRP[np.eye(n, dtype=bool)]
    print(f'Jitter shift, ref-style vs plain embedding of the same photo: median {np.median(selfd):.3f}, max {selfd.max():.3f}.')

    print('\n## Distance distributions\n')
    print(dist_header())
    print(dist_row('same id, ref-style vs plain', DRP[same & off]))
    print(dist_row('diff id, ref-style vs plain', DRP[~same]))
    print(dist_row('same id, plain vs plain', DPP[same & iu]))
    print(dist_row('diff id, plain vs plain', DPP[np.triu(~same)]))
    print(dist_row('same id, ref vs plain, no johns', DRP[same & off & nj]))
    print(dist_row('diff id, ref vs plain, no johns', DRP[~same & nj]))

    # Damon / DiCaprio
    dam = [k for k, d in enumerate(ok) if d['identity'] == 'matt_damon']
    leo = [k for k, d in enumerate(ok) if d['identity'] == 'leonardo_dicaprio']
    damref = [k for k in dam if 'damon' in ok[k]['ref_cases']]
    print('\n## Threshold table (ref-style vs plain, all ordered pairs of different photos)\n')
    n_same, n_diff = int((same & off).sum()), int((~same).sum())
    n_same_nj, n_diff_nj = int((same & off & nj).sum()), int((~same & nj).sum())
    print(f'TAR = same-identity pairs accepted / {n_same}; FAR = different-identity pairs accepted / {n_diff}; '
          f'"no johns" excludes the 150px johns chips ({n_same_nj} / {n_diff_nj} pairs); Damon refs vs Leo = '
          f'{len(damref)} Damon refs x {len(leo)} DiCaprio photos; all Damon vs Leo = {len(dam)} x {len(leo)} ref-style vs plain.\n')
    print('| t | TAR | FAR | TAR no johns | FAR no johns | Damon refs ~ Leo accepted | all Damon ~ Leo accepted |')
    print('|---|---|---|---|---|---|---|')
    for th in THRESHOLDS:
        a1 = int((DRP[same & off] <= th).sum()); b1 = int((DRP[~same] <= th).sum())
        a2 = int((DRP[same & off & nj] <= th).sum()); b2 = int((DRP[~same & nj] <= th).sum())
        dl = int((DRP[np.ix_(damref, leo)] <= th).sum()) if damref and leo else 0
        al = int((DRP[np.ix_(dam, leo)] <= th).sum()) if dam and leo else 0
        print(f'| {th:.3f} | {pct(a1, n_same)} | {pct(b1, n_diff)} ({b1}) | {pct(a2, n_same_nj)} | {pct(b2, n_diff_nj)} ({b2}) | '
              f'{dl}/{len(damref) * len(leo)} | {al}/{len(dam) * len(leo)} |')

    if dam and leo:
        print('\n## Matt Damon vs Leonardo DiCaprio\n')
        print('Rows: Damon photo, ref-style (100 jitters); columns: DiCaprio photo, plain. `[ref damon]` = in refs/damon.\n')
        print('| Damon (ref-style) \\ Leo (plain) | ' + ' | '.join(ok[j]['name'].split('/')[-1] for j in leo) + ' | min |')
        print('|---|' + '---|' * (len(leo) + 1))
        for i in dam:
            row = DRP[i, leo]
            print(f'| {ok[i]["name"]} | ' + ' | '.join(f'{x:.3f}' for x in row) + f' | {row.min():.3f} |')
        pp = DPP[np.ix_(dam, leo)]
        print(f'\nPlain vs plain, all Damon x Leo: min {pp.min():.3f}, median {np.median(pp):.3f}, max {pp.max():.3f}. '
              f'Leo (ref-style) vs Damon (plain): min {DRP[np.ix_(leo, dam)].min():.3f}.')
        dd = DRP[np.ix_(dam, dam)][~np.eye(len(dam), dtype=bool)]
        ll = DRP[np.ix_(leo, leo)][~np.eye(len(leo), dtype=bool)]
        print(f'Same identity for comparison: Damon-Damon {dd.min():.3f}..{dd.max():.3f}, Leo-Leo {ll.min():.3f}..{ll.max():.3f}.')

    print('\n## Nearest reference per refs/ set (the matching rule: min over the set\'s ref-style embeddings)\n')
    print('Every photo with a face that is not itself in the set, plain embedding.\n')
    print('| refs set | refs | same id: n, max (= worst miss) | different id: n, min (= worst impostor), its photo |')
    print('|---|---|---|---|')
    cases = sorted({c for d in ok for c in d['ref_cases']})
    for c in cases:
        rk = [k for k, d in enumerate(ok) if c in d['ref_cases']]
        target = ok[rk[0]]['identity']
        others = [k for k in range(n) if k not in rk]
        dmin = DRP[np.ix_(rk, others)].min(0)
        sm = [(dmin[j], ok[k]['name']) for j, k in enumerate(others) if ok[k]['identity'] == target]
        df = [(dmin[j], ok[k]['name']) for j, k in enumerate(others) if ok[k]['identity'] != target]
        smax = max(sm) if sm else None
        dfmin = min(df) if df else None
        print(f'| {c} | {len(rk)} | {len(sm)}, ' + (f'{smax[0]:.3f} ({smax[1]})' if smax else '-') + ' | '
              f'{len(df)}, ' + (f'{dfmin[0]:.3f} ({dfmin[1]})' if dfmin else '-') + ' |')
        if sm:
            print('|  | | same-id distances: ' + ', '.join(f'{nm.split("/")[-1].split(" ")[0]} {v:.3f}' for v, nm in sorted(sm)) + ' | |')

    print('\n## Closest different-identity pairs (ref-style -> plain)\n')
    print('| d | ref-style photo (identity) | plain photo (identity) |')
    print('|---|---|---|')
    cand = [(DRP[i, j], i, j) for i in range(n) for j in range(n) if ids[i] != ids[j]]
    cand.sort()
    for v, i, j in cand[:10]:
        print(f'| {v:.3f} | {ok[i]["name"]} ({ids[i]}) | {ok[j]["name"]} ({ids[j]}) |')

    print('\n## Farthest same-identity pairs (ref-style -> plain)\n')
    print('| d | ref-style photo | plain photo | identity |')
    print('|---|---|---|---|')
    cand = [(DRP[i, j], i, j) for i in range(n) for j in range(n) if i != j and ids[i] == ids[j]]
    cand.sort(reverse=True)
    for v, i, j in cand[:10]:
        print(f'| {v:.3f} | {ok[i]["name"]} | {ok[j]["name"]} | {ids[i]} |')

    if not a.no_clip:
        for det in a.clip_detector or ['blazeface-full']:
            clip_study(kao, dev, photos, det, a.clip_every, sys.executable, Path(a.cache))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
