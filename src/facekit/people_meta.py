"""``people.json`` / ``people.csv``: names and extra fields of the people in a people folder.

Both files are validated before anything is built: a malformed file is one
:class:`~facekit.errors.InputError` line naming the file and the entry, and the database is
left as it was.

* ``people.json``: an object ``{"<id>": "<name>" | {"name": "<name>" | null, ...}}`` or a
  list of objects with an ``"id"`` (a string, or an integer meaning its decimal digits).
* ``people.csv``: a header with an ``id`` column, optional ``name`` and any other columns;
  one row per person.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["read_people_meta", "read_people_file"]


def read_people_meta(people_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``person id -> {"name": ..., extra fields}`` from ``people.json`` or ``people.csv``.

    Args:
        people_dir: the people folder; ``people.json`` wins when both files exist.

    Returns:
        the metadata (empty when neither file exists). ``name`` is a string or absent.

    Raises:
        InputError: the file cannot be read or is malformed (one line naming file and entry).
    """
    people_dir = Path(people_dir)
    js, cs = people_dir / "people.json", people_dir / "people.csv"
    if js.is_file():
        return _read_json(js)
    if cs.is_file():
        return _read_csv(cs)
    return {}


def read_people_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """``person id -> {"name": ..., extra fields}`` from one file in either format.

    The format follows the suffix (``.json`` or ``.csv``); ``facekit people export`` writes
    both, and ``facekit people import`` reads them back.

    Raises:
        InputError: missing, unreadable or malformed (one line naming the file and entry).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; nothing changed")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".json":
        return _read_json(path)
    raise InputError(f"{path}: expected a .json or .csv file; nothing changed")


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}); nothing changed") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc}); nothing changed") from None


def _bad(path: Path, where: str, problem: str) -> InputError:
    return InputError(f"{path}: {where}: {problem}; nothing changed")


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _person_id(path: Path, where: str, v: Any) -> str:
    if isinstance(v, str) and v.strip():
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    raise _bad(path, where, f'"id" must be a folder name (a string), got {_kind(v)}')


def _entry(path: Path, pid: str, value: Any) -> dict[str, Any]:
    where = f"entry {pid!r}"
    if isinstance(value, str):
        return {"name": value}
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(path, where, f"expected a name (string) or an object, got {_kind(value)}")
    out = dict(value)
    name = out.get("name")
    if "name" in out and name is not None and not isinstance(name, str):
        raise _bad(path, where, f'"name" must be a string, got {_kind(name)}')
    if name is None:
        out.pop("name", None)
    return out


def _read_json(path: Path) -> dict[str, dict[str, Any]]:
    text = _text(path)
    try:
        data = json.loads(text)
    except RecursionError:
        raise _bad(path, "top level", "nested too deeply") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); nothing changed") from None
    out: dict[str, dict[str, Any]] = {}
    if isinstance(data, dict):
        for pid, value in data.items():
            out[pid] = _entry(path, pid, value)
        return out
    if isinstance(data, list):
        for i, item in enumerate(data):
            where = f"item {i}"
            if not isinstance(item, dict):
                raise _bad(path, where, f'expected an object with "id", got {_kind(item)}')
            if "id" not in item:
                raise _bad(path, where, 'has no "id"')
            pid = _person_id(path, where, item["id"])
            if pid in out:
                raise _bad(path, where, f"duplicate id {pid!r}")
            out[pid] = _entry(path, pid, {k: v for k, v in item.items() if k != "id"})
        return out
    raise _bad(
        path,
        "top level",
        f'expected an object {{"<id>": {{"name": ...}}}} or a list of objects with "id", got {_kind(data)}',
    )


def _read_csv(path: Path) -> dict[str, dict[str, Any]]:
    import io

    text = _text(path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames
        if not header or "id" not in header:
            raise _bad(
                path, "header", f'needs an "id" column (got {", ".join(header or []) or "nothing"})'
            )
        out: dict[str, dict[str, Any]] = {}
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row:
                raise _bad(path, where, f"more fields than the header's {len(header)}")
            pid = (row.pop("id") or "").strip()
            if not pid:
                raise _bad(path, where, "empty id")
            if pid in out:
                raise _bad(path, where, f"duplicate id {pid!r}")
            entry = {k: v for k, v in row.items() if v is not None}
            if not entry.get("name"):
                entry.pop("name", None)
            out[pid] = entry
        return out
    except csv.Error as exc:
        raise InputError(f"{path}: not valid CSV ({exc}); nothing changed") from None
