"""Open-set identification of faces against a :class:`~facekit.database.Database`.

For each face: per model, the k nearest gallery faces (Voyager, or exact search for small
galleries); for every person reached by any model, the exact distance of each model to each
of that person's faces; distances normalised per model by the gallery's impostor statistics
and fused with the ensemble weights (:class:`~facekit.calibration.Calibration`); a person's
evidence is that of their best-matching face. The best person is the ``identity`` when the
evidence reaches the calibrated threshold, else the face is unknown (``identity=None``).

The threshold is the one the database was calibrated for: the stated share of strangers
(people not in the database) that may be named, at the gallery's size
(:mod:`facekit.calibration`). ``max_strangers`` re-derives it for another rate from the
stranger model stored in the database, without re-measuring anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UsageError
from .types import Embeddings, ImageResult

__all__ = ["Candidate", "FaceMatch", "PhotoMatches", "Identifier", "one_per_person"]


@dataclass(frozen=True)
class Candidate:
    """A person a face may be.

    Attributes:
        person: person id (the gallery folder name).
        name: display name (people.json / people.csv), else the person id: never ``None``.
        confidence: 0-100; 50 at the decision threshold.
        evidence: fused impostor-normalised similarity (larger = more alike).
        distances: model -> cosine distance to the person's closest gallery face.
        gallery_face: stable id of the person's best-matching gallery face (what
            ``facekit people move-face`` takes to correct a wrong one).
    """

    person: str
    name: str | None
    confidence: float
    evidence: float
    distances: dict[str, float]
    gallery_face: int | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "name": self.name,
            "confidence": round(self.confidence, 2),
            "evidence": round(self.evidence, 3),
            "distances": {m: round(d, 4) for m, d in self.distances.items()},
            "gallery_face": self.gallery_face,
        }


@dataclass(frozen=True)
class FaceMatch:
    """Identification of one face: ``identity`` (``None`` = unknown) and ranked candidates;
    ``skipped`` says why a face was not matched at all (e.g. turned beyond ``max_yaw``)."""

    identity: Candidate | None
    candidates: tuple[Candidate, ...]
    skipped: str | None = None


def one_per_person(matches: Sequence[FaceMatch]) -> list[FaceMatch]:
    """The faces of one photo or video frame with each person named at most once.

    One person cannot be two faces of the same picture, so when several faces are named as
    the same person at least one of them is a wrong name: the face with the strongest evidence
    keeps it and the others become unknown (their candidates still list that person, so the
    nearest match stays visible). Mirrors, posters and collages can show someone twice; they
    lose a name rather than a stranger gaining one.
    """
    best: dict[str, int] = {}
    for i, m in enumerate(matches):
        if m.identity is None:
            continue
        j = best.get(m.identity.person)
        top = matches[j].identity if j is not None else None
        if top is None or m.identity.evidence > top.evidence:
            best[m.identity.person] = i
    return [
        m
        if m.identity is None or best[m.identity.person] == i
        else FaceMatch(None, m.candidates, m.skipped)
        for i, m in enumerate(matches)
    ]


@dataclass
class PhotoMatches:
    """All faces of one photo with their identification."""

    result: ImageResult
    matches: list[FaceMatch] = field(default_factory=list)

    @property
    def known(self) -> list[Candidate]:
        return [m.identity for m in self.matches if m.identity is not None]

    def to_record(self) -> dict[str, Any]:
        from .facetable import pose_columns

        r = self.result
        faces = []
        for i, m in enumerate(self.matches):
            x, y, w, h = (round(float(v), 1) for v in r.faces.xywh[i])
            ident = None
            if m.identity is not None:
                ident = m.identity.to_record()
            face: dict[str, Any] = {
                "face": i,
                "box": [x, y, w, h],
                "det_score": round(float(r.faces.confidence[i]), 3),
                **pose_columns(r.faces, i),
                "identity": ident,
                "candidates": [c.to_record() for c in m.candidates],
            }
            if m.skipped:
                face["skipped"] = m.skipped
            faces.append(face)
        rec: dict[str, Any] = {
            "source": r.source,
            "width": r.width,
            "height": r.height,
            "faces": faces,
        }
        if r.error:
            rec["error"] = r.error
        if r.time is not None:
            rec["time"] = r.time
        return rec

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows (one per face) for tables and CSV."""
        from .facetable import pose_columns

        out = []
        if self.result.error:
            return [{"source": self.result.source, "face": None, "error": self.result.error}]
        for i, m in enumerate(self.matches):
            x, y, w, h = (round(float(v)) for v in self.result.faces.xywh[i])
            best = m.candidates[0] if m.candidates else None
            out.append(
                {
                    "source": self.result.source,
                    "face": i,
                    "box": f"{x},{y},{w},{h}",
                    "person": m.identity.person if m.identity else None,
                    "name": (m.identity.name if m.identity else None),
                    "confidence": round(m.identity.confidence, 1) if m.identity else None,
                    "nearest": best.person if best else None,
                    "nearest_confidence": round(best.confidence, 1) if best else None,
                    "gallery_face": best.gallery_face if best else None,
                    "distances": ", ".join(f"{k}={v:.3f}" for k, v in best.distances.items())
                    if best
                    else None,
                    **pose_columns(self.result.faces, i),
                    "skipped": m.skipped,
                }
            )
        if not self.matches:
            out.append({"source": self.result.source, "face": None, "person": None})
        return out


