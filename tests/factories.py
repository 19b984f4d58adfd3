"""Deterministic fake records for unit tests of types and rendering (never for the real path)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facekit.types import Embeddings, Faces, ImageResult


def make_faces(n: int, *, seed: int = 0, source: str = "photo.jpg") -> Faces:
    """``n`` faces with boxes ``[10i, 20i, 10i+50+i, 20i+60+i]``, scores ``0.9 - 0.1i`` and landmarks inside."""
    rng = np.random.default_rng(seed)
    i = np.arange(n, dtype=np.float32)
    xyxy = (
        np.stack([10 * i, 20 * i, 10 * i + 50 + i, 20 * i + 60 + i], 1) if n else np.zeros((0, 4))
    )
    lm = xyxy[:, None, :2] + rng.uniform(5, 45, size=(n, 5, 2)) if n else np.zeros((0, 5, 2))
    return Faces(
        xyxy, 0.9 - 0.1 * i, lm, {"dlib_shape5": np.asarray(lm, np.float32) + 1}, {"source": source}
    )


def make_embeddings(
    n: int, models: Sequence[str] | dict[str, int] = ("dlib",), *, seed: int = 0
) -> Embeddings:
    """``n`` unit-norm float32 embeddings per model (dim 128 unless ``models`` maps name -> dim)."""
    dims = dict(models) if isinstance(models, dict) else {m: 128 for m in models}
    rng = np.random.default_rng(seed)
    vecs = {}
    for m, d in dims.items():
        v = rng.normal(size=(n, d)).astype(np.float32)
        vecs[m] = v / np.linalg.norm(v, axis=1, keepdims=True) if n else v
    return Embeddings(vecs, {m: f"{m[:4]}0123456789ab"[:16] for m in dims})


def make_result(
    n: int, models: Sequence[str] = ("dlib",), *, source: str = "photo.jpg", seed: int = 0
) -> ImageResult:
    """An :class:`ImageResult` of a 640x480 photo with ``n`` fake faces and embeddings."""
    return ImageResult(
        source,
        640,
        480,
        make_faces(n, seed=seed, source=source),
        make_embeddings(n, models, seed=seed),
        digest="ab" * 32,
    )
