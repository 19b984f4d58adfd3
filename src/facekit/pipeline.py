"""The photo pipeline: decode -> detect -> align -> embed, for one image or many.

:class:`Pipeline` holds one detector and one :class:`~facekit.embed.Ensemble`, loaded once.
:func:`run_paths` streams many files through it, in input order, using a pool of worker
processes (one per core) for large batches; each worker loads the models once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .detect import DEFAULT_DETECTOR, DEFAULT_MAX_SIDE
from .embed import DEFAULT_MODELS
from .errors import FacekitError
from .types import Embeddings, Faces, ImageResult

log = logging.getLogger(__name__)

__all__ = [
    "PipelineConfig",
    "Pipeline",
    "run_paths",
    "default_workers",
    "worker_pool",
    "stop_pool",
    "watch_parent",
]

#: Below this many files the work runs in the calling process: starting workers and loading
#: models in each costs about a second.
POOL_MIN_FILES = 8


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline runs.

    Attributes:
        detector: detector name (``dlib-hog`` by default: ships on PyPI, works offline).
        models: recogniser names of the ensemble.
        weights: ensemble weights, one per model (``None``: equal).
        max_side: long side of the copy detection runs on; larger photos are downscaled.
        upsample: detector upsampling (dlib detectors): 1 finds faces half as small, 4x slower.
        min_face: ignore faces whose box is smaller than this many pixels (0: keep all).
        flip: force mirror averaging on/off for every model (``None``: each model's default).
        embed: compute embeddings (``False``: detection only).
        digest: compute each file's SHA-256 (used for incremental re-runs).
        offline: forbid model downloads (``None``: ``FACEKIT_OFFLINE``).
    """

    detector: str = DEFAULT_DETECTOR
    models: tuple[str, ...] = DEFAULT_MODELS
    weights: tuple[float, ...] | None = None
    max_side: int = DEFAULT_MAX_SIDE
    upsample: int = 0
    min_face: int = 0
    flip: bool | None = None
    embed: bool = True
    digest: bool = True
    offline: bool | None = None
    detector_options: tuple[tuple[str, Any], ...] = field(default=())

    def detector_kwargs(self) -> dict[str, Any]:
        opts = dict(self.detector_options)
        if self.detector.startswith("dlib") and self.upsample:
            opts.setdefault("upsample", self.upsample)
        return opts


class Pipeline:
    """Detector + ensemble, loaded once.

    Example:
        >>> pipe = Pipeline(PipelineConfig(models=("dlib", "mobilefacenet")))
        >>> result = pipe.process_path("photo.jpg")
        >>> result.faces.xywh, result.embeddings.vectors["dlib"].shape
    """

    def __init__(self, config: PipelineConfig | None = None, progress: Any = None):
        from .detect import get_detector
        from .embed import get_ensemble

        self.config = config or PipelineConfig()
        self.detector = get_detector(
            self.config.detector,
            offline=self.config.offline,
            progress=progress,
            **self.config.detector_kwargs(),
        )
        self.ensemble = (
            get_ensemble(
                self.config.models,
                self.config.weights,
                offline=self.config.offline,
                progress=progress,
                flip=self.config.flip,
            )
            if self.config.embed
            else None
        )

    @property
    def fingerprints(self) -> dict[str, str]:
        return self.ensemble.fingerprints if self.ensemble else {}

    def analyse(self, rgb: np.ndarray) -> tuple[Faces, Embeddings]:
        """Detect and embed every face in an RGB array (``(H, W, 3) uint8``)."""
        from .detect import detect_image

        faces = detect_image(self.detector, rgb, self.config.max_side)
        if self.config.min_face and len(faces):
            faces = faces[faces.size >= self.config.min_face]
        if self.ensemble is None:
            return faces, Embeddings({})
        return faces, self.ensemble.embed(rgb, faces)

    def process_rgb(self, rgb: np.ndarray, source: str, time: float | None = None) -> ImageResult:
        """Run the pipeline on an already-decoded frame or photo."""
        faces, emb = self.analyse(rgb)
        faces.metadata["source"] = source
        return ImageResult(source, rgb.shape[1], rgb.shape[0], faces, emb, time=time)

    def process_path(self, path: str) -> ImageResult:
        """Load, detect and embed one file. A bad file gives ``ImageResult.error``, never an exception."""
        from .imageio import file_digest, load_image

        try:
            img = load_image(path)
            result = self.process_rgb(img.rgb, str(path))
            if self.config.digest:
                result.digest = file_digest(path)
            return result
        except FacekitError as exc:
            return ImageResult(str(path), error=_one_line(exc, path))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a decoder or model crash on one file must not end the batch
            if os.environ.get("FACEKIT_DEBUG"):
                raise
            log.debug("unexpected error on %s", path, exc_info=True)
            return ImageResult(str(path), error=_one_line(exc, path))


def _one_line(exc: BaseException, path: str) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return msg if str(path) in msg else f"{path}: {msg}"


def default_workers() -> int:
    """Worker processes to use: ``FACEKIT_WORKERS`` or the number of usable cores."""
    env = os.environ.get("FACEKIT_WORKERS")
    if env and env.isdigit():
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


_worker_pipeline: Pipeline | None = None


