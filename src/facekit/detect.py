"""Face detection: image -> :class:`~facekit.types.Faces` with five landmarks.

Detectors are created through :func:`get_detector`, which loads each model once per process.
All detectors work on RGB ``uint8`` arrays and return boxes in the coordinates of the array
they were given; :func:`detect_image` runs them on a downscaled copy of large photos and maps
the boxes back to original pixels.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np

from .align import dlib5_to_standard
from .errors import ModelError, UnknownModelError
from .types import Faces

log = logging.getLogger(__name__)

__all__ = ["Detector", "get_detector", "detect_image", "DETECTORS", "DEFAULT_DETECTOR"]

DEFAULT_DETECTOR = "dlib-hog"

#: Long side (pixels) of the copy detection runs on. HOG at upsample 0 finds faces of about
#: 80 px and up in that copy; larger photos are detected on a downscaled copy.
DEFAULT_MAX_SIDE = 1600


class Detector(ABC):
    """A face detector.

    Attributes:
        name: registry name (``dlib-hog``, ``yunet``...).
        fingerprint: short hash of the weight files.
    """

    name: str = ""
    fingerprint: str = ""

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> Faces:
        """Detect faces.

        Args:
            rgb: ``(H, W, 3) uint8`` image.

        Returns:
            :class:`Faces` in the pixel coordinates of ``rgb``.
        """


def _dlib_rect(x1: float, y1: float, x2: float, y2: float) -> Any:
    import dlib

    return dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))


class _DlibShapeMixin:
    shape_predictor: Any

    def _faces_from_rects(self, rgb: np.ndarray, rects: list[Any], scores: list[float]) -> Faces:
        if not rects:
            return Faces.empty(detector=self.name)  # type: ignore[attr-defined]
        shapes = np.array(
            [[(p.x, p.y) for p in self.shape_predictor(rgb, r).parts()] for r in rects], np.float32
        )
        xyxy = np.array(
            [[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32
        )
        h, w = rgb.shape[:2]
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        return Faces(
            xyxy,
            np.asarray(scores, np.float32),
            dlib5_to_standard(shapes),
            {"dlib_shape5": shapes},
            {"detector": self.name},  # type: ignore[attr-defined]
        )


class DlibHogDetector(_DlibShapeMixin, Detector):
    """dlib's HOG + linear SVM frontal face detector, plus its 5-point shape predictor.

    Fast on a CPU (about 13 ms on a 250x250 photo); finds frontal faces of ~80 px and up
    (40 px with ``upsample=1``, at 4x the cost).
    """

    name = "dlib-hog"

    def __init__(self, files: dict[str, Any], upsample: int = 0, threshold: float = 0.0):
        import dlib

        self.detector = _cached_hog_detector()
        self.shape_predictor = dlib.shape_predictor(
            str(files["shape_predictor_5_face_landmarks.dat"])
        )
        self.upsample = upsample
        self.threshold = threshold

    def detect(self, rgb: np.ndarray, *, gray: bool = False) -> Faces:
        """Faces of ``rgb``; ``gray=True`` scans a grayscale copy (the landmarks still come
        from ``rgb``): 12-17% less CPU (one gradient channel instead of three), finding
        834 of the 837 faces an RGB scan finds on lfw-dev + face_recognition examples."""
        scan = rgb
        if gray and rgb.ndim == 3:
            import cv2

            scan = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        rects, scores, _ = self.detector.run(scan, self.upsample, self.threshold)
        return self._faces_from_rects(rgb, list(rects), list(scores))


def _cached_hog_detector() -> Any:
    """dlib's frontal face detector, loaded from a cached file.

    ``dlib.get_frontal_face_detector()`` decodes the model from text compiled into dlib, which
    takes ~0.36 s; the same model saved once to the model folder loads in ~2 ms. The cache is
    keyed by dlib's version and verified like every derived model file
    (:mod:`facekit.models.derived`: a sidecar with its size and SHA-256, checked on load), so a
    cached file changed on disk is rebuilt, never used.
    """
    import tempfile
    from pathlib import Path

    import dlib

    from .models.derived import ensure_derived
    from .models.store import models_dir

    path = models_dir() / f"dlib-{dlib.__version__}-frontal_face_detector.svm"

    def build(_src: Path) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "hog.svm"
            dlib.get_frontal_face_detector().save(str(out))
            return out.read_bytes()

    try:
        ensure_derived(
            path,
            path,
            1,
            build,
            what="dlib HOG detector cache",
            source_id=f"dlib-{dlib.__version__}",
        )
        return dlib.fhog_object_detector(str(path))
    except (OSError, RuntimeError) as exc:  # read-only model folder, or a damaged file
        log.debug("cannot use the cached HOG detector at %s: %s", path, exc)
        return dlib.get_frontal_face_detector()


class DlibCnnDetector(_DlibShapeMixin, Detector):
    """dlib's MMOD CNN detector: more robust to pose than HOG, but about 1 s per photo on a CPU."""

    name = "dlib-cnn"

    def __init__(self, files: dict[str, Any], upsample: int = 0, threshold: float = 0.0):
        import dlib

        self.detector = dlib.cnn_face_detection_model_v1(str(files["mmod_human_face_detector.dat"]))
        self.shape_predictor = dlib.shape_predictor(
            str(files["shape_predictor_5_face_landmarks.dat"])
        )
        self.upsample = upsample
        self.threshold = threshold

    def detect(self, rgb: np.ndarray) -> Faces:
        dets = [d for d in self.detector(rgb, self.upsample) if d.confidence >= self.threshold]
        return self._faces_from_rects(rgb, [d.rect for d in dets], [d.confidence for d in dets])


