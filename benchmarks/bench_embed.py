"""Embedding benchmark: faces/s per detector and recogniser, photos/s of ``facekit embed``.

Usage (from the checkout, ../shared beside it or $FACEKIT_SHARED set)::

    python benchmarks/bench_embed.py                 # everything (about 8 minutes on 2 cores)
    python benchmarks/bench_embed.py --only models   # per-model rates only
    python benchmarks/bench_embed.py --only cli      # facekit embed vs the face_recognition CLI

Models come from the package (dlib) and the mirror ``../shared/models`` (YuNet, RetinaFace,
MobileFaceNet), installed into a temporary FACEKIT_HOME. Prints a Markdown report; the
figures are recorded in docs/performance.md. Run nothing else CPU-heavy meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def shared_dir() -> Path:
    env = os.environ.get("FACEKIT_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def lfw_photos(lfw: Path) -> list[str]:
    return sorted(str(p) for p in lfw.rglob("*.jpg"))


def spread(photos: list[str], n: int) -> list[str]:
    """``n`` photos spread evenly over the (person-sorted) list, so many people are included."""
    step = max(1, len(photos) // n)
    return photos[::step][:n]


def bench_models(photos: list[str], n: int, n_cnn: int) -> None:
    from facekit.detect import detect_image, get_detector
    from facekit.embed import get_embedder
    from facekit.imageio import load_image
    from facekit.models.runtime import set_threads

    set_threads(1)  # one core per process, as in the CLI's workers: rates per core
    imgs = [load_image(p).rgb for p in spread(photos, n)]
    print(f"\n### Detectors (one thread, {n} lfw-dev photos of 250x250 spread over the people)\n")
    print(f"load average before: {os.getloadavg()[0]:.1f}\n")
    print("| detector | photos | faces | ms/photo | CPU ms/photo | faces/s |")
    print("|---|---|---|---|---|---|")
    for name, count in (
        ("dlib-hog", n),
        ("dlib-cnn", n_cnn),
        ("yunet", n),
        ("retinaface", n),
        ("scrfd", n),
        ("scrfd-500m", n),
        ("blazeface", n),
    ):
        det = get_detector(name)
        detect_image(det, imgs[0])  # warm-up (model load, first-call allocations)
        t0, c0 = time.perf_counter(), time.process_time()
        faces = sum(len(detect_image(det, im)) for im in imgs[:count])
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"| {name} | {count} | {faces} | {1000 * dt / count:.1f} | {1000 * dc / count:.1f} "
            f"| {faces / dt:.1f} |"
        )

    hog = get_detector("dlib-hog")
    found = [(im, detect_image(hog, im)) for im in imgs]
    found = [(im, f[:1]) for im, f in found if len(f)]
    print(f"\n### Recognisers (one thread, the largest dlib-hog face of {len(found)} photos)\n")
    print("| recogniser | flip | faces | ms/face | CPU ms/face | faces/s |")
    print("|---|---|---|---|---|---|")
    for name in ("dlib", "mobilefacenet", "sface", "arcface-mbf"):
        for flip in (False, True):
            emb = get_embedder(name, flip=flip)
            emb.embed(*found[0])
            t0, c0 = time.perf_counter(), time.process_time()
            k = sum(len(emb.embed(im, f)) for im, f in found)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            print(
                f"| {name} | {'on' if flip else 'off'} | {k} | {1000 * dt / k:.1f} "
                f"| {1000 * dc / k:.1f} | {k / dt:.1f} |"
            )


def timed(cmd: list[str], env: dict[str, str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    return time.perf_counter() - t0, proc


def timed_cpu(
    cmd: list[str], env: dict[str, str]
) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + sys of the command and its workers), load before, result.

    CPU seconds do not grow when other processes compete for the cores, so they show whether a
    slow wall time was noise.
    """
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    dt, proc = timed(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dt, cpu, load, proc


def bench_cli(
    lfw: Path, photos: list[str], tmp: Path, env: dict[str, str], repeat: int, skip_fr: bool = False
) -> None:
    facekit = str(BIN / "facekit")
    n = len(photos)
    print(f"\n### `facekit embed` over lfw-dev ({n} photos)\n")
    print("| command | wall s | photos/s | CPU s | load before |")
    print("|---|---|---|---|---|")
    out = tmp / "f.parquet"
    for workers in (1, 2):
        for _ in range(repeat):
            cmd = [facekit, "embed", str(lfw), "-o", str(out), "--force", "-q", "-j", str(workers)]
            dt, cpu, load, proc = timed_cpu(cmd, env)
            shown = " ".join(["facekit", *cmd[1:]]).replace(str(lfw), "../shared/datasets/lfw-dev")
            shown = shown.replace(str(out), "/tmp/f.parquet")
            print(
                f"| `{shown}` (exit {proc.returncode}) | {dt:.1f} | {n / dt:.2f} | {cpu:.1f} | {load:.1f} |"
            )
    import pyarrow.parquet as pq

    files = json.loads(pq.read_schema(out).metadata[b"facekit.files"])
    with_face = sum(1 for f in files.values() if f["faces"] > 0)
    errors = {k: v["error"] for k, v in files.items() if v["error"]}
    print(
        f"\nfiles {len(files)}, with at least one face {with_face} ({100 * with_face / len(files):.1f}%), "
        f"errors {len(errors)}"
    )
    for k, v in list(errors.items())[:10]:
        print(f"- {Path(k).relative_to(lfw)}: {v}")

    # face_recognition's CLI reads one flat folder: link every photo into one; one known face.
    fr = shutil.which("face_recognition", path=str(BIN)) or shutil.which("face_recognition")
    if skip_fr:
        return
    if not fr:
        print("\nface_recognition CLI not installed: skipped")
        return
    flat, known = tmp / "flat", tmp / "known"
    flat.mkdir(exist_ok=True)
    known.mkdir(exist_ok=True)
    for p in photos:
        link = flat / Path(p).name
        if not link.exists():
            link.symlink_to(p)
    shutil.copy(photos[0], known / "someone.jpg")
    print(f"\n### face_recognition CLI on the same {n} photos (one known face)\n")
    print("| command | wall s | photos/s | CPU s | load before |")
    print("|---|---|---|---|---|")
    for cpus in (1, 2):
        for _ in range(repeat):
            cmd = [fr, "--cpus", str(cpus), str(known), str(flat)]
            dt, cpu, load, proc = timed_cpu(cmd, env)
            print(
                f"| `face_recognition --cpus {cpus} known/ lfw-flat/` (exit {proc.returncode}, "
                f"{len(proc.stdout.splitlines())} lines) | {dt:.1f} | {n / dt:.2f} | {cpu:.1f} | {load:.1f} |"
            )


def bench_startup(photo: str, env: dict[str, str], repeat: int = 5) -> None:
    facekit = str(BIN / "facekit")
    print("\n### Start-up\n")
    print(f"| command | median s (of {repeat}) |")
    print("|---|---|")
    for cmd in ([facekit, "--help"], [facekit, "embed", photo, "--format", "json", "-q"]):
        times = []
        for _ in range(repeat):
            dt, proc = timed(cmd, env)
            assert proc.returncode in (0, 1), proc.stderr
            times.append(dt)
        shown = " ".join(["facekit", *cmd[1:]]).replace(photo, "one.jpg")
        print(
            f"| `{shown}` | {statistics.median(times):.2f} (min {min(times):.2f}, max {max(times):.2f}) |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["models", "cli", "startup"], action="append")
    ap.add_argument("--photos", type=int, default=100, help="photos for the per-model rates")
    ap.add_argument(
        "--cnn-photos", type=int, default=5, help="photos for dlib-cnn (about 1 s each)"
    )
    ap.add_argument("--repeat", type=int, default=1, help="repeat each CLI run")
    ap.add_argument("--skip-face-recognition", action="store_true", help="only time facekit embed")
    args = ap.parse_args()
    only = set(args.only or ["models", "cli", "startup"])
    shared = shared_dir()
    lfw = shared / "datasets" / "lfw-dev"
    if not lfw.is_dir():
        sys.exit(f"{lfw} not found: the benchmark needs ../shared (or FACEKIT_SHARED)")
    tmp = Path(tempfile.mkdtemp(prefix="facekit-bench-"))
    os.environ["FACEKIT_HOME"] = str(tmp / "home")
    os.environ["FACEKIT_MODEL_MIRROR"] = str(shared / "models")
    env = dict(os.environ)
    photos = lfw_photos(lfw)
    print(
        f"## facekit embedding benchmark ({os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')})"
    )
    try:
        if "startup" in only:
            bench_startup(photos[0], env)
        if "models" in only:
            bench_models(photos, args.photos, args.cnn_photos)
        if "cli" in only:
            bench_cli(lfw, photos, tmp, env, args.repeat, args.skip_face_recognition)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