def _worker_init(config: PipelineConfig, parent_pid: int | None = None) -> None:
    """Initialiser of every worker process (photos here, video frames in :mod:`facekit.video`)."""
    global _worker_pipeline
    from .models.runtime import set_threads

    watch_parent(parent_pid or os.getppid())
    # Ctrl-C reaches the whole process group: the parent stops the workers itself, so a
    # worker must not die mid-task with its own KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(1)
    logging.basicConfig(level=logging.WARNING)
    _worker_pipeline = Pipeline(config)


#: How often (seconds) a worker checks that its parent is still alive.
PARENT_POLL_SECONDS = 0.5


def watch_parent(parent_pid: int) -> None:
    """Make this (worker) process exit when ``parent_pid`` dies, even by SIGKILL.

    On Linux the kernel sends SIGKILL when the parent goes (``PR_SET_PDEATHSIG``); everywhere,
    a daemon thread also checks every :data:`PARENT_POLL_SECONDS` that the parent is still the
    parent (an orphan is re-parented to init or a subreaper) and exits if not.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above ran
        os._exit(1)

    def poll() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=poll, name="facekit-parent-watch", daemon=True).start()


def worker_pool(config: PipelineConfig, workers: int) -> Any:
    """A spawn-context process pool whose workers hold a loaded :class:`Pipeline` each and
    exit when this process dies. Stop it with :func:`stop_pool`."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")  # fork is unsafe once ONNX Runtime threads exist
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(config, os.getpid()),
    )


def stop_pool(pool: Any, *, wait: bool = False) -> None:
    """Stop a pool from :func:`worker_pool` now: pending work is cancelled and the workers are
    terminated (not left to finish their task), so an interrupted run leaves no process behind."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    # The pool's own manager thread may be reaping the same processes at this moment (a
    # broken pool, an interrupt): any of these calls can then meet a closed handle.
    for proc in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if proc.is_alive():
                proc.terminate()
    for proc in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            proc.join(timeout=5 if wait else 1)
            if proc.is_alive():  # pragma: no cover - a worker stuck in native code
                proc.kill()


def _worker_run(path: str) -> ImageResult:
    assert _worker_pipeline is not None
    return _worker_pipeline.process_path(path)


def run_paths(
    config: PipelineConfig,
    paths: Iterable[str],
    *,
    workers: int | None = None,
    pipeline: Pipeline | None = None,
    progress: Any = None,
    engine: Any = None,
) -> Iterator[ImageResult]:
    """Process files through the pipeline, yielding one :class:`ImageResult` per path, in order.

    Args:
        config: what to run.
        paths: file paths (already expanded; see :func:`facekit.imageio.iter_image_paths`).
        workers: worker processes (default: :func:`default_workers`); 1 runs in this process.
        pipeline: an already-loaded pipeline for in-process work.
        progress: download progress callback used if a model must be fetched first.
        engine: a :class:`~facekit.engine.Engine` other than local (e.g. Ray) to run on.
    """
    paths = list(paths)
    if engine is not None and engine.name != "local":
        yield from engine.map_paths(config, paths, progress=progress)
        return
    workers = default_workers() if workers is None else max(1, workers)
    if workers == 1 or len(paths) < POOL_MIN_FILES:
        pipe = pipeline or Pipeline(config, progress)
        for p in paths:
            yield pipe.process_path(p)
        return

    from .models import store

    # Fetch (and verify) every model here, once, so workers only load files.
    store.ensure(config.detector, offline=config.offline, progress=progress)
    for m in config.models if config.embed else ():
        store.ensure(m, offline=config.offline, progress=progress)
    chunk = max(1, min(8, len(paths) // (workers * 8)))
    pool = worker_pool(config, workers)
    try:
        yield from pool.map(_worker_run, paths, chunksize=chunk)
        pool.shutdown(wait=True)
    finally:
        # A consumer that stops early (GeneratorExit) or an error: never leave workers behind.
        stop_pool(pool)


def embed_incremental(
    config: PipelineConfig,
    paths: Sequence[str],
    previous: Any = None,
    *,
    force: bool = False,
    workers: int | None = None,
    progress: Any = None,
    engine: Any = None,
) -> Iterator[tuple[ImageResult, bool]]:
    """Like :func:`run_paths`, but reuse ``previous`` (a :class:`~facekit.facetable.FaceTable`)
    for files whose SHA-256 is unchanged.

    Yields:
        ``(result, reused)`` per path, in input order.
    """
    from .facetable import result_from_rows
    from .imageio import file_digest
    from .pathtext import path_text

    reuse: dict[str, str] = {}
    if previous is not None and not force:
        for p in paths:
            old = previous.files.get(path_text(p))  # the table holds paths as text
            if not old or old.get("error") or not old.get("digest"):
                continue
            try:
                if file_digest(p) == old["digest"]:
                    reuse[p] = old["digest"]
            except Exception:  # unreadable now: let the pipeline report it
                continue
    todo = [p for p in paths if p not in reuse]
    fresh = run_paths(config, todo, workers=workers, progress=progress, engine=engine)
    for p in paths:
        if p in reuse:
            yield result_from_rows(previous, p), True
        else:
            yield next(fresh), False
