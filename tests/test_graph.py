"""facekit.graph: evidence as an inner product, kNN graphs, average linkage on the graph."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from facekit.calibration import Calibration
from facekit.cluster import cluster_faces
from facekit.graph import (
    EvidenceSpace,
    average_linkage,
    knn_graph,
    medoids,
)
from facekit.types import Embeddings


def people(
    counts: list[int], dim: int = 128, *, seed: int = 0, spread: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(counts), dim))
    truth = np.repeat(np.arange(len(counts)), counts)
    v = centres[truth] / np.linalg.norm(centres[truth], axis=1, keepdims=True)
    v = v + rng.normal(scale=spread, size=v.shape)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32), truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(int(x), int(y)) for x, y in zip(a, b, strict=True)}
    return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


def test_fused_evidence_is_an_affine_inner_product_for_several_models():
    a, _ = people([3, 4], 128, seed=1)
    b, _ = people([3, 4], 512, seed=2)
    cal = Calibration.default(["dlib", "mobilefacenet"], {"dlib": 2.0, "mobilefacenet": 1.0})
    space = EvidenceSpace.from_calibration(cal)
    x = space.project({"dlib": a, "mobilefacenet": b})
    want = cal.pairwise_evidence({"dlib": a, "mobilefacenet": b}, {"dlib": a, "mobilefacenet": b})
    np.testing.assert_allclose(space.offset + x @ x.T, want, atol=1e-3)
    np.testing.assert_allclose(np.einsum("ij,ij->i", x, x), space.norm2, rtol=1e-5)


def test_exact_graph_is_exact_and_hnsw_graphs_find_the_neighbours():
    x, _ = people([30] * 40, seed=3, spread=0.3)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    want = np.argsort(-sims, axis=1)[:, :8]
    g = knn_graph(x, 0.0, k=8, backend="exact")
    assert (np.sort(g.indices, 1) == np.sort(want, 1)).mean() > 0.999
    np.testing.assert_allclose(g.evidence, np.take_along_axis(sims, g.indices, 1), atol=1e-5)
    assert not (g.indices == np.arange(len(x))[:, None]).any()  # never its own neighbour
    backends = ["voyager"]
    try:
        import faiss  # noqa: F401

        backends.append("faiss")
    except ImportError:
        pass
    for backend in backends:
        h = knn_graph(x, 0.0, k=8, backend=backend)
        assert not (h.indices == np.arange(len(x))[:, None]).any()
        recall = np.mean([len(set(r) & set(w)) / 8 for r, w in zip(h.indices, want, strict=True)])
        assert recall > 0.95, (backend, recall)
        np.testing.assert_allclose(h.evidence, np.take_along_axis(sims, h.indices, 1), atol=1e-4)


def test_graph_average_linkage_matches_dense_average_linkage():
    """Reciprocal-nearest-neighbour rounds on the graph = sklearn's greedy average linkage."""
    from sklearn.cluster import AgglomerativeClustering

    cal = Calibration.default(["dlib"])
    space = EvidenceSpace.from_calibration(cal)
    rng = np.random.default_rng(4)
    # dlib-like: people 0.045 apart inside, strangers far; plus singletons.
    base, truth = people([12, 9, 7, 5, 3, 2, 1, 1, 1, 1], seed=5, spread=0.07)
    x = space.project({"dlib": base})
    thr = 2.75
    ev = space.offset + x.astype(np.float64) @ x.T.astype(np.float64)
    top = ev.max() + 1
    dense = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=top - thr
    ).fit_predict(np.maximum(top - ev, 0) * (1 - np.eye(len(x))))
    g = knn_graph(x, space.offset, k=16, backend="exact")
    a, b, _ = g.edges(cut=thr)
    got = average_linkage(x, (a, b), thr, space.offset)
    assert same_partition(dense, got)
    assert len(set(got.tolist())) >= 6  # the cut really separates people
    del rng, truth


