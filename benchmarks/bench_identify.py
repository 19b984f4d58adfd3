"""Identification speed: warm per-face latency and a cold `facekit identify photo.jpg`.

Builds a gallery from ../shared/datasets/face_recognition-examples/knn_examples/train, then
(1) times identify of 100 lfw-dev photos in one warm process, one worker (per face and per
photo), and (2) times the whole command `facekit identify PHOTO` from a fresh process.

Usage:
    python benchmarks/bench_identify.py [--models dlib,mobilefacenet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="dlib")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    args = ap.parse_args()

    from facekit.database import Database
    from facekit.gallery import build_index
    from facekit.identify import Identifier
    from facekit.pipeline import Pipeline, PipelineConfig

    shared = Path(args.shared)
    tmp = Path(tempfile.mkdtemp(prefix="facekit-bench-id-"))
    cfg = PipelineConfig(models=tuple(args.models.split(",")))
    build_index(
        shared / "datasets/face_recognition-examples/knn_examples/train", tmp / "db", cfg, workers=1
    )
    db = Database.open(tmp / "db")
    pipe = Pipeline(db.config)
    ident = Identifier(db)
    photos = sorted((shared / "datasets/lfw-dev").glob("*/*.jpg"))[::8][:100]
    pipe.process_path(str(photos[0]))  # warm-up
    t0 = time.perf_counter()
    faces = 0
    for p in photos:
        r = pipe.process_path(str(p))
        ident.match_result(r)
        faces += len(r.faces)
    warm = time.perf_counter() - t0
    print(
        f"warm, one process, one worker, models {args.models}: {len(photos)} photos, {faces} faces, "
        f"{1000 * warm / faces:.0f} ms per face, {1000 * warm / len(photos):.0f} ms per photo"
    )
    env = {**os.environ}
    cold = []
    for name in ("obama.jpg", "two_people.jpg", "biden.jpg"):
        photo = shared / "datasets/face_recognition-examples" / name
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "facekit",
                    "identify",
                    str(photo),
                    "-d",
                    str(tmp / "db"),
                    "-q",
                    "--format",
                    "ndjson",
                ],
                stdout=subprocess.DEVNULL,
                env=env,
                check=False,
            )
            cold.append(time.perf_counter() - t)
    print(
        f"cold `facekit identify PHOTO` (3 photos x 3 runs): median {statistics.median(cold):.2f} s, "
        f"max {max(cold):.2f} s"
    )


if __name__ == "__main__":
    main()
