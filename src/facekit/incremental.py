"""Incremental clustering: add new faces to an existing clustering without redoing it.

Next to a cluster file ``clusters.json`` (written by ``facekit cluster -o``) live:

``clusters.faces.parquet``
    every clustered face with its embeddings (see :mod:`facekit.facetable`), row order = state.
``clusters.state.npz``
    per row of that table the cluster id number (``c-0012`` -> 12, -1 = noise), and the
    settings the clustering was made with (evidence space, cut, minimum size, k), so a run
    with other settings is detected and falls back to a full run.
``clusters.knn.voy``
    a Voyager index over the projected faces (:class:`facekit.graph.EvidenceSpace`), ids =
    rows, so new faces find their old neighbours without touching the old ones.

All three are written atomically (:func:`facekit.facetable.write_atomic`).

**Update rule** (:func:`update_clusters`): the old clusters are the starting groups of the
same average linkage as a full run (:func:`facekit.graph.average_linkage`), old noise faces
and new faces start as singletons, and candidate edges are each new face's ``k`` nearest old
faces (from the stored index) and nearest new faces. An old cluster is never split
and keeps its id; new faces join the old cluster whose *average* evidence is highest above
the cut, or form new clusters (with old noise faces too) that get fresh ids above every id
issued. Two old clusters merge only when the new faces raise their average evidence to the
cut (as a full run would): the merged cluster keeps the id most of its old faces had, lists
the absorbed ids under ``merged``, and the absorbed ids are never reused. Clusters enrolled
as *different* people never merge. Cost: ``O(m k)`` queries
for ``m`` new faces plus ``O(n)`` vector sums; the old faces are not re-clustered.

Library code: no printing.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import Calibration
from .cluster import Cluster, ClusterResult, FaceRef, _face_order, _id_number
from .facetable import write_atomic
from .graph import (
    DEFAULT_K,
    EvidenceSpace,
    average_linkage,
    build_index,
    knn_graph,
    knn_query,
    medoids,
)
from .types import Embeddings

log = logging.getLogger(__name__)

__all__ = [
    "ClusterState",
    "state_paths",
    "save_state",
    "load_state",
    "update_clusters",
    "norm_key",
]

STATE_VERSION = 1


def state_paths(cluster_file: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(state .npz, kNN index .voy)`` kept beside ``cluster_file``."""
    p = Path(cluster_file)
    return p.with_name(p.stem + ".state.npz"), p.with_name(p.stem + ".knn.voy")


@dataclass
class ClusterState:
    """What an incremental run needs of the previous one.

    Attributes:
        ids: ``(n,) int64`` cluster id number per face-table row (-1 = noise).
        settings: evidence space, cut, method, ``min_size``, ``k`` and model fingerprints.
    """

    ids: np.ndarray
    settings: dict[str, Any]
    noise_rows: np.ndarray | None = None
    noise_nbrs: np.ndarray | None = None
    noise_ev: np.ndarray | None = None
    shift: np.ndarray | None = None

    def matches(self, settings: Mapping[str, Any]) -> bool:
        return json.loads(json.dumps(dict(settings))) == self.settings


def settings_of(
    space: EvidenceSpace,
    threshold: float,
    min_size: int,
    k: int,
    models: Mapping[str, str],
    norm: str | None = None,
) -> dict[str, Any]:
    """The settings an update must share with the run it updates (``norm``: the cohort
    normalisation in use, :func:`norm_key`)."""
    return json.loads(
        json.dumps(
            {
                "version": STATE_VERSION,
                "models": list(space.models),
                "scales": [round(s, 9) for s in space.scales],
                "offset": round(space.offset, 9),
                "threshold": round(float(threshold), 9),
                "method": "agglomerative",
                "min_size": int(min_size),
                "k": int(k),
                "fingerprints": {m: models.get(m, "") for m in space.models},
                "norm": norm,
            }
        )
    )


