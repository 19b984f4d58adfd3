"""Typed results that flow through the pipeline.

decode -> detect (:class:`Faces`) -> align -> embed (:class:`Embeddings`) -> index/search
(:class:`Match`) -> aggregate -> render.

Batch records hold parallel arrays (one row per face), in the manner of supervision's
``Detections``: they support ``len()``, boolean-mask / index-array ``[]``, ``empty()`` and
``merge()``, and check their shapes on construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Faces", "Embeddings", "ImageResult", "BBox"]


def _check(name: str, arr: np.ndarray, shape_tail: tuple[int, ...], n: int) -> None:
    if arr.ndim != 1 + len(shape_tail) or arr.shape[0] != n or arr.shape[1:] != shape_tail:
        raise ValueError(
            f"{name} must have shape ({n}, {', '.join(map(str, shape_tail))}), got {arr.shape}"
        )


@dataclass
class Faces:
    """Detected faces in one image, as parallel arrays.

    Attributes:
        xyxy: ``(n, 4) float32`` boxes ``[x1, y1, x2, y2]`` in original image pixels.
        confidence: ``(n,) float32`` detector score (dlib HOG: SVM margin; ONNX detectors: 0-1).
        landmarks: ``(n, 5, 2) float32`` the standard five points in image pixels, in the
            order left eye, right eye, nose tip, left mouth corner, right mouth corner
            ("left" = smaller x in an upright face, as in the ArcFace template).
        data: extra per-face columns, each an array whose first dimension is ``n``
            (e.g. ``"dlib_shape5"``: ``(n, 5, 2)`` dlib's own 5-point landmarks).
        metadata: per-batch facts (source path, image size, detector name).
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    landmarks: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(-1, 5, 2)
        _check("confidence", self.confidence, (), n)
        _check("landmarks", self.landmarks, (5, 2), n)
        for key, value in self.data.items():
            if len(value) != n:
                raise ValueError(f"data[{key!r}] has {len(value)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Faces:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Faces(
            self.xyxy[index],
            self.confidence[index],
            self.landmarks[index],
            {k: v[index] for k, v in self.data.items()},
            dict(self.metadata),
        )

    @classmethod
    def empty(cls, **metadata: Any) -> Faces:
        return cls(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2)), {}, dict(metadata))

    @classmethod
    def merge(cls, parts: Sequence[Faces]) -> Faces:
        if not parts:
            return cls.empty()
        keys = set.intersection(*(set(p.data) for p in parts))
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.confidence for p in parts]),
            np.concatenate([p.landmarks for p in parts]),
            {k: np.concatenate([p.data[k] for p in parts]) for k in sorted(keys)},
            dict(parts[0].metadata),
        )

    @property
    def xywh(self) -> np.ndarray:
        """``(n, 4) float32`` boxes as ``[x, y, width, height]``."""
        out = self.xyxy.copy()
        out[:, 2:] -= out[:, :2]
        return out

    @property
    def size(self) -> np.ndarray:
        """``(n,) float32`` face size in pixels: the shorter side of the box."""
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return wh.min(axis=1) if len(wh) else np.zeros(0, np.float32)

    def scaled(self, factor: float) -> Faces:
        """Coordinates multiplied by ``factor`` (maps a resized image's boxes back)."""
        data = {
            k: (v * factor if k.endswith("_px") or k == "dlib_shape5" else v)
            for k, v in self.data.items()
        }
        return Faces(
            self.xyxy * factor, self.confidence, self.landmarks * factor, data, dict(self.metadata)
        )


@dataclass
class Embeddings:
    """Face embeddings from one or more models, parallel to a :class:`Faces`.

    Attributes:
        vectors: model id -> ``(n, dim) float32`` L2-normalised embeddings.
        fingerprints: model id -> short SHA-256 fingerprint of the model's weight files,
            so embeddings from different weights are never mixed.
    """

    vectors: dict[str, np.ndarray]
    fingerprints: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {len(v) for v in self.vectors.values()}
        if len(lengths) > 1:
            raise ValueError(f"models disagree on the number of faces: {lengths}")
        for key, v in self.vectors.items():
            arr = np.ascontiguousarray(v, dtype=np.float32)
            self.vectors[key] = arr if arr.ndim == 2 else arr.reshape(len(arr), -1)

    def __len__(self) -> int:
        return len(next(iter(self.vectors.values()))) if self.vectors else 0

    def __getitem__(self, index: Any) -> Embeddings:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Embeddings({k: v[index] for k, v in self.vectors.items()}, dict(self.fingerprints))

    @property
    def models(self) -> list[str]:
        return list(self.vectors)

    @classmethod
    def empty(cls, dims: dict[str, int], fingerprints: dict[str, str] | None = None) -> Embeddings:
        return cls(
            {k: np.zeros((0, d), np.float32) for k, d in dims.items()}, dict(fingerprints or {})
        )

    @classmethod
    def merge(cls, parts: Sequence[Embeddings]) -> Embeddings:
        parts = [p for p in parts if p.vectors]
        if not parts:
            return cls({})
        models = parts[0].models
        return cls(
            {m: np.concatenate([p.vectors[m] for p in parts]) for m in models},
            dict(parts[0].fingerprints),
        )


BBox = tuple[float, float, float, float]


@dataclass
class ImageResult:
    """Everything the pipeline learnt about one input image.

    Attributes:
        source: the path as given by the user.
        width, height: size of the (orientation-corrected) image in pixels.
        faces: the detected faces (boxes in original pixels).
        embeddings: per-model embeddings parallel to ``faces`` (empty when not embedded).
        digest: SHA-256 of the file's bytes ("" when not computed).
        error: one-line description when the file could not be processed, else ``None``.
        time: position in seconds for video frames, else ``None``.
    """

    source: str
    width: int = 0
    height: int = 0
    faces: Faces = field(default_factory=Faces.empty)
    embeddings: Embeddings = field(default_factory=lambda: Embeddings({}))
    digest: str = ""
    error: str | None = None
    time: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
