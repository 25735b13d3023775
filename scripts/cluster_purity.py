"""Cluster purity of a kao output folder against devdata's ground truth (needs pyarrow).

    cluster_purity.py DIR/manifest.parquet --boxes GT.boxes.tsv --segments GT.segments.tsv
    cluster_purity.py DIR/manifest.parquet --photos faces/DLIB_CHECK.tsv --root DEVDATA

Clip mode: a row is labelled by the ground-truth box it overlaps (IoU >= 0.3), or in real footage
without boxes by the one person on screen; photo mode: each photo's largest face is the photo's
labelled person. Prints purity (faces in their cluster's majority person) and clusters per person.
"""
import argparse
import collections
import csv

import pyarrow.parquet as pq


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    i = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i
    return i / u if u > 0 else 0


def clip_labels(t, boxes, segments):
    gt = collections.defaultdict(list)
    for r in csv.DictReader(open(boxes), delimiter="\t"):
        gt[int(r["frame"])].append((r["identity"], float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"])))
    seg = list(csv.DictReader(open(segments), delimiter="\t"))
    labels = []
    for i, f in enumerate(t["frame_index"]):
        box = (t["x"][i], t["y"][i], t["x"][i] + t["w"][i], t["y"][i] + t["h"][i])
        best, label = 0.0, None
        for who, *b in gt.get(f, []):
            v = iou(box, b)
            if v >= 0.3 and v > best:
                best, label = v, who
        if label is None and not gt.get(f):
            for r in seg:
                if int(r["start_frame"]) <= f < int(r["end_frame_excl"]):
                    ids, kind = r["identities_on_screen"], r["shot_kind"]
                    if "partial" not in kind and ";" not in ids and ids not in ("(none)", ""):
                        label = ids
        labels.append(label)
    return labels


def photo_labels(t, photos, root):
    named = {f"{root.rstrip('/')}/{r['path']}": r["identity"] for r in csv.DictReader(open(photos), delimiter="\t")}
    largest = {}
    for i, s in enumerate(t["source"]):
        area = t["w"][i] * t["h"][i]
        if s not in largest or area > largest[s][0]:
            largest[s] = (area, i)
    labels = [None] * len(t["source"])
    for s, (_, i) in largest.items():
        labels[i] = named.get(s)
    return labels


def main():
    p = argparse.ArgumentParser()
    p.add_argument("manifest")
    p.add_argument("--boxes")
    p.add_argument("--segments")
    p.add_argument("--photos")
    p.add_argument("--root", default=".")
    a = p.parse_args()
    t = pq.read_table(a.manifest).to_pydict()
    labels = photo_labels(t, a.photos, a.root) if a.photos else clip_labels(t, a.boxes, a.segments)
    clusters = collections.defaultdict(collections.Counter)
    for c, label in zip(t["cluster_id"], labels):
        if c is not None and label is not None:
            clusters[c][label] += 1
    total = sum(sum(v.values()) for v in clusters.values())
    pure = sum(max(v.values()) for v in clusters.values())
    per = collections.Counter(label for v in clusters.values() for label in v)
    print(f"labelled faces in clusters: {total}, clusters: {len(clusters)}, purity: {pure / max(total, 1):.4f}")
    print("clusters per person:", dict(sorted(per.items())))
    for c, v in sorted(clusters.items()):
        if len(v) > 1:
            print(f"cluster {c} holds several people: {dict(v)}")


if __name__ == "__main__":
    main()
