"""Open-set identification accuracy: the 60/19 protocol and the stranger rate across gallery sizes.

``--folds report`` (issue 11; figures in docs/accuracy.md): on people-disjoint folds
(benchmarks/folds.py) of lfw-dev + lfw-few (+ lfw-singles for the scale table), from the shared
embedding cache, calibrated with :func:`facekit.calibration.calibrate` exactly as build-index
does, for the stated ``--max-strangers``:

* the 60/19 protocol, repeated ``--draws`` times: 60 people of the folds with >= 4 photos
  enrolled with 3 photos each (sorted), their other photos are probes; 19 other people of the
  folds are strangers (all their photos). A probe's answer is the face in it with the most
  confident identity (every face of the photo, as identify reports them);
* ``--scale``: promised vs achieved stranger rate for targets 1% and 5% at 10 to 1,000
  enrolled people with 1, 3 and 5 photos (benchmarks/openset_scale.py), each cell the mean
  over ``--splits`` stranger splits (default 10) with the range over splits.

Without ``--folds``: the original run through the real pipeline on ../shared/datasets/lfw-dev
(issue 3, section 3):

Split (nothing tuned on the probes): sort the names; enrol the first 60 people with their
first 3 photos (sorted); their other 7 photos are probes; all photos of the remaining 19
people are strangers. A probe's answer is the face in it with the most confident identity
(or unknown). The database calibrates itself on the 180 gallery photos only.

Usage:
    python benchmarks/bench_openset.py --folds report [--models dlib,mobilefacenet] [--scale]
    python benchmarks/bench_openset.py --folds tune --models dlib --scale-only --splits 5
    python benchmarks/bench_openset.py [--models dlib,mobilefacenet] [--shared ../shared]
(set FACEKIT_MODEL_MIRROR=../shared/models for mobilefacenet)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # folds.py, openset_scale.py


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="dlib")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--folds", choices=("tune", "report"), default=None)
    ap.add_argument("--max-strangers", type=float, default=None)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--scale", action="store_true")
    ap.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="--scale: seed of the first stranger split (split i uses seed + i)",
    )
    ap.add_argument(
        "--splits",
        type=int,
        default=10,
        help="--scale: stranger splits per cell (each a different 30%% of the folds' people)",
    )
    ap.add_argument("--sizes", default="10,30,100,300,1000", help="--scale: gallery sizes")
    ap.add_argument("--photos", default="1,3,5", help="--scale: photos per person")
    ap.add_argument("--scale-only", action="store_true", help="--scale without the 60/19 protocol")
    ap.add_argument("--json", default=None, help="--scale: also write the rows to this file")
    args = ap.parse_args()
    if args.folds:
        folds_main(args)
        return

    from facekit.database import Database
    from facekit.gallery import build_index
    from facekit.identify import Identifier
    from facekit.models.registry import parse_model_list
    from facekit.pipeline import PipelineConfig, run_paths

    lfw = Path(args.shared) / "datasets" / "lfw-dev"
    if not lfw.is_dir():
        sys.exit(f"{lfw} not found")
    names = sorted(p.name for p in lfw.iterdir() if p.is_dir())
    enrolled, strangers = names[:60], names[60:]
    tmp = Path(tempfile.mkdtemp(prefix="facekit-openset-"))
    gallery = tmp / "people"
    probes: list[tuple[str, str | None]] = []
    for n in enrolled:
        photos = sorted((lfw / n).glob("*.jpg"))
        (gallery / n).mkdir(parents=True)
        for p in photos[:3]:
            os.symlink(p, gallery / n / p.name)
        probes += [(str(p), n) for p in photos[3:]]
    for n in strangers:
        probes += [(str(p), None) for p in sorted((lfw / n).glob("*.jpg"))]

    config = PipelineConfig(models=tuple(parse_model_list(args.models)))
    t0 = time.perf_counter()
    report = build_index(gallery, tmp / "db", config, workers=args.workers)
    t_build = time.perf_counter() - t0
    db = Database.open(tmp / "db")
    ident = Identifier(db)
    t0 = time.perf_counter()
    right = wrong_enrolled = missed = stranger_named = 0
    n_enrolled = sum(1 for _, t in probes if t)
    n_strangers = len(probes) - n_enrolled
    n_faces = 0
    for (_path, truth), result in zip(
        probes, run_paths(db.config, [p for p, _ in probes], workers=args.workers)
    ):
        pm = ident.match_result(result)
        n_faces += len(pm.matches)
        named = [m.identity for m in pm.matches if m.identity is not None]
        answer = max(named, key=lambda c: c.confidence).person if named else None
        if truth is None:
            stranger_named += answer is not None
        elif answer == truth:
            right += 1
        elif answer is None:
            missed += 1
        else:
            wrong_enrolled += 1
    t_probe = time.perf_counter() - t0
    cal = db.calibration
    acc = (right + (n_strangers - stranger_named)) / len(probes)
    print(
        f"models: {args.models}   gallery: {report.faces} faces of {report.persons} people "
        f"(calibration: {cal.source}, threshold {cal.threshold:.2f})"
    )
    print(
        f"enrolled probes named right: {right}/{n_enrolled} = {right / n_enrolled:.1%} "
        f"(missed {missed}, wrong person {wrong_enrolled})"
    )
    print(
        f"strangers given a name: {stranger_named}/{n_strangers} = {stranger_named / n_strangers:.1%}"
    )
    print(f"open-set accuracy: {acc:.1%}")
    print(
        f"build-index: {report.faces + len(report.no_face)} photos in {t_build:.1f} s; "
        f"identify: {len(probes)} photos / {n_faces} faces in {t_probe:.1f} s "
        f"({1000 * t_probe / max(n_faces, 1):.0f} ms per face, workers={args.workers or 'auto'})"
    )
    shutil.rmtree(tmp, ignore_errors=True)


def protocol_60_19(models, folds, max_strangers, draws, seed=0):
    """Repeated 60/19 draws on cached embeddings; returns per-draw rows and the totals."""
    import numpy as np
    from folds import load_faces

    from facekit.calibration import calibrate, default_max_strangers

    rate = default_max_strangers(models) if max_strangers is None else max_strangers
    parts = [load_faces(d, models).folds(folds) for d in ("lfw-dev", "lfw-few")]
    rng = np.random.default_rng(seed)
    people = []  # (dataset part, person, indices sorted by source)
    for k, p in enumerate(parts):
        for name in np.unique(p.person):
            idx = np.flatnonzero(p.person == name)
            idx = idx[np.argsort(p.source[idx])]
            people.append((k, name, idx))
    eligible = [x for x in people if len(x[2]) >= 4]
    w = {m: 1.0 / len(models) for m in models}
    tot = dict(right=0, wrong=0, missed=0, enrolled=0, strangers=0, named=0)
    rows = []
    for _d in range(draws):
        pick = rng.choice(len(eligible), 79, replace=False)
        enrolled, strangers = [eligible[i] for i in pick[:60]], [eligible[i] for i in pick[60:]]
        g_persons, g_vec = [], {m: [] for m in models}
        probes = []  # (part, index, truth)
        for k, name, idx in enrolled:
            for i in idx[:3]:
                g_persons.append(name)
                for m in models:
                    g_vec[m].append(parts[k].vectors[m][i])
            probes += [(k, i, name) for i in idx[3:]]
        for k, _name, idx in strangers:
            probes += [(k, i, None) for i in idx]
        g_persons = np.array(g_persons)
        gv = {m: np.stack(g_vec[m]) for m in models}
        cal = calibrate(g_persons, gv, w, max_strangers=rate)
        r = dict(right=0, wrong=0, missed=0, enrolled=0, strangers=0, named=0)
        for k, i, truth in probes:
            faces = {m: parts[k].faces[m][i] for m in models}
            ev = cal.pairwise_evidence(faces, gv)  # (faces in photo, gallery faces)
            j = np.unravel_index(int(np.argmax(ev)), ev.shape)
            answer = g_persons[j[1]] if ev[j] >= cal.threshold else None
            if truth is None:
                r["strangers"] += 1
                r["named"] += answer is not None
            else:
                r["enrolled"] += 1
                if answer == truth:
                    r["right"] += 1
                elif answer is None:
                    r["missed"] += 1
                else:
                    r["wrong"] += 1
        r["threshold"] = cal.threshold
        r["expected_strangers"] = cal.expected_strangers
        r["expected_named"] = cal.expected_named
        rows.append(r)
        for key in tot:
            tot[key] += r[key]
    return rows, tot


def folds_main(args) -> None:
    import numpy as np
    from folds import REPORT, TUNE

    models = tuple(args.models.split(","))
    folds = TUNE if args.folds == "tune" else REPORT
    if args.scale_only:
        scale_table(args, models, folds)
        return
    t0 = time.process_time()
    rows, tot = protocol_60_19(models, folds, args.max_strangers, args.draws)
    acc = (tot["right"] + tot["strangers"] - tot["named"]) / (tot["enrolled"] + tot["strangers"])
    print(
        f"models {'+'.join(models)}, folds {folds}, {args.draws} draws of 60 enrolled (3 photos) "
        f"+ 19 strangers, max-strangers {args.max_strangers or 'default'}"
    )
    print(
        f"enrolled probes named right {tot['right']}/{tot['enrolled']} = "
        f"{tot['right'] / tot['enrolled']:.1%} (missed {tot['missed']}, wrong person "
        f"{tot['wrong']}); strangers named {tot['named']}/{tot['strangers']} = "
        f"{tot['named'] / tot['strangers']:.1%}; open-set accuracy {acc:.1%}"
    )
    exp_s = np.mean([r["expected_strangers"] for r in rows])
    exp_n = np.mean([r["expected_named"] for r in rows if r["expected_named"] is not None])
    thr = np.mean([r["threshold"] for r in rows])
    print(
        f"promised (mean over draws): {exp_s:.1%} of strangers named, {exp_n:.1%} of enrolled "
        f"photos named; mean threshold {thr:.2f}; cpu {time.process_time() - t0:.1f} s"
    )
    if args.scale:
        scale_table(args, models, folds)


def scale_table(args, models, folds) -> None:
    import json

    import numpy as np
    from folds import REPORT, TUNE
    from openset_scale import run_splits

    extra = TUNE if folds == REPORT else ()
    sizes = [int(x) for x in args.sizes.split(",")]
    photos = [int(x) for x in args.photos.split(",")]
    reps = {10: 40, 30: 24, 50: 16, 70: 12, 100: 10, 300: 4, 1000: 3}
    reps.update({n: 5 for n in sizes if n not in reps})
    w = {m: 1.0 / len(models) for m in models}
    t0, c0 = time.perf_counter(), time.process_time()
    rows = run_splits(
        models,
        folds,
        w,
        sizes,
        photos,
        [0.01, 0.05],
        repeats=reps,
        splits=args.splits,
        split_seed=args.split_seed,
        distractor_folds=extra,
    )
    print(
        f"\nscale: folds {folds}, {args.splits} stranger splits (seeds {args.split_seed}-"
        f"{args.split_seed + args.splits - 1}; 30% of the folds' people each), mean "
        f"{np.mean([r['strangers'] for r in rows]):.0f} stranger photos per split"
        + (", singles of the tune folds as extra distractors only" if extra else "")
        + f"; galleries per split and cell: {', '.join(f'{n}: {reps[n]}' for n in sizes)}"
    )
    print(
        "| photos/person | people | target | achieved | predicted | achieved/target |"
        " range over splits | threshold | enrolled named (LOO) | calibrate cpu s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows.sort(key=lambda r: (r["people"], r["photos"], r["target"]))
    for r in rows:
        named = "-" if r["named"] is None else f"{r['named']:.1%}"
        flag = "" if 0.5 <= r["ratio"] <= 1.5 else "**"
        print(
            f"| {r['photos']} | {r['people']} | {r['target']:.0%} | {r['achieved']:.2%} "
            f"| {r['predicted']:.2%} | {flag}{r['ratio']:.2f}{flag} | {r['lo']:.2f}-{r['hi']:.2f} "
            f"| {r['threshold']:.2f} | {named} | {r['cpu_s']:.2f} |",
            flush=True,
        )
    inside = sum(0.5 <= r["ratio"] <= 1.5 for r in rows)
    print(
        f"\n{inside} of {len(rows)} cells within 0.5-1.5x (mean over splits); "
        f"wall {time.perf_counter() - t0:.0f} s, cpu {time.process_time() - c0:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
