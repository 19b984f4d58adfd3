"""Detectors: coverage on photo sets, faces found in video frames, ms per photo (issue 12).

* Coverage: share of photos in which the detector finds at least one face (every LFW photo
  shows a face; deepface-unit photos all show at least one).
* Video: faces found on evenly spaced frames of ../shared/videos/facenet-pytorch_video.mp4 (a
  crowd) and of short_hamilton_clip.mp4 (stage, wide shots), summed over the frames.
* Speed: wall and CPU ms per photo through :func:`facekit.detect.detect_image` (the CLI's path:
  photos are downscaled to a 1600 px long side first), with one thread.

Usage:
    FACEKIT_MODEL_MIRROR=../shared/models python benchmarks/bench_detectors.py \\
        --detectors dlib-hog,yunet,scrfd,scrfd-500m,blazeface [--limit 200] [--frames 12]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def frames(video: Path, n: int) -> list[np.ndarray]:
    import av

    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else 10.0
        out = []
        for t in np.linspace(0.05, 0.95, n) * duration:
            c.seek(int(t / stream.time_base), stream=stream)
            for frame in c.decode(stream):
                if frame.time is not None and frame.time >= t - 1e-3:
                    out.append(frame.to_ndarray(format="rgb24"))
                    break
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detectors", default="dlib-hog,yunet,scrfd,scrfd-500m,blazeface")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--limit", type=int, default=0, help="photos per set (0 = all)")
    ap.add_argument("--frames", type=int, default=12)
    args = ap.parse_args()

    from facekit.detect import detect_image, get_detector
    from facekit.imageio import load_image
    from facekit.models.runtime import set_threads

    set_threads(1)
    shared = Path(args.shared)
    sets = {
        "lfw-dev": sorted((shared / "datasets" / "lfw-dev").glob("*/*.jpg")),
        "deepface-unit": sorted(
            p
            for p in (shared / "datasets" / "deepface-unit").iterdir()
            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
        ),
    }
    if args.limit:
        sets = {k: v[:: max(1, len(v) // args.limit)][: args.limit] for k, v in sets.items()}
    images = {k: [load_image(p).rgb for p in v] for k, v in sets.items()}
    videos = {
        "crowd video": frames(shared / "videos" / "facenet-pytorch_video.mp4", args.frames),
        "Hamilton clip": frames(shared / "videos" / "short_hamilton_clip.mp4", args.frames),
    }
    cols = [f"{k} coverage ({len(v)})" for k, v in images.items()]
    cols += [f"faces on {len(v)} frames of the {k}" for k, v in videos.items()]
    print("| detector | " + " | ".join(cols) + " | ms per photo, wall / CPU (lfw-dev) |")
    print("|---" * (len(cols) + 2) + "|")
    for name in args.detectors.split(","):
        det = get_detector(name)
        detect_image(det, images["lfw-dev"][0])  # warm up
        cells = []
        wall = cpu = 0.0
        for k, ims in images.items():
            found = 0
            for rgb in ims:
                t, c = time.perf_counter(), time.process_time()
                faces = detect_image(det, rgb)
                if k == "lfw-dev":
                    wall += time.perf_counter() - t
                    cpu += time.process_time() - c
                found += len(faces) > 0
            cells.append(f"{found / len(ims):.1%}")
        for ims in videos.values():
            cells.append(str(sum(len(detect_image(det, f)) for f in ims)))
        n = len(images["lfw-dev"])
        print(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {1000 * wall / n:.0f} / {1000 * cpu / n:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
