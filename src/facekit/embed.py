"""Face embedding: aligned crops -> L2-normalised ``float32`` vectors.

An :class:`Embedder` wraps one recogniser: it aligns faces to its own template and returns
``(n, dim)`` embeddings. Each face is embedded together with its mirror image and the two
are averaged when the model's ``flip`` is on (the Stashface technique); an :class:`Ensemble`
is just another embedder made of several, with weights used later when distances are fused.

Embedders are created by :func:`get_embedder`, which loads each model once per process.
"""

from __future__ import annotations

import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from .align import align_crops
from .errors import ModelError, UnknownModelError
from .types import Embeddings, Faces

log = logging.getLogger(__name__)

__all__ = [
    "Embedder",
    "Ensemble",
    "get_embedder",
    "get_ensemble",
    "RECOGNIZERS",
    "DEFAULT_MODELS",
    "l2_normalise",
]

DEFAULT_MODELS = ("dlib",)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (``float32``); zero rows stay zero."""
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


class Embedder(ABC):
    """One face recogniser.

    Attributes:
        model_id: registry name (``dlib``, ``mobilefacenet``...).
        dim: embedding size.
        batch_size: faces per inference call.
        flip: average each face's embedding with that of its mirror image.
        fingerprint: short hash of the weights (see :func:`facekit.models.runtime.fingerprint`).
    """

    model_id: str = ""
    dim: int = 0
    batch_size: int = 32
    flip: bool = True
    fingerprint: str = ""

    @abstractmethod
    def crops(self, rgb: np.ndarray, faces: Faces) -> np.ndarray:
        """Aligned crops ``(n, h, w, 3) uint8`` in this model's template."""

    @abstractmethod
    def embed_batch(self, crops: np.ndarray) -> np.ndarray:
        """Raw embeddings ``(n, dim)`` of aligned crops (not yet normalised)."""

    def embed(self, rgb: np.ndarray, faces: Faces) -> np.ndarray:
        """Embeddings of ``faces`` in ``rgb``.

        Args:
            rgb: ``(H, W, 3) uint8`` image that ``faces`` were detected in.
            faces: detections with boxes and landmarks in ``rgb``'s pixels.

        Returns:
            ``(n, dim) float32`` L2-normalised embeddings.
        """
        if len(faces) == 0:
            return np.zeros((0, self.dim), np.float32)
        crops = self.crops(rgb, faces)
        return self.embed_crops(crops)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings of already-aligned crops, with mirror averaging when ``flip`` is on."""
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start : start + self.batch_size]
            vec = l2_normalise(self.embed_batch(batch))
            if self.flip:
                vec = l2_normalise(
                    vec + l2_normalise(self.embed_batch(np.ascontiguousarray(batch[:, :, ::-1])))
                )
            out.append(vec)
        return (
            np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)
        )


class DlibEmbedder(Embedder):
    """dlib's ResNet face descriptor (128-d, trained on ~3 million faces; CC0 licensed).

    Faces are aligned with dlib's own 5-point shape predictor and ``get_face_chip`` (150 px,
    padding 0.25), exactly as the model was trained. The network runs in ONNX Runtime: the
    ``.dat`` weights are converted once (:mod:`facekit.models.dlib_onnx`, cached in the model
    folder) and give the same descriptors as dlib (max difference 3e-7) at ~13 ms per face
    instead of dlib-bin's ~78 ms (it has no BLAS). If the conversion is impossible, dlib's own
    implementation is used.
    """

    model_id = "dlib"
    dim = 128
    batch_size = 16

    def __init__(self, files: dict[str, Any], flip: bool | None = None):
        import dlib

        self._dlib = dlib
        dat = files["dlib_face_recognition_resnet_model_v1.dat"]
        self._sp_path = str(files["shape_predictor_5_face_landmarks.dat"])
        self._shape_predictor: Any = None  # loaded only for faces from non-dlib detectors
        self.onnx: Any = None
        self.model: Any = None
        if os.environ.get("FACEKIT_DLIB_BACKEND", "onnx") != "dlib":
            try:
                from .models.dlib_onnx import DlibOnnxResnet, ensure_dlib_onnx

                self.onnx = DlibOnnxResnet(ensure_dlib_onnx(dat))
            except (
                Exception
            ) as exc:  # conversion needs the onnx package and a writable model folder
                log.warning(
                    "dlib: using dlib's own (slower) ResNet: %s", " ".join(str(exc).split())
                )
        if self.onnx is None:
            self.model = dlib.face_recognition_model_v1(str(dat))
        if flip is not None:
            self.flip = flip

    def crops(self, rgb: np.ndarray, faces: Faces) -> np.ndarray:
        dlib = self._dlib
        rgb = np.ascontiguousarray(rgb)
        shapes = faces.data.get("dlib_shape5")
        chips = []
        for i, (x1, y1, x2, y2) in enumerate(faces.xyxy):
            rect = dlib.rectangle(int(x1), int(y1), int(x2) - 1, int(y2) - 1)
            if shapes is not None:
                shape = dlib.full_object_detection(
                    rect, [dlib.point(int(round(x)), int(round(y))) for x, y in shapes[i]]
                )
            else:
                if self._shape_predictor is None:
                    self._shape_predictor = dlib.shape_predictor(self._sp_path)
                shape = self._shape_predictor(rgb, rect)
            chips.append(dlib.get_face_chip(rgb, shape, size=150, padding=0.25))
        return np.stack(chips)

    def embed_batch(self, crops: np.ndarray) -> np.ndarray:
        if self.onnx is not None:
            return self.onnx.embed_chips(np.ascontiguousarray(crops))
        chips = [np.ascontiguousarray(c) for c in crops]
        return np.array(self.model.compute_face_descriptor(chips), np.float32).reshape(
            len(chips), self.dim
        )


class OnnxArcFaceStyleEmbedder(Embedder):
    """An ONNX recogniser on ArcFace-template crops: RGB, NCHW, ``(x - mean) / scale``.

    MobileFaceNet (foamliu) uses ``(x-127.5)/128``, InsightFace's ArcFace-MBF ``(x-127.5)/127.5``
    and SFace raw pixels (mean 0, scale 1, as ``cv2.FaceRecognizerSF`` feeds it).
    """

    size = 112

    def __init__(
        self,
        model_id: str,
        path: Any,
        dim: int,
        flip: bool | None = None,
        *,
        mean: float = 127.5,
        scale: float = 128.0,
    ):
        from .models.runtime import onnx_session

        self.model_id = model_id
        self.dim = dim
        self.mean = mean
        self.scale = scale
        self.session = onnx_session(path)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        # foamliu's MobileFaceNet and SFace have a fixed batch of 1: feed them one face at a time.
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        if flip is not None:
            self.flip = flip

    def crops(self, rgb: np.ndarray, faces: Faces) -> np.ndarray:
        return align_crops(rgb, faces.landmarks, self.size)

    def embed_batch(self, crops: np.ndarray) -> np.ndarray:
        x = (crops.astype(np.float32) - self.mean) / self.scale
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if self.fixed_batch == 1:
            out = [
                self.session.run(None, {self.input_name: x[i : i + 1]})[0] for i in range(len(x))
            ]
            return np.concatenate(out).reshape(len(x), -1)
        return self.session.run(None, {self.input_name: x})[0].reshape(len(x), -1)


class DeepFaceEmbedder(Embedder):
    """A DeepFace recogniser (Facenet512, ArcFace) run through ``DeepFace.build_model().forward``.

    facekit aligns the crop itself (ArcFace template at the model's input size) and applies
    DeepFace's preprocessing for the model (:func:`deepface_input`: BGR, and the normalisation of
    :data:`DEEPFACE_NORMALIZATION`). Weight files are installed by
    facekit's verified store into ``$DEEPFACE_HOME/.deepface/weights`` first, so DeepFace never
    downloads anything itself.
    """

    def __init__(self, model_id: str, deepface_name: str, dim: int, flip: bool | None = None):
        from .models.store import configure_deepface_env

        configure_deepface_env()
        # The registry pins DeepFace's ONNX weight files; without this, deepface switches to
        # TensorFlow (and .h5 files) by itself as soon as the tensorflow extra is installed.
        os.environ.setdefault("DEEPFACE_BACKEND_ENGINE", "onnx")
        try:
            from deepface import DeepFace
        except ImportError as exc:
            raise ModelError(
                f"{model_id} needs DeepFace: pip install 'facekit-cli[deepface]' ({exc})"
            ) from exc
        except Exception as exc:  # deepface import errors are many and varied
            raise ModelError(f"{model_id}: cannot import deepface ({exc})") from exc
        self.model_id = model_id
        self.dim = dim
        self.model = DeepFace.build_model(deepface_name)
        h, w = self.model.input_shape[:2] if len(self.model.input_shape) >= 2 else (160, 160)
        self.size = (int(w), int(h))
        self.normalization = DEEPFACE_NORMALIZATION.get(deepface_name, "base")
        if flip is not None:
            self.flip = flip

    def crops(self, rgb: np.ndarray, faces: Faces) -> np.ndarray:
        return align_crops(rgb, faces.landmarks, self.size)

    def embed_batch(self, crops: np.ndarray) -> np.ndarray:
        return deepface_forward(self.model.forward, crops, self.normalization)


#: DeepFace's normalisation for each model as its docs recommend (deepface 0.0.103,
#: ``deepface/modules/preprocessing.py::normalize_input``); ``represent()`` itself defaults to
#: "base" (BGR scaled to [0, 1]).
DEEPFACE_NORMALIZATION = {"Facenet512": "Facenet2018", "ArcFace": "ArcFace"}


def deepface_input(crops: np.ndarray, normalization: str) -> np.ndarray:
    """DeepFace's model input for aligned RGB ``uint8`` crops, as ``DeepFace.represent`` builds it.

    ``represent`` turns the RGB face into BGR, scales it to [0, 1] (``resize_image``), then
    ``normalize_input`` restores [0, 255] and applies ``normalization``: "base" keeps [0, 1],
    "Facenet2018" gives ``x/127.5 - 1``, "ArcFace" ``(x-127.5)/128``.
    """
    x = crops[:, :, :, ::-1].astype(np.float32)
    if normalization == "base":
        return x / 255.0
    if normalization == "Facenet2018":
        return x / 127.5 - 1.0
    if normalization == "ArcFace":
        return (x - 127.5) / 128.0
    raise ModelError(f"unsupported DeepFace normalisation {normalization!r}")


def deepface_forward(forward: Any, crops: np.ndarray, normalization: str) -> np.ndarray:
    """Run a DeepFace model's ``forward`` on crops with its normalisation; ``(n, dim)``."""
    out = forward(deepface_input(crops, normalization))
    return np.asarray(out, np.float32).reshape(len(crops), -1)