def norm_key(calibration: Calibration, normalise: bool = True) -> str | None:
    """Identifies the cohort normalisation average linkage uses with ``calibration``
    (:mod:`facekit.cluster_norm`), ``None`` for raw evidence."""
    from .cluster_norm import cohort_norm

    norm = cohort_norm(calibration) if normalise else None
    return None if norm is None else f"cohort:{norm.key}:k{norm.k}:{len(norm.cohort)}"


def id_numbers(result: ClusterResult) -> np.ndarray:
    """``(n,) int64`` cluster id number per face of ``result`` (-1 = noise)."""
    out = np.full(len(result.labels), -1, np.int64)
    for c in result.clusters:
        out[c.members] = _id_number(c.id)
    return out


def save_state(
    cluster_file: str | os.PathLike[str],
    result: ClusterResult,
    settings: Mapping[str, Any],
    x: np.ndarray,
    index: Any = None,
) -> None:
    """Write the state and the kNN index beside ``cluster_file`` (atomically, each)."""
    npz, voy = state_paths(cluster_file)
    buf = io.BytesIO()
    arrays: dict[str, Any] = {
        "ids": id_numbers(result),
        "settings": np.array(json.dumps(dict(settings))),
    }
    if result.noise_edges is not None:
        rows, nbrs, ev = result.noise_edges
        arrays.update(noise_rows=rows, noise_nbrs=nbrs, noise_ev=ev)
    if result.shift is not None:
        arrays["shift"] = np.asarray(result.shift, np.float64)
    np.savez(buf, **arrays)
    data = buf.getvalue()
    write_atomic(npz, lambda tmp: Path(tmp).write_bytes(data))
    if index is None or type(index).__module__.startswith("faiss"):
        index = build_index(x, "voyager") if len(x) else None
    if index is not None:
        write_atomic(voy, lambda tmp: index.save(str(tmp)))
    else:
        voy.unlink(missing_ok=True)


def load_state(cluster_file: str | os.PathLike[str], rows: int) -> ClusterState | None:
    """The state beside ``cluster_file``, or ``None`` when missing, unreadable or stale."""
    npz, _ = state_paths(cluster_file)
    if not npz.exists():
        return None
    try:
        with np.load(npz, allow_pickle=False) as z:
            ids = np.asarray(z["ids"], np.int64)
            settings = json.loads(str(z["settings"]))
            noise: tuple[Any, Any, Any] = (
                tuple(np.asarray(z[k]) for k in ("noise_rows", "noise_nbrs", "noise_ev"))  # type: ignore[assignment]
                if "noise_rows" in z.files
                else (None, None, None)
            )
            shift = np.asarray(z["shift"], np.float64) if "shift" in z.files else None
    except Exception as exc:  # noqa: BLE001 - a damaged state means a full run, not a crash
        log.warning("%s: unreadable (%s); clustering from scratch", npz, exc)
        return None
    if ids.ndim != 1 or len(ids) != rows or not isinstance(settings, dict):
        log.warning("%s: does not match the face table; clustering from scratch", npz)
        return None
    nrows: np.ndarray | None = noise[0]
    nbrs: np.ndarray | None = noise[1]
    ev: np.ndarray | None = noise[2]
    if nrows is not None and (
        nbrs is None
        or ev is None
        or len(nrows) != len(nbrs)
        or nbrs.shape != ev.shape
        or (len(nrows) and (nrows.max() >= len(ids) or nbrs.max() >= len(ids)))
    ):
        nrows = nbrs = ev = None
    if shift is not None and shift.shape != ids.shape:
        shift = None
    return ClusterState(ids, settings, nrows, nbrs, ev, shift)


def load_index(cluster_file: str | os.PathLike[str], x_old: np.ndarray) -> Any:
    """The stored index (rebuilt from ``x_old`` when missing or of another size)."""
    _, voy = state_paths(cluster_file)
    if voy.exists():
        try:
            import voyager

            index = voyager.Index.load(str(voy))
            if len(index) == len(x_old) and index.num_dimensions == x_old.shape[1]:
                return index
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: unreadable (%s); rebuilding it", voy, exc)
    return build_index(x_old, "voyager") if len(x_old) else None


