"""Head-pose error (docs/pose.md): synthetic faces of known pose, and dlib vs YuNet on LFW.

    python benchmarks/bench_pose.py [--lfw ../shared/datasets/lfw-dev]

1. Synthetic: the generic 3-D face at 315 poses (yaw -70..70, pitch -25..20, roll -20..15)
   projected into a 640x480 image with a 60 px eye distance, with Gaussian landmark noise of
   0, 2% and 4% of the eye distance; the estimate's absolute error per angle.
2. LFW: each photo's central face with dlib-hog (dlib's own 5 points) and with YuNet (the 5
   standard points, needs the model mirror): the distribution of each angle and the agreement
   of the two estimates. There is no ground truth: docs/pose.md adds photos checked by eye.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def synthetic() -> None:
    from facekit.pose import pose_from_points, project

    rng = np.random.default_rng(0)
    poses = [
        (y, p, r)
        for y in (-70, -50, -30, -10, 0, 10, 30, 50, 70)
        for p in (-25, -10, 0, 10, 20)
        for r in (-20, 0, 15)
    ]
    print("synthetic: |error| in degrees, yaw / pitch / roll")
    for layout in ("standard5", "dlib5"):
        for noise in (0.0, 0.02, 0.04):
            errs = []
            for y, p, r in poses:
                pts = project(
                    layout, y, p, r, centre=(320, 240), eye_distance=60, width=640, height=480
                )
                pts = pts + rng.normal(0, noise * 60, pts.shape)
                est = pose_from_points(pts[None], layout, width=640, height=480)[0]
                errs.append(np.abs(est - [y, p, r]))
            e = np.array(errs)
            fmt = lambda v: " / ".join(f"{x:.1f}" for x in v)  # noqa: E731
            print(
                f"  {layout:9s} noise {noise:.0%}: median {fmt(np.median(e, 0))}, "
                f"90th pct {fmt(np.percentile(e, 90, 0))}, max {fmt(e.max(0))}"
            )


def lfw(folder: Path) -> None:
    from facekit.detect import detect_image, get_detector
    from facekit.imageio import load_image

    dets = {"dlib-hog": get_detector("dlib-hog")}
    if os.environ.get("FACEKIT_MODEL_MIRROR"):
        dets["yunet"] = get_detector("yunet")
    files = sorted(folder.glob("*/*.jpg"))
    poses: dict[str, dict[str, np.ndarray]] = {n: {} for n in dets}
    t0, c0 = time.perf_counter(), time.process_time()
    for f in files:
        rgb = load_image(f).rgb
        for n, d in dets.items():
            faces = detect_image(d, rgb)
            if len(faces):
                c = (faces.xyxy[:, :2] + faces.xyxy[:, 2:]) / 2
                i = int(np.argmin(np.linalg.norm(c - [rgb.shape[1] / 2, rgb.shape[0] / 2], axis=1)))
                poses[n][str(f)] = faces.data["pose"][i]
    print(
        f"\nLFW {folder}: {len(files)} photos, {time.perf_counter() - t0:.1f} s wall, "
        f"{time.process_time() - c0:.1f} s CPU (detection included)"
    )
    for n, d in poses.items():
        a = np.array(list(d.values()))
        print(
            f"  {n:8s} {len(a)} faces: median yaw/pitch/roll {np.round(np.nanmedian(a, 0), 1)}, "
            f"std {np.round(np.nanstd(a, 0), 1)}, |yaw|<=15: {np.mean(np.abs(a[:, 0]) <= 15):.1%}, "
            f"|yaw|<=30: {np.mean(np.abs(a[:, 0]) <= 30):.1%}"
        )
    if len(poses) == 2:
        common = sorted(set(poses["dlib-hog"]) & set(poses["yunet"]))
        a = np.array([poses["dlib-hog"][k] for k in common])
        b = np.array([poses["yunet"][k] for k in common])
        corr = [np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(3)]
        print(
            f"  dlib vs yunet on {len(common)} faces: median |difference| "
            f"{np.round(np.nanmedian(np.abs(a - b), 0), 1)}, correlation "
            + " / ".join(f"{c:.2f}" for c in corr)
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", type=Path, default=Path("../shared/datasets/lfw-dev"))
    args = ap.parse_args()
    synthetic()
    if args.lfw.is_dir():
        lfw(args.lfw)


if __name__ == "__main__":
    main()