def _make(name: str, files: dict[str, Any], flip: bool | None) -> Embedder:
    from .models.registry import get_spec

    spec = get_spec(name)
    if name == "dlib":
        return DlibEmbedder(files, flip)
    if name == "mobilefacenet":
        return OnnxArcFaceStyleEmbedder(name, next(iter(files.values())), spec.dim or 128, flip)
    if name == "sface":
        from .models.derived import ensure_sface_repaired

        repaired = ensure_sface_repaired(files[spec.files[0].name])
        return OnnxArcFaceStyleEmbedder(name, repaired, 128, flip, mean=0.0, scale=1.0)
    if name == "arcface-mbf":
        return OnnxArcFaceStyleEmbedder(
            name, files[spec.files[0].name], spec.dim or 512, flip, mean=127.5, scale=127.5
        )
    if name == "facenet512":
        return DeepFaceEmbedder(name, "Facenet512", spec.dim or 512, flip)
    if name == "arcface":
        return DeepFaceEmbedder(name, "ArcFace", spec.dim or 512, flip)
    raise ModelError(f"no embedder for '{name}'")  # pragma: no cover


RECOGNIZERS = ("dlib", "mobilefacenet", "sface", "arcface-mbf", "facenet512", "arcface")
#: Mirror averaging per model (default on: the Stashface technique). Measured on lfw-dev
#: (benchmarks/calibrate_defaults.py): it changes pair AUC by less than 0.0002 either way, at
#: twice the embedding cost; see docs/accuracy.md.
DEFAULT_FLIP: dict[str, bool] = {}


