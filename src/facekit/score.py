"""Ranking the people found across many results (``facekit score``), as Visage-ML's scoring did.

Input: the records written by ``facekit identify`` (one per photo: ``source``, ``faces`` with
``identity`` and ``candidates``) and ``facekit video`` (one per video: ``source``,
``people`` with ``person``, ``confidence``, ``frames``), as JSON documents (one record or a
list) or NDJSON, from files, folders or stdin.

How **Score** is computed: each record (a photo or a video) contributes, for every person
named in it, that person's *best* confidence in the record divided by 100:

* photo: the highest ``identity.confidence`` among the faces identified as the person
  (a person named on two faces of one photo counts once);
* video: the person's ``confidence`` in the video report (one video counts once, however
  many frames show the person).

``Score = sum over records of best_confidence / 100``. Summing, rather than averaging,
means repeated evidence across many stills of one scene accumulates (a person named in
eight stills at 90 ranks above one named once at 99), while weighting by confidence makes
a borderline naming (confidence near 50) count about half as much as a certain one.
Faces left unknown (``identity: null``) and unknown video tracks add nothing.

**Hits** is the number of records naming the person; **confidence** the mean of those
best confidences; ``distance_<model>`` the mean cosine distance (per model) of those best
faces when the records carry distances. Rows are sorted by Score, then Hits, then id.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import InputError

__all__ = [
    "PersonScore",
    "ScoreTable",
    "BadInput",
    "score_records",
    "iter_records",
    "read_records",
    "RESULT_EXTENSIONS",
]

RESULT_EXTENSIONS = (".json", ".ndjson", ".jsonl")


@dataclass
class PersonScore:
    """Accumulated evidence for one person.

    Attributes:
        person: person id.
        name: display name (last non-empty one seen).
        score: sum over records of the person's best confidence / 100.
        hits: records (photos or videos) naming the person.
        confidences: best confidence (0-100) per record.
        distances: model -> best-face cosine distances, one per record that carried them.
        frames: sampled video frames showing the person (videos only).
    """

    person: str
    name: str | None = None
    score: float = 0.0
    hits: int = 0
    confidences: list[float] = field(default_factory=list)
    distances: dict[str, list[float]] = field(default_factory=dict)
    frames: int = 0

    @property
    def confidence(self) -> float | None:
        """Mean best confidence over the hits."""
        return sum(self.confidences) / len(self.confidences) if self.confidences else None

    def mean_distances(self) -> dict[str, float]:
        return {m: sum(v) / len(v) for m, v in sorted(self.distances.items()) if v}


@dataclass
class ScoreTable:
    """Ranked people over a set of results.

    Attributes:
        people: :class:`PersonScore` list, sorted by score, hits, id.
        records: result records read (photos + videos).
        photos, videos: how many of each.
        ignored: records carrying an ``error`` (inputs the producing command could not read).
        bad: inputs skipped as bad: records breaking the contract (see :func:`score_records`),
            plus the files and lines the reader reported into the same ``bad`` list.
    """

    people: list[PersonScore]
    records: int = 0
    photos: int = 0
    videos: int = 0
    ignored: int = 0
    bad: int = 0

    @property
    def models(self) -> list[str]:
        return sorted({m for p in self.people for m in p.distances})

    def rows(self) -> list[dict[str, Any]]:
        """Visage-ML's columns: Score, Hits, confidence (and distances), id, name."""
        out = []
        for p in self.people:
            row: dict[str, Any] = {
                "score": round(p.score, 3),
                "hits": p.hits,
                "confidence": None if p.confidence is None else round(p.confidence, 1),
            }
            dists = p.mean_distances()
            for m in self.models:
                row[f"distance_{m}"] = round(dists[m], 4) if m in dists else None
            row["person"] = p.person
            row["name"] = p.name
            out.append(row)
        return out

    @property
    def columns(self) -> list[str]:
        return [
            "score",
            "hits",
            "confidence",
            *(f"distance_{m}" for m in self.models),
            "person",
            "name",
        ]

    def to_record(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "photos": self.photos,
            "videos": self.videos,
            "ignored": self.ignored,
            "bad": self.bad,
            "people": [
                {**row, "frames": p.frames} if p.frames else row
                for row, p in zip(self.rows(), self.people, strict=True)
            ],
        }


