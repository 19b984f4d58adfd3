"""Face tables: pipeline results as one row per face (pandas), stored as Parquet.

The table written by ``facekit embed`` and read back by ``facekit cluster``:

==============  ==========================================================================
column          meaning
==============  ==========================================================================
source          the path as given
face            face index within the file (0 = largest)
x, y, w, h      box in original pixels
landmarks       10 floats: the five standard points (x0, y0, ... x4, y4)
det_score       detector score
face_size       shorter side of the box, pixels
yaw, pitch,     head pose in degrees from the landmarks (:mod:`facekit.pose`); null when
roll            unknown (tables written before facekit had it)
time            seconds into a video (null for photos)
digest          SHA-256 of the file's bytes
emb_<model>     L2-normalised float32 embedding of each recogniser
==============  ==========================================================================

The Parquet file's key-value metadata holds ``facekit.files`` (every input file with its
digest, face count and error, including files without a face) and ``facekit.models``
(recogniser fingerprints and the detector), so a re-run can skip unchanged files.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, OutputError, os_error_line
from .pathtext import path_text
from .types import Embeddings, Faces, ImageResult

__all__ = ["FaceTable", "face_rows", "record_for", "write_atomic"]

META_FILES = b"facekit.files"
META_MODELS = b"facekit.models"
#: pyarrow's footer limits (thrift string / container sizes), raised for every reader: the
#: ``facekit.files`` metadata of a million-photo table exceeds the 100 MB default. The footer
#: is read once, so 2 GB is allowed.
FOOTER_LIMITS: dict[str, int] = {
    "thrift_string_size_limit": (1 << 31) - 1,
    "thrift_container_size_limit": (1 << 31) - 1,
}


def face_rows(result: ImageResult, with_embeddings: bool = True) -> list[dict[str, Any]]:
    """Flat rows, one per face, of one image result."""
    rows = []
    xywh = result.faces.xywh
    for i in range(len(result.faces)):
        row: dict[str, Any] = {
            "source": path_text(result.source),
            "face": i,
            "x": float(xywh[i, 0]),
            "y": float(xywh[i, 1]),
            "w": float(xywh[i, 2]),
            "h": float(xywh[i, 3]),
            "landmarks": result.faces.landmarks[i].reshape(-1).astype(np.float32),
            "det_score": float(result.faces.confidence[i]),
            "face_size": float(result.faces.size[i]),
            **pose_columns(result.faces, i),
            "time": result.time,
            "digest": result.digest,
        }
        if with_embeddings:
            for model, vec in result.embeddings.vectors.items():
                row[f"emb_{model}"] = vec[i]
        rows.append(row)
    return rows


def pose_columns(faces: Faces, i: int) -> dict[str, float | None]:
    """``{"yaw", "pitch", "roll"}`` of face ``i`` in degrees, rounded to 0.1 (``None`` when
    unknown: no pose stored, or none found)."""
    pose = faces.data.get("pose")
    if pose is None or len(pose) <= i or not np.all(np.isfinite(pose[i])):
        return {"yaw": None, "pitch": None, "roll": None}
    y, p, r = (round(float(v), 1) for v in pose[i])
    return {"yaw": y, "pitch": p, "roll": r}


def record_for(result: ImageResult, with_embeddings: bool = True) -> dict[str, Any]:
    """The nested JSON record of one image (``facekit embed --format json|ndjson``, sidecars)."""
    faces = []
    for row in face_rows(result, with_embeddings):
        face = {
            "face": row["face"],
            "box": [round(row[k], 1) for k in ("x", "y", "w", "h")],
            "landmarks": np.round(row["landmarks"].reshape(5, 2), 1).tolist(),
            "det_score": row["det_score"],
            "face_size": row["face_size"],
            "yaw": row["yaw"],
            "pitch": row["pitch"],
            "roll": row["roll"],
        }
        if with_embeddings:
            face["embeddings"] = {
                m: result.embeddings.vectors[m][row["face"]].tolist()
                for m in result.embeddings.vectors
            }
        faces.append(face)
    rec: dict[str, Any] = {
        "source": result.source,
        "width": result.width,
        "height": result.height,
        "digest": result.digest,
        "faces": faces,
        "error": result.error,
    }
    if result.time is not None:
        rec["time"] = result.time
    if with_embeddings and result.embeddings.fingerprints:
        rec["models"] = result.embeddings.fingerprints
    return rec


#: Columns that hold one fixed-length float vector per face (``emb_<model>`` and these).
VECTOR_COLUMNS = ("landmarks",)


#: Rows per Arrow batch when a lean read (:meth:`FaceTable.read`) decodes a vector column.
LEAN_BATCH = 16384


def _is_vector_column(name: str) -> bool:
    return name.startswith("emb_") or name in VECTOR_COLUMNS


@dataclass
class FaceTable:
    """Faces with embeddings, plus the list of files they came from.

    Attributes:
        frame: pandas DataFrame with the columns documented in this module.
        files: ``source -> {"digest", "faces", "error"}`` for every input file.
        models: ``model -> fingerprint``, plus ``"detector"``.
        arrays: vector columns held as 2-D arrays instead of per-row cells of ``frame``
            (``emb_<model>`` ``(n, dim) float32``, ``landmarks`` ``(n, 10) float32``),
            row-aligned with ``frame``. A lean read (:meth:`read` with ``lean=True``) fills
            it so that a million faces are not a million small arrays; a column is either
            here or in ``frame``, never both.
    """

    frame: Any
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, arr in self.arrays.items():
            if arr.ndim != 2 or len(arr) != len(self.frame):
                raise ValueError(
                    f"column {name}: {arr.shape} does not match {len(self.frame)} rows"
                )

    @property
    def model_ids(self) -> list[str]:
        names = [*self.frame.columns, *(c for c in self.arrays if c not in self.frame.columns)]
        return [c[4:] for c in names if c.startswith("emb_")]

    def vectors(self, column: str) -> np.ndarray:
        """``(n, dim) float32`` values of a vector column (``emb_<model>``, ``landmarks``)."""
        if column in self.arrays:
            return self.arrays[column]
        if not len(self.frame):
            return np.zeros((0, 0), np.float32)
        return np.stack(self.frame[column].to_numpy()).astype(np.float32, copy=False)

    def embeddings(self) -> Embeddings:
        """All rows' embeddings as an :class:`Embeddings` (no copy for a lean table)."""
        vecs = {m: self.vectors(f"emb_{m}") for m in self.model_ids}
        return Embeddings(vecs, {m: self.models.get(m, "") for m in self.model_ids})

    def faces(self) -> Faces:
        f = self.frame
        if not len(f):
            return Faces.empty()
        xyxy = np.stack([f.x, f.y, f.x + f.w, f.y + f.h], 1)
        data = {}
        if all(c in f.columns for c in ("yaw", "pitch", "roll")):
            data["pose"] = f[["yaw", "pitch", "roll"]].to_numpy(np.float32)
        return Faces(
            xyxy,
            f.det_score.to_numpy(),
            self.vectors("landmarks").reshape(-1, 5, 2),
            data,
        )

    def rows_for(self, source: str) -> Any:
        return self.frame[self.frame.source == path_text(source)]

    def take(self, rows: Any) -> FaceTable:
        """The table of ``rows`` (positions or a boolean mask), renumbered from 0.

        ``files`` and ``models`` are kept as they are.
        """
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        frame = self.frame.iloc[rows].reset_index(drop=True)
        arrays = {k: v[rows] for k, v in self.arrays.items()}
        return FaceTable(frame, dict(self.files), dict(self.models), arrays)

    def lean(self) -> FaceTable:
        """The same table with every vector column held in :attr:`arrays`."""
        move = [c for c in self.frame.columns if _is_vector_column(c)]
        if not move:
            return self
        arrays = dict(self.arrays)
        for c in move:
            arrays[c] = self.vectors(c)
        return FaceTable(self.frame.drop(columns=move), self.files, self.models, arrays)

    @classmethod
    def from_results(
        cls, results: Iterable[ImageResult], models: dict[str, str] | None = None
    ) -> FaceTable:
        import pandas as pd

        rows: list[dict[str, Any]] = []
        files: dict[str, dict[str, Any]] = {}
        for r in results:
            rows.extend(face_rows(r))
            files[path_text(r.source)] = {
                "digest": r.digest,
                "faces": len(r.faces),
                "error": None if r.error is None else path_text(r.error),
            }
        frame = pd.DataFrame(rows, columns=_columns(rows))
        return cls(frame, files, dict(models or {}))

    def merged_with(self, other: FaceTable, replace_sources: Iterable[str]) -> FaceTable:
        """This table with ``other``'s rows added, dropping rows of ``replace_sources`` first.

        The result is lean (vector columns in :attr:`arrays`) when either table is.
        """
        import pandas as pd

        drop = set(replace_sources)
        files = {k: v for k, v in self.files.items() if k not in drop}
        files.update(other.files)
        models = {**self.models, **other.models}
        mine = self
        if drop and len(self.frame):
            mine = self.take(~self.frame.source.isin(drop).to_numpy())
        if self.arrays or other.arrays:
            parts = [t.lean() for t in (mine, other) if len(t.frame)]
            if not parts:
                return FaceTable(other.frame, files, models, dict(other.arrays))
            frame = pd.concat([t.frame for t in parts], ignore_index=True)
            names = {c for t in parts for c in t.arrays}
            arrays = {}
            for c in names:
                if any(c not in t.arrays for t in parts):
                    raise ValueError(f"column {c} is missing from one of the tables")
                arrays[c] = np.concatenate([t.arrays[c] for t in parts])
            return FaceTable(frame, files, models, arrays)
        frames = [f for f in (mine.frame, other.frame) if len(f)]
        frame = pd.concat(frames, ignore_index=True) if frames else other.frame
        return FaceTable(frame, files, models)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write as Parquet, atomically (temp file + rename)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = self.frame
        cells = [c for c in frame.columns if _is_vector_column(c)]
        if cells:
            frame = frame.copy()
            for c in cells:
                frame[c] = [np.asarray(v, np.float32) for v in frame[c]]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for name, arr in self.arrays.items():
            table = table.append_column(name, _list_array(arr))
        order = _columns([dict.fromkeys(table.column_names)])
        table = table.select([c for c in order if c in table.column_names])
        meta = dict(table.schema.metadata or {})
        meta[META_FILES] = json.dumps(self.files).encode()
        meta[META_MODELS] = json.dumps(self.models).encode()
        table = table.replace_schema_metadata(meta)
        write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))

    @classmethod
    def read(cls, path: str | os.PathLike[str], *, lean: bool = False) -> FaceTable:
        """Read a table written by :meth:`write` (``facekit embed -o``).

        Args:
            path: the Parquet file.
            lean: keep the vector columns as 2-D arrays (:attr:`arrays`), read one column
                and row group at a time, not as a small array per row (``facekit cluster``
                reads so).
        """
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path, **FOOTER_LIMITS)
            schema = pf.schema_arrow
            if "source" not in schema.names:
                raise InputError(f"{path}: not a facekit face table (no 'source' column)")
            meta = schema.metadata or {}
            if lean:
                frame, arrays = _read_lean(pf)
            else:
                frame, arrays = pf.read().to_pandas(), {}
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                f"{path}: not a facekit face table ({' '.join(str(exc).split())})"
            ) from exc
        files = json.loads(meta.get(META_FILES, b"{}"))
        models = json.loads(meta.get(META_MODELS, b"{}"))
        return cls(frame, files, models, arrays)


