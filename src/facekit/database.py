"""The face database (generation store): face and person tables, calibration, safe writes.

A database is a directory::

    faces.db/
      CURRENT                 "<generation> <sha256 of its manifest.json>", replaced atomically
      .lock                   held by the one process allowed to write
      gen-000007/             the live generation (the previous one is kept for readers)
        manifest.json         format, models + fingerprints, calibration, counts, file checksums
        index-<model>.voy     one Voyager index per recogniser (cosine), ids = face ids
        faces.parquet         face id, person, source, digest, box, quality, embeddings
        persons.parquet       person id, name, extra fields (JSON)
        data.zip              instead of the two tables when encrypted (AES-256, FACEKIT_KEY)

Every write builds a complete new generation in a temporary folder, fsyncs it, renames it,
then replaces ``CURRENT``: a process killed at any moment leaves the previous database
complete, and readers never see a half-written state. ``manifest.json`` records the SHA-256
of each file, and ``CURRENT`` that of the manifest, so a tampered or truncated file is
detected when the database is opened. See docs/database.md. The Voyager indices themselves
(build, load, search) are :mod:`facekit.index`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import index as _index
from .calibration import Calibration, calibrate
from .crypto import KEY_ENV, zip_read, zip_write
from .errors import DatabaseError, KeyRequiredError, LockedError
from .types import Embeddings

log = logging.getLogger(__name__)

__all__ = [
    "Database",
    "Person",
    "IndexInfo",
    "FORMAT_VERSION",
    "KEY_ENV",
    "FACE_COLUMNS",
    "FILE_COLUMNS",
]

FORMAT_VERSION = 1
QUERY_EF = _index.QUERY_EF
FILE_COLUMNS = ["source", "person", "size", "mtime_ns", "digest", "faces", "error"]
FACE_COLUMNS = [
    "face_id",
    "person",
    "source",
    "digest",
    "size",
    "mtime_ns",
    "origin",
    "x",
    "y",
    "w",
    "h",
    "det_score",
    "face_size",
    "others",
]


@dataclass(frozen=True)
class Person:
    """A known person: ``id`` (folder name), display ``name`` and extra fields."""

    id: str
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IndexInfo:
    """Summary of an open database."""

    path: str
    generation: str
    persons: int
    faces: int
    models: tuple[str, ...]
    encrypted: bool
    calibration_source: str
    threshold: float
    updated: str
    #: stated share of strangers that may be named, and what the calibration predicts
    max_strangers: float | None = None
    expected_strangers: float | None = None
    expected_named: float | None = None


def _stored_max_strangers(path: Path) -> float | None:
    """The stranger rate stated by the live generation at ``path`` (``None``: the default)."""
    try:
        gen = (path / "CURRENT").read_text().split()[0]
        cal = json.loads((path / gen / "manifest.json").read_text())["calibration"]
        return float(cal["max_strangers"])
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not possible on Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- database
class Database:
    """An open face database (read-only view of one generation).

    Use :meth:`open` to read and :meth:`writer` / :meth:`commit` to change it.

    Attributes:
        path: the database folder.
        manifest: parsed ``manifest.json``.
        faces: pandas DataFrame of faces (see module docs), without embeddings.
        vectors: model -> ``(n_faces, dim) float32`` embeddings, rows parallel to ``faces``.
        persons: person id -> :class:`Person`.
        calibration: the :class:`~facekit.calibration.Calibration` used for decisions.
    """

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        tables: dict[str, Any],
        vectors: dict[str, np.ndarray],
        persons: dict[str, Person],
        indices: dict[str, Any] | None = None,
        generation: str = "",
    ):
        self.path = Path(path)
        self.manifest = manifest
        self._tables = (
            tables  # pyarrow tables; pandas is imported only when a DataFrame is asked for
        )
        self._frames: dict[str, Any] = {}
        self.vectors = vectors
        self.persons = persons
        self._indices = indices or {}
        self.generation = generation
        self.calibration = Calibration.from_dict(manifest["calibration"])
        people = tables["faces"].column("person").to_pylist() if tables["faces"].num_rows else []
        #: ``(n_faces,)`` person id of each face, parallel to :attr:`vectors`.
        self.person_ids = (
            np.asarray(people, dtype=object).astype(str) if people else np.zeros(0, str)
        )

    def _frame(self, name: str) -> Any:
        if name not in self._frames:
            self._frames[name] = self._tables[name].to_pandas()
        return self._frames[name]

    @property
    def faces(self) -> Any:
        """pandas DataFrame of the faces (without embeddings; see :attr:`vectors`)."""
        return self._frame("faces")

    @property
    def files(self) -> Any:
        """pandas DataFrame of every gallery photo seen by build-index."""
        return self._frame("files")

    @property
    def n_faces(self) -> int:
        return int(self._tables["faces"].num_rows)

    # ----------------------------------------------------------------- reading
    @classmethod
    def exists(cls, path: str | os.PathLike[str]) -> bool:
        return (Path(path) / "CURRENT").is_file()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, key: str | None = None) -> Database:
        """Open the live generation of the database at ``path``.

        Args:
            path: database folder.
            key: encryption key (default: ``$FACEKIT_KEY``), needed only for encrypted databases.

        Raises:
            DatabaseError: missing, incompatible or tampered database.
            KeyRequiredError: encrypted and the key is missing or wrong.
        """
        import pyarrow.parquet as pq

        path = Path(path)
        if key is None:
            key = os.environ.get(KEY_ENV) or None
        current = path / "CURRENT"
        if not current.is_file():
            hint = " (build one with: facekit build-index PEOPLE_DIR -d DB)"
            raise DatabaseError(f"{path}: no face database here{hint}")
        try:
            gen, manifest_sha = current.read_text().split()
        except ValueError:
            raise DatabaseError(f"{path}: CURRENT is damaged") from None
        gdir = path / gen
        mpath = gdir / "manifest.json"
        if not mpath.is_file():
            raise DatabaseError(f"{path}: generation {gen} is missing")
        if _sha256_file(mpath) != manifest_sha:
            raise DatabaseError(
                f"{path}: manifest.json does not match its checksum (tampered or damaged)"
            )
        manifest = json.loads(mpath.read_text())
        if manifest.get("format_version", 0) > FORMAT_VERSION:
            raise DatabaseError(
                f"{path}: database format {manifest.get('format_version')} is newer than this facekit"
            )
        for name, digest in manifest["files"].items():
            f = gdir / name
            if not f.is_file() or _sha256_file(f) != digest:
                raise DatabaseError(
                    f"{path}: {gen}/{name} is missing or does not match its checksum (tampered or damaged)"
                )
        names = ("faces", "persons", "files")
        if manifest.get("encrypted"):
            import pyarrow as pa

            members = zip_read(gdir / "data.zip", key, path)
            tables = {n: pq.read_table(pa.BufferReader(members[f"{n}.parquet"])) for n in names}
        else:
            tables = {n: pq.read_table(gdir / f"{n}.parquet") for n in names}
        faces_t = tables["faces"]
        vectors = {}
        for m in manifest["models"]:
            dim = manifest["models"][m]["dim"]
            col = faces_t.column(f"emb_{m}").combine_chunks() if faces_t.num_rows else None
            vectors[m] = (
                np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(
                    -1, dim
                )
                if col is not None
                else np.zeros((0, dim), np.float32)
            )
        tables["faces"] = faces_t.drop_columns(
            [c for c in faces_t.column_names if c.startswith("emb_")]
        )
        persons = {}
        for r in tables["persons"].to_pylist():
            persons[str(r["person"])] = Person(
                str(r["person"]),
                None if r["name"] is None else str(r["name"]),
                json.loads(r["extra"] or "{}"),
            )
        indices = {}
        for m, info in manifest["models"].items():
            idx_path = gdir / f"index-{m}.voy"
            if idx_path.exists():
                with open(idx_path, "rb") as fh:
                    indices[m] = _index.load(fh, int(info.get("ef", QUERY_EF)))
        return cls(path, manifest, tables, vectors, persons, indices, gen)

    @property
    def models(self) -> list[str]:
        return list(self.manifest["models"])

    @property
    def config(self) -> Any:
        """The :class:`~facekit.pipeline.PipelineConfig` the database was built with."""
        from .pipeline import PipelineConfig

        p = self.manifest["pipeline"]
        return PipelineConfig(
            detector=p["detector"],
            models=tuple(self.models),
            weights=tuple(self.calibration.weights[m] for m in self.models),
            max_side=p.get("max_side", 1600),
            upsample=p.get("upsample", 0),
            flip=p.get("flip"),
        )

    def info(self) -> IndexInfo:
        return IndexInfo(
            str(self.path),
            self.generation,
            len(self.persons),
            self.n_faces,
            tuple(self.models),
            bool(self.manifest.get("encrypted")),
            self.calibration.source,
            self.calibration.threshold,
            self.manifest.get("updated", ""),
            self.calibration.max_strangers,
            self.calibration.expected_strangers,
            self.calibration.expected_named,
        )

    def knn(self, model: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest gallery faces of one model: ``(ids (q, k), distances (q, k))``, cosine."""
        return _index.search(self._indices.get(model), self.vectors[model], queries, k)

    # ----------------------------------------------------------------- writing
    @staticmethod
    def lock(path: str | os.PathLike[str], timeout: float = 0) -> Any:
        """The writer lock of a database folder (a :class:`filelock.FileLock`)."""
        from filelock import FileLock, Timeout

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path / ".lock"), timeout=timeout)

        class _Guard:
            def __enter__(self) -> Any:
                try:
                    lock.acquire()
                except Timeout:
                    raise LockedError(
                        f"{path}: another facekit process is writing to this database; "
                        "try again when it has finished"
                    ) from None
                return lock

            def __exit__(self, *exc: Any) -> None:
                lock.release()

        return _Guard()

    @classmethod
    def commit(
        cls,
        path: str | os.PathLike[str],
        *,
        faces: Any,
        vectors: Mapping[str, np.ndarray],
        persons: Mapping[str, Person],
        pipeline: Mapping[str, Any],
        fingerprints: Mapping[str, str],
        weights: Mapping[str, float],
        storage: str = "float32",
        encrypt: bool = False,
        key: str | None = None,
        extra_manifest: Mapping[str, Any] | None = None,
        calibration: Calibration | None = None,
        files_table: Any = None,
        before_replace: Callable[[], None] | None = None,
    ) -> Calibration:
        """Write a complete new generation and make it live. The caller holds :meth:`lock`.

        Returns:
            the calibration stored in the new manifest.
        """
        import pandas as pd

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if encrypt:
            key = key or os.environ.get(KEY_ENV)
            if not key:
                raise KeyRequiredError(f"{path}: --encrypt needs the key in {KEY_ENV}")
        models = list(vectors)
        n = len(faces)
        for m in models:
            if len(vectors[m]) != n:
                raise DatabaseError(f"internal: {m} has {len(vectors[m])} vectors for {n} faces")
        faces = faces.reset_index(drop=True).copy()
        faces["face_id"] = np.arange(n, dtype=np.int64)
        if calibration is None:
            # re-calibrate on the whole gallery, for the stranger rate the database states
            calibration = calibrate(
                faces["person"].to_numpy(),
                vectors,
                weights,
                max_strangers=_stored_max_strangers(path),
            )
        # --- new generation folder
        gens = sorted(
            p.name
            for p in path.glob("gen-[0-9]*")
            if p.is_dir() and re.fullmatch(r"gen-\d+", p.name)
        )
        number = int(gens[-1].split("-")[1]) + 1 if gens else 1
        gen = f"gen-{number:06d}"
        tmp = path / f".{gen}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            files: dict[str, str] = {}
            table = faces.copy()
            for m in models:
                table[f"emb_{m}"] = list(np.asarray(vectors[m], np.float32))
            persons_df = pd.DataFrame(
                {
                    "person": [p.id for p in persons.values()],
                    "name": [p.name for p in persons.values()],
                    "extra": [json.dumps(p.extra, ensure_ascii=False) for p in persons.values()],
                }
            )
            if files_table is None:
                files_table = pd.DataFrame({c: [] for c in FILE_COLUMNS})
            tables = {
                "faces.parquet": table,
                "persons.parquet": persons_df,
                "files.parquet": files_table,
            }
            if encrypt:
                blobs = {}
                for name, df in tables.items():
                    buf = io.BytesIO()
                    df.to_parquet(buf, index=False)
                    blobs[name] = buf.getvalue()
                zip_write(tmp / "data.zip", blobs, key or "")
            else:
                for name, df in tables.items():
                    df.to_parquet(tmp / name, index=False)
            model_info = {}
            for m in models:
                dim = (
                    int(np.asarray(vectors[m]).shape[1])
                    if n
                    else int(pipeline.get("dims", {}).get(m, 128))
                )
                index = _index.build(np.asarray(vectors[m], np.float32).reshape(n, dim), storage)
                _index.save(index, str(tmp / f"index-{m}.voy"))
                model_info[m] = {
                    "fingerprint": fingerprints.get(m, ""),
                    "dim": dim,
                    "metric": "cosine",
                    "storage": storage,
                    "ef": QUERY_EF,
                    "weight": calibration.weights.get(m, 0.0),
                }
            for f in sorted(tmp.iterdir()):
                files[f.name] = _sha256_file(f)
            previous = {}
            if (path / "CURRENT").is_file():
                try:
                    old_gen = (path / "CURRENT").read_text().split()[0]
                    previous = json.loads((path / old_gen / "manifest.json").read_text())
                except (OSError, ValueError, IndexError):
                    previous = {}
            manifest = {
                "format_version": FORMAT_VERSION,
                "generator": "facekit",
                "created": previous.get("created", _now()),
                "updated": _now(),
                "generation": gen,
                "models": model_info,
                "pipeline": dict(pipeline),
                "calibration": calibration.to_dict(),
                "counts": {"faces": int(n), "persons": len(persons)},
                "encrypted": bool(encrypt),
                "files": files,
                **dict(extra_manifest or {}),
            }
            mtext = json.dumps(manifest, indent=2, sort_keys=False)
            (tmp / "manifest.json").write_text(mtext)
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            _fsync_dir(tmp)
            os.rename(tmp, path / gen)
            _fsync_dir(path)
            if before_replace is not None:
                before_replace()  # test hook: simulate a kill between the two renames
            cur_tmp = path / f".CURRENT.tmp-{os.getpid()}"
            cur_tmp.write_text(f"{gen} {hashlib.sha256(mtext.encode()).hexdigest()}\n")
            with open(cur_tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(cur_tmp, path / "CURRENT")
            _fsync_dir(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        cls._cleanup(path, keep={gen, *(gens[-1:] if gens else [])})
        return calibration

    @staticmethod
    def _cleanup(path: Path, keep: set[str]) -> None:
        """Remove generations other than the live and the previous one, and stale temp folders."""
        for p in path.iterdir():
            if p.is_dir() and (
                re.fullmatch(r"gen-\d+", p.name)
                and p.name not in keep
                or p.name.startswith(".gen-")
            ):
                shutil.rmtree(p, ignore_errors=True)
        for p in path.glob(".CURRENT.tmp-*"):
            p.unlink(missing_ok=True)

    # ----------------------------------------------------------------- enrol
    def enroll(
        self,
        person: str,
        name: str | None,
        embeddings: Embeddings,
        sources: Sequence[str],
        boxes: np.ndarray,
        digests: Sequence[str] | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> int:
        """Add faces to ``person`` (created if new) as a new generation; returns faces added.

        The embeddings must come from this database's models (same fingerprints). Faces
        already stored (same source, overlapping box) are skipped, so enrolling twice
        stores them once. Without crops, a rebuild with other models re-embeds these faces
        from their photos; :func:`facekit.enroll.enroll_faces` also stores crops.
        """
        from .enroll import EnrollFace, enroll_faces

        n = len(embeddings)
        boxes = np.asarray(boxes, float).reshape(n, 4)
        faces = [
            EnrollFace(
                str(src),
                (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                digest=digests[i] if digests is not None else "",
            )
            for i, (src, b) in enumerate(zip(sources, boxes, strict=True))
        ]
        return enroll_faces(self.path, person, name, embeddings, faces, extra=extra, key=key).added