class YuNetDetector(Detector):
    """OpenCV's YuNet (``cv2.FaceDetectorYN``): fast CNN detector with five landmarks (MIT)."""

    name = "yunet"

    def __init__(self, files: dict[str, Any], threshold: float = 0.7, nms: float = 0.3):
        import cv2

        self._path = str(files["face_detection_yunet_2023mar.onnx"])
        self._cv2 = cv2
        self.threshold = threshold
        with quiet_opencv():
            try:
                self.model = cv2.FaceDetectorYN.create(
                    self._path, "", (320, 320), threshold, nms, 5000
                )
            except cv2.error as exc:
                raise ModelError(f"cannot load model {self._path}: {_cv2_reason(exc)}") from exc
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> Faces:
        h, w = rgb.shape[:2]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        with self._lock, quiet_opencv():
            self.model.setInputSize((w, h))
            _, out = self.model.detect(bgr)
        if out is None or len(out) == 0:
            return Faces.empty(detector=self.name)
        out = np.asarray(out, np.float32)
        xyxy = out[:, 0:4].copy()
        xyxy[:, 2:] += xyxy[:, :2]
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        return Faces(xyxy, out[:, 14], out[:, 4:14].reshape(-1, 5, 2), {}, {"detector": self.name})


class RetinaFaceDetector(Detector):
    """RetinaFace with a MobileNet-0.25 backbone (ONNX from libfacedetection.train, Apache-2.0)."""

    name = "retinaface"
    _min_sizes = ((16, 32), (64, 128), (256, 512))
    _steps = (8, 16, 32)
    _variance = (0.1, 0.2)

    def __init__(self, files: dict[str, Any], threshold: float = 0.8, nms: float = 0.4):
        from .models.runtime import onnx_session

        self.session = onnx_session(files["retinaface_mbnet0.25.onnx"])
        self.threshold = threshold
        self.nms = nms

    @functools.lru_cache(maxsize=8)  # noqa: B019 - few distinct sizes, detector lives for the process
    def _priors(self, h: int, w: int) -> np.ndarray:
        anchors = []
        for step, sizes in zip(self._steps, self._min_sizes):
            fh, fw = int(np.ceil(h / step)), int(np.ceil(w / step))
            for i in range(fh):
                for j in range(fw):
                    for s in sizes:
                        anchors.append([(j + 0.5) * step / w, (i + 0.5) * step / h, s / w, s / h])
        return np.array(anchors, np.float32)

    def detect(self, rgb: np.ndarray) -> Faces:
        import cv2

        h, w = rgb.shape[:2]
        # BGR minus the ImageNet-style means the model was trained with (Pytorch_Retinaface).
        x = rgb[:, :, ::-1].astype(np.float32) - np.array([104, 117, 123], np.float32)
        x = x.transpose(2, 0, 1)[None]
        loc, conf, landm = self.session.run(None, {self.session.get_inputs()[0].name: x})
        pri = self._priors(h, w)
        if len(pri) != loc.shape[1]:
            raise ModelError(f"retinaface: unexpected output size {loc.shape[1]} for {w}x{h} input")
        v0, v1 = self._variance
        scores = conf[0, :, 1]
        keep = scores > self.threshold
        loc, landm, pri, scores = loc[0][keep], landm[0][keep], pri[keep], scores[keep]
        cxcy = pri[:, :2] + loc[:, :2] * v0 * pri[:, 2:]
        wh = pri[:, 2:] * np.exp(loc[:, 2:] * v1)
        boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], 1) * [w, h, w, h]
        lm = (pri[:, None, :2] + landm.reshape(-1, 5, 2) * v0 * pri[:, None, 2:]) * [w, h]
        idx = cv2.dnn.NMSBoxes(
            [[float(a), float(b), float(c - a), float(d - b)] for a, b, c, d in boxes],
            scores.tolist(),
            self.threshold,
            self.nms,
        )
        keep_idx = np.asarray(idx, int).reshape(-1)
        boxes = boxes[keep_idx]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return Faces(boxes, scores[keep_idx], lm[keep_idx], {}, {"detector": self.name})