def update_clusters(
    old: Embeddings,
    state: ClusterState,
    new: Embeddings,
    calibration: Calibration,
    *,
    threshold: float,
    min_size: int = 2,
    refs: Sequence[FaceRef] | None = None,
    previous: Mapping[str, Any] | None = None,
    index: Any = None,
    k: int = DEFAULT_K,
    normalise: bool = True,
) -> tuple[ClusterResult, np.ndarray, Any]:
    """Cluster ``old`` + ``new`` faces keeping the old clusters (see the module docs).

    Args:
        old: the faces of the previous run, rows as in ``state.ids``.
        state: the previous run's :class:`ClusterState`.
        new: the faces to add.
        calibration: the same fusion as the previous run.
        threshold: the same cut as the previous run.
        min_size: smallest new cluster.
        refs: ``len(old) + len(new)`` face references (old first).
        previous: the previous cluster document (ids, persons, names, ``next_id``).
        index: the stored kNN index over the old faces (:func:`load_index`).
        k: neighbours per new face.
        normalise: cohort-normalised evidence as in
            :func:`facekit.cluster.cluster_faces` (the previous run must have used the
            same: :func:`norm_key` is part of the settings).

    Returns:
        ``(result, x, index)``: the clustering of all faces, their projected vectors, and the
        index with the new faces added (ids continue the rows).
    """
    space = EvidenceSpace.from_calibration(calibration)
    n_old, n_new = len(old), len(new)
    x_old = space.project(old.vectors) if n_old else np.zeros((0, 0), np.float32)
    x_new = space.project(new.vectors) if n_new else np.zeros((0, x_old.shape[1]), np.float32)
    x = np.concatenate([x_old, x_new]) if n_old else x_new
    n = n_old + n_new
    dims = {m: int(v.shape[1]) for m, v in (old if n_old else new).vectors.items()}
    h = _shifts(calibration, normalise, state, x, n_old, dims)
    hh = h if h is not None else np.zeros(n, np.float64)
    ea: list[np.ndarray] = []
    eb: list[np.ndarray] = []
    if n_new:
        if index is None and n_old:
            index = build_index(x_old, "voyager")
        if n_old:
            got, cos = knn_query(index, x_new, k)
            ev = np.where(got >= 0, cos * space.norm2 + space.offset, -np.inf)
            rows = np.repeat(np.arange(n_old, n, dtype=np.int64), k).reshape(n_new, k)
            keep = (got >= 0) & (ev - hh[rows] - hh[np.maximum(got, 0)] >= threshold)
            ea.append(rows[keep])
            eb.append(got[keep])
            new_nbrs, new_ev = got, ev.astype(np.float32)
        else:
            new_nbrs = np.full((n_new, 0), -1, np.int64)
            new_ev = np.zeros((n_new, 0), np.float32)
        # Old noise faces may now reach the cut with an old cluster grown by new faces: their
        # stored graph edges (or, without them, a query) are candidates too.
        noise_rows, noise_nbrs, noise_ev = old_noise_edges(state, index, x_old, space, k)
        nrows = np.repeat(noise_rows, noise_nbrs.shape[1]).reshape(noise_nbrs.shape)
        keep = (noise_nbrs >= 0) & (
            noise_ev - hh[nrows] - hh[np.maximum(noise_nbrs, 0)] >= threshold
        )
        ea.append(nrows[keep])
        eb.append(noise_nbrs[keep])
        g = knn_graph(x_new, space.offset, k=k, backend="exact" if n_new <= 20000 else "voyager")
        a, b, gev = g.edges()
        keep = gev - hh[a + n_old] - hh[b + n_old] >= threshold
        a, b = a[keep], b[keep]
        ea.append(a + n_old)
        eb.append(b + n_old)
        # Each new face's k best neighbours among old and new faces (kept for noise faces).
        both = np.concatenate([new_nbrs, np.where(g.indices >= 0, g.indices + n_old, -1)], 1)
        both_ev = np.concatenate([new_ev, g.evidence], 1)
        pick = np.argsort(-both_ev, axis=1, kind="stable")[:, :k]
        new_nbrs = np.take_along_axis(both, pick, 1)
        new_ev = np.take_along_axis(both_ev, pick, 1)
    else:
        noise_rows, noise_nbrs, noise_ev = old_noise_edges(
            state, None, x_old, space, k, query=False
        )
        new_nbrs = np.full((0, k), -1, np.int64)
        new_ev = np.zeros((0, k), np.float32)
    init = np.concatenate([state.ids, np.full(n_new, -1, np.int64)])
    prev_clusters = {str(c["id"]): c for c in (previous or {}).get("clusters", [])}
    # Clusters named as people: two different people are never merged.
    persons: dict[str, int] = {}
    person_of_id = {
        _id_number(cid): persons.setdefault(str(c["person"]), len(persons))
        for cid, c in prev_clusters.items()
        if c.get("person")
    }
    tags = (
        np.array([person_of_id.get(int(i), -1) for i in init], np.int64) if person_of_id else None
    )
    if ea:
        groups = average_linkage(
            x,
            (np.concatenate(ea), np.concatenate(eb)),
            threshold,
            space.offset,
            init=init,
            tags=tags,
            shift=h,
        )
    else:
        groups = np.where(init >= 0, init, -1 - np.arange(n))
    # A group keeps the old id most of its old faces had (ties: the lower id); groups of new
    # faces and old noise (>= min_size) get fresh ids; an id merged away is retired.
    order = _face_order(n, refs)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    next_id = max(
        [int((previous or {}).get("next_id", 1))]
        + [_id_number(c) + 1 for c in prev_clusters]
        + [int(state.ids.max(initial=0)) + 1]
    )
    uniq, inv = np.unique(groups, return_inverse=True)
    old_of_group = np.full(len(uniq), -1, np.int64)
    merged: dict[int, list[int]] = {}
    olds = np.flatnonzero(init >= 0)
    if len(olds):
        pair, cnt = np.unique(np.stack([inv[olds], init[olds]], 1), axis=0, return_counts=True)
        for (gi, oid), _c in sorted(
            zip(map(tuple, pair.tolist()), cnt.tolist(), strict=True),
            key=lambda t: (t[0][0], -t[1], t[0][1]),
        ):
            if old_of_group[gi] < 0:
                old_of_group[gi] = oid
            else:
                merged.setdefault(int(old_of_group[gi]), []).append(int(oid))
    size = np.bincount(inv, minlength=len(uniq))
    first = np.full(len(uniq), n, np.int64)
    by_rank = np.argsort(rank)[::-1]
    first[inv[by_rank]] = rank[by_rank]  # the last write per group is its earliest face
    fresh = [
        gi
        for gi in np.argsort(first, kind="stable")
        if old_of_group[gi] < 0 and size[gi] >= min_size
    ]
    for gi in fresh:
        old_of_group[gi] = next_id
        next_id += 1
    idnum = old_of_group[inv]
    groups_, med, coh = medoids(x, idnum, space.offset, h)
    clusters = []
    mrows = np.flatnonzero(idnum >= 0)
    mrows = mrows[np.lexsort((rank[mrows], idnum[mrows]))]
    bounds = np.flatnonzero(np.diff(idnum[mrows])) + 1
    for members in np.split(mrows, bounds) if len(mrows) else []:
        gi = int(np.searchsorted(groups_, idnum[members[0]]))
        cid = f"c-{int(idnum[members[0]]):04d}"
        c = Cluster(cid, members, int(med[gi]), float(coh[gi]))
        old_rec = prev_clusters.get(cid)
        absorbed = merged.get(int(idnum[members[0]]))
        if absorbed:
            c.extra["merged"] = sorted(f"c-{i:04d}" for i in absorbed)
            if old_rec is not None and not old_rec.get("person"):
                # Take the name of an absorbed cluster that had one (same person by the tags).
                named = [prev_clusters.get(f"c-{i:04d}") or {} for i in absorbed]
                old_rec = next((r for r in named if r.get("person")), old_rec)
        if old_rec is not None:
            c.person, c.name = old_rec.get("person"), old_rec.get("name")
            for key in ("enrolled", "excluded"):
                if key in old_rec:
                    c.extra[key] = old_rec[key]
        clusters.append(c)
    clusters.sort(key=lambda c: (-c.size, int(rank[c.members[0]])))
    labels = np.full(n, -1, np.int64)
    for pos, c in enumerate(clusters):
        labels[c.members] = pos
    noise = np.flatnonzero(labels < 0)
    noise = noise[np.argsort(rank[noise], kind="stable")]
    result = ClusterResult(
        labels,
        clusters,
        noise,
        "agglomerative",
        float(threshold),
        list(refs) if refs is not None else None,
        next_id=next_id,
        models={**old.fingerprints, **new.fingerprints},
    )
    result.shift = h
    # Graph edges of the faces that are noise now, for the next update.
    kk = max(noise_nbrs.shape[1], new_nbrs.shape[1], 1)
    nb_all = np.full((len(noise_rows) + n_new, kk), -1, np.int64)
    ev_all = np.full((len(noise_rows) + n_new, kk), -np.inf, np.float32)
    nb_all[: len(noise_rows), : noise_nbrs.shape[1]] = noise_nbrs
    ev_all[: len(noise_rows), : noise_ev.shape[1]] = noise_ev
    nb_all[len(noise_rows) :, : new_nbrs.shape[1]] = new_nbrs
    ev_all[len(noise_rows) :, : new_ev.shape[1]] = new_ev
    rows_all = np.concatenate([noise_rows, np.arange(n_old, n, dtype=np.int64)])
    is_noise = np.isin(rows_all, result.noise)
    result.noise_edges = (rows_all[is_noise], nb_all[is_noise], ev_all[is_noise])
    if n_new and index is not None:
        index.add_items(x_new, ids=np.arange(n_old, n))
    return result, x, index


