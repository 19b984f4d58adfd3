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

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import InputError

__all__ = ["PersonScore", "ScoreTable", "score_records", "read_records", "RESULT_EXTENSIONS"]

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
        ignored: records of another shape (or with an error) that were skipped.
    """

    people: list[PersonScore]
    records: int = 0
    photos: int = 0
    videos: int = 0
    ignored: int = 0

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
            "people": [
                {**row, "frames": p.frames} if p.frames else row
                for row, p in zip(self.rows(), self.people, strict=True)
            ],
        }


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def score_records(records: Iterable[dict[str, Any]]) -> ScoreTable:
    """Rank people over identify/video records (see the module docs for the formula).

    Args:
        records: dicts as written by ``facekit identify`` / ``facekit video``.

    Returns:
        A :class:`ScoreTable`.

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
        p.score += max(0.0, min(conf, 100.0)) / 100.0
        p.hits += 1
        p.confidences.append(conf)
        for m, d in dists.items():
            p.distances.setdefault(m, []).append(d)
        p.frames += frames

    for rec in records:
        if not isinstance(rec, dict) or rec.get("error"):
            table.ignored += 1
            continue
        if isinstance(rec.get("faces"), list):
            table.records += 1
            table.photos += 1
            best: dict[str, tuple[float, Any, dict[str, float]]] = {}
            for face in rec["faces"]:
                ident = face.get("identity") if isinstance(face, dict) else None
                if not isinstance(ident, dict) or not ident.get("person"):
                    continue
                pid = str(ident["person"])
                cand: dict[str, Any] = next(
                    (c for c in face.get("candidates") or [] if c.get("person") == pid), {}
                )
                conf = _num(ident.get("confidence"))
                if conf is None:
                    conf = _num(cand.get("confidence"))
                if conf is None:
                    conf = 100.0  # named without a confidence: count it fully
                raw = ident.get("distances") or cand.get("distances") or {}
                dists = {str(m): d for m, v in raw.items() if (d := _num(v)) is not None}
                if pid not in best or conf > best[pid][0]:
                    best[pid] = (conf, ident.get("name") or cand.get("name"), dists)
            for pid, (conf, name, dists) in best.items():
                credit(pid, name, conf, dists)
        elif isinstance(rec.get("people"), list):
            table.records += 1
            table.videos += 1
            for person in rec["people"]:
                if not isinstance(person, dict) or not person.get("person"):
                    continue
                conf = _num(person.get("confidence"))
                if conf is None:  # an unknown track
                    continue
                frames = int(_num(person.get("frames")) or 0)
                credit(str(person["person"]), person.get("name"), conf, {}, frames)
        else:
            table.ignored += 1
    table.people = sorted(people.values(), key=lambda p: (-p.score, -p.hits, p.person))
    return table


def _parse(text: str, name: str) -> Iterator[dict[str, Any]]:
    stripped = text.strip()
    if not stripped:
        return
    try:
        doc = json.loads(stripped)
    except ValueError:
        doc = None
        for lineno, line in enumerate(stripped.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{name}:{lineno}: not JSON or NDJSON ({exc.msg})") from None
            yield from _flatten(item)
        return
    yield from _flatten(doc)


def _flatten(doc: Any) -> Iterator[Any]:
    if isinstance(doc, list):
        for item in doc:
            yield from _flatten(item)
    else:
        yield doc


def read_records(inputs: Iterable[str], stdin: IO[str] | None = None) -> Iterator[dict[str, Any]]:
    """Records from files, folders (``*.json``, ``*.ndjson``, ``*.jsonl``, recursively, sorted)
    and ``-`` (stdin).

    Raises:
        InputError: a file is missing, unreadable or not JSON/NDJSON.
    """
    for item in inputs:
        if item == "-":
            import sys

            yield from _parse((stdin or sys.stdin).read(), "<stdin>")
            continue
        path = Path(item)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in RESULT_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            files = [path]
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise InputError(f"{f}: no such file") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{f}: cannot read ({exc})") from None
            yield from _parse(text, os.fspath(f))
