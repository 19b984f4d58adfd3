"""The Ray engine (``--engine ray``, extra ``facekit-cli[ray]``): the pipeline on a Ray cluster.

The workers do all the heavy work; this process (the driver) only hands out work and folds
results in order:

- **Photos** (:meth:`RayEngine.map_paths`): a fixed pool of :class:`_PipelineActor` actors
  (Ray Core, one CPU each) each builds one :class:`~facekit.pipeline.Pipeline` (models
  resolved on its own node through the verified model path: ``$FACEKIT_HOME``, installed
  packages, ``$FACEKIT_MODEL_MIRROR``). Paths go out in chunks of :data:`CHUNK` from a queue,
  :data:`IN_FLIGHT` chunks per actor; each actor reads, decodes, detects and embeds, and only
  the small :class:`~facekit.types.ImageResult` objects come back. Callers see exactly what
  :func:`facekit.pipeline.run_paths` yields: one result per path, in input order, with
  per-file errors as data.
- **Video** (:func:`video_segments`): the sampling plan is split into ranges of sample
  times; each :class:`_SegmentActor` opens the file itself, seeks to its range with PyAV,
  decodes, detects, embeds every face and cuts the report crops
  (:func:`facekit.video.detect_range`). Frames and aligned crops never travel. Tracking,
  identification and aggregation stay in the driver (they are sequential: the tracker
  decides from the previous sample's identities which faces need an embedding); for those
  faces it uses the actors' embeddings, which are bit for bit those a local run computes.

Why Ray Core actors and not Ray Data (the first version used ``map_batches`` with an actor
pool): measured on this 2-core machine, Ray Data's planning and actor-pool start-up took
6-8 s from ``ray.init`` to the first actor loading its models, plain actors 0.3-1.1 s
(docs/distributed.md); its streaming executor runs in the driver, and it hands out whole
blocks of paths. A work queue over plain restartable actors is what is left without them.

Worker failures are Ray's to retry: actors are restartable (``max_restarts=-1``) and their
calls retried (``max_task_retries=-1``), so a killed worker process costs time, not
results. The calling process keeps everything that must be sequential (database commits,
calibration, reports).

Paths are sent as given and each actor works in the caller's working directory when that
folder exists on its node, so relative paths and error messages match a local run; on a real
cluster the photos must be on storage every node sees under the same path (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import EngineError, FacekitError, InputError, ModelError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import PipelineConfig
    from .types import ImageResult
    from .video import DetectedSample

log = logging.getLogger(__name__)

__all__ = ["RayEngine", "RayFramePool", "frame_pool", "ADDRESS_ENV"]

ADDRESS_ENV = "RAY_ADDRESS"
#: Most paths per actor call: few, so that progress is smooth and a retried call repeats
#: little; enough that Ray's per-call cost (about 1 ms) is noise beside ~20-50 ms per photo.
CHUNK = 8
#: Calls queued per actor: while it works on one, the next is already waiting on its node.
IN_FLIGHT = 2
#: Object store of a local instance started for one run: only paths, small results and (for
#: video) face crops travel through it. Ray's minimum is 75 MB.
LOCAL_OBJECT_STORE_BYTES = 100 * 1024 * 1024
#: Environment passed to the actors so they resolve models the way this process does.
_PASS_ENV = ("FACEKIT_MODEL_MIRROR", "FACEKIT_OFFLINE", "FACEKIT_DEBUG", "DEEPFACE_BACKEND_ENGINE")
_ERRORS: dict[str, type[FacekitError]] = {
    "ModelError": ModelError,
    "InputError": InputError,
    "UsageError": UsageError,
}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'facekit-cli[ray]'") from None
    return ray


def _loopback_host(address: str | None) -> str | None:
    """The host of ``address`` if it is a loopback IP (``127.x.y.z``), else None."""
    import ipaddress

    if not address or "://" in address:
        return None
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def _route_driver_messages(ray: Any) -> None:
    """Keep Ray's cluster messages off stdout (our data channel).

    The driver prints messages pushed by the cluster (e.g. "task failed, will be retried"
    after a worker was killed) to *stdout* from a background thread. Send them to this
    module's log instead (``-vv`` shows them); under FACEKIT_DEBUG they are left alone.
    """
    if os.environ.get("FACEKIT_DEBUG"):
        return
    worker_mod = getattr(getattr(ray, "_private", None), "worker", None)
    if worker_mod is None or not hasattr(worker_mod, "print_to_stdstream"):
        return

    def to_log(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            text = str(line).strip().splitlines()
            if text:
                log.debug("ray %s: %s", data.get("pid", ""), text[0])

    worker_mod.print_to_stdstream = to_log


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _error_line(exc: BaseException) -> str:
    """The informative line of a Ray error (they carry whole remote tracebacks, coloured):
    the remote exception's type and first line when Ray kept it, never terminal codes."""
    text = _ANSI.sub("", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "No module named" in ln:
            return f"{ln.split('Error: ')[-1]} on the cluster's workers (install the same facekit-cli on every node)"
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and cause is not exc:
        first = next(
            (ln.strip() for ln in _ANSI.sub("", str(cause)).splitlines() if ln.strip()), ""
        )
        return (f"{type(cause).__name__}: {first}" if first else type(cause).__name__)[:300]
    return (lines[0] if lines else type(exc).__name__)[:300]


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to Ray's log while ``ray.init`` runs:
    Ray's C++ core announces its log level there even when asked to be quiet. Python-level
    output is unaffected (nothing else runs meanwhile); under FACEKIT_DEBUG nothing is hidden."""
    if os.environ.get("FACEKIT_DEBUG"):
        yield
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                log.debug("ray: %s", line)


def _actor_setup(cwd: str, env: dict[str, str]) -> None:
    """What every facekit actor does first: the caller's model settings and working directory,
    one thread per actor (one actor per CPU: no oversubscription)."""
    from .models.runtime import set_threads

    # Passed as arguments, not as a Ray runtime_env: a runtime_env makes Ray start fresh
    # worker processes instead of its pre-started ones (measured: +1.5 s per run).
    os.environ.update(env)
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    set_threads(1)


class _PipelineActor:
    """One pipeline per actor: models are loaded once, in ``__init__``, and warmed up there, so
    the first real batch is as fast as the others."""

    def __init__(self, config: PipelineConfig, cwd: str, env: dict[str, str]):
        import time

        from .pipeline import Pipeline

        self.started = time.time()
        _actor_setup(cwd, env)
        self.fatal: tuple[str, str] | None = None
        try:
            self.pipeline: Any = Pipeline(config)
        except FacekitError as exc:  # reported to the caller as the same one-line error
            kind = type(exc).__name__
            self.fatal = (kind if kind in _ERRORS else "ModelError", str(exc))
            self.pipeline = None
        self.ready_at = time.time()

    def ready(self) -> tuple[float, float, int]:
        """``(started, ready_at, pid)``: when the actor began and finished loading its models."""
        return self.started, self.ready_at, os.getpid()

    def run(self, paths: list[str]) -> tuple[Any, float, float, float]:
        """``(results, start, end, cpu)``: one :class:`ImageResult` per path (or the fatal
        model error), the wall-clock span of the work and the CPU seconds it took (for the
        steady-state figures)."""
        import time

        t0, c0 = time.time(), time.process_time()
        if self.pipeline is None:
            return ("fatal", self.fatal), t0, t0, 0.0
        out = [self.pipeline.process_path(str(p)) for p in paths]
        return ("ok", out), t0, time.time(), time.process_time() - c0


@dataclass
class RunStats:
    """Where the time of one :meth:`RayEngine.map_paths` or :func:`video_segments` run went
    (wall-clock seconds).

    Attributes:
        actors: pipeline actors used.
        files: files processed (video: samples kept).
        connect: joining or starting the cluster (0 when already connected).
        startup: from the first actor being asked for until every actor had its models
            loaded (actor processes, imports, model load).
        work: from the first batch started on an actor to the last one finished.
        busy: summed time actors spent inside batches (CPU-bound work).
        warm_rate: files per second of all actors together once warm: the sum over actors
            of files done / (end of its last batch - start of its first).
        cpu: CPU seconds the actors spent inside batches (``cpu / files``: the cost of a
            file, whatever else the machine runs).
    """

    actors: int = 0
    files: int = 0
    connect: float = 0.0
    startup: float = 0.0
    work: float = 0.0
    busy: float = 0.0
    warm_rate: float = 0.0
    cpu: float = 0.0


class RayEngine:
    """Runs the per-file pipeline on a Ray cluster.

    Args:
        address: cluster address (``ray://host:10001``, ``host:6379`` or ``auto``); default
            ``$RAY_ADDRESS``; if neither is set a local Ray instance is started for this
            process (and stopped by :meth:`close`).
        workers: pipeline actors (default: the cluster's CPUs, one actor per CPU).

    Attributes:
        stats: :class:`RunStats` of the last :meth:`map_paths` run.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None):
        self.address = address or os.environ.get(ADDRESS_ENV) or None
        self.workers = workers
        self._ray: Any = None
        self._started_local = False
        self.connect_seconds = 0.0
        self.stats = RunStats()

    # ------------------------------------------------------------------ cluster
    def _connect(self) -> Any:
        if self._ray is not None:
            return self._ray
        import time

        t0 = time.perf_counter()
        if not os.environ.get("FACEKIT_DEBUG"):
            # Ray's C++ core worker writes warnings straight to stderr (e.g. about restartable
            # actors); real failures still reach us as exceptions.
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        if not self.address:
            # A local instance for this run stays on the loopback interface (Ray otherwise
            # binds its node to the machine's network address). Read when Ray is imported.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(
                log_to_driver=False,
                logging_level=logging.ERROR,
                include_dashboard=False,
                configure_logging=True,
            )
            host = _loopback_host(self.address)
            if host:  # a node on this machine's loopback: this driver is on the same node
                kwargs["_node_ip_address"] = host
            try:
                with _native_stderr_captured():
                    if self.address:
                        ray.init(address=self.address, **kwargs)
                    else:
                        self._started_local = True
                        # "local": a new instance even if a cluster runs on this machine. Only
                        # paths and small results travel: a small object store is plenty.
                        ray.init(
                            address="local",
                            num_cpus=self.workers,
                            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                            **kwargs,
                        )
            except Exception as exc:
                where = self.address or "a local Ray instance"
                raise EngineError(
                    f"cannot start or reach Ray at {where}: {' '.join(str(exc).split())}"
                ) from None
        _route_driver_messages(ray)
        self._ray = ray
        self.connect_seconds = time.perf_counter() - t0
        return ray

    def cpus(self) -> int:
        """CPUs the connected cluster offers (at least 1)."""
        ray = self._connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def close(self) -> None:
        if self._ray is not None and self._started_local:
            self._ray.shutdown()
        self._ray = None

    def _ensure_models(self, config: PipelineConfig, progress: Any = None) -> None:
        if self._started_local:
            # Fetch and verify every model here, once, so that local actors only load files.
            from .models import store

            store.ensure(config.detector, offline=config.offline, progress=progress)
            for m in config.models if config.embed else ():
                store.ensure(m, offline=config.offline, progress=progress)

    def actors(self, cls: type, n: int, *args: Any) -> list[Any]:
        """Start ``n`` restartable actors of ``cls`` (``num_cpus=1`` each; a killed one is
        restarted and its calls retried)."""
        ray = self._connect()
        remote = ray.remote(cls).options(num_cpus=1, max_restarts=-1, max_task_retries=-1)
        return [remote.remote(*args) for _ in range(max(1, n))]

    def kill(self, actors: Sequence[Any]) -> None:
        for a in actors:
            with contextlib.suppress(Exception):  # already gone
                self._ray.kill(a)

    # ------------------------------------------------------------------ work
    def map_paths(
        self, config: PipelineConfig, paths: Sequence[str], *, progress: Any = None
    ) -> Iterator[ImageResult]:
        paths = [str(p) for p in paths]
        if not paths:
            return iter(())
        connected = self._ray is not None
        self._connect()
        self._ensure_models(config, progress)
        self.stats = RunStats(files=len(paths), connect=0.0 if connected else self.connect_seconds)
        return self._stream(config, paths)

    def _account(self, spans: list[tuple[int, float, float, int]]) -> None:
        st = self.stats
        st.work = max(e for _, _, e, _ in spans) - min(s for _, s, _, _ in spans)
        st.busy = sum(e - s for _, s, e, _ in spans)
        st.warm_rate = 0.0
        for k in {a for a, _, _, _ in spans}:
            mine = [sp for sp in spans if sp[0] == k]
            span = max(e for _, _, e, _ in mine) - min(s for _, s, _, _ in mine)
            if span > 0:
                st.warm_rate += sum(n for *_, n in mine) / span

    def _stream(self, config: PipelineConfig, paths: list[str]) -> Iterator[ImageResult]:
        """Paths go to the actors in chunks from a queue (each actor has two chunks queued, so
        it never waits for this process); results come back as they finish and are yielded in
        input order. This process only queues paths and re-orders results."""
        import time

        ray = self._ray
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        n_actors = min(self.workers or self.cpus(), len(paths))
        actors = self.actors(_PipelineActor, n_actors, config, os.getcwd(), env)
        asked = time.time()
        # Chunks of up to CHUNK paths, smaller for small jobs so every actor gets several.
        size = max(1, min(CHUNK, len(paths) // (len(actors) * 4) or 1))
        chunks = [(i, paths[i : i + size]) for i in range(0, len(paths), size)]
        queue = iter(chunks)
        inflight: dict[Any, tuple[Any, int, int]] = {}

        def submit(actor: Any) -> None:
            nxt = next(queue, None)
            if nxt is not None:
                inflight[actor.run.remote(nxt[1])] = (actor, nxt[0], len(nxt[1]))

        index = {id(a): k for k, a in enumerate(actors)}

        pending: dict[int, ImageResult] = {}
        nxt_pos = 0
        spans: list[tuple[int, float, float, int]] = []  # actor, start, end, files
        try:
            # Work is queued at once: an actor starts on it as soon as its models are loaded.
            readies = [a.ready.remote() for a in actors]
            for a in actors:
                for _ in range(IN_FLIGHT):
                    submit(a)
            self.stats.actors = len(actors)
            self.stats.startup = max(r[1] for r in ray.get(readies)) - asked
            while inflight:
                [done], _ = ray.wait(list(inflight), num_returns=1)
                actor, pos, count = inflight.pop(done)
                (status, value), t0, t1, cpu = ray.get(done)
                if status == "fatal":
                    kind, message = value
                    raise _ERRORS.get(kind, ModelError)(message)
                spans.append((index[id(actor)], t0, t1, count))
                self.stats.cpu += cpu
                submit(actor)
                for k, result in enumerate(value):
                    pending[pos + k] = result
                while nxt_pos in pending:  # fold in input order
                    yield pending.pop(nxt_pos)
                    nxt_pos += 1
        except (FacekitError, KeyboardInterrupt, GeneratorExit):
            raise
        except Exception as exc:
            if os.environ.get("FACEKIT_DEBUG"):
                raise
            raise EngineError(f"Ray: {_error_line(exc)}") from None
        finally:
            self.kill(actors)
            if spans:
                self._account(spans)
            log.info(
                "ray: %d actors, %d files; connect %.1f s, actor start-up %.1f s, "
                "work %.1f s (%.1f files/s once warm, actors busy %.0f%%, %.0f ms CPU a file)",
                self.stats.actors,
                self.stats.files,
                self.stats.connect,
                self.stats.startup,
                self.stats.work,
                self.stats.warm_rate,
                100 * self.stats.busy / max(self.stats.work * max(self.stats.actors, 1), 1e-9),
                1000 * self.stats.cpu / max(self.stats.files, 1),
            )
        if nxt_pos != len(paths):  # pragma: no cover - Ray lost rows without raising
            raise EngineError(f"Ray returned {nxt_pos} of {len(paths)} results")


# --------------------------------------------------------------------------- video frames
class _FrameActor:
    """Holds one pipeline (as a worker process of the local pool would) and runs the video
    module's per-frame worker functions on frames sent to it."""

    def __init__(self, config: PipelineConfig, cwd: str, env: dict[str, str]):
        from . import pipeline as pipeline_module

        _actor_setup(cwd, env)
        self.error: FacekitError | None = None
        try:
            pipeline_module._worker_pipeline = pipeline_module.Pipeline(config)
        except FacekitError as exc:  # raised again by every call: one clear error, no restarts
            self.error = exc

    def run(self, fn: Any, rgb: Any) -> Any:
        if self.error is not None:
            raise self.error
        return fn(rgb)


class _FrameFuture:
    """``concurrent.futures``-like result of one frame: Ray errors become facekit errors."""

    def __init__(self, ref: Any):
        self.ref = ref

    def result(self) -> Any:
        import ray

        return _get(ray, self.ref)


class RayFramePool:
    """A pool of :class:`_FrameActor` actors with the interface the video module uses of a
    ``ProcessPoolExecutor``: ``submit(fn, rgb)`` and ``shutdown()``.

    Frames are decoded once, in the caller (so sampling is exactly that of a local run), and
    sent to the actors round-robin; at most a few per actor are in flight. Actors are
    restartable and their calls retried when a worker process dies.
    """

    def __init__(self, ray: Any, config: PipelineConfig, actors: int):
        remote = ray.remote(_FrameActor).options(num_cpus=1, max_restarts=-1, max_task_retries=-1)
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        self.actors = [remote.remote(config, os.getcwd(), env) for _ in range(max(1, actors))]
        self._next = 0

    def submit(self, fn: Any, rgb: Any) -> _FrameFuture:
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        return _FrameFuture(actor.run.remote(fn, rgb))

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        import ray

        for a in self.actors:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(a)
        self.actors = []


def frame_pool(engine: RayEngine, config: PipelineConfig) -> tuple[RayFramePool, int]:
    """A frame pool on ``engine``'s cluster and its number of actors."""
    ray = engine._connect()
    if engine._started_local:
        from .models import store

        store.ensure(config.detector, offline=config.offline)
        for m in config.models if config.embed else ():
            store.ensure(m, offline=config.offline)
    n = engine.workers or engine.cpus()
    return RayFramePool(ray, config, n), n


# --------------------------------------------------------------------------- video segments
#: Samples per video range (one actor call). Each range seeks to its first sample and decodes
#: forward from the keyframe before it, up to a GOP of extra decoding: on the 10-minute 720p
#: benchmark video (keyframes 8.3 s apart, --interval 1: 600 samples) 13 ranges decoded 7%
#: more frames than one pass (1.2 s of CPU), 38 ranges 21% more (2.7 s). Shorter ranges
#: stream results back sooner and balance the actors better.
SEGMENT_SAMPLES = 48


def video_ranges(n: int, actors: int, mode: str) -> list[tuple[int, int]]:
    """Split ``n`` sample targets into contiguous ``(lo, hi)`` ranges for ``actors`` actors.

    ``exact`` sampling: about :data:`SEGMENT_SAMPLES` targets a range, the number of ranges
    a multiple of ``actors`` (at least two each), and with several actors the last
    ``2 x actors`` ranges (queued when the work runs out: two calls in flight per actor) halved, so that the
    actors finish within about half a range of each other instead of one waiting for the
    other's last whole range. ``keyframe`` sampling: two ranges per actor (each keyframe
    range also decodes the keyframes before it, so a range costs more the later it starts:
    measured on a 10-minute video, 8 ranges on 2 actors cost 2.4 s more actor CPU than 4 on
    1).
    """
    actors = max(1, actors)
    if mode == "keyframe":
        parts = 2 * actors
    else:
        parts = max(2 * actors, math.ceil(n / SEGMENT_SAMPLES))
        parts = math.ceil(parts / actors) * actors
    parts = max(1, min(n, parts))
    bounds = [round(k * n / parts) for k in range(parts + 1)]
    ranges = [(bounds[k], bounds[k + 1]) for k in range(parts) if bounds[k + 1] > bounds[k]]
    if mode != "keyframe" and actors > 1 and len(ranges) > 2 * actors:
        tail = len(ranges) - 2 * actors
        halves = []
        for lo, hi in ranges[tail:]:
            mid = (lo + hi) // 2
            halves += [(lo, mid), (mid, hi)] if lo < mid < hi else [(lo, hi)]
        ranges = ranges[:tail] + halves
    return ranges


class _SegmentActor:
    """Decodes, detects and embeds one range of a video's sample times per call (models
    loaded once, in ``__init__``).

    Only the detections, the embeddings of every face, the tracker's thumbnails and small
    report crops travel back (:class:`~facekit.video.DetectedSample`): never frames or
    aligned crops.
    """

    def __init__(self, config: PipelineConfig, cwd: str, env: dict[str, str]):
        import time

        from .pipeline import Pipeline

        self.started = time.time()
        _actor_setup(cwd, env)
        self.error: FacekitError | None = None
        try:
            self.pipeline: Any = Pipeline(config)
        except FacekitError as exc:  # raised again by every call: one clear error, no restarts
            self.error = exc
            self.pipeline = None
        self.ready_at = time.time()

    def ready(self) -> tuple[float, float, int]:
        """``(started, ready_at, pid)``: when the actor began and finished loading its models."""
        return self.started, self.ready_at, os.getpid()

    def run(
        self, path: str, sampling: dict[str, Any], lo: int, hi: int, crops: bool
    ) -> tuple[list[Any], tuple[int, int, str | None], tuple[float, float, float]]:
        """Samples ``lo`` to ``hi - 1`` of the plan: the :class:`~facekit.video.DetectedSample`
        list, ``(frames decoded, seeks, warning)`` and ``(start, end, CPU seconds)`` of the
        work."""
        import time

        from .decode import DecodeStats
        from .video import detect_range

        if self.error is not None:
            raise self.error
        t0, c0 = time.time(), time.process_time()
        stats = DecodeStats()
        out = detect_range(self.pipeline, path, sampling, (lo, hi), crops=crops, stats=stats)
        spent = (t0, time.time(), time.process_time() - c0)
        return out, (stats.decoded, stats.seeks, stats.warning), spent


def _get(ray: Any, ref: Any) -> Any:
    """``ray.get`` with Ray's errors turned into facekit errors (one line)."""
    try:
        return ray.get(ref)
    except FacekitError as exc:  # a RayTaskError that is also the original error class
        cause = getattr(exc, "cause", None)
        raise (cause if isinstance(cause, FacekitError) else exc) from None
    except Exception as exc:
        if os.environ.get("FACEKIT_DEBUG"):
            raise
        raise EngineError(f"Ray: {_error_line(exc)}") from None


def video_segments(
    engine: RayEngine,
    config: PipelineConfig,
    path: str,
    sampling: dict[str, Any],
    *,
    crops: bool,
    stats: Any,
) -> Iterator[DetectedSample] | None:
    """Decode, detect and embed a video's samples on the cluster, each actor taking its own
    ranges of sample times (it seeks there with PyAV), so this process decodes and embeds
    nothing.

    The sampling plan is computed here exactly as :func:`facekit.decode.iter_frames` computes
    it, split into contiguous ranges (:func:`video_ranges`), and each range is
    sampled by the same code with ``select`` (:func:`facekit.video.detect_range`): the frames
    are those of a whole run. Samples come back per range, in time order.

    Args:
        sampling: :func:`~facekit.decode.iter_frames` keyword arguments (interval, frames,
            start, end, sampling, min_samples).
        crops: also cut the report's face crops (the frames stay on the workers).
        stats: a :class:`~facekit.decode.DecodeStats` filled in as for a local run
            (``decoded`` and ``seeks`` summed over the segments).

    Returns:
        An iterator of :class:`~facekit.video.DetectedSample`, or ``None`` when the plan
        cannot be split (every frame, or a file without a duration): the caller then decodes
        here and only detection is distributed. :attr:`RayEngine.stats` describes the run
        once the iterator is exhausted (``files``: samples).

    Raises:
        InputError: the file cannot be opened (checked here first, as a local run does).
    """

    from .decode import check_start, plan_samples, probe

    info = probe(path)
    check_start(info, path, sampling.get("start"))
    plan = plan_samples(info, path, **sampling)
    if plan.targets is None or plan.unbounded or plan.mode not in ("exact", "keyframe"):
        return None
    stats.info = info
    stats.sampling = plan.mode
    stats.adapted = plan.adapted
    stats.planned = plan.planned
    connected = engine._ray is not None
    engine._connect()
    engine._ensure_models(config)
    n = len(plan.targets)
    n_actors = max(1, min(engine.workers or engine.cpus(), n))
    ranges = video_ranges(n, n_actors, plan.mode)
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    engine.stats = RunStats(connect=0.0 if connected else engine.connect_seconds)
    actors = engine.actors(_SegmentActor, n_actors, config, os.getcwd(), env)
    return _fold_segments(engine, actors, path, sampling, ranges, crops, stats)


def _fold_segments(
    engine: RayEngine,
    actors: list[Any],
    path: str,
    sampling: dict[str, Any],
    ranges: list[tuple[int, int]],
    crops: bool,
    stats: Any,
) -> Iterator[DetectedSample]:
    import time

    ray = engine._ray
    queue = iter(enumerate(ranges))
    inflight: dict[Any, tuple[Any, int]] = {}
    done: dict[int, Any] = {}
    index = {id(a): k for k, a in enumerate(actors)}
    spans: list[tuple[int, float, float, int]] = []  # actor, start, end, samples

    def submit(actor: Any) -> None:
        nxt = next(queue, None)
        if nxt is not None:
            k, (lo, hi) = nxt
            inflight[actor.run.remote(path, sampling, lo, hi, crops)] = (actor, k)

    def collect(refs: list[Any]) -> None:
        for ref in refs:
            actor, j = inflight.pop(ref)
            done[j] = _get(ray, ref)
            samples, _, (start, end, cpu) = done[j]
            spans.append((index[id(actor)], start, end, len(samples)))
            engine.stats.cpu += cpu
            submit(actor)

    last = -math.inf
    t0 = time.perf_counter()
    asked = time.time()
    try:
        readies = [a.ready.remote() for a in actors]
        for a in actors:
            for _ in range(IN_FLIGHT):
                submit(a)
        engine.stats.actors = len(actors)
        for k in range(len(ranges)):
            while k not in done:
                ready, _ = ray.wait(list(inflight), num_returns=1)
                collect(ready)
            if inflight:  # keep every actor fed while this process folds the range
                ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
                collect(ready)
            samples, (decoded, seeks, warning), _ = done.pop(k)
            stats.decoded += decoded
            stats.seeks += seeks
            for item in samples:
                if item.frame.time <= last + 1e-6:
                    continue  # a frame that also served the previous range's last target
                last = item.frame.time
                stats.kept += 1
                yield item
            if warning:  # a whole run stops at the damage: so do we
                stats.warning = warning
                log.warning("%s", warning)
                break
        engine.stats.startup = max(r[1] for r in ray.get(readies)) - asked
    finally:
        engine.kill(actors)
        wall = time.perf_counter() - t0
        st = engine.stats
        st.files = stats.kept
        if spans:
            engine._account(spans)
        log.info(
            "ray: %d actors, %d segments, %d samples; connect %.1f s, start-up + work %.1f s "
            "(actors busy %.0f%%); actor start-up %.1f s, work %.1f s (%.1f samples/s once "
            "warm, %.0f ms CPU a sample)",
            len(actors),
            len(ranges),
            stats.kept,
            engine.connect_seconds,
            wall,
            100 * st.busy / max(wall * len(actors), 1e-9),
            st.startup,
            st.work,
            st.warm_rate,
            1000 * st.cpu / max(sum(n for *_, n in spans), 1),
        )
