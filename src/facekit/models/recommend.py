"""Pick the strongest available models that the user's licence choice allows.

``facekit models recommend`` and the pseudo-names ``--models best`` / ``--detector best``
(commercial-friendly models only) and ``best-nc`` (non-commercial models allowed too) use
:func:`recommend`. A model counts as available when its files are installed or a local mirror
(``FACEKIT_MODEL_MIRROR`` folder) holds them, so the choice never triggers a download from the
internet. Rankings come from the measurements in docs/models.md (people-disjoint REPORT folds).

Example:
    >>> rec = recommend(allow_noncommercial=False)  # doctest: +SKIP
    >>> rec.models, rec.detector  # doctest: +SKIP
    (('sface',), 'yunet')
"""

from __future__ import annotations

from dataclasses import dataclass

from facekit.models.registry import SPECS, list_specs

__all__ = ["BEST_NAMES", "ENSEMBLES", "Recommendation", "available", "recommend", "resolve_best"]

#: Pseudo-names accepted by ``--models`` and ``--detector``: name -> allow non-commercial.
BEST_NAMES = {"best": False, "best-nc": True}

#: Recogniser choices, best first. Chosen on the TUNE folds (0-2) of lfw-dev only: highest
#: open-set accuracy, ties broken by clustering F1, then by fewer models (less work per face);
#: docs/models.md has the table and the held-out (REPORT-fold) figures.
ENSEMBLES: tuple[tuple[str, ...], ...] = (
    ("arcface-mbf",),  # TUNE 99.22% (ties with arcface-mbf+sface), clustering F1 0.996
    ("arcface-mbf", "sface"),
    ("sface",),  # TUNE 98.96% (ties with sface+dlib), clustering F1 0.994
    ("sface", "dlib"),
    ("dlib",),  # TUNE 98.70%
    ("dlib", "mobilefacenet"),
)


@dataclass(frozen=True)
class Recommendation:
    """The strongest available choice.

    Attributes:
        models: Recognisers, strongest ensemble first.
        detector: Detector name.
        allow_noncommercial: Whether non-commercial models were allowed.
        noncommercial: The chosen models whose licence forbids commercial use.
        missing_better: Stronger models that are not available (fetch them to use them).
    """

    models: tuple[str, ...]
    detector: str
    allow_noncommercial: bool
    noncommercial: tuple[str, ...]
    missing_better: tuple[str, ...]


def available(name: str) -> bool:
    """Whether model ``name``'s files are installed or held by a local mirror (no network)."""
    from facekit.models.store import status

    # Offline, "fetchable" can only mean that a local mirror folder holds the missing files.
    return status(name, offline=True).state != "missing"


def _allowed(name: str, allow_noncommercial: bool) -> bool:
    spec = SPECS[name]
    return (allow_noncommercial or spec.commercial_use) and spec.tested and spec.extra is None


def recommend(allow_noncommercial: bool = False) -> Recommendation:
    """The strongest available ensemble and detector that the licence choice allows.

    Args:
        allow_noncommercial: Also consider models licensed for non-commercial use only.

    Returns:
        A :class:`Recommendation`; it falls back to the offline default (``dlib``,
        ``dlib-hog``) when nothing better is available.
    """
    cache: dict[str, bool] = {}

    def ok(name: str) -> bool:
        if name not in cache:
            cache[name] = _allowed(name, allow_noncommercial) and available(name)
        return cache[name]

    missing: list[str] = []
    models: tuple[str, ...] = ("dlib",)
    for ensemble in ENSEMBLES:
        if not all(_allowed(m, allow_noncommercial) for m in ensemble):
            continue
        if all(ok(m) for m in ensemble):
            models = ensemble
            break
        missing.extend(m for m in ensemble if not ok(m) and m not in missing)
    detectors = sorted(
        (s for s in list_specs("detector") if s.rank > 0 and _allowed(s.name, allow_noncommercial)),
        key=lambda s: -s.rank,
    )
    detector = "dlib-hog"
    for spec in detectors:
        if ok(spec.name):
            detector = spec.name
            break
        missing.append(spec.name)
    chosen = (*models, detector)
    return Recommendation(
        models=models,
        detector=detector,
        allow_noncommercial=allow_noncommercial,
        noncommercial=tuple(n for n in chosen if not SPECS[n].commercial_use),
        missing_better=tuple(dict.fromkeys(missing)),
    )


def resolve_best(models: str | None, detector: str | None) -> tuple[str | None, str | None]:
    """Replace ``best`` / ``best-nc`` in ``--models`` and ``--detector`` by the recommendation."""
    out_models, out_detector = models, detector
    if models is not None and models.strip().lower() in BEST_NAMES:
        rec = recommend(BEST_NAMES[models.strip().lower()])
        out_models = ",".join(rec.models)
    if detector is not None and detector.strip().lower() in BEST_NAMES:
        rec = recommend(BEST_NAMES[detector.strip().lower()])
        out_detector = rec.detector
    return out_models, out_detector
