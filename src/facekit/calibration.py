"""Turning cosine distances into evidence, decisions with a stated error rate, and confidences.

**Evidence.** Each model's distances live on their own scale (dlib's different-person pairs
sit near 0.17, MobileFaceNet's near 0.98), so they are first normalised by the statistics of
*different-person* (impostor) pairs, then fused with the ensemble weights::

    z_m = (mu_m - d_m) / sigma_m          # how many impostor standard deviations closer
    evidence = sum_m w_m * z_m            # larger = more likely the same person

A face is named when its best evidence over the gallery reaches ``threshold``.

**Threshold from a stated stranger rate.** The user states ``max_strangers``, the share of
probes of people *not* in the database that may be named (default 1%). A stranger is named
when the best of its comparisons with the N enrolled people reaches the threshold, so the
rate grows with N. :func:`calibrate` measures, on the gallery itself, the score of sampled
gallery faces ("probes") against each *other* person (the best of that person's faces),
and models it per probe as ``loc_i + scale_i * eps`` with one distribution of ``eps`` whose
upper tail is a generalised Pareto fit (:class:`Tail`). The predicted stranger rate at
gallery size N is::

    rate(t, N) = mean_i [ 1 - (1 - P(eps > (t - loc_i) / scale_i)) ** N ]

(:class:`StrangerModel`); the threshold solves ``rate(t, N) = max_strangers``. Probe-to-probe
differences (some photos resemble everybody) are kept, which a single pooled distribution
would not. The share of enrolled probes still named is the leave-one-out genuine score
distribution (each gallery face against its own person's other faces) above the threshold.

**Small galleries** borrow strength from defaults measured on the tune folds of
``../shared/datasets`` (benchmarks/calibrate_defaults.py; people-disjoint folds, see
docs/accuracy.md): impostor statistics, the shape of the tail and the spread of probe
locations are shrunk toward them in proportion to how little the gallery measures, and the
independence model's tail is a mixture of the gallery's own and the default one
(``TAIL_PRIOR_SCORES``): a tail fitted on a few dozen excesses is too light.

**Clustering.** :func:`pair_threshold` gives the evidence cut at which a stated share of
different-person *pairs* would merge, from the same kind of tail fit on impostor pairs.

The confidence is a logistic curve that is 50 at the threshold and 95 at the typical
evidence of same-person pairs (``genuine``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from . import _calibration_defaults as _defaults

__all__ = [
    "Calibration",
    "DEFAULT_IMPOSTOR",
    "DEFAULT_GENUINE_EVIDENCE",
    "DEFAULT_MAX_STRANGERS",
    "DEFAULT_THRESHOLD",
    "StrangerModel",
    "Tail",
    "calibrate",
    "default_max_strangers",
    "describe",
    "cosine_distances",
    "pair_threshold",
]

#: Share of strangers that may be named, when the user states nothing (docs/accuracy.md).
DEFAULT_MAX_STRANGERS = 0.01
#: Ensembles too weak to name enough enrolled people at 1%. dlib: 2%, the smallest rate at which
#: the 60/19 protocol on the tune folds reached 96% open-set accuracy under the calibration of
#: 4 December (93.6% at 1%, 96.2% at 2%). With today's calibration that rule gives 4% (tune:
#: 90.9, 94.7, 95.9, 96.6, 96.8% at 1-5%); 4% was tried and named strangers in crowd video (two
#: strangers in one frame of facenet-pytorch_video.mp4 both named as one enrolled person), the
#: worst error there is, so the default stays 2% (docs/accuracy.md, "Why dlib defaults to 2%").
DEFAULT_MAX_STRANGERS_BY_MODELS: dict[str, float] = {"dlib": 0.02}
#: model -> (mean, standard deviation) of the cosine distance of different-person pairs,
#: measured on the tune folds (0-2) of lfw-dev + lfw-few + lfw-singles, one face per photo
#: (benchmarks/calibrate_defaults.py). Models not listed have no measured default: a gallery
#: measures them at its first ``build-index``.
DEFAULT_IMPOSTOR: dict[str, tuple[float, float]] = dict(_defaults.IMPOSTOR)
# Issue 12 recognisers, measured on lfw-dev TUNE folds 0-2 (500 photos, 50 people, YuNet
# detection, mirror averaging; benchmarks/bench_models.py --impostor); used until
# benchmarks/calibrate_defaults.py measures them into _calibration_defaults.
DEFAULT_IMPOSTOR.setdefault("sface", (0.902, 0.087))
DEFAULT_IMPOSTOR.setdefault("arcface-mbf", (0.990, 0.067))
#: Typical evidence of same-person pairs (median z), for the confidence curve's slope.
DEFAULT_GENUINE_EVIDENCE = 3.5
#: Threshold used only when nothing can be computed (no people at all).
DEFAULT_THRESHOLD = 3.09
#: Default tail of standardised per-(probe, person) impostor scores and of impostor pairs
#: (tune folds; benchmarks/calibrate_defaults.py). Key: models joined by "+".
DEFAULT_TAILS: dict[str, dict[str, Any]] = dict(_defaults.TAILS)
#: Fallback when an ensemble has no measured default: a normal-like tail.
_GENERIC_TAIL: dict[str, Any] = {
    "stranger": {"u": 1.645, "p_u": 0.05, "xi": -0.05, "beta": 0.42, "body": None},
    "spread": [0.0, 1.0, 0.15, 0.15],
    "pair": {"u": 2.33, "p_u": 0.01, "xi": -0.05, "beta": 0.38, "body": None},
    "pair_sd": 1.0,
    "maxima": {"u": 0.0, "p_u": 0.2, "xi": 0.0, "beta": 0.3, "body": None},
}
#: Prior weights (in observations) of the defaults when shrinking small-gallery estimates.
PRIOR_PAIRS = 100
PRIOR_EXCEEDANCES = 200
PRIOR_SCORES = 50
PRIOR_PROBE_SCORES = 20
PRIOR_MAXIMA = 30
#: Probes (people, see MAXIMA_BY_PEOPLE) needed to model the leave-one-person-out maxima
#: directly (else "iid").
MIN_MAXIMA_PROBES = 100
#: Count probe people rather than faces for MIN_MAXIMA_PROBES (30 people with 5 photos are
#: 30 observations of the leave-one-person-out maximum, not 150).
MAXIMA_BY_PEOPLE = True
#: Galleries of BLEND_FROM to MIN_MAXIMA_PROBES people: the independence model's rate is
#: interpolated geometrically toward the maxima model's, with weight log(N / BLEND_FROM) /
#: log(MIN_MAXIMA_PROBES / BLEND_FROM) (0: no blend).
BLEND_FROM = 30
#: Standardised scores needed before the gallery's own tail is fitted (else the default's).
MIN_TAIL_SCORES = 600
#: Independence model: weight, in standardised scores, of the default tail mixed with the
#: gallery's own (the gallery's share is m / (m + weight) for m scores; 0: not mixed). Per
#: ensemble in ``_calibration_defaults.TAIL_PRIOR_SCORES`` (fitted on the tune folds); this
#: value for the others.
TAIL_PRIOR_SCORES = 0.0
#: Strangers named per leave-one-out stranger named, on the tune folds (the gallery's own
#: faces resemble each other less than new photos do; benchmarks/calibrate_defaults.py).
MAXIMA_MARGIN = 1.5
#: Share of the maxima above the GPD threshold.
MAXIMA_TAIL = 0.2
#: Body quantile levels stored by :class:`Tail` (below its threshold ``u``).
_BODY_LEVELS = np.linspace(0.0, 1.0, 21)


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(na, nb)`` cosine distances ``1 - a.b`` between L2-normalised rows."""
    return 1.0 - np.asarray(a, np.float32) @ np.asarray(b, np.float32).T


