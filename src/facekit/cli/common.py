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
from rich.text import Text

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
        help="Recognisers, comma-separated, e.g. sface,dlib; 'best' = strongest available commercial-friendly ensemble, 'best-nc' = non-commercial allowed. Default: dlib (works offline).",
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
        help="Face detector: dlib-hog (default), dlib-cnn, yunet, retinaface, scrfd, scrfd-500m, blazeface, yolov8-face; 'best' / 'best-nc' as for --models.",
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
        help="Where detection and embedding run: local (worker processes here) or ray (a Ray cluster; pip install 'facekit-cli\\[ray]').",
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
MaxYawOpt = Annotated[
    float | None,
    typer.Option(
        "--max-yaw",
        min=0,
        max=180,
        metavar="DEG",
        help="Do not use faces turned further than this from frontal (head yaw estimated from the landmarks, e.g. 45; see docs/pose.md): identify reports them as skipped, embed leaves them out, build-index skips such gallery photos.",
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
    """A Rich console on the current ``sys.stderr``.

    Markup is off: messages carry user text (paths such as ``bad/[red]x.jpg``) that must be
    printed as it is. Style with :class:`rich.text.Text` or ``style=`` instead.
    """
    return Console(file=sys.stderr, highlight=False, soft_wrap=True, markup=False)


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log level from ``-v``/``-q`` (``-q`` keeps errors), Rich log lines on stderr, and
    SIGTERM handled like Ctrl-C (see :func:`handle_errors`)."""
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_facekit", False):
            root.removeHandler(h)
    handler = _LineHandler()
    handler._facekit = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("PIL", "matplotlib", "numba", "h5py", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    install_sigterm()


class _LineHandler(logging.Handler):
    """Each log record as one ``level: message`` line on stderr, like :func:`warn_line`.

    (Rich's ``RichHandler`` wrapped long messages over several lines at the console width,
    80 columns when stderr is a file or pipe, so ``grep``/``tail`` of a cron log saw pieces.)
    A traceback attached to the record is printed after the line only with ``-vv``.
    """

    _STYLES = {"warning": "yellow", "error": "red", "critical": "red"}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = record.levelname.lower()
            console = stderr()
            console.print(
                Text.assemble(
                    (f"{level}:", self._STYLES.get(level, "")), " ", _one_line(record.getMessage())
                )
            )
            if record.exc_info and logging.getLogger().isEnabledFor(logging.DEBUG):
                import traceback

                console.out("".join(traceback.format_exception(*record.exc_info)).rstrip())
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def error_line(message: str) -> None:
    """One red ``error:`` line on stderr (shown even with ``-q``)."""
    stderr().print(Text.assemble(("error:", "red"), " ", _one_line(message)))


def warn_line(message: str) -> None:
    """One yellow ``warning:`` line on stderr (callers skip it under ``-q``)."""
    stderr().print(Text.assemble(("warning:", "yellow"), " ", _one_line(message)))


def file_error(message: str) -> None:
    """A per-file problem (the batch goes on): one ``error:`` line, shown even with ``-q``."""
    error_line(message)


def _one_line(message: str) -> str:
    from ..pathtext import path_text

    return path_text(" ".join(str(message).split()))


def _debug() -> bool:
    return (
        bool(os.environ.get("FACEKIT_DEBUG"))
        or "PYTEST_CURRENT_TEST" in os.environ
        and bool(os.environ.get("FACEKIT_RAISE"))
    )


#: Exit codes beyond the library's (see errors.py and README "Exit codes").
EXIT_INTERNAL = 70
EXIT_NO_MEMORY = 71
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

ISSUES_URL = "https://github.com/facekit-dev/facekit/issues"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``kill``, a service manager): unwinds like Ctrl-C, exits 143.

    A KeyboardInterrupt subclass so that every ``except KeyboardInterrupt: raise`` and every
    cleanup path written for Ctrl-C (stopping worker processes, removing temp files) runs.
    """


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def install_sigterm() -> None:
    """Handle SIGTERM like SIGINT in this (main) process."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn every error into one stderr line and a documented exit code.

    FacekitError -> its ``exit_code``; Ctrl-C -> 130; SIGTERM -> 143; out of memory -> 71;
    an OSError no library code caught (an output that cannot be written) -> 74 naming the
    path; anything else is a bug -> 70 with how to report it. ``FACEKIT_DEBUG=1`` re-raises
    (traceback) instead.
    """
    import click

    passthrough: tuple[type[BaseException], ...] = (
        typer.Exit,
        typer.Abort,
        typer.BadParameter,
        click.exceptions.Exit,
        click.exceptions.Abort,
        click.ClickException,
    )
    extra = getattr(getattr(typer, "exceptions", None), "TyperException", None)
    if isinstance(extra, type):
        passthrough += (extra,)
    try:
        yield
    except passthrough:
        raise  # typer.Exit / BadParameter: already the intended outcome
    except FacekitError as exc:
        if _debug():
            raise
        error_line(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except Terminated:
        error_line("terminated (SIGTERM)")
        raise typer.Exit(EXIT_TERMINATED) from None
    except KeyboardInterrupt:
        error_line("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:  # `facekit ... | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        finally:
            raise typer.Exit(0) from None
    except MemoryError as exc:
        if _debug():
            raise
        detail = _one_line(str(exc))
        error_line(
            "out of memory"
            + (f" ({detail})" if detail else "")
            + ": try fewer inputs at once or a machine with more memory"
        )
        raise typer.Exit(EXIT_NO_MEMORY) from None
    except OSError as exc:
        if _debug():
            raise
        from ..errors import OutputError, os_error_line

        error_line(os_error_line(exc))
        raise typer.Exit(OutputError.exit_code) from None
    except Exception as exc:
        if _debug():
            raise
        error_line(
            f"internal error: {type(exc).__name__}: {_one_line(str(exc))[:300]} -- this is a bug; "
            f"please report it at {ISSUES_URL} with the traceback that FACEKIT_DEBUG=1 shows"
        )
        raise typer.Exit(EXIT_INTERNAL) from None


# --------------------------------------------------------------------------- output paths
def check_output_dir(path: Path | None, option: str) -> Path | None:
    """Check (before any work) that ``path`` can be an output folder; create it if missing.

    Raises:
        UsageError: ``path`` exists and is not a folder.
        OutputError: the folder cannot be created or written (read-only, permission denied).
    """
    from ..errors import OutputError, UsageError, os_error_line

    if path is None:
        return None
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{option} {path}: a parent of this folder is a file") from None
    except NotADirectoryError:
        raise UsageError(f"{option} {path}: a parent of this folder is a file") from None
    except OSError as exc:
        raise OutputError(f"{option} {os_error_line(exc, path)}") from None
    _probe_writable(path, option)
    return path


def check_output_file(path: Path | None, option: str) -> Path | None:
    """Check (before any work) that ``path`` can be written as a file: not a folder, its
    folder exists and is writable. ``-`` (stdout) is accepted as it is.

    Raises:
        UsageError: ``path`` is a folder, or its folder is missing or is a file.
        OutputError: the folder cannot be written (read-only, permission denied).
    """
    from ..errors import UsageError

    if path is None or str(path) == "-":
        return path
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder, not a file")
    parent = path.parent
    if not parent.exists():
        raise UsageError(f"{option} {path}: the folder {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is a file, not a folder")
    _probe_writable(parent, option, target=path)
    return path


def _probe_writable(folder: Path, option: str, target: Path | None = None) -> None:
    """Create and remove a temp file in ``folder``: the only check that sees read-only
    mounts, ACLs and root squash the same way the real write will."""
    import tempfile

    from ..errors import OutputError, os_error_line

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".facekit-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"{option} {os_error_line(exc, target or folder)}") from None


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


class ProgressBar:
    """One progress line on stderr: count and total, a bar and the time left when the total is
    known, a spinner and the count when it is not. Nothing at all when ``quiet``.

    For callback-style progress (``on_result``/``on_sample`` hooks); :func:`track` wraps an
    iterator with it. The total may be learnt late (:meth:`set_total`).

    Example:
        >>> with ProgressBar("embedding gallery", total=len(files), quiet=quiet) as bar:
        ...     build_index(..., on_result=lambda r: bar.advance())
    """

    def __init__(
        self, description: str, total: int | None = None, *, quiet: bool = False, unit: str = ""
    ):
        self.description = description
        self.total = total
        self.quiet = quiet
        self.unit = unit
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.quiet or self._progress is not None:
            return
        if not stderr().is_terminal:
            # a transient bar on a file or pipe draws nothing useful and leaves a blank line
            self.quiet = True
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            _CountColumn(self.unit),
            TimeElapsedColumn(),
            _RemainingColumn(),
            console=stderr(),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=self.total)

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def advance(self, n: int = 1, description: str | None = None) -> None:
        if self.quiet:
            return
        if self._progress is None:
            self.start()
        kw: dict[str, Any] = {"advance": n}
        if description is not None:
            kw["description"] = description
        self._progress.update(self._task, **kw)

    @property
    def completed(self) -> float:
        if self._progress is None:
            return 0
        return float(self._progress.tasks[0].completed)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _progress_columns() -> tuple[Any, Any]:
    from rich.progress import ProgressColumn
    from rich.text import Text as _Text

    class CountColumn(ProgressColumn):
        """``12/790 files`` with a known total, ``12 files`` without (never ``12/?``)."""

        def __init__(self, unit: str = ""):
            super().__init__()
            self.unit = f" {unit}" if unit else ""

        def render(self, task: Any) -> Any:
            done = int(task.completed)
            if task.total is None:
                return _Text(f"{done}{self.unit}", style="progress.download")
            return _Text(f"{done}/{int(task.total)}{self.unit}", style="progress.download")

    class RemainingColumn(ProgressColumn):
        """``ETA 0:01:23`` once the total and a rate are known; blank otherwise."""

        max_refresh = 0.5

        def render(self, task: Any) -> Any:
            left = task.time_remaining
            if task.total is None or left is None:
                return _Text("")
            m, sec = divmod(int(left), 60)
            h, m = divmod(m, 60)
            return _Text(f"ETA {h}:{m:02d}:{sec:02d}", style="progress.remaining")

    return CountColumn, RemainingColumn


def _CountColumn(unit: str = "") -> Any:  # noqa: N802 - a column factory, used like a class
    return _progress_columns()[0](unit)


def _RemainingColumn() -> Any:  # noqa: N802
    return _progress_columns()[1]()


def track(
    items: Iterable[T], total: int | None, description: str, quiet: bool, unit: str = ""
) -> Iterator[T]:
    """Wrap an iterator in a :class:`ProgressBar` on stderr (nothing when ``quiet``): pass
    the total whenever it is knowable (files, samples of a video of known duration)."""
    if quiet:
        yield from items
        return
    with ProgressBar(description, total, unit=unit) as bar:
        for item in items:
            yield item
            bar.advance()


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
