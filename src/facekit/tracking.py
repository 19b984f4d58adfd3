"""Video samples -> identified faces, cheaply: a batched recogniser and an IoU tracker.

:func:`facekit.video.analyse_frames` detects faces in each sample (in worker processes for
long videos) and hands the detections, with each recogniser's aligned crops, to a
:class:`SampleResolver`, which runs in the calling process, in sample order:

* **Tracking.** A face *follows* a face of the previous sample when their boxes overlap
  (IoU >= :data:`TRACK_MIN_IOU`), the earlier face was named with confidence >=
  :data:`TRACK_MIN_CONFIDENCE`, their aligned crops look alike (normalised correlation of
  32x32 grey thumbnails >= :data:`TRACK_MIN_APPEARANCE` = 0.8: a cut to someone else framed the
  same way fails it), each earlier face is followed at most once, and the chain has not
  skipped :data:`TRACK_MAX_FOLLOW` embeddings in a row (then the face is embedded again, so
  a wrong chain cannot run on). A following face is not embedded: it takes over the earlier
  face's identification (person, name, confidence). Unknown and weakly named faces are
  always embedded (unknown tracks link by embedding).
* **Batching.** Faces that need an embedding are collected over up to
  :data:`BATCH_SAMPLES` samples (or :data:`BATCH_FACES` faces) and embedded and identified
  in one call per recogniser. A sample whose face may follow a face still waiting in the
  batch flushes the batch first, so every decision is taken on resolved faces.
* **Embeddings computed elsewhere.** The Ray engine's actors embed every face of their
  samples where they detected them (:func:`embed_samples`) and send the embeddings and the
  tracker's thumbnails instead of the aligned crops. The resolver then takes the same
  decisions and, for the faces it would have embedded, uses those embeddings instead of
  embedding the crops; the embeddings of followed faces are dropped. An embedding does not
  depend on the batch it was computed in (checked bit for bit on dlib and MobileFaceNet,
  ``tests/test_tracking.py``), so the result is the same.

Every decision depends only on the sequence of samples, never on timing, so a run with
worker processes gives exactly the same report as one without.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .identify import one_per_person
from .types import Embeddings, Faces

__all__ = [
    "SampleResolver",
    "Resolved",
    "detect_and_crop",
    "embed_samples",
    "thumbnails",
    "box_iou",
    "thumbnail",
    "TRACK_MIN_IOU",
    "TRACK_MIN_CONFIDENCE",
    "TRACK_MIN_APPEARANCE",
    "TRACK_MAX_FOLLOW",
    "BATCH_SAMPLES",
    "BATCH_FACES",
]

TRACK_MIN_IOU = 0.5
TRACK_MIN_CONFIDENCE = 90.0
TRACK_MIN_APPEARANCE = 0.8
TRACK_MAX_FOLLOW = 3
BATCH_SAMPLES = 8
BATCH_FACES = 16
THUMB = 32


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` intersection over union of ``[x1, y1, x2, y2]`` boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-length ``32 x 32`` grey thumbnail of an aligned face crop."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    small = small.ravel() - small.mean()
    n = float(np.linalg.norm(small))
    return small / n if n > 0 else small


def thumbnails(ensemble: Any, crops: dict[str, np.ndarray]) -> np.ndarray:
    """``(n, 32 * 32) float32``: the tracker's :func:`thumbnail` of each face, from the first
    recogniser's aligned crops (``(0, 1024)`` without recognisers or faces)."""
    first = ensemble.embedders[0].model_id if ensemble.embedders else None
    if first is None or not len(crops.get(first, ())):
        return np.zeros((0, THUMB * THUMB), np.float32)
    return np.stack([thumbnail(c) for c in crops[first]])


@dataclass
class _Face:
    box: np.ndarray
    thumb: np.ndarray | None
    match: Any = None  # FaceMatch once resolved
    follows: int | None = None  # index into the previous sample's faces
    chain: int = 0  # embeddings skipped in a row up to this face
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _Sample:
    item: Any
    faces: Faces
    crops: dict[str, np.ndarray] | None
    vectors: dict[str, np.ndarray] | None  # every face's embedding, computed elsewhere
    tracked: list[_Face]


