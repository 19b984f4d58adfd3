"""The Ray engine (``--engine ray``, extra ``facekit-cli[ray]``): the pipeline on a Ray cluster.

A Ray Data dataset of ``(position, path)`` rows goes through ``map_batches`` with a fixed pool
of :class:`_PipelineActor` actors; each actor builds one :class:`~facekit.pipeline.Pipeline`
(models resolved on its own node through the verified model path: ``$FACEKIT_HOME``, installed
packages, ``$FACEKIT_MODEL_MIRROR``) and processes a few paths per call. Results travel back
through Ray's object store as pickled :class:`~facekit.types.ImageResult` objects and are
re-ordered here, so callers see exactly what :func:`facekit.pipeline.run_paths` yields: one
result per path, in input order, with per-file errors as data.

Worker failures are Ray's to retry: actors are restartable and their tasks retried, so a
killed worker process costs time, not results. The calling process keeps everything that must
be sequential (database commits, calibration, reports).

Paths are sent as given and each actor works in the caller's working directory when that
folder exists on its node, so relative paths and error messages match a local run; on a real
cluster the photos must be on storage every node sees under the same path (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import EngineError, FacekitError, InputError, ModelError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import PipelineConfig
    from .types import ImageResult

log = logging.getLogger(__name__)

__all__ = ["RayEngine", "RayFramePool", "frame_pool", "ADDRESS_ENV"]

ADDRESS_ENV = "RAY_ADDRESS"
#: Paths per actor call: small, so that progress is smooth and a retried task repeats little.
BATCH_SIZE = 4
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


def _error_line(exc: BaseException) -> str:
    """The informative line of a Ray error (they carry whole remote tracebacks)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "No module named" in ln:
            return f"{ln.split('Error: ')[-1]} on the cluster's workers (install the same facekit-cli on every node)"
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


class _PipelineActor:
    """One pipeline per actor: models are loaded once, in ``__init__``."""

    def __init__(self, config: PipelineConfig, cwd: str):
        from .models.runtime import set_threads
        from .pipeline import Pipeline

        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        set_threads(1)  # one actor per CPU: no oversubscription
        self.fatal: tuple[str, str] | None = None
        try:
            self.pipeline: Any = Pipeline(config)
        except FacekitError as exc:  # reported to the caller as the same one-line error
            kind = type(exc).__name__
            self.fatal = (kind if kind in _ERRORS else "ModelError", str(exc))
            self.pipeline = None

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        out = []
        for path in batch["path"]:
            if self.pipeline is None:
                out.append(pickle.dumps(("fatal", self.fatal)))
            else:
                out.append(pickle.dumps(("ok", self.pipeline.process_path(str(path)))))
        return {"pos": np.asarray(batch["pos"]), "result": np.array(out, dtype=object)}


def _actor_class(config: PipelineConfig, cwd: str) -> type:
    """A subclass with its arguments bound in: Ray ships it with the class definition, so the
    restartable actors have no constructor arguments in the object store to lose."""

    class PipelineActor(_PipelineActor):
        def __init__(self) -> None:
            super().__init__(config, cwd)

    return PipelineActor


