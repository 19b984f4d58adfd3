"""``build-index``: a folder of people (one subfolder each) -> an up-to-date face database.

Incremental and safe to run from cron: unchanged photos (same size and modification time,
or same SHA-256) are not re-embedded; changed photos are; faces of deleted photos and people
are removed. The whole update is one atomic commit (:meth:`facekit.database.Database.commit`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import Calibration
from .database import FACE_COLUMNS, FILE_COLUMNS, Database, Person
from .errors import InputError, UsageError
from .types import ImageResult
from .walk import iter_people

log = logging.getLogger(__name__)

__all__ = ["BuildReport", "build_index", "dominant_face", "read_people_meta"]


@dataclass
class BuildReport:
    """What a ``build-index`` run did."""

    db: str
    persons: int = 0
    faces: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    no_face: list[str] = field(default_factory=list)
    several_faces: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
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
            "no_face": self.no_face,
            "several_faces": [{"source": s, "faces": n} for s, n in self.several_faces],
            "errors": self.errors,
            "calibration": None
            if cal is None
            else {
                "source": cal.source,
                "threshold": round(cal.threshold, 3),
                "genuine": round(cal.genuine, 3),
                "impostor": {m: [round(a, 4), round(b, 4)] for m, (a, b) in cal.impostor.items()},
                **{
                    k: v
                    for k, v in cal.stats.items()
                    if k.startswith("loo_") or k == "impostor_pairs"
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


def read_people_meta(people_dir: Path) -> dict[str, dict[str, Any]]:
    """``people.json`` (``{id: {"name": ..., ...}}`` or a list of objects with ``id``) or
    ``people.csv`` (an ``id`` column, optional ``name`` and any other columns)."""
    js, cs = people_dir / "people.json", people_dir / "people.csv"
    try:
        if js.is_file():
            data = json.loads(js.read_text(encoding="utf-8"))
            if isinstance(data, list):
                return {str(d["id"]): {k: v for k, v in d.items() if k != "id"} for d in data}
            return {str(k): (v if isinstance(v, dict) else {"name": v}) for k, v in data.items()}
        if cs.is_file():
            with open(cs, newline="", encoding="utf-8") as fh:
                return {str(r.pop("id")): r for r in csv.DictReader(fh)}
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise InputError(
            f"{js if js.is_file() else cs}: cannot read people metadata ({exc})"
        ) from None
    return {}


def build_index(
    people_dir: str | os.PathLike[str],
    db_path: str | os.PathLike[str],
    config: Any,
    *,
    storage: str = "float32",
    encrypt: bool = False,
    key: str | None = None,
    workers: int | None = None,
    progress: Any = None,
    on_result: Any = None,
    rebuild: bool = False,
) -> BuildReport:
    """Build or update the database at ``db_path`` from ``people_dir``.

    Args:
        people_dir: one subfolder per person (folder name = person id); optional
            ``people.json`` / ``people.csv`` with names and extra fields.
        db_path: database folder (created if missing).
        config: :class:`~facekit.pipeline.PipelineConfig`; for an existing database its
            models must match (use ``rebuild=True`` to change models).
        storage: ``float32`` or ``e4m3`` index storage.
        encrypt: keep tables that name people in an AES-256 zip (key: ``key`` or ``$FACEKIT_KEY``).
        workers: worker processes for embedding.
        progress: model download progress callback.
        on_result: called with each new :class:`ImageResult` (progress bars).
        rebuild: ignore the existing database's faces and re-embed everything.

    Returns:
        a :class:`BuildReport`.

    Raises:
        LockedError: another process is writing this database.
        KeyRequiredError: encryption requested / present without a usable key.
    """
    import pandas as pd

    from .models.runtime import fingerprint
    from .pipeline import run_paths

    people_dir = Path(people_dir)
    db_path = Path(db_path)
    if not people_dir.is_dir():
        raise InputError(f"{people_dir}: not a folder (expected one subfolder per person)")
    report = BuildReport(str(db_path))
    with Database.lock(db_path):
        old = None
        if Database.exists(db_path) and not rebuild:
            old = Database.open(db_path, key=key)
            if list(config.models) != old.models:
                raise UsageError(
                    f"{db_path} was built with models {','.join(old.models)}; "
                    f"re-run with --models {','.join(old.models)} or use --rebuild"
                )
            if encrypt != bool(old.manifest.get("encrypted")) and not rebuild:
                raise UsageError(f"{db_path}: changing encryption needs --rebuild")
        meta = read_people_meta(people_dir)
        # ---- scan
        listing: list[tuple[str, str, str]] = []  # (person, rel source, abs path)
        for person, paths in iter_people(people_dir):
            for p in paths:
                listing.append((person, os.path.relpath(p, people_dir), p))
        old_files = (
            {}
            if old is None or old.files is None
            else {r.source: r for r in old.files.itertuples()}
        )
        keep_sources: set[str] = set()
        todo: list[tuple[str, str, str]] = []
        file_rows: list[dict[str, Any]] = []
        from .imageio import file_digest

        for person, rel, p in listing:
            prev = old_files.get(rel)
            try:
                st = os.stat(p)
            except OSError as exc:
                report.errors.append(f"{p}: {exc.strerror or exc}")
                continue
            if prev is not None and prev.person == person and not prev.error:
                same = prev.size == st.st_size and prev.mtime_ns == st.st_mtime_ns
                if not same:
                    try:
                        same = file_digest(p) == prev.digest
                    except InputError:
                        same = False
                if same:
                    keep_sources.add(rel)
                    report.unchanged += 1
                    file_rows.append(
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
            todo.append((person, rel, p))
        # ---- embed what changed
        new_rows: list[dict[str, Any]] = []
        new_vecs: dict[str, list[np.ndarray]] = {m: [] for m in config.models}
        stream = run_paths(config, [t[2] for t in todo], workers=workers, progress=progress)
        for (person, rel, p), result in zip(todo, stream):
            if on_result is not None:
                on_result(result)
            if result.error:
                report.errors.append(result.error)
                continue
            st = os.stat(p)
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
            if rel in old_files:
                report.updated += 1
            else:
                report.added += 1
            if nfaces == 0:
                report.no_face.append(p)
                continue
            if nfaces > 1:
                report.several_faces.append((p, nfaces))
            i = dominant_face(result)
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
                }
            )
            for m in config.models:
                new_vecs[m].append(result.embeddings.vectors[m][i])
        # ---- merge with what is kept
        parts: list[Any] = []
        vec_parts: dict[str, list[np.ndarray]] = {m: [] for m in config.models}
        if old is not None and len(old.faces):
            keep = (old.faces["origin"] == "enrolled") | old.faces["source"].isin(keep_sources)
            # removed = faces of photos (or people) that are gone; changed photos count as updated
            present = {rel for _, rel, _ in listing}
            gone = (old.faces["origin"] == "folder") & ~old.faces["source"].isin(present)
            report.removed = int(gone.sum())
            parts.append(old.faces[keep.to_numpy()])
            for m in config.models:
                vec_parts[m].append(old.vectors[m][keep.to_numpy()])
        if new_rows:
            parts.append(pd.DataFrame(new_rows, columns=FACE_COLUMNS))
            for m in config.models:
                vec_parts[m].append(np.stack(new_vecs[m]))
        faces = (
            pd.concat(parts, ignore_index=True)
            if parts
            else pd.DataFrame({c: [] for c in FACE_COLUMNS})
        )
        dims = {m: 128 for m in config.models}
        vectors = {
            m: (
                np.concatenate(vec_parts[m]) if vec_parts[m] else np.zeros((0, dims[m]), np.float32)
            )
            for m in config.models
        }
        # persons: everyone with a folder, plus enrolled people
        persons: dict[str, Person] = {}
        folder_people = sorted({t[0] for t in listing})
        for pid in folder_people + sorted(set(faces["person"]) - set(folder_people)):
            info = dict(meta.get(pid, {}))
            name = info.pop("name", None)
            if name is None and old is not None and pid in old.persons:
                name = old.persons[pid].name
            persons[pid] = Person(pid, name, info)
        weights = config.weights or tuple(1.0 for _ in config.models)
        total = float(sum(weights))
        report.calibration = Database.commit(
            db_path,
            faces=faces,
            vectors=vectors,
            persons=persons,
            pipeline={
                "detector": config.detector,
                "max_side": config.max_side,
                "upsample": config.upsample,
                "flip": config.flip,
                "detector_fingerprint": fingerprint(config.detector),
            },
            fingerprints={m: _embedder_fingerprint(m, config) for m in config.models},
            weights={m: w / total for m, w in zip(config.models, weights)},
            storage=storage,
            encrypt=encrypt,
            key=key,
            files_table=pd.DataFrame(file_rows, columns=FILE_COLUMNS),
        )
        report.persons = len(persons)
        report.faces = len(faces)
    return report


def _embedder_fingerprint(model: str, config: Any) -> str:
    from .embed import embedder_fingerprint

    return embedder_fingerprint(model, config.flip)
