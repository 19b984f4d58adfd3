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

__all__ = ["Format", "Renderer", "to_jsonable", "render_rows"]


class Format(str, Enum):
    """Output formats shared by every command."""

    table = "table"
    json = "json"
    ndjson = "ndjson"
    csv = "csv"


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and NaN into plain JSON values (NaN -> null)."""
    import numpy as np  # lazily: `facekit --help` must not pay for numpy

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
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
    return str(value)


class Renderer:
    """Writes records in one output format.

    Args:
        fmt: output format.
        out: text stream for data (stdout by default).
        columns: column order for table/CSV (default: keys of the first row).
        title: table title.
        wrap: for JSON, a function turning the list of records into the document
            (default: the list itself).

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
    ):
        self.fmt = Format(fmt)
        self.out = out or sys.stdout
        self.columns = list(columns) if columns else None
        self.title = title
        self.wrap = wrap
        self._records: list[Any] = []
        self._rows: list[dict[str, Any]] = []
        self._csv: Any = None

    def add(self, record: Any = None, rows: Iterable[dict[str, Any]] | None = None) -> None:
        """Add one result: ``record`` for JSON/NDJSON, ``rows`` (flat dicts) for table/CSV."""
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
            self._rows.extend(rows or ())

    def close(self) -> None:
        """Write what was held back (JSON document, table)."""
        if self.fmt is Format.json:
            doc = self.wrap(self._records) if self.wrap else self._records
            json.dump(to_jsonable(doc), self.out, ensure_ascii=False, indent=2)
            self.out.write("\n")
        elif self.fmt is Format.table:
            render_rows(self._rows, self.out, columns=self.columns, title=self.title)
        self.out.flush()


def render_rows(
    rows: Sequence[dict[str, Any]],
    out: IO[str] | None = None,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Print rows as a Rich table (plain aligned text when ``out`` is not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    out = out or sys.stdout
    cols = list(columns) if columns else (list(rows[0]) if rows else [])
    table = Table(title=title, show_lines=False, header_style="bold")
    for c in cols:
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in cols))
    console = Console(
        file=out, soft_wrap=False, width=None if out.isatty() else 200, highlight=False
    )
    if not rows:
        console.print("(no rows)" if title is None else f"{title}: (no rows)")
        return
    console.print(table)
