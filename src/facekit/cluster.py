"""Grouping faces by identity without a gallery (``facekit cluster``).

Method (default ``"agglomerative"``): average-linkage agglomerative clustering on the fused,
impostor-normalised evidence of :class:`~facekit.calibration.Calibration` (larger = more
alike). Evidence is in units of the calibration's different-person (impostor) spread, so
a cut on it means the same for every model. Two groups merge while their *average*
evidence is at least :func:`cluster_threshold`. The cut keeps a stated share of faces out of
other people's clusters (``FALSE_MERGE_RATE``, 1% of faces, chosen on the tune folds) as the
collection grows: a face is compared with every other face, so the per-pair rate is that
share times ``PAIRS_PER_FALSE_MERGE`` divided by the number of other faces, and the cut is
the evidence that this per-pair share of different-person pairs reaches, from the measured
upper tail of impostor-pair evidence (:func:`facekit.calibration.pair_threshold`). Like
``identify``'s threshold, which grows with the number of enrolled people, the cut grows
with the number of faces (dlib: about 2.9 at 300 faces, 3.3 at 3,000).
Groups smaller than ``min_size`` are *noise*: a face that matches nobody well enough is
left out, never forced into the nearest group. ``"hdbscan"`` and ``"dbscan"`` (on the same
evidence distance; DBSCAN's ``eps`` again from the threshold) are there for comparison;
``docs/clustering.md`` has the measurements behind the default.

Stable ids (:func:`assign_ids`): clusters are numbered ``c-0001``, ``c-0002``, ... in the
order of their earliest member (sorted by source, time, face). When a previous cluster file
is given, each new cluster is matched one-to-one to the previous cluster it shares most
faces with (same source and time, boxes overlapping by IoU >= 0.5), largest overlap first;
a matched cluster keeps the previous id, person and name. Unmatched clusters get fresh ids
above every id ever issued (``next_id`` in the file), so ids are never reused.

Library code: no printing, no ``typer``/``rich``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import Calibration
from .cluster_norm import CohortNorm
from .errors import InputError, UsageError
from .graph import DEFAULT_K
from .types import Embeddings

log = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "cluster_threshold",
    "centroid",
    "FaceRef",
    "Cluster",
    "ClusterResult",
    "cluster_faces",
    "assign_ids",
    "read_cluster_file",
    "write_cluster_file",
    "evidence_matrix",
    "normalisation",
]

METHODS = ("agglomerative", "hdbscan", "dbscan")
FORMAT_VERSION = 1
#: Above this many faces the ``n x n`` evidence matrix (8 bytes per pair) gets large.
LARGE_N = 20000
#: Share of faces that may be put in a cluster of another person: the default cut's promise
#: (see :func:`cluster_threshold`). 1%: on the tune folds with lfw-singles (3,234 faces, half
#: of them people with one photo) it gave pairwise precision 0.994 (dlib+mobilefacenet)
#: (benchmarks/cluster_folds.py --folds tune --with-singles; docs/accuracy.md).
FALSE_MERGE_RATE = 0.01
#: Different-person pairs above the cut per face placed in another person's cluster (average
#: linkage needs a group's *average* evidence to reach the cut, so most pairs above it never
#: merge): 12-13 measured on the tune folds with lfw-singles, rounded down to 10 (cautious).
PAIRS_PER_FALSE_MERGE = 10.0
#: Faces assumed when their number is not known (``video`` linking unknown faces): a few
#: hundred, where the cut equals the former fixed per-pair rate of 0.03%.
DEFAULT_FACES = 300


def cluster_threshold(
    false_merge_rate: float = FALSE_MERGE_RATE,
    calibration: Calibration | None = None,
    faces: int | None = None,
    *,
    normalised: bool = False,
) -> float:
    """Default evidence cut for ``faces`` faces: at most ``false_merge_rate`` of them placed
    in another person's cluster.

    Each face meets ``faces - 1`` others, so a different-person pair may reach the cut with
    probability ``false_merge_rate * PAIRS_PER_FALSE_MERGE / (faces - 1)``; the cut is that
    upper quantile of impostor-pair evidence (the calibration's measured tail, or the
    defaults of its models measured on the tune folds):
    :func:`facekit.calibration.pair_threshold`. It grows with the number of faces, as
    ``identify``'s threshold grows with the number of enrolled people.

    Args:
        false_merge_rate: share of faces that may end up in another person's cluster.
        calibration: evidence fusion and impostor tail (default: dlib's defaults).
        faces: faces being clustered (default ``DEFAULT_FACES``).
        normalised: the cut for cohort-normalised evidence (:mod:`facekit.cluster_norm`),
            which ``cluster_faces`` uses when the calibration has a cohort; raw evidence
            when it has none.

    Returns:
        The fused-evidence cut.
    """
    from .calibration import pair_threshold

    n = DEFAULT_FACES if faces is None else max(int(faces), 2)
    if normalised:
        from .cluster_norm import cohort_norm

        norm = cohort_norm(calibration or Calibration.default(["dlib"]))
        if norm is not None:
            return norm.threshold(false_merge_rate, n)
    pair_rate = min(float(false_merge_rate) * PAIRS_PER_FALSE_MERGE / (n - 1), 0.5)
    return pair_threshold(pair_rate, calibration)


@dataclass(frozen=True)
class FaceRef:
    """Where a face comes from.

    Attributes:
        source: the path as given by the user.
        face: face index within the file or frame (0 = largest).
        box: ``[x, y, w, h]`` in original pixels.
        time: seconds into a video, ``None`` for photos.
    """

    source: str
    face: int
    box: tuple[float, float, float, float]
    time: float | None = None

    def sort_key(self) -> tuple[str, float, int]:
        return (self.source, -1.0 if self.time is None else float(self.time), self.face)

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "source": self.source,
            "face": self.face,
            "box": [round(float(v), 1) for v in self.box],
        }
        if self.time is not None:
            rec["time"] = round(float(self.time), 3)
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> FaceRef:
        box = rec.get("box") or [0, 0, 0, 0]
        t = rec.get("time")
        return cls(
            str(rec["source"]),
            int(rec.get("face", 0)),
            tuple(float(v) for v in box),  # type: ignore[arg-type]
            None if t is None else float(t),
        )


@dataclass
class Cluster:
    """One group of faces believed to be one person.

    Attributes:
        id: stable id (``c-0001``...), see :func:`assign_ids`.
        members: ``(k,) int64`` row indices into the clustered embeddings, in source order.
        medoid: row index of the representative face (highest total evidence to the others).
        cohesion: mean fused evidence of the other members to the medoid (larger = tighter;
            compare with the calibration threshold).
        person, name: set when the cluster was enrolled (``facekit enroll``) or carried over
            from a previous run.
        suggestions: nearest known people (``--suggest``), filled by
            :func:`facekit.cluster_suggest.add_suggestions`.
    """

    id: str
    members: np.ndarray
    medoid: int
    cohesion: float
    person: str | None = None
    name: str | None = None
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class ClusterResult:
    """Clusters and noise of one run.

    Attributes:
        labels: ``(n,) int64`` cluster position per face (index into ``clusters``), -1 = noise.
        clusters: clusters, largest first (ties: earliest member first).
        noise: ``(m,) int64`` row indices of faces left unclustered.
        method: clustering method.
        threshold: fused-evidence cut used.
        refs: per-face :class:`FaceRef` (``None`` when clustering bare embeddings).
        next_id: the next fresh id number (kept in the cluster file so ids are never reused).
        models: recogniser fingerprints of the embeddings.
    """

    labels: np.ndarray
    clusters: list[Cluster]
    noise: np.ndarray
    method: str
    threshold: float
    refs: list[FaceRef] | None = None
    next_id: int = 1
    models: dict[str, str] = field(default_factory=dict)
    graph: Any = None
    vectors: Any = None
    noise_edges: Any = None
    shift: Any = None

    def cluster(self, cluster_id: str) -> Cluster:
        for c in self.clusters:
            if c.id == cluster_id:
                return c
        raise KeyError(cluster_id)

    def _ref(self, i: int) -> dict[str, Any]:
        if self.refs is None:
            return {"index": int(i)}
        recs = self.__dict__.get("_records")
        if recs is None or len(recs) != len(self.refs):
            recs = self.__dict__["_records"] = _records(self.refs)
        return recs[int(i)]  # shared, read-only: the document is serialised, not edited

    def to_record(self) -> dict[str, Any]:
        """The JSON document (``facekit cluster --format json`` and the ``-o`` file)."""
        clusters = []
        for c in self.clusters:
            rec: dict[str, Any] = {
                "id": c.id,
                "size": c.size,
                "person": c.person,
                "name": c.name,
                "cohesion": round(float(c.cohesion), 4),
                "representative": self._ref(c.medoid),
                "members": [self._ref(i) for i in c.members],
            }
            if c.suggestions:
                rec["suggestions"] = c.suggestions
            rec.update(c.extra)
            clusters.append(rec)
        return {
            "version": FORMAT_VERSION,
            "method": self.method,
            "threshold": round(float(self.threshold), 4),
            "models": self.models,
            "faces": int(len(self.labels)),
            "next_id": self.next_id,
            "clusters": clusters,
            "noise": [self._ref(i) for i in self.noise],
        }

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per cluster (table / CSV)."""
        rows = []
        for c in self.clusters:
            rep = self._ref(c.medoid)
            row: dict[str, Any] = {
                "id": c.id,
                "size": c.size,
                "person": c.person or "",
                "name": c.name or "",
                "cohesion": round(float(c.cohesion), 2),
                "representative": f"{rep.get('source', rep.get('index'))}#{rep.get('face', 0)}",
                "sources": len({self._ref(i).get("source") for i in c.members}),
            }
            if c.suggestions:
                row["suggestion"] = ", ".join(
                    f"{s['person']} ({s['confidence']:.0f})" for s in c.suggestions[:3]
                )
            rows.append(row)
        if len(self.noise):
            rows.append({"id": "noise", "size": int(len(self.noise))})
        return rows


def _records(refs: Sequence[FaceRef]) -> list[dict[str, Any]]:
    """``FaceRef.to_record()`` of every ref, computed once per result."""
    return [r.to_record() for r in refs]


def _check_models(embeddings: Embeddings, calibration: Calibration) -> None:
    missing = [m for m in calibration.models if m not in embeddings.vectors]
    if missing:
        raise UsageError(
            f"embeddings lack model(s) {', '.join(missing)} "
            f"(have {', '.join(embeddings.models) or 'none'})"
        )


def evidence_matrix(embeddings: Embeddings, calibration: Calibration) -> np.ndarray:
    """``(n, n) float64`` pairwise fused evidence (larger = more alike). Small inputs only.

    Raises:
        UsageError: a calibrated model is missing from ``embeddings``.
    """
    _check_models(embeddings, calibration)
    v = embeddings.vectors
    return np.asarray(calibration.pairwise_evidence(v, v), np.float64)


def _default_threshold(
    method: str, calibration: Calibration, faces: int | None = None, normalise: bool = True
) -> float:
    if method == "dbscan":
        # DBSCAN links through any single pair (single linkage): it needs identify's stricter cut.
        return float(calibration.threshold)
    # hdbscan ignores it (reported only); only average linkage uses cohort normalisation
    return cluster_threshold(
        calibration=calibration,
        faces=faces,
        normalised=normalise and method == "agglomerative",
    )


def cluster_faces(
    embeddings: Embeddings,
    calibration: Calibration,
    *,
    method: str = "agglomerative",
    min_size: int = 2,
    threshold: float | None = None,
    refs: Sequence[FaceRef] | None = None,
    previous: Mapping[str, Any] | None = None,
    k: int = DEFAULT_K,
    backend: str = "auto",
    normalise: bool = True,
) -> ClusterResult:
    """Group faces by identity; faces that fit no group are noise.

    Memory is ``O(n * k)``: a k-nearest-neighbour graph by fused evidence
    (:func:`facekit.graph.knn_graph`), then average linkage restricted to it
    (:func:`facekit.graph.average_linkage`, exact average evidence from group sums).

    Args:
        embeddings: ``n`` faces, every model of ``calibration`` present (``(n, dim) float32``
            L2-normalised each).
        calibration: evidence fusion and the same-person threshold.
        method: ``"agglomerative"`` (average linkage cut at the threshold; default),
            ``"hdbscan"`` (density based, ``min_cluster_size=min_size``) or ``"dbscan"``
            (``eps`` at the threshold, ``min_samples=min_size``); the last two on the
            sparse kNN graph.
        min_size: smallest group reported as a cluster; smaller groups become noise.
        threshold: fused-evidence cut (default: :func:`cluster_threshold` for ``n`` faces).
        refs: where each face comes from; orders ids and enables matching to ``previous``.
        previous: a previous cluster document (:func:`read_cluster_file`) whose ids, persons
            and names are kept for the clusters that share faces with it.
        k: neighbours per face in the graph.
        backend: kNN backend (:data:`facekit.graph.BACKENDS`; ``"auto"``: exact up to
            20,000 faces, else Voyager).
        normalise: average linkage on cohort-normalised evidence (hub faces penalised,
            :mod:`facekit.cluster_norm`) when the calibration has a cohort, with the cut
            measured for it. ``False``: raw fused evidence.

    Returns:
        A :class:`ClusterResult` with stable ids (see :func:`assign_ids`).

    Example:
        >>> cal = Calibration.default(["dlib"])
        >>> res = cluster_faces(table.embeddings(), cal, refs=refs)  # doctest: +SKIP
        >>> [(c.id, c.size) for c in res.clusters]  # doctest: +SKIP
        [('c-0001', 10), ('c-0002', 9)]
    """
    from .graph import EvidenceSpace, knn_graph

    if method not in METHODS:
        raise UsageError(f"unknown clustering method {method!r} (choose from {', '.join(METHODS)})")
    if min_size < 1:
        raise UsageError("min_size must be at least 1")
    n = len(embeddings)
    if refs is not None and len(refs) != n:
        raise ValueError(f"refs has {len(refs)} entries for {n} faces")
    if n:
        _check_models(embeddings, calibration)
    norm = normalisation(calibration, embeddings, method, normalise)
    if threshold is not None:
        thr = float(threshold)
    elif norm is not None:
        thr = norm.threshold(FALSE_MERGE_RATE, n)
    else:
        thr = _default_threshold(method, calibration, n, normalise=False)
    space = EvidenceSpace.from_calibration(calibration)
    x = space.project(embeddings.vectors) if n else np.zeros((0, 1), np.float32)
    shift = None
    if norm is not None:
        t0 = time.perf_counter()
        shift = norm.shift(x)
        log.info("cohort shift of %d faces: %.1f s", n, time.perf_counter() - t0)
    t0 = time.perf_counter()
    graph = knn_graph(x, space.offset, k=k, backend=backend)
    log.info("kNN graph of %d faces: %.1f s", n, time.perf_counter() - t0)
    t0 = time.perf_counter()
    raw = _raw_labels(x, graph, space.offset, thr, method, min_size, shift)
    log.info("%s on the graph: %.1f s", method, time.perf_counter() - t0)
    result = _result_from_labels(x, space.offset, raw, min_size, method, thr, refs, shift)
    result.models = dict(embeddings.fingerprints)
    result.graph = graph
    result.vectors = x
    result.shift = shift
    result.noise_edges = (result.noise, graph.indices[result.noise], graph.evidence[result.noise])
    assign_ids(result, previous)
    return result


def _result_from_labels(
    x: np.ndarray,
    offset: float,
    raw: np.ndarray,
    min_size: int,
    method: str,
    thr: float,
    refs: Sequence[FaceRef] | None,
    shift: np.ndarray | None = None,
) -> ClusterResult:
    """Clusters (largest first), medoids and noise from raw group labels (-1 = noise)."""
    from .graph import medoids

    n = len(raw)
    raw = np.asarray(raw, np.int64).copy()
    if n:
        counts = np.bincount(np.where(raw >= 0, raw, 0), minlength=int(raw.max()) + 1 if n else 0)
        raw[(raw >= 0) & (counts[np.maximum(raw, 0)] < min_size)] = -1
    order = _face_order(n, refs)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    groups, med, coh = medoids(x, raw, offset, shift)
    clusters = []
    if len(groups):
        rows = np.flatnonzero(raw >= 0)
        rows = rows[np.lexsort((rank[rows], raw[rows]))]  # by group, then source order
        gpos = np.searchsorted(groups, raw[rows])
        bounds = np.flatnonzero(np.diff(gpos)) + 1
        for gi, members in zip(np.unique(gpos), np.split(rows, bounds), strict=True):
            clusters.append(Cluster("", members, int(med[gi]), float(coh[gi])))
    # Largest first; ties by earliest member.
    clusters.sort(key=lambda c: (-c.size, int(rank[c.members[0]])))
    labels = np.full(n, -1, np.int64)
    for pos, c in enumerate(clusters):
        labels[c.members] = pos
    noise = np.flatnonzero(labels < 0)
    noise = noise[np.argsort(rank[noise], kind="stable")]
    return ClusterResult(
        labels, clusters, noise, method, thr, list(refs) if refs is not None else None
    )


def _raw_labels(
    x: np.ndarray,
    graph: Any,
    offset: float,
    thr: float,
    method: str,
    min_size: int,
    shift: np.ndarray | None = None,
) -> np.ndarray:
    """Group labels on the kNN graph (-1 = noise for the density methods)."""
    from .graph import average_linkage

    n = len(x)
    if n < 2:
        return np.arange(n, dtype=np.int64)
    if method == "agglomerative":
        if shift is None:
            a, b, _ = graph.edges(cut=thr)
        else:
            a, b, ev = graph.edges()
            keep = ev - shift[a] - shift[b] >= thr
            a, b = a[keep], b[keep]
        return average_linkage(x, (a, b), thr, offset, shift=shift)
    # Density methods: sparse precomputed distances ``top - evidence`` (> 0) on graph edges.
    from scipy.sparse import coo_matrix

    a, b, ev = graph.edges()
    top = float(max(ev.max() if len(ev) else thr, thr)) + 1.0
    d = (top - ev.astype(np.float64)).clip(min=1e-9)
    dist = coo_matrix(
        (np.concatenate([d, d]), (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n)
    ).tocsr()
    cut = top - thr
    if method == "dbscan":
        from sklearn.cluster import DBSCAN

        return DBSCAN(eps=cut, min_samples=max(min_size, 2), metric="precomputed").fit_predict(dist)
    from sklearn.cluster import HDBSCAN

    return HDBSCAN(min_cluster_size=max(min_size, 2), metric="precomputed", copy=True).fit_predict(
        dist
    )


def normalisation(
    calibration: Calibration,
    embeddings: Embeddings | None = None,
    method: str = "agglomerative",
    normalise: bool = True,
) -> CohortNorm | None:
    """The cohort normalisation average linkage uses (:mod:`facekit.cluster_norm`), or
    ``None`` (raw evidence): other methods, ``normalise=False``, or no cohort for the
    calibration's models and embedding dimensions."""
    from .cluster_norm import cohort_norm

    if not normalise or method != "agglomerative":
        return None
    dims = None
    if embeddings is not None:
        dims = {m: int(v.shape[1]) for m, v in embeddings.vectors.items() if v.ndim == 2}
    return cohort_norm(calibration, dims)


def _face_order(n: int, refs: Sequence[FaceRef] | None) -> np.ndarray:
    if refs is None:
        return np.arange(n)
    return np.array(sorted(range(n), key=lambda i: refs[i].sort_key()), np.int64)


# --------------------------------------------------------------------------- stable ids
def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _id_number(cid: str) -> int:
    try:
        return int(str(cid).rsplit("-", 1)[-1])
    except ValueError:
        return 0


def _time_key(t: Any) -> float | None:
    return None if t is None else round(float(t), 2)


def assign_ids(result: ClusterResult, previous: Mapping[str, Any] | None = None) -> None:
    """Give ``result``'s clusters stable ids, in place (see the module docs for the scheme).

    Args:
        result: clusters with ``refs``; ids and ``next_id`` are (re)written.
        previous: a previous cluster document (``to_record()`` / :func:`read_cluster_file`).
    """
    next_id = 1
    taken: dict[int, dict[str, Any]] = {}
    if previous:
        old_clusters = list(previous.get("clusters", []))
        next_id = max(
            [int(previous.get("next_id", 1))] + [_id_number(c["id"]) + 1 for c in old_clusters]
        )
        if result.refs is not None and old_clusters:
            # (source, time) -> [(box, old cluster position)]
            where: dict[tuple[str, float | None], list[tuple[Any, int]]] = {}
            for pos, c in enumerate(old_clusters):
                for m in c.get("members", []):
                    key = (str(m["source"]), _time_key(m.get("time")))
                    where.setdefault(key, []).append((m.get("box") or [0, 0, 0, 0], pos))
            overlap: dict[tuple[int, int], int] = {}
            for new_pos, c in enumerate(result.clusters):
                for i in c.members:
                    ref = result.refs[int(i)]
                    best, best_iou = None, 0.5
                    for box, pos in where.get((ref.source, _time_key(ref.time)), []):
                        iou = _iou(ref.box, box)
                        if iou >= best_iou:
                            best, best_iou = pos, iou
                    if best is not None:
                        overlap[(new_pos, best)] = overlap.get((new_pos, best), 0) + 1
            used_old: set[int] = set()
            for (new_pos, old_pos), _count in sorted(
                overlap.items(), key=lambda kv: (-kv[1], kv[0][1], kv[0][0])
            ):
                if new_pos in taken or old_pos in used_old:
                    continue
                taken[new_pos] = old_clusters[old_pos]
                used_old.add(old_pos)
    # Fresh ids in order of each cluster's earliest member (deterministic on a re-run).
    order = _face_order(len(result.labels), result.refs)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    fresh = sorted(
        (p for p in range(len(result.clusters)) if p not in taken),
        key=lambda p: int(rank[result.clusters[p].members].min()),
    )
    for pos, c in enumerate(result.clusters):
        if pos in taken:
            old = taken[pos]
            c.id = str(old["id"])
            c.person = old.get("person")
            c.name = old.get("name")
            for k in ("enrolled",):
                if k in old:
                    c.extra[k] = old[k]
    for pos in fresh:
        result.clusters[pos].id = f"c-{next_id:04d}"
        next_id += 1
    result.next_id = next_id


# --------------------------------------------------------------------------- cluster files
def read_cluster_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a cluster document written by ``facekit cluster -o``.

    Raises:
        InputError: missing, unreadable or not a cluster file.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such cluster file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: not a facekit cluster file ({' '.join(str(exc).split())})") from exc
    except RecursionError:
        raise InputError(f"{p}: not a facekit cluster file (nested too deeply)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("clusters"), list):
        raise InputError(f"{p}: not a facekit cluster file (no 'clusters' list)")
    if not isinstance(doc.get("noise", []), list):
        raise InputError(f"{p}: not a facekit cluster file ('noise' is not a list)")
    for ci, c in enumerate(doc["clusters"]):
        where = f"cluster {ci + 1}"
        if not isinstance(c, dict) or not isinstance(c.get("id"), str):
            raise InputError(f"{p}: {where} has no 'id'")
        if not isinstance(c.get("members"), list):
            raise InputError(f"{p}: cluster {c['id']} has no 'members' list")
        for mi, m in enumerate(c["members"]):
            _check_member(p, f"cluster {c['id']} member {mi + 1}", m)
    for mi, m in enumerate(doc.get("noise", [])):
        _check_member(p, f"noise face {mi + 1}", m)
    return doc


def _check_member(path: Path, where: str, m: Any) -> None:
    """A member record: ``source`` (str), ``box`` (4 finite numbers), ``face``/``time`` numbers."""

    def bad(what: str) -> InputError:
        return InputError(f"{path}: {where}: {what} (not a facekit cluster file?)")

    if type(m) is not dict:
        raise bad("not an object")
    src = m.get("source")
    if type(src) is not str or not src:
        raise bad("no 'source'")
    box = m.get("box")
    if type(box) is not list or len(box) != 4:
        raise bad("no 'box' of 4 numbers")
    for v in box:
        # bool is not int here (type() is exact); v - v is nan for inf and nan.
        if (type(v) is not float and type(v) is not int) or v - v != 0:
            raise bad("no 'box' of 4 numbers")
    face = m.get("face", 0)
    if type(face) is not int:
        raise bad("'face' is not an integer")
    t = m.get("time")
    if t is not None and ((type(t) is not float and type(t) is not int) or t - t != 0):
        raise bad("'time' is not a number")


def write_cluster_file(path: str | os.PathLike[str], doc: Mapping[str, Any]) -> None:
    """Write a cluster document atomically."""
    from .facetable import write_atomic
    from .render import to_jsonable

    try:  # documents built by to_record() hold plain types: no conversion pass needed
        plain: Any = dict(doc)
        small = int(plain.get("faces", 0) or 0) <= 5000
        # Indented output goes through the pure-Python encoder: only for small files.
        text = json.dumps(plain, ensure_ascii=False, indent=1 if small else None, allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(to_jsonable(dict(doc)), ensure_ascii=False, indent=1)
    text += "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def centroid(embeddings: Embeddings) -> Embeddings:
    """One L2-normalised mean embedding per model (``(1, dim)``), e.g. to match a cluster."""
    out = {}
    for m, v in embeddings.vectors.items():
        c = v.mean(axis=0, keepdims=True)
        out[m] = c / max(float(np.linalg.norm(c)), 1e-12)
    return Embeddings(out, dict(embeddings.fingerprints))
