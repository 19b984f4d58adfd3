"""Turning cosine distances into evidence, decisions and 0-100 confidences.

Each model's distances live on their own scale (dlib's different-person pairs sit near 0.17,
MobileFaceNet's near 0.98), so they are first normalised by the statistics of
*different-person* (impostor) pairs:

    z_m = (mu_m - d_m) / sigma_m          # how many impostor standard deviations closer

and fused with the ensemble weights, ``evidence = sum_m w_m * z_m``. Larger evidence means
more likely the same person. A face is named when its best evidence reaches ``threshold``;
the confidence is a logistic curve that is 50 at the threshold and 95 at the typical
evidence of same-person pairs (``genuine``).

The statistics come from the user's own gallery when ``build-index`` can measure them
(see :func:`calibrate`), else from the defaults below, measured on
``../shared/datasets/lfw-dev`` (395 photos, 79 people, one face each; benchmarks/calibrate_defaults.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Calibration",
    "DEFAULT_IMPOSTOR",
    "DEFAULT_GENUINE_EVIDENCE",
    "DEFAULT_THRESHOLD",
    "calibrate",
    "cosine_distances",
]

#: model -> (mean, standard deviation) of the cosine distance of different-person pairs.
DEFAULT_IMPOSTOR: dict[str, tuple[float, float]] = {
    "dlib": (0.162, 0.034),
    "mobilefacenet": (0.984, 0.104),
    # Not measurable here (weights not fetchable offline); typical published values.
    "sface": (0.95, 0.10),
    "facenet512": (0.95, 0.12),
    "arcface": (0.98, 0.08),
}
#: Typical evidence of same-person pairs (median z), for the confidence curve's slope.
DEFAULT_GENUINE_EVIDENCE = 3.5
#: Decision threshold on fused evidence used when a gallery is too small to calibrate.
DEFAULT_THRESHOLD = 3.09


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(na, nb)`` cosine distances ``1 - a.b`` between L2-normalised rows."""
    return 1.0 - np.asarray(a, np.float32) @ np.asarray(b, np.float32).T


