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
(see :func:`facekit.index.calibrate`), else from the defaults below, measured on
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
