"""``build-index``: a folder of people (one subfolder each) -> an up-to-date face database.

Incremental and safe to run from cron: unchanged photos (same size and modification time,
or same SHA-256) are not re-embedded; changed photos are; faces of deleted photos and people
are removed. The whole update is one atomic commit (:meth:`facekit.database.Database.commit`).

What a run never does without being asked:

* **change settings**: models, detector, upsampling and detection size are those stored in
  the database; other values are refused unless ``rebuild=True`` (which re-embeds
  everything). :func:`resolve_config` fills options that were not given from the database.
* **drop faces it cannot see**: a photo (or person folder) that cannot be read now (a
  truncated sync copy, a dangling symlink, a permission change) keeps its stored faces and
  is reported as an error.
* **remove most of the database**: a run that would remove more than
  :data:`MASS_REMOVAL_SHARE` of the people or faces, or all of them (an empty or unmounted
  people folder), is refused unless ``allow_mass_removal=True``.
* **lose enrolled faces**: faces added with ``facekit enroll`` are kept by every run,
  ``rebuild`` included; when the models change they are embedded again from their stored
  crops (:func:`facekit.enroll.reembed_enrolled`), and those that cannot be are reported.
* **guess a layout**: a flat folder of photos, a folder one level too high, stray photos at
  the top level and nested folders are reported (:mod:`facekit.walk`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import Calibration, calibrate
from .database import FACE_COLUMNS, FILE_COLUMNS, Database, Person
from .errors import DatabaseError, InputError, KeyRequiredError, UsageError
from .people_meta import read_people_meta
from .types import ImageResult

log = logging.getLogger(__name__)

__all__ = [
    "BuildReport",
    "MASS_REMOVAL_SHARE",
    "build_index",
    "dominant_face",
    "read_people_meta",
    "stored_settings",
]

#: A run that would remove more than this share of the stored people or faces is refused
#: without ``allow_mass_removal`` (so is one that would remove every face).
MASS_REMOVAL_SHARE = 0.5

Wrap = Callable[[Iterable[ImageResult], int], Iterable[ImageResult]]


@dataclass
class BuildReport:
    """What a ``build-index`` run did.

    Photo counts: ``added``, ``updated``, ``removed``, ``unchanged`` (gallery photos);
    ``faces_removed`` and ``people_removed`` say what the removals cost. ``errors`` are
    photos or folders that could not be read (their stored faces are kept:
    ``kept_unreadable`` photos); ``skipped`` are ``(path, reason)`` of photos that were
    not used (outside person folders, nested folders, unsupported formats).
    """

    db: str
    persons: int = 0
    faces: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    faces_removed: int = 0
    people_removed: list[str] = field(default_factory=list)
    kept_unreadable: int = 0
    no_face: list[str] = field(default_factory=list)
    several_faces: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    enrolled_kept: int = 0
    enrolled_reembedded: int = 0
    enrolled_lost: list[tuple[str, str]] = field(default_factory=list)
    to_embed: int = 0
    calibration: Calibration | None = None

    def to_record(self) -> dict[str, Any]:
        cal = self.calibration
        return {
            "db": self.db,
            "persons": self.persons,
            "faces": self.faces,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "faces_removed": self.faces_removed,
            "people_removed": self.people_removed,
            "kept_unreadable": self.kept_unreadable,
            "no_face": self.no_face,
            "several_faces": [{"source": s, "faces": n} for s, n in self.several_faces],
            "errors": self.errors,
            "skipped": [{"source": s, "reason": r} for s, r in self.skipped],
            "enrolled_kept": self.enrolled_kept,
            "enrolled_reembedded": self.enrolled_reembedded,
            "enrolled_lost": [{"source": s, "reason": r} for s, r in self.enrolled_lost],
            "calibration": None
            if cal is None
            else {
                "source": cal.source,
                "threshold": round(cal.threshold, 3),
                "max_strangers": cal.max_strangers,
                "expected_strangers": cal.expected_strangers,
                "expected_named": cal.expected_named,
                "genuine": round(cal.genuine, 3),
                "impostor": {m: [round(a, 4), round(b, 4)] for m, (a, b) in cal.impostor.items()},
                **{
                    k: v
                    for k, v in cal.stats.items()
                    if k.startswith("loo_") or k in ("impostor_pairs", "model", "probes")
                },
            },
        }


def dominant_face(result: ImageResult) -> int:
    """Index of the face to enrol from a gallery photo: the largest, favouring central faces."""
    f = result.faces
    w, h = max(result.width, 1), max(result.height, 1)
    area = (f.xyxy[:, 2] - f.xyxy[:, 0]) * (f.xyxy[:, 3] - f.xyxy[:, 1])
    centre = (f.xyxy[:, :2] + f.xyxy[:, 2:]) / 2
    off = np.linalg.norm((centre - [w / 2, h / 2]) / [w / 2, h / 2], axis=1) / np.sqrt(2)
    return int(np.argmax(area * (1.0 - 0.5 * off)))


def check_db_path(db_path: Path) -> None:
    """Refuse, before any work, a database path that is a file or cannot be written.

    Raises:
        UsageError: the path exists and is not a folder.
        DatabaseError: the folder (or the folder it would be created in) is not writable.
    """
    if db_path.exists() and not db_path.is_dir():
        raise UsageError(f"{db_path}: exists and is not a folder (-d names a database folder)")
    probe = db_path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{probe}: not a folder (cannot create the database {db_path})")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DatabaseError(f"{probe}: permission denied (cannot write the database {db_path})")


# --------------------------------------------------------------------------- settings
def _open_existing(db_path: Path, key: str | None) -> Database | None:
    if not Database.exists(db_path):
        return None
    return Database.open(db_path, key=key)


def open_for_build(
    db_path: Path,
    key: str | None,
    *,
    rebuild: bool,
    discard_encrypted: bool,
    report: BuildReport,
    source: str | os.PathLike[str],
) -> Database | None:
    """The database a build starts from (``None``: a new one), opened the same way by
    ``build-index`` and ``build-index --from-embeddings``. The caller holds the lock.

    An encrypted database needs its key, checked before any work, unless
    ``discard_encrypted`` (with ``rebuild``) replaces it. An unreadable one is replaced only
    with ``rebuild``. What a replacement loses is listed in ``report.enrolled_lost``.

    Raises:
        KeyRequiredError: encrypted, and the key is missing or wrong (without
            ``rebuild`` + ``discard_encrypted``).
        DatabaseError: unreadable, without ``rebuild``.
    """
    if not discard_encrypted:
        Database.check_owner_key(db_path, key)
    try:
        return _open_existing(db_path, key)
    except KeyRequiredError as exc:
        if not (rebuild and discard_encrypted):
            raise
        log.warning("%s; replacing it (--discard-encrypted)", exc)
        report.enrolled_lost.append((str(db_path), "encrypted database discarded"))
    except DatabaseError as exc:
        if not rebuild:
            raise
        # --rebuild is the recovery path: start afresh, but say what could not be kept
        log.warning("%s; rebuilding from %s", exc, source)
        report.enrolled_lost.append((str(db_path), f"old database unreadable ({exc})"))
    return None


def default_encrypt(
    old: Database | None, db_path: Path, key: str | None, discard_encrypted: bool
) -> bool:
    """Keep the database's encryption when ``--encrypt/--no-encrypt`` is not given, also
    when it could not be read (never a silent downgrade to plaintext)."""
    if old is not None:
        return bool(old.manifest.get("encrypted"))
    has_key = bool(key or os.environ.get("FACEKIT_KEY"))
    return Database.is_encrypted(db_path) and (has_key or not discard_encrypted)


def stored_settings(
    db_path: str | os.PathLike[str], *, key: str | None = None
) -> dict[str, Any] | None:
    """The build settings of the database at ``db_path`` (``None`` if there is none, or it
    cannot be read: :func:`build_index` then reports why).

    Returns:
        ``{"models": [...], "weights": (...), "detector", "upsample", "max_side", "flip",
        "storage", "encrypted", "recursive"}``; command-line options that are not given
        take these values, so that ``facekit build-index ./people -d DB`` re-runs with the
        settings the database was built with.
    """
    try:
        old = _open_existing(Path(db_path), key)
    except (DatabaseError, OSError):
        return None
    if old is None:
        return None
    stored = old.config
    return {
        "models": list(old.models),
        "weights": tuple(old.calibration.weights[m] for m in old.models),
        "detector": stored.detector,
        "upsample": int(stored.upsample or 0),
        "max_side": int(stored.max_side),
        "flip": stored.flip,
        "storage": old.manifest["models"][old.models[0]].get("storage", "float32")
        if old.models
        else "float32",
        "encrypted": bool(old.manifest.get("encrypted")),
        "recursive": bool(old.manifest.get("build", {}).get("recursive", False)),
    }


def _setting_changes(config: Any, old: Database) -> list[str]:
    """What ``config`` changes relative to the database's stored settings (empty: nothing)."""
    from .models.runtime import fingerprint

    changes = []
    p = old.manifest.get("pipeline", {})
    if list(config.models) != old.models:
        changes.append(f"--models {','.join(old.models)}")
    if config.detector != p.get("detector"):
        changes.append(f"--detector {p.get('detector')}")
    if int(config.upsample or 0) != int(p.get("upsample", 0) or 0):
        changes.append(f"--upsample {int(p.get('upsample', 0) or 0)}")
    if int(config.max_side) != int(p.get("max_side", config.max_side)):
        changes.append(f"max side {p.get('max_side')}")
    if changes:
        return changes
    # same names: the weights behind them must be the same too
    for m in old.models:
        want = old.manifest["models"][m].get("fingerprint")
        if want and _embedder_fingerprint(m, config) != want:
            changes.append(f"the weights (or mirror averaging) of {m}")
    want_det = p.get("detector_fingerprint")
    if want_det and fingerprint(config.detector) != want_det:
        changes.append(f"the weights of the {config.detector} detector")
    return changes


