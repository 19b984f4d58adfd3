"""The face database (generation store): face and person tables, calibration, safe writes.

A database is a directory::

    faces.db/
      CURRENT                 "<generation> <sha256 of its manifest.json>[ <hmac>]", atomic
      .lock                   held by the one process allowed to write
      .verified               cache of files already hashed (size, mtime, inode, ctime)
      gen-000007/             the live generation (the previous one is kept for readers)
        manifest.json         format, models + fingerprints, calibration, counts, checksums
        index-<model>.voy     one Voyager index per recogniser (cosine), ids = face uids
        faces.parquet         face id, person, source, digest, box, quality, embeddings
        persons.parquet       person id, name, extra fields (JSON), when added
        files.parquet         every gallery photo seen by build-index
        people-edits.json     edits made with `facekit people` that build-index keeps
        data.zip              instead of the tables and indices when encrypted (AES-256)

Every write builds a complete new generation in a temporary folder, fsyncs it, renames it,
then replaces ``CURRENT``: a process killed at any moment leaves the previous database
complete, and readers never see a half-written state. ``manifest.json`` records the SHA-256
and size of each file, and ``CURRENT`` the SHA-256 of the manifest. Opening checks the
structure of the manifest and the size of every file; each file is hashed when it is first
read, before it is used (:meth:`Database.verify` checks everything). Encrypted databases
also authenticate the manifest and ``CURRENT`` (HMAC-SHA256, see :mod:`facekit.crypto`).
See docs/database.md and docs/security.md. The Voyager indices themselves (build, load,
search) are :mod:`facekit.index`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
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

from . import crypto
from . import index as _index
from .calibration import Calibration, calibrate
from .crypto import KEY_ENV, zip_read, zip_write
from .errors import DatabaseError, KeyRequiredError, LockedError
from .facetable import FOOTER_LIMITS
from .types import Embeddings

log = logging.getLogger(__name__)

__all__ = [
    "Database",
    "Person",
    "IndexInfo",
    "VerifyReport",
    "FORMAT_VERSION",
    "KEY_ENV",
    "FACE_COLUMNS",
    "FILE_COLUMNS",
]

#: 2: file sizes in the manifest, authenticated encrypted databases (indices in data.zip).
FORMAT_VERSION = 3  # 3: Voyager ids are face uids (models.<m>.index_ids)
QUERY_EF = _index.QUERY_EF
#: A write updates the live index in place (marks removed faces deleted, inserts new ones)
#: while deleted items are at most this share of it; beyond, the index is rebuilt.
MAX_INDEX_DELETED = 0.2
#: Set to 1 to open (and, with build-index, upgrade) an encrypted database written before
#: format 2, whose manifest is not authenticated.
LEGACY_ENV = "FACEKIT_ALLOW_UNAUTHENTICATED"
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
_GEN = re.compile(r"gen-\d{6,}")
_CURRENT = re.compile(r"(gen-\d{6,}) ([0-9a-f]{64})(?: ([0-9a-f]{64}))?")
_MEMBER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_SHA = re.compile(r"[0-9a-f]{64}")
_TABLES = ("faces", "persons", "files")
#: The generation member holding the edits made with ``facekit people``.
EDITS_MEMBER = "people-edits.json"


@dataclass(frozen=True)
class Person:
    """A known person: ``id`` (folder name), display ``name``, extra fields, and when the
    person was first stored (``added``, ISO 8601 UTC; filled in by :meth:`Database.commit`)."""

    id: str
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    added: str | None = None


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
    storage: str = "float32"
    bytes: int = 0
    recovered: str | None = None


@dataclass
class VerifyReport:
    """Result of :meth:`Database.verify`: every file hashed and parsed."""

    path: str
    generation: str
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


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


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def os_error(path: Path, exc: OSError, doing: str) -> DatabaseError:
    """A one-line :class:`DatabaseError` for an OS error while reading or writing ``path``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "disk full"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied (read-only folder?)"
    elif exc.errno == errno.ENOTDIR or isinstance(exc, NotADirectoryError):
        why = "not a folder"
    elif isinstance(exc, FileExistsError):
        why = "a file is in the way"
    else:
        why = exc.strerror or _short(exc)
    where = getattr(exc, "filename", None) or path
    return DatabaseError(f"{where}: {why} while {doing}")


def _assign_face_uids(faces: Any, previous: Mapping[str, Any]) -> int:
    """Give faces without a ``face_uid`` the next unused ids (in place); returns the next id.

    Ids are never reused: the manifest keeps the next one (``next_face_uid``). A table from
    before face ids existed numbers its faces by row, as readers showed them.
    """
    n = len(faces)
    if "face_uid" not in faces.columns:
        faces["face_uid"] = (
            np.arange(n, dtype=np.int64) if not previous.get("next_face_uid") else -1
        )
    uid = faces["face_uid"].to_numpy(dtype=float, na_value=-1.0)
    uid = np.where(np.isfinite(uid), uid, -1).astype(np.int64)
    prev_next = previous.get("next_face_uid")
    nxt = max(int(prev_next) if isinstance(prev_next, int) else 0, int(uid.max(initial=-1)) + 1)
    # a face id seen twice (a copied row) keeps it on its first row only
    _, first = np.unique(uid, return_index=True)
    dup = np.ones(n, bool)
    dup[first] = False
    new = (uid < 0) | dup
    uid[new] = np.arange(nxt, nxt + int(new.sum()), dtype=np.int64)
    faces["face_uid"] = uid
    return int(nxt + int(new.sum()))


def _number(gen: str) -> int:
    return int(gen.split("-")[1])


