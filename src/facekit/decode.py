"""Video decoding with PyAV: probe a file, then stream sampled frames as RGB arrays.

The cost of a run should follow the number of samples, not the length of the file. Measured
here (``../shared/NOTES.md``, PyAV 18, 1280x720 H.264): decoding every frame of a minute
takes about 1.1 s and converting each to RGB as much again; seeking then decoding forward to
an exact time pays off only when keyframes are close together; decoding keyframes only
(``skip_frame = "NONKEY"``) is about 30x cheaper but lands at the keyframes' times. So:

* ``sampling="exact"``: each sample is the first frame at or after its target time. When the
  next target lies beyond the next keyframe, seek (FFmpeg lands on the keyframe before the
  target) and decode forward; otherwise keep decoding forward without seeking.
* ``sampling="keyframe"``: decode keyframes only and keep, for each target, the keyframe
  nearest to it (each keyframe at most once). Times are irregular, but real.
* ``sampling="auto"`` (default): ``keyframe`` when keyframes are at most two sampling steps
  apart (the timeline stays within about one step of the truth at a tiny fraction of the
  cost), else ``exact``.

Only the frames that are kept are converted to RGB, and at most two decoded frames are held
at a time. Frame times come from ``pts * time_base`` (so variable frame rate is right),
relative to the container's start. The stream's display matrix (phone videos) is applied.

Example:
    >>> info = probe("clip.mp4")
    >>> for frame in iter_frames("clip.mp4", interval=5):
    ...     print(frame.time, frame.rgb.shape)
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "VideoInfo",
    "Frame",
    "DecodeStats",
    "SamplePlan",
    "plan_samples",
    "check_start",
    "Sampling",
    "VIDEO_EXTENSIONS",
    "probe",
    "iter_frames",
    "sample_times",
    "choose_sampling",
    "iter_sprite",
    "parse_vtt",
    "iter_video_paths",
]

#: Extensions picked up when a folder is given.
VIDEO_EXTENSIONS = frozenset(
    [
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".wmv",
        ".flv",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".m2ts",
        ".3gp",
        ".ogv",
        ".vob",
        ".divx",
        ".asf",
    ]
)
SAMPLINGS = ("auto", "exact", "keyframe")
Sampling = str

#: Without a keyframe index, seek only when the next target is this many seconds ahead.
_SEEK_WITHOUT_INDEX = 10.0
_EPS = 1e-3


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learnt about a video file.

    Attributes:
        path: the file.
        duration: seconds (0.0 when the container does not say).
        fps: average frame rate (0.0 when unknown).
        frames: number of frames from the container (estimated from duration x fps when absent).
        width, height: displayed size in pixels, after rotation.
        rotation: counter-clockwise degrees applied to decoded pictures (0, 90, 180, 270).
        codec: decoder name, e.g. ``"h264"``.
        keyframe_interval: median seconds between keyframes from the container index
            (``None`` when the container has no index, e.g. some Matroska/WebM files).
        keyframes: keyframe times from the index (empty when unknown).
        start_time: container start in seconds (frame times are relative to it).
    """

    path: str
    duration: float
    fps: float
    frames: int
    width: int
    height: int
    rotation: int
    codec: str
    keyframe_interval: float | None = None
    keyframes: tuple[float, ...] = field(default=(), repr=False)
    start_time: float = 0.0


@dataclass
class Frame:
    """One decoded, sampled video frame (or sprite tile).

    Attributes:
        time: seconds from the start of the file (``pts * time_base``; sprite: cue start).
        rgb: ``(H, W, 3) uint8`` picture with the stream rotation applied.
        index: estimated frame number (``round(time * fps)``; exact for constant frame rate;
            sprite: cue number).
        keyframe: the frame is a keyframe.
        target: the time this sample was meant for (``None`` when every frame is returned).
    """

    time: float
    rgb: np.ndarray
    index: int
    keyframe: bool = False
    target: float | None = None


