"""The one place where results become text: table, JSON, NDJSON or CSV.

Library results expose ``to_record()`` (a JSON-able dict, possibly nested) and rows for
tables (flat dicts). :class:`Renderer` takes them one at a time so that NDJSON and CSV
stream (a pipe sees each photo as soon as it is done) while JSON and tables are written
when the run ends.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from typing import IO, Any

from .pathtext import path_text

__all__ = ["Format", "Renderer", "to_jsonable", "render_rows", "short_paths"]


class Format(str, Enum):
    """Output formats shared by every command."""

    table = "table"
    json = "json"
    ndjson = "ndjson"
    csv = "csv"


_PLURALS = {"person": "people", "known person": "known people", "match": "matches"}


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 file"``, ``"2 files"``, ``"0 people"``: a number with its noun in the right form."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {plural or _PLURALS.get(noun) or noun + 's'}"


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and NaN into plain JSON values (NaN -> null).

    Strings holding file names that are not UTF-8 get their bad bytes written as ``\\xNN``
    (:func:`facekit.pathtext.path_text`), so every output stays valid UTF-8.
    """
    import numpy as np  # lazily: `facekit --help` must not pay for numpy

    if isinstance(obj, str):
        return path_text(obj)
    if isinstance(obj, dict):
        return {path_text(str(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else round(f, 6)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    if isinstance(value, (list, tuple, dict)) or hasattr(value, "tolist"):
        value = to_jsonable(value)
        if isinstance(value, (list, dict)):
            return json.dumps(value, separators=(",", ":"))
        return _cell(value)
    return path_text(str(value))


class Renderer:
    """Writes records in one output format.

    Args:
        fmt: output format.
        out: text stream for data (stdout by default).
        columns: column order for table/CSV (default: keys of the first row).
        title: table title.
        wrap: for JSON, a function turning the list of records into the document
            (default: the list itself).
        table_columns: columns of the terminal table when they differ from the CSV columns
            (a table must stay readable at 80 columns; CSV and JSON keep everything).
        width: table width (default: the terminal's, or 200 when not a terminal).

    Example:
        >>> r = Renderer(Format.ndjson)
        >>> r.add({"source": "a.jpg", "faces": []}, rows=[{"source": "a.jpg"}])
        >>> r.close()
    """

    def __init__(
        self,
        fmt: Format | str,
        out: IO[str] | None = None,
        *,
        columns: Sequence[str] | None = None,
        title: str | None = None,
        wrap: Callable[[list[Any]], Any] | None = None,
        table_columns: Sequence[str] | None = None,
        width: int | None = None,
    ):
        self.fmt = Format(fmt)
        self.out = out or sys.stdout
        self.columns = list(columns) if columns else None
        self.table_columns = list(table_columns) if table_columns else None
        self.width = width
        self.title = title
        self.wrap = wrap
        self._records: list[Any] = []
        self._rows: list[dict[str, Any]] = []
        self._csv: Any = None

    def add(
        self,
        record: Any = None,
        rows: Iterable[dict[str, Any]] | None = None,
        table_rows: Iterable[dict[str, Any]] | None = None,
    ) -> None:
        """Add one result: ``record`` for JSON/NDJSON, ``rows`` (flat dicts) for CSV, and for
        the table ``table_rows`` (a shorter view) or else ``rows``."""
        if self.fmt is Format.ndjson:
            self.out.write(json.dumps(to_jsonable(record), ensure_ascii=False) + "\n")
            self.out.flush()
        elif self.fmt is Format.json:
            self._records.append(to_jsonable(record))
        elif self.fmt is Format.csv:
            for row in rows or ():
                if self._csv is None:
                    self.columns = self.columns or list(row)
                    self._csv = csv.DictWriter(
                        self.out,
                        fieldnames=self.columns,
                        extrasaction="ignore",
                        lineterminator="\n",
                    )
                    self._csv.writeheader()
                self._csv.writerow({k: _cell(row.get(k)) for k in self.columns or row})
            self.out.flush()
        else:
            self._rows.extend(table_rows if table_rows is not None else rows or ())

    def close(self) -> None:
        """Write what was held back (JSON document, table)."""
        if self.fmt is Format.json:
            doc = self.wrap(self._records) if self.wrap else self._records
            json.dump(to_jsonable(doc), self.out, ensure_ascii=False, indent=2)
            self.out.write("\n")
        elif self.fmt is Format.table:
            render_rows(
                self._rows,
                self.out,
                columns=self.table_columns or self.columns,
                title=self.title,
                width=self.width,
            )
        self.out.flush()


#: Columns holding file paths: shortened in terminal tables (relative to their common folder).
PATH_COLUMNS = ("source", "photo", "video", "file")


def short_paths(paths: Sequence[str], limit: int = 40) -> tuple[list[str], str | None]:
    """Paths as a table shows them: relative to the current folder when all are inside it,
    else relative to their common folder (returned, for the title); longer than ``limit``
    characters -> the middle elided with ``...``.

    Example:
        >>> short_paths(["/data/album/a/1.jpg", "/data/album/b/2.jpg"])
        (['a/1.jpg', 'b/2.jpg'], '/data/album')
    """
    import os

    if not paths:
        return [], None
    cwd = os.getcwd()
    absolute = [os.path.abspath(p) if p else "" for p in paths]
    real = [p for p in absolute if p]
    base: str | None = None
    try:
        common = os.path.commonpath([os.path.dirname(p) for p in real]) if real else ""
    except ValueError:  # pragma: no cover - different drives on Windows
        common = ""
    if real and all(p == cwd or p.startswith(cwd.rstrip(os.sep) + os.sep) for p in real):
        shown = [os.path.relpath(p, cwd) if p else "" for p in absolute]
    elif common and common != os.sep:
        base = common
        shown = [os.path.relpath(p, common) if p else "" for p in absolute]
    else:
        shown = list(paths)
    return [_elide(p, limit) for p in shown], base


def _elide(text: str, limit: int) -> str:
    if len(text) <= limit or limit < 8:
        return text
    head = max(3, (limit - 3) // 4)  # keep more of the end: the file name
    return text[:head] + "..." + text[-(limit - 3 - head) :]


def render_rows(
    rows: Sequence[dict[str, Any]],
    out: IO[str] | None = None,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    width: int | None = None,
) -> None:
    """Print rows as a Rich table (plain aligned text when ``out`` is not a terminal).

    Paths (``source``/``photo``/``video``/``file`` columns) are shown relative to the current
    folder or to their common folder (named in the title) and elided past 40 characters, so
    a table stays readable at 80 columns; JSON and CSV keep the full paths.
    """
    from rich.console import Console
    from rich.table import Table

    out = out or sys.stdout
    if width is None and not out.isatty():
        width = 200
    console = Console(file=out, soft_wrap=False, width=width, highlight=False, markup=False)
    cols = list(columns) if columns else (list(rows[0]) if rows else [])
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    paths = [j for j, c in enumerate(cols) if c in PATH_COLUMNS]
    # What the other columns need (content, header, 3 characters of padding and border each):
    # the path columns get the rest, so each row stays on one line while it can.
    others = sum(
        min(30, max([len(cols[j])] + [len(r[j]) for r in cells])) + 3  # longer cells wrap
        for j in range(len(cols))
        if j not in paths
    )
    limit = max(16, (console.width - others - 1) // max(1, len(paths)) - 3)
    for j in paths:
        if not cells:
            break
        shown, base = short_paths([r[j] for r in cells], limit=limit)
        for r, v in zip(cells, shown):
            r[j] = v
        if base:
            title = f"{title or cols[j]} in {base}"
    widths = [
        min(max([len(c)] + [len(r[j]) for r in cells]), limit if j in paths else 10**6)
        for j, c in enumerate(cols)
    ]
    # Rich crops the rightmost columns away (silently) when the columns' minimum widths do not
    # fit the terminal: `db info` on 80 columns showed 7 of its 15 fields, identify lost its
    # note column. Then every column may shrink and fold; and one record whose headers alone
    # do not fit is shown as field/value lines.
    fits = sum(w + 3 for w in widths) + 1 <= console.width
    headers_fit = sum(len(c) + 3 for c in cols) + 1 <= console.width
    if len(rows) == 1 and not fits and not headers_fit:
        table = Table(title=title, show_lines=False, header_style="bold", pad_edge=False)
        table.add_column("field", no_wrap=True)
        table.add_column("value", overflow="fold")
        for c, v in zip(cols, cells[0]):
            table.add_row(c, v)
        console.print(table)
        return
    table = Table(title=title, show_lines=False, header_style="bold", pad_edge=False)
    for j, c in enumerate(cols):
        wide = widths[j]
        if j in paths:  # already shortened to fit: never folded over two lines
            table.add_column(c, no_wrap=True, min_width=wide if fits else None)
        elif wide <= 24 and fits:  # short values (ids, numbers, boxes) stay whole
            table.add_column(c, no_wrap=True, min_width=wide)
        else:  # long text, or too many columns for the terminal: wrap within the column
            table.add_column(c, overflow="fold")
    for r in cells:
        table.add_row(*r)
    if not rows:
        console.print("(no rows)" if title is None else f"{title}: (no rows)")
        return
    console.print(table)
