"""`facekit models`: list, fetch, import, verify and locate model files.

A thin layer over :mod:`facekit.models`: each command parses options, calls one library
function, and prints the result. Data (tables, JSON, CSV, paths) goes to stdout; progress bars,
status lines and errors go to stderr.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from facekit import models

if TYPE_CHECKING:
    from rich.table import Table
from facekit.cli.common import OfflineOpt, QuietOpt, handle_errors
from facekit.errors import FacekitError, ModelError

__all__ = ["models_app"]

models_app = typer.Typer(
    name="models",
    help="List, fetch, import and verify the model files facekit uses.",
    no_args_is_help=True,
    add_completion=False,
)


class OutputFormat(str, Enum):
    """Output formats of the listing commands."""

    table = "table"
    json = "json"
    ndjson = "ndjson"
    csv = "csv"


class Kind(str, Enum):
    """Model kinds."""

    detector = "detector"
    recognizer = "recognizer"


FormatOpt = Annotated[
    OutputFormat | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format. Default: table on a terminal, ndjson when piped.",
        case_sensitive=False,
    ),
]


def _resolve(fmt: OutputFormat | None) -> OutputFormat:
    """Like every listing command: a table on a terminal, NDJSON when piped."""
    if fmt is not None:
        return fmt
    return OutputFormat.table if sys.stdout.isatty() else OutputFormat.ndjson


def _stderr() -> Console:
    # Created per call so that the current sys.stderr is used (e.g. under CliRunner).
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _stdout() -> Console:
    is_tty = sys.stdout.isatty()
    return Console(file=sys.stdout, highlight=False, width=None if is_tty else 200)


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


class _ProgressBars:
    """A :data:`facekit.models.ProgressCallback` that drives one Rich bar per file (stderr)."""

    def __init__(self, quiet: bool) -> None:
        console = _stderr()
        # A bar is only useful on a terminal; in logs it would be a one-off dump at the end.
        self.console = console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=quiet or not console.is_terminal,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _ProgressBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)


def _write_rows(rows: list[dict[str, Any]], fmt: OutputFormat, table: Callable[[], Table]) -> None:
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif fmt is OutputFormat.ndjson:
        sys.stdout.writelines(json.dumps(row) + "\n" for row in rows)
    elif fmt is OutputFormat.csv:
        flat = [{k: v for k, v in row.items() if not isinstance(v, list | dict)} for row in rows]
        fields = list(flat[0]) if flat else []
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
    else:
        _stdout().print(table())


def _status_row(st: models.ModelStatus) -> dict[str, Any]:
    spec = st.spec
    return {
        "name": spec.name,
        "kind": spec.kind,
        "state": st.state,
        "size": st.size,
        "license": spec.license,
        "commercial_use": spec.commercial_use,
        "source": st.source,
        "default": spec.default,
        "backend": spec.backend,
        "dim": spec.dim,
        "extra": spec.extra,
        "tested": spec.tested,
        "input_format": spec.input_format,
        "alignment": spec.alignment,
        "description": spec.description,
        "files": [
            {
                "name": f.file.name,
                "state": f.state,
                "source": f.source,
                "path": str(f.path) if f.path else None,
                "sha256": f.file.sha256,
            }
            for f in st.files
        ],
    }


@models_app.command("list")
def list_cmd(
    fmt: FormatOpt = None,
    kind: Annotated[
        Kind | None, typer.Option("--kind", help="Only detectors or only recognisers.")
    ] = None,
    offline: OfflineOpt = False,
) -> None:
    """List known models: state, size, licence, commercial use and source.

    Example: facekit models list --format json
    """
    fmt = _resolve(fmt)
    with handle_errors():
        statuses = models.status_all(
            kind.value if kind else None, offline=True if offline else None
        )
    rows = [_status_row(st) for st in statuses]
    if fmt is OutputFormat.csv:
        for row in rows:
            row["commercial_use"] = _yes_no(row["commercial_use"])
            row["default"] = _yes_no(row["default"])
            row["tested"] = _yes_no(row["tested"])

    def table() -> Table:
        from rich.table import Table

        styles = {"installed": "green", "fetchable": "yellow", "missing": "red"}
        t = Table(title=f"facekit models ({models.models_dir()})", title_justify="left")
        for col in ("model", "kind", "state", "size", "licence", "commercial", "source", "default"):
            t.add_column(col, justify="right" if col == "size" else "left")
        for st in statuses:
            t.add_row(
                st.spec.name,
                st.spec.kind,
                f"[{styles[st.state]}]{st.state}[/]",
                _human(st.size),
                st.spec.license,
                _yes_no(st.spec.commercial_use),
                st.source,
                "*" if st.spec.default else "",
            )
        return t

    _write_rows(rows, fmt, table)


@models_app.command("recommend")
def recommend_cmd(
    allow_noncommercial: Annotated[
        bool,
        typer.Option(
            "--allow-noncommercial",
            help="Also consider models whose licence forbids commercial use (e.g. arcface-mbf, scrfd).",
        ),
    ] = False,
    fmt: FormatOpt = None,
) -> None:
    """Recommend the strongest installed (or locally mirrored) models your licence choice allows.

    The same choice is made by `--models best --detector best` (commercial-friendly) and
    `--models best-nc --detector best-nc` (non-commercial allowed) on every command.

    Example: facekit models recommend --allow-noncommercial
    """
    from facekit.models.recommend import recommend

    fmt = _resolve(fmt)
    with handle_errors():
        rec = recommend(allow_noncommercial)
    flag = "best-nc" if allow_noncommercial else "best"
    row = {
        "models": ",".join(rec.models),
        "detector": rec.detector,
        "allow_noncommercial": rec.allow_noncommercial,
        "noncommercial": ",".join(rec.noncommercial),
        "missing_better": ",".join(rec.missing_better),
        "command": f"facekit build-index PEOPLE --models {flag} --detector {flag}",
    }
    if fmt is OutputFormat.table:
        out = sys.stdout
        out.write(f"models:   {row['models']}\n")
        out.write(f"detector: {row['detector']}\n")
        if rec.noncommercial:
            out.write(f"non-commercial licence: {row['noncommercial']} (not for commercial use)\n")
        if rec.missing_better:
            out.write(f"stronger but not installed: {row['missing_better']}\n")
        out.write(
            f"use: --models {','.join(rec.models)} --detector {rec.detector}"
            f"  (or --models {flag} --detector {flag})\n"
        )
        return
    _write_rows([row], fmt, lambda: None)  # type: ignore[arg-type,return-value]


@models_app.command("fetch")
def fetch_cmd(
    names: Annotated[
        list[str],
        typer.Argument(help="Models to fetch, e.g. yunet mobilefacenet (or a,b).", metavar="NAME"),
    ],
    offline: OfflineOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if a valid copy is installed.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Download (or copy from the mirror) and verify model files.

    Example: FACEKIT_MODEL_MIRROR=/srv/models facekit models fetch yunet mobilefacenet
    """
    with handle_errors():
        wanted = models.parse_model_list(names)
    failures = 0
    with _ProgressBars(quiet) as bars:
        err = bars.console  # print through the bar's console so lines appear above the bar
        for name in wanted:
            try:
                (st,) = models.fetch(
                    [name], offline=True if offline else None, progress=bars, force=force
                )
            except FacekitError as exc:
                failures += 1
                if os.environ.get("FACEKIT_DEBUG") == "1":
                    raise
                err.print(f"error: {name}: {exc}", style="red", markup=False)
                continue
            if not quiet:
                err.print(
                    f"{name}: {st.state} ({st.source}, {_human(st.size)})",
                    markup=False,
                )
    if failures:
        raise typer.Exit(4)