# --------------------------------------------------------------------------- build
def build_index(
    people_dir: str | os.PathLike[str],
    db_path: str | os.PathLike[str],
    config: Any,
    *,
    storage: str | None = None,
    encrypt: bool | None = None,
    key: str | None = None,
    workers: int | None = None,
    progress: Any = None,
    on_result: Any = None,
    wrap: Wrap | None = None,
    rebuild: bool = False,
    recursive: bool | None = None,
    allow_mass_removal: bool = False,
    engine: Any = None,
    max_strangers: float | None = None,
    discard_encrypted: bool = False,
    max_yaw: float | None = None,
) -> BuildReport:
    """Build or update the database at ``db_path`` from ``people_dir``.

    Args:
        people_dir: one subfolder per person (folder name = person id); optional
            ``people.json`` / ``people.csv`` with names and extra fields.
        db_path: database folder (created if missing).
        config: :class:`~facekit.pipeline.PipelineConfig`; for an existing database its
            models, detector and upsampling must match (see :func:`resolve_config`), or
            ``rebuild=True``.
        storage: ``float32`` or ``e4m3`` index storage (``None``: keep, else float32).
        encrypt: keep tables that name people in an AES-256 zip (key: ``key`` or
            ``$FACEKIT_KEY``); ``None`` keeps the database's setting.
        workers: worker processes for embedding.
        progress: model download progress callback.
        on_result: called with each new :class:`ImageResult`.
        wrap: ``wrap(results, total)`` wraps the stream of new results (progress bars with
            a total and an ETA).
        discard_encrypted: with ``rebuild``, replace an encrypted database without its key.
        rebuild: re-embed every photo (to change models, detector or upsampling); enrolled
            faces are kept, re-embedded from their crops when the models change.
        recursive: enrol photos of folders nested in a person folder under that person
            (``None``: keep the database's setting, else no).
        allow_mass_removal: allow a run that removes most (or all) of the database.
        engine: a :class:`~facekit.engine.Engine` to embed on (default: local workers).
        max_strangers: share of strangers that may be named (stored in the database; default:
            the existing database's rate, else
            :func:`~facekit.calibration.default_max_strangers`). The threshold is re-calibrated
            on the whole gallery at every build.
        max_yaw: skip gallery photos whose face is turned further than this many degrees
            from frontal (:mod:`facekit.pose`); stored, and ``None`` keeps the database's
            setting. It applies to photos embedded from then on (``rebuild`` applies it to all).

    Returns:
        a :class:`BuildReport`.

    Raises:
        UsageError: settings differ from the database's, a wrong folder layout, or a mass
            removal without ``allow_mass_removal``. Nothing is changed.
        InputError: ``people_dir`` is not a folder, or people.json / people.csv is malformed.
        LockedError: another process is writing this database.
        KeyRequiredError: encryption requested / present without a usable key.
    """
    people_dir = Path(people_dir)
    db_path = Path(db_path)
    if not people_dir.is_dir():
        raise InputError(f"{people_dir}: not a folder (expected one subfolder per person)")
    check_db_path(db_path)
    report = BuildReport(str(db_path))
    with Database.lock(db_path):
        old = open_for_build(
            db_path,
            key,
            rebuild=rebuild,
            discard_encrypted=discard_encrypted,
            report=report,
            source=people_dir,
        )
        changes = [] if old is None else _setting_changes(config, old)
        if changes and not rebuild:
            raise UsageError(
                f"{db_path} was built with {', '.join(changes)}; re-run without changing them "
                "(options not given keep the database's settings) or use --rebuild to "
                "re-embed everything"
            )
        compatible = old is not None and not changes  # stored embeddings can be reused
        build_meta = dict(old.manifest.get("build", {})) if old is not None else {}
        if recursive is None:
            recursive = bool(build_meta.get("recursive", False))
        if max_yaw is None and isinstance(build_meta.get("max_yaw"), (int, float)):
            max_yaw = float(build_meta["max_yaw"])
        if storage is None:
            storage = (
                old.manifest["models"][old.models[0]].get("storage", "float32")
                if old is not None and old.models
                else "float32"
            )
        if encrypt is None:  # keep the database's setting (also when it could not be read)
            encrypt = default_encrypt(old, db_path, key, discard_encrypted)
        meta = read_people_meta(people_dir)
        plan = _scan(people_dir, recursive, old, compatible and not rebuild, compatible, report)
        # edits made with `facekit people` are applied to every run (facekit.people)
        edits = old.people_edits if old is not None else {}
        if edits:
            from .people import plan_people

            plan.people, skip, skipped = plan_people(edits, plan.people, people_dir)
            report.skipped.extend(skipped)
            plan.todo = [t for t in plan.todo if t[0] not in skip]
            report.to_embed = len(plan.todo)
        _check_removals(plan, old, db_path, people_dir, allow_mass_removal, report)
        new_rows, new_vecs, file_rows = _embed(
            plan, config, workers, progress, on_result, wrap, report, engine, max_yaw
        )
        faces, vectors = _assemble(
            plan, old, compatible, config, new_rows, new_vecs, report, rebuild
        )
        if edits:
            from .people import apply_edits_to_build

            faces, vectors, skipped = apply_edits_to_build(faces, vectors, edits)
            report.skipped.extend(skipped)
        persons = _persons(plan, faces, meta, old)
        if edits and old is not None:
            from .people import pinned_persons

            for warning in pinned_persons(persons, edits, old.persons, meta):
                log.warning(warning)
        report.people_removed = sorted(set(old.persons) - set(persons)) if old is not None else []
        import pandas as pd

        from .enroll import carried_manifest

        weights = config.weights or tuple(1.0 for _ in config.models)
        total = float(sum(weights))
        weight_map = {m: w / total for m, w in zip(config.models, weights)}
        if (
            old is not None
            and compatible
            and not rebuild
            and max_strangers in (None, old.calibration.max_strangers)
            and _unchanged(old, report, plan, persons, weight_map, storage, encrypt, recursive)
            and old.manifest.get("build", {}).get("max_yaw") == max_yaw
        ):
            # nothing to write: no new generation, no re-indexing, no re-calibration
            report.calibration = old.calibration
            report.persons = len(old.persons)
            report.faces = old.n_faces
            return report
        if max_strangers is None and old is not None:
            max_strangers = old.calibration.max_strangers
        calibration = calibrate(
            faces["person"].to_numpy(),
            vectors,
            {m: w / total for m, w in zip(config.models, weights)},
            max_strangers=max_strangers,
        )
        extra = carried_manifest(old.manifest) if old is not None else {}
        pipeline, fingerprints = pipeline_manifest(config)
        extra["people_dir"] = str(people_dir.resolve())
        extra["build"] = {**build_meta, "recursive": bool(recursive)}
        if max_yaw is not None:
            extra["build"]["max_yaw"] = float(max_yaw)
        report.calibration = Database.commit(
            db_path,
            faces=faces,
            vectors=vectors,
            persons=persons,
            pipeline=pipeline,
            fingerprints=fingerprints,
            weights=weight_map,
            storage=storage,
            encrypt=encrypt,
            key=key,
            files_table=pd.DataFrame(file_rows + plan.kept_file_rows, columns=FILE_COLUMNS),
            extra_manifest=extra,
            calibration=calibration,
            discard_encrypted=discard_encrypted,
            people_edits=edits if old is not None else None,
            base=old if compatible and not rebuild else None,
        )
        report.persons = len(persons)
        report.faces = len(faces)
    return report