@dataclass
class Calibration:
    """Per-model normalisation, fusion weights and the decision threshold.

    Attributes:
        impostor: model -> ``(mu, sigma)`` of different-person cosine distances.
        weights: model -> fusion weight (sums to 1).
        threshold: evidence at or above which a face is named.
        genuine: typical (median) evidence of same-person comparisons; maps to confidence 95.
        source: ``"gallery"`` (measured on the user's gallery) or ``"default"``.
        stats: measurement details, stored in the database manifest.
    """

    impostor: dict[str, tuple[float, float]]
    weights: dict[str, float]
    threshold: float = DEFAULT_THRESHOLD
    genuine: float = DEFAULT_GENUINE_EVIDENCE
    source: str = "default"
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def default(
        cls, models: list[str] | tuple[str, ...], weights: Mapping[str, float] | None = None
    ) -> Calibration:
        """Defaults for ``models`` (measured on lfw-dev; see module docs)."""
        w = dict(weights) if weights else {m: 1.0 for m in models}
        total = sum(w.values()) or 1.0
        return cls(
            {m: DEFAULT_IMPOSTOR.get(m, (0.9, 0.1)) for m in models},
            {m: w[m] / total for m in models},
        )

    @property
    def models(self) -> list[str]:
        return list(self.weights)

    def z(self, model: str, distances: np.ndarray) -> np.ndarray:
        """Impostor-normalised similarity of one model's cosine distances."""
        mu, sd = self.impostor[model]
        return (mu - np.asarray(distances, np.float64)) / max(sd, 1e-6)

    def evidence(self, distances: Mapping[str, np.ndarray]) -> np.ndarray:
        """Fused evidence from per-model distance arrays of equal shape."""
        total = None
        for m, w in self.weights.items():
            part = w * self.z(m, distances[m])
            total = part if total is None else total + part
        assert total is not None
        return total

    def pairwise_evidence(
        self, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """``(na, nb)`` fused evidence between two sets of embeddings (model -> ``(n, dim)``)."""
        return self.evidence({m: cosine_distances(a[m], b[m]) for m in self.weights})

    def confidence(self, evidence: np.ndarray | float) -> np.ndarray:
        """0-100: 50 at ``threshold``, 95 at ``genuine`` (logistic in evidence)."""
        span = max(self.genuine - self.threshold, 0.5)
        k = np.log(19.0) / span
        return 100.0 / (1.0 + np.exp(-k * (np.asarray(evidence, np.float64) - self.threshold)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["impostor"] = {m: list(v) for m, v in self.impostor.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        return cls(
            {m: (float(v[0]), float(v[1])) for m, v in d["impostor"].items()},
            {m: float(v) for m, v in d["weights"].items()},
            float(d["threshold"]),
            float(d["genuine"]),
            str(d.get("source", "gallery")),
            dict(d.get("stats", {})),
        )


def calibrate(
    persons: np.ndarray,
    vectors: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    *,
    max_pairs: int = 400_000,
    max_probes: int = 4000,
    stranger_cost: float = 2.0,
    seed: int = 0,
) -> Calibration:
    """Measure the calibration on the gallery itself.

    1. Per model, the mean and standard deviation of cosine distances between faces of
       *different* people (impostor pairs; sampled when there are more than ``max_pairs``).
    2. A leave-one-out simulation of open-set identification on the fused evidence: each
       gallery face is a probe; its best match among its own person's other faces is a
       "genuine" score, its best match among everybody else a "stranger" score (as if its
       person were not enrolled).
    3. The threshold minimises ``missed genuine + stranger_cost * strangers named`` on that
       simulation (naming the wrong person is worse than saying "unknown").

    Falls back to :meth:`Calibration.default` (documented defaults) when the gallery has fewer
    than 3 people or too few faces; ``Calibration.source`` says which was used.
    """
    models = list(weights)
    persons = np.asarray(persons)
    n = len(persons)
    cal = Calibration.default(models, weights)
    uniq, counts = np.unique(persons, return_counts=True)
    if n == 0:
        return cal
    rng = np.random.default_rng(seed)
    # --- impostor statistics per model
    if len(uniq) >= 2:
        total_pairs = n * (n - 1) // 2
        if total_pairs <= max_pairs:
            iu = np.triu_indices(n, 1)
            a, b = iu
        else:
            a = rng.integers(0, n, max_pairs)
            b = rng.integers(0, n, max_pairs)
        diff = persons[a] != persons[b]
        a, b = a[diff], b[diff]
        if len(a) >= 50:
            for m in models:
                v = vectors[m]
                d = 1.0 - np.einsum("ij,ij->i", v[a], v[b])
                cal.impostor[m] = (float(d.mean()), float(max(d.std(), 1e-4)))
            cal.stats["impostor_pairs"] = int(len(a))
    # --- leave-one-out open-set simulation (on at most `max_probes` probe faces, compared in
    # blocks with every gallery face, so memory stays bounded for large galleries)
    if len(uniq) < 3 or (counts >= 2).sum() < 2:
        cal.stats["note"] = "gallery too small for leave-one-out; default threshold"
        cal.source = "default" if "impostor_pairs" not in cal.stats else "gallery-impostor"
        return cal
    probes = np.arange(n) if n <= max_probes else np.sort(rng.choice(n, max_probes, replace=False))
    all_vecs = {m: vectors[m] for m in models}
    genuine_l, stranger_l = [], []
    for start in range(0, len(probes), 512):
        idx = probes[start : start + 512]
        ev = cal.pairwise_evidence({m: vectors[m][idx] for m in models}, all_vecs)
        ev[np.arange(len(idx)), idx] = -np.inf  # not against itself
        same = persons[idx][:, None] == persons[None, :]
        genuine_l.append(np.where(same, ev, -np.inf).max(1))
        stranger_l.append(np.where(~same, ev, -np.inf).max(1))
    genuine = np.concatenate(genuine_l)
    stranger = np.concatenate(stranger_l)
    genuine = genuine[np.isfinite(genuine)]
    stranger = stranger[np.isfinite(stranger)]
    if len(genuine) < 30 or len(stranger) < 30:
        # Too few comparisons to place a threshold reliably: keep the documented default.
        cal.stats["note"] = (
            f"only {len(genuine)} genuine / {len(stranger)} stranger comparisons; default threshold"
        )
        cal.source = "default" if "impostor_pairs" not in cal.stats else "gallery-impostor"
        return cal
    cands = np.unique(np.concatenate([genuine, stranger]))
    cands = np.concatenate([cands, [cands.max() + 1e-6]])
    miss = np.searchsorted(np.sort(genuine), cands, side="left") / len(genuine)
    named = 1.0 - np.searchsorted(np.sort(stranger), cands, side="left") / len(stranger)
    cost = miss + stranger_cost * named
    best = np.flatnonzero(cost == cost.min())
    # several thresholds tie: take the middle of the tied range (margin on both sides)
    lo, hi = cands[best[0]], cands[best[-1]]
    below = cands[cands < lo]
    lo_edge = below.max() if len(below) else lo
    threshold = float((lo_edge + hi) / 2) if best[-1] == best[0] else float((lo + hi) / 2)
    cal.threshold = threshold
    cal.genuine = float(np.median(genuine))
    cal.source = "gallery"
    cal.stats.update(
        loo_genuine=int(len(genuine)),
        loo_strangers=int(len(stranger)),
        loo_genuine_named=float(np.mean(genuine >= threshold)),
        loo_strangers_named=float(np.mean(stranger >= threshold)),
    )
    return cal
