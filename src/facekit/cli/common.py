"""Shared CLI plumbing: options, error handling, logging, progress bars.

Every command uses these so that options, exit codes and stderr output look the same
everywhere. Nothing here imports the heavy libraries (dlib, OpenCV, ONNX Runtime, PyAV).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from ..errors import FacekitError
from ..render import Format

T = TypeVar("T")

# --------------------------------------------------------------------------- options
FormatOpt = Annotated[
    Format | None,
    typer.Option(
        "--format",
        "-f",
        case_sensitive=False,
        help="Output format. Default: table on a terminal, ndjson when piped.",
    ),
]
ModelsOpt = Annotated[
    str | None,
    typer.Option(
        "--models",
        "-m",
        metavar="LIST",
        help="Recognisers, comma-separated, e.g. dlib,mobilefacenet. Default: dlib (works offline).",
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        metavar="LIST",
        help="Ensemble weights, one per model, e.g. 1,2. Default: equal.",
    ),
]
DetectorOpt = Annotated[
    str | None,
    typer.Option(
        "--detector",
        metavar="NAME",
        help="Face detector: dlib-hog (default), dlib-cnn, yunet, retinaface, yolov8-face.",
    ),
]
UpsampleOpt = Annotated[
    int | None,
    typer.Option(
        "--upsample",
        min=0,
        max=3,
        help="Upsample photos before detection (dlib detectors) to find faces half as small; 4x slower per step.",
    ),
]
MaxSideOpt = Annotated[
    int,
    typer.Option(
        "--max-side", min=64, help="Detect on a copy whose long side is at most this many pixels."
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers", "-j", min=1, help="Worker processes. Default: one per core ($FACEKIT_WORKERS)."
    ),
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        metavar="local|ray",
        help="Where detection and embedding run: local (worker processes here) or ray (a Ray cluster; pip install 'facekit-cli[ray]').",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to use with --engine ray. Default: $RAY_ADDRESS, else a local Ray instance for this run.",
    ),
]
MinConfidenceOpt = Annotated[
    float | None,
    typer.Option(
        "--min-confidence",
        min=0,
        max=100,
        help="Name a face only at or above this confidence (default 50 = the calibrated threshold); weaker faces count as unknown.",
    ),
]
MaxStrangersOpt = Annotated[
    float | None,
    typer.Option(
        "--max-strangers",
        min=0.0001,
        max=0.5,
        metavar="RATE",
        help="Share of photos of people not in the database that may be named, e.g. 0.01 (default: the rate the database was built for; see docs/accuracy.md).",
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar, summary or warnings on stderr.")
]
VerboseOpt = Annotated[
    int,
    typer.Option("--verbose", "-v", count=True, help="More log output on stderr (-vv for debug)."),
]
OfflineOpt = Annotated[
    bool,
    typer.Option("--offline", help="Never use the network to fetch models ($FACEKIT_OFFLINE=1)."),
]
DbOpt = Annotated[
    Path | None,
    typer.Option(
        "--db",
        "-d",
        metavar="DB",
        help="Face database folder. Default: $FACEKIT_DB or <user data dir>/facekit/faces.db.",
    ),
]


def default_db() -> Path:
    """``$FACEKIT_DB`` or ``<user data dir>/facekit/faces.db``."""
    env = os.environ.get("FACEKIT_DB")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("facekit", appauthor=False)) / "faces.db"


def resolve_format(fmt: Format | None) -> Format:
    if fmt is not None:
        return fmt
    return Format.table if sys.stdout.isatty() else Format.ndjson


# --------------------------------------------------------------------------- consoles, logging
def stderr() -> Console:
    """A Rich console on the current ``sys.stderr``."""
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_facekit", False):
            root.removeHandler(h)
    from rich.logging import RichHandler

    handler = RichHandler(console=stderr(), show_time=False, show_path=False, markup=False)
    handler._facekit = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("PIL", "matplotlib", "numba", "h5py", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def error_line(message: str) -> None:
    """One red ``error:`` line on stderr."""
    stderr().print(f"[red]error:[/red] {message}", markup=True, highlight=False)


def warn_line(message: str) -> None:
    stderr().print(f"[yellow]warning:[/yellow] {message}", markup=True, highlight=False)


def _debug() -> bool:
    return (
        bool(os.environ.get("FACEKIT_DEBUG"))
        or "PYTEST_CURRENT_TEST" in os.environ
        and bool(os.environ.get("FACEKIT_RAISE"))
    )


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn library errors into one stderr line and the documented exit code."""
    try:
        yield
    except FacekitError as exc:
        if _debug():
            raise
        error_line(" ".join(str(exc).split()))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        error_line("interrupted")
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `facekit ... | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        finally:
            raise typer.Exit(0) from None


# --------------------------------------------------------------------------- progress
class DownloadBars:
    """A ``(name, done, total)`` callback drawing Rich download bars on stderr."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if self.quiet:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        if self._progress is None:
            self._progress = Progress(
                TextColumn("downloading {task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=stderr(),
                transient=False,
            )
            self._progress.start()
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=total)
        self._progress.update(self._tasks[name], completed=done, total=total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def track(items: Iterable[T], total: int | None, description: str, quiet: bool) -> Iterator[T]:
    """Wrap an iterator in a Rich progress bar on stderr (nothing when ``quiet``)."""
    if quiet:
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr(),
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


def parse_weights(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(
            f"--weights must be numbers separated by commas, got {text!r}"
        ) from None


@contextmanager
def engine_scope(name: str, address: str | None, workers: int | None) -> Iterator[Any]:
    """The :class:`~facekit.engine.Engine` named by ``--engine``, closed (local Ray stopped) on exit."""
    from ..engine import get_engine

    engine = get_engine(name, address=address, workers=workers)
    try:
        yield engine
    finally:
        engine.close()
