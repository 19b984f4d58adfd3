"""Runtime helpers shared by the model backends: ONNX sessions, threads, fingerprints."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

#: Threads each inference library may use in this process. The CLI's worker pool sets it to 1
#: per worker so that two workers use the two cores without oversubscription.
_THREADS: int | None = None


def set_threads(n: int | None) -> None:
    """Limit ONNX Runtime / OpenCV threads for models created after this call."""
    global _THREADS
    _THREADS = n
    if n:
        try:
            import cv2

            cv2.setNumThreads(n)
        except ImportError:  # pragma: no cover
            pass


def onnx_session(path: str | os.PathLike[str]) -> Any:
    """An ONNX Runtime CPU session for ``path``, honouring :func:`set_threads`."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # No busy-waiting between ops: with two worker processes on two cores (or other programs
    # running) spinning threads only steal CPU from each other.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if _THREADS:
        opts.intra_op_num_threads = _THREADS
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... classes
        from facekit.errors import ModelError

        detail = " ".join(str(exc).split())[:300]
        raise ModelError(f"cannot load model {path}: {detail}") from exc


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, cached per process by (path, size, mtime)."""
    st = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def fingerprint(name: str) -> str:
    """Short fingerprint of a model: 16 hex digits of SHA-256 over its files' SHA-256s.

    Pinned hashes from the registry are used when known; otherwise the installed file is hashed.
    Embeddings from models with different fingerprints are never compared.
    """
    from . import store
    from .registry import get_spec

    spec = get_spec(name)
    h = hashlib.sha256(name.encode())
    for f in spec.files:
        digest = f.sha256
        if not digest:
            path = store.locate(f)
            digest = file_sha256(path) if path else "unknown"
        h.update(f"{f.name}:{digest}".encode())
    return h.hexdigest()[:16]
