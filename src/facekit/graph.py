"""Sparse k-nearest-neighbour graphs and average-linkage clustering on them.

Used by :mod:`facekit.cluster` so that clustering needs memory ``O(n * k)``, never ``O(n^2)``.

**Evidence as an inner product.** The fused evidence of :class:`~facekit.calibration.Calibration`
is affine in the cosine similarities of the models::

    evidence(a, b) = sum_m w_m (mu_m - 1 + a_m . b_m) / s_m  =  offset + x_a . x_b

with ``x = concat_m(sqrt(w_m / s_m) * v_m)`` (:class:`EvidenceSpace`). Every ``x`` has the same
norm, so the nearest neighbours by fused evidence are the nearest by cosine of ``x``: one
approximate index answers for any ensemble of models. And the *average* evidence between two
groups is exact from their sums: ``offset + S_A . S_B / (|A| |B|)``, so average linkage needs
no pairwise matrix.

**Graph** (:func:`knn_graph`): each face's ``k`` nearest faces by evidence, from an HNSW index
(Voyager, the default; faiss when installed, ``backend="faiss"``) or exactly by blocked matrix
products for small inputs (``backend="exact"``, the default below :data:`EXACT_MAX`). Queries
run in chunks of :data:`QUERY_CHUNK` rows, so the graph of a shard of rows can be built
anywhere the index is (see ``docs/clustering.md`` on distributing this step).

**Clustering** (:func:`average_linkage`): agglomerative average linkage restricted to the graph.
Two groups are candidates only when some graph edge joins them with evidence ``>= cut`` (the
average of a set cannot reach the cut unless its maximum does, so no other edge can ever
matter); the linkage itself is the exact average over *all* pairs, computed from group sums.
Merging proceeds in rounds of reciprocal nearest neighbours (pairs of groups that are each
other's best candidate above the cut merge together): average linkage is *reducible*, so on a
complete graph this gives exactly the hierarchy of greedy average linkage (the nearest-neighbour
chain argument). Each round finds every group's best partner with scatter-max passes over
the live pairs (no sort) and recomputes only the pairs that touch a group merged in that
round; the others keep their linkage, so late rounds (a few merges in large groups) cost
little.

Library code: no printing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "DEFAULT_K",
    "EvidenceSpace",
    "KnnGraph",
    "knn_graph",
    "knn_query",
    "build_index",
    "average_linkage",
    "medoids",
]

BACKENDS = ("auto", "exact", "voyager", "faiss")
#: Neighbours per face. Same-person pairs are what the clustering needs; 16 covers them and
#: leaves the graph at 8 bytes x 16 = 128 bytes per face.
DEFAULT_K = 16
#: Below this many faces the exact graph (blocked matrix products) is cheap and exact.
EXACT_MAX = 20000
#: Rows per query chunk (bounded temporary memory; the unit a distributed run would shard).
QUERY_CHUNK = 8192
#: HNSW settings (Voyager): recall@10 >= 0.99 on face-like data at ef >= 50 (NOTES.md).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
HNSW_EF = 64


@dataclass(frozen=True)
class EvidenceSpace:
    """Fused evidence written as ``offset + x_a . x_b`` (see the module docs).

    Attributes:
        models: model ids in concatenation order.
        scales: per model ``sqrt(w_m / s_m)``.
        offset: ``sum_m w_m (mu_m - 1) / s_m`` (the evidence of orthogonal vectors).
    """

    models: tuple[str, ...]
    scales: tuple[float, ...]
    offset: float

    @classmethod
    def from_calibration(cls, calibration: object) -> EvidenceSpace:
        weights: Mapping[str, float] = calibration.weights  # type: ignore[attr-defined]
        impostor: Mapping[str, tuple[float, float]] = calibration.impostor  # type: ignore[attr-defined]
        models = tuple(weights)
        scales, offset = [], 0.0
        for m in models:
            mu, sd = impostor[m]
            sd = max(float(sd), 1e-6)
            scales.append(math.sqrt(max(float(weights[m]), 0.0) / sd))
            offset += float(weights[m]) * (float(mu) - 1.0) / sd
        return cls(models, tuple(scales), offset)

    @property
    def norm2(self) -> float:
        """``x . x`` of every projected face (unit vectors per model)."""
        return float(sum(s * s for s in self.scales))

    def project(self, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
        """``(n, sum dim) float32``: the concatenated, scaled embeddings."""
        parts = [
            np.asarray(vectors[m], np.float32) * np.float32(s)
            for m, s in zip(self.models, self.scales, strict=True)
        ]
        if len(parts) == 1:
            return np.ascontiguousarray(parts[0])
        return np.ascontiguousarray(np.concatenate(parts, axis=1))


@dataclass
class KnnGraph:
    """Each face's nearest faces by evidence.

    Attributes:
        indices: ``(n, k) int64`` neighbour rows, best first; -1 where fewer were found.
        evidence: ``(n, k) float32`` fused evidence to each neighbour (``-inf`` for -1).
    """

    indices: np.ndarray
    evidence: np.ndarray
    index: object | None = None

    @property
    def k(self) -> int:
        return int(self.indices.shape[1]) if self.indices.ndim == 2 else 0

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def edges(self, cut: float = -np.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Undirected edges ``(i, j, evidence)`` with ``i < j`` and evidence ``>= cut``, deduplicated."""
        n, k = self.indices.shape
        rows = np.repeat(np.arange(n, dtype=np.int64), k)
        cols = self.indices.reshape(-1)
        ev = self.evidence.reshape(-1)
        keep = (cols >= 0) & (cols != rows) & (ev >= cut)
        rows, cols, ev = rows[keep], cols[keep], ev[keep]
        a, b = np.minimum(rows, cols), np.maximum(rows, cols)
        key = a * n + b
        key, first = np.unique(key, return_index=True)
        return a[first], b[first], ev[first]