class YoloFaceDetector(Detector):
    """YOLOv8-face through ultralytics (``pip install 'facekit-cli[yolo]'``; AGPL-3.0)."""

    name = "yolov8-face"

    def __init__(self, files: dict[str, Any], threshold: float = 0.5):
        try:
            from ultralytics import YOLO
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ModelError(
                "yolov8-face needs the 'yolo' extra: pip install 'facekit-cli[yolo]'"
            ) from exc
        self.model = YOLO(str(next(iter(files.values()))))
        self.threshold = threshold

    def detect(self, rgb: np.ndarray) -> Faces:  # pragma: no cover - needs the optional extra
        res = self.model.predict(
            np.ascontiguousarray(rgb[:, :, ::-1]), conf=self.threshold, verbose=False
        )[0]
        xyxy = res.boxes.xyxy.cpu().numpy()
        conf = res.boxes.conf.cpu().numpy()
        if res.keypoints is not None and len(xyxy):
            lm = res.keypoints.xy.cpu().numpy()[:, :5, :]
        else:
            lm = np.full((len(xyxy), 5, 2), np.nan, np.float32)
        return Faces(xyxy, conf, lm, {}, {"detector": self.name})


def _scrfd(files: dict[str, Any], **options: Any) -> Detector:
    from .detect_onnx import ScrfdDetector

    return ScrfdDetector(files, name="scrfd", **options)


def _scrfd_500m(files: dict[str, Any], **options: Any) -> Detector:
    from .detect_onnx import ScrfdDetector

    return ScrfdDetector(files, name="scrfd-500m", **options)


def _blazeface(files: dict[str, Any], **options: Any) -> Detector:
    from .detect_onnx import BlazeFaceDetector

    return BlazeFaceDetector(files, **options)


