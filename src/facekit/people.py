"""``facekit people``: list, inspect, rename, merge, remove and correct the people of a database.

Every change is one atomic, locked new database generation (:meth:`Database.commit`), works
on encrypted databases (key from ``$FACEKIT_KEY``), and re-calibrates the threshold when the
gallery changed (merge, remove, move-face; not rename or import, which change only names).
Running the same change twice changes nothing the second time.

Faces are named by a stable id (``face_uid``, shown as ``face`` by ``people show`` and as
``gallery_face`` in identify's candidates) that survives every later write while the photo is
unchanged (a changed photo or ``--rebuild`` re-embeds the face under a new id; moves still
follow it, matched by photo and box).

**Edits survive build-index.** A people folder is re-scanned by every ``build-index`` run,
which would otherwise undo the edits. So each generation also stores the edits themselves
(``people-edits.json``, inside ``data.zip`` when encrypted), and build-index applies them:

* ``names``: people renamed (or imported): build-index keeps the database's name and fields
  for them and no longer takes them from people.json / people.csv (it warns when those say
  something else);
* ``merged``: ``{B: A}``: photos in folder B (also new ones) are enrolled as A;
* ``moves``: faces moved to another person, by photo and box: the face stays moved when its
  photo is re-embedded (changed photo, ``--rebuild``);
* ``removed``: people removed: their folders are not enrolled again (each run reports them
  as skipped) until ``facekit people restore ID``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, UsageError
from .render import count

log = logging.getLogger(__name__)

__all__ = [
    "PersonSummary",
    "FaceInfo",
    "PersonDetail",
    "PeopleChange",
    "list_people",
    "show_person",
    "rename_person",
    "merge_people",
    "remove_person",
    "restore_person",
    "move_face",
    "export_people",
    "import_people",
    "apply_edits",
    "apply_edits_to_build",
    "resolve_person",
    "normalise_edits",
]

#: Two boxes on the same photo are the same face at or above this IoU (as enroll does).
SAME_FACE_IOU = 0.5


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class PersonSummary:
    """One row of ``people list``: faces stored and distinct photos they come from."""

    id: str
    name: str | None
    faces: int
    photos: int
    added: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "person": self.id,
            "name": self.name,
            "faces": self.faces,
            "photos": self.photos,
            "added": self.added,
            "extra": self.extra,
        }

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_record().items() if k != "extra"}


@dataclass(frozen=True)
class FaceInfo:
    """A stored face: stable id, photo (absolute path; ``path@seconds`` for a video frame),
    box ``(x, y, w, h)``, how it came in (``folder`` / ``enrolled``) and its yaw (degrees,
    ``None`` if not stored)."""

    face: int
    person: str
    source: str
    box: tuple[float, float, float, float]
    origin: str
    yaw: float | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "face": self.face,
            "person": self.person,
            "source": self.source,
            "box": [round(v, 1) for v in self.box],
            "origin": self.origin,
            "yaw": self.yaw,
        }


@dataclass(frozen=True)
class PersonDetail:
    """``people show``: a person, their faces, and the ids merged into them."""

    person: PersonSummary
    faces: list[FaceInfo]
    merged_from: list[str]

    def to_record(self) -> dict[str, Any]:
        p = self.person
        return {
            "person": p.id,
            "name": p.name,
            "added": p.added,
            "extra": p.extra,
            "merged_from": self.merged_from,
            "faces": [f.to_record() for f in self.faces],
            "sources": sorted({f.source for f in self.faces}),
        }

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "face": f.face,
                "person": f.person,
                "source": f.source,
                "box": ",".join(f"{v:.0f}" for v in f.box),
                "origin": f.origin,
                "yaw": f.yaw,
            }
            for f in self.faces
        ]


@dataclass
class PeopleChange:
    """What a ``people`` write did.

    Attributes:
        action: ``rename``, ``merge``, ``remove``, ``restore``, ``move-face`` or ``import``.
        person: the person changed (the survivor of a merge; the target of a move).
        changed: ``False`` when the database already was as asked (nothing written).
        message: one line saying what happened.
        faces: faces that changed person or were removed.
        generation: the new generation (the live one when nothing changed).
        recalibrated: whether the threshold was calibrated again (the gallery changed).
        threshold: the calibrated threshold now in force.
        people: the people an import changed.
    """

    action: str
    person: str
    changed: bool
    message: str
    faces: int = 0
    generation: str = ""
    recalibrated: bool = False
    threshold: float | None = None
    people: list[str] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        rec = {
            "action": self.action,
            "person": self.person,
            "changed": self.changed,
            "message": self.message,
            "faces": self.faces,
            "generation": self.generation,
            "recalibrated": self.recalibrated,
            "threshold": None if self.threshold is None else round(self.threshold, 4),
        }
        if self.action == "import":
            rec["people"] = self.people
        return rec

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_record().items() if k != "people"}


# --------------------------------------------------------------------------- edits
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def normalise_edits(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A normalised, independent copy of a database's people edits (``Database.people_edits``):
    ``names``, ``merged``, ``removed``, ``restored`` and ``moves``, each present and of the
    right type."""
    names = raw.get("names")
    merged = raw.get("merged")
    removed = raw.get("removed")
    restored = raw.get("restored")
    moves = raw.get("moves")
    return {
        "names": dict(names) if isinstance(names, dict) else {},
        "merged": {str(k): str(v) for k, v in merged.items()} if isinstance(merged, dict) else {},
        "removed": dict(removed) if isinstance(removed, dict) else {},
        "restored": dict(restored) if isinstance(restored, dict) else {},
        "moves": [dict(m) for m in moves if isinstance(m, dict)] if isinstance(moves, list) else [],
    }


