"""Who appears in a video, and when.

:func:`analyse_video` streams sampled frames (:mod:`facekit.decode`) through the photo
pipeline (detect -> align -> embed) and the identifier, and :class:`VideoAggregator` folds the
per-face answers into one :class:`PersonTrack` per person:

* **Segments.** A person's sampled detections are joined into one segment when they are in
  consecutive samples, or when the gap between two detections is at most ``2 x step``
  (``step`` = the median spacing of the samples actually used, so keyframe sampling with its
  irregular times is handled); a longer gap splits. A segment runs from the first to the last
  sample the person was seen in (a lone sighting is ``[t, t]``).
* **Unknown faces** (``identity=None``) are linked into anonymous tracks ``unknown-1``, ...:
  a face joins the track whose representative embeddings give the highest fused evidence
  (:meth:`~facekit.calibration.Calibration.pairwise_evidence`) at or above the cut that
  ``facekit cluster`` uses (:func:`facekit.cluster.cluster_threshold`), else starts a new
  track. Two faces of the same sample never join the same track (cannot-link): within a
  sample, (face, track) pairs are taken by decreasing evidence, each face and track once. A track keeps the running mean of its
  embeddings plus up to :data:`MAX_REPRESENTATIVES` sightings. Tracks seen in fewer than
  ``min_unknown_frames`` samples (default 2) are dropped from ``people``: a face seen once is
  too often a blurred or half-turned known person or a false detection to be worth enrolling.
  Their rows stay in ``detections``.
* **Ranking.** Known people first, by evidence ``sum of per-sample confidence / 100`` (i.e.
  frames x mean confidence: someone seen often and clearly ranks above a single confident
  glimpse), then unknown tracks by number of frames.
* **Crops.** Only the best crop per person is kept in memory (``(112, 112, 3) uint8``): the
  sample with the highest confidence (unknown tracks: the largest detected face).

The library never prints; progress is reported through ``on_sample``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .decode import DecodeStats, Frame, iter_frames, iter_sprite
from .identify import one_per_person

log = logging.getLogger(__name__)

__all__ = [
    "VideoOptions",
    "PersonTrack",
    "VideoReport",
    "VideoAggregator",
    "analyse_video",
    "analyse_frames",
    "analyse_detected",
    "detect_range",
    "DetectedSample",
    "PEOPLE_COLUMNS",
    "DETECTION_COLUMNS",
    "MAX_REPRESENTATIVES",
]

#: Samples a short clip gets at least (``--interval`` too long for it): see VideoOptions.
MIN_SAMPLES = 8
#: Sightings an unknown track keeps for matching (besides its running mean).
MAX_REPRESENTATIVES = 8
CROP_SIZE = 112

PEOPLE_COLUMNS = [
    "source",
    "person",
    "name",
    "segments",
    "frames",
    "confidence",
    "mean_confidence",
    "first_seen",
    "last_seen",
    "error",
]
DETECTION_COLUMNS = [
    "source",
    "time",
    "frame",
    "face",
    "x",
    "y",
    "w",
    "h",
    "det_score",
    "person",
    "name",
    "confidence",
    "track",
]


@dataclass(frozen=True)
class VideoOptions:
    """How to sample and report a video.

    Attributes:
        interval: seconds between samples (ignored when ``frames`` is set).
        frames: number of samples spread over 5%-95% of the runtime.
        min_samples: with ``interval``, a clip too short for this many samples at that
            interval gets this many evenly spaced ones instead (exact times; see
            :func:`facekit.decode.sample_times`). ``None`` or 1: no minimum.
        start, end: part of the file to look at (seconds).
        sampling: ``"auto"``, ``"exact"`` or ``"keyframe"`` (see :mod:`facekit.decode`).
        min_unknown_frames: unknown tracks seen in fewer samples are dropped from ``people``.
        keep_detections: keep every per-face row in :attr:`VideoReport.detections`.
        crops: keep the best face crop per person.
        track: let the IoU tracker of :mod:`facekit.tracking` skip re-embedding faces that
            continue a confidently named face of the previous sample (``False``: embed all).
    """

    interval: float | None = 5.0
    frames: int | None = None
    min_samples: int | None = MIN_SAMPLES
    start: float | None = None
    end: float | None = None
    sampling: str = "auto"
    min_unknown_frames: int = 2
    keep_detections: bool = True
    crops: bool = True
    track: bool = True


@dataclass
class PersonTrack:
    """One person (or anonymous ``unknown-N`` track) in one video.

    Attributes:
        person: person id, or ``unknown-N``.
        name: display name (``None`` for unknown tracks or when the database has none).
        known: ``True`` for a database person.
        segments: ``[(start, end), ...]`` seconds.
        times: times of the samples the person was seen in.
        confidences: per-sample confidence 0-100 (best face of that sample; unknown: 0).
        crop: ``(112, 112, 3) uint8`` best face crop, or ``None``.
        crop_time: time of the crop's sample.
    """

    person: str
    name: str | None
    known: bool
    segments: list[tuple[float, float]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    crop: np.ndarray | None = field(default=None, repr=False)
    crop_time: float | None = None

    @property
    def frames(self) -> int:
        return len(self.times)

    @property
    def confidence(self) -> float:
        """Best per-sample confidence (0-100)."""
        return max(self.confidences) if self.confidences else 0.0

    @property
    def mean_confidence(self) -> float:
        return float(np.mean(self.confidences)) if self.confidences else 0.0

    @property
    def evidence(self) -> float:
        """Ranking score: frames x mean confidence / 100."""
        return float(sum(self.confidences)) / 100.0

    @property
    def first_seen(self) -> float:
        return self.times[0] if self.times else math.nan

    @property
    def last_seen(self) -> float:
        return self.times[-1] if self.times else math.nan

    def to_record(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "name": self.name,
            "segments": [[round(a, 3), round(b, 3)] for a, b in self.segments],
            "frames": self.frames,
            "confidence": round(self.confidence, 2) if self.known else None,
            "mean_confidence": round(self.mean_confidence, 2) if self.known else None,
            "first_seen": round(self.first_seen, 3),
            "last_seen": round(self.last_seen, 3),
        }


@dataclass
class VideoReport:
    """Everything :func:`analyse_video` found in one video.

    Attributes:
        source: the video path (or the sprite path).
        duration: seconds (sprite: end of the last cue).
        samples: number of sampled frames analysed.
        sampling_used: ``"exact"``, ``"keyframe"``, ``"all"`` or ``"sprite"``.
        frames_decoded: frames the decoder produced (the decoding cost).
        sample_times: the timestamps actually analysed.
        step: median seconds between samples (what segment joining used).
        people: ranked :class:`PersonTrack` list.
        detections: one dict per sampled face (see :data:`DETECTION_COLUMNS`).
        warning: set when decoding stopped early on damaged data.
        timings: seconds spent decoding and in detect+embed+identify.
        counters: ``embedded`` faces and faces ``followed`` by the tracker (not embedded).
    """

    source: str
    duration: float
    samples: int
    sampling_used: str
    frames_decoded: int
    sample_times: list[float] = field(default_factory=list)
    step: float = 0.0
    people: list[PersonTrack] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)
    warning: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def known(self) -> list[PersonTrack]:
        return [p for p in self.people if p.known]

    def to_record(self, crops: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON contract: ``source``, ``duration``, ``samples``, ``people`` (plus extras).

        Args:
            crops: person id -> base64 JPEG to put inline as ``crop`` (``--embed-crops``).
        """
        people = []
        for p in self.people:
            rec = p.to_record()
            if crops and p.person in crops:
                rec["crop"] = crops[p.person]
            people.append(rec)
        rec_all: dict[str, Any] = {
            "source": self.source,
            "duration": round(self.duration, 3),
            "samples": self.samples,
            "sampling": self.sampling_used,
            "frames_decoded": self.frames_decoded,
            "sample_times": [round(t, 3) for t in self.sample_times],
            "people": people,
        }
        if self.warning:
            rec_all["warning"] = self.warning
        return rec_all

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per person for tables and CSV (``segments`` as ``a-b;c-d``)."""
        out = []
        for p in self.people:
            r = p.to_record()
            r["segments"] = "; ".join(f"{a:.1f}-{b:.1f}" for a, b in p.segments)
            out.append({"source": self.source, **r})
        return out


# --------------------------------------------------------------------------- aggregation
def unknown_link_threshold(calibration: Any) -> float:
    """The evidence cut for joining unknown faces into one track: the one ``cluster`` uses."""
    from .cluster import cluster_threshold

    return float(cluster_threshold(calibration=calibration))


@dataclass
class _Unknown:
    label: str
    mean: dict[str, np.ndarray]
    reps: dict[str, list[np.ndarray]]
    n: int = 0
    best_size: float = -1.0


def _segments(
    times: Sequence[float], sample_times: Sequence[float], step: float
) -> list[tuple[float, float]]:
    """Join sighting times into segments (see the module docstring)."""
    if not times:
        return []
    order = {t: i for i, t in enumerate(sample_times)}
    limit = 2.0 * step + 1e-6
    segs = [[times[0], times[0]]]
    for prev, t in zip(times, times[1:], strict=False):
        consecutive = prev in order and t in order and order[t] - order[prev] == 1
        if consecutive or (t - prev) <= limit:
            segs[-1][1] = t
        else:
            segs.append([t, t])
    return [(float(a), float(b)) for a, b in segs]


class VideoAggregator:
    """Folds per-sample faces and matches into per-person tracks.

    Args:
        calibration: the database's :class:`~facekit.calibration.Calibration` (links unknowns).
        options: :class:`VideoOptions`.
        source: written into detection rows.

    Example:
        >>> agg = VideoAggregator(db.calibration)
        >>> agg.add(frame.time, frame.rgb, result.faces, result.embeddings, matches)
        >>> people = agg.finish()
    """

    def __init__(
        self,
        calibration: Any,
        options: VideoOptions | None = None,
        source: str = "",
        link_threshold: float | None = None,
    ):
        self.cal = calibration
        #: Fused-evidence cut for linking an unknown face to a track: the cut ``facekit
        #: cluster`` uses (:func:`facekit.cluster.cluster_threshold`) unless given.
        self.link_threshold = (
            unknown_link_threshold(calibration) if link_threshold is None else link_threshold
        )
        self.options = options or VideoOptions()
        self.source = source
        self.sample_times: list[float] = []
        self.tracks: dict[str, PersonTrack] = {}
        self.unknowns: list[_Unknown] = []
        self.detections: list[dict[str, Any]] = []

    def add(
        self,
        time: float,
        rgb: np.ndarray | None,
        faces: Any,
        embeddings: Any,
        matches: Sequence[Any],
        frame_index: int | None = None,
        face_crops: np.ndarray | None = None,
    ) -> None:
        """Add one sample: its faces (:class:`~facekit.types.Faces`), embeddings and matches (one per face).

        ``face_crops`` (``(n, CROP_SIZE, CROP_SIZE, 3) uint8``, one per face, cut where the frame
        was decoded) stand in for ``rgb`` when the frame itself is not here.
        """
        self.sample_times.append(float(time))
        best: dict[
            str, tuple[float, int, bool, str | None]
        ] = {}  # label -> (score, face, known, name)
        sizes = [float(faces.size[i]) for i in range(len(matches))] if len(faces) else []
        unknown_faces = [i for i, m in enumerate(matches) if getattr(m, "identity", None) is None]
        unknown_labels = self._link_unknowns(embeddings, unknown_faces)
        for i, m in enumerate(matches):
            ident = getattr(m, "identity", None)
            if ident is not None:
                label, name, known, score = ident.person, ident.name, True, float(ident.confidence)
            else:
                label = unknown_labels[i]
                name, known, score = None, False, sizes[i]
            if label not in best or score > best[label][0]:
                best[label] = (score, i, known, name)
            if self.options.keep_detections:
                x, y, w, h = (float(v) for v in faces.xywh[i])
                self.detections.append(
                    {
                        "source": self.source,
                        "time": round(float(time), 3),
                        "frame": frame_index,
                        "face": i,
                        "x": round(x, 1),
                        "y": round(y, 1),
                        "w": round(w, 1),
                        "h": round(h, 1),
                        "det_score": round(float(faces.confidence[i]), 4),
                        "person": ident.person if ident else None,
                        "name": ident.name if ident else None,
                        "confidence": round(float(ident.confidence), 2) if ident else None,
                        "track": label,
                    }
                )
        for label, (score, i, known, name) in best.items():
            tr = self.tracks.get(label)
            if tr is None:
                tr = self.tracks[label] = PersonTrack(label, name, known)
            tr.times.append(float(time))
            tr.confidences.append(score if known else 0.0)
            better = tr.crop is None or (
                score > max(tr.confidences[:-1], default=-1.0)
                if known
                else score > self._unknown(label).best_size
            )
            if not known:
                self._unknown(label).best_size = max(self._unknown(label).best_size, score)
            if self.options.crops and better and face_crops is not None:
                tr.crop = face_crops[i]
                tr.crop_time = float(time)
            elif self.options.crops and rgb is not None and better:
                tr.crop = track_crop(rgb, faces, i)
                tr.crop_time = float(time)

    def _unknown(self, label: str) -> _Unknown:
        return next(u for u in self.unknowns if u.label == label)

    def _new_unknown(self, face: dict[str, np.ndarray]) -> str:
        label = f"unknown-{len(self.unknowns) + 1}"
        self.unknowns.append(
            _Unknown(
                label,
                {m: v[0].astype(np.float64) for m, v in face.items()},
                {m: [v[0].copy()] for m, v in face.items()},
                1,
            )
        )
        return label

    def _link_unknowns(self, embeddings: Any, idx: Sequence[int]) -> dict[int, str]:
        """Labels for the unknown faces ``idx`` of one sample (see the module docstring).

        Faces of one sample never share a track (cannot-link): pairs (face, track) are taken
        by decreasing evidence, each face and each track at most once, while the evidence is
        at or above :attr:`link_threshold`; the faces left over start new tracks.
        """
        if not idx:
            return {}
        vecs = getattr(embeddings, "vectors", {}) or {}
        models = [m for m in self.cal.models if m in vecs]
        if not models:
            return {i: self._new_unknown({}) for i in idx}
        faces = {m: np.asarray(vecs[m])[list(idx)] for m in models}
        tracks = [u for u in self.unknowns if u.mean]
        out: dict[int, str] = {}
        if tracks:
            ev = np.full((len(idx), len(tracks)), -np.inf)
            for k, u in enumerate(tracks):
                cand = {
                    m: np.vstack([_unit(u.mean[m])[None, :], *[r[None, :] for r in u.reps[m]]])
                    for m in models
                }
                ev[:, k] = np.max(self.cal.pairwise_evidence(faces, cand), axis=1)
            cut = self.link_threshold
            # Stable order: by evidence, ties by face then track position.
            order = sorted(
                ((float(ev[a, k]), a, k) for a in range(len(idx)) for k in range(len(tracks))),
                key=lambda e: (-e[0], e[1], e[2]),
            )
            used_faces: set[int] = set()
            used_tracks: set[int] = set()
            for value, a, k in order:
                if value < cut:
                    break
                if a in used_faces or k in used_tracks:
                    continue
                used_faces.add(a)
                used_tracks.add(k)
                u = tracks[k]
                u.n += 1
                for m in models:
                    vec = faces[m][a]
                    u.mean[m] = u.mean[m] + vec
                    reps = u.reps[m]
                    if len(reps) < MAX_REPRESENTATIVES:
                        reps.append(vec.copy())
                    else:  # keep a spread over time: replace the oldest but the first
                        reps.pop(1)
                        reps.append(vec.copy())
                out[idx[a]] = u.label
        for a, i in enumerate(idx):
            if i not in out:
                out[i] = self._new_unknown({m: faces[m][a : a + 1] for m in models})
        return out

    @property
    def step(self) -> float:
        t = np.asarray(self.sample_times, float)
        if len(t) < 2:
            return self.options.interval or 1.0
        d = np.diff(t)
        d = d[d > 0]
        return float(np.median(d)) if len(d) else (self.options.interval or 1.0)

    def finish(self) -> list[PersonTrack]:
        """Segments, the unknown filter and the ranking (module docstring); returns the people."""
        step = self.step
        known, unknown = [], []
        for tr in self.tracks.values():
            tr.segments = _segments(tr.times, self.sample_times, step)
            if tr.known:
                known.append(tr)
            elif tr.frames >= self.options.min_unknown_frames:
                unknown.append(tr)
        known.sort(key=lambda p: (-p.evidence, p.first_seen))
        unknown.sort(key=lambda p: (-p.frames, p.first_seen))
        # Renumber kept unknown tracks 1..n in order of appearance for stable labels.
        relabel = {
            p.person: f"unknown-{k + 1}"
            for k, p in enumerate(sorted(unknown, key=lambda p: p.first_seen))
        }
        for p in unknown:
            p.person = relabel[p.person]
        for row in self.detections:
            if row["person"] is None:
                row["track"] = relabel.get(row["track"])
        return known + unknown


def track_crop(rgb: np.ndarray, faces: Any, i: int) -> np.ndarray:
    """Face ``i`` of ``faces`` cut from ``rgb`` as a report crop (``CROP_SIZE`` square, uint8)."""
    from .align import box_crops

    return box_crops(rgb, faces.xyxy[i : i + 1], size=CROP_SIZE)[0]


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


# --------------------------------------------------------------------------- running
def _analyse(pipeline: Any, rgb: np.ndarray) -> tuple[Any, Any]:
    """Detect + embed one frame: ``(Faces, Embeddings)``.

    Objects without ``analyse`` (test doubles) go through ``process_rgb``.
    """
    if hasattr(pipeline, "analyse"):
        return pipeline.analyse(rgb)
    result = pipeline.process_rgb(rgb, "", None)
    return result.faces, result.embeddings


def _analyse_in_worker(rgb: np.ndarray) -> tuple[Any, Any]:
    from . import pipeline as _pipeline_module

    assert _pipeline_module._worker_pipeline is not None
    return _pipeline_module._worker_pipeline.analyse(rgb)


def _detect_in_worker(rgb: np.ndarray) -> tuple[Any, Any]:
    from . import pipeline as _pipeline_module
    from .tracking import detect_and_crop

    assert _pipeline_module._worker_pipeline is not None
    return detect_and_crop(_pipeline_module._worker_pipeline, rgb)


#: Samples analysed in this process before worker processes are started: short clips finish
#: before a pool (about a second to start and load the models) would pay off. A video whose
#: plan has at least twice as many samples starts the pool at once.
POOL_AFTER_SAMPLES = 24


def analyse_frames(
    frames: Iterable[Frame],
    pipeline: Any,
    identifier: Any,
    calibration: Any,
    options: VideoOptions,
    *,
    source: str,
    on_sample: Callable[[Frame], None] | None = None,
    timings: dict[str, float] | None = None,
    planned: Callable[[], int | None] | None = None,
    counters: dict[str, int] | None = None,
    engine: Any = None,
) -> tuple[list[PersonTrack], VideoAggregator]:
    """Detect, embed and identify the faces of each frame and aggregate them.

    Detection (and cutting the aligned crops) runs per frame, in worker processes for long
    videos; embedding and identification run here, batched over samples, with the IoU
    tracker of :mod:`facekit.tracking` (``options.track``). Frames are dropped after use.

    Args:
        planned: returns the number of samples expected (``None``: unknown), asked after the
            first frame to decide whether to start the worker pool at once.
        counters: filled with ``embedded`` / ``followed`` face counts.
        engine: a Ray :class:`~facekit.engine.Engine`: detection runs on its actors from the
            first sample (decoding, embedding and aggregation stay here, so the report is
            the same as a local run's). :func:`analyse_video` uses this only for plans that
            cannot be split into ranges of sample times (every frame, unknown duration);
            otherwise the actors decode too (:func:`analyse_detected`).
    """
    import time as _time
    from collections import deque

    from .pipeline import PipelineConfig, default_workers
    from .tracking import Resolved, SampleResolver, detect_and_crop, supports

    agg = VideoAggregator(calibration, options, source)
    timings = timings if timings is not None else {}
    timings.setdefault("decode", 0.0)
    timings.setdefault("analyse", 0.0)
    it: Iterator[Frame] = iter(frames)
    config = getattr(pipeline, "config", None)
    workers = default_workers() if isinstance(config, PipelineConfig) else 1
    batched = supports(pipeline)
    # Long videos: decoding stays here while worker processes (one per core, models loaded
    # once each) detect; at most 2 x workers frames are in flight and results are folded in
    # sample order. (Threads are not an option: dlib crashed when two threads detected at once.)
    pool: Any = None
    pending: deque[tuple[Frame, Any]] = deque()
    n = 0

    def emit(r: Resolved) -> None:
        frame = r.item
        agg.add(frame.time, frame.rgb, r.faces, r.embeddings, r.matches, frame.index)
        if on_sample is not None:
            on_sample(frame)

    resolver = (
        SampleResolver(pipeline.ensemble, identifier, emit, track=options.track)
        if batched
        else None
    )

    def fold(frame: Frame, faces: Any, extra: Any) -> None:
        if resolver is not None:
            resolver.add(frame, faces, extra)
            return
        matches = one_per_person(identifier.match(extra)) if len(faces) else []
        emit(Resolved(frame, faces, extra, matches, [False] * len(matches)))

    def work(rgb: np.ndarray) -> tuple[Any, Any]:
        return detect_and_crop(pipeline, rgb) if batched else _analyse(pipeline, rgb)

    remote = _detect_in_worker if batched else _analyse_in_worker
    try:
        while True:
            t0 = _time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                timings["decode"] += _time.perf_counter() - t0
                break
            t1 = _time.perf_counter()
            timings["decode"] += t1 - t0
            n += 1
            long_plan = (
                n == 1 and planned is not None and (planned() or 0) >= 2 * POOL_AFTER_SAMPLES
            )
            if pool is None and engine is not None and engine.name == "ray":
                from .ray_engine import frame_pool

                assert isinstance(config, PipelineConfig)
                pool, workers = frame_pool(engine, config)
            if pool is None and workers > 1 and (n > POOL_AFTER_SAMPLES or long_plan):
                from .pipeline import worker_pool

                assert isinstance(config, PipelineConfig)
                pool = worker_pool(config, workers)
            if pool is None:
                fold(frame, *work(frame.rgb))
            else:
                pending.append((frame, pool.submit(remote, frame.rgb)))
                while len(pending) >= 2 * workers:
                    done, fut = pending.popleft()
                    fold(done, *fut.result())
            timings["analyse"] += _time.perf_counter() - t1
            del frame
        t1 = _time.perf_counter()
        while pending:
            done, fut = pending.popleft()
            fold(done, *fut.result())
        if resolver is not None:
            resolver.flush()
        timings["analyse"] += _time.perf_counter() - t1
    except BaseException:
        if pool is not None:
            from .pipeline import stop_pool

            stop_pool(pool)
            pool = None
        raise
    finally:
        if pool is not None:  # normal end: nothing is left to run, so this is quick
            pool.shutdown(wait=True)
    if counters is not None and resolver is not None:
        counters.update(embedded=resolver.embedded, followed=resolver.followed)
    return agg.finish(), agg


@dataclass
class DetectedSample:
    """One video sample decoded, detected and embedded where the file is (a Ray actor): what
    :func:`analyse_detected` needs of it, without the frame's pixels.

    Attributes:
        frame: the sample's :class:`~facekit.decode.Frame` with an empty ``rgb``.
        faces: its detections (:class:`~facekit.types.Faces`).
        vectors: recogniser -> ``(n, dim) float32`` embeddings of every face (the same
            alignment, model and flip averaging as a local run; :func:`facekit.tracking.embed_samples`).
        thumbs: ``(n, 1024) float32`` tracker thumbnails (:func:`facekit.tracking.thumbnails`).
        face_crops: ``(n, CROP_SIZE, CROP_SIZE, 3) uint8`` report crops, or ``None``.
    """

    frame: Frame
    faces: Any
    vectors: dict[str, np.ndarray]
    thumbs: np.ndarray
    face_crops: np.ndarray | None = field(default=None, repr=False)


def detect_range(
    pipeline: Any,
    path: str,
    sampling: dict[str, Any],
    select: tuple[int, int] | None,
    *,
    crops: bool,
    stats: DecodeStats,
) -> list[DetectedSample]:
    """Decode samples ``select[0]`` to ``select[1] - 1`` of ``path``'s sampling plan
    (:func:`facekit.decode.iter_frames` with ``select``; ``None``: every sample), detect their faces, embed every
    face and cut the report crops: a Ray actor's share of a video. The embeddings are
    computed once for the whole range (one batch per recogniser); frames are dropped as
    soon as they have been detected.

    Args:
        sampling: :func:`~facekit.decode.iter_frames` keyword arguments.
        crops: also cut the report's face crops.
        stats: filled in by the decoder.
    """
    from .tracking import detect_and_crop, embed_samples, thumbnails

    found = []
    for fr in iter_frames(path, stats=stats, select=select, **sampling):
        faces, aligned = detect_and_crop(pipeline, fr.rgb)
        report = (
            np.stack([track_crop(fr.rgb, faces, i) for i in range(len(faces))])
            if crops and len(faces)
            else None
        )
        light = Frame(fr.time, np.zeros((0, 0, 3), np.uint8), fr.index, fr.keyframe, fr.target)
        found.append((light, faces, aligned, report))
    vectors = embed_samples(pipeline.ensemble, [aligned for _, _, aligned, _ in found])
    return [
        DetectedSample(frame, faces, vec, thumbnails(pipeline.ensemble, aligned), report)
        for (frame, faces, aligned, report), vec in zip(found, vectors, strict=True)
    ]


def analyse_detected(
    items: Iterable[DetectedSample],
    pipeline: Any,
    identifier: Any,
    calibration: Any,
    options: VideoOptions,
    *,
    source: str,
    on_sample: Callable[[Frame], None] | None = None,
    timings: dict[str, float] | None = None,
    counters: dict[str, int] | None = None,
) -> tuple[list[PersonTrack], VideoAggregator]:
    """Like :func:`analyse_frames` for samples already decoded, detected and embedded
    elsewhere (the Ray engine's segments, :func:`detect_range`), in time order. Tracking,
    identification and aggregation run here exactly as in :func:`analyse_frames`: the
    tracker takes the same decisions and, for the faces a local run embeds, uses the
    embeddings that came with the sample (those of followed faces are not used).
    """
    import time as _time

    from .tracking import Resolved, SampleResolver

    agg = VideoAggregator(calibration, options, source)
    timings = timings if timings is not None else {}
    timings.setdefault("decode", 0.0)
    timings.setdefault("analyse", 0.0)

    def emit(r: Resolved) -> None:
        frame, face_crops = r.item
        agg.add(frame.time, None, r.faces, r.embeddings, r.matches, frame.index, face_crops)
        if on_sample is not None:
            on_sample(frame)

    resolver = SampleResolver(pipeline.ensemble, identifier, emit, track=options.track)
    it = iter(items)
    while True:
        t0 = _time.perf_counter()
        item = next(it, None)
        t1 = _time.perf_counter()
        timings["decode"] += t1 - t0  # waiting for the remote decode + detect
        if item is None:
            break
        resolver.add(
            (item.frame, item.face_crops), item.faces, vectors=item.vectors, thumbs=item.thumbs
        )
        timings["analyse"] += _time.perf_counter() - t1
    t1 = _time.perf_counter()
    resolver.flush()
    timings["analyse"] += _time.perf_counter() - t1
    if counters is not None:
        counters.update(embedded=resolver.embedded, followed=resolver.followed)
    return agg.finish(), agg


def _announce_total(
    frames: Iterator[Frame], stats: DecodeStats, on_total: Callable[[int | None], None]
) -> Iterator[Frame]:
    """Pass ``frames`` through, calling ``on_total(stats.planned)`` once decoding has started."""
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        on_total(stats.planned)
        return
    on_total(stats.planned)
    yield first
    yield from it


def analyse_video(
    path: str | os.PathLike[str],
    db: Any,
    pipeline: Any,
    identifier: Any,
    options: VideoOptions | None = None,
    *,
    on_sample: Callable[[Frame], None] | None = None,
    on_total: Callable[[int | None], None] | None = None,
    engine: Any = None,
) -> VideoReport:
    """Find who appears in a video and when.

    Args:
        path: video file.
        db: open :class:`~facekit.database.Database` (its calibration links unknown faces).
        pipeline: a :class:`~facekit.pipeline.Pipeline` built from ``db.config``.
        identifier: a :class:`~facekit.identify.Identifier` on ``db``.
        options: sampling and reporting options.
        on_sample: called after each analysed sample (progress bars).
        on_total: called once, when decoding starts, with the number of samples expected
            (``None`` when unknown, e.g. a file without a duration).
        engine: run on a Ray cluster (:mod:`facekit.ray_engine`): each actor decodes and
            detects its own ranges of sample times; default local.

    Returns:
        A :class:`VideoReport`.

    Raises:
        InputError: the file cannot be opened or decoded (one line naming it).

    Example:
        >>> db = Database.open("faces.db")
        >>> report = analyse_video("talk.mp4", db, Pipeline(db.config), Identifier(db))
        >>> [(p.person, p.segments) for p in report.people]
    """
    options = options or VideoOptions()
    name = os.fspath(path)
    stats = DecodeStats()
    sampling_args: dict[str, Any] = dict(
        interval=None if options.frames else options.interval,
        frames=options.frames,
        start=options.start,
        end=options.end,
        sampling=options.sampling,
        min_samples=options.min_samples,
    )
    timings: dict[str, float] = {}
    counters: dict[str, int] = {}
    segments = None
    if engine is not None and engine.name == "ray":
        from .ray_engine import video_segments
        from .tracking import supports

        if supports(pipeline):
            # Each actor decodes and detects its own range of sample times of the file.
            segments = video_segments(
                engine, pipeline.config, name, sampling_args, crops=options.crops, stats=stats
            )
    if segments is not None:
        if on_total is not None:
            on_total(stats.planned)
        people, agg = analyse_detected(
            segments,
            pipeline,
            identifier,
            db.calibration,
            options,
            source=name,
            on_sample=on_sample,
            timings=timings,
            counters=counters,
        )
    else:
        frames = iter_frames(name, stats=stats, **sampling_args)
        if on_total is not None:
            frames = _announce_total(frames, stats, on_total)
        people, agg = analyse_frames(
            frames,
            pipeline,
            identifier,
            db.calibration,
            options,
            source=name,
            on_sample=on_sample,
            timings=timings,
            planned=lambda: stats.planned,
            counters=counters,
            engine=engine,
        )
    info = stats.info
    if counters:
        log.info(
            "%s: %d samples, %d faces identified by embedding, %d followed by the tracker",
            name,
            len(agg.sample_times),
            counters.get("embedded", 0),
            counters.get("followed", 0),
        )
    return VideoReport(
        name,
        info.duration if info else 0.0,
        len(agg.sample_times),
        stats.sampling,
        stats.decoded,
        agg.sample_times,
        agg.step,
        people,
        agg.detections if options.keep_detections else [],
        stats.warning,
        timings,
        counters,
    )


def analyse_sprite(
    sprite: str | os.PathLike[str],
    vtt: str | os.PathLike[str],
    db: Any,
    pipeline: Any,
    identifier: Any,
    options: VideoOptions | None = None,
    *,
    on_sample: Callable[[Frame], None] | None = None,
    on_total: Callable[[int | None], None] | None = None,
) -> VideoReport:
    """Like :func:`analyse_video` on a Stash sprite sheet + WebVTT index (cue times, no video decoding)."""
    options = options or VideoOptions()
    stats = DecodeStats()
    lo = options.start if options.start is not None else -math.inf
    hi = options.end if options.end is not None else math.inf
    frames: Iterator[Frame] = (f for f in iter_sprite(sprite, vtt, stats) if lo <= f.time < hi)
    if on_total is not None:
        ranged = options.start is not None or options.end is not None
        report_total = on_total
        # Cues outside --start/--end are dropped as they come: the total is not known then.
        frames = _announce_total(frames, stats, lambda n: report_total(None if ranged else n))
    timings: dict[str, float] = {}
    name = os.fspath(sprite)
    people, agg = analyse_frames(
        frames,
        pipeline,
        identifier,
        db.calibration,
        options,
        source=name,
        on_sample=on_sample,
        timings=timings,
    )
    return VideoReport(
        name,
        stats.duration,
        len(agg.sample_times),
        "sprite",
        stats.decoded,
        agg.sample_times,
        agg.step,
        people,
        agg.detections,
        None,
        timings,
    )


# --------------------------------------------------------------------------- outputs
def crop_jpeg(crop: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of a ``(h, w, 3) uint8`` crop."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(crop, np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def error_record(source: str, error: str) -> dict[str, Any]:
    """The JSON record of a video that could not be read: the contract's keys, no people."""
    return {
        "source": source,
        "duration": None,
        "samples": 0,
        "sampling": None,
        "frames_decoded": 0,
        "sample_times": [],
        "people": [],
        "error": error,
    }


def error_row(source: str, error: str) -> dict[str, Any]:
    """The CSV/table row of a video that could not be read."""
    return {"source": source, "person": None, "frames": 0, "error": error}


def crops_base64(report: VideoReport) -> dict[str, str]:
    """person id -> base64 JPEG of the best crop (for ``--embed-crops``)."""
    import base64

    return {
        p.person: base64.b64encode(crop_jpeg(p.crop)).decode("ascii")
        for p in report.people
        if p.crop is not None
    }


def save_crops(report: VideoReport, folder: str | os.PathLike[str]) -> list[str]:
    """Write ``<folder>/<person>.jpg`` for each person with a crop; returns the paths written."""
    from pathlib import Path

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in report.people:
        if p.crop is None:
            continue
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in p.person) or "person"
        path = out / f"{safe}.jpg"
        path.write_bytes(crop_jpeg(p.crop))
        written.append(str(path))
    return written


def write_detections(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Write per-face detection rows (:data:`DETECTION_COLUMNS`) to Parquet, atomically."""
    from pathlib import Path

    import pandas as pd

    from .pathtext import text_records

    df = pd.DataFrame(text_records(rows), columns=DETECTION_COLUMNS)
    for col in ("person", "name", "track", "source"):
        df[col] = df[col].astype("string")
    df["frame"] = df["frame"].astype("Int64")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, target)


_PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
]


def _nice_step(span: float, target_ticks: int = 8) -> float:
    raw = max(span, 1e-6) / target_ticks
    for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if s >= raw:
            return float(s)
    return float(math.ceil(raw / 3600) * 3600)


def _clock(t: float, step: float) -> str:
    t = int(round(t))
    if step < 60 and t < 60:
        return f"{t}s"
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def draw_timeline(report: VideoReport, path: str | os.PathLike[str], *, width: int = 1100) -> None:
    """Draw a timeline PNG: one row per person, a bar per segment, a time axis with ticks.

    Segments of a single sample are drawn as bars half a sampling step wide on each side, so
    they stay visible; small grey ticks under the axis mark the analysed sample times.
    """
    from PIL import Image, ImageDraw, ImageFont

    people = report.people
    label_w, row_h, top, bottom, right = 200, 30, 44, 56, 24
    height = top + max(len(people), 1) * row_h + bottom
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    duration = report.duration or (max(report.sample_times) if report.sample_times else 1.0) or 1.0
    x0, x1 = label_w, width - right

    def x_of(t: float) -> float:
        return x0 + (x1 - x0) * min(max(t / duration, 0.0), 1.0)

    title = (
        f"{os.path.basename(report.source)}  -  {report.samples} samples ({report.sampling_used}), "
        f"{_clock(duration, 60)} long"
    )
    d.text((10, 12), title, fill="black", font=font)
    axis_y = top + max(len(people), 1) * row_h + 6
    half = max(report.step, duration / 400) / 2
    step = _nice_step(duration)
    for k in range(0, len(people), 2):
        d.rectangle([0, top + k * row_h, width, top + (k + 1) * row_h - 1], fill=(245, 245, 245))
    t = 0.0
    while t <= duration + 1e-6:
        d.line([x_of(t), top, x_of(t), axis_y], fill=(225, 225, 225))
        t += step
    for k, p in enumerate(people):
        y = top + k * row_h
        label = p.person if not p.name or p.name == p.person else f"{p.name} ({p.person})"
        if p.known:
            label += f"  {p.confidence:.0f}%"
        d.text((10, y + 8), label[:30], fill="black" if p.known else (110, 110, 110), font=font)
        color = _PALETTE[k % len(_PALETTE)] if p.known else (150, 150, 150)
        for a, b in p.segments:
            xa, xb = x_of(a - half), x_of(b + half)
            d.rectangle([xa, y + 6, max(xb, xa + 2), y + row_h - 7], fill=color)
    if not people:
        d.text((x0 + 10, top + 8), "nobody found", fill=(110, 110, 110), font=font)
    d.line([x0, axis_y, x1, axis_y], fill="black", width=1)
    t = 0.0
    while t <= duration + 1e-6:
        x = x_of(t)
        d.line([x, axis_y, x, axis_y + 6], fill="black")
        d.text((x - 10, axis_y + 9), _clock(t, step), fill="black", font=font)
        t += step
    for st in report.sample_times:
        x = x_of(st)
        d.line([x, axis_y + 28, x, axis_y + 33], fill=(160, 160, 160))
    d.text((x1 - 140, axis_y + 36), "time (samples below axis)", fill=(110, 110, 110), font=font)
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