def _unchanged(
    old: Database,
    report: BuildReport,
    plan: _Plan,
    persons: dict[str, Person],
    weights: dict[str, float],
    storage: str,
    encrypt: bool,
    recursive: bool,
) -> bool:
    """True when a run would write the same database again (so it writes nothing)."""
    # (photos kept unreadable keep their stored rows: alone they change nothing, so a cron
    # run over a photo that stays unreadable does not write a generation each time)
    if report.added or report.updated or report.removed:
        return False
    if plan.todo or plan.protected_people:
        return False
    if {p.id: (p.name, p.extra) for p in persons.values()} != {
        p.id: (p.name, p.extra) for p in old.persons.values()
    }:
        return False
    m0 = old.models[0] if old.models else None
    if m0 is None or old.manifest["models"][m0].get("storage", "float32") != storage:
        return False
    if bool(old.manifest.get("encrypted")) != bool(encrypt):
        return False
    if bool(old.manifest.get("build", {}).get("recursive", False)) != bool(recursive):
        return False
    if any(abs(old.calibration.weights.get(m, -1.0) - w) > 1e-9 for m, w in weights.items()):
        return False
    # stored file rows must be current (same size and mtime), else update them
    if old.files is None or len(old.files) != len(plan.kept_file_rows):
        return False
    stored = {
        (r.source, r.person, int(r.size), int(r.mtime_ns), r.digest) for r in old.files.itertuples()
    }
    now = {
        (r["source"], r["person"], int(r["size"]), int(r["mtime_ns"]), r["digest"])
        for r in plan.kept_file_rows
    }
    return stored == now