def build_index(x: np.ndarray, backend: str = "voyager", *, threads: int = -1) -> object:
    """An approximate cosine index over the rows of ``x`` (ids = row numbers)."""
    x = np.ascontiguousarray(x, np.float32)
    if backend == "faiss":
        import faiss

        index = faiss.IndexHNSWFlat(x.shape[1], HNSW_M * 2, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF
        index.add(_unit(x))
        return index
    import voyager

    index = voyager.Index(
        voyager.Space.Cosine,
        num_dimensions=x.shape[1],
        M=HNSW_M,
        ef_construction=HNSW_EF_CONSTRUCTION,
        max_elements=max(len(x), 1),
    )
    for lo in range(0, len(x), 65536):
        index.add_items(
            x[lo : lo + 65536], ids=np.arange(lo, min(lo + 65536, len(x))), num_threads=threads
        )
    return index


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_query(
    index: object, queries: np.ndarray, k: int, *, threads: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, cosine)`` of the ``k`` nearest indexed rows to each query (``-1`` / ``-inf`` pad)."""
    q = np.ascontiguousarray(queries, np.float32)
    size = _index_size(index)
    kk = min(k, size)
    ids = np.full((len(q), k), -1, np.int64)
    cos = np.full((len(q), k), -np.inf, np.float32)
    if kk == 0 or not len(q):
        return ids, cos
    if type(index).__module__.startswith("faiss"):
        sims, got = index.search(_unit(q), kk)  # type: ignore[attr-defined]
        ids[:, :kk] = got
        cos[:, :kk] = np.where(got >= 0, sims, -np.inf)
    else:
        got, dist = index.query(q, k=kk, num_threads=threads, query_ef=max(HNSW_EF, kk))  # type: ignore[attr-defined]
        ids[:, :kk] = got.astype(np.int64)
        cos[:, :kk] = 1.0 - dist
    return ids, cos


def _index_size(index: object) -> int:
    if hasattr(index, "ntotal"):
        return int(index.ntotal)
    return int(len(index))  # type: ignore[arg-type]


def knn_graph(
    x: np.ndarray,
    offset: float,
    *,
    k: int = DEFAULT_K,
    backend: str = "auto",
    index: object | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> KnnGraph:
    """Each row's ``k`` nearest other rows of ``x`` by evidence ``offset + x_a . x_b``.

    Args:
        x: ``(n, D)`` projected faces (:meth:`EvidenceSpace.project`), all of equal norm.
        offset: :attr:`EvidenceSpace.offset`.
        k: neighbours per face (self excluded).
        backend: ``"exact"``, ``"voyager"``, ``"faiss"`` or ``"auto"`` (exact up to
            :data:`EXACT_MAX` faces, else Voyager).
        index: an index already built over ``x`` (:func:`build_index`), reused.
        progress: called with ``(rows done, rows)`` after each query chunk.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown kNN backend {backend!r} (choose from {', '.join(BACKENDS)})")
    n = len(x)
    if backend == "auto":
        backend = "exact" if n <= EXACT_MAX and index is None else "voyager"
    ids = np.full((n, k), -1, np.int64)
    ev = np.full((n, k), -np.inf, np.float32)
    if n < 2 or k < 1:
        return KnnGraph(ids, ev)
    norm2 = float(np.dot(x[0], x[0]))
    x = np.ascontiguousarray(x, np.float32)
    if backend == "exact":
        kk = min(k, n - 1)
        chunk = max(1, min(QUERY_CHUNK, 2**23 // max(n, 1)))  # ~130 MB of temporaries
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            sims = x[lo:hi] @ x.T
            sims[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf  # not its own neighbour
            part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            val = np.take_along_axis(sims, part, 1)
            order = np.argsort(-val, axis=1, kind="stable")
            ids[lo:hi, :kk] = np.take_along_axis(part, order, 1)
            ev[lo:hi, :kk] = np.take_along_axis(val, order, 1) + offset
            if progress:
                progress(hi, n)
        return KnnGraph(ids, ev)
    if index is None:
        t0 = time.perf_counter()
        index = build_index(x, backend)
        log.info("%s index of %d faces: %.1f s", backend, n, time.perf_counter() - t0)
    for lo in range(0, n, QUERY_CHUNK):
        hi = min(lo + QUERY_CHUNK, n)
        got, cos = knn_query(index, x[lo:hi], k + 1)
        self_hit = got == np.arange(lo, hi)[:, None]
        # Drop the row itself (or the last hit when the index missed it), keep k.
        drop = np.where(self_hit.any(1), self_hit.argmax(1), k)
        keep = np.ones(got.shape, bool)
        keep[np.arange(hi - lo), drop] = False
        got = got[keep].reshape(hi - lo, k)
        cos = cos[keep].reshape(hi - lo, k)
        ids[lo:hi] = got
        ev[lo:hi] = np.where(got >= 0, cos * norm2 + offset, -np.inf)
        if progress:
            progress(hi, n)
    return KnnGraph(ids, ev, index)


def group_sums(x: np.ndarray, group: np.ndarray, g: int, dtype: Any = np.float64) -> np.ndarray:
    """``(g, D)`` sum of the rows of ``x`` per group (a sparse product; ``np.add.at`` is slow)."""
    from scipy.sparse import csr_matrix

    n = len(group)
    onehot = csr_matrix(
        (np.ones(n, dtype), (np.asarray(group, np.int64), np.arange(n))), shape=(g, n)
    )
    return np.asarray(onehot @ np.asarray(x, dtype), dtype)


def _row_dots(s: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    out = np.empty(len(a), np.float64)
    for lo in range(0, len(a), chunk):
        hi = lo + chunk
        out[lo:hi] = np.einsum("ij,ij->i", s[a[lo:hi]], s[b[lo:hi]], dtype=np.float64)
    return out


def average_linkage(
    x: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray],
    cut: float,
    offset: float,
    *,
    init: np.ndarray | None = None,
    tags: np.ndarray | None = None,
    shift: np.ndarray | None = None,
) -> np.ndarray:
    """Average-linkage clustering restricted to candidate ``edges``, stopped at ``cut``.

    Args:
        x: ``(n, D)`` projected faces.
        edges: ``(i, j)`` row pairs that may link their groups (evidence ``>= cut``).
        cut: merge two groups while their average evidence ``offset + S_A.S_B/(|A||B|)`` is
            ``>= cut``.
        offset: :attr:`EvidenceSpace.offset`.
        init: optional ``(n,)`` starting groups (``>= 0``: faces with the same value start
            merged; ``-1``: a singleton). Used for incremental runs.
        tags: optional ``(n,) int64``: two groups whose tags are both ``>= 0`` and differ
            never merge (clusters named as different people stay apart in incremental runs);
            -1 = no tag.
        shift: optional ``(n,)`` per-face shift ``h``: the evidence of a pair is then
            ``offset + x_a . x_b - h_a - h_b`` (cohort normalisation,
            :mod:`facekit.cluster_norm`); the average of two groups stays exact from sums,
            ``- H_A / |A| - H_B / |B|`` with ``H`` the group's sum of ``h``.

    Returns:
        ``(n,) int64`` group label per face (arbitrary numbering).
    """
    n = len(x)
    if init is None:
        group = np.arange(n, dtype=np.int64)
    else:
        init = np.asarray(init, np.int64)
        _, inv = np.unique(np.where(init >= 0, init, -1 - np.arange(n)), return_inverse=True)
        group = inv.astype(np.int64)
    g = int(group.max()) + 1 if n else 0
    if init is None:
        sums = np.array(x, np.float32, copy=True)
    else:
        sums = group_sums(x, group, g, np.float32)
    size = np.bincount(group, minlength=g).astype(np.float64)
    hsum: np.ndarray = (
        np.zeros(g, np.float64)
        if shift is None
        else np.bincount(group, weights=np.asarray(shift, np.float64), minlength=g)
    )
    lock = np.full(g, -1, np.int64)
    if tags is not None:
        np.maximum.at(lock, group, np.asarray(tags, np.int64))
    parent = np.arange(g, dtype=np.int64)

    def live(ea: np.ndarray, eb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canonical, deduplicated candidate pairs of groups with their linkage >= cut."""
        a, b = np.minimum(ea, eb), np.maximum(ea, eb)
        keep = (a != b) & ((lock[a] < 0) | (lock[b] < 0) | (lock[a] == lock[b]))
        key = np.unique(a[keep] * g + b[keep])
        a, b = key // g, key % g
        val = offset + _row_dots(sums, a, b) / (size[a] * size[b])
        if shift is not None:
            val -= hsum[a] / size[a] + hsum[b] / size[b]
        good = val >= cut
        return a[good], b[good], val[good]

    a, b, val = live(group[np.asarray(edges[0], np.int64)], group[np.asarray(edges[1], np.int64)])
    rounds = 0
    best_val = np.full(g, -np.inf)
    best = np.full(g, g, np.int64)
    while len(a):
        rounds += 1
        # Best candidate of every group (ties: lowest partner id), both directions; O(edges)
        # scatter passes, no sort. Only groups with an edge are read below.
        best_val[a] = -np.inf
        best_val[b] = -np.inf
        np.maximum.at(best_val, a, val)
        np.maximum.at(best_val, b, val)
        best[a] = g
        best[b] = g
        top_a = val == best_val[a]
        top_b = val == best_val[b]
        np.minimum.at(best, a[top_a], b[top_a])
        np.minimum.at(best, b[top_b], a[top_b])
        mutual = (best[a] == b) & (best[b] == a)
        ma, mb = a[mutual], b[mutual]
        if not len(ma):  # cannot happen with a strict order, but never loop forever
            break
        sums[ma] += sums[mb]
        size[ma] += size[mb]
        hsum[ma] += hsum[mb]
        lock[ma] = np.maximum(lock[ma], lock[mb])
        parent[mb] = ma
        remap = np.arange(g, dtype=np.int64)
        remap[mb] = ma
        merged = np.zeros(g, bool)
        merged[ma] = True
        merged[mb] = True
        # Only pairs touching a merged group change: the others keep their linkage (their
        # sums, sizes and locks are unchanged), so they are neither re-deduplicated nor
        # recomputed.
        touched = merged[a] | merged[b]
        ta, tb, tv = live(remap[a[touched]], remap[b[touched]])
        still = ~touched
        a = np.concatenate([a[still], ta])
        b = np.concatenate([b[still], tb])
        val = np.concatenate([val[still], tv])
    log.debug("average linkage: %d rounds", rounds)
    # Resolve chains of merges (parent pointers only point to lower-round survivors).
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    return root[group]


def medoids(
    x: np.ndarray, labels: np.ndarray, offset: float, shift: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group (labels ``>= 0``): medoid row and cohesion, exactly from group sums.

    The medoid is the member with the highest total evidence to the others (``x_i . S``);
    cohesion is the mean evidence of the other members to it (0 for a single face). With
    ``shift`` (per-face ``h``, see :func:`average_linkage`) the evidence is the shifted one.

    Returns:
        ``(group labels, medoid rows, cohesion)``, one entry per distinct label.
    """
    rows = np.flatnonzero(labels >= 0)
    if not len(rows):
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0)
    groups, inv = np.unique(labels[rows], return_inverse=True)
    sums = group_sums(x[rows], inv, len(groups), np.float64)
    size = np.bincount(inv, minlength=len(groups))
    score = np.empty(len(rows), np.float64)
    self_dot = np.empty(len(rows), np.float64)
    for lo in range(0, len(rows), 1 << 16):
        hi = lo + (1 << 16)
        xr = x[rows[lo:hi]].astype(np.float64)
        score[lo:hi] = np.einsum("ij,ij->i", xr, sums[inv[lo:hi]])
        self_dot[lo:hi] = np.einsum("ij,ij->i", xr, xr)
    if shift is not None:
        # total shifted evidence to the others: x_i.(S - x_i) - (m - 1) h_i - (H - h_i)
        h = np.asarray(shift, np.float64)[rows]
        hsum = np.bincount(inv, weights=h, minlength=len(groups))
        score -= (size[inv] - 2) * h + hsum[inv]
    order = np.lexsort((rows, -score, inv))
    first = np.ones(len(order), bool)
    first[1:] = inv[order][1:] != inv[order][:-1]
    pick = order[first]
    med = rows[pick]
    coh = np.where(size > 1, offset + (score[pick] - self_dot[pick]) / np.maximum(size - 1, 1), 0.0)
    return groups, med, coh