@dataclass
class Resolved:
    """One sample, identified: what :meth:`facekit.video.VideoAggregator.add` needs.

    Attributes:
        item: whatever was passed to :meth:`SampleResolver.add` (the frame).
        faces: the detections.
        embeddings: one row per face (zeros for faces that followed a tracked face).
        matches: one :class:`~facekit.identify.FaceMatch` per face.
        followed: per face, ``True`` when its identification came from the tracker.
    """

    item: Any
    faces: Faces
    embeddings: Embeddings
    matches: list[Any]
    followed: list[bool]


class SampleResolver:
    """Identifies the faces of consecutive samples with batching and tracking (module docs).

    Args:
        ensemble: the pipeline's :class:`~facekit.embed.Ensemble` (``embedders``,
            ``fingerprints``).
        identifier: an :class:`~facekit.identify.Identifier` (``match(embeddings)``).
        emit: called with each :class:`Resolved` sample, in order.
        track: use the tracker (``False``: embed every face; batching still applies).

    Attributes:
        embedded: faces embedded so far; followed: faces identified by the tracker.
    """

    def __init__(
        self,
        ensemble: Any,
        identifier: Any,
        emit: Callable[[Resolved], None],
        *,
        track: bool = True,
    ):
        self.ensemble = ensemble
        self.identifier = identifier
        self.emit = emit
        self.track = track
        self.pending: list[_Sample] = []
        self.previous: list[_Face] = []  # faces of the last resolved-or-pending sample
        self.embedded = 0
        self.followed = 0

    # ------------------------------------------------------------------ public
    def add(
        self,
        item: Any,
        faces: Faces,
        crops: dict[str, np.ndarray] | None = None,
        *,
        vectors: dict[str, np.ndarray] | None = None,
        thumbs: np.ndarray | None = None,
    ) -> None:
        """Add the next sample: its detections and either each recogniser's aligned crops
        (embedded here when needed) or ``vectors``, every face's embedding per recogniser,
        computed where the sample was detected, with ``thumbs`` (:func:`thumbnails`)."""
        if vectors is None and crops is None:
            raise ValueError("a sample needs its aligned crops or its embeddings")
        if self.track and len(faces):
            rows = thumbs if thumbs is not None else thumbnails(self.ensemble, crops or {})
            thumb: list[np.ndarray | None] = list(rows) if len(rows) else [None] * len(faces)
        else:
            thumb = [None] * len(faces)
        tracked = [_Face(faces.xyxy[i].copy(), thumb[i]) for i in range(len(faces))]
        if self.track and len(faces) and self.previous:
            iou = box_iou(faces.xyxy, np.stack([f.box for f in self.previous]))
            if any(f.match is None for f in self.previous) and (iou >= TRACK_MIN_IOU).any():
                self.flush()  # decide on resolved faces only
            self._follow(tracked, iou)
        self.pending.append(_Sample(item, faces, crops, vectors, tracked))
        self.previous = tracked
        n_faces = sum(
            1 for s in self.pending for f in s.tracked if f.follows is None and f.match is None
        )
        if len(self.pending) >= BATCH_SAMPLES or n_faces >= BATCH_FACES:
            self.flush()

    def flush(self) -> None:
        """Embed and identify every waiting face, then emit the waiting samples in order."""
        if not self.pending:
            return
        todo = [
            (s, i)
            for s in self.pending
            for i, f in enumerate(s.tracked)
            if f.follows is None and f.match is None
        ]
        if todo:
            # Embeddings computed elsewhere are taken as they are; the others are embedded
            # here, in one call per recogniser.
            here = [k for k, (s, _) in enumerate(todo) if s.vectors is None]
            vectors = {}
            for e in self.ensemble.embedders:
                out = np.zeros((len(todo), e.dim), np.float32)
                for k, (s, i) in enumerate(todo):
                    if s.vectors is not None:
                        out[k] = s.vectors[e.model_id][i]
                if here:
                    batch = [_crop(*todo[k], e.model_id) for k in here]
                    out[here] = e.embed_crops(np.stack(batch))
                vectors[e.model_id] = out
            emb = Embeddings(vectors, dict(self.ensemble.fingerprints))
            matches = self.identifier.match(emb)
            for k, (s, i) in enumerate(todo):
                f = s.tracked[i]
                f.match = matches[k]
                f.vectors = {m: v[k] for m, v in vectors.items()}
            self.embedded += len(todo)
        samples, self.pending = self.pending, []
        for s in samples:
            self._emit(s)

    # ------------------------------------------------------------------ internals
    def _follow(self, tracked: list[_Face], iou: np.ndarray) -> None:
        prev = self.previous
        pairs = sorted(
            ((float(iou[i, j]), i, j) for i in range(len(tracked)) for j in range(len(prev))),
            key=lambda p: (-p[0], p[1], p[2]),
        )
        used_new: set[int] = set()
        used_old: set[int] = set()
        for value, i, j in pairs:
            if value < TRACK_MIN_IOU:
                break
            if i in used_new or j in used_old:
                continue
            old, new = prev[j], tracked[i]
            ident = getattr(old.match, "identity", None)
            if ident is None or float(ident.confidence) < TRACK_MIN_CONFIDENCE:
                continue
            if old.chain >= TRACK_MAX_FOLLOW:
                continue
            if old.thumb is None or new.thumb is None:
                continue
            if float(old.thumb @ new.thumb) < TRACK_MIN_APPEARANCE:
                continue
            used_new.add(i)
            used_old.add(j)
            new.follows = j
            new.match = old.match
            new.chain = old.chain + 1
            self.followed += 1

    def _emit(self, s: _Sample) -> None:
        n = len(s.faces)
        dims = {e.model_id: e.dim for e in self.ensemble.embedders}
        vectors = {m: np.zeros((n, d), np.float32) for m, d in dims.items()}
        for i, f in enumerate(s.tracked):
            for m, v in f.vectors.items():
                vectors[m][i] = v
        emb = Embeddings(vectors, dict(self.ensemble.fingerprints))
        self.emit(
            Resolved(
                s.item,
                s.faces,
                emb,
                one_per_person([f.match for f in s.tracked]),
                [f.follows is not None for f in s.tracked],
            )
        )


