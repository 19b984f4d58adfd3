"""Stranger rate promised vs achieved across gallery sizes, on people-disjoint folds.

Used by bench_openset.py (``--scale``) and calibrate_defaults.py. Works on cached embeddings
(benchmarks/folds.py) so thousands of galleries cost seconds: each gallery is calibrated with
:func:`facekit.calibration.calibrate` exactly as ``build-index`` does, and stranger probes
(people of the same folds who are not enrolled; one face per photo) are scored against it.

Gallery of N people with k photos each: people with at least k photos from lfw-dev /
lfw-few first, then lfw-singles people (one photo each) as extra enrolled distractors when
N is larger. Strangers: a random share (``stranger_share``, 30%) of each dataset's
people of those folds, never enrolled; one face per photo. The stranger photos are few and
correlated (several photos per person, look-alike groups), so one split measures a 1% cell
only to about +-50%: :func:`run_splits` repeats every cell over ``splits`` different stranger
splits (each with its own random galleries) and reports the mean and the range over splits. The report folds hold about 1,000
people in all, so reaching 1,000 enrolled people there needs ``distractor_folds``: singles of
other folds enrolled as distractors only (never strangers, never measured).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from folds import load_faces

_load = functools.lru_cache(maxsize=None)(load_faces)


@dataclass
class Pool:
    person: np.ndarray
    vectors: dict[str, np.ndarray]
    multi: list[np.ndarray]  # face indices of each multi-photo person
    singles: list[int]  # face index of each single-photo person
    strangers: np.ndarray  # face indices of stranger photos


def make_pool(
    models: Sequence[str],
    folds: Sequence[int],
    seed: int = 0,
    stranger_share: float = 0.3,
    distractor_folds: Sequence[int] = (),
) -> Pool:
    models = tuple(models)
    parts = [_load(d, models).folds(folds) for d in ("lfw-dev", "lfw-few", "lfw-singles")]
    if distractor_folds:
        parts.append(_load("lfw-singles", models).folds(distractor_folds))
    rng = np.random.default_rng(seed)
    person = np.concatenate([p.person for p in parts])
    vectors = {m: np.concatenate([p.vectors[m] for p in parts]) for m in models}
    multi, singles, strangers = [], [], []
    off = 0
    for part, p in enumerate(parts):
        names = np.unique(p.person)
        is_stranger = rng.random(len(names)) < (stranger_share if part < 3 else 0.0)
        for name, s in zip(names, is_stranger):
            idx = off + np.flatnonzero(p.person == name)
            if s:
                strangers.extend(idx.tolist())
            elif len(idx) >= 2:
                multi.append(idx)
            else:
                singles.append(int(idx[0]))
        off += len(p.person)
    return Pool(person, vectors, multi, singles, np.asarray(strangers))


def gallery(pool: Pool, n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Face indices of a gallery of ``n`` people with ``k`` photos each (singles beyond)."""
    eligible = [m for m in pool.multi if len(m) >= k]
    rng.shuffle(eligible)
    chosen = [rng.choice(m, k, replace=False) for m in eligible[:n]]
    extra = n - len(chosen)
    if extra > 0:
        s = rng.choice(len(pool.singles), min(extra, len(pool.singles)), replace=False)
        chosen += [np.array([pool.singles[i]]) for i in s]
    faces = np.concatenate(chosen)
    return faces, pool.person[faces]