def _norm_sf(x: np.ndarray) -> np.ndarray:
    from math import sqrt

    erfc = np.vectorize(math.erfc, otypes=[float])
    return 0.5 * erfc(np.asarray(x, float) / sqrt(2.0))


# --------------------------------------------------------------------------- tail model
@dataclass
class Tail:
    """A distribution known by body quantiles and a generalised Pareto upper tail.

    ``P(X > x) = p_u * (1 + xi * (x - u) / beta) ** (-1 / xi)`` for ``x >= u`` (exponential
    when ``xi == 0``); below ``u`` the survival is interpolated in ``body``, the quantiles of
    ``X`` at levels ``0, 0.05, ..., 1`` of the part below ``u``. Without a body the part below
    ``u`` is taken as normal-like (only used for rates above ``p_u``).
    """

    u: float
    p_u: float
    xi: float
    beta: float
    body: list[float] | None = None

    def sf(self, x: np.ndarray | float) -> np.ndarray:
        """``P(X > x)``."""
        x = np.asarray(x, float)
        out = np.empty_like(x)
        hi = x >= self.u
        y = (x[hi] - self.u) / max(self.beta, 1e-9)
        if abs(self.xi) < 1e-6:
            out[hi] = self.p_u * np.exp(-y)
        else:
            base = np.maximum(1.0 + self.xi * y, 0.0)
            with np.errstate(divide="ignore"):
                out[hi] = self.p_u * np.where(base > 0, base ** (-1.0 / self.xi), 0.0)
        lo = ~hi
        if lo.any():
            if self.body is not None:
                q = np.asarray(self.body, float)
                # body quantiles are of the part below u: P(X > x) = 1 - (1 - p_u) * F_body(x)
                levels = _BODY_LEVELS
                f = np.interp(x[lo], q, levels, left=0.0, right=1.0)
                out[lo] = 1.0 - (1.0 - self.p_u) * f
            else:
                # continuous with the exponential-like tail at u, normal-like below
                out[lo] = np.minimum(
                    1.0, self.p_u * np.exp((self.u - x[lo]) / max(self.beta, 1e-9))
                )
        return out

    def isf(self, p: float) -> float:
        """The ``x`` with ``P(X > x) = p``."""
        p = float(np.clip(p, 1e-300, 1.0))
        if p <= self.p_u:
            r = p / self.p_u
            if abs(self.xi) < 1e-6:
                return float(self.u - self.beta * math.log(r))
            return float(self.u + self.beta * (r ** (-self.xi) - 1.0) / self.xi)
        if self.body is not None:
            f = (1.0 - p) / (1.0 - self.p_u)
            return float(np.interp(f, _BODY_LEVELS, np.asarray(self.body, float)))
        return float(self.u - self.beta * math.log(p / self.p_u))

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        p_u: float,
        prior: Tail | None = None,
        prior_weight: float = PRIOR_EXCEEDANCES,
    ) -> Tail:
        """Fit to a sample: ``u`` at its ``1 - p_u`` quantile, GPD on the excesses.

        The GPD shape is estimated by probability-weighted moments (Hosking & Wallis 1987;
        fast, no optimiser) and shrunk toward ``prior.xi`` with ``prior_weight`` pseudo
        excesses; the scale is then the mean excess times ``1 - xi``. With fewer than 20
        excesses the prior's shape is used as it is.
        """
        x = np.sort(np.asarray(x, float))
        n = len(x)
        u = float(np.quantile(x, 1.0 - p_u))
        y = x[x > u] - u
        k = len(y)
        xi0 = prior.xi if prior is not None else 0.0
        if k >= 20:
            # PWM: a0 = mean(y), a1 = mean(y_(j) * (k - j) / (k - 1)), ascending order
            a0 = float(y.mean())
            j = np.arange(1, k + 1)
            a1 = float(np.mean(y * (k - j) / (k - 1)))
            denom = a0 - 2.0 * a1
            xi_hat = float(np.clip(-(a0 / denom - 2.0), -0.5, 0.5)) if denom > 1e-12 else 0.0
            w = prior_weight if prior is not None else 0.0
            xi = (k * xi_hat + w * xi0) / (k + w)
        else:
            xi = xi0
        mean_excess = float(y.mean()) if k else (prior.beta if prior is not None else 0.5)
        beta = max(mean_excess * (1.0 - xi), 1e-6)
        below = x[x <= u] if n else x
        body = [float(v) for v in np.quantile(below, _BODY_LEVELS)] if len(below) >= 2 else None
        return cls(u, float(k / n) if n else p_u, float(xi), float(beta), body)

    def to_dict(self) -> dict[str, Any]:
        return {
            "u": round(self.u, 6),
            "p_u": self.p_u,
            "xi": round(self.xi, 6),
            "beta": round(self.beta, 6),
            "body": None if self.body is None else [round(v, 5) for v in self.body],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tail:
        body = d.get("body")
        return cls(
            float(d["u"]),
            float(d["p_u"]),
            float(d["xi"]),
            float(d["beta"]),
            None if body is None else [float(v) for v in body],
        )


@dataclass
class StrangerModel:
    """Predicted share of strangers named, as a function of threshold and gallery size.

    Two forms, chosen by :func:`calibrate` from how much the gallery measures:

    * ``"maxima"`` (probes of at least ``MIN_MAXIMA_PROBES`` people): ``tail`` is
      the distribution of each probe's *best* score over ``reference`` other people (the
      leave-one-person-out maxima), a generalised Pareto fit above its 80th percentile.
      Against N people: ``rate = 1 - (1 - margin * P(M > t)) ** (N / reference)`` (blocks
      of ``reference`` people treated as independent; exact when ``N = reference``).
    * ``"iid"`` (small galleries): probe ``i`` scores ``loc_i + scale_i * eps`` against each
      enrolled person, ``eps`` with distribution ``tail`` (mixed with ``prior``, the default
      tail, in the proportion ``weight`` : ``1 - weight`` when set), independently:
      ``rate = margin * mean_i [1 - (1 - P(eps > (t - loc_i) / scale_i)) ** N]``.

    ``margin`` (measured on the tune folds per ensemble, ``_calibration_defaults.py``) is how
    many more strangers new photos of new people name than the gallery's own faces predict.

    Attributes:
        persons: enrolled people N the threshold was chosen for.
        tail: see above.
        kind: ``"maxima"`` or ``"iid"``.
        reference: people each maximum was taken over (``"maxima"``).
        loc, scale: per-probe location and scale (``"iid"``; at most 256 probes).
        margin: see above.
        prior, weight: the default tail mixed into ``tail`` and ``tail``'s share (``"iid"``).
        other, blend: galleries between the regimes (``BLEND_FROM`` to ``MIN_MAXIMA_PROBES``
            people): the ``"maxima"`` model and its weight; the rate is
            ``rate_self ** (1 - blend) * other.rate ** blend``.
    """

    persons: int
    tail: Tail
    kind: str = "maxima"
    reference: int = 1
    loc: np.ndarray = field(default_factory=lambda: np.zeros(1))
    scale: np.ndarray = field(default_factory=lambda: np.ones(1))
    margin: float = 1.0
    prior: Tail | None = None
    weight: float = 1.0
    other: StrangerModel | None = None
    blend: float = 0.0

    def _sf(self, x: np.ndarray) -> np.ndarray:
        """Exceedance of ``tail``, mixed with ``prior`` (weight ``1 - weight``) when set."""
        p = self.tail.sf(x)
        if self.prior is not None and self.weight < 1.0:
            p = self.weight * p + (1.0 - self.weight) * self.prior.sf(x)
        return p

    def rate(self, threshold: float | np.ndarray, persons: int | None = None) -> np.ndarray:
        """Expected share of strangers named at ``threshold`` against ``persons`` people."""
        n = max(int(self.persons if persons is None else persons), 1)
        t = np.atleast_1d(np.asarray(threshold, float))
        if self.kind == "maxima":
            p = np.minimum(self.margin * self._sf(t), 1 - 1e-15)
            return -np.expm1((n / max(self.reference, 1)) * np.log1p(-p))
        x = (t[:, None] - self.loc[None, :]) / self.scale[None, :]
        p = self._sf(x.ravel()).reshape(x.shape)
        # 1 - (1 - p) ** n, accurate for tiny p
        named = -np.expm1(n * np.log1p(-np.minimum(p, 1 - 1e-15)))
        r = np.minimum(self.margin * named.mean(1), 1.0)
        if self.other is not None and self.blend > 0.0:
            # geometric interpolation toward the other form (galleries between the two regimes)
            r2 = self.other.rate(t, n)
            b = self.blend
            r = np.exp((1 - b) * np.log(np.maximum(r, 1e-300)) + b * np.log(np.maximum(r2, 1e-300)))
        return r

    def threshold(self, max_strangers: float, persons: int | None = None) -> float:
        """The evidence threshold at which :meth:`rate` equals ``max_strangers``."""
        a = float(np.clip(max_strangers, 1e-6, 0.999))
        base = self.tail.u if self.kind == "maxima" else float(np.min(self.loc))
        spread = max(self.tail.beta, 0.1) if self.kind == "maxima" else float(np.max(self.scale))
        lo, hi = base - 20 * spread, base + 60 * spread
        if self.kind == "maxima" and self.tail.body is not None:
            lo = min(lo, self.tail.body[0] - 1.0)
        for _ in range(80):
            mid = (lo + hi) / 2
            if self.rate(mid, persons)[0] > a:
                lo = mid
            else:
                hi = mid
        return hi

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "persons": int(self.persons),
            "reference": int(self.reference),
            "tail": self.tail.to_dict(),
            "margin": self.margin,
        }
        if self.kind == "iid":
            d["loc"] = [round(float(v), 4) for v in self.loc]
            d["scale"] = [round(float(v), 4) for v in self.scale]
        if self.prior is not None and self.weight < 1.0:
            d["prior"] = self.prior.to_dict()
            d["weight"] = round(float(self.weight), 6)
        if self.other is not None and self.blend > 0.0:
            d["other"] = self.other.to_dict()
            d["blend"] = round(float(self.blend), 6)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StrangerModel:
        return cls(
            int(d["persons"]),
            Tail.from_dict(d["tail"]),
            str(d.get("kind", "iid")),
            int(d.get("reference", 1)),
            np.asarray(d.get("loc", [0.0]), float),
            np.asarray(d.get("scale", [1.0]), float),
            float(d.get("margin", 1.0)),
            Tail.from_dict(d["prior"]) if d.get("prior") else None,
            float(d.get("weight", 1.0)),
            StrangerModel.from_dict(d["other"]) if d.get("other") else None,
            float(d.get("blend", 0.0)),
        )


