"""Recognisers and ensembles on people-disjoint folds: open-set accuracy, strangers named,
clustering F1, and impostor statistics for calibration defaults (issue 12).

Input: a cached ``facekit embed`` table holding one embedding column per model, e.g.
``/work/cache/lfw-few.dlib+mobilefacenet+sface+arcface-mbf.yunet.parquet``. Folds follow
``benchmarks/folds.py``: a person is in fold ``sha256(name) % 5``; folds 0-2 are TUNE, 3-4 REPORT.

* ``--impostor`` prints, per model, the mean and standard deviation of the cosine distance of
  different-person pairs (one face per photo) on the TUNE folds: the calibration defaults.
* Open set (REPORT folds, the bench_openset protocol on those people): names sorted; every
  fourth person is a stranger (all photos are probes), the others are enrolled with their first
  3 photos (sorted) and their other photos are probes. The gallery calibrates itself
  (:func:`facekit.calibration.calibrate`), exactly as ``build-index`` does. A probe photo's answer
  is its face with the highest evidence that reaches the threshold (or unknown).
* Clustering (REPORT folds, one face per photo): :func:`facekit.cluster.cluster_faces` with
  the default cut and the calibration defaults of ``facekit.calibration.DEFAULT_IMPOSTOR``
  (or the ``--impostor`` values measured on this table's TUNE folds), pairwise F1 against the
  folder names.

Usage:
    python benchmarks/bench_models.py TABLE --models dlib,sface,arcface-mbf \\
        --ensembles sface+dlib,arcface-mbf+sface [--impostor]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from folds import REPORT, TUNE, fold_of  # noqa: E402


def load(table: str, models: list[str]):  # type: ignore[no-untyped-def]
    """Per photo: person, all faces' vectors (model -> (k, dim)), index of the dominant face."""
    import pyarrow.parquet as pq
    from PIL import Image

    cols = ["source", "x", "y", "w", "h"] + [f"emb_{m}" for m in models]
    df = pq.read_table(table, columns=cols).to_pandas()
    photos = []
    for src, rows in df.groupby("source", sort=True):
        try:
            with Image.open(str(src)) as im:
                w, h = im.size
        except OSError:
            w, h = 250, 250
        x0, y0 = rows.x.to_numpy(), rows.y.to_numpy()
        x1, y1 = x0 + rows.w.to_numpy(), y0 + rows.h.to_numpy()
        area = (x1 - x0) * (y1 - y0)
        off = np.hypot(((x0 + x1) / 2 - w / 2) / (w / 2), ((y0 + y1) / 2 - h / 2) / (h / 2))
        dom = int(np.argmax(area * (1.0 - 0.5 * off / np.sqrt(2))))
        vecs = {m: np.stack(rows[f"emb_{m}"].to_numpy()).astype(np.float32) for m in models}
        photos.append((Path(str(src)).parent.name, str(src), vecs, dom))
    return photos


def impostor_stats(photos, models, folds, max_pairs=400_000, seed=0):  # type: ignore[no-untyped-def]
    sel = [p for p in photos if fold_of(p[0]) in folds]
    persons = np.array([p[0] for p in sel])
    rng = np.random.default_rng(seed)
    n = len(sel)
    a = rng.integers(0, n, max_pairs)
    b = rng.integers(0, n, max_pairs)
    keep = persons[a] != persons[b]
    a, b = a[keep], b[keep]
    out = {}
    for m in models:
        v = np.stack([p[2][m][p[3]] for p in sel])
        d = 1.0 - np.einsum("ij,ij->i", v[a], v[b])
        out[m] = (float(d.mean()), float(d.std()), len(a), n, len(set(persons)))
    return out


