"""People-disjoint folds shared by every accuracy benchmark (see HELPERS.md / docs/accuracy.md).

A person (a dataset folder name) belongs to fold ``sha256(name) % 5``. Folds 0, 1, 2 are
TUNE (fit thresholds, defaults, constants); folds 3, 4 are REPORT (held-out figures only).
The same rule applies to ``lfw-dev``, ``lfw-few`` and ``lfw-singles``, so a constant fitted
on the tune folds has never seen a person of the report folds.

Usage from a benchmark (the benchmarks folder is on ``sys.path`` when a script in it runs)::

    from folds import TUNE, REPORT, fold_of, people, load_faces

    names = people(shared / "datasets" / "lfw-few", REPORT)
    faces = load_faces("lfw-few", ("dlib",))   # cached embeddings, one per photo
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "TUNE",
    "REPORT",
    "COHORT",
    "TUNE_CLUSTER",
    "CACHE",
    "DATASETS",
    "fold_of",
    "in_folds",
    "people",
    "cache_path",
    "CachedFaces",
    "load_faces",
]

#: Folds used to fit anything.
TUNE: tuple[int, ...] = (0, 1, 2)
#: Held-out folds: figures only.
REPORT: tuple[int, ...] = (3, 4)
#: Tune fold whose faces are facekit's clustering cohort (benchmarks/make_cohort.py); clustering
#: figures on the tune folds use the other tune folds (``TUNE_CLUSTER``).
COHORT: tuple[int, ...] = (0,)
TUNE_CLUSTER: tuple[int, ...] = tuple(f for f in TUNE if f not in COHORT)
#: Embedding cache shared by all helpers (outside the repository).
CACHE = Path(os.environ.get("FACEKIT_BENCH_CACHE", "/work/cache"))
DATASETS = ("lfw-dev", "lfw-few", "lfw-singles")


def fold_of(name: str) -> int:
    """Fold (0-4) of a person, from the folder name."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 5


def in_folds(name: str, folds: Iterable[int]) -> bool:
    return fold_of(name) in set(folds)


def people(dataset_dir: str | os.PathLike[str], folds: Iterable[int]) -> list[str]:
    """Sorted person folder names of ``dataset_dir`` that fall in ``folds``."""
    f = set(folds)
    return sorted(
        p.name for p in Path(dataset_dir).iterdir() if p.is_dir() and fold_of(p.name) in f
    )


def cache_path(dataset: str, models: Sequence[str], detector: str | None = None) -> Path:
    """``<CACHE>/<dataset>.<models joined by +>[.<detector>].parquet``."""
    tail = f".{detector}" if detector else ""
    return CACHE / f"{dataset}.{'+'.join(models)}{tail}.parquet"


@dataclass
class CachedFaces:
    """One face per photo of a cached ``facekit embed`` table.

    Attributes:
        person: ``(n,)`` person (folder name) of each face.
        source: ``(n,)`` photo path.
        vectors: model -> ``(n, dim) float32`` L2-normalised embeddings.
        faces: all faces of each photo (model -> list of ``(k, dim)`` arrays, parallel to
            ``source``), for probes whose answer is the best face in the photo.
    """

    person: np.ndarray
    source: np.ndarray
    vectors: dict[str, np.ndarray]
    faces: dict[str, list[np.ndarray]]

    def select(self, mask: np.ndarray) -> CachedFaces:
        idx = np.flatnonzero(mask)
        return CachedFaces(
            self.person[idx],
            self.source[idx],
            {m: v[idx] for m, v in self.vectors.items()},
            {m: [f[i] for i in idx] for m, f in self.faces.items()},
        )

    def folds(self, folds: Iterable[int]) -> CachedFaces:
        f = set(folds)
        return self.select(np.array([fold_of(p) in f for p in self.person], bool))


def load_faces(
    dataset: str,
    models: Sequence[str],
    *,
    detector: str | None = None,
) -> CachedFaces:
    """Read the cached embeddings of ``dataset`` (one face per photo, as ``build-index`` picks it).

    Looks for an exact cache file of ``models`` first, then any cache file whose models
    include them (e.g. ``lfw-few.dlib+mobilefacenet.parquet`` serves ``("dlib",)``).
    The enrolled face of a photo is :func:`facekit.gallery.dominant_face`'s choice.
    """
    import pyarrow.parquet as pq
    from PIL import Image

    path = cache_path(dataset, models, detector)
    if not path.is_file():
        tail = f".{detector}.parquet" if detector else ".parquet"
        for cand in sorted(CACHE.glob(f"{dataset}.*{tail}")):
            mid = cand.name[len(dataset) + 1 : -len(tail)]
            if detector is None and "." in mid:
                continue
            if set(models) <= set(mid.split("+")):
                path = cand
                break
        else:
            raise FileNotFoundError(
                f"no cached embeddings of {dataset} with {'+'.join(models)} in {CACHE}; make them with "
                f"facekit embed ../shared/datasets/{dataset} -o {cache_path(dataset, models, detector)}"
                f" --models {','.join(models)}"
            )
    cols = ["source", "face", "x", "y", "w", "h"] + [f"emb_{m}" for m in models]
    df = pq.read_table(path, columns=cols).to_pandas()
    keep, allf = [], {m: [] for m in models}
    sources = []
    for src, rows in df.groupby("source", sort=True):
        try:
            with Image.open(str(src)) as im:
                w, h = im.size
        except OSError:
            w, h = 250, 250
        x0, y0 = rows.x.to_numpy(), rows.y.to_numpy()
        x1, y1 = x0 + rows.w.to_numpy(), y0 + rows.h.to_numpy()
        area = (x1 - x0) * (y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        off = np.hypot((cx - w / 2) / (w / 2), (cy - h / 2) / (h / 2)) / np.sqrt(2)
        keep.append(rows.index[int(np.argmax(area * (1.0 - 0.5 * off)))])
        sources.append(str(src))
        for m in models:
            allf[m].append(np.stack(rows[f"emb_{m}"].to_numpy()).astype(np.float32))
    sel = df.loc[keep]
    person = np.array([Path(s).parent.name for s in sources])
    vectors = {m: np.stack(sel[f"emb_{m}"].to_numpy()).astype(np.float32) for m in models}
    return CachedFaces(person, np.array(sources), vectors, allf)