def _ensemble_key(models: Sequence[str]) -> str:
    return "+".join(models)


def default_max_strangers(models: Sequence[str]) -> float:
    """The stranger rate a new database of ``models`` states when the user states none."""
    return DEFAULT_MAX_STRANGERS_BY_MODELS.get(_ensemble_key(models), DEFAULT_MAX_STRANGERS)


def default_tails(
    models: Sequence[str], weights: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Measured default tails of ``models`` (``DEFAULT_TAILS``), else a generic normal-like one."""
    d = DEFAULT_TAILS.get(_ensemble_key(models))
    if d is not None:
        return d
    g = dict(_GENERIC_TAIL)
    if len(models) > 1:
        # fused evidence of correlated models (rho ~ 0.5): sd = sqrt(sum w^2 + sum_{i!=j} 0.5 w_i w_j)
        w = np.array([(weights or {}).get(m, 1.0 / len(models)) for m in models], float)
        w = w / w.sum()
        sd = float(np.sqrt(np.sum(w**2) + 0.5 * (np.sum(w) ** 2 - np.sum(w**2))))
        g = {**g, "pair_sd": sd}
    return g


def pair_threshold(false_merge_rate: float, calibration: Calibration | None = None) -> float:
    """Evidence cut at which ``false_merge_rate`` of different-person face pairs reach it.

    From the calibration's impostor-pair tail (measured on a gallery) when it has one, else
    from the default tail of its models measured on the tune folds (docs/accuracy.md).
    ``cluster.cluster_threshold()`` uses this with the per-pair rate of the clustering cut.
    """
    rate = float(np.clip(false_merge_rate, 1e-9, 0.5))
    tail = None
    if calibration is not None and calibration.pair_tail is not None:
        tail = Tail.from_dict(calibration.pair_tail)
    else:
        models = calibration.models if calibration is not None else ["dlib"]
        d = default_tails(models, calibration.weights if calibration is not None else None)
        tail = Tail.from_dict(d["pair"])
        sd = float(d.get("pair_sd", 1.0))
        if d is not DEFAULT_TAILS.get(_ensemble_key(models)):
            tail = Tail(tail.u * sd, tail.p_u, tail.xi, tail.beta * sd, None)
    return tail.isf(rate)


# --------------------------------------------------------------------------- calibration
@dataclass
class Calibration:
    """Per-model normalisation, fusion weights, the decision threshold and its promise.

    Attributes:
        impostor: model -> ``(mu, sigma)`` of different-person cosine distances.
        weights: model -> fusion weight (sums to 1).
        threshold: evidence at or above which a face is named.
        genuine: typical (median) evidence of same-person comparisons; maps to confidence 95.
        source: ``"gallery"`` (measured on the user's gallery), ``"gallery-small"`` (measured,
            shrunk toward defaults) or ``"default"``.
        stats: measurement details, stored in the database manifest.
        max_strangers: the stated share of strangers that may be named.
        expected_strangers: predicted share of strangers named at ``threshold`` (gallery size).
        expected_named: predicted share of enrolled people's photos named (leave-one-out),
            ``None`` when no person has two faces.
        stranger_model: :class:`StrangerModel` as a dict (recomputes the threshold for other
            rates and gallery sizes).
        genuine_quantiles: leave-one-out genuine evidence at levels 0, 0.01, ... 1.
        pair_tail: :class:`Tail` of impostor-pair evidence, as a dict (clustering cut).
    """

    impostor: dict[str, tuple[float, float]]
    weights: dict[str, float]
    threshold: float = DEFAULT_THRESHOLD
    genuine: float = DEFAULT_GENUINE_EVIDENCE
    source: str = "default"
    stats: dict[str, Any] = field(default_factory=dict)
    max_strangers: float = DEFAULT_MAX_STRANGERS
    expected_strangers: float | None = None
    expected_named: float | None = None
    stranger_model: dict[str, Any] | None = None
    genuine_quantiles: list[float] | None = None
    pair_tail: dict[str, Any] | None = None

    @classmethod
    def default(
        cls, models: list[str] | tuple[str, ...], weights: Mapping[str, float] | None = None
    ) -> Calibration:
        """Defaults for ``models`` (measured on the tune folds; see module docs)."""
        w = dict(weights) if weights else {m: 1.0 for m in models}
        total = sum(w.values()) or 1.0
        return cls(
            {m: DEFAULT_IMPOSTOR.get(m, (0.9, 0.1)) for m in models},
            {m: w[m] / total for m in models},
            max_strangers=default_max_strangers(models),
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

    # ------------------------------------------------------------ stated error rate
    def model(self) -> StrangerModel | None:
        return None if self.stranger_model is None else StrangerModel.from_dict(self.stranger_model)

    def named_share(self, threshold: float) -> float | None:
        """Predicted share of enrolled people's photos named at ``threshold`` (leave-one-out)."""
        if not self.genuine_quantiles:
            return None
        q = np.asarray(self.genuine_quantiles, float)
        levels = np.linspace(0.0, 1.0, len(q))
        return float(1.0 - np.interp(threshold, q, levels, left=0.0, right=1.0))

    def strangers_at(self, threshold: float, persons: int | None = None) -> float | None:
        """Predicted share of strangers named at ``threshold`` (gallery size by default)."""
        sm = self.model()
        return None if sm is None else float(sm.rate(threshold, persons)[0])

    def for_rate(self, max_strangers: float, persons: int | None = None) -> Calibration:
        """A copy whose threshold keeps ``max_strangers`` (for ``persons`` people, default: the
        gallery's), with the expected rates updated. Unchanged when there is no model."""
        sm = self.model()
        if sm is None:
            return replace(self, max_strangers=float(max_strangers))
        t = sm.threshold(max_strangers, persons)
        return replace(
            self,
            threshold=float(t),
            max_strangers=float(max_strangers),
            expected_strangers=float(sm.rate(t, persons)[0]),
            expected_named=self.named_share(t),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["impostor"] = {m: list(v) for m, v in self.impostor.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        def opt(key: str) -> float | None:
            v = d.get(key)
            return None if v is None else float(v)

        return cls(
            {m: (float(v[0]), float(v[1])) for m, v in d["impostor"].items()},
            {m: float(v) for m, v in d["weights"].items()},
            float(d["threshold"]),
            float(d["genuine"]),
            str(d.get("source", "gallery")),
            dict(d.get("stats", {})),
            float(d.get("max_strangers", DEFAULT_MAX_STRANGERS)),
            opt("expected_strangers"),
            opt("expected_named"),
            d.get("stranger_model"),
            d.get("genuine_quantiles"),
            d.get("pair_tail"),
        )


def _shrink(value: float, n: float, prior: float, n0: float) -> float:
    return (n * value + n0 * prior) / (n + n0)


def calibrate(
    persons: np.ndarray,
    vectors: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    *,
    max_strangers: float | None = None,
    max_pairs: int = 400_000,
    max_probes: int = 1000,
    max_reference_faces: int = 20_000,
    seed: int = 0,
) -> Calibration:
    """Measure the calibration on the gallery itself, for a stated stranger rate.

    1. Per model, the mean and standard deviation of cosine distances between faces of
       *different* people (sampled pairs, at most ``max_pairs``), shrunk toward the defaults
       when there are few; and the upper tail of the fused evidence of those pairs
       (:func:`pair_threshold`).
    2. Up to ``max_probes`` gallery faces, each scored against every *other* person among
       reference people holding at most ``max_reference_faces`` faces (a person's score is
       their best face): the :class:`StrangerModel`, whose threshold for ``max_strangers`` at
       the gallery's number of people is the decision threshold.
    3. The same probes against their own person's other faces (leave-one-out): the expected
       share of enrolled people's photos still named.

    Cost is bounded by ``max_pairs + max_probes * max_reference_faces`` comparisons per
    model, whatever the gallery size (a few seconds at a million faces).
    """
    models = list(weights)
    key = _ensemble_key(models)
    if max_strangers is None:
        max_strangers = default_max_strangers(models)
    persons = np.asarray(persons).astype(str)
    n = len(persons)
    cal = Calibration.default(models, weights)
    cal.max_strangers = float(max_strangers)
    defaults = default_tails(models, cal.weights)
    if n == 0:
        return cal
    rng = np.random.default_rng(seed)
    uniq, inverse, counts = np.unique(persons, return_inverse=True, return_counts=True)
    n_persons = len(uniq)
    vecs = {m: np.asarray(vectors[m], np.float32) for m in models}
    # --- 1. impostor statistics per model and the pair tail
    pair_ev = None
    if n_persons >= 2:
        total_pairs = n * (n - 1) // 2
        if total_pairs <= max_pairs:
            a, b = np.triu_indices(n, 1)
        else:
            a = rng.integers(0, n, max_pairs)
            b = rng.integers(0, n, max_pairs)
        diff = inverse[a] != inverse[b]
        a, b = a[diff], b[diff]
        k = len(a)
        if k >= 2:
            dists = {}
            for m in models:
                v = vecs[m]
                d = 1.0 - np.einsum("ij,ij->i", v[a], v[b]).astype(np.float64)
                dists[m] = d
                mu0, sd0 = DEFAULT_IMPOSTOR.get(m, (float(d.mean()), float(d.std() or 0.1)))
                n0 = PRIOR_PAIRS if m in DEFAULT_IMPOSTOR else 0
                mu = _shrink(float(d.mean()), k, mu0, n0)
                var = _shrink(float(d.var()) + (float(d.mean()) - mu) ** 2, k, sd0**2, n0)
                cal.impostor[m] = (mu, float(max(math.sqrt(var), 1e-4)))
            cal.stats["impostor_pairs"] = int(k)
            pair_ev = cal.evidence(dists)
    prior_pair = Tail.from_dict(defaults["pair"])
    if pair_ev is not None and len(pair_ev) >= 2000:
        cal.pair_tail = Tail.fit(pair_ev, 0.01, prior_pair).to_dict()
    # --- 2. per-(probe, other person) scores
    if n_persons < 2:
        cal.stats["note"] = "one person only: default threshold"
        cal.source = "default" if "impostor_pairs" not in cal.stats else "gallery-impostor"
        return cal
    probes = np.arange(n) if n <= max_probes else np.sort(rng.choice(n, max_probes, replace=False))
    # reference people: a random subset holding at most max_reference_faces faces
    order_p = rng.permutation(n_persons)
    cum = np.cumsum(counts[order_p])
    n_ref = max(2, int(np.searchsorted(cum, max_reference_faces, side="right")))
    ref_people = np.sort(order_p[: min(n_ref, n_persons)])
    ref_mask = np.isin(inverse, ref_people)
    ref_faces = np.flatnonzero(ref_mask)
    ref_faces = ref_faces[np.argsort(inverse[ref_faces], kind="stable")]
    ref_owner = inverse[ref_faces]
    starts = np.flatnonzero(np.r_[True, ref_owner[1:] != ref_owner[:-1]])
    col_person = ref_owner[starts]
    ref_vecs = {m: vecs[m][ref_faces] for m in models}
    genuine_l: list[float] = []
    # defaults measured on galleries with about as many photos per person as this one
    photos = float(np.median(counts))
    by_photos = defaults.get("by_photos", {}).get(
        "1" if photos < 2 else "3" if photos < 4 else "5", {}
    )
    prior_loc, prior_scale = by_photos.get("spread", defaults["spread"])[:2]
    pooled = []
    for s0 in range(0, len(probes), 256):
        idx = probes[s0 : s0 + 256]
        ev = cal.pairwise_evidence({m: vecs[m][idx] for m in models}, ref_vecs)
        per_person = np.maximum.reduceat(ev, starts, axis=1)
        own = inverse[idx][:, None] == col_person[None, :]
        per_person[own] = np.nan
        pooled.append(per_person)
    scores = np.concatenate(pooled)  # (probes, ref people) with NaN for own person
    valid = ~np.isnan(scores)
    n_scores = int(valid.sum())
    # pooled location/scale, shrunk toward the default when there are few scores
    pm = float(np.nanmean(scores))
    ps = float(np.nanstd(scores)) or 1.0
    pm = _shrink(pm, n_scores, prior_loc, PRIOR_SCORES)
    ps = _shrink(ps, n_scores, prior_scale, PRIOR_SCORES)
    cnt = valid.sum(1)
    keep = cnt >= 1
    scores, valid, cnt = scores[keep], valid[keep], cnt[keep]
    m_i = np.nanmean(scores, axis=1)
    s_i = np.sqrt(np.nanmean((scores - m_i[:, None]) ** 2, axis=1))
    # per-probe estimates shrunk toward the pooled ones (a probe against few people is noisy)
    w = cnt / (cnt + PRIOR_PROBE_SCORES)
    locs_a = w * m_i + (1 - w) * pm
    scales_a = np.sqrt(w * np.maximum(s_i, 1e-3) ** 2 + (1 - w) * ps**2)
    eps = ((scores - locs_a[:, None]) / scales_a[:, None])[valid]
    prior_tail = Tail.from_dict(by_photos.get("stranger", defaults["stranger"]))
    if len(eps) >= MIN_TAIL_SCORES:
        tail = Tail.fit(eps, 0.05, prior_tail)
        prior_n = float(_defaults.TAIL_PRIOR_SCORES.get(key, TAIL_PRIOR_SCORES))
        w_tail = len(eps) / (len(eps) + prior_n)
    else:
        tail, w_tail = prior_tail, 0.0
    maxima = np.nanmax(np.where(valid, scores, np.nan), axis=1)
    n_ref = int(np.median(cnt))
    probe_units = len(np.unique(inverse[probes][keep])) if MAXIMA_BY_PEOPLE else len(maxima)

    def maxima_model() -> StrangerModel:
        # the distribution of each probe's best score over n_ref other people
        prior_m = Tail.from_dict(defaults.get("maxima", _GENERIC_TAIL["maxima"]))
        mtail = Tail.fit(maxima, MAXIMA_TAIL, prior_m, PRIOR_MAXIMA)
        margin = float(_defaults.MARGINS.get(key, MAXIMA_MARGIN))
        return StrangerModel(n_persons, mtail, "maxima", n_ref, margin=margin)

    if probe_units >= MIN_MAXIMA_PROBES:
        sm = maxima_model()
        kind_tail = sm.tail
    else:
        sel = np.arange(len(locs_a))
        if len(sel) > 256:
            sel = np.sort(rng.choice(len(sel), 256, replace=False))
        margin = float(_defaults.IID_MARGINS.get(key, 1.0))
        if photos < 2 and w_tail == 0.0:
            # one photo per person, default tail: its own margin (tune: 1 x 10 people named
            # 0.6-0.7x the target with the common margin, 3 and 5 photos about 0.85x)
            margin = float(_defaults.IID_MARGINS_ONE_PHOTO.get(key, margin))
        sm = StrangerModel(
            n_persons, tail, "iid", n_ref, locs_a[sel], scales_a[sel], margin, prior_tail, w_tail
        )
        kind_tail = tail
        if 0 < BLEND_FROM < probe_units and len(maxima) >= 20:
            # between the regimes: the independence model over-predicts the growth with N
            sm.other = maxima_model()
            sm.blend = math.log(probe_units / BLEND_FROM) / math.log(MIN_MAXIMA_PROBES / BLEND_FROM)
    cal.stranger_model = sm.to_dict()
    # --- 3. leave-one-out genuine scores
    face_order = np.argsort(inverse, kind="stable")
    p_start = np.r_[0, np.cumsum(counts)]
    for i in probes:
        pid = inverse[i]
        if counts[pid] < 2:
            continue
        own_faces = face_order[p_start[pid] : p_start[pid + 1]]
        own_faces = own_faces[own_faces != i]
        ev = cal.pairwise_evidence(
            {m: vecs[m][i : i + 1] for m in models}, {m: vecs[m][own_faces] for m in models}
        )
        genuine_l.append(float(ev.max()))
    threshold = sm.threshold(max_strangers)
    cal.threshold = float(threshold)
    cal.expected_strangers = float(sm.rate(threshold)[0])
    if len(genuine_l) >= 10:
        g = np.asarray(genuine_l)
        cal.genuine_quantiles = [round(float(v), 4) for v in np.quantile(g, np.linspace(0, 1, 101))]
        cal.genuine = float(np.median(g))
        cal.expected_named = cal.named_share(threshold)
    big = n_scores >= 600 and "impostor_pairs" in cal.stats and cal.stats["impostor_pairs"] >= 500
    cal.source = "gallery" if big else "gallery-small"
    cal.stats.update(
        probes=int(len(probes)),
        reference_people=int(len(ref_people)),
        stranger_scores=n_scores,
        loo_genuine=int(len(genuine_l)),
        tail_xi=round(kind_tail.xi, 4),
        pooled=[round(pm, 4), round(ps, 4)],
        iid_tail=tail.to_dict(),
        maxima_tail=Tail.fit(maxima, MAXIMA_TAIL).to_dict() if len(maxima) >= 20 else None,
        model=sm.kind + ("+maxima" if sm.other is not None else ""),
    )
    return cal


def describe(cal: Calibration) -> str:
    """One line stating the calibration's promise (``build-index`` summary, ``db info``)."""
    how = {
        "gallery": "measured on this gallery",
        "gallery-small": "measured on this small gallery, shrunk toward defaults",
        "gallery-impostor": "impostor statistics from this gallery, default threshold",
    }.get(cal.source, "defaults (gallery too small to calibrate; add more people / photos)")
    sm = cal.model()
    people = f" at {sm.persons} people" if sm is not None else ""
    text = f"threshold {cal.threshold:.2f} for at most {cal.max_strangers:.1%} of strangers named{people} ({how})"
    if cal.expected_strangers is not None:
        text += f"; expected: {cal.expected_strangers:.1%} of strangers named"
        if cal.expected_named is not None:
            text += f", {cal.expected_named:.1%} of enrolled people's photos named (leave-one-out)"
        else:
            have = int(cal.stats.get("loo_genuine", 0) or 0)
            text += (
                "; share of enrolled photos named not measurable (it needs 10 photos of people "
                f"with 2 or more photos; this gallery has {have})"
            )
    return text