def open_set(photos, models, folds):  # type: ignore[no-untyped-def]
    from facekit.calibration import calibrate

    sel = [p for p in photos if fold_of(p[0]) in folds]
    by_person: dict[str, list] = {}
    for p in sel:
        by_person.setdefault(p[0], []).append(p)
    names = sorted(by_person)
    strangers = {n for i, n in enumerate(names) if i % 4 == 3 or len(by_person[n]) < 4}
    gallery, probes = [], []
    for n in names:
        photos_n = sorted(by_person[n], key=lambda p: p[1])
        if n in strangers:
            probes += [(p, None) for p in photos_n]
        else:
            gallery += photos_n[:3]
            probes += [(p, n) for p in photos_n[3:]]
    g_person = np.array([p[0] for p in gallery])
    g_vecs = {m: np.stack([p[2][m][p[3]] for p in gallery]) for m in models}
    weights = {m: 1.0 / len(models) for m in models}
    cal = calibrate(g_person, g_vecs, weights)
    uniq = np.unique(g_person)
    right = wrong = missed = named_strangers = 0
    for photo, truth in probes:
        ev = cal.pairwise_evidence(photo[2], g_vecs)  # (faces, gallery)
        best_per_person = np.stack(
            [ev[:, g_person == u].max(1) for u in uniq], axis=1
        )  # (faces, people)
        j = np.unravel_index(np.argmax(best_per_person), best_per_person.shape)
        e = best_per_person[j]
        answer = uniq[j[1]] if e >= cal.threshold else None
        if truth is None:
            named_strangers += answer is not None
        elif answer == truth:
            right += 1
        elif answer is None:
            missed += 1
        else:
            wrong += 1
    n_enr = sum(1 for _, t in probes if t is not None)
    n_str = len(probes) - n_enr
    acc = (right + n_str - named_strangers) / len(probes)
    return {
        "people": len(names),
        "enrolled": len(uniq),
        "strangers": len(strangers),
        "probes": len(probes),
        "stranger_probes": n_str,
        "accuracy": acc,
        "named_right": right / max(n_enr, 1),
        "wrong_person": wrong / max(n_enr, 1),
        "strangers_named": named_strangers / max(n_str, 1),
        "threshold": cal.threshold,
        "source": cal.source,
    }


def clustering_f1(photos, models, folds, impostor):  # type: ignore[no-untyped-def]
    from bench_cluster import pairwise_prf

    from facekit.calibration import Calibration
    from facekit.cluster import cluster_faces
    from facekit.types import Embeddings

    sel = [p for p in photos if fold_of(p[0]) in folds]
    names = sorted({p[0] for p in sel})
    ids = {n: i for i, n in enumerate(names)}
    truth = np.array([ids[p[0]] for p in sel])
    vecs = {m: np.stack([p[2][m][p[3]] for p in sel]) for m in models}
    cal = Calibration.default(models)
    for m in models:
        if m in impostor:
            cal.impostor[m] = impostor[m][:2]
    res = cluster_faces(Embeddings(vecs, {}), cal)
    return pairwise_prf(truth, res.labels)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--models", required=True, help="single models to report, comma-separated")
    ap.add_argument("--ensembles", default="", help="e.g. sface+dlib,arcface-mbf+sface")
    ap.add_argument("--impostor", action="store_true", help="print TUNE-fold impostor stats")
    ap.add_argument("--folds", default="report", choices=["report", "tune"])
    args = ap.parse_args()
    singles = [m for m in args.models.split(",") if m]
    ensembles = [tuple(e.split("+")) for e in args.ensembles.split(",") if e]
    all_models = sorted({*singles, *(m for e in ensembles for m in e)})
    photos = load(args.table, all_models)
    folds = REPORT if args.folds == "report" else TUNE
    imp = impostor_stats(photos, all_models, TUNE) if args.impostor else {}
    if args.impostor:
        print("| model | impostor mean | impostor std | pairs | photos | people (TUNE folds) |")
        print("|---|---|---|---|---|---|")
        for m, (mu, sd, pairs, n, people) in imp.items():
            print(f"| {m} | {mu:.4f} | {sd:.4f} | {pairs} | {n} | {people} |")
        print()
    print(
        f"{Path(args.table).name}, folds {folds}: open set (every 4th person a stranger, "
        "3 gallery photos) and clustering (one face per photo)\n"
    )
    print(
        "| models | open-set accuracy | enrolled named right | wrong person | strangers named "
        "| probes (strangers) | clustering P / R / F1 |"
    )
    print("|---|---|---|---|---|---|---|")
    for combo in [(m,) for m in singles] + ensembles:
        r = open_set(photos, list(combo), folds)
        p, rc, f1 = clustering_f1(photos, list(combo), folds, imp)
        print(
            f"| {'+'.join(combo)} | {r['accuracy']:.2%} | {r['named_right']:.2%} | "
            f"{r['wrong_person']:.2%} | {r['strangers_named']:.2%} | "
            f"{r['probes']} ({r['stranger_probes']}) | {p:.3f} / {rc:.3f} / {f1:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