def resolve_person(edits: Mapping[str, Any], pid: str) -> str:
    """The person id that ``pid`` ends up as after merges (``pid`` itself if not merged)."""
    merged = edits.get("merged") or {}
    seen = {pid}
    while pid in merged:
        pid = str(merged[pid])
        if pid in seen:  # a cycle cannot be written by this module; stop rather than loop
            break
        seen.add(pid)
    return pid


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    from .enroll import iou

    return iou(a, b)


def _abs_source(db: Any, source: str, origin: str) -> str:
    people_dir = db.manifest.get("people_dir")
    if origin == "folder" and people_dir and not os.path.isabs(source):
        return os.path.join(people_dir, source)
    return source


# --------------------------------------------------------------------------- reading
def _open(db_or_path: Any, key: str | None = None) -> Any:
    from .database import Database

    if isinstance(db_or_path, Database):
        return db_or_path
    return Database.open(db_or_path, key=key)


def list_people(db: Any, *, key: str | None = None) -> list[PersonSummary]:
    """Everyone in the database, by id: faces, distinct photos, when added.

    Args:
        db: an open :class:`~facekit.database.Database` or its folder.
        key: encryption key (default ``$FACEKIT_KEY``).
    """
    db = _open(db, key)
    faces = db.faces
    counts: dict[str, int] = {}
    photos: dict[str, int] = {}
    if len(faces):
        counts = faces.groupby("person").size().to_dict()
        photos = faces.groupby("person")["source"].nunique().to_dict()
    return [
        PersonSummary(
            p.id, p.name, int(counts.get(p.id, 0)), int(photos.get(p.id, 0)), p.added, p.extra
        )
        for p in sorted(db.persons.values(), key=lambda p: p.id)
    ]


def _unknown(db: Any, edits: Mapping[str, Any], pid: str, what: str = "person") -> UsageError:
    if pid in edits.get("merged", {}):
        into = resolve_person(edits, pid)
        return UsageError(f"{db.path}: {pid} was merged into {into}; use {into}")
    if pid in edits.get("removed", {}):
        return UsageError(
            f"{db.path}: {pid} was removed (facekit people restore {pid} lets build-index "
            "enrol its folder again)"
        )
    return UsageError(f"{db.path}: no {what} {pid!r} (facekit people list shows the ids)")


def show_person(db: Any, pid: str, *, key: str | None = None) -> PersonDetail:
    """A person with each stored face (stable id, photo, box, origin, yaw).

    Raises:
        UsageError: no such person (merged and removed ids say where they went).
    """
    db = _open(db, key)
    edits = normalise_edits(db.people_edits)
    person = db.persons.get(pid)
    if person is None:
        raise _unknown(db, edits, pid)
    f = db.faces
    uids = db.face_uids
    rows = np.flatnonzero(f["person"].to_numpy() == pid) if len(f) else np.zeros(0, int)
    faces = []
    for i in rows:
        r = f.iloc[int(i)]
        yaw = r.get("yaw") if "yaw" in f.columns else None
        faces.append(
            FaceInfo(
                int(uids[i]),
                pid,
                _abs_source(db, str(r["source"]), str(r["origin"])),
                (float(r["x"]), float(r["y"]), float(r["w"]), float(r["h"])),
                str(r["origin"]),
                None if yaw is None or not np.isfinite(yaw) else round(float(yaw), 1),
            )
        )
    summary = PersonSummary(
        pid, person.name, len(faces), len({x.source for x in faces}), person.added, person.extra
    )
    merged_from = sorted(k for k in edits["merged"] if resolve_person(edits, k) == pid)
    return PersonDetail(summary, faces, merged_from)