def _shifts(
    calibration: Calibration,
    normalise: bool,
    state: ClusterState,
    x: np.ndarray,
    n_old: int,
    dims: Mapping[str, int],
) -> np.ndarray | None:
    """Per-face cohort shifts of the old (stored, else recomputed) and new faces, or ``None``."""
    from .cluster_norm import cohort_norm

    norm = cohort_norm(calibration, dims) if normalise else None
    if norm is None:
        return None
    old = state.shift
    if old is None or len(old) != n_old:
        return norm.shift(x)
    return np.concatenate([np.asarray(old, np.float64), norm.shift(x[n_old:])])


def old_noise_edges(
    state: ClusterState,
    index: Any,
    x_old: np.ndarray,
    space: EvidenceSpace,
    k: int,
    *,
    query: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, (m, k) neighbour rows, (m, k) evidence)`` of the old noise faces."""
    noise = np.flatnonzero(state.ids < 0)
    if state.noise_rows is not None and state.noise_nbrs is not None and state.noise_ev is not None:
        pos = {int(r): i for i, r in enumerate(state.noise_rows.tolist())}
        if all(int(r) in pos for r in noise.tolist()):
            sel = np.array([pos[int(r)] for r in noise.tolist()], np.int64)
            nbrs = np.asarray(state.noise_nbrs, np.int64)
            evs = np.asarray(state.noise_ev, np.float32)
            if nbrs.ndim != 2 or evs.shape != nbrs.shape:
                nbrs = np.full((len(state.noise_rows), 0), -1, np.int64)
                evs = np.zeros(nbrs.shape, np.float32)
            return noise, nbrs[sel], evs[sel]
    if not query or index is None or len(noise) == 0 or len(x_old) < 2:
        return noise, np.full((len(noise), 0), -1, np.int64), np.zeros((len(noise), 0), np.float32)
    got, cos = knn_query(index, x_old[noise], k + 1)
    ev = np.where(got >= 0, cos * space.norm2 + space.offset, -np.inf).astype(np.float32)
    got = np.where(got == noise[:, None], -1, got)
    ev = np.where(got < 0, -np.inf, ev).astype(np.float32)
    return noise, got, ev