# --------------------------------------------------------------------------- the contract
class BadRecord(ValueError):
    """A record that does not follow the documented contract (the message says where)."""


@dataclass(frozen=True)
class BadInput:
    """One skipped input: a file, a line or a record that could not be used.

    Attributes:
        where: ``"<file>"``, ``"<file>:<line>"`` or ``"<file>:<line>: record <i>"``.
        problem: what is wrong, one line.
    """

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def _finite(v: Any, what: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRecord(f"{what} is not a number ({_short(v)})")
    f = float(v)
    if not math.isfinite(f):
        raise BadRecord(f"{what} is not finite ({_short(v)})")
    if (lo is not None and f < lo) or (hi is not None and f > hi):
        raise BadRecord(f"{what} is {f:g}, outside {lo:g}-{hi:g}")
    return f


def _short(v: Any) -> str:
    text = repr(v) if not isinstance(v, (dict, list)) else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _person(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise BadRecord(f"{what} is not a non-empty string ({_short(v)})")
    return v


def _name(v: Any, what: str) -> str | None:
    if v is not None and not isinstance(v, str):
        raise BadRecord(f"{what} is not a string or null ({_short(v)})")
    return v


def _distances(v: Any, what: str) -> dict[str, float]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise BadRecord(f"{what} is not an object of model -> distance ({_short(v)})")
    return {str(m): _finite(d, f"{what}.{m}") for m, d in v.items()}


def _check_candidate(c: Any, what: str) -> dict[str, Any]:
    if not isinstance(c, dict):
        raise BadRecord(f"{what} is not an object ({_short(c)})")
    out: dict[str, Any] = {"person": _person(c.get("person"), f"{what}.person")}
    out["name"] = _name(c.get("name"), f"{what}.name")
    if c.get("confidence") is not None:
        out["confidence"] = _finite(c["confidence"], f"{what}.confidence", 0.0, 100.0)
    out["distances"] = _distances(c.get("distances"), f"{what}.distances")
    return out


def _photo_best(rec: dict[str, Any]) -> dict[str, tuple[float, str | None, dict[str, float]]]:
    """person -> (best confidence, name, distances) of one photo record, validated."""
    faces = rec["faces"]
    if not isinstance(faces, list):
        raise BadRecord(f"faces is not a list ({_short(faces)})")
    best: dict[str, tuple[float, str | None, dict[str, float]]] = {}
    for i, face in enumerate(faces):
        w = f"faces[{i}]"
        if not isinstance(face, dict):
            raise BadRecord(f"{w} is not an object ({_short(face)})")
        cands_raw = face.get("candidates")
        if cands_raw is None:
            cands_raw = []
        if not isinstance(cands_raw, list):
            raise BadRecord(f"{w}.candidates is not a list ({_short(cands_raw)})")
        cands = [_check_candidate(c, f"{w}.candidates[{j}]") for j, c in enumerate(cands_raw)]
        ident = face.get("identity")
        if ident is None:
            continue
        if not isinstance(ident, dict):
            raise BadRecord(f"{w}.identity is not an object or null ({_short(ident)})")
        pid = _person(ident.get("person"), f"{w}.identity.person")
        name = _name(ident.get("name"), f"{w}.identity.name")
        cand = next((c for c in cands if c["person"] == pid), {})
        if ident.get("confidence") is not None:
            conf = _finite(ident["confidence"], f"{w}.identity.confidence", 0.0, 100.0)
        else:  # named without a confidence: the candidate's, else count it fully
            conf = cand.get("confidence", 100.0)
        dists = _distances(ident.get("distances"), f"{w}.identity.distances") or cand.get(
            "distances", {}
        )
        if pid not in best or conf > best[pid][0]:
            best[pid] = (conf, name or cand.get("name"), dists)
    return best


def _video_people(rec: dict[str, Any]) -> list[tuple[str, str | None, float, int]]:
    """(person, name, confidence, frames) of the known people of one video record, validated."""
    people = rec["people"]
    if not isinstance(people, list):
        raise BadRecord(f"people is not a list ({_short(people)})")
    out = []
    for i, p in enumerate(people):
        w = f"people[{i}]"
        if not isinstance(p, dict):
            raise BadRecord(f"{w} is not an object ({_short(p)})")
        frames_raw = p.get("frames")
        frames = 0
        if frames_raw is not None:
            frames = int(_finite(frames_raw, f"{w}.frames", 0.0, float(2**53)))
        if p.get("person") is None or p.get("confidence") is None:  # an unknown track
            if p.get("person") is not None:
                _person(p["person"], f"{w}.person")
            continue
        pid = _person(p["person"], f"{w}.person")
        name = _name(p.get("name"), f"{w}.name")
        conf = _finite(p["confidence"], f"{w}.confidence", 0.0, 100.0)
        out.append((pid, name, conf, frames))
    return out


def score_records(
    records: Iterable[Any], bad: list[BadInput] | None = None, where: str = "<records>"
) -> ScoreTable:
    """Rank people over identify/video records (see the module docs for the formula).

    Each record is checked against the contract first (photo: ``faces`` a list of objects whose
    ``identity`` is null or has a non-empty string ``person``, a finite ``confidence`` in
    0-100, ``distances`` an object of finite numbers, ``candidates`` a list of such objects;
    video: ``people`` a list of objects with ``person``, ``confidence`` 0-100 or null and a
    finite, non-negative ``frames``). A record that breaks it is skipped whole and reported
    in ``bad``, never half-counted.

    Args:
        records: dicts as written by ``facekit identify`` / ``facekit video``, or
            ``(where, record)`` pairs from :func:`iter_records` (``where`` names it in
            ``bad``).
        bad: list that receives a :class:`BadInput` per skipped record (default: dropped).
        where: the name of plain records in ``bad`` messages.

    Returns:
        A :class:`ScoreTable`; ``ignored`` counts records carrying an ``error`` (inputs the
        producing command could not read) and ``bad`` the records skipped as invalid.

    Example:
        >>> t = score_records([{"source": "a.jpg", "faces": [{"box": [0, 0, 9, 9],
        ...     "identity": {"person": "ada", "name": "Ada", "confidence": 90}}]}])
        >>> t.rows()[0]["score"], t.rows()[0]["hits"]
        (0.9, 1)
    """
    people: dict[str, PersonScore] = {}
    table = ScoreTable([])

    def credit(pid: str, name: Any, conf: float, dists: dict[str, float], frames: int = 0) -> None:
        p = people.setdefault(pid, PersonScore(pid))
        if name:
            p.name = str(name)
        p.score += conf / 100.0
        p.hits += 1
        p.confidences.append(conf)
        for m, d in dists.items():
            p.distances.setdefault(m, []).append(d)
        p.frames += frames

    def skip(at: str, problem: str) -> None:
        table.bad += 1
        if bad is not None:
            bad.append(BadInput(at, problem))

    for n, item in enumerate(records, 1):
        at, rec = item if isinstance(item, tuple) and len(item) == 2 else (f"{where}[{n}]", item)
        if not isinstance(rec, dict):
            skip(at, f"not a result record (a JSON {_json_type(rec)}, expected an object)")
            continue
        if rec.get("error"):
            table.ignored += 1
            continue
        try:
            if "faces" in rec:
                best = _photo_best(rec)
                table.records += 1
                table.photos += 1
                for pid, (conf, name, dists) in best.items():
                    credit(pid, name, conf, dists)
            elif "people" in rec:
                found = _video_people(rec)
                table.records += 1
                table.videos += 1
                for pid, name, conf, frames in found:
                    credit(pid, name, conf, {}, frames)
            else:
                keys = ", ".join(sorted(map(str, rec))[:5])
                raise BadRecord(
                    f"neither a photo ('faces') nor a video ('people') record (keys: {keys or 'none'})"
                )
        except BadRecord as exc:
            skip(at, f"skipped record: {exc}")
    table.people = sorted(people.values(), key=lambda p: (-p.score, -p.hits, p.person))
    if bad is not None:  # also what the reader reported into the same list
        table.bad = max(table.bad, len(bad))
    return table


def _json_type(v: Any) -> str:
    return {
        list: "list",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }.get(type(v), type(v).__name__)


# --------------------------------------------------------------------------- reading
#: Longest line read (bytes); a longer line is skipped without being parsed. An identify
#: record is about 1 KB per face, a video record with --embed-crops about 20 KB per person.
MAX_LINE_BYTES = 16 * 1024 * 1024
#: Largest file parsed as one JSON document (``--format json``); larger files are read as
#: NDJSON, line by line.
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
#: Deepest nesting accepted in a document or line (records nest about 5 levels).
MAX_DEPTH = 64


def _parse_value(text: str) -> Any:
    """json.loads with a bound on nesting depth.

    Raises:
        BadRecord: not JSON, or nested too deeply.
    """
    if (text.count("[") + text.count("{")) > MAX_DEPTH and not _depth_ok_fast(text):
        raise BadRecord(f"JSON nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text)
    except RecursionError:
        raise BadRecord(f"JSON nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        msg = getattr(exc, "msg", None) or str(exc)
        raise BadRecord(f"not JSON ({msg})") from None


def _depth_ok_fast(text: str) -> bool:
    """MAX_DEPTH check that ignores brackets inside JSON strings, in C-speed chunks."""
    import re

    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    depth = 0
    for m in re.finditer(r"[\[\]{}]", stripped):
        if m.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        else:
            depth -= 1
    return True


def _records_of(doc: Any, at: str) -> Iterator[tuple[str, Any]]:
    """The records of one parsed document or line: a record, or a list of records."""
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            yield f"{at}: record {i + 1}", item
    else:
        yield at, doc


def _lines(fh: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) with lines over MAX_LINE_BYTES as ``None`` (read and dropped in
    bounded chunks, never held whole)."""
    n = 0
    while True:
        line = fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        n += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # the rest of the oversized line
                more = fh.readline(1 << 20)
                if not more or more.endswith(b"\n"):
                    break
            yield n, None
            continue
        yield n, line


def _read_stream(fh: IO[bytes], name: str, bad: list[BadInput]) -> Iterator[tuple[str, Any]]:
    """Records of one file or stream, NDJSON or one JSON document, read in bounded pieces.

    If the first non-blank line is JSON by itself the input is NDJSON and is read one line at
    a time. Otherwise (pretty-printed ``--format json``, or a broken first line) up to
    :data:`MAX_DOCUMENT_BYTES` are read and parsed as one document; when that fails too, a
    document that starts like one (``[`` / ``{`` alone on its line) is skipped whole and
    anything else is read as NDJSON with its bad lines skipped.
    """
    lines = _lines(fh)
    for n, line in lines:
        if n == 1 and line is not None and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]  # a UTF-8 byte-order mark
        if line is None or line.strip():
            break
    else:
        bad.append(BadInput(name, "empty: no result records"))
        return
    if line is None:  # an over-long first line: NDJSON
        yield from _ndjson_lines(itertools.chain([(n, line)], lines), name, bad)
        return
    try:
        first = _parse_line(line)
    except BadRecord:
        pass
    else:
        yield from _records_of(first, f"{name}:{n}")
        yield from _ndjson_lines(lines, name, bad)
        return
    # not NDJSON: gather the document (bounded)
    held: list[tuple[int, bytes | None]] = [(n, line)]
    total = len(line)
    for item in lines:
        held.append(item)
        total += len(item[1] or b"")
        if item[1] is None or total > MAX_DOCUMENT_BYTES:
            yield from _ndjson_lines(itertools.chain(held, lines), name, bad)
            return
    text = b"".join(ln for _, ln in held if ln is not None)
    try:
        doc = _parse_value(text.decode("utf-8"))
    except (BadRecord, UnicodeDecodeError) as exc:
        if line.strip() in (b"[", b"{") or len([1 for _, ln in held if ln and ln.strip()]) == 1:
            bad.append(BadInput(name, f"skipped file: {_utf8_why(exc) or exc}"))
            return
        del text
        yield from _ndjson_lines(iter(held), name, bad)
        return
    yield from _records_of(doc, name)


def _parse_line(line: bytes) -> Any:
    try:
        return _parse_value(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRecord(f"not UTF-8 text (byte {exc.start})") from None


def _utf8_why(exc: Exception) -> str | None:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    return None


def _ndjson_lines(
    lines: Iterable[tuple[int, bytes | None]], name: str, bad: list[BadInput]
) -> Iterator[tuple[str, Any]]:
    for n, line in lines:
        at = f"{name}:{n}"
        if line is None:
            bad.append(BadInput(at, f"skipped line: longer than {MAX_LINE_BYTES >> 20} MB"))
            continue
        if not line.strip():
            continue
        try:
            value = _parse_line(line)
        except BadRecord as exc:
            bad.append(BadInput(at, f"skipped line: {exc}"))
            continue
        yield from _records_of(value, at)


def _result_files(path: Path, bad: list[BadInput]) -> list[Path]:
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in RESULT_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        exts = ", ".join(f"*{e}" for e in RESULT_EXTENSIONS)
        bad.append(BadInput(os.fspath(path), f"no result files ({exts}) in this folder"))
    return files


def iter_records(
    inputs: Iterable[str],
    stdin: IO[str] | IO[bytes] | None = None,
    bad: list[BadInput] | None = None,
) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` from files, folders (``*.json``, ``*.ndjson``, ``*.jsonl``,
    recursively, sorted) and ``-`` (stdin), skipping what cannot be read.

    A file is one JSON document (a record or a list of records, as ``--format json``
    writes) or NDJSON (one record or list per line). Missing, unreadable and empty files,
    lines that are not UTF-8 JSON, lines over :data:`MAX_LINE_BYTES` and values nested more
    than :data:`MAX_DEPTH` deep are skipped and reported in ``bad``; records are validated
    later by :func:`score_records`.

    Args:
        inputs: paths, or ``-`` for ``stdin``.
        stdin: the stream ``-`` reads (default ``sys.stdin``).
        bad: list that receives a :class:`BadInput` per skipped file or line.
    """
    bad = [] if bad is None else bad
    for item in inputs:
        if item == "-":
            import sys

            stream = stdin if stdin is not None else sys.stdin
            raw = getattr(stream, "buffer", None)
            if raw is None:  # a text stream (e.g. io.StringIO in tests)
                raw = io.BytesIO(stream.read().encode("utf-8", "surrogateescape"))  # type: ignore[union-attr]
            yield from _read_stream(raw, "<stdin>", bad)
            continue
        path = Path(item)
        files = _result_files(path, bad) if path.is_dir() else [path]
        for f in files:
            try:
                st = f.stat()
                if not stat.S_ISREG(st.st_mode) and not stat.S_ISFIFO(st.st_mode):
                    bad.append(BadInput(os.fspath(f), "skipped: not a regular file"))
                    continue
                fh = open(f, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                bad.append(BadInput(os.fspath(f), "skipped: no such file"))
                continue
            except OSError as exc:
                bad.append(BadInput(os.fspath(f), f"skipped: cannot read ({exc.strerror or exc})"))
                continue
            with fh:
                try:
                    yield from _read_stream(fh, os.fspath(f), bad)
                except OSError as exc:
                    bad.append(BadInput(os.fspath(f), f"cannot read ({exc.strerror or exc})"))


def read_records(inputs: Iterable[str], stdin: IO[str] | None = None) -> Iterator[Any]:
    """Records from files, folders and ``-`` (stdin), as :func:`iter_records` reads them.

    Raises:
        InputError: the first file or line that cannot be read (use :func:`iter_records` to
            skip and count them instead).
    """
    bad: list[BadInput] = []
    for _, rec in iter_records(inputs, stdin, bad):
        if bad:
            break
        yield rec
    if bad:
        raise InputError(str(bad[0]))