def test_medoid_and_cohesion_are_exact():
    x, truth = people([5, 4], seed=6, spread=0.1)
    groups, med, coh = medoids(x, truth, 0.5)
    for gi, g in enumerate(groups):
        rows = np.flatnonzero(truth == g)
        sub = x[rows] @ x[rows].T
        np.fill_diagonal(sub, 0)
        best = rows[int(np.argmax(sub.sum(1)))]
        assert med[gi] == best
        assert coh[gi] == pytest.approx(
            0.5 + sub[rows.tolist().index(best)].sum() / (len(rows) - 1), abs=1e-4
        )


def test_multi_model_tables_cluster_on_fused_evidence():
    a, truth = people([6, 6, 6], 128, seed=7, spread=0.015)
    b, _ = people([6, 6, 6], 512, seed=8, spread=0.02)
    b[:6] = b[6:12]  # model 2 cannot tell people 0 and 1 apart
    emb = Embeddings({"dlib": a, "mobilefacenet": b})
    one = cluster_faces(Embeddings({"mobilefacenet": b}), Calibration.default(["mobilefacenet"]))
    fused = cluster_faces(
        emb, Calibration.default(["dlib", "mobilefacenet"], {"dlib": 3.0, "mobilefacenet": 1.0})
    )
    assert len(one.clusters) < 3  # alone, model 2 merges two people
    assert len(fused.clusters) == 3 and same_partition(fused.labels, truth)


@pytest.mark.slow
def test_memory_grows_with_n_times_k_not_n_squared():
    """12,000 faces through the approximate index: a dense matrix alone would be 1.15 GB.

    People are drawn tight enough (same-person cosine distance ~0.03) to stay whole under the
    default cut at 12,000 faces, which is higher than at a few hundred (cluster_threshold)."""
    x, truth = people([6] * 2000, seed=9, spread=0.015)
    emb = Embeddings({"dlib": x})
    tracemalloc.start()
    res = cluster_faces(emb, Calibration.default(["dlib"]), backend="voyager")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 150e6, peak
    assert len(res.clusters) >= 1900
    assert same_partition(res.labels[res.labels >= 0], truth[res.labels >= 0])


def test_average_linkage_with_a_per_face_shift_matches_dense_average_linkage():
    """With a per-face shift h (cohort normalisation) the pair evidence is offset + x.x - h_a - h_b,
    and the linkage on the graph still equals greedy average linkage on that dense matrix."""
    from sklearn.cluster import AgglomerativeClustering

    space = EvidenceSpace.from_calibration(Calibration.default(["dlib"]))
    # dlib-like people (same-person evidence about 3-5) with per-face shifts up to 1.5
    base, _ = people([12, 9, 7, 5, 3, 2, 1, 1, 1, 1], seed=5, spread=0.022)
    x = space.project({"dlib": base})
    h = np.random.default_rng(9).uniform(0.0, 1.5, len(x))
    thr = 2.0
    ev = space.offset + x.astype(np.float64) @ x.T.astype(np.float64) - h[:, None] - h[None, :]
    top = ev.max() + 1
    dense = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=top - thr
    ).fit_predict(np.maximum(top - ev, 0) * (1 - np.eye(len(x))))
    g = knn_graph(x, space.offset, k=16, backend="exact")
    a, b, e = g.edges()
    keep = e - h[a] - h[b] >= thr
    got = average_linkage(x, (a[keep], b[keep]), thr, space.offset, shift=h)
    assert same_partition(dense, got)
    assert 3 <= len(set(got.tolist())) < len(x) - 5  # real groups, not all singletons
    a0, b0, _ = g.edges(cut=thr)
    unshifted = average_linkage(x, (a0, b0), thr, space.offset)
    assert not same_partition(got, unshifted)  # the shift really changes the result here
    # medoids and cohesion with the shift are exact too
    groups, med, coh = medoids(x, got, space.offset, h)
    for gi, grp in enumerate(groups):
        rows = np.flatnonzero(got == grp)
        if len(rows) < 2:
            continue
        sub = ev[np.ix_(rows, rows)].copy()
        np.fill_diagonal(sub, 0)
        best = rows[int(np.argmax(sub.sum(1)))]
        assert med[gi] == best
        assert coh[gi] == pytest.approx(sub[rows.tolist().index(best)].sum() / (len(rows) - 1))
