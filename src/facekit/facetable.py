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


@dataclass
class FaceTable:
    """Faces with embeddings, plus the list of files they came from.

    Attributes:
        frame: pandas DataFrame with the columns documented in this module.
        files: ``source -> {"digest", "faces", "error"}`` for every input file.
        models: ``model -> fingerprint``, plus ``"detector"``.
    """

    frame: Any
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    @property
    def model_ids(self) -> list[str]:
        return [c[4:] for c in self.frame.columns if c.startswith("emb_")]

    def embeddings(self) -> Embeddings:
        """All rows' embeddings as an :class:`Embeddings`."""
        vecs = {
            m: np.stack(self.frame[f"emb_{m}"].to_numpy()).astype(np.float32)
            if len(self.frame)
            else np.zeros((0, 0), np.float32)
            for m in self.model_ids
        }
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
            np.stack(f.landmarks.to_numpy()).reshape(-1, 5, 2),
            data,
        )

    def rows_for(self, source: str) -> Any:
        return self.frame[self.frame.source == path_text(source)]

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
        """This table with ``other``'s rows added, dropping rows of ``replace_sources`` first."""
        import pandas as pd

        drop = set(replace_sources)
        keep = self.frame[~self.frame.source.isin(drop)] if len(self.frame) else self.frame
        frames = [f for f in (keep, other.frame) if len(f)]
        frame = pd.concat(frames, ignore_index=True) if frames else other.frame
        files = {k: v for k, v in self.files.items() if k not in drop}
        files.update(other.files)
        return FaceTable(frame, files, {**self.models, **other.models})

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write as Parquet, atomically (temp file + rename)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = self.frame.copy()
        for c in [c for c in frame.columns if c.startswith("emb_") or c == "landmarks"]:
            frame[c] = [np.asarray(v, np.float32) for v in frame[c]]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[META_FILES] = json.dumps(self.files).encode()
        meta[META_MODELS] = json.dumps(self.models).encode()
        table = table.replace_schema_metadata(meta)
        write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> FaceTable:
        """Read a table written by :meth:`write` (``facekit embed -o``)."""
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path, **FOOTER_LIMITS)
        except Exception as exc:
            raise InputError(
                f"{path}: not a facekit face table ({' '.join(str(exc).split())})"
            ) from exc
        meta = table.schema.metadata or {}
        frame = table.to_pandas()
        if "source" not in frame.columns:
            raise InputError(f"{path}: not a facekit face table (no 'source' column)")
        files = json.loads(meta.get(META_FILES, b"{}"))
        models = json.loads(meta.get(META_MODELS, b"{}"))
        return cls(frame, files, models)


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
    sub = FaceTable(table.rows_for(source).sort_values("face"), {}, table.models)
    emb = sub.embeddings() if len(sub.frame) else Embeddings({})
    return ImageResult(
        source,
        faces=sub.faces(),
        embeddings=emb,
        digest=info.get("digest", ""),
        error=info.get("error"),
    )
