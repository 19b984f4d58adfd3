"""Measure the default calibration constants and the effect of mirror averaging.

On ../shared/datasets/lfw-dev (every 2nd photo: 395 photos of 79 people, the most central face
of each), for each recogniser with mirror averaging off and on: the mean and standard deviation
of cosine distances of different-person pairs (the defaults in src/facekit/calibration.py),
the same for same-person pairs, and the ROC AUC of same/different pairs.

Usage:
    FACEKIT_MODEL_MIRROR=../shared/models python benchmarks/calibrate_defaults.py [--models dlib,mobilefacenet]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="dlib,mobilefacenet")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--step", type=int, default=2)
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from facekit.detect import detect_image, get_detector
    from facekit.embed import get_embedder
    from facekit.imageio import load_image

    lfw = Path(args.shared) / "datasets" / "lfw-dev"
    files = sorted(lfw.glob("*/*.jpg"))[:: args.step]
    det = get_detector("dlib-hog")
    crops_src = []
    labels = []
    for f in files:
        img = load_image(f)
        faces = detect_image(det, img.rgb)
        if not len(faces):
            continue
        centre = np.array([img.width / 2, img.height / 2])
        i = int(
            np.argmin(np.linalg.norm((faces.xyxy[:, :2] + faces.xyxy[:, 2:]) / 2 - centre, axis=1))
        )
        crops_src.append((img.rgb, faces[i]))
        labels.append(f.parent.name)
    labels = np.array(labels)
    same = labels[:, None] == labels[None, :]
    iu = np.triu_indices(len(labels), 1)
    y = same[iu]
    print(f"{len(labels)} faces of {len(set(labels))} people from {len(files)} photos")
    print("| model | mirror | impostor mean | impostor sd | genuine mean | AUC | ms/face |")
    print("|---|---|---|---|---|---|---|")
    for m in args.models.split(","):
        for flip in (False, True):
            emb = get_embedder(m, flip=flip)
            t = time.perf_counter()
            v = np.concatenate([emb.embed(rgb, face) for rgb, face in crops_src])
            ms = 1000 * (time.perf_counter() - t) / len(v)
            d = (1 - v @ v.T)[iu]
            print(
                f"| {m} | {'on' if flip else 'off'} | {d[~y].mean():.3f} | {d[~y].std():.3f} | {d[y].mean():.3f} | "
                f"{roc_auc_score(y, -d):.4f} | {ms:.0f} |"
            )


if __name__ == "__main__":
    main()