class Identifier:
    """Identify faces against a database.

    Args:
        db: an open :class:`~facekit.database.Database`.
        top_k: candidates to report per face.
        min_confidence: name a face only at or above this confidence (default: the calibrated
            threshold, i.e. 50).
        max_strangers: share of strangers that may be named (default: the rate the database
            was built for); moves the threshold (confidence 50) accordingly.
        max_yaw: faces turned further than this many degrees from frontal (head yaw from
            the landmarks, :mod:`facekit.pose`) are not matched: :attr:`FaceMatch.skipped`
            says so (``None``: match every face).

    Example:
        >>> ident = Identifier(Database.open("faces.db"))
        >>> [m.identity and m.identity.person for m in ident.match(result.embeddings)]
    """

    def __init__(
        self,
        db: Any,
        *,
        top_k: int = 5,
        min_confidence: float | None = None,
        neighbours: int = 50,
        max_strangers: float | None = None,
        max_yaw: float | None = None,
    ):
        self.db = db
        self.max_yaw = max_yaw
        self.top_k = max(1, top_k)
        self.calibration = (
            db.calibration if max_strangers is None else db.calibration.for_rate(max_strangers)
        )
        self.min_confidence = 50.0 if min_confidence is None else float(min_confidence)
        self.neighbours = neighbours
        self.models = db.models
        self._person_of = db.person_ids
        self._uids = db.face_uids

    def check(self, embeddings: Embeddings) -> None:
        missing = [m for m in self.models if m not in embeddings.vectors]
        if missing:
            raise UsageError(
                f"the database needs embeddings of {', '.join(self.models)}; missing {', '.join(missing)}"
            )
        for m in self.models:
            fp, want = (
                embeddings.fingerprints.get(m),
                self.db.manifest["models"][m].get("fingerprint"),
            )
            if fp and want and fp != want:
                raise UsageError(
                    f"{m}: these embeddings come from other weights or settings ({fp}) than the "
                    f"database ({want}); rebuild the database or use its settings"
                )

    def match(self, embeddings: Embeddings) -> list[FaceMatch]:
        """Identify each face (row) of ``embeddings``; returns one :class:`FaceMatch` per face."""
        n = len(embeddings)
        if n == 0:
            return []
        self.check(embeddings)
        if self.db.n_faces == 0:
            return [FaceMatch(None, ()) for _ in range(n)]
        k = max(self.neighbours, self.top_k * 10)
        reached: list[set[int]] = [set() for _ in range(n)]
        for m in self.models:
            ids, _ = self.db.knn(m, embeddings.vectors[m], k)
            for i in range(n):
                reached[i].update(ids[i].tolist())
        out = []
        cal = self.calibration
        for i in range(n):
            persons = np.unique(self._person_of[list(reached[i])])
            face_ids = self.db.faces_of(persons)  # = flatnonzero(isin(...)), O(k)
            dists = {
                m: 1.0 - self.db.vectors[m][face_ids] @ embeddings.vectors[m][i]
                for m in self.models
            }
            ev = cal.evidence(dists)
            owners = self._person_of[face_ids]
            cands = []
            for p in persons:
                sel = owners == p
                j = int(np.argmax(np.where(sel, ev, -np.inf)))
                e = float(ev[j])
                person = self.db.persons.get(p)
                cands.append(
                    Candidate(
                        str(p),
                        (person.name if person and person.name else None) or str(p),
                        float(cal.confidence(e)),
                        e,
                        {m: float(dists[m][sel].min()) for m in self.models},
                        int(self._uids[face_ids[j]]),
                    )
                )
            cands.sort(key=lambda c: -c.evidence)
            cands = cands[: self.top_k]
            ident = cands[0] if cands and cands[0].confidence >= self.min_confidence else None
            out.append(FaceMatch(ident, tuple(cands)))
        return out

    def match_result(self, result: ImageResult) -> PhotoMatches:
        """Identify every face of a pipeline result."""
        if result.error or len(result.faces) == 0:
            return PhotoMatches(result, [])
        from .pose import yaw_within

        ok = yaw_within(result.faces, self.max_yaw)
        if ok.all():
            return PhotoMatches(result, one_per_person(self.match(result.embeddings)))
        matched = iter(self.match(result.embeddings[np.flatnonzero(ok)]) if ok.any() else [])
        yaw = result.faces.data["pose"][:, 0]
        return PhotoMatches(
            result,
            one_per_person(
                [
                    next(matched)
                    if keep
                    else FaceMatch(None, (), f"yaw {yaw[i]:.0f} beyond --max-yaw {self.max_yaw:g}")
                    for i, keep in enumerate(ok)
                ]
            ),
        )


def identify_paths(
    db: Any,
    paths: Sequence[str],
    *,
    top_k: int = 5,
    min_confidence: float | None = None,
    workers: int | None = None,
    progress: Any = None,
    engine: Any = None,
    max_strangers: float | None = None,
) -> Any:
    """Identify every face in each photo; yields :class:`PhotoMatches` in input order."""
    from .pipeline import run_paths

    ident = Identifier(db, top_k=top_k, min_confidence=min_confidence, max_strangers=max_strangers)
    for result in run_paths(db.config, paths, workers=workers, progress=progress, engine=engine):
        yield ident.match_result(result)
