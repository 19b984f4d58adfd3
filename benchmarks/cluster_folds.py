"""The clustering cut for a stated share of falsely merged faces, on people-disjoint folds.

Faces: one per photo (the face build-index would enrol) of the lfw-dev + lfw-few people of the
chosen folds (benchmarks/folds.py), from the shared embedding cache. Clustered with
:func:`facekit.cluster.cluster_faces` (default method) at the cut
:func:`facekit.cluster.cluster_threshold` gives for each stated share of faces that may be put
in another person's cluster, at the number of faces clustered, with the default calibration
of the models (measured on the tune folds), and scored as benchmarks/bench_cluster.py does
(pairwise precision / recall / F1, noise as singletons). "merged faces" is the measured share
of faces in a cluster whose majority is another person. ``--with-singles`` adds the
lfw-singles people of the same folds (one photo each: every merge of theirs is false);
``--sets`` chooses the datasets explicitly. The tune folds here are 1-2: fold 0's faces are the
cohort of facekit's normalised evidence (facekit.cluster_norm, benchmarks/make_cohort.py).
``--no-norm`` clusters on raw evidence (the method before cohort normalisation);
``--folds cohort`` clusters the fold-0 people, one face of each of whom is in the cohort (the
worst case for the normalisation).

Usage:
    python benchmarks/cluster_folds.py --folds tune --with-singles   # choose the rate
    python benchmarks/cluster_folds.py --folds report [--with-singles]   # held-out figures
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cluster import bcubed_f, pairwise_prf  # noqa: E402
from folds import COHORT, REPORT, TUNE_CLUSTER, load_faces  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="dlib")
    ap.add_argument(
        "--folds",
        choices=("tune", "report", "cohort"),
        default="tune",
        help="tune (1-2), report (3-4), or cohort (0: the people whose faces are the cohort)",
    )
    ap.add_argument("--rates", default="0.03,0.01,0.003")
    ap.add_argument("--with-singles", action="store_true")
    ap.add_argument("--sets", default=None, help="datasets joined by ',' (default lfw-dev,lfw-few)")
    ap.add_argument("--no-norm", action="store_true", help="raw evidence, no cohort normalisation")
    args = ap.parse_args()
    from facekit.calibration import Calibration
    from facekit.cluster import FALSE_MERGE_RATE, cluster_faces, cluster_threshold
    from facekit.types import Embeddings

    models = tuple(args.models.split(","))
    folds = {"tune": TUNE_CLUSTER, "report": REPORT, "cohort": COHORT}[args.folds]
    norm = not args.no_norm
    sets = args.sets.split(",") if args.sets else ["lfw-dev", "lfw-few"]
    sets += ["lfw-singles"] if args.with_singles else []
    parts = [load_faces(d, models).folds(folds) for d in sets]
    person = np.concatenate([p.person for p in parts])
    vecs = {m: np.concatenate([p.vectors[m] for p in parts]) for m in models}
    ids = {n: i for i, n in enumerate(sorted(set(person)))}
    truth = np.array([ids[n] for n in person])
    emb = Embeddings(vecs, {m: "" for m in models})
    cal = Calibration.default(list(models))
    print(
        f"models {'+'.join(models)}, folds {folds}, {', '.join(sets)}: {len(truth)} faces of "
        f"{len(ids)} people (default rate {FALSE_MERGE_RATE}; "
        f"{'cohort-normalised' if norm else 'raw'} evidence)\n"
    )
    print(
        "| stated share of faces merged | cut | merged faces | pairwise P | pairwise R "
        "| pairwise F1 | BCubed F | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for rate in [float(r) for r in args.rates.split(",")]:
        cut = cluster_threshold(rate, cal, faces=len(truth), normalised=norm)
        t = time.perf_counter()
        res = cluster_faces(emb, cal, threshold=cut, normalise=norm)
        p, r, f = pairwise_prf(truth, res.labels)
        b = bcubed_f(truth, res.labels)
        print(
            f"| {rate:.1%} | {cut:.2f} | {merged_share(truth, res.labels):.2%} | {p:.3f} | "
            f"{r:.3f} | {f:.3f} | {b:.3f} | {time.perf_counter() - t:.1f} |",
            flush=True,
        )


def merged_share(truth: np.ndarray, labels: np.ndarray) -> float:
    """Share of faces in a cluster whose majority is another person (noise counts as alone)."""
    wrong = 0
    for c in np.unique(labels[labels >= 0]):
        t = truth[labels == c]
        wrong += len(t) - int(np.bincount(t).max())
    return wrong / max(len(truth), 1)


if __name__ == "__main__":
    main()