def export_people(db: Any, *, key: str | None = None) -> list[dict[str, Any]]:
    """The people table as records ``{"id", "name", <extra fields>}`` (people.json's list
    form; ``people import`` and build-index's people.json read it back)."""
    db = _open(db, key)
    out = []
    for p in sorted(db.persons.values(), key=lambda p: p.id):
        extra = {k: v for k, v in p.extra.items() if k not in ("id", "name")}
        out.append({"id": p.id, "name": p.name, **extra})
    return out


# --------------------------------------------------------------------------- writing
@dataclass
class _State:
    """A database's content, being changed by one ``people`` command."""

    db: Any
    faces: Any
    vectors: dict[str, np.ndarray]
    persons: dict[str, Any]
    files: Any
    edits: dict[str, Any]
    gallery_changed: bool = False
    dirty: bool = False

    @property
    def uids(self) -> np.ndarray:
        return np.asarray(self.faces["face_uid"].to_numpy(), np.int64)

    def keep_rows(self, keep: np.ndarray) -> None:
        self.faces = self.faces[keep].reset_index(drop=True)
        self.vectors = {m: v[keep] for m, v in self.vectors.items()}
        self.gallery_changed = self.dirty = True


def _write(
    db_path: str | os.PathLike[str], key: str | None, change: Callable[[_State], PeopleChange]
) -> PeopleChange:
    """Open the database under its writer lock, apply ``change``, commit if it changed."""
    from .database import Database
    from .enroll import carried_manifest

    with Database.lock(db_path):
        db = Database.open(db_path, key=key)
        faces = db.faces.copy()
        if "face_uid" not in faces.columns:
            faces["face_uid"] = db.face_uids
        st = _State(
            db,
            faces,
            {m: np.array(v, np.float32) for m, v in db.vectors.items()},  # writable copies
            dict(db.persons),
            db.files.copy() if db.files is not None else None,
            normalise_edits(db.people_edits),
        )
        result = change(st)
        if not st.dirty:
            result.changed = False
            result.generation = db.generation
            result.threshold = db.calibration.threshold
            return result
        models = db.models
        cal = Database.commit(
            db_path,
            faces=st.faces,
            vectors=st.vectors,
            persons=st.persons,
            pipeline=db.manifest["pipeline"],
            fingerprints={m: db.manifest["models"][m]["fingerprint"] for m in models},
            weights=db.calibration.weights,
            storage=db.manifest["models"][models[0]].get("storage", "float32"),
            encrypt=bool(db.manifest.get("encrypted")),
            key=key or os.environ.get("FACEKIT_KEY"),
            extra_manifest=carried_manifest(db.manifest),
            calibration=None if st.gallery_changed else db.calibration,
            files_table=st.files,
            people_edits=st.edits,
            base=db,
        )
        result.changed = True
        result.recalibrated = st.gallery_changed
        result.threshold = cal.threshold
        result.generation = Database.open(db_path, key=key).generation
        return result


def _person(st: _State, pid: str) -> Any:
    p = st.persons.get(pid)
    if p is None:
        raise _unknown(st.db, st.edits, pid)
    return p


def rename_person(
    db_path: str | os.PathLike[str], pid: str, name: str, *, key: str | None = None
) -> PeopleChange:
    """Set a person's display name (identify shows it at once; build-index keeps it).

    Renaming to the current name writes nothing, unless the name was not yet pinned against
    people.json / people.csv (then only that is recorded).

    Raises:
        UsageError: no such person, or an empty name.
    """
    from .database import Person

    name = name.strip()
    if not name:
        raise UsageError("the new name is empty")

    def change(st: _State) -> PeopleChange:
        p = _person(st, pid)
        res = PeopleChange("rename", pid, False, f"{pid} is already named {name!r}")
        if p.name != name:
            st.persons[pid] = Person(p.id, name, p.extra, p.added)
            res.message = f"{pid} renamed from {p.name or pid!r} to {name!r}"
            st.dirty = True
        if st.edits["names"].get(pid) != name:
            st.edits["names"][pid] = name
            st.dirty = True
        return res

    return _write(db_path, key, change)


