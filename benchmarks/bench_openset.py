"""Open-set identification accuracy on ../shared/datasets/lfw-dev (issue 3, section 3).

Split (nothing tuned on the probes): sort the names; enrol the first 60 people with their
first 3 photos (sorted); their other 7 photos are probes; all photos of the remaining 19
people are strangers. A probe's answer is the face in it with the most confident identity
(or unknown). The database calibrates itself on the 180 gallery photos only.

Usage:
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="dlib")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()

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


if __name__ == "__main__":
    main()
