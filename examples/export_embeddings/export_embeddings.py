"""Embed every face under PHOTOS and write boxes + embeddings to OUT.npz."""

from __future__ import annotations

import sys

import numpy as np

from facekit.imageio import iter_image_paths
from facekit.pipeline import PipelineConfig, run_paths


def main(photos: str, out: str, models: str = "dlib") -> None:
    config = PipelineConfig(models=tuple(models.split(",")))
    sources, boxes, vectors = [], [], {m: [] for m in config.models}
    for result in run_paths(config, list(iter_image_paths([photos]))):  # both cores, input order
        if result.error:
            print(result.error, file=sys.stderr)
            continue
        for i in range(len(result.faces)):
            sources.append(result.source)
            boxes.append(result.faces.xywh[i])
            for m in config.models:
                vectors[m].append(result.embeddings.vectors[m][i])
    np.savez(out, source=np.array(sources), box=np.array(boxes).reshape(-1, 4),
             **{f"emb_{m}": np.array(v).reshape(len(sources), -1) for m, v in vectors.items()})
    print(f"{len(sources)} faces from {len(set(sources))} photos -> {out}")


if __name__ == "__main__":  # needed: worker processes re-import this module
    main(*sys.argv[1:4])
