"""Clustering quality on ../shared/datasets/lfw-dev (79 people x 10 photos).

One face per photo (the face whose centre is nearest the image centre), default ensemble
(dlib) and default settings of :func:`facekit.cluster.cluster_faces`, scored against the
folder names: pairwise precision / recall / F1, BCubed F and the share of faces left as
noise. For comparison: facekit's HDBSCAN and DBSCAN options, and plain scikit-learn DBSCAN
on the raw dlib vectors (cosine and Euclidean, several ``eps``), the FAAAAACES approach.

Noise faces count as singletons in the scores (a face left out is a missed pair, never a
wrong one).

Usage:
    facekit embed ../shared/datasets/lfw-dev -o /tmp/lfw.parquet   # ~1-2 min, cached
    python benchmarks/bench_cluster.py /tmp/lfw.parquet
    python benchmarks/bench_cluster.py --folds     # TUNE vs REPORT folds, shared embedding cache

``--folds``: the default clustering on the people-disjoint folds of benchmarks/folds.py
(TUNE 0-2, REPORT 3-4, held out) of lfw-dev and lfw-few, one face per photo as
``folds.load_faces`` picks it, from the shared embedding cache (/work/cache).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from facekit.calibration import Calibration
from facekit.cluster import FALSE_MERGE_RATE, cluster_faces, cluster_threshold
from facekit.facetable import FaceTable


def central_faces(table: FaceTable) -> FaceTable:
    """Keep one row per source: the face nearest the image centre."""
    from PIL import Image

    f = table.frame
    keep = []
    for src, rows in f.groupby("source", sort=True):
        with Image.open(src) as im:
            w, h = im.size
        cx, cy = rows.x + rows.w / 2, rows.y + rows.h / 2
        keep.append(((cx - w / 2) ** 2 + (cy - h / 2) ** 2).idxmin())
    return FaceTable(f.loc[sorted(keep)].reset_index(drop=True), table.files, table.models)


def pairwise_prf(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Pairwise precision/recall/F1; ``pred`` -1 = noise (a singleton each)."""
    pred = pred.copy()
    nxt = pred.max() + 1 if len(pred) else 0
    for i in np.flatnonzero(pred < 0):
        pred[i] = nxt
        nxt += 1
    same_t = truth[:, None] == truth[None, :]
    same_p = pred[:, None] == pred[None, :]
    iu = np.triu_indices(len(truth), 1)
    tp = float(np.sum(same_t[iu] & same_p[iu]))
    p = tp / max(float(np.sum(same_p[iu])), 1.0)
    r = tp / max(float(np.sum(same_t[iu])), 1.0)
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


def bcubed_f(truth: np.ndarray, pred: np.ndarray) -> float:
    pred = pred.copy()
    nxt = pred.max() + 1 if len(pred) else 0
    for i in np.flatnonzero(pred < 0):
        pred[i] = nxt
        nxt += 1
    same_t = truth[:, None] == truth[None, :]
    same_p = pred[:, None] == pred[None, :]
    both = (same_t & same_p).sum(1)
    p = float(np.mean(both / same_p.sum(1)))
    r = float(np.mean(both / same_t.sum(1)))
    return 2 * p * r / (p + r)


def report(name: str, truth: np.ndarray, pred: np.ndarray, secs: float) -> str:
    p, r, f = pairwise_prf(truth, pred)
    b = bcubed_f(truth, pred)
    n_cl = len(set(pred[pred >= 0].tolist()))
    noise = float(np.mean(pred < 0))
    return f"| {name} | {p:.3f} | {r:.3f} | {f:.3f} | {b:.3f} | {n_cl} | {noise:.1%} | {secs:.2f} |"