def merge_people(
    db_path: str | os.PathLike[str], keep: str, other: str, *, key: str | None = None
) -> PeopleChange:
    """Move every face of ``other`` to ``keep`` and remove ``other``; ``keep`` survives with
    its id, name and fields (``other``'s extra fields fill in those it lacks). ``other``'s folder
    is enrolled as ``keep`` by later build-index runs.

    Merging an already merged pair writes nothing.

    Raises:
        UsageError: unknown id, the same id twice, or ``other`` merged elsewhere / removed.
    """
    from .database import Person

    if keep == other:
        raise UsageError(f"cannot merge {keep} with itself")

    def change(st: _State) -> PeopleChange:
        if st.edits["merged"].get(other) and resolve_person(st.edits, other) == keep:
            return PeopleChange("merge", keep, False, f"{other} is already merged into {keep}")
        a = _person(st, keep)
        b = _person(st, other)
        sel = (st.faces["person"] == other).to_numpy()
        st.faces.loc[sel, "person"] = keep
        st.persons.pop(other)
        added = min(x for x in (a.added, b.added) if x) if (a.added or b.added) else None
        st.persons[keep] = Person(keep, a.name, {**b.extra, **a.extra}, added)
        st.edits["merged"][other] = keep
        for k, v in list(st.edits["merged"].items()):
            if v == other:
                st.edits["merged"][k] = keep
        st.edits["names"].pop(other, None)
        for m in st.edits["moves"]:
            if m.get("to") == other:
                m["to"] = keep
        st.dirty = True
        st.gallery_changed = bool(sel.any())
        return PeopleChange(
            "merge",
            keep,
            True,
            f"{other} merged into {keep} ({int(sel.sum())} faces moved; {keep} is kept, "
            f"{other} is gone)",
            faces=int(sel.sum()),
        )

    return _write(db_path, key, change)


def remove_person(
    db_path: str | os.PathLike[str], pid: str, *, key: str | None = None
) -> PeopleChange:
    """Remove a person and all their faces. build-index does not enrol their folder again
    (it reports it as skipped) until :func:`restore_person`. Removing twice writes nothing.

    Raises:
        UsageError: no such person (a merged id names the person it went to).
    """

    def change(st: _State) -> PeopleChange:
        if pid in st.edits["removed"] and pid not in st.persons:
            return PeopleChange("remove", pid, False, f"{pid} is already removed")
        _person(st, pid)
        sel = (st.faces["person"] == pid).to_numpy()
        sources = set(st.faces.loc[sel, "source"])
        if sel.any():
            st.keep_rows(~sel)
        st.persons.pop(pid)
        if st.files is not None and len(st.files):
            # the photos are embedded again if the person is restored
            drop = st.files["person"].isin({pid}) | st.files["source"].isin(sources)
            st.files = st.files[~drop.to_numpy()].reset_index(drop=True)
        st.edits["removed"][pid] = _now()
        st.edits["restored"].pop(pid, None)
        st.edits["names"].pop(pid, None)
        st.dirty = True
        return PeopleChange(
            "remove",
            pid,
            True,
            f"{pid} removed with {int(sel.sum())} faces; build-index will not enrol its "
            f"folder again (facekit people restore {pid} to allow it)",
            faces=int(sel.sum()),
        )

    return _write(db_path, key, change)


def restore_person(
    db_path: str | os.PathLike[str], pid: str, *, key: str | None = None
) -> PeopleChange:
    """Undo :func:`remove_person`'s hold on a folder: the next build-index enrols it again.
    Restoring twice (also before that build-index run) writes nothing."""

    def change(st: _State) -> PeopleChange:
        if pid not in st.edits["removed"]:
            if pid in st.persons:
                return PeopleChange("restore", pid, False, f"{pid} is not removed")
            if pid in st.edits["restored"]:
                return PeopleChange(
                    "restore",
                    pid,
                    False,
                    f"{pid} is already restored: run build-index on its folder to enrol it",
                )
            if pid in st.edits["merged"]:
                raise _unknown(st.db, st.edits, pid)
            raise UsageError(
                f"{st.db.path}: no removed person {pid!r} (restored already, or never there)"
            )
        del st.edits["removed"][pid]
        st.edits["restored"][pid] = _now()
        st.dirty = True
        return PeopleChange(
            "restore", pid, True, f"{pid} may be enrolled again: run build-index on its folder"
        )

    return _write(db_path, key, change)


