"""Per-face score normalisation for clustering against a fixed cohort (adaptive S-norm).

Some faces resemble many people ("hub" faces: blur, profile, glasses, a common look): their
*different-person* evidence runs high, and these are the faces that average linkage merges
into other people's clusters; the cut has to rise for them and then splits everybody else.
Score normalisation (Auckenthaler et al. 2000; adaptive S-norm, Matějka et al. 2017) measures
each face's own impostor level against a *cohort* of faces of other people and subtracts it.
Here only the excess over a typical face is subtracted (a penalty for hubs, never a bonus):

    mu_i = mean of the K highest evidences of face i against the cohort, leaving out
           evidences above ``cap`` (a same-person match, see below)
    h_i  = max(mu_i - floor, 0) / 2        (floor: the median mu_i of the tune faces)
    normalised(a, b) = evidence(a, b) - h_a - h_b

so for at least half of all faces nothing changes, the evidence keeps its units (a cut near
the former raw one), and a face unlike every cohort face (an odd detection, an unusual
model input) is never pushed *toward* others. On the tune folds the floor cost nothing
against the full shift (dlib F1 0.941 with it, 0.938 without, with lfw-singles; measured
with a cohort of every fold-0 photo).

The cohort is fixed and shipped with facekit (``facekit/data/cohort.npz``: one face each of
the 525 people of fold 0 of lfw-dev, lfw-few and lfw-singles; ``benchmarks/make_cohort.py``).
It is *not* drawn from the faces being clustered, so a person with many photos in the
collection does not raise their own ``mu`` (a cohort taken from the collection would contain
their own faces and split them). A person who *is* in the cohort (a public figure of LFW) has
one face there, and its evidence is left out when it reaches ``cap``, the raw evidence that a
share 1e-5 of different-person pairs reaches: with every cohort face of such a person and no
cap, the fold-0 people themselves clustered at pairwise F1 0.02-0.27 (all split); with one
face each and the cap, at 0.954 (0.931 with raw evidence).

Only the mean of the top ``K`` is used, not the spread: on the tune folds dividing by the
cohort's standard deviation helped without people of one photo and hurt with them.

**Why it fits the linkage.** The shift is additive per face, so the average normalised
evidence of two groups is still exact from sums: ``offset + S_A . S_B / (|A| |B|) -
H_A / |A| - H_B / |B|`` with ``H`` the group's sum of ``h_i``
(:func:`facekit.graph.average_linkage` with ``shift``). Memory: one float per face; cost:
one product with the cohort per face (``O(n * cohort)``), no ``n x n`` matrix.

**The cut** is the same per-face promise as without normalisation
(:func:`facekit.cluster.cluster_threshold`), from the upper tail of *normalised*
different-person pair evidence measured on the tune folds 1-2 (fold 0 is the cohort) with
lfw-singles (``_cohort_defaults.TAILS``). Normalisation is used when every model of the
calibration has cohort embeddings of the same dimension and the ensemble has a measured
normalised tail with the default calibration (equal weights, default impostor statistics);
otherwise (another model, custom weights, a database's measured calibration with
``--suggest``) clustering uses raw evidence as before.

Library code: no printing.
"""

from __future__ import annotations

import functools
import io
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from . import _cohort_defaults as _defaults
from .calibration import DEFAULT_IMPOSTOR, Calibration, Tail

log = logging.getLogger(__name__)

__all__ = [
    "COHORT_K",
    "PAIRS_PER_FALSE_MERGE",
    "CohortNorm",
    "cohort_norm",
    "cohort_vectors",
]

#: Cohort evidences averaged per face (the top ``K`` of 525). F1 on the tune folds moved by
#: less than 0.005 over K 1-20 (cohort of every fold-0 photo) and K 5 or 10 (this one).
COHORT_K: int = int(_defaults.K)
#: Different-person pairs above the normalised cut per face placed in another person's
#: cluster, for the per-face promise (:func:`facekit.cluster.cluster_threshold`). Chosen on
#: the tune folds 1-2 with lfw-singles: the largest of 10, 6, 5, 4, 3 that kept the measured
#: share of merged faces within the 1% promise for dlib and dlib+mobilefacenet (10 gave
#: 1.17% with dlib, 6 gave 0.84%; docs/accuracy.md).
PAIRS_PER_FALSE_MERGE: float = 6.0
#: Rows per block when scoring faces against the cohort (bounded temporaries, ~70 MB).
CHUNK = 16384


