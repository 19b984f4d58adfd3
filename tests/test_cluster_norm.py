"""facekit.cluster_norm: per-face cohort normalisation of clustering evidence."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import pairwise_scores
from facekit.calibration import Calibration
from facekit.cluster import cluster_faces, normalisation
from facekit.cluster_norm import CohortNorm, cohort_norm, cohort_vectors
from facekit.graph import EvidenceSpace
from facekit.types import Embeddings

CAL = Calibration.default(["dlib"])


def test_the_cohort_is_shipped_for_the_default_models():
    for model, dim in (("dlib", 128), ("mobilefacenet", 128)):
        v = cohort_vectors(model)
        assert v is not None and v.shape[1] == dim and 400 < len(v) < 1000
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert cohort_vectors("sface") is None


def test_without_the_cohort_file_clustering_uses_raw_evidence(tmp_path, monkeypatch):
    """docs/models.md: deleting the shipped cohort is allowed; clustering then works on raw
    evidence, as for models without a cohort."""
    import facekit.cluster_norm as cn

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 128))
    vec = np.repeat(centres, 4, axis=0) + 0.15 * rng.normal(size=(24, 128))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    emb = Embeddings({"dlib": vec.astype(np.float32)})
    with_cohort = cluster_faces(emb, CAL)
    monkeypatch.setattr(cn.resources, "files", lambda pkg: tmp_path)  # an empty package
    cn._cohort_file.cache_clear()
    try:
        assert cohort_vectors("dlib") is None and cohort_norm(CAL) is None
        raw = cluster_faces(emb, CAL)
        assert len(raw.labels) == 24
        assert raw.threshold != with_cohort.threshold  # the raw-evidence cut
    finally:
        cn._cohort_file.cache_clear()


def test_normalisation_only_where_its_cut_was_measured():
    assert cohort_norm(CAL) is not None
    assert cohort_norm(Calibration.default(["dlib", "mobilefacenet"])) is not None
    # custom weights, a gallery's impostor statistics, a model without cohort: raw evidence
    assert (
        cohort_norm(Calibration.default(["dlib", "mobilefacenet"], {"dlib": 3, "mobilefacenet": 1}))
        is None
    )
    gallery = Calibration({"dlib": (0.17, 0.035)}, {"dlib": 1.0})
    assert cohort_norm(gallery) is None
    assert cohort_norm(Calibration.default(["sface"])) is None
    assert cohort_norm(CAL, {"dlib": 64}) is None  # other embedding dimension
    emb = Embeddings({"dlib": np.zeros((3, 128), np.float32)})
    assert normalisation(CAL, emb) is not None
    assert normalisation(CAL, emb, method="hdbscan") is None
    assert normalisation(CAL, emb, normalise=False) is None


def test_shift_penalises_hubs_only_and_ignores_same_person_cohort_faces():
    norm = cohort_norm(CAL)
    assert norm is not None
    space = EvidenceSpace.from_calibration(CAL)
    cohort = cohort_vectors("dlib")
    assert cohort is not None
    # Faces unlike every cohort face (random directions) are never pushed toward others.
    rng = np.random.default_rng(0)
    odd = rng.normal(size=(50, 128))
    odd /= np.linalg.norm(odd, axis=1, keepdims=True)
    assert np.all(norm.shift(space.project({"dlib": odd.astype(np.float32)})) == 0)
    # A cohort face itself (a person who is in the cohort): its own entry (evidence far above
    # the cap) is left out, so its level is the one measured against the other cohort faces.
    x = space.project({"dlib": cohort[:40]})
    without_self = []
    for i in range(40):
        rest = np.delete(norm.cohort, i, axis=0)
        other = CohortNorm(norm.key, rest, norm.offset, norm.k, norm.floor, norm.cap, norm.tail)
        without_self.append(other.mu(x[i : i + 1])[0])
    np.testing.assert_allclose(norm.mu(x), without_self, rtol=1e-5)
    raw_top = (norm.offset + x @ norm.cohort.T).max(1)
    assert np.all(raw_top > norm.cap)  # the self match would otherwise dominate
    # Shifts are >= 0 and 0 for faces below the floor; about half of real faces are shifted.
    h = norm.shift(space.project({"dlib": cohort}))
    assert np.all(h >= 0) and 0.2 < np.mean(h > 0) < 0.8


def test_the_cut_keeps_the_per_face_promise_scaling():
    norm = cohort_norm(CAL)
    assert norm is not None
    cuts = [norm.threshold(0.01, n) for n in (100, 1_000, 10_000, 1_000_000)]
    assert cuts == sorted(cuts) and cuts[0] < cuts[-1]
    assert norm.threshold(0.003, 1000) > norm.threshold(0.01, 1000)
    # same units as raw evidence: near the raw cut at the same size
    from facekit.cluster import cluster_threshold

    assert abs(norm.threshold(0.01, 2000) - cluster_threshold(0.01, CAL, 2000)) < 0.6


# --------------------------------------------------------------------------- real embeddings
CACHED = Path(os.environ.get("FACEKIT_LFW_DEV_TABLE", "/work/cache/lfw-dev.dlib.parquet"))


def _pairwise(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    p, _, f1 = pairwise_scores(truth, pred)
    return p, f1


def test_normalisation_helps_dlib_on_lfw_dev_people_outside_the_cohort():
    """lfw-dev people of folds 1-4 (fold 0 is the cohort), one face per photo: precision stays
    >= 0.99 and F1 is higher than on raw evidence (at each method's own default cut)."""
    if not CACHED.is_file():
        pytest.skip(f"{CACHED} not found: the lfw-dev embedding cache (facekit embed lfw-dev)")
    from facekit.facetable import FaceTable

    table = FaceTable.read(CACHED)
    f = table.frame
    first = ~f.duplicated("source").to_numpy()  # one face per photo (the first listed)
    person = np.array([Path(s).parent.name for s in f.source])
    fold = np.array([int(hashlib.sha256(p.encode()).hexdigest(), 16) % 5 for p in person])
    keep = first & (fold != 0)
    emb = table.embeddings()
    emb = Embeddings({"dlib": emb.vectors["dlib"][keep]})
    truth = np.unique(person[keep], return_inverse=True)[1]
    p_norm, f_norm = _pairwise(truth, cluster_faces(emb, CAL).labels)
    p_raw, f_raw = _pairwise(truth, cluster_faces(emb, CAL, normalise=False).labels)
    assert p_norm >= 0.99
    print(
        f"lfw-dev folds 1-4: normalised P {p_norm:.3f} F1 {f_norm:.3f}; raw P {p_raw:.3f} F1 {f_raw:.3f}"
    )
    assert f_norm > f_raw + 0.005, (f_norm, f_raw)