def _generations(path: Path) -> list[str]:
    """Generation folders of a database, newest first."""
    try:
        names = [p.name for p in path.iterdir() if _GEN.fullmatch(p.name) and p.is_dir()]
    except OSError:
        return []
    return sorted(names, key=_number, reverse=True)


def _read_current(path: Path) -> tuple[tuple[str, str, str | None] | None, str]:
    """``((generation, manifest sha, mac), "")`` or ``(None, why it is unusable)``."""
    try:
        text = (path / "CURRENT").read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    m = _CURRENT.fullmatch(text.strip())
    if m is None:
        return None, "damaged (it must name a gen-NNNNNN folder of this database)"
    return (m.group(1), m.group(2), m.group(3)), ""


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(what)


def _validate_manifest(m: Any) -> None:
    """Raise ValueError naming the first structural problem of a parsed manifest."""
    _check(isinstance(m, dict), "not a JSON object")
    fv = m.get("format_version")
    _check(isinstance(fv, int) and not isinstance(fv, bool), "format_version missing")
    models = m.get("models")
    _check(isinstance(models, dict) and len(models) > 0, "models missing")
    for name, info in models.items():
        _check(_MEMBER.fullmatch(str(name)) is not None, f"bad model name {name!r}")
        _check(isinstance(info, dict), f"models.{name} is not an object")
        dim = info.get("dim")
        _check(isinstance(dim, int) and 0 < dim <= 65536, f"models.{name}.dim")
        _check(info.get("storage", "float32") in ("float32", "e4m3"), f"models.{name}.storage")
        ef = info.get("ef", QUERY_EF)
        _check(isinstance(ef, int) and 0 < ef <= 100000, f"models.{name}.ef")
    _check(isinstance(m.get("pipeline"), dict), "pipeline missing")
    _check(isinstance(m["pipeline"].get("detector"), str), "pipeline.detector missing")
    _check(isinstance(m.get("calibration"), dict), "calibration missing")
    cal = Calibration.from_dict(m["calibration"])  # raises KeyError/TypeError/ValueError
    _check(np.isfinite(float(cal.threshold)), "calibration.threshold is not a number")
    for mod in models:
        mu, sd = cal.impostor[mod]
        _check(np.isfinite(float(mu)) and float(sd) > 0, f"calibration.impostor.{mod}")
    counts = m.get("counts")
    _check(isinstance(counts, dict), "counts missing")
    for k in ("faces", "persons"):
        v = counts.get(k)
        _check(isinstance(v, int) and v >= 0, f"counts.{k}")
    _check(isinstance(m.get("encrypted", False), bool), "encrypted is not true/false")
    files = m.get("files")
    _check(isinstance(files, dict), "files missing")
    for name, digest in files.items():
        _check(_MEMBER.fullmatch(str(name)) is not None, f"bad file name {name!r}")
        _check(isinstance(digest, str) and _SHA.fullmatch(digest) is not None, f"files.{name}")
    sizes = m.get("sizes", {})
    _check(isinstance(sizes, dict), "sizes is not an object")
    for name, size in sizes.items():
        _check(name in files and isinstance(size, int) and size >= 0, f"sizes.{name}")
    if m.get("encrypted"):
        _check("data.zip" in files, "encrypted but data.zip is not listed")
        auth = m.get("auth")
        if auth is not None:
            _check(isinstance(auth, dict), "auth is not an object")
            for k in ("salt", "check", "mac"):
                _check(isinstance(auth.get(k), str), f"auth.{k} missing")
            _check(isinstance(auth.get("iterations"), int), "auth.iterations missing")
            bytes.fromhex(auth["salt"])
    else:
        for t in _TABLES:
            _check(f"{t}.parquet" in files, f"{t}.parquet is not listed")


def _load_stamps(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / ".verified").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


