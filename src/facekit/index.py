"""Nearest-neighbour search over one recogniser's gallery embeddings (Voyager HNSW + exact re-rank).

One :mod:`voyager` index per recogniser, cosine space. Its ids are the faces' stable ids
(``face_uid``) in databases written since they key the index (manifest ``index_ids``), so a
later write can mark removed faces deleted and insert new ones instead of rebuilding; older
databases use row numbers (``face_id``). Small galleries (<= :data:`EXACT_MAX` faces) are searched exactly; larger ones
ask the graph for twice as many candidates and re-rank them with the exact float32 vectors.
The generation store that holds these files is :mod:`facekit.database`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

import numpy as np

from .calibration import cosine_distances

__all__ = ["EXACT_MAX", "QUERY_EF", "build", "load", "save", "search", "update"]

#: Query-time ``ef`` of the Voyager indices: recall@10 >= 0.99 on face-like data (NOTES.md:
#: ef=50 gives 0.988-0.997, ef=100 0.999).
QUERY_EF = 100
#: Galleries up to this many faces are searched exactly (faster than the graph, NOTES.md).
EXACT_MAX = 2000


def _writable(vectors: np.ndarray) -> np.ndarray:
    # Voyager refuses read-only arrays (e.g. vectors read from a table): copy only then
    return np.require(vectors, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])


def build(vectors: np.ndarray, storage: str = "float32", ids: np.ndarray | None = None) -> Any:
    """A cosine Voyager index of ``vectors`` with ``ids`` (default 0..n-1); ``storage``
    float32 or e4m3."""
    import voyager

    vectors = _writable(vectors)
    n, dim = vectors.shape
    storage_type = (
        voyager.StorageDataType.E4M3 if storage == "e4m3" else voyager.StorageDataType.Float32
    )
    index = voyager.Index(
        voyager.Space.Cosine,
        num_dimensions=dim,
        M=12,
        ef_construction=200,
        storage_data_type=storage_type,
        max_elements=max(n, 1),
    )
    if n:
        index.add_items(vectors, ids=np.arange(n) if ids is None else np.asarray(ids, np.int64))
    return index


def update(index: Any, removed: np.ndarray, vectors: np.ndarray, ids: np.ndarray) -> Any:
    """Mark the ``removed`` ids deleted and insert ``vectors`` under the new ``ids``.

    HNSW inserts one item at a time whether it builds or extends, so the result answers like
    an index built from the remaining and new items; deleted items stay in the graph as
    tombstones that queries step over but never return. Adding k faces to n costs O(k log n)
    instead of a rebuild's O(n log n).
    """
    for i in np.asarray(removed, np.int64):
        index.mark_deleted(int(i))
    if len(vectors):
        index.add_items(_writable(vectors), ids=np.asarray(ids, np.int64))
    return index


def save(index: Any, dest: str | IO[bytes]) -> None:
    """Write ``index`` to a path or a binary file object."""
    index.save(dest)


def load(src: str | IO[bytes], ef: int = QUERY_EF) -> Any:
    """Read an index from a path or a binary file object and set its query ``ef``."""
    import voyager

    index = voyager.Index.load(src)
    index.ef = int(ef)
    return index


def search(
    index: Any,
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    rows: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest gallery faces: ``(rows (q, k), cosine distances (q, k))``, nearest first.

    Args:
        index: the Voyager index of ``vectors`` (``None``: exact search).
        vectors: ``(n, dim)`` float32 L2-normalised gallery embeddings (for exact re-ranking).
        queries: ``(q, dim)`` L2-normalised query embeddings.
        k: neighbours wanted (at most ``n`` are returned).
        rows: maps the index's ids to rows of ``vectors`` (``None``: ids are rows).
    """
    n = len(vectors)
    k = min(k, n)
    if k == 0:
        return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
    if index is None or n <= EXACT_MAX:
        # Exact search is faster than the graph for small galleries (NOTES.md) and exact.
        d = cosine_distances(queries, vectors)
        ids = np.argsort(d, axis=1, kind="stable")[:, :k]
        return ids, np.take_along_axis(d, ids, 1)
    # Ask the graph for twice as many candidates, then re-rank them with the exact float32
    # vectors: E4M3 storage approximates distances, and the tail of the list is where the
    # graph's approximations show.
    wide = min(n, 2 * k)
    # a writable contiguous copy: Voyager refuses read-only arrays (e.g. rows of a table)
    q = np.array(queries, np.float32, order="C", copy=True)
    ids, _ = index.query(q, k=wide, query_ef=max(QUERY_EF, wide))
    ids = np.asarray(ids, np.int64).reshape(len(queries), wide)
    if rows is not None:
        ids = rows(ids)
    cand = vectors[ids]  # (q, wide, dim)
    dist = 1.0 - np.einsum("qwd,qd->qw", cand, np.asarray(queries, np.float32))
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ids, order, 1), np.take_along_axis(dist, order, 1).astype(np.float32)


_MOVED = {"Database", "Person", "IndexInfo", "FACE_COLUMNS", "FILE_COLUMNS", "FORMAT_VERSION"}


def __getattr__(name: str) -> Any:
    # The generation store moved to facekit.database; old imports keep working.
    if name in _MOVED:
        from . import database

        return getattr(database, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
