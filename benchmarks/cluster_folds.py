"""The clustering cut for a stated per-pair false-merge rate, on people-disjoint folds.

Faces: one per photo (the face build-index would enrol) of the lfw-dev + lfw-few people of the
chosen folds (benchmarks/folds.py), from the shared embedding cache. Clustered with
:func:`facekit.cluster.cluster_faces` (default method) at the cut
:func:`facekit.calibration.pair_threshold` gives for each rate, with the default calibration
of the models (measured on the tune folds), and scored as benchmarks/bench_cluster.py does
(pairwise precision / recall / F1, noise as singletons). ``--with-singles`` adds the
lfw-singles people of the same folds (one photo each: every merge of theirs is false).

Usage:
    python benchmarks/cluster_folds.py --folds tune     # choose the rate (precision >= 0.99)
    python benchmarks/cluster_folds.py --folds report   # held-out figures
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cluster import bcubed_f, pairwise_prf  # noqa: E402
from folds import REPORT, TUNE, load_faces  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="dlib")
    ap.add_argument("--folds", choices=("tune", "report"), default="tune")
    ap.add_argument("--rates", default="0.03,0.01,0.003,0.001,0.0003,0.0001")
    ap.add_argument("--with-singles", action="store_true")
    args = ap.parse_args()
    from facekit.calibration import Calibration, pair_threshold
    from facekit.cluster import FALSE_MERGE_RATE, cluster_faces
    from facekit.types import Embeddings

    models = tuple(args.models.split(","))
    folds = TUNE if args.folds == "tune" else REPORT
    sets = ["lfw-dev", "lfw-few"] + (["lfw-singles"] if args.with_singles else [])
    parts = [load_faces(d, models).folds(folds) for d in sets]
    person = np.concatenate([p.person for p in parts])
    vecs = {m: np.concatenate([p.vectors[m] for p in parts]) for m in models}
    ids = {n: i for i, n in enumerate(sorted(set(person)))}
    truth = np.array([ids[n] for n in person])
    emb = Embeddings(vecs, {m: "" for m in models})
    cal = Calibration.default(list(models))
    print(
        f"models {'+'.join(models)}, folds {folds}, {', '.join(sets)}: {len(truth)} faces of "
        f"{len(ids)} people (default rate {FALSE_MERGE_RATE})\n"
    )
    print(
        "| per-pair false-merge rate | cut | pairwise P | pairwise R | pairwise F1 | BCubed F | s |"
    )
    print("|---|---|---|---|---|---|---|")
    for rate in [float(r) for r in args.rates.split(",")]:
        cut = pair_threshold(rate, cal)
        t = time.perf_counter()
        res = cluster_faces(emb, cal, threshold=cut)
        p, r, f = pairwise_prf(truth, res.labels)
        b = bcubed_f(truth, res.labels)
        print(
            f"| {rate:g} | {cut:.2f} | {p:.3f} | {r:.3f} | {f:.3f} | {b:.3f} | "
            f"{time.perf_counter() - t:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