@functools.lru_cache(maxsize=1)
def _cohort_file() -> dict[str, np.ndarray]:
    try:
        data = resources.files("facekit").joinpath("data/cohort.npz").read_bytes()
    except OSError as exc:  # removed on purpose (docs/models.md): raw evidence, as without one
        log.info("no clustering cohort (%s): clustering on raw evidence", exc)
        return {}
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {m: np.asarray(z[m], np.float32) for m in z.files}


def cohort_vectors(model: str) -> np.ndarray | None:
    """``(c, dim) float32`` L2-normalised cohort embeddings of ``model``, or ``None``."""
    v = _cohort_file().get(model)
    if v is None:
        return None
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class CohortNorm:
    """Per-face shifts against the cohort and the normalised cut.

    Attributes:
        key: ensemble key (``"dlib"``, ``"dlib+mobilefacenet"``), stored in incremental state.
        cohort: ``(c, D)`` cohort faces projected into the calibration's evidence space.
        offset: the evidence space's offset (evidence = ``offset + x_a . x_b``).
        k: cohort evidences averaged per face.
        floor: ``mu`` below which a face is not shifted (the median on the tune faces).
        cap: cohort evidence at or above which a cohort face is taken for the same person
            and left out.
        tail: upper tail of normalised different-person pair evidence.
    """

    key: str
    cohort: np.ndarray
    offset: float
    k: int
    floor: float
    cap: float
    tail: Tail

    def mu(self, x: np.ndarray) -> np.ndarray:
        """``(n,) float64``: the mean of each face's top-``k`` evidence against the cohort
        (rows of ``x`` projected like the cohort)."""
        n = len(x)
        out = np.zeros(n, np.float64)
        k = min(self.k, len(self.cohort))
        if not n or not k:
            return out
        ct = np.ascontiguousarray(self.cohort.T, np.float32)
        for lo in range(0, n, CHUNK):
            s = np.asarray(x[lo : lo + CHUNK], np.float32) @ ct
            s[s >= self.cap - self.offset] = -np.inf  # a same-person match is no cohort
            top = np.partition(s, s.shape[1] - k, axis=1)[:, -k:]
            out[lo : lo + CHUNK] = top.mean(axis=1, dtype=np.float64)
        return out + self.offset

    def shift(self, x: np.ndarray) -> np.ndarray:
        """``(n,) float64`` ``h_i = max(mu_i - floor, 0) / 2`` (>= 0)."""
        return 0.5 * np.maximum(self.mu(x) - self.floor, 0.0)

    def threshold(self, false_merge_rate: float, faces: int) -> float:
        """The normalised cut keeping ``false_merge_rate`` of ``faces`` faces out of other
        people's clusters (per-pair rate ``rate * PAIRS_PER_FALSE_MERGE / (faces - 1)``)."""
        n = max(int(faces), 2)
        pair_rate = min(float(false_merge_rate) * PAIRS_PER_FALSE_MERGE / (n - 1), 0.5)
        return self.tail.isf(pair_rate)


def _is_default(calibration: Calibration) -> bool:
    models = calibration.models
    w = 1.0 / max(len(models), 1)
    for m in models:
        if m not in DEFAULT_IMPOSTOR or not np.allclose(
            calibration.impostor[m], DEFAULT_IMPOSTOR[m], rtol=0, atol=1e-9
        ):
            return False
        if not math.isclose(float(calibration.weights[m]), w, rel_tol=0, abs_tol=1e-9):
            return False
    return True


def cohort_norm(
    calibration: Calibration, dims: Mapping[str, int] | None = None
) -> CohortNorm | None:
    """The normalisation for ``calibration``, or ``None`` when it has none (see module docs).

    Args:
        calibration: evidence fusion.
        dims: embedding dimension per model of the faces to cluster (checked against the
            cohort's; ``None``: not checked).
    """
    from .graph import EvidenceSpace

    key = "+".join(calibration.models)
    tail: Mapping[str, Any] | None = _defaults.TAILS.get(key)
    floor = _defaults.FLOORS.get(key)
    cap = _defaults.CAPS.get(key)
    if tail is None or floor is None or cap is None or not _is_default(calibration):
        return None
    vecs = {m: cohort_vectors(m) for m in calibration.models}
    for m, v in vecs.items():
        if v is None or (dims is not None and int(dims.get(m, -1)) != v.shape[1]):
            return None
    space = EvidenceSpace.from_calibration(calibration)
    cohort = space.project(vecs)  # type: ignore[arg-type]
    return CohortNorm(
        key, cohort, space.offset, COHORT_K, float(floor), float(cap), Tail.from_dict(tail)
    )