# --------------------------------------------------------------------------- database
class Database:
    """An open face database (read-only view of one generation).

    Use :meth:`open` to read and :meth:`lock` + :meth:`commit` to change it. Opening reads
    only ``CURRENT`` and the manifest (checked for structure, authenticity when encrypted,
    and the size of every file); tables and indices are read, hashed and checked the first
    time they are needed.

    Attributes:
        path: the database folder.
        manifest: parsed ``manifest.json``.
        generation: the generation folder name, e.g. ``gen-000007``.
        calibration: the :class:`~facekit.calibration.Calibration` used for decisions.
        recovered: why ``CURRENT`` was unusable, when the newest complete generation was
            opened instead (else ``None``).
    """

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        generation: str,
        *,
        zip_password: str | None = None,
        recovered: str | None = None,
    ):
        self.path = Path(path)
        self.manifest = manifest
        self.generation = generation
        self.recovered = recovered
        self.calibration = Calibration.from_dict(manifest["calibration"])
        self._gdir = self.path / generation
        self._zip_password = zip_password
        self._members: dict[str, bytes] | None = None
        self._tables: dict[str, Any] = {}
        self._frames: dict[str, Any] = {}
        self._vectors: dict[str, np.ndarray] | None = None
        self._persons: dict[str, Person] | None = None
        self._person_ids: np.ndarray | None = None
        self._indices: dict[str, Any] = {}
        self._uid_order: tuple[np.ndarray, np.ndarray] | None = None
        self._stamps: dict[str, Any] | None = None
        self._fds: dict[str, int] = {}
        self._groups: tuple[dict[str, int], np.ndarray, np.ndarray] | None = None

    def close(self) -> None:
        """Release the open files of the generation (also done when garbage-collected)."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.close()

    # ----------------------------------------------------------------- lazy reads
    def _damaged(self, name: str, why: str) -> DatabaseError:
        return DatabaseError(f"{self.path}: {self.generation}/{name} {why} (tampered or damaged)")

    def _read(self, name: str, *, full: bool = False) -> bytes:
        """Bytes of a file of this generation, checked against the manifest before use."""
        want = self.manifest["files"].get(name)
        if want is None:
            raise self._damaged(name, "is not listed in the manifest")
        f = self._gdir / name
        try:
            if name in self._fds:
                fd = self._fds[name]
                st = os.fstat(fd)
                with os.fdopen(os.dup(fd), "rb") as fh:  # one allocation of the file's size
                    fh.seek(0)
                    data = fh.read()
            else:
                with open(f, "rb") as fh:
                    st = os.fstat(fh.fileno())
                    data = fh.read()
        except FileNotFoundError:
            raise self._damaged(name, "is missing") from None
        except OSError as exc:
            raise os_error(f, exc, "reading the database") from None
        size = self.manifest.get("sizes", {}).get(name)
        if (size is not None and size != len(data)) or len(data) != st.st_size:
            raise self._damaged(name, "does not have the size recorded in the manifest")
        plain = not self.manifest.get("encrypted")
        stamp_key = f"{self.generation}/{name}"
        if plain and not full:
            if self._stamps is None:
                self._stamps = _load_stamps(self.path)
            if self._stamps.get(stamp_key) == [*_stat_key(st), want]:
                return data  # hashed before, unchanged since (same size, mtime, inode, ctime)
        if hashlib.sha256(data).hexdigest() != want:
            raise self._damaged(name, "does not match its checksum")
        if plain:
            self._remember(stamp_key, [*_stat_key(st), want])
        return data

    def _remember(self, key: str, value: list[Any]) -> None:
        """Best effort: record a verified file in ``.verified`` (skipped when read-only)."""
        stamps = _load_stamps(self.path)
        live = set(_generations(self.path))
        stamps = {k: v for k, v in stamps.items() if k.split("/")[0] in live}
        stamps[key] = value
        self._stamps = stamps
        tmp = self.path / f".verified.tmp-{os.getpid()}"
        try:
            tmp.write_text(json.dumps(stamps))
            os.replace(tmp, self.path / ".verified")
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _blob(self, name: str, *, full: bool = False) -> bytes | None:
        """A member of the generation (from data.zip when encrypted); None if absent."""
        if self.manifest.get("encrypted") and name not in self.manifest["files"]:
            if self._members is None:
                raw = self._read("data.zip", full=full)
                self._members = zip_read(io.BytesIO(raw), self._zip_password, self.path)
            return self._members.get(name)
        if name not in self.manifest["files"]:
            return None
        return self._read(name, full=full)

    def _table(self, name: str) -> Any:
        if name in self._tables:
            return self._tables[name]
        import pyarrow as pa
        import pyarrow.parquet as pq

        blob = self._blob(f"{name}.parquet")
        if blob is None:
            raise self._damaged(f"{name}.parquet", "is missing")
        try:
            table = pq.read_table(pa.BufferReader(blob), **FOOTER_LIMITS)
        except Exception as exc:
            raise self._damaged(
                f"{name}.parquet", f"is not a readable table ({_short(exc)})"
            ) from None
        need = {
            "faces": ["person", "source", "origin"],
            "persons": ["person", "name", "extra"],
            "files": ["source", "person", "size", "mtime_ns"],
        }[name]
        missing = [c for c in need if c not in table.column_names]
        if missing:
            raise self._damaged(f"{name}.parquet", f"lacks columns {', '.join(missing)}")
        counts = self.manifest["counts"]
        if name in counts and table.num_rows != counts[name]:
            raise self._damaged(
                f"{name}.parquet", f"has {table.num_rows} rows, the manifest {counts[name]}"
            )
        if name == "faces":
            vectors = {}
            for m, info in self.manifest["models"].items():
                dim = info["dim"]
                col = f"emb_{m}"
                if col not in table.column_names:
                    raise self._damaged("faces.parquet", f"lacks the {m} embeddings")
                try:
                    arr = table.column(col).combine_chunks()
                    flat = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), np.float32)
                    vectors[m] = flat.reshape(table.num_rows, dim)
                except Exception as exc:
                    raise self._damaged(
                        "faces.parquet", f"has bad {m} embeddings ({_short(exc)})"
                    ) from None
            self._vectors = vectors
            table = table.drop_columns([c for c in table.column_names if c.startswith("emb_")])
        self._tables[name] = table
        return table

    def _frame(self, name: str) -> Any:
        if name not in self._frames:
            self._frames[name] = self._table(name).to_pandas()
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
    def vectors(self) -> dict[str, np.ndarray]:
        """model -> ``(n_faces, dim) float32`` embeddings, rows parallel to :attr:`faces`."""
        if self._vectors is None:
            self._table("faces")
        assert self._vectors is not None
        return self._vectors

    @property
    def person_ids(self) -> np.ndarray:
        """``(n_faces,)`` person id of each face, parallel to :attr:`vectors`."""
        if self._person_ids is None:
            t = self._table("faces")
            people = t.column("person").to_pylist() if t.num_rows else []
            self._person_ids = (
                np.asarray(people, dtype=object).astype(str) if people else np.zeros(0, str)
            )
        return self._person_ids

    @property
    def face_uids(self) -> np.ndarray:
        """``(n_faces,) int64`` stable id of each face, parallel to :attr:`vectors`.

        Unlike the row position (``face_id``, renumbered by every write), a face keeps its
        id across generations; ``facekit people`` names faces by it. Databases written
        before it existed use the row position until their next write.
        """
        t = self._table("faces")
        if "face_uid" in t.column_names and t.num_rows:
            return np.asarray(t.column("face_uid").to_numpy(zero_copy_only=False), np.int64)
        return np.arange(t.num_rows, dtype=np.int64)

    @property
    def people_edits(self) -> dict[str, Any]:
        """The edits made with ``facekit people`` (``people-edits.json``; empty if none).

        See :mod:`facekit.people` for what it holds and how build-index applies it.
        """
        if not self.manifest.get("people_edits"):
            return {}
        blob = self._blob(EDITS_MEMBER)
        if blob is None:
            raise self._damaged(EDITS_MEMBER, "is missing")
        try:
            data = json.loads(blob)
        except (ValueError, RecursionError):
            raise self._damaged(EDITS_MEMBER, "is not valid JSON") from None
        if not isinstance(data, dict):
            raise self._damaged(EDITS_MEMBER, "is not a JSON object")
        return data

    def faces_of(self, persons: Sequence[str] | np.ndarray) -> np.ndarray:
        """Sorted face ids of ``persons`` (O(their faces), not O(gallery) per call)."""
        if self._groups is None:
            ids = self.person_ids
            uniq, inv = np.unique(ids, return_inverse=True)
            order = np.argsort(inv, kind="stable")
            starts = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
            self._groups = ({str(u): i for i, u in enumerate(uniq)}, order, starts)
        code, order, starts = self._groups
        parts = [
            order[starts[c] : starts[c + 1]] for p in persons if (c := code.get(str(p))) is not None
        ]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    @property
    def persons(self) -> dict[str, Person]:
        """person id -> :class:`Person`."""
        if self._persons is None:
            persons = {}
            try:
                for r in self._table("persons").to_pylist():
                    extra = json.loads(r["extra"] or "{}")
                    added = r.get("added")
                    persons[str(r["person"])] = Person(
                        str(r["person"]),
                        None if r["name"] is None else str(r["name"]),
                        extra if isinstance(extra, dict) else {},
                        str(added) if added else None,
                    )
            except (ValueError, TypeError) as exc:
                raise self._damaged("persons.parquet", f"has a bad row ({_short(exc)})") from None
            self._persons = persons
        return self._persons

    @property
    def n_faces(self) -> int:
        return int(self.manifest["counts"]["faces"])

    def index(self, model: str) -> Any:
        """The Voyager index of ``model`` (None when the database has none, e.g. empty)."""
        if model in self._indices:
            return self._indices[model]
        name = f"index-{model}.voy"
        blob = self._blob(name)
        idx = None
        if blob is not None:
            info = self.manifest["models"][model]
            try:
                idx = _index.load(io.BytesIO(blob), int(info.get("ef", QUERY_EF)))
            except Exception as exc:
                raise self._damaged(name, f"is not a Voyager index ({_short(exc)})") from None
            deleted = int(info.get("index_deleted", 0))
            if len(idx) != self.n_faces + deleted or idx.num_dimensions != info["dim"]:
                raise self._damaged(
                    name,
                    f"holds {len(idx)} vectors of {idx.num_dimensions} dimensions, "
                    f"the manifest {self.n_faces} (+{deleted} deleted) of {info['dim']}",
                )
        self._indices[model] = idx
        return idx

    # ----------------------------------------------------------------- reading
    @classmethod
    def exists(cls, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` holds a database (a ``CURRENT`` file or any generation)."""
        path = Path(path)
        return (path / "CURRENT").is_file() or bool(_generations(path))

    @classmethod
    def is_encrypted(cls, path: str | os.PathLike[str]) -> bool:
        """Whether the live (or newest) generation is encrypted; readable without the key."""
        _, manifest = cls._live_manifest(Path(path))
        return bool(manifest and manifest.get("encrypted"))

    @staticmethod
    def _live_manifest(path: Path) -> tuple[str | None, dict[str, Any] | None]:
        """(generation, manifest) that CURRENT names, else the newest parseable one; unverified."""
        cur, _ = _read_current(path)
        gens = ([cur[0]] if cur else []) + _generations(path)
        for g in gens:
            try:
                m = json.loads((path / g / "manifest.json").read_text())
            except (OSError, ValueError, RecursionError):
                continue
            if isinstance(m, dict):
                return g, m
        return None, None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, key: str | None = None) -> Database:
        """Open the live generation of the database at ``path``.

        When ``CURRENT`` is missing or damaged but generations exist, the newest complete,
        verified generation is opened instead (with a warning; nothing is deleted), and the
        next write makes it live again.

        Args:
            path: database folder.
            key: encryption key (default: ``$FACEKIT_KEY``), needed only for encrypted databases.

        Raises:
            DatabaseError: missing, incompatible, damaged or tampered database.
            KeyRequiredError: encrypted and the key is missing or wrong.
        """
        path = Path(path)
        if key is None:
            key = os.environ.get(KEY_ENV) or None
        if path.exists() and not path.is_dir():
            raise DatabaseError(f"{path}: is a file, not a database folder")
        cur, why = _read_current(path)
        for attempt in range(3):
            if cur is None:
                break
            gen, sha, mac = cur
            try:
                return cls._open_generation(path, gen, key, sha=sha, current_mac=mac)
            except KeyRequiredError:
                raise
            except DatabaseError:
                # Two commits between reading CURRENT and opening its files remove the
                # generation it named: open the one CURRENT names now. A damaged generation
                # that is still live is an error as before.
                again, _ = _read_current(path)
                if attempt == 2 or again is None or again == cur:
                    raise
                cur = again
        gens = _generations(path)
        if not gens:
            if why == "missing":
                hint = " (build one with: facekit build-index PEOPLE_DIR -d DB)"
                raise DatabaseError(f"{path}: no face database here{hint}")
            raise DatabaseError(f"{path}: CURRENT is {why}, and there is no generation folder")
        problems = []
        for g in gens:
            try:
                db = cls._open_generation(path, g, key, sha=None, current_mac=None)
                db.verify(raise_on_error=True)
            except KeyRequiredError:
                raise
            except DatabaseError as exc:
                problems.append(str(exc))
                continue
            db.recovered = f"CURRENT is {why}"
            log.warning(
                "%s: CURRENT is %s; using %s, the newest complete generation "
                "(the next build-index or enroll makes it live again)",
                path,
                why,
                g,
            )
            return db
        raise DatabaseError(
            f"{path}: CURRENT is {why} and no generation is complete "
            f"({'; '.join(problems)[:300]}); nothing was changed"
        )

    @classmethod
    def _open_generation(
        cls,
        path: Path,
        gen: str,
        key: str | None,
        *,
        sha: str | None,
        current_mac: str | None,
    ) -> Database:
        mpath = path / gen / "manifest.json"
        try:
            mbytes = mpath.read_bytes()
        except FileNotFoundError:
            raise DatabaseError(f"{path}: generation {gen} is missing") from None
        except OSError as exc:
            raise os_error(mpath, exc, "opening the database") from None
        if sha is not None and hashlib.sha256(mbytes).hexdigest() != sha:
            raise DatabaseError(
                f"{path}: manifest.json does not match its checksum (tampered or damaged)"
            )
        try:
            manifest = json.loads(mbytes)
        except (ValueError, RecursionError):
            raise DatabaseError(
                f"{path}: {gen}/manifest.json is not valid JSON (truncated or damaged)"
            ) from None
        if (
            isinstance(manifest, dict)
            and isinstance(manifest.get("format_version"), int)
            and manifest["format_version"] > FORMAT_VERSION
        ):
            raise DatabaseError(
                f"{path}: database format {manifest['format_version']} is newer than this facekit"
            )
        try:
            _validate_manifest(manifest)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DatabaseError(f"{path}: {gen}/manifest.json is damaged ({_short(exc)})") from None
        if manifest.get("generation", gen) != gen:
            raise DatabaseError(
                f"{path}: {gen}/manifest.json belongs to {manifest.get('generation')} "
                "(tampered or damaged)"
            )
        zip_password = None
        if manifest.get("encrypted"):
            zip_password = cls._authenticate(path, gen, manifest, key, sha, current_mac)
        # Open every file now: a writer may remove this generation once two newer ones
        # exist, and the lazy reads then still see the files this open found.
        fds: dict[str, int] = {}
        try:
            for name in manifest["files"]:
                f = path / gen / name
                try:
                    fd = os.open(f, os.O_RDONLY)
                except FileNotFoundError:
                    raise DatabaseError(
                        f"{path}: {gen}/{name} is missing (tampered or damaged)"
                    ) from None
                except OSError as exc:
                    raise os_error(f, exc, "opening the database") from None
                fds[name] = fd
                size = manifest.get("sizes", {}).get(name)
                if size is not None and os.fstat(fd).st_size != size:
                    raise DatabaseError(
                        f"{path}: {gen}/{name} does not have the size recorded in the manifest "
                        "(tampered or damaged)"
                    )
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        db = cls(path, manifest, gen, zip_password=zip_password)
        db._fds = fds
        return db

    @staticmethod
    def _authenticate(
        path: Path,
        gen: str,
        manifest: dict[str, Any],
        key: str | None,
        sha: str | None,
        current_mac: str | None,
    ) -> str:
        """Check the key, the manifest's MAC and CURRENT's MAC; returns the zip password."""
        if not key:
            raise KeyRequiredError(f"{path}: the database is encrypted; set {KEY_ENV} to its key")
        auth = manifest.get("auth")
        if auth is None:
            if os.environ.get(LEGACY_ENV) == "1":
                log.warning(
                    "%s: opening an unauthenticated encrypted database (%s)", path, LEGACY_ENV
                )
                return key
            raise DatabaseError(
                f"{path}: encrypted database without authentication (written before format 2, "
                f"or tampered); if you trust it, re-run build-index once with {LEGACY_ENV}=1"
            )
        ak = crypto.derive(key, auth["salt"], auth["iterations"])
        if not crypto.hmac.compare_digest(ak.check(), auth["check"]):
            raise KeyRequiredError(f"{path}: wrong key in {KEY_ENV} for this encrypted database")
        if not ak.verify(crypto.manifest_bytes(manifest), auth["mac"]):
            raise DatabaseError(
                f"{path}: {gen}/manifest.json fails authentication (tampered); refusing to use it"
            )
        if sha is not None and (
            current_mac is None or not ak.verify(f"CURRENT {gen} {sha}".encode(), current_mac)
        ):
            raise DatabaseError(f"{path}: CURRENT fails authentication (tampered); refusing it")
        return ak.zip_password

    def verify(self, *, raise_on_error: bool = False) -> VerifyReport:
        """Hash every file of the generation and parse every table and index (``db verify``)."""
        import time

        t0 = time.perf_counter()
        rep = VerifyReport(str(self.path), self.generation)
        try:
            for name in self.manifest["files"]:
                data = self._read(name, full=True)
                rep.files += 1
                rep.bytes += len(data)
            self._members = None
            self._tables.clear()
            self._frames.clear()
            self._vectors = self._persons = self._person_ids = None
            self._indices.clear()
            if self.manifest.get("encrypted"):
                self._blob("faces.parquet", full=True)
            for t in _TABLES:
                self._table(t)
            persons = self.persons
            _ = self.people_edits  # parses (and so checks) people-edits.json
            unknown = set(self.person_ids) - set(persons)
            if unknown:
                raise self._damaged(
                    "faces.parquet", f"names {len(unknown)} people missing from persons.parquet"
                )
            for m, v in self.vectors.items():
                if len(v) and not np.all(np.isfinite(v)):
                    raise self._damaged("faces.parquet", f"has non-finite {m} embeddings")
                idx = self.index(m)
                if idx is None and self.n_faces > _index.EXACT_MAX:
                    rep.problems.append(f"no Voyager index for {m} (exact search is slow)")
                if idx is not None and len(v):
                    got = np.sort(np.fromiter(idx.ids, np.int64, len(idx)))
                    want = self.face_uids if self._uid_keyed(m) else np.arange(len(v))
                    # deleted ids (tombstones) are counted by index(); the live ones must be
                    # exactly the faces'
                    if not np.isin(want, got).all() or len(np.unique(got)) != len(got):
                        raise self._damaged(f"index-{m}.voy", "has ids other than the faces'")
        except DatabaseError as exc:
            if raise_on_error:
                raise
            rep.problems.append(str(exc))
        rep.seconds = time.perf_counter() - t0
        return rep

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
        sizes = self.manifest.get("sizes", {})
        return IndexInfo(
            str(self.path),
            self.generation,
            int(self.manifest["counts"]["persons"]),
            self.n_faces,
            tuple(self.models),
            bool(self.manifest.get("encrypted")),
            self.calibration.source,
            self.calibration.threshold,
            self.manifest.get("updated", ""),
            self.calibration.max_strangers,
            self.calibration.expected_strangers,
            self.calibration.expected_named,
            storage=str(self.manifest["models"][self.models[0]].get("storage", "float32")),
            bytes=int(sum(sizes.values())),
            recovered=self.recovered,
        )

    def knn(self, model: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest gallery faces of one model: ``(ids (q, k), distances (q, k))``, cosine."""
        vectors = self.vectors[model]
        idx = self.index(model) if len(vectors) > _index.EXACT_MAX else None
        rows = self._uid_rows if self._uid_keyed(model) else None
        return _index.search(idx, vectors, queries, k, rows)

    def _uid_keyed(self, model: str) -> bool:
        """True when ``model``'s index ids are face uids (else row numbers, older databases)."""
        return self.manifest["models"][model].get("index_ids") == "face_uid"

    def _uid_rows(self, uids: np.ndarray) -> np.ndarray:
        """Rows of the faces with these ``face_uid`` s (all present: the index holds no other
        live ids)."""
        if self._uid_order is None:
            all_uids = self.face_uids
            order = np.argsort(all_uids, kind="stable")
            self._uid_order = (all_uids[order], order)
        keys, order = self._uid_order
        return order[np.searchsorted(keys, uids)]

    # ----------------------------------------------------------------- writing
    @staticmethod
    def _folder(path: Path) -> None:
        if path.exists() and not path.is_dir():
            raise DatabaseError(f"{path}: is a file, not a database folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(path, exc, "creating the database folder") from None

    @staticmethod
    def lock(path: str | os.PathLike[str], timeout: float = 0) -> Any:
        """The writer lock of a database folder (a :class:`filelock.FileLock`). Taking it
        removes the temporary generations of writers that were killed."""
        from filelock import FileLock, Timeout

        db_dir = Path(path)
        Database._folder(db_dir)
        lock = FileLock(str(db_dir / ".lock"), timeout=timeout)

        class _Guard:
            def __enter__(self) -> Any:
                try:
                    lock.acquire()
                except Timeout:
                    raise LockedError(
                        f"{db_dir}: another facekit process is writing to this database; "
                        "try again when it has finished"
                    ) from None
                except OSError as exc:
                    raise os_error(db_dir, exc, "taking the writer lock") from None
                # what killed writers left (only writers, under this lock, make these):
                # removed now, also when this writer then finds nothing to write
                for p in db_dir.glob(".gen-*"):
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                for p in db_dir.glob(".CURRENT.tmp-*"):
                    with contextlib.suppress(OSError):
                        p.unlink()
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
        discard_encrypted: bool = False,
        people_edits: Mapping[str, Any] | None = None,
        base: Database | None = None,
    ) -> Calibration:
        """Write a complete new generation and make it live. The caller holds :meth:`lock`.

        ``base`` is the live generation as the caller read it under the lock. For each model
        whose new vectors are ``base``'s with rows appended (an incremental build that only
        added faces) or unchanged (a rename), ``base``'s index is extended instead of rebuilt:
        adding 10 photos to a million faces re-indexes 10 faces, not a million. Any other
        change (a face removed, re-embedded or reordered) rebuilds the index.

        An encrypted database is only replaced with the key that opens it, unless
        ``discard_encrypted``. Encrypting a plaintext database removes its plaintext
        generations.

        Faces without a ``face_uid`` (new ones) get the next unused ids; persons without
        ``added`` get the time of this commit. ``people_edits`` replaces the edits made with
        ``facekit people``; ``None`` carries the live generation's edits forward, so writers
        that do not know about them never drop them.

        Returns:
            the calibration stored in the new manifest.

        Raises:
            KeyRequiredError: encryption asked for, or the database is encrypted, and
                FACEKIT_KEY is missing or does not open it.
            DatabaseError: the folder cannot be written (read-only, disk full); the previous
                generation is left as it was and the temporary one removed.
        """
        import pandas as pd

        path = Path(path)
        cls._folder(path)
        key = key or os.environ.get(KEY_ENV) or None
        if encrypt and not key:
            raise KeyRequiredError(f"{path}: --encrypt needs the key in {KEY_ENV}")
        live_gen, previous = cls._live_manifest(path)
        previous = previous or {}
        was_encrypted = bool(previous.get("encrypted"))
        if was_encrypted and not discard_encrypted:
            cls._check_owner_key(path, previous, key)
        models = list(vectors)
        n = len(faces)
        for m in models:
            if len(vectors[m]) != n:
                raise DatabaseError(f"internal: {m} has {len(vectors[m])} vectors for {n} faces")
        faces = faces.reset_index(drop=True).copy()
        faces["face_id"] = np.arange(n, dtype=np.int64)
        next_uid = _assign_face_uids(faces, previous)
        now = _now()
        persons = {
            pid: p if p.added else Person(p.id, p.name, p.extra, now) for pid, p in persons.items()
        }
        if people_edits is None and previous.get("people_edits") and live_gen:
            people_edits = cls._carry_edits(path, key, was_encrypted and discard_encrypted)
        if calibration is None:
            # re-calibrate on the whole gallery, for the stranger rate the database states
            cal_prev = previous.get("calibration")
            max_strangers = cal_prev.get("max_strangers") if isinstance(cal_prev, dict) else None
            calibration = calibrate(
                faces["person"].to_numpy(),
                vectors,
                weights,
                max_strangers=float(max_strangers)
                if isinstance(max_strangers, (int, float))
                else None,
            )
        indices = cls._updated_indices(base, live_gen, faces, vectors, storage, fingerprints)
        # --- new generation folder
        gens = _generations(path)
        number = _number(gens[0]) + 1 if gens else 1
        gen = f"gen-{number:06d}"
        tmp = path / f".{gen}.tmp-{os.getpid()}"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            ak = cls._write_generation(
                tmp,
                gen,
                faces=faces,
                vectors=vectors,
                persons=persons,
                pipeline=pipeline,
                fingerprints=fingerprints,
                calibration=calibration,
                storage=storage,
                encrypt=encrypt,
                key=key,
                extra_manifest={
                    **dict(extra_manifest or {}),
                    "next_face_uid": next_uid,
                    **({"people_edits": True} if people_edits else {}),
                },
                people_edits=people_edits or None,
                indices=indices,
                files_table=files_table
                if files_table is not None
                else pd.DataFrame({c: [] for c in FILE_COLUMNS}),
                created=previous.get("created")
                if isinstance(previous.get("created"), str)
                else None,
            )
            mtext = (tmp / "manifest.json").read_bytes()
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            _fsync_dir(tmp)
            os.rename(tmp, path / gen)
            _fsync_dir(path)
            if before_replace is not None:
                before_replace()  # test hook: simulate a kill between the two renames
            line = f"{gen} {hashlib.sha256(mtext).hexdigest()}"
            if ak is not None:
                line += " " + ak.mac(f"CURRENT {line}".encode())
            cur_tmp = path / f".CURRENT.tmp-{os.getpid()}"
            cur_tmp.write_text(line + "\n")
            with open(cur_tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(cur_tmp, path / "CURRENT")
            _fsync_dir(path)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            (path / f".CURRENT.tmp-{os.getpid()}").unlink(missing_ok=True)
            raise os_error(
                path, exc, "writing the new generation (the previous one is intact)"
            ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        keep = {gen}
        if (
            live_gen
            and not (encrypt and not was_encrypted)
            and not (discard_encrypted and was_encrypted)
        ):
            keep.add(live_gen)  # readers may still use it; dropped when it holds plaintext
        cls._cleanup(path, keep=keep)
        return calibration

    @staticmethod
    def _updated_indices(
        base: Database | None,
        live_gen: str | None,
        faces: Any,
        vectors: Mapping[str, np.ndarray],
        storage: str,
        fingerprints: Mapping[str, str],
    ) -> dict[str, tuple[Any, int]]:
        """model -> (``base``'s index updated to ``faces``, its deleted count), where exact.

        Exact when every face that keeps its ``face_uid`` keeps its embedding (checked), the
        index is keyed by face uids, and the settings match; deleted items (tombstones) are
        allowed up to :data:`MAX_INDEX_DELETED` of the index, then it is rebuilt.
        """
        out: dict[str, tuple[Any, int]] = {}
        if base is None or not live_gen or base.generation != live_gen or not base.n_faces:
            return out
        uids = faces["face_uid"].to_numpy(np.int64)
        try:
            old_uids = base.face_uids
        except DatabaseError:
            return out
        kept = np.isin(uids, old_uids)
        removed = old_uids[~np.isin(old_uids, uids)]
        for m, new in vectors.items():
            info = base.manifest.get("models", {}).get(m)
            if (
                not isinstance(info, dict)
                or info.get("index_ids") != "face_uid"
                or info.get("storage", "float32") != storage
                or info.get("fingerprint", "") != fingerprints.get(m, "")
                or new.ndim != 2
                or new.shape[1] != info.get("dim")
            ):
                continue
            deleted = int(info.get("index_deleted", 0)) + len(removed)
            if deleted > MAX_INDEX_DELETED * (len(new) + deleted):
                continue  # too many tombstones: a rebuild is smaller and faster to search
            try:
                old = base.vectors.get(m)
                if old is None or not np.array_equal(old[base._uid_rows(uids[kept])], new[kept]):
                    continue  # a face kept its id but not its embedding: rebuild
                idx = base.index(m)
            except DatabaseError as exc:  # a damaged index is rebuilt, not updated
                log.debug("%s: index of %s rebuilt (%s)", base.path, m, exc)
                continue
            if idx is not None:
                out[m] = (_index.update(idx, removed, new[~kept], uids[~kept]), deleted)
        return out

    @classmethod
    def _carry_edits(cls, path: Path, key: str | None, discarding: bool) -> dict[str, Any] | None:
        """The live generation's people edits, for a writer that did not pass them."""
        if discarding:
            return None
        try:
            return cls.open(path, key=key).people_edits or None
        except DatabaseError as exc:
            log.warning("%s: the edits made with facekit people could not be kept (%s)", path, exc)
            return None

    @classmethod
    def check_owner_key(cls, path: str | os.PathLike[str], key: str | None = None) -> None:
        """Raise :class:`KeyRequiredError` unless ``key`` opens the encrypted database at
        ``path`` (no-op for plaintext or missing databases); call before long work."""
        _, previous = cls._live_manifest(Path(path))
        if previous and previous.get("encrypted"):
            cls._check_owner_key(Path(path), previous, key or os.environ.get(KEY_ENV) or None)

    @staticmethod
    def _check_owner_key(path: Path, previous: dict[str, Any], key: str | None) -> None:
        hint = "or replace it and lose its faces: build-index --rebuild --discard-encrypted"
        if not key:
            raise KeyRequiredError(
                f"{path}: the database is encrypted; set {KEY_ENV} to its key ({hint})"
            )
        auth = previous.get("auth")
        if isinstance(auth, dict) and isinstance(auth.get("salt"), str):
            try:
                ok = crypto.derive(key, auth["salt"], int(auth["iterations"])).check() == auth.get(
                    "check"
                )
            except (ValueError, TypeError, KeyError):
                ok = False
            if not ok:
                raise KeyRequiredError(
                    f"{path}: {KEY_ENV} does not open this encrypted database; refusing to "
                    f"overwrite it ({hint})"
                )

    @staticmethod
    def _write_generation(
        tmp: Path,
        gen: str,
        *,
        faces: Any,
        vectors: Mapping[str, np.ndarray],
        persons: Mapping[str, Person],
        pipeline: Mapping[str, Any],
        fingerprints: Mapping[str, str],
        calibration: Calibration,
        storage: str,
        encrypt: bool,
        key: str | None,
        extra_manifest: Mapping[str, Any] | None,
        files_table: Any,
        created: str | None,
        people_edits: Mapping[str, Any] | None = None,
        indices: Mapping[str, tuple[Any, int]] | None = None,
    ) -> crypto.AuthKey | None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = len(faces)
        models = list(vectors)
        dims = {
            m: int(np.asarray(vectors[m]).shape[1])
            if n
            else int(pipeline.get("dims", {}).get(m, 128))
            for m in models
        }
        # faces table: embeddings as fixed-size lists built from the flat arrays (no per-row
        # Python objects, so 1M faces stay in bounded memory)
        table = pa.Table.from_pandas(faces, preserve_index=False)
        for m in models:
            flat = np.ascontiguousarray(vectors[m], np.float32).reshape(-1)
            table = table.append_column(
                f"emb_{m}", pa.FixedSizeListArray.from_arrays(pa.array(flat), dims[m])
            )
        persons_df = pd.DataFrame(
            {
                "person": [p.id for p in persons.values()],
                "name": [p.name for p in persons.values()],
                "extra": [json.dumps(p.extra, ensure_ascii=False) for p in persons.values()],
                "added": [p.added for p in persons.values()],
            },
            columns=["person", "name", "extra", "added"],
        )
        blobs: dict[str, bytes] = {}

        def parquet(t: Any) -> bytes:
            buf = io.BytesIO()
            pq.write_table(t, buf)
            return buf.getvalue()

        blobs["faces.parquet"] = parquet(table)
        del table
        blobs["persons.parquet"] = parquet(pa.Table.from_pandas(persons_df, preserve_index=False))
        blobs["files.parquet"] = parquet(pa.Table.from_pandas(files_table, preserve_index=False))
        if people_edits:
            blobs[EDITS_MEMBER] = json.dumps(people_edits, ensure_ascii=False, indent=1).encode()
        model_info = {}
        for m in models:
            if n:  # an empty gallery has no index (Voyager cannot load an empty one)
                buf = io.BytesIO()
                built, deleted = (indices or {}).get(m, (None, 0))
                if built is None:
                    uids = faces["face_uid"].to_numpy(np.int64)
                    built = _index.build(np.asarray(vectors[m], np.float32), storage, uids)
                _index.save(built, buf)
                blobs[f"index-{m}.voy"] = buf.getvalue()
            model_info[m] = {
                "fingerprint": fingerprints.get(m, ""),
                "dim": dims[m],
                "metric": "cosine",
                "storage": storage,
                "ef": QUERY_EF,
                "weight": calibration.weights.get(m, 0.0),
                "index_ids": "face_uid",
                "index_deleted": int(deleted) if n else 0,
            }
        auth: dict[str, Any] | None = None
        ak = None
        if encrypt:
            ak, auth = crypto.new_auth(key or "")
            zip_write(tmp / "data.zip", blobs, ak.zip_password)
            blobs.clear()
        else:
            for name, data in blobs.items():
                (tmp / name).write_bytes(data)
            blobs.clear()
        files, sizes = {}, {}
        for f in sorted(tmp.iterdir()):
            files[f.name] = _sha256_file(f)
            sizes[f.name] = f.stat().st_size
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "generator": "facekit",
            "created": created or _now(),
            "updated": _now(),
            "generation": gen,
            "models": model_info,
            "pipeline": dict(pipeline),
            "calibration": calibration.to_dict(),
            "counts": {"faces": int(n), "persons": len(persons)},
            "encrypted": bool(encrypt),
            "files": files,
            "sizes": sizes,
            **dict(extra_manifest or {}),
        }
        if ak is not None and auth is not None:
            manifest["auth"] = auth
            auth["mac"] = ak.mac(crypto.manifest_bytes(manifest))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False))
        return ak

    @staticmethod
    def _cleanup(path: Path, keep: set[str]) -> None:
        """Remove generations other than ``keep``, stale temp folders and stale stamps."""
        for p in path.iterdir():
            if p.is_dir() and (
                _GEN.fullmatch(p.name) and p.name not in keep or p.name.startswith(".gen-")
            ):
                shutil.rmtree(p, ignore_errors=True)
        for p in path.glob(".CURRENT.tmp-*"):
            p.unlink(missing_ok=True)
        for p in path.glob(".verified.tmp-*"):
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