class RayEngine:
    """Runs the per-file pipeline on a Ray cluster.

    Args:
        address: cluster address (``ray://host:10001``, ``host:6379`` or ``auto``); default
            ``$RAY_ADDRESS``; if neither is set a local Ray instance is started for this
            process (and stopped by :meth:`close`).
        workers: pipeline actors (default: the cluster's CPUs, one actor per CPU).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None):
        self.address = address or os.environ.get(ADDRESS_ENV) or None
        self.workers = workers
        self._ray: Any = None
        self._started_local = False

    # ------------------------------------------------------------------ cluster
    def _connect(self) -> Any:
        if self._ray is not None:
            return self._ray
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
            env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
            kwargs: dict[str, Any] = dict(
                log_to_driver=False,
                logging_level=logging.ERROR,
                include_dashboard=False,
                configure_logging=True,
                runtime_env={"env_vars": env} if env else None,
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
                        # "local": a new instance even if a cluster runs on this machine
                        ray.init(address="local", num_cpus=self.workers, **kwargs)
            except Exception as exc:
                where = self.address or "a local Ray instance"
                raise EngineError(
                    f"cannot start or reach Ray at {where}: {' '.join(str(exc).split())}"
                ) from None
        _route_driver_messages(ray)
        self._ray = ray
        return ray

    def cpus(self) -> int:
        """CPUs the connected cluster offers (at least 1)."""
        ray = self._connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def close(self) -> None:
        if self._ray is not None and self._started_local:
            self._ray.shutdown()
        self._ray = None

    # ------------------------------------------------------------------ work
    def map_paths(
        self, config: PipelineConfig, paths: Sequence[str], *, progress: Any = None
    ) -> Iterator[ImageResult]:
        paths = [str(p) for p in paths]
        if not paths:
            return iter(())
        ray = self._connect()
        if self._started_local:
            # Fetch and verify every model here, once, so that local actors only load files.
            from .models import store

            store.ensure(config.detector, offline=config.offline, progress=progress)
            for m in config.models if config.embed else ():
                store.ensure(m, offline=config.offline, progress=progress)
        return self._stream(ray, config, paths)

    def _stream(self, ray: Any, config: PipelineConfig, paths: list[str]) -> Iterator[ImageResult]:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # progress is the caller's (stderr, with totals)
        ctx.execution_options.preserve_order = True
        ctx.print_on_execution_start = False
        if not os.environ.get("FACEKIT_DEBUG"):
            # Ray Data logs failures with whole tracebacks; ours is one line (EngineError)
            logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        actors = self.workers or self.cpus()
        actors = max(1, min(actors, len(paths)))
        ds = ray.data.from_items(
            [{"pos": i, "path": p} for i, p in enumerate(paths)],
            override_num_blocks=max(1, min(len(paths), actors * 8)),
        )
        # Ray Data's actor pools restart a killed actor and retry its batch (max_restarts and
        # max_task_retries default to -1 there).
        ds = ds.map_batches(
            _actor_class(config, os.getcwd()),
            batch_size=BATCH_SIZE,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
            batch_format="numpy",
        )
        pending: dict[int, ImageResult] = {}
        nxt = 0
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for pos, blob in zip(batch["pos"], batch["result"]):
                    status, value = pickle.loads(blob)
                    if status == "fatal":
                        kind, message = value
                        raise _ERRORS.get(kind, ModelError)(message)
                    pending[int(pos)] = value
                while nxt in pending:  # fold in input order
                    yield pending.pop(nxt)
                    nxt += 1
        except (FacekitError, KeyboardInterrupt, GeneratorExit):
            raise
        except Exception as exc:
            if os.environ.get("FACEKIT_DEBUG"):
                raise
            raise EngineError(f"Ray: {_error_line(exc)}") from None
        if nxt != len(paths):  # pragma: no cover - Ray lost rows without raising
            raise EngineError(f"Ray returned {nxt} of {len(paths)} results")


# --------------------------------------------------------------------------- video frames
class _FrameActor:
    """Holds one pipeline (as a worker process of the local pool would) and runs the video
    module's per-frame worker functions on frames sent to it."""

    def __init__(self, config: PipelineConfig, cwd: str):
        from . import pipeline as pipeline_module
        from .models.runtime import set_threads

        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        set_threads(1)
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

        try:
            return ray.get(self.ref)
        except FacekitError as exc:  # a RayTaskError that is also the original error class
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, FacekitError) else exc) from None
        except Exception as exc:
            if os.environ.get("FACEKIT_DEBUG"):
                raise
            raise EngineError(f"Ray: {_error_line(exc)}") from None


class RayFramePool:
    """A pool of :class:`_FrameActor` actors with the interface the video module uses of a
    ``ProcessPoolExecutor``: ``submit(fn, rgb)`` and ``shutdown()``.

    Frames are decoded once, in the caller (so sampling is exactly that of a local run), and
    sent to the actors round-robin; at most a few per actor are in flight. Actors are
    restartable and their calls retried when a worker process dies.
    """

    def __init__(self, ray: Any, config: PipelineConfig, actors: int):
        remote = ray.remote(_FrameActor).options(num_cpus=1, max_restarts=-1, max_task_retries=-1)
        self.actors = [remote.remote(config, os.getcwd()) for _ in range(max(1, actors))]
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