def _crop(s: _Sample, i: int, model: str) -> np.ndarray:
    assert s.crops is not None  # a sample without embeddings has its crops
    return s.crops[model][i]


def detect_and_crop(pipeline: Any, rgb: np.ndarray) -> tuple[Faces, dict[str, np.ndarray]]:
    """Detect faces in ``rgb`` and cut each recogniser's aligned crops (no embedding)."""
    from .detect import detect_image

    # video frames: HOG scans a grayscale copy (12-17% less detection CPU, docs/video.md)
    faces = detect_image(pipeline.detector, rgb, pipeline.config.max_side, gray=True)
    if pipeline.config.min_face and len(faces):
        faces = faces[faces.size >= pipeline.config.min_face]
    crops: dict[str, np.ndarray] = {}
    for e in pipeline.ensemble.embedders if pipeline.ensemble is not None else ():
        crops[e.model_id] = e.crops(rgb, faces) if len(faces) else np.zeros((0, 1, 1, 3), np.uint8)
    return faces, crops


def embed_samples(ensemble: Any, crops: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Embed every face of several samples (each recogniser's aligned crops per sample, as
    :func:`detect_and_crop` cuts them), one :meth:`~facekit.embed.Embedder.embed_crops` call
    per recogniser for all of them, with the recogniser's own flip averaging: the embeddings
    a :class:`SampleResolver` would compute from the same crops. Returns, per sample, model
    id -> ``(n, dim) float32``."""
    sizes = [len(next(iter(c.values()))) if c else 0 for c in crops]
    bounds = np.cumsum([0, *sizes])
    out: list[dict[str, np.ndarray]] = [{} for _ in crops]
    for e in ensemble.embedders:
        parts = [c[e.model_id] for c, n in zip(crops, sizes) if n]
        emb = e.embed_crops(np.concatenate(parts)) if parts else np.zeros((0, e.dim), np.float32)
        for k in range(len(crops)):
            out[k][e.model_id] = np.ascontiguousarray(emb[bounds[k] : bounds[k + 1]], np.float32)
    return out


def supports(pipeline: Any) -> bool:
    """``True`` for a real :class:`~facekit.pipeline.Pipeline` with recognisers (test doubles
    and detection-only pipelines take the plain per-sample path)."""
    return (
        getattr(pipeline, "detector", None) is not None
        and getattr(pipeline, "ensemble", None) is not None
        and hasattr(pipeline, "config")
    )
