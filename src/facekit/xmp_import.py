"""Photo-manager tags in and out: enrol XMP-tagged faces, write identify results as XMP.

* :func:`import_xmp` (``facekit import-xmp``): every named face region of the photos (read by
  :func:`facekit.xmp.read_regions`) is paired with a face facekit detects there
  (:func:`facekit.xmp.match_regions`, after orientation), and those faces are enrolled
  under the region's name in **one** database generation (:func:`facekit.enroll.enroll_groups`:
  atomic, locked, re-calibrated, encrypted databases included). They are stored like faces
  added by ``facekit enroll`` (origin ``enrolled``, with a crop), so later ``build-index``
  runs over a people folder keep them, and the two sources combine.
* :func:`write_matches` (``facekit identify --write-xmp``): one photo's identification as
  MWG face regions (:func:`facekit.xmp.write_regions`).

Person ids: a ``--people`` file (people.json / people.csv, see :mod:`facekit.people_meta`)
that gives a person's name maps that name to its id; otherwise a database person with the
same name (case-insensitive) is used; otherwise the id is a slug of the name
(``"Zoë Saldaña"`` -> ``zoe-saldana``).
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FacekitError, InputError, UsageError
from .people import normalise_edits, resolve_person
from .types import Embeddings, ImageResult

__all__ = [
    "Mismatch",
    "XmpImportReport",
    "import_xmp",
    "person_id_for",
    "read_name_map",
    "slug",
    "write_matches",
]

Wrap = Callable[[Iterable[ImageResult], int], Iterable[ImageResult]]


def slug(name: str) -> str:
    """A person id from a name: ASCII, lower case, words joined by ``-``.

    Example:
        >>> slug("Zoë Saldaña")
        'zoe-saldana'
        >>> slug("王菲")[:7]
        'person-'
    """
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return s or "person-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]


def read_name_map(path: str | os.PathLike[str]) -> dict[str, str]:
    """``name (case-folded) -> person id`` from a people.json / people.csv file.

    Raises:
        InputError: the file is missing or malformed (one line naming it).
        UsageError: the file is neither ``.json`` nor ``.csv``.
    """
    from .people_meta import _read_csv, _read_json

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    if p.suffix.lower() == ".json":
        meta = _read_json(p)
    elif p.suffix.lower() == ".csv":
        meta = _read_csv(p)
    else:
        raise UsageError(f"{p}: --people takes a .json or .csv file (as people.json / people.csv)")
    out: dict[str, str] = {}
    for pid, info in meta.items():
        name = info.get("name")
        if isinstance(name, str) and name.strip():
            out[name.strip().casefold()] = pid
    return out


def person_id_for(name: str, name_map: dict[str, str], db_names: dict[str, str]) -> str:
    """The person id a tag name maps to: mapping file, then a database person of the same
    name, then :func:`slug`."""
    key = name.strip().casefold()
    return name_map.get(key) or db_names.get(key) or slug(name)


@dataclass(frozen=True)
class Mismatch:
    """A tagged face the database attributes to someone else.

    Attributes:
        source: the photo.
        name: the region's name.
        person: the person id the tag maps to.
        db_person: whom the database says it is.
        db_name: that person's display name.
        confidence: the database's 0-100 confidence, or ``None`` when the face itself is
            already stored under ``db_person``.
        box: ``(x, y, w, h)`` of the face in pixels.
    """

    source: str
    name: str
    person: str
    db_person: str
    db_name: str
    confidence: float | None
    box: tuple[float, float, float, float]

    def to_record(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "person": self.person,
            "db_person": self.db_person,
            "db_name": self.db_name,
            "confidence": None if self.confidence is None else round(self.confidence, 1),
            "box": [round(v, 1) for v in self.box],
        }


@dataclass
class XmpImportReport:
    """What :func:`import_xmp` did.

    Attributes:
        db: the database path.
        photos: photos looked at.
        tagged: photos with at least one named face region.
        regions: named face regions found (not counting facekit's own).
        facekit_regions: named regions facekit itself wrote (``identify --write-xmp``, marked
            by its extension): its own unreviewed guesses, so never enrolled.
        enrolled: faces added to the database.
        people: person id -> faces added this run.
        new_people: ids of people created by this run.
        unmatched: ``(source, name, reason)`` of regions no detected face matched.
        mismatches: tagged faces the database attributes to someone else.
        skipped: ``(face, reason)`` of matched faces not added (already stored).
        errors: photos that could not be read (one line each).
        problems: XMP notes (regions without a usable area, ...).
    """

    db: str
    photos: int = 0
    tagged: int = 0
    regions: int = 0
    facekit_regions: int = 0
    enrolled: int = 0
    people: dict[str, int] = field(default_factory=dict)
    new_people: list[str] = field(default_factory=list)
    unmatched: list[tuple[str, str, str]] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "photos": self.photos,
            "tagged": self.tagged,
            "regions": self.regions,
            "facekit_regions": self.facekit_regions,
            "enrolled": self.enrolled,
            "people": dict(sorted(self.people.items())),
            "new_people": self.new_people,
            "unmatched": [{"source": s, "name": n, "reason": r} for s, n, r in self.unmatched],
            "mismatches": [m.to_record() for m in self.mismatches],
            "skipped": [{"face": f, "reason": r} for f, r in self.skipped],
            "errors": self.errors,
            "problems": self.problems,
        }


@dataclass
class _Tagged:
    person: str
    name: str
    source: str
    face: int


def import_xmp(
    paths: Sequence[str],
    db_path: str | os.PathLike[str],
    config: Any = None,
    *,
    people_file: str | os.PathLike[str] | None = None,
    key: str | None = None,
    workers: int | None = None,
    progress: Any = None,
    wrap: Wrap | None = None,
) -> XmpImportReport:
    """Enrol the faces named in the photos' XMP face regions.

    Args:
        paths: photo files (folders are expanded by the caller, e.g.
            :func:`facekit.imageio.iter_image_paths`).
        db_path: the database; created when missing (with ``config``'s models).
        config: :class:`~facekit.pipeline.PipelineConfig` for a new database; an existing
            database always uses its own settings (a different ``config`` is refused).
        people_file: people.json / people.csv mapping names to person ids.
        key: encryption key (default ``$FACEKIT_KEY``).
        workers: worker processes for detection and embedding.
        progress: model download progress callback.
        wrap: ``wrap(results, total)`` wraps the result stream (progress bar).

    Returns:
        an :class:`XmpImportReport`.

    Raises:
        UsageError: ``config`` differs from an existing database's settings.
        DatabaseError / LockedError / KeyRequiredError: as for ``enroll``.
        InputError: a bad ``people_file``.
    """
    from .database import Database
    from .enroll import EnrollGroup, enroll_groups, face_crop
    from .pipeline import run_paths
    from .xmp import match_regions, read_regions

    report = XmpImportReport(str(db_path))
    name_map = read_name_map(people_file) if people_file is not None else {}
    db = Database.open(db_path, key=key) if Database.exists(db_path) else None
    if db is not None:
        if config is not None:
            from .gallery import _setting_changes

            changes = _setting_changes(config, db)
            if changes:
                raise UsageError(
                    f"{db_path} was built with {', '.join(changes)}; leave those options out "
                    "(an existing database decides the models and detector)"
                )
        config = db.config
    elif config is None:
        raise UsageError("internal: a new database needs a pipeline config")
    # tags follow `facekit people` edits: a merged-away id enrols as its survivor, a removed
    # person is skipped (as build-index skips its folder)
    edits = normalise_edits(db.people_edits if db is not None else {})
    db_names = {
        p.name.strip().casefold(): pid for pid, p in (db.persons if db else {}).items() if p.name
    }
    # 1. regions (cheap: headers and XMP only), so that only tagged photos are embedded
    regions: dict[str, list[Any]] = {}
    for path in paths:
        report.photos += 1
        try:
            found = read_regions(path)
        except FacekitError as exc:
            report.errors.append(str(exc))
            continue
        report.problems.extend(found.problems)
        # regions facekit wrote itself (identify --write-xmp) are its own guesses: enrolling
        # them would train the gallery on its mistakes. A photo manager that saves a reviewed
        # tag rewrites the region without facekit's extension, and then it counts.
        report.facekit_regions += sum(1 for r in found.faces if r.name and r.facekit)
        named = [r for r in found.faces if r.name and not r.facekit]
        if named:
            regions[path] = named
            report.tagged += 1
            report.regions += len(named)
    # 2. detect + embed the tagged photos; pair regions with faces
    from .identify import Identifier

    ident = Identifier(db) if db is not None and db.n_faces else None
    groups: dict[str, tuple[str, list[Embeddings], list[Any]]] = {}
    files = list(regions)
    stream: Iterable[ImageResult] = run_paths(config, files, workers=workers, progress=progress)
    if wrap is not None:
        stream = wrap(stream, len(files))
    for result in stream:
        if result.error:
            report.errors.append(result.error)
            continue
        src = result.source
        tags = regions[src]
        boxes = result.faces.xywh.astype(float)
        pairs = match_regions(
            [r.pixel_box(result.width, result.height) for r in tags], [tuple(b) for b in boxes]
        )
        tagged: list[_Tagged] = []
        for r, j in zip(tags, pairs):
            if j is None:
                why = "no face detected there" if len(boxes) else "no face detected in the photo"
                report.unmatched.append((src, str(r.name), why))
                continue
            pid = resolve_person(edits, person_id_for(str(r.name), name_map, db_names))
            if pid in edits["removed"]:
                report.skipped.append(
                    (
                        f"{src}#{j}",
                        f"{pid} was removed with 'facekit people remove' "
                        f"(run 'facekit people restore {pid}' to enrol it again)",
                    )
                )
                continue
            tagged.append(_Tagged(pid, str(r.name), src, j))
        if not tagged:
            continue
        idx = np.asarray([t.face for t in tagged], np.int64)
        if ident is not None:
            for t, m in zip(tagged, ident.match(result.embeddings[idx])):
                if m.identity is not None and m.identity.person != t.person:
                    report.mismatches.append(
                        Mismatch(
                            src,
                            t.name,
                            t.person,
                            m.identity.person,
                            m.identity.name or m.identity.person,
                            m.identity.confidence,
                            tuple(float(v) for v in boxes[t.face]),  # type: ignore[arg-type]
                        )
                    )
        from .imageio import load_image

        try:
            rgb = load_image(src).rgb
        except InputError as exc:  # changed since it was embedded
            report.errors.append(str(exc))
            continue
        lms = result.faces.landmarks
        for t, i in zip(tagged, idx):
            name, embs, faces = groups.setdefault(t.person, (t.name, [], []))
            embs.append(result.embeddings[np.asarray([i])])
            faces.append(
                face_crop(
                    rgb,
                    boxes[i],
                    lms[i],
                    source=os.path.abspath(src),
                    digest=result.digest,
                )
            )
    if not groups:
        return report
    persons = db.persons if db is not None else {}
    enroll = [
        EnrollGroup(
            pid,
            None if persons.get(pid) is not None and persons[pid].name else name,
            Embeddings.merge(embs),
            faces,
        )
        for pid, (name, embs, faces) in sorted(groups.items())
    ]
    reports = enroll_groups(db_path, enroll, key=key, config=config)
    for g, rep in zip(enroll, reports):
        if rep.added:
            report.people[g.person] = rep.added
            report.enrolled += rep.added
            if g.person not in persons:
                report.new_people.append(g.person)
        for face, why in rep.skipped:
            report.skipped.append((face, why))
            hit = re.search(r"already stored as (.+); not added again", why)
            if hit:
                src, _, box = face.rpartition(" [")
                report.mismatches.append(
                    Mismatch(
                        src,
                        g.name or g.person,
                        g.person,
                        hit.group(1),
                        (persons[hit.group(1)].name if hit.group(1) in persons else None)
                        or hit.group(1),
                        None,
                        tuple(float(v) for v in box.rstrip("]").split(", ")),  # type: ignore[arg-type]
                    )
                )
    return report


def write_matches(
    pm: Any,
    *,
    in_place: bool = False,
    unknown: str = "unnamed",
    mp: bool = False,
) -> Any:
    """Write one photo's identification (:class:`~facekit.identify.PhotoMatches`) as XMP
    face regions; see :func:`facekit.xmp.write_regions`.

    Returns:
        the :class:`~facekit.xmp.WriteReport`, or ``None`` when the photo had an error or no
        face (nothing is written then).
    """
    from .xmp import NewRegion, write_regions

    r = pm.result
    if r.error or not len(r.faces):
        return None
    boxes = r.faces.xywh.astype(float)
    regions = []
    for b, m in zip(boxes, pm.matches):
        who = m.identity
        regions.append(
            NewRegion(
                tuple(float(v) for v in b),  # type: ignore[arg-type]
                (who.name or who.person) if who is not None else None,
                who.person if who is not None else None,
                who.confidence if who is not None else None,
            )
        )
    return write_regions(
        r.source,
        regions,
        width=r.width,
        height=r.height,
        in_place=in_place,
        unknown=unknown,
        mp=mp,
    )