def move_face(
    db_path: str | os.PathLike[str],
    face: int,
    to: str,
    *,
    create: bool = False,
    name: str | None = None,
    key: str | None = None,
) -> PeopleChange:
    """Give one stored face to another person (correct a wrong assignment).

    The move is remembered by photo and box, so build-index keeps it when the photo is
    embedded again. Moving a face to the person it already belongs to writes nothing.

    Args:
        face: the face's stable id (``people show``; identify's ``gallery_face``).
        to: the person to give it to.
        create: create ``to`` if there is no such person (display name ``name``).

    Raises:
        UsageError: no such face, or no such person (without ``create``).
    """
    from .database import Person

    def change(st: _State) -> PeopleChange:
        hit = np.flatnonzero(st.uids == int(face))
        if not len(hit):
            raise UsageError(
                f"{st.db.path}: no face {face} (facekit people show ID lists a person's faces)"
            )
        i = int(hit[0])
        old = str(st.faces.at[i, "person"])
        if to not in st.persons:
            if to in st.edits["merged"] or to in st.edits["removed"]:
                raise _unknown(st.db, st.edits, to)
            if not create:
                raise UsageError(
                    f"{st.db.path}: no person {to!r} (facekit people list shows the ids; "
                    "--create makes a new person)"
                )
            st.persons[to] = Person(to, name)
        if old == to:
            return PeopleChange("move-face", to, False, f"face {face} already belongs to {to}")
        r = st.faces.iloc[i]
        source = str(r["source"])
        box = [float(r["x"]), float(r["y"]), float(r["w"]), float(r["h"])]
        st.edits["moves"] = [
            m
            for m in st.edits["moves"]
            if not (m.get("source") == source and _iou(m.get("box", [0, 0, 0, 0]), box) >= 0.5)
        ]
        st.edits["moves"].append({"face": int(face), "source": source, "box": box, "to": to})
        st.faces.at[i, "person"] = to
        st.dirty = st.gallery_changed = True
        left = int((st.faces["person"] == old).sum())
        note = "" if left else f"; {old} has no faces left (facekit people remove {old})"
        return PeopleChange(
            "move-face", to, True, f"face {face} moved from {old} to {to}{note}", faces=1
        )

    return _write(db_path, key, change)


def import_people(
    db_path: str | os.PathLike[str], path: str | os.PathLike[str], *, key: str | None = None
) -> PeopleChange:
    """Set names and fields from a people file (``people export``'s JSON or CSV).

    For each listed person: a given name replaces the name (and is kept by build-index, as
    a rename is); fields are set, and a field that is ``null`` (JSON) or empty (CSV) is
    removed. People not listed are left alone. The whole file is checked first: any problem
    is one :class:`InputError` naming the file and entry, and nothing changes.

    Raises:
        InputError: unreadable or malformed file, or an entry for an unknown person.
    """
    from .database import Person
    from .people_meta import read_people_file

    entries = read_people_file(Path(path))
    is_csv = Path(path).suffix.lower() == ".csv"

    def change(st: _State) -> PeopleChange:
        for pid in entries:
            if pid not in st.persons:
                why = str(_unknown(st.db, st.edits, pid)).split(": ", 1)[-1]
                raise InputError(f"{path}: entry {pid!r}: {why}; nothing changed")
        changed = []
        pinned = []
        for pid, entry in entries.items():
            p = st.persons[pid]
            entry = dict(entry)
            name = entry.pop("name", None)
            extra = dict(p.extra)
            for k, v in entry.items():
                if k == "id":
                    continue
                if v is None or (is_csv and v == ""):
                    extra.pop(k, None)
                elif is_csv and k in extra and _csv_text(extra[k]) == v:
                    continue  # a CSV round trip of a number or list: unchanged
                else:
                    extra[k] = v
            new_name = name if isinstance(name, str) and name.strip() else p.name
            if new_name != p.name or extra != p.extra:
                st.persons[pid] = Person(pid, new_name, extra, p.added)
                changed.append(pid)
            if isinstance(name, str) and name.strip() and st.edits["names"].get(pid) != name:
                st.edits["names"][pid] = name
                st.dirty = True
                pinned.append(pid)
        st.dirty = st.dirty or bool(changed)
        msg = (
            f"{len(changed)} of {len(entries)} people updated from {path}"
            if changed
            else f"{path} matches the database"
        )
        if pinned and not changed:
            # names equal, but now kept over people.json: a real (edit-only) change
            msg += (
                f"; the names of {count(len(pinned), 'person')} are now kept over people.json / "
                "people.csv by build-index"
            )
        return PeopleChange("import", str(path), bool(changed), msg, people=changed)

    return _write(db_path, key, change)