def heldout() -> int:
    """Default clustering on TUNE and REPORT folds of lfw-dev and lfw-few."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from folds import REPORT, TUNE, load_faces

    from facekit.types import Embeddings

    print(
        "| dataset | models | folds | people | faces | pairwise P | pairwise R | pairwise F1 | BCubed F | clusters | noise | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dataset in ("lfw-dev", "lfw-few"):
        for models in (("dlib",), ("dlib", "mobilefacenet")):
            try:
                faces = load_faces(dataset, models)
            except FileNotFoundError as exc:
                print(f"| {dataset} | {'+'.join(models)} | skipped: {exc} |")
                continue
            for label, folds in (("TUNE 0-2", TUNE), ("REPORT 3-4", REPORT)):
                sub = faces.folds(folds)
                names = sorted(set(sub.person.tolist()))
                truth = np.searchsorted(names, sub.person)
                emb = Embeddings(dict(sub.vectors))
                t = time.perf_counter()
                res = cluster_faces(emb, Calibration.default(list(models)))
                row = report("", truth, res.labels, time.perf_counter() - t)
                print(
                    f"| {dataset} | {'+'.join(models)} | {label} | {len(names)} | {len(truth)} | "
                    + row[5:]
                )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", nargs="?", help="Parquet written by `facekit embed` over lfw-dev")
    ap.add_argument("--folds", action="store_true", help="TUNE vs REPORT folds (see above)")
    args = ap.parse_args()
    if args.folds:
        return heldout()
    if not args.table:
        ap.error("give the lfw-dev table or --folds")
    table = central_faces(FaceTable.read(args.table))
    emb = table.embeddings()
    truth_names = [Path(s).parent.name for s in table.frame.source]
    ids = {n: i for i, n in enumerate(sorted(set(truth_names)))}
    truth = np.array([ids[n] for n in truth_names])
    files = len(table.files)
    print(
        f"{files} photos, {len(truth)} faces used (one per photo), {len(ids)} people, "
        f"models {', '.join(emb.models)}\n"
    )
    print("| method | pairwise P | pairwise R | pairwise F1 | BCubed F | clusters | noise | s |")
    print("|---|---|---|---|---|---|---|---|")
    cal = Calibration.default(emb.models)
    for label, kw in (
        (
            f"facekit default: agglomerative (average), cut {cluster_threshold(calibration=cal, faces=len(truth), normalised=True):.2f} "
            f"(at most {FALSE_MERGE_RATE:.0%} of faces merged)",
            {},
        ),
        ("facekit --method hdbscan (min size 2)", {"method": "hdbscan"}),
        ("facekit --method dbscan (eps at identify threshold 3.09, min 2)", {"method": "dbscan"}),
    ):
        t = time.perf_counter()
        res = cluster_faces(emb, cal, **kw)
        print(report(label, truth, res.labels, time.perf_counter() - t))
    # Sensitivity of the default to its one setting (not used to pick it).
    for thr in (2.0, 2.25, 2.5, 2.75, 3.09):
        t = time.perf_counter()
        res = cluster_faces(emb, cal, threshold=thr)
        print(
            report(
                f"agglomerative, threshold {thr} (sensitivity)",
                truth,
                res.labels,
                time.perf_counter() - t,
            )
        )
    from sklearn.cluster import DBSCAN, HDBSCAN

    x = emb.vectors[emb.models[0]]
    for metric, eps_list in (
        ("cosine", (0.05, 0.07, 0.09, 0.11, 0.125, 0.5)),
        ("euclidean", (0.4, 0.45, 0.5, 0.6)),
    ):
        for eps in eps_list:
            t = time.perf_counter()
            pred = DBSCAN(eps=eps, min_samples=2, metric=metric).fit_predict(x)
            print(
                report(
                    f"plain DBSCAN {metric} eps={eps} min_samples=2",
                    truth,
                    pred,
                    time.perf_counter() - t,
                )
            )
    for mcs in (2, 5):
        t = time.perf_counter()
        pred = HDBSCAN(min_cluster_size=mcs, metric="euclidean").fit_predict(x)
        print(
            report(
                f"plain HDBSCAN euclidean min_cluster_size={mcs}",
                truth,
                pred,
                time.perf_counter() - t,
            )
        )
    sizes = Counter(cluster_faces(emb, cal).labels.tolist())
    sizes.pop(-1, None)
    print(f"\ndefault: cluster sizes {sorted(sizes.values(), reverse=True)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("FACEKIT_OFFLINE", "1")
    sys.exit(main())
