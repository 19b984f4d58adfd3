"""facekit: face recognition for photo and video libraries.

The pipeline, one module per stage: :mod:`facekit.imageio` / :mod:`facekit.decode` (decode),
:mod:`facekit.detect`, :mod:`facekit.align`, :mod:`facekit.embed`, :mod:`facekit.database`
(generation store) and :mod:`facekit.index` (search), :mod:`facekit.identify` and
:mod:`facekit.aggregate`, and :mod:`facekit.render`. Importing ``facekit`` is cheap: models and heavy libraries load on
first use.

Example:
    >>> from facekit import Pipeline, PipelineConfig
    >>> result = Pipeline(PipelineConfig(models=("dlib",))).process_path("photo.jpg")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Faces": "types",
    "Embeddings": "types",
    "ImageResult": "types",
    "FacekitError": "errors",
    "InputError": "errors",
    "ModelError": "errors",
    "DatabaseError": "errors",
    "Pipeline": "pipeline",
    "PipelineConfig": "pipeline",
    "run_paths": "pipeline",
    "get_detector": "detect",
    "get_embedder": "embed",
    "get_ensemble": "embed",
    "Ensemble": "embed",
    "load_image": "imageio",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'facekit' has no attribute {name!r}")
