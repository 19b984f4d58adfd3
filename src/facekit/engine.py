"""Execution engines: where the embarrassingly parallel part of the pipeline runs.

The pipeline's per-file work (decode -> detect -> align -> embed) is the same everywhere; an
engine only decides *where* it runs and hands the results back **in input order**:

- :class:`LocalEngine` (default): this process, or a pool of worker processes (one per core),
  see :func:`facekit.pipeline.run_paths`.
- :class:`~facekit.ray_engine.RayEngine`: the actors of a Ray cluster (``facekit-cli[ray]``),
  each of which loads the models once.

Everything that must be atomic or sequential (database commits, calibration, reports) stays
in the calling process whatever the engine.

Example:
    >>> engine = get_engine("ray", address="auto")
    >>> for result in engine.map_paths(PipelineConfig(), ["a.jpg", "b.jpg"]):
    ...     print(result.source, len(result.faces))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import PipelineConfig
    from .types import ImageResult

__all__ = ["Engine", "LocalEngine", "ENGINES", "get_engine"]

ENGINES = ("local", "ray")


class Engine(Protocol):
    """Runs the per-file pipeline over many paths and yields one result per path, in order."""

    name: str

    def map_paths(
        self, config: PipelineConfig, paths: Sequence[str], *, progress: Any = None
    ) -> Iterator[ImageResult]:
        """Yield one :class:`~facekit.types.ImageResult` per path, in input order.

        A file that cannot be processed gives a result with ``error`` set; it never ends
        the batch.
        """
        ...

    def close(self) -> None:
        """Release what the engine started (worker processes, a local cluster)."""
        ...


class LocalEngine:
    """This machine: in-process for small batches, else one worker process per core."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers

    def map_paths(
        self, config: PipelineConfig, paths: Sequence[str], *, progress: Any = None
    ) -> Iterator[ImageResult]:
        from .pipeline import run_paths

        return run_paths(config, paths, workers=self.workers, progress=progress)

    def close(self) -> None:
        return None


def get_engine(
    name: str | None, *, address: str | None = None, workers: int | None = None
) -> Engine:
    """The engine called ``name`` (``local`` or ``ray``).

    Args:
        name: ``local`` (default) or ``ray``.
        address: Ray cluster address (``ray`` only; default ``$RAY_ADDRESS``, else a local
            Ray instance is started for this process and stopped with :meth:`Engine.close`).
        workers: worker processes (local) or pipeline actors (ray); default one per core
            (local) or one per CPU of the Ray cluster.

    Raises:
        UsageError: unknown engine, or ``--ray-address`` without ``--engine ray``.
        UsageError: ``ray`` was asked for but the ``ray`` extra is not installed, or the
            cluster cannot be reached.
    """
    name = (name or "local").lower()
    if name == "local":
        if address:
            raise UsageError("--ray-address needs --engine ray")
        return LocalEngine(workers)
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(address=address, workers=workers)
    raise UsageError(f"unknown engine {name!r} (choose from: {', '.join(ENGINES)})")