DETECTORS: dict[str, Any] = {
    "dlib-hog": DlibHogDetector,
    "dlib-cnn": DlibCnnDetector,
    "yunet": YuNetDetector,
    "retinaface": RetinaFaceDetector,
    "scrfd": _scrfd,
    "scrfd-500m": _scrfd_500m,
    "blazeface": _blazeface,
    "yolov8-face": YoloFaceDetector,
}


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (e.g. ``[ WARN:0@0.016] ... setPreferableTarget``).

    OpenCV 5's DNN engine logs a warning on stderr whenever a model is loaded or its input size
    set; facekit reports its own errors, so OpenCV's log level is ERROR inside this block.
    """
    import cv2

    logging_mod = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_mod is None:  # pragma: no cover - very old OpenCV builds
        yield
        return
    with _cv2_log_lock:
        previous = logging_mod.getLogLevel()
        logging_mod.setLogLevel(logging_mod.LOG_LEVEL_ERROR)
        try:
            yield
        finally:
            logging_mod.setLogLevel(previous)


_cv2_log_lock = threading.RLock()


def _cv2_reason(exc: BaseException) -> str:
    """The useful part of a ``cv2.error`` message (its last line), on one line."""
    text = " ".join(str(exc).split())
    return text.split(" error: ", 1)[-1][:300]


_cache: dict[tuple[Any, ...], Detector] = {}
_cache_lock = threading.Lock()


def get_detector(
    name: str = DEFAULT_DETECTOR,
    *,
    offline: bool | None = None,
    progress: Any = None,
    **options: Any,
) -> Detector:
    """Return the detector ``name``, loading (and if needed fetching) its model once per process.

    Args:
        name: a detector from :data:`DETECTORS`.
        offline: forbid downloads (default: ``FACEKIT_OFFLINE``).
        progress: download progress callback, see :mod:`facekit.models.store`.
        **options: detector options such as ``upsample`` or ``threshold``.

    Raises:
        ModelError: unknown detector, or its files are missing and cannot be fetched.
    """
    from .models import store
    from .models.notices import licence_notice
    from .models.registry import get_spec
    from .models.runtime import fingerprint

    if name not in DETECTORS:
        raise UnknownModelError(f"unknown detector '{name}'; choose one of: {', '.join(DETECTORS)}")
    get_spec(name)
    key = (name, tuple(sorted(options.items())))
    with _cache_lock:
        if key not in _cache:
            files = store.ensure(name, offline=offline, progress=progress)
            licence_notice(get_spec(name))
            try:
                det = DETECTORS[name](files, **options)
            except ModelError:
                raise
            except Exception as exc:  # cv2.error, dlib RuntimeError, ORT Fail: all plain
                raise ModelError(
                    f"cannot load detector {name} from {', '.join(map(str, files.values()))}: "
                    f"{_cv2_reason(exc)}"
                ) from exc
            det.fingerprint = fingerprint(name)
            _cache[key] = det
        return _cache[key]


def detect_image(
    detector: Detector, rgb: np.ndarray, max_side: int = DEFAULT_MAX_SIDE, *, gray: bool = False
) -> Faces:
    """Detect faces on a copy of ``rgb`` whose long side is at most ``max_side`` pixels.

    Boxes and landmarks are mapped back to the pixels of ``rgb``. ``gray=True`` lets dlib's
    HOG detector scan a grayscale copy (:meth:`DlibHogDetector.detect`; video frames); other
    detectors ignore it.

    Returns:
        :class:`Faces` sorted by box area, largest first, with ``data["pose"]``: ``(n, 3)``
        yaw, pitch, roll in degrees (:mod:`facekit.pose`).
    """
    import cv2

    # dlib misreads arrays with padded rows (PyAV frames, slices): hand detectors a C-contiguous one.
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    scale = 1.0
    small = rgb
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        small = cv2.resize(
            rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    faces = (
        detector.detect(small, gray=True)
        if gray and isinstance(detector, DlibHogDetector)
        else detector.detect(small)
    )
    if scale != 1.0 and len(faces):
        faces = faces.scaled(1.0 / scale)
    if len(faces) > 1:
        area = (faces.xyxy[:, 2] - faces.xyxy[:, 0]) * (faces.xyxy[:, 3] - faces.xyxy[:, 1])
        faces = faces[np.argsort(-area, kind="stable")]
    faces.metadata.update(detector=detector.name, width=w, height=h)
    if len(faces):
        from .pose import face_poses

        faces.data["pose"] = face_poses(faces, w, h)
    return faces