@dataclass
class _Plan:
    """The scan of a run: what to keep, embed and remove."""

    people: list[str] = field(default_factory=list)  # person folders present
    todo: list[tuple[str, str, str]] = field(default_factory=list)  # (person, rel, abs path)
    keep_sources: set[str] = field(default_factory=set)  # old sources whose faces stay as stored
    kept_file_rows: list[dict[str, Any]] = field(default_factory=list)
    protected_people: set[str] = field(default_factory=set)  # unreadable person folders
    removed_sources: set[str] = field(default_factory=set)
    old_files: dict[str, Any] = field(default_factory=dict)
    can_keep: bool = True  # stored embeddings are usable (same models and detector)
    layout_problem: str | None = None


def _scan(
    people_dir: Path,
    recursive: bool,
    old: Database | None,
    reuse: bool,
    can_keep: bool,
    report: BuildReport,
) -> _Plan:
    from .imageio import file_digest
    from .pathtext import path_text
    from .walk import scan_people

    scan = scan_people(people_dir, recursive=recursive)
    if "" in scan.unreadable:
        raise InputError(scan.unreadable[""] + "; nothing changed")
    if scan.looks_one_level_too_high() or (not scan.n_photos and not scan.unreadable):
        problem = scan.layout_problem()
        if problem and (scan.looks_one_level_too_high() or old is None or not old.n_faces):
            raise UsageError(problem)
    for p in scan.top_level_photos:
        report.skipped.append((p, "not in a person folder (expected PEOPLE_DIR/<person>/<photo>)"))
    for pid, subs in scan.nested.items():
        for s in subs:
            report.skipped.append((s, f"folder nested in {pid}/; pass --recursive to enrol it"))
    for p, why in scan.other_files:
        report.skipped.append((p, why))
    plan = _Plan(people=sorted(scan.people), can_keep=can_keep)
    plan.layout_problem = scan.layout_problem()
    old_files = {}
    if old is not None and old.files is not None and len(old.files):
        old_files = {r.source: r for r in old.files.itertuples()}
    plan.old_files = old_files
    for pid, err in scan.unreadable.items():
        report.errors.append(err + "; its stored faces are kept")
        plan.protected_people.add(pid)
    for pid, link in scan.dangling.items():
        if old is not None and pid in old.persons:
            report.errors.append(
                f"{link}: dangling symlink (its target is missing: an unmounted drive?); "
                "its stored faces are kept"
            )
            plan.protected_people.add(pid)
        else:
            report.skipped.append((link, "dangling symlink"))
    present: set[str] = set()
    for person, paths in scan.people.items():
        for p in paths:
            rel = path_text(os.path.relpath(p, people_dir))  # as stored: valid UTF-8 text
            present.add(rel)
            prev = old_files.get(rel)
            try:
                st = os.stat(p)
            except OSError as exc:
                _keep_unreadable(plan, prev, rel, person, f"{p}: {_problem(exc)}", report)
                continue
            if reuse and prev is not None and prev.person == person and not prev.error:
                same = prev.size == st.st_size and prev.mtime_ns == st.st_mtime_ns
                if not same:
                    try:
                        same = file_digest(p) == prev.digest
                    except InputError as exc:
                        _keep_unreadable(plan, prev, rel, person, str(exc), report)
                        continue
                if same and (unread := _unreadable(p)) is not None:
                    # present and unchanged, but it cannot be opened now (a permission
                    # change): its stored faces stay; a later run re-checks it
                    _keep_unreadable(plan, prev, rel, person, f"{p}: {unread}", report)
                    continue
                if same:
                    plan.keep_sources.add(rel)
                    report.unchanged += 1
                    plan.kept_file_rows.append(
                        {
                            "source": rel,
                            "person": person,
                            "size": st.st_size,
                            "mtime_ns": st.st_mtime_ns,
                            "digest": prev.digest,
                            "faces": prev.faces,
                            "error": None,
                        }
                    )
                    if prev.faces == 0:
                        report.no_face.append(p)
                    continue
            plan.todo.append((person, rel, p))
    # photos and people that are gone (never those of unreadable folders)
    if old is not None:
        sources = set(old_files)
        if len(old.faces):
            f = old.faces
            sources |= set(f.loc[f["origin"] == "folder", "source"])
        for s in sources - present:
            prev = old_files.get(s)
            person = prev.person if prev is not None else _person_of(s)
            if person in plan.protected_people:
                plan.keep_sources.add(s)
                if prev is not None:
                    plan.kept_file_rows.append(_file_row(prev))
                continue
            plan.removed_sources.add(s)
    report.removed = len(plan.removed_sources)
    report.to_embed = len(plan.todo)
    return plan