@dataclass
class DecodeStats:
    """Counters filled in by :func:`iter_frames` while it runs.

    Attributes:
        sampling: the strategy actually used (``"exact"``, ``"keyframe"``, ``"all"``, ``"sprite"``).
        decoded: frames the decoder produced (the cost).
        kept: frames returned (converted to RGB).
        seeks: seeks performed.
        warning: set when decoding stopped early on damaged data (frames before it were kept).
        adapted: the clip was too short for ``interval``: ``min_samples`` evenly spread
            samples were taken instead (see :func:`sample_times`).
        planned: samples the plan is expected to give (``None``: unknown, e.g. every frame
            or a file without a duration); set when iteration starts. For progress bars.
        info: the probe result.
        duration: the sprite's duration (end of its last cue), for :func:`iter_sprite`.
    """

    sampling: str = ""
    decoded: int = 0
    kept: int = 0
    duration: float = 0.0
    seeks: int = 0
    warning: str | None = None
    adapted: bool = False
    planned: int | None = None
    info: VideoInfo | None = None


# --------------------------------------------------------------------------- opening, probing
def _open(path: str | os.PathLike[str]) -> Any:
    import av

    name = os.fspath(path)
    if os.path.isdir(name):
        raise InputError(f"{name}: is a directory")
    try:
        if os.path.getsize(name) == 0:
            raise InputError(f"{name}: empty file (0 bytes)")
    except OSError as exc:
        raise InputError(f"{name}: {_os_problem(exc)}") from None
    try:
        container = av.open(name, metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise InputError(f"{name}: not a readable video ({_ffmpeg_problem(exc)})") from None
    except OSError as exc:
        raise InputError(f"{name}: {_os_problem(exc)}") from None
    if not container.streams.video:
        kinds: list[str] = sorted({str(s.type) for s in container.streams}) or ["no streams"]
        container.close()
        raise InputError(f"{name}: no video stream (has {', '.join(kinds)})")
    return container


def _os_problem(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def _ffmpeg_problem(exc: Exception) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(msg).split()).rstrip(".").lower() or type(exc).__name__


def _rotation(stream: Any) -> int:
    """Counter-clockwise degrees from the display matrix, else the legacy ``rotate`` tag."""
    rot = None
    try:
        for sd in (
            stream.codec_context.coded_side_data
            if hasattr(stream.codec_context, "coded_side_data")
            else ()
        ):
            rot = getattr(sd, "rotation", None)
    except Exception:  # pragma: no cover - depends on PyAV build
        rot = None
    if rot is None:
        tag = stream.metadata.get("rotate")
        if tag is not None:
            try:
                rot = -float(tag)  # the tag is clockwise
            except ValueError:
                rot = None
    return _norm_rotation(rot or 0)


def _norm_rotation(deg: float) -> int:
    return int(round(deg / 90.0)) * 90 % 360


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's header and index (no decoding beyond the first frame).

    Args:
        path: video file.

    Returns:
        A :class:`VideoInfo`.

    Raises:
        InputError: missing, empty, unreadable or not a video (one line naming the file).
    """
    name = os.fspath(path)
    with _open(name) as container:
        return _probe_open(container, name)


def _probe_open(container: Any, name: str) -> VideoInfo:
    stream = container.streams.video[0]
    tb = float(stream.time_base or 0)
    start = container.start_time / 1e6 if container.start_time is not None else 0.0
    duration = 0.0
    if container.duration:
        duration = container.duration / 1e6
    elif stream.duration and tb:
        duration = stream.duration * tb
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    frames = int(stream.frames or 0) or int(round(duration * fps))
    keyframes: list[float] = []
    try:
        entries = stream.index_entries
        if tb:
            keyframes = sorted(e.timestamp * tb - start for e in entries if e.is_keyframe)
    except Exception:  # not every container / PyAV build exposes an index
        keyframes = []
    kf_interval = None
    if len(keyframes) >= 2:
        kf_interval = float(np.median(np.diff(keyframes)))
    elif len(keyframes) == 1 and duration > 0:
        kf_interval = max(duration, _EPS)  # one keyframe for the whole file
    # The first frame tells the rotation reliably (PyAV reads the display matrix per frame).
    rotation = None
    width, height = stream.codec_context.width, stream.codec_context.height
    try:
        for frame in container.decode(stream):
            rotation = _norm_rotation(frame.rotation)
            width, height = frame.width, frame.height
            break
    except Exception as exc:
        raise InputError(f"{name}: cannot decode video ({_ffmpeg_problem(exc)})") from None
    if rotation is None:
        if not width:
            raise InputError(f"{name}: video stream has no decodable frames")
        rotation = _rotation(stream)
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        name,
        duration,
        fps,
        frames,
        int(width or 0),
        int(height or 0),
        rotation,
        stream.codec_context.name,
        kf_interval,
        tuple(keyframes),
        start,
    )


# --------------------------------------------------------------------------- sampling plan
def _most_samples(info: VideoInfo) -> int:
    """Most distinct samples worth taking from a video: its frames (100,000 when unknown)."""
    if info.frames > 0:
        return int(info.frames)
    if info.duration > 0:
        return max(1, int(math.ceil(info.duration * max(info.fps, 240.0))))
    return 100_000


def sample_times(
    duration: float,
    *,
    interval: float | None = None,
    frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
    min_samples: int | None = None,
) -> list[float] | None:
    """Target times in seconds, or ``None`` for "every frame".

    ``interval``: one every ``interval`` seconds from ``start``. ``frames``: that many spread
    evenly over 5%-95% of ``[start, end]`` (as Stash Sense samples scenes). ``min_samples``
    (with ``interval`` and a known duration): when the interval would give fewer samples,
    take ``min_samples`` evenly spaced ones instead, ``start + k * span / min_samples`` (a 4 s
    clip at ``interval=5`` gets 8 samples 0.5 s apart, not one).
    """
    lo = max(0.0, start or 0.0)
    hi = duration if end is None or (duration and end > duration) else end
    if hi is None or hi <= 0:
        hi = lo  # unknown duration: caller samples as it goes
    if frames:
        if frames < 1:
            raise ValueError("frames must be >= 1")
        span = max(hi - lo, 0.0)
        if frames == 1:
            return [lo + span / 2]
        return [lo + span * (0.05 + 0.9 * i / (frames - 1)) for i in range(frames)]
    if interval:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        n = int(math.floor((hi - lo) / interval + _EPS)) + 1 if hi > lo else 1
        times = [lo + i * interval for i in range(n)]
        times = [t for t in times if hi <= lo or t < hi or t == lo]
        if min_samples and hi > lo and len(times) < min_samples:
            spacing = (hi - lo) / min_samples
            times = [lo + k * spacing for k in range(min_samples)]
        return times
    return None


def check_start(info: VideoInfo, name: str, start: float | None) -> None:
    """Raise :class:`InputError` when ``start`` is at or past the end of a video of known duration."""
    if start is not None and info.duration > 0 and start >= info.duration - _EPS:
        raise InputError(
            f"{name}: start {start:g} s is at or past the end of the video "
            f"({info.duration:.2f} s long)"
        )


@dataclass(frozen=True)
class SamplePlan:
    """What :func:`iter_frames` will sample from a file (see :func:`plan_samples`).

    Attributes:
        targets: target times (``None``: every frame).
        mode: ``"exact"``, ``"keyframe"`` or ``"all"``.
        adapted: ``min_samples`` evenly spread samples replace ``interval``'s.
        planned: samples expected (``None``: unknown).
        unbounded: the duration is unknown: targets are extended while decoding.
    """

    targets: tuple[float, ...] | None
    mode: str
    adapted: bool
    planned: int | None
    unbounded: bool


def plan_samples(
    info: VideoInfo,
    name: str,
    *,
    interval: float | None = None,
    frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
    sampling: str = "auto",
    min_samples: int | None = None,
) -> SamplePlan:
    """The sampling plan :func:`iter_frames` follows for a probed file (same arguments)."""
    if frames and frames > (most := _most_samples(info)):
        # More samples than the video has frames would only repeat frames (and 10^9 of
        # them would exhaust memory before the first one): one per frame at most.
        log.info("%s: --frames %d capped at the video's %d frames", name, frames, most)
        frames = most
    targets = sample_times(
        info.duration,
        interval=interval,
        frames=frames,
        start=start,
        end=end,
        min_samples=None if frames else min_samples,
    )
    adapted = bool(
        targets is not None
        and interval
        and not frames
        and min_samples
        and len(targets)
        > len(sample_times(info.duration, interval=interval, start=start, end=end) or [])
    )
    step = None
    if targets is not None:
        step = (
            interval
            if interval and not frames and not adapted
            else ((targets[1] - targets[0]) if len(targets) > 1 else max(info.duration, 1.0))
        )
    mode = choose_sampling(info, step, "exact" if adapted and sampling == "auto" else sampling)
    end_t = end if end is not None else math.inf
    unbounded = bool(
        targets is not None and interval and not frames and info.duration <= 0 and end is None
    )
    planned = (
        None if targets is None or unbounded else _planned(info, targets, mode, start or 0.0, end_t)
    )
    return SamplePlan(
        tuple(targets) if targets is not None else None, mode, adapted, planned, unbounded
    )


def choose_sampling(info: VideoInfo, step: float | None, requested: str = "auto") -> str:
    """The strategy ``auto`` picks for a file: see the module docstring."""
    if requested not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {requested!r}")
    if step is None:
        return "all"
    if requested != "auto":
        return requested
    k = info.keyframe_interval
    if k is not None and k <= 2.0 * step:
        return "keyframe"
    return "exact"


# --------------------------------------------------------------------------- decoding
def _to_rgb(frame: Any) -> np.ndarray:
    # to_ndarray returns a view with padded rows (e.g. stride 768 for 250 px); dlib reads such
    # arrays wrongly (it found half the faces, with lower scores), so always hand out a
    # C-contiguous copy.
    rgb = frame.to_ndarray(format="rgb24")
    k = _norm_rotation(frame.rotation) // 90
    if k:
        rgb = np.rot90(rgb, k)
    return np.ascontiguousarray(rgb)


def iter_frames(
    path: str | os.PathLike[str],
    *,
    interval: float | None = None,
    frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
    sampling: str = "auto",
    stats: DecodeStats | None = None,
    min_samples: int | None = None,
    select: tuple[int, int] | None = None,
) -> Iterator[Frame]:
    """Stream sampled frames of a video as RGB arrays, in time order.

    Args:
        path: video file.
        interval: one sample every ``interval`` seconds (from ``start``).
        frames: that many samples spread over 5%-95% of the runtime (overrides ``interval``).
        start, end: limit to this part of the file (seconds).
        sampling: ``"auto"``, ``"exact"`` or ``"keyframe"`` (module docstring). With neither
            ``interval`` nor ``frames`` every frame is returned.
        stats: filled in while iterating (strategy used, frames decoded, seeks).
        min_samples: with ``interval``, at least this many samples evenly spread over a short
            clip (see :func:`sample_times`); ``auto`` sampling then takes exact times, since a
            short clip has too few keyframes to give that many distinct samples.
        select: ``(lo, hi)``: only the samples for the plan's targets ``lo`` to ``hi - 1``
            (ignored when there are no targets, i.e. every frame is returned)
            (:func:`plan_samples`), exactly the frames a whole run gives for them - one
            segment of a distributed run (:mod:`facekit.ray_engine`). A frame that also
            serves the previous segment's last target (a variable-frame-rate gap) is
            returned again; the caller drops it.

    Yields:
        :class:`Frame` objects; ``rgb`` is ``(H, W, 3) uint8`` with rotation applied.

    Raises:
        InputError: the file cannot be opened or has no decodable video, or ``start`` is at
            or past the end of a video of known duration (one line naming it). Damage later
            in the file stops the iteration early with ``stats.warning`` set.
    """
    import av

    name = os.fspath(path)
    stats = stats if stats is not None else DecodeStats()
    container = _open(name)
    try:
        info = _probe_open(container, name)
        stats.info = info
        check_start(info, name, start)
        plan = plan_samples(
            info,
            name,
            interval=interval,
            frames=frames,
            start=start,
            end=end,
            sampling=sampling,
            min_samples=min_samples,
        )
        stats.adapted = plan.adapted
        stats.sampling = mode = plan.mode
        targets = list(plan.targets) if plan.targets is not None else None
        # select: only the samples of targets[lo:hi] (one segment of a distributed run).
        keep_lo, keep_hi = -math.inf, math.inf
        first_segment = select is None or select[0] == 0
        if select is not None and targets is not None:
            first, stop = select
            if mode == "keyframe":
                # Keyframe choices depend on the choices before them: decode the keyframes
                # from the start as a whole run would (cheap), convert only this segment's.
                keep_lo = targets[first] if first < len(targets) else math.inf
                keep_hi = targets[stop - 1] if 0 < stop <= len(targets) else -math.inf
            else:  # exact: the first frame at or after each target, found by seeking
                targets = targets[first:stop]
        container.seek(0, backward=True, any_frame=False)  # probe decoded the first frame
        stream = container.streams.video[0]
        tb = float(stream.time_base)
        t0 = info.start_time
        fps = info.fps or 25.0
        end_t = end if end is not None else math.inf
        unbounded = plan.unbounded and select is None
        stats.planned = plan.planned

        def time_of(fr: Any) -> float | None:
            pts = fr.pts if fr.pts is not None else fr.dts
            return None if pts is None else pts * tb - t0

        past = [False]

        def make(fr: Any, t: float, target: float | None) -> Frame | None:
            if target is not None and not (keep_lo - _EPS <= target <= keep_hi + _EPS):
                past[0] = target > keep_hi
                return None  # outside the selected segment: not converted, not kept
            stats.kept += 1
            return Frame(
                max(t, 0.0), _to_rgb(fr), int(round(max(t, 0.0) * fps)), bool(fr.key_frame), target
            )

        try:
            if mode == "all":
                lo = start or 0.0
                if lo > 0:
                    _seek(container, stream, lo, t0, stats)
                for fr in container.decode(stream):
                    stats.decoded += 1
                    t = time_of(fr)
                    if t is None or t < lo - _EPS:
                        continue
                    if t >= end_t:
                        break
                    frame = make(fr, t, None)
                    assert frame is not None
                    yield frame
            elif mode == "keyframe":
                for f in _keyframe_samples(
                    container,
                    stream,
                    targets or [],
                    time_of,
                    make,
                    stats,
                    end_t,
                    unbounded,
                    interval,
                    start or 0.0,
                ):
                    if f is not None:
                        yield f
                    elif past[0]:  # the segment's last target is done
                        break
            else:
                yield from _exact_samples(
                    container,
                    stream,
                    info,
                    targets or [],
                    time_of,
                    make,
                    stats,
                    end_t,
                    unbounded,
                    interval,
                    t0,
                )
        except av.FFmpegError as exc:
            # A later segment (select) that cannot decode is where a whole run stopped early.
            if stats.kept == 0 and stats.decoded == 0 and first_segment:
                raise InputError(f"{name}: cannot decode video ({_ffmpeg_problem(exc)})") from None
            stats.warning = f"{name}: decoding stopped early ({_ffmpeg_problem(exc)})"
            log.warning("%s", stats.warning)
        if stats.decoded == 0 and first_segment:
            raise InputError(f"{name}: no decodable video frames")
    finally:
        container.close()


def _planned(info: VideoInfo, targets: list[float], mode: str, lo: float, end_t: float) -> int:
    """How many samples the plan will give (for progress bars): the targets, or in keyframe
    mode the distinct keyframes nearest to them (from the index, when there is one)."""
    targets = [t for t in targets if t < end_t]
    kfs = [k for k in info.keyframes if lo - _EPS <= k < end_t]
    if mode != "keyframe" or not kfs:
        return len(targets)
    chosen = set()
    for t in targets:
        j = bisect.bisect_left(kfs, t)
        near = [kfs[x] for x in (j - 1, j) if 0 <= x < len(kfs)]
        chosen.add(min(near, key=lambda k: (abs(k - t), k)))
    return len(chosen)


def _seek(container: Any, stream: Any, t: float, t0: float, stats: DecodeStats) -> None:
    offset = int(max(t + t0, 0.0) / float(stream.time_base))
    container.seek(offset, stream=stream, backward=True, any_frame=False)
    stats.seeks += 1


def _exact_samples(
    container: Any,
    stream: Any,
    info: VideoInfo,
    targets: list[float],
    time_of: Any,
    make: Any,
    stats: DecodeStats,
    end_t: float,
    unbounded: bool,
    interval: float | None,
    t0: float,
) -> Iterator[Frame]:
    """First frame at or after each target; seek only when it skips at least one keyframe."""
    kfs = list(info.keyframes)
    pos = -math.inf  # time of the last decoded frame
    decoder = None  # one decode iterator, renewed after each seek
    i = 0
    while i < len(targets) or unbounded:
        if i >= len(targets):
            targets.append(targets[-1] + (interval or 1.0) if targets else 0.0)
        target = targets[i]
        if target >= end_t:
            return
        if kfs:
            j = bisect.bisect_right(kfs, target + _EPS) - 1
            must_seek = j >= 0 and kfs[j] > pos + _EPS
        else:
            must_seek = target - pos > _SEEK_WITHOUT_INDEX
        if must_seek or decoder is None:
            _seek(container, stream, target if target > 0 else 0.0, t0, stats)
            decoder = container.decode(stream)
        got = False
        for fr in decoder:
            stats.decoded += 1
            t = time_of(fr)
            if t is None:
                continue
            pos = t
            if t >= end_t:
                return
            if t >= target - _EPS:
                yield make(fr, t, target)
                got = True
                # Targets this frame already covers (a VFR gap longer than the interval).
                i += 1
                while i < len(targets) and targets[i] <= t + _EPS:
                    i += 1
                break
        if not got:
            return  # end of stream


def _keyframe_samples(
    container: Any,
    stream: Any,
    targets: list[float],
    time_of: Any,
    make: Any,
    stats: DecodeStats,
    end_t: float,
    unbounded: bool,
    interval: float | None,
    lo: float = 0.0,
) -> Iterator[Frame]:
    """For each target, the nearest keyframe at or after ``lo`` (decoding keyframes only, no seeking)."""
    stream.codec_context.skip_frame = "NONKEY"
    try:
        prev: tuple[float, Any] | None = None
        emitted_t = -math.inf
        i = 0

        def next_target() -> float | None:
            if i < len(targets):
                return targets[i]
            if unbounded:
                targets.append(targets[-1] + (interval or 1.0) if targets else 0.0)
                return targets[i]
            return None

        for fr in container.decode(stream):
            stats.decoded += 1
            t = time_of(fr)
            if t is None or t < lo - _EPS:
                continue
            while True:
                target = next_target()
                if target is None or target >= end_t:
                    return
                if t < target - _EPS:
                    break
                # t >= target: the nearest keyframe is prev or this one.
                if (
                    prev is not None
                    and (target - prev[0]) < (t - target)
                    and prev[0] > emitted_t + _EPS
                ):
                    yield make(prev[1], prev[0], target)
                    emitted_t = prev[0]
                elif t > emitted_t + _EPS and t < end_t:
                    yield make(fr, t, target)
                    emitted_t = t
                i += 1
            if t >= end_t:
                return
            prev = (t, fr)
        # Past the last keyframe: targets still open get the last keyframe once.
        target = next_target() if not unbounded else (targets[i] if i < len(targets) else None)
        if (
            prev is not None
            and target is not None
            and target < end_t
            and prev[0] > emitted_t + _EPS
        ):
            yield make(prev[1], prev[0], target)
    finally:
        stream.codec_context.skip_frame = "DEFAULT"


# --------------------------------------------------------------------------- paths
def iter_video_paths(inputs: list[str]) -> Iterator[str]:
    """Files as given; folders walked recursively (sorted, hidden skipped) for :data:`VIDEO_EXTENSIONS`."""
    for name in inputs:
        if not os.path.isdir(name):
            yield name
            continue
        for dirpath, dirnames, filenames in os.walk(name):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS:
                    yield os.path.join(dirpath, f)


# --------------------------------------------------------------------------- Stash sprites
@dataclass(frozen=True)
class SpriteCue:
    """One WebVTT cue of a sprite sheet: ``start --> end`` and the tile ``x, y, w, h``."""

    start: float
    end: float
    image: str
    x: int
    y: int
    w: int
    h: int


_TS = r"(?:(\d+):)?(\d{1,2}):(\d{2})(?:[.,](\d{1,3}))?"
_CUE = re.compile(rf"^\s*{_TS}\s*-->\s*{_TS}")
_XYWH = re.compile(r"^(.*?)#xywh=(?:pixel:)?\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+)\s*$")


def _secs(h: str | None, m: str, s: str, frac: str | None) -> float:
    return (
        int(h or 0) * 3600
        + int(m) * 60
        + int(s)
        + (int(frac.ljust(3, "0")) / 1000 if frac else 0.0)
    )


def parse_vtt(text: str, name: str = "<vtt>") -> list[SpriteCue]:
    """Parse a Stash-style WebVTT sprite index (cues whose payload is ``image.jpg#xywh=x,y,w,h``).

    Raises:
        InputError: no such cue in the file.
    """
    cues: list[SpriteCue] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for k, line in enumerate(lines):
        m = _CUE.match(line)
        if not m:
            continue
        g = m.groups()
        start, end = _secs(*g[:4]), _secs(*g[4:])
        for payload in lines[k + 1 : k + 3]:
            pm = _XYWH.match(payload.strip())
            if pm:
                cues.append(
                    SpriteCue(start, end, pm.group(1), *(int(pm.group(i)) for i in range(2, 6)))
                )
                break
    if not cues:
        raise InputError(
            f"{name}: no sprite cues ('start --> end' followed by 'image#xywh=x,y,w,h')"
        )
    return cues


def iter_sprite(
    sprite_path: str | os.PathLike[str],
    vtt_path: str | os.PathLike[str],
    stats: DecodeStats | None = None,
) -> Iterator[Frame]:
    """Tiles of a Stash sprite sheet as frames, timed by the WebVTT cues (time = cue start).

    Args:
        sprite_path: the sprite image (a grid of thumbnails).
        vtt_path: its WebVTT index.
        stats: filled in (``sampling="sprite"``, tiles as ``decoded``/``kept``).

    Yields:
        :class:`Frame` per cue, ``rgb`` the ``(h, w, 3) uint8`` tile.

    Raises:
        InputError: unreadable sprite or VTT, or a tile outside the sprite image.
    """
    from .imageio import load_image

    stats = stats if stats is not None else DecodeStats()
    stats.sampling = "sprite"
    vtt = os.fspath(vtt_path)
    try:
        text = Path(vtt).read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise InputError(f"{vtt}: {_os_problem(exc)}") from None
    cues = parse_vtt(text, vtt)
    stats.planned = len(cues)
    stats.duration = max((c.end for c in cues), default=0.0)
    sheet = load_image(sprite_path).rgb
    hgt, wid = sheet.shape[:2]
    for n, cue in enumerate(cues):
        if cue.x + cue.w > wid or cue.y + cue.h > hgt or cue.w <= 0 or cue.h <= 0:
            raise InputError(
                f"{vtt}: cue {n + 1} tile {cue.x},{cue.y},{cue.w},{cue.h} is outside the "
                f"{wid}x{hgt} sprite {os.fspath(sprite_path)}"
            )
        stats.decoded += 1
        stats.kept += 1
        tile = np.ascontiguousarray(sheet[cue.y : cue.y + cue.h, cue.x : cue.x + cue.w])
        yield Frame(cue.start, tile, n, True, cue.start)