@models_app.command("import")
def import_cmd(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="A model file obtained by hand.", exists=True, dir_okay=False
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            "--name", "-n", help="The model it belongs to (needed if its hash is unknown)."
        ),
    ] = None,
) -> None:
    """Install a model file you downloaded yourself, after checking its SHA-256.

    Example: facekit models import ~/Downloads/face_detection_yunet_2023mar.onnx
    """
    with handle_errors():
        spec, mfile, dest = models.import_file(file, name)
        from facekit.models.runtime import file_sha256

        sha = file_sha256(dest)
    pinned = mfile.sha256 is None
    how = (
        "is pinned: no published hash is known, compare it with the publisher's"
        if pinned
        else "matches the registry"
    )
    _stderr().print(
        f"imported {mfile.name} for model {spec.name}; sha256 {sha} {how}", markup=False
    )
    sys.stdout.write(f"{dest}\n")


@models_app.command("verify")
def verify_cmd(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Models to check (default: all installed).", metavar="NAME"),
    ] = None,
    fmt: FormatOpt = None,
) -> None:
    """Re-hash installed model files against their pinned SHA-256.

    Example: facekit models verify dlib yunet
    """
    fmt = _resolve(fmt)
    with handle_errors():
        results = models.verify(names or None)
    rows = [
        {
            "model": r.model,
            "file": r.file.name,
            "state": r.state,
            "source": r.source,
            "path": str(r.path) if r.path else None,
            "expected_sha256": r.expected_sha256,
            "actual_sha256": r.actual_sha256,
        }
        for r in results
    ]

    def table() -> Table:
        from rich.table import Table

        styles = {"ok": "green", "unpinned": "yellow", "mismatch": "red", "missing": "red"}
        t = Table()
        for col in ("model", "file", "state", "source", "path"):
            t.add_column(col)
        for r in results:
            t.add_row(
                r.model,
                r.file.name,
                f"[{styles[r.state]}]{r.state}[/]",
                r.source,
                str(r.path) if r.path else "-",
            )
        return t

    _write_rows(rows, fmt, table)
    bad = [r for r in results if not r.ok]
    err = _stderr()
    for r in bad:
        hint = {
            "missing": f"run `facekit models fetch {r.model}`",
            "mismatch": f"run `facekit models fetch --force {r.model}` or import a good copy",
            "unpinned": f"run `facekit models import FILE --name {r.model}` to pin a copy",
        }[r.state]
        err.print(
            f"error: {r.model}: {r.file.name} is {r.state}; {hint}", style="red", markup=False
        )
    if not results:
        err.print("nothing to verify", markup=False)
    if bad:
        raise typer.Exit(4)


@models_app.command("path")
def path_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name, e.g. dlib.")],
    fetch: Annotated[
        bool, typer.Option("--fetch", help="Fetch the model first if it is not installed.")
    ] = False,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Print the paths of a model's installed files, one per line.

    Example: facekit models path dlib
    """
    with handle_errors():
        st = models.status(name, offline=True if offline else None)
        if st.state != "installed":
            if not fetch:
                missing = ", ".join(f.file.name for f in st.files if f.state != "installed")
                raise ModelError(
                    f"model {st.spec.name!r} is not installed ({st.state}: {missing}); "
                    f"run `facekit models fetch {st.spec.name}` or pass --fetch"
                )
            with _ProgressBars(quiet) as bars:
                models.ensure(name, offline=True if offline else None, progress=bars)
            st = models.status(name, offline=True if offline else None)
    for path in st.paths().values():
        sys.stdout.write(f"{path}\n")
