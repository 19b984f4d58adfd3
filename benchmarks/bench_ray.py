"""Throughput of ``--engine ray`` with 1 and 2 actors against the local engine.

Runs the real CLI in subprocesses (each run is cold: interpreter start, model load, and for
Ray starting a private local Ray instance) on the 790 lfw-dev photos, and - with ``--video`` -
on a generated long video. Reports wall time, photos (or video seconds) per second and the
2-vs-1 speed-up. Figures go to docs/performance.md ("Ray engine").

    python benchmarks/bench_ray.py                 # photos
    python benchmarks/bench_ray.py --video 600     # also a 10-minute generated video
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEKIT_SHARED", ROOT.parent / "shared"))


def run(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "facekit", *args], cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1, 3):
        raise SystemExit(f"facekit {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return wall


def bench_photos(tmp: Path, repeats: int) -> None:
    lfw = SHARED / "datasets" / "lfw-dev"
    if not lfw.is_dir():
        raise SystemExit(f"{lfw} not found")
    n = sum(1 for _ in lfw.glob("*/*.jpg"))
    rows = []
    for label, extra in (
        ("local -j 1", ["-j", "1"]),
        ("local -j 2", ["-j", "2"]),
        ("ray, 1 actor", ["--engine", "ray", "-j", "1"]),
        ("ray, 2 actors", ["--engine", "ray", "-j", "2"]),
    ):
        best = min(
            run(
                ["embed", str(lfw), "-o", str(tmp / f"out{i}.parquet"), "--force", "-q", *extra],
                tmp,
            )
            for i in range(repeats)
        )
        rows.append((label, best, n / best))
        print(f"{label:14s} {best:7.1f} s  {n / best:6.1f} photos/s", flush=True)
    print()
    print("| engine | wall (s) | photos/s |")
    print("|---|---|---|")
    for label, wall, rate in rows:
        print(f"| {label} | {wall:.1f} | {rate:.1f} |")
    print(
        f"\nray 2 vs 1 actors: {rows[2][1] / rows[3][1]:.2f}x; "
        f"local 2 vs 1: {rows[0][1] / rows[1][1]:.2f}x; "
        f"ray vs local at 2: {rows[3][1] / rows[1][1]:.2f}x the time"
    )


def bench_video(tmp: Path, seconds: int) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_video import make_video  # type: ignore[import-not-found]

    video = tmp / "long.mp4"
    make_video(video, seconds / 60)
    db = tmp / "db"
    train = SHARED / "datasets" / "face_recognition-examples" / "knn_examples" / "train"
    run(["build-index", str(train), "-d", str(db), "-q"], tmp)
    rows = []
    for label, extra in (
        ("local", []),
        ("ray, 1 actor", ["--engine", "ray", "-j", "1"]),
        ("ray, 2 actors", ["--engine", "ray", "-j", "2"]),
    ):
        wall = run(
            [
                "video",
                str(video),
                "-d",
                str(db),
                "--interval",
                "5",
                "--format",
                "json",
                "-q",
                *extra,
            ],
            tmp,
        )
        rows.append((label, wall))
        print(f"{label:14s} {wall:7.1f} s  {seconds / wall:6.1f}x real time", flush=True)
    print(f"\nvideo ray 2 vs 1 actors: {rows[1][1] / rows[2][1]:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument(
        "--video", type=int, default=0, help="also a generated video of this many seconds"
    )
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"load average before: {os.getloadavg()}")
        bench_photos(tmp, a.repeats)
        if a.video:
            bench_video(tmp, a.video)


if __name__ == "__main__":
    main()