def run(
    pool: Pool,
    weights: dict[str, float],
    sizes: Sequence[int],
    photos: Sequence[int],
    targets: Sequence[float],
    repeats: int = 5,
    seed: int = 1,
) -> list[dict]:
    from facekit.calibration import calibrate

    rows = []
    rng = np.random.default_rng(seed)
    sv = {m: pool.vectors[m][pool.strangers] for m in weights}
    for k in photos:
        for n in sizes:
            acc: dict[float, list] = {a: [] for a in targets}
            kinds: set[str] = set()
            t_cal = 0.0
            for _r in range(repeats):
                faces, persons = gallery(pool, n, k, rng)
                gv = {m: pool.vectors[m][faces] for m in weights}
                t0 = time.process_time()
                cal = calibrate(persons, gv, weights, max_strangers=targets[0])
                t_cal += time.process_time() - t0
                kinds.add(str(cal.stats.get("model")))
                best = np.full(len(pool.strangers), -np.inf)
                for s0 in range(0, len(pool.strangers), 1024):
                    ev = cal.pairwise_evidence({m: sv[m][s0 : s0 + 1024] for m in weights}, gv)
                    best[s0 : s0 + 1024] = ev.max(1)
                for a in targets:
                    c = cal.for_rate(a)
                    acc[a].append(
                        (
                            float(np.mean(best >= c.threshold)),
                            c.expected_strangers,
                            c.threshold,
                            c.expected_named,
                        )
                    )
            for a in targets:
                v = np.array([[x if x is not None else np.nan for x in r] for r in acc[a]])
                rows.append(
                    {
                        "photos": k,
                        "people": n,
                        "target": a,
                        "achieved": float(v[:, 0].mean()),
                        "predicted": float(v[:, 1].mean()),
                        "threshold": float(v[:, 2].mean()),
                        "named": float(np.nanmean(v[:, 3])) if np.isfinite(v[:, 3]).any() else None,
                        "ratio": float(v[:, 0].mean() / a),
                        "cpu_s": t_cal / repeats,
                        "strangers": len(pool.strangers),
                        "model": "/".join(sorted(kinds)),
                    }
                )
    return rows


def run_splits(
    models: Sequence[str],
    folds: Sequence[int],
    weights: dict[str, float],
    sizes: Sequence[int],
    photos: Sequence[int],
    targets: Sequence[float],
    repeats: int | dict[int, int] = 5,
    splits: int = 5,
    split_seed: int = 0,
    distractor_folds: Sequence[int] = (),
) -> list[dict]:
    """:func:`run` over ``splits`` stranger splits (seeds ``split_seed``, ``split_seed + 1``,
    ...), each with its own random galleries (``repeats`` per cell and split, or a dict gallery
    size -> repeats). A row's ``achieved`` and ``predicted`` are means over splits; ``lo`` and
    ``hi`` the smallest and largest per-split achieved/target; ``per_split`` the per-split
    ratios; ``strangers`` the mean number of stranger photos."""
    per: dict[tuple[int, int, float], list[dict]] = {}
    for s in range(splits):
        pool = make_pool(models, folds, seed=split_seed + s, distractor_folds=distractor_folds)
        for n in sizes:
            reps = repeats.get(n, 5) if isinstance(repeats, dict) else repeats
            for r in run(pool, weights, [n], photos, targets, repeats=reps, seed=1 + 1000 * s):
                per.setdefault((r["photos"], r["people"], r["target"]), []).append(r)
    rows = []
    for k in photos:
        for n in sizes:
            for a in targets:
                rs = per[(k, n, a)]
                ratios = [r["ratio"] for r in rs]
                named = [r["named"] for r in rs if r["named"] is not None]
                rows.append(
                    {
                        "photos": k,
                        "people": n,
                        "target": a,
                        "achieved": float(np.mean([r["achieved"] for r in rs])),
                        "predicted": float(np.mean([r["predicted"] for r in rs])),
                        "threshold": float(np.mean([r["threshold"] for r in rs])),
                        "named": float(np.mean(named)) if named else None,
                        "ratio": float(np.mean(ratios)),
                        "lo": float(min(ratios)),
                        "hi": float(max(ratios)),
                        "per_split": [round(x, 3) for x in ratios],
                        "cpu_s": float(np.mean([r["cpu_s"] for r in rs])),
                        "strangers": float(np.mean([r["strangers"] for r in rs])),
                        "model": "/".join(sorted({r["model"] for r in rs})),
                    }
                )
    return rows
