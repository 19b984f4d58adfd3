"""File names that are not valid UTF-8: how they become text, and back.

On POSIX a file name is bytes. Python gives a name that is not valid UTF-8 to us as a
``str`` holding surrogate escapes (``b"caf\\xe9.jpg"`` -> ``"caf\\udce9.jpg"``, PEP 383). Such
a string opens the file, but it cannot be written as UTF-8: JSON, CSV, Parquet and a UTF-8
terminal all refuse it (``UnicodeEncodeError``).

:func:`path_text` is the one conversion every output uses (reports, Parquet tables, the
database, stderr): bytes that are not UTF-8 are written as ``\\xNN`` (``"caf\\xe9.jpg"``, a
literal backslash), valid UTF-8 text is returned unchanged. :func:`text_path` reverses it, so
a path read back from a report or a table still opens the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["existing_path", "is_text", "path_text", "text_records", "text_path"]

_ESCAPE = re.compile(rb"\\x([89a-fA-F][0-9a-fA-F])")


def is_text(s: str) -> bool:
    """True when ``s`` can be written as UTF-8 as it is (no surrogate escapes)."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def path_text(s: str | os.PathLike[str] | bytes) -> str:
    """``s`` (a path, or any message holding one) as valid UTF-8 text.

    Bytes that are not UTF-8 become ``\\xNN``; everything else is unchanged.

    Example:
        >>> path_text(os.fsdecode(b"caf\\xe9.jpg"))
        'caf\\\\xe9.jpg'
        >>> path_text("café.jpg")
        'café.jpg'
    """
    if isinstance(s, bytes):
        return s.decode("utf-8", "backslashreplace")
    s = os.fspath(s)
    if isinstance(s, bytes):
        return s.decode("utf-8", "backslashreplace")
    if is_text(s):
        return s
    try:
        raw = s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte (e.g. from JSON)
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def text_path(s: str) -> str:
    """The path :func:`path_text` made ``s`` from (``\\xNN`` back to the byte), as a ``str``
    that opens the file. Text without such escapes is returned unchanged."""
    if "\\x" not in s:
        return s
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), s.encode("utf-8", "surrogateescape"))
    return os.fsdecode(raw)


def existing_path(name: str) -> str:
    """``name``, or the file it stands for when it is the text form of a non-UTF-8 path
    (:func:`path_text`) and only that one exists."""
    if "\\x" not in name or os.path.lexists(name):
        return name
    alt = text_path(name)
    return alt if alt != name and os.path.lexists(alt) else name


def text_records(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with every string value made valid UTF-8 by :func:`path_text` (before they
    become a DataFrame: pandas' pyarrow-backed strings refuse surrogate escapes)."""
    out = []
    for row in rows:
        if any(isinstance(v, str) and not is_text(v) for v in row.values()):
            row = {k: path_text(v) if isinstance(v, str) else v for k, v in row.items()}
        out.append(row)
    return out