def embedder_fingerprint(name: str, flip: bool | None = None) -> str:
    """Fingerprint of a recogniser's embeddings: weights + preprocessing (mirror averaging)."""
    from .models.runtime import fingerprint

    on = DEFAULT_FLIP.get(name, True) if flip is None else flip
    return fingerprint(name) + ("f" if on else "")


_cache: dict[tuple[str, bool | None], Embedder] = {}
_lock = threading.Lock()


def get_embedder(
    name: str, *, flip: bool | None = None, offline: bool | None = None, progress: Any = None
) -> Embedder:
    """Return recogniser ``name``, loading (and if needed fetching) it once per process.

    Raises:
        ModelError: unknown recogniser or unavailable weights.
    """
    from .models import store
    from .models.notices import licence_notice
    from .models.registry import get_spec

    if name not in RECOGNIZERS:
        raise UnknownModelError(
            f"unknown recogniser '{name}'; choose from: {', '.join(RECOGNIZERS)}"
        )
    with _lock:
        key = (name, flip)
        if key not in _cache:
            files = store.ensure(name, offline=offline, progress=progress)
            licence_notice(get_spec(name))
            try:
                emb = _make(name, files, flip)
            except ModelError:
                raise
            except Exception as exc:  # cv2.error, dlib RuntimeError, ORT Fail: all plain
                detail = " ".join(str(exc).split())[:300]
                raise ModelError(
                    f"cannot load recogniser {name} from "
                    f"{', '.join(map(str, files.values()))}: {detail}"
                ) from exc
            emb.fingerprint = embedder_fingerprint(name, emb.flip)
            _cache[key] = emb
        return _cache[key]