def _unreadable(path: str) -> str | None:
    """Why ``path`` cannot be opened for reading now, else ``None`` (one open(), no read:
    an unchanged photo's size and time come from stat(), which needs no read permission)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO: no wait
    except OSError as exc:
        return _problem(exc)
    os.close(fd)
    return None


def _person_of(rel: str) -> str:
    return Path(rel).parts[0] if Path(rel).parts else ""


def _problem(exc: OSError) -> str:
    from .imageio import _os_problem

    if isinstance(exc, FileNotFoundError):
        return "cannot be read (dangling symlink or vanished file)"
    return _os_problem(exc)


def _file_row(prev: Any) -> dict[str, Any]:
    return {c: getattr(prev, c) for c in FILE_COLUMNS}


def _keep_unreadable(
    plan: _Plan, prev: Any, rel: str, person: str, message: str, report: BuildReport
) -> None:
    """A photo that cannot be read now: keep what is stored for it, and report it."""
    if prev is not None and prev.person == person and not prev.error and plan.can_keep:
        plan.keep_sources.add(rel)
        plan.kept_file_rows.append(_file_row(prev))
        report.kept_unreadable += 1
        report.errors.append(f"{message}; its stored faces are kept")
    elif prev is not None:
        report.errors.append(f"{message}; not re-embedded with the new settings, so dropped")
    else:
        report.errors.append(message)


def _check_removals(
    plan: _Plan,
    old: Database | None,
    db_path: Path,
    people_dir: Path,
    allow: bool,
    report: BuildReport,
) -> None:
    if old is None or not old.n_faces:
        return
    f = old.faces
    folder = (f["origin"] == "folder").to_numpy()
    gone = folder & f["source"].isin(plan.removed_sources).to_numpy()
    report.faces_removed = int(gone.sum())
    remaining_people = set(plan.people) | set(f.loc[~folder, "person"]) | plan.protected_people
    lost_people = sorted(set(old.persons) - remaining_people)
    n_faces, n_people = old.n_faces, max(len(old.persons), 1)
    mass = report.faces_removed and (
        report.faces_removed == n_faces
        or report.faces_removed > MASS_REMOVAL_SHARE * n_faces
        or len(lost_people) > MASS_REMOVAL_SHARE * n_people
    )
    if mass and not allow:
        raise UsageError(
            f"{people_dir}: this run would remove {len(lost_people)} of {len(old.persons)} people "
            f"and {report.faces_removed} of {n_faces} faces from {db_path} (is the folder empty, "
            "moved or not mounted?); nothing changed. Re-run with --allow-mass-removal if "
            "that is intended" + (f" ({plan.layout_problem})" if plan.layout_problem else "")
        )


def _embed(
    plan: _Plan,
    config: Any,
    workers: int | None,
    progress: Any,
    on_result: Any,
    wrap: Wrap | None,
    report: BuildReport,
    engine: Any = None,
    max_yaw: float | None = None,
) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]], list[dict[str, Any]]]:
    from .facetable import pose_columns
    from .pipeline import run_paths

    new_rows: list[dict[str, Any]] = []
    new_vecs: dict[str, list[np.ndarray]] = {m: [] for m in config.models}
    file_rows: list[dict[str, Any]] = []
    stream: Iterable[ImageResult] = run_paths(
        config, [t[2] for t in plan.todo], workers=workers, progress=progress, engine=engine
    )
    if wrap is not None:
        stream = wrap(stream, len(plan.todo))
    for (person, rel, p), result in zip(plan.todo, _iter(stream)):
        if on_result is not None:
            on_result(result)
        prev = plan.old_files.get(rel)
        if result.error:
            _keep_unreadable(plan, prev, rel, person, result.error, report)
            continue
        try:
            st = os.stat(p)
        except OSError as exc:
            _keep_unreadable(plan, prev, rel, person, f"{p}: {_problem(exc)}", report)
            continue
        nfaces = len(result.faces)
        file_rows.append(
            {
                "source": rel,
                "person": person,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "digest": result.digest,
                "faces": nfaces,
                "error": None,
            }
        )
        if prev is not None:
            report.updated += 1
        else:
            report.added += 1
        if nfaces == 0:
            report.no_face.append(p)
            continue
        if nfaces > 1:
            report.several_faces.append((p, nfaces))
        i = dominant_face(result)
        pose = pose_columns(result.faces, i)
        if max_yaw is not None and pose["yaw"] is not None and abs(pose["yaw"]) > max_yaw:
            report.skipped.append(
                (p, f"its face is turned {pose['yaw']:.0f} degrees, beyond --max-yaw {max_yaw:g}")
            )
            continue
        x, y, w, h = (float(v) for v in result.faces.xywh[i])
        new_rows.append(
            {
                "face_id": 0,
                "person": person,
                "source": rel,
                "digest": result.digest,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "origin": "folder",
                "x": x,
                "y": y,
                "w": w,
                "h": h,
                "det_score": float(result.faces.confidence[i]),
                "face_size": float(result.faces.size[i]),
                "others": nfaces - 1,
                **pose,
            }
        )
        for m in config.models:
            new_vecs[m].append(result.embeddings.vectors[m][i])
    return new_rows, new_vecs, file_rows


def _iter(stream: Iterable[ImageResult]) -> Iterator[ImageResult]:
    yield from stream


def _assemble(
    plan: _Plan,
    old: Database | None,
    compatible: bool,
    config: Any,
    new_rows: list[dict[str, Any]],
    new_vecs: dict[str, list[np.ndarray]],
    report: BuildReport,
    rebuild: bool,
) -> tuple[Any, dict[str, np.ndarray]]:
    import pandas as pd

    from .enroll import concat_faces, reembed_enrolled

    parts: list[Any] = []
    vec_parts: dict[str, list[np.ndarray]] = {m: [] for m in config.models}
    if old is not None and old.n_faces:
        f = old.faces
        enrolled = (f["origin"] == "enrolled").to_numpy()
        keep_folder = (~enrolled) & f["source"].isin(plan.keep_sources).to_numpy()
        if compatible:
            keep = keep_folder | enrolled
            parts.append(f[keep])
            for m in config.models:
                vec_parts[m].append(old.vectors[m][keep])
            report.enrolled_kept = int(enrolled.sum())
        elif enrolled.any():
            # the models changed: embed the enrolled faces again from their crops / photos
            rows = f[enrolled].reset_index(drop=True)
            re = reembed_enrolled(rows, config)
            for src, why in re.lost:
                report.enrolled_lost.append((src, why))
            if re.kept:
                parts.append(rows.iloc[re.kept])
                for m in config.models:
                    vec_parts[m].append(re.vectors[m])
            report.enrolled_kept = report.enrolled_reembedded = len(re.kept)
    if new_rows:
        parts.append(pd.DataFrame(new_rows, columns=[*FACE_COLUMNS, "yaw", "pitch", "roll"]))
        for m in config.models:
            vec_parts[m].append(np.stack(new_vecs[m]).astype(np.float32))
    faces = concat_faces(parts)
    dims = {
        m: next((v.shape[1] for v in vec_parts[m] if v.ndim == 2 and v.shape[1]), 0)
        for m in config.models
    }
    vectors = {
        m: (
            np.concatenate([v for v in vec_parts[m] if len(v)]).astype(np.float32)
            if any(len(v) for v in vec_parts[m])
            else np.zeros((0, dims[m] or _model_dim(m)), np.float32)
        )
        for m in config.models
    }
    return faces, vectors


def _model_dim(model: str) -> int:
    try:
        from .models.registry import get_spec

        return int(getattr(get_spec(model), "dim", 128) or 128)
    except Exception:
        return 128


def _persons(
    plan: _Plan, faces: Any, meta: dict[str, dict[str, Any]], old: Database | None
) -> dict[str, Person]:
    """Everyone with a folder, plus everyone who still has faces (enrolled, protected)."""
    persons: dict[str, Person] = {}
    have = set(faces["person"]) if len(faces) else set()
    for pid in plan.people + sorted((have | plan.protected_people) - set(plan.people)):
        prev = old.persons.get(pid) if old is not None else None
        if pid in meta:
            info = dict(meta[pid])
            name = info.pop("name", None)
            if name is None and prev is not None:
                name = prev.name
        else:
            info = dict(prev.extra) if prev is not None else {}
            name = prev.name if prev is not None else None
        persons[pid] = Person(pid, name, info, prev.added if prev is not None else None)
    return persons


def pipeline_manifest(config: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The manifest's ``pipeline`` settings and per-model fingerprints for ``config`` (what
    a new database built with it records)."""
    from .models.runtime import fingerprint

    pipeline = {
        "detector": config.detector,
        "max_side": config.max_side,
        "upsample": config.upsample,
        "flip": config.flip,
        "detector_fingerprint": fingerprint(config.detector),
    }
    return pipeline, {m: _embedder_fingerprint(m, config) for m in config.models}


def _embedder_fingerprint(model: str, config: Any) -> str:
    from .embed import embedder_fingerprint

    return embedder_fingerprint(model, config.flip)