def _list_array(arr: np.ndarray) -> Any:
    """A ``list<float>`` Arrow column of the rows of a 2-D array (as ``write`` stores them)."""
    import pyarrow as pa

    n, dim = arr.shape
    flat = pa.array(np.ascontiguousarray(arr, np.float32).reshape(-1), pa.float32())
    if n * dim < 2**31:
        offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, flat)
    offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int64))
    return pa.LargeListArray.from_arrays(offsets, flat)


def _read_lean(pf: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Scalar columns as a DataFrame; each vector column read alone, in batches, into one
    preallocated 2-D array (no per-row objects, no concatenated copies)."""
    import pyarrow as pa

    schema = pf.schema_arrow
    vec = [
        f.name
        for f in schema
        if _is_vector_column(f.name)
        and (
            pa.types.is_list(f.type)
            or pa.types.is_large_list(f.type)
            or pa.types.is_fixed_size_list(f.type)
        )
    ]
    plain = [c for c in schema.names if c not in vec]
    frame = pf.read(columns=plain).to_pandas()
    n = len(frame)
    arrays: dict[str, np.ndarray] = {}
    for c in vec:
        out: np.ndarray | None = None
        row = 0
        # Batches, not whole row groups: a list column decoded at once costs about four
        # times its size in levels and builders (600 MB for 300k dlib embeddings).
        for batch in pf.iter_batches(batch_size=LEAN_BATCH, columns=[c]):
            col = batch.column(0)
            m = len(col)
            if col.null_count:
                raise ValueError(f"column {c} has empty rows")
            flat = col.flatten().to_numpy(zero_copy_only=False)
            if not m:
                continue
            if out is None:
                out = np.empty((n, len(flat) // m), np.float32)
            if len(flat) != m * out.shape[1]:
                raise ValueError(f"column {c} has rows of different lengths")
            out[row : row + m] = flat.reshape(m, -1)
            row += m
        arrays[c] = out if out is not None else np.zeros((0, 0), np.float32)
    return frame, arrays


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    base = [
        "source",
        "face",
        "x",
        "y",
        "w",
        "h",
        "landmarks",
        "det_score",
        "face_size",
        "yaw",
        "pitch",
        "roll",
        "time",
        "digest",
    ]
    extra = sorted({k for r in rows for k in r} - set(base))
    return base + extra


def write_atomic(path: str | os.PathLike[str], writer: Any) -> None:
    """Call ``writer(tmp_path)`` then rename the temp file onto ``path`` (same folder, fsynced).

    The file gets the mode a plain ``open(path, "w")`` would give it (``0o666`` less the umask),
    or keeps the mode of the file it replaces; mkstemp's private ``0o600`` is never left behind.

    Raises:
        OutputError: the file cannot be written (disk full, read-only folder, permission
            denied, a parent that is a file); the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            mode = 0o666 & ~current_umask()
        os.chmod(tmp, mode)
        writer(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(os_error_line(exc, path)) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            Path(tmp).unlink(missing_ok=True)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it straight back
    os.umask(mask)
    return mask


def result_from_rows(table: FaceTable, source: str) -> ImageResult:
    """Rebuild the :class:`ImageResult` of ``source`` from a stored table (for skipped files)."""
    info = table.files.get(path_text(source), {})
    f = table.frame
    rows = np.flatnonzero((f.source == path_text(source)).to_numpy())
    rows = rows[np.argsort(f["face"].to_numpy()[rows], kind="stable")]
    sub = table.take(rows)
    emb = sub.embeddings() if len(sub.frame) else Embeddings({})
    return ImageResult(
        source,
        faces=sub.faces(),
        embeddings=emb,
        digest=info.get("digest", ""),
        error=info.get("error"),
    )