class Ensemble:
    """Several recognisers used together, each with a weight for distance fusion.

    Args:
        embedders: the recognisers.
        weights: one weight per recogniser (default: equal); normalised to sum to 1.

    Example:
        >>> ens = get_ensemble(["dlib", "mobilefacenet"])
        >>> emb = ens.embed(rgb, faces)   # Embeddings with one (n, dim) array per model
    """

    def __init__(self, embedders: Sequence[Embedder], weights: Sequence[float] | None = None):
        if not embedders:
            raise ModelError("an ensemble needs at least one recogniser")
        self.embedders = list(embedders)
        w = np.ones(len(embedders)) if weights is None else np.asarray(weights, float)
        if len(w) != len(embedders) or (w < 0).any() or w.sum() <= 0:
            raise ModelError("ensemble weights must be non-negative, one per model, not all zero")
        self.weights = dict(zip(self.model_ids, (w / w.sum()).tolist()))

    @property
    def model_ids(self) -> list[str]:
        return [e.model_id for e in self.embedders]

    @property
    def dims(self) -> dict[str, int]:
        return {e.model_id: e.dim for e in self.embedders}

    @property
    def fingerprints(self) -> dict[str, str]:
        return {e.model_id: e.fingerprint for e in self.embedders}

    def embed(self, rgb: np.ndarray, faces: Faces) -> Embeddings:
        """Embeddings of ``faces`` from every recogniser (see :meth:`Embedder.embed`)."""
        return Embeddings(
            {e.model_id: e.embed(rgb, faces) for e in self.embedders}, self.fingerprints
        )


def get_ensemble(
    models: Sequence[str] | str = DEFAULT_MODELS,
    weights: Sequence[float] | None = None,
    *,
    offline: bool | None = None,
    progress: Any = None,
    flip: bool | None = None,
) -> Ensemble:
    """Build an :class:`Ensemble` from model names (a list or a comma-separated string)."""
    from .models.registry import parse_model_list

    names = parse_model_list(models, kind="recognizer")
    return Ensemble(
        [get_embedder(n, flip=flip, offline=offline, progress=progress) for n in names], weights
    )