def _csv_text(value: Any) -> str:
    from .render import _cell

    return _cell(value)


# --------------------------------------------------------------------------- build-index
@dataclass
class AppliedEdits:
    """What :func:`apply_edits` did to a build: rows kept (mask over the faces passed in),
    folders skipped, and warnings for the user."""

    keep: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan_people(
    edits: Mapping[str, Any], people: Sequence[str], people_dir: Path
) -> tuple[list[str], set[str], list[tuple[str, str]]]:
    """Person folders as build-index should treat them.

    Returns:
        ``(people, skip, skipped)``: the person ids the folders stand for (merged folders
        become their survivor, removed people are left out), the folder names whose photos
        must not be embedded, and ``(folder, reason)`` to report.
    """
    edits = normalise_edits(edits)
    out: list[str] = []
    skip: set[str] = set()
    skipped: list[tuple[str, str]] = []
    for folder in people:
        pid = resolve_person(edits, folder)
        if pid in edits["removed"]:
            skip.add(folder)
            how = "" if pid == folder else f" (merged into {pid}, which was)"
            skipped.append(
                (
                    str(people_dir / folder),
                    f"removed with facekit people remove{how}; not enrolled "
                    f"(facekit people restore {pid} to enrol it again)",
                )
            )
            continue
        if pid not in out:
            out.append(pid)
    return out, skip, skipped


def apply_edits(faces: Any, edits: Mapping[str, Any]) -> AppliedEdits:
    """Apply the people edits to a build's faces table (in place): merged people's faces go
    to their survivor, moved faces (same photo, box IoU >= 0.5) to their new person, and
    faces that end up with a removed person are marked to drop (``keep`` is ``False``)."""
    edits = normalise_edits(edits)
    n = len(faces)
    out = AppliedEdits(np.ones(n, bool))
    if not n or not any(edits.values()):
        return out
    person = faces["person"].astype(str).to_numpy().copy()
    if edits["merged"]:
        person = np.array([resolve_person(edits, p) for p in person], dtype=object)
    if edits["moves"]:
        by_source: dict[str, list[int]] = {}
        for i, s in enumerate(faces["source"].astype(str)):
            by_source.setdefault(s, []).append(i)
        xywh = faces[["x", "y", "w", "h"]].to_numpy(float)
        for m in edits["moves"]:
            for i in by_source.get(str(m.get("source")), []):
                if _iou(m.get("box", [0, 0, 0, 0]), xywh[i]) >= SAME_FACE_IOU:
                    person[i] = resolve_person(edits, str(m.get("to")))
    removed = set(edits["removed"])
    if removed:
        gone = np.array([p in removed for p in person], bool)
        out.keep = ~gone
        for s in sorted(set(faces.loc[gone, "source"].astype(str))):
            out.skipped.append((s, "its face was moved to a person removed with facekit people"))
    faces["person"] = person
    return out


def apply_edits_to_build(
    faces: Any, vectors: dict[str, np.ndarray], edits: Mapping[str, Any]
) -> tuple[Any, dict[str, np.ndarray], list[tuple[str, str]]]:
    """:func:`apply_edits` for a build: the faces table and its parallel embedding arrays
    without the rows of removed people, and the ``(source, reason)`` of what was skipped."""
    applied = apply_edits(faces, edits)
    if not applied.keep.all():
        faces = faces[applied.keep].reset_index(drop=True)
        vectors = {m: v[applied.keep] for m, v in vectors.items()}
    return faces, vectors, applied.skipped


def pinned_persons(
    persons: dict[str, Any],
    edits: Mapping[str, Any],
    old_persons: Mapping[str, Any],
    meta: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """Keep the database's name and fields for people renamed or imported with ``facekit
    people`` (in place); returns warnings where people.json / people.csv disagree."""
    from .database import Person

    warnings = []
    for pid in normalise_edits(edits)["names"]:
        prev = old_persons.get(pid)
        if pid not in persons or prev is None:
            continue
        persons[pid] = Person(pid, prev.name, dict(prev.extra), prev.added)
        want = (meta.get(pid) or {}).get("name")
        if want is not None and want != prev.name:
            warnings.append(
                f"{pid}: the people file names them {want!r}; keeping {prev.name!r} set with "
                f"facekit people (facekit people rename {pid} NAME changes it)"
            )
    return warnings
