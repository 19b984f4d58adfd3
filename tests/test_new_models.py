"""SFace (repaired), ArcFace-MBF, SCRFD and BlazeFace on real photos, from the model mirror.

Every test here skips with a reason when ../shared (or its models folder) is absent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from facekit.models import derived
from facekit.models.registry import get_spec

pytestmark = pytest.mark.usefixtures("mirror")

NEW_RECOGNISERS = ("sface", "arcface-mbf")
NEW_DETECTORS = ("scrfd", "scrfd-500m", "blazeface")


def _photos(lfw: Path, people: int, per_person: int) -> dict[str, list[Path]]:
    out = {}
    for folder in sorted(p for p in lfw.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) >= per_person:
            out[folder.name] = photos[:per_person]
        if len(out) == people:
            break
    return out


def _rgb(path: Path) -> np.ndarray:
    from facekit.imageio import load_image

    return load_image(path).rgb


@pytest.fixture
def sface_original(mirror: Path) -> Path:
    from facekit.models import store

    return store.ensure("sface")[get_spec("sface").files[0].name]


def test_sface_original_is_verified_then_repaired(sface_original: Path, mirror: Path) -> None:
    import onnxruntime as ort

    from facekit.models.runtime import file_sha256

    assert file_sha256(sface_original) == get_spec("sface").files[0].sha256
    # As published, ONNX Runtime 1.32 wants values for the 29 dangling inputs.
    so = ort.SessionOptions()
    so.log_severity_level = 4
    raw = ort.InferenceSession(str(sface_original), so, providers=["CPUExecutionProvider"])
    assert len(raw.get_inputs()) > 1
    repaired = derived.ensure_sface_repaired(sface_original)
    sess = ort.InferenceSession(str(repaired), so, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["data"]
    out = sess.run(None, {"data": np.zeros((1, 3, 112, 112), np.float32)})[0]
    assert out.shape == (1, 128)
    meta = json.loads(derived.sidecar(repaired).read_text())
    assert meta["source_sha256"] == get_spec("sface").files[0].sha256
    assert meta["sha256"] == file_sha256(repaired) and meta["size"] == repaired.stat().st_size


def test_repaired_sface_tampered_in_place_is_rebuilt(sface_original: Path, caplog) -> None:
    repaired = derived.ensure_sface_repaired(sface_original)
    good = repaired.read_bytes()
    data = bytearray(good)
    data[-3000:-1500], data[-1500:] = data[-1500:], data[-3000:-1500]  # same size
    repaired.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="facekit.models.derived"):
        assert derived.ensure_sface_repaired(sface_original) == repaired
    assert "SHA-256 differs" in caplog.text
    assert repaired.read_bytes() == good


def test_sface_matches_opencv_face_recognizer(sface_original: Path, lfw: Path) -> None:
    """Our ONNX Runtime SFace gives cv2.FaceRecognizerSF's features (same preprocessing)."""
    import cv2

    from facekit.detect import detect_image, get_detector
    from facekit.embed import get_embedder

    repaired = derived.ensure_sface_repaired(sface_original)
    rec = cv2.FaceRecognizerSF.create(str(repaired), "")
    emb = get_embedder("sface", flip=False)
    det = get_detector("yunet")
    for photos in list(_photos(lfw, 3, 1).values()):
        rgb = _rgb(photos[0])
        faces = detect_image(det, rgb)
        crops = emb.crops(rgb, faces[:1])
        ours = emb.embed_crops(crops)[0]
        theirs = np.asarray(rec.feature(np.ascontiguousarray(crops[0][:, :, ::-1]))).ravel()
        assert float(ours @ (theirs / np.linalg.norm(theirs))) > 0.9999


@pytest.mark.parametrize("model", NEW_RECOGNISERS)
def test_recogniser_separates_people(model: str, lfw: Path) -> None:
    """Same-person similarities beat every different-person one on 4 people x 2 photos."""
    from facekit.detect import detect_image, get_detector
    from facekit.embed import get_embedder

    det = get_detector("yunet")
    emb = get_embedder(model)
    assert emb.dim == get_spec(model).dim
    vecs, who = [], []
    for person, photos in _photos(lfw, 4, 2).items():
        for photo in photos:
            rgb = _rgb(photo)
            faces = detect_image(det, rgb)[:1]
            v = emb.embed(rgb, faces)
            assert v.shape == (1, emb.dim) and abs(float(np.linalg.norm(v)) - 1) < 1e-4
            vecs.append(v[0])
            who.append(person)
    sim = np.stack(vecs) @ np.stack(vecs).T
    same = np.array(who)[:, None] == np.array(who)[None, :]
    off = ~np.eye(len(who), dtype=bool)
    assert sim[same & off].min() > sim[~same].max() + 0.1, model


@pytest.mark.parametrize("name", NEW_DETECTORS)
def test_detector_finds_lfw_faces_with_landmarks(name: str, lfw: Path) -> None:
    from facekit.detect import detect_image, get_detector

    det = get_detector(name)
    for photos in _photos(lfw, 6, 1).values():
        rgb = _rgb(photos[0])
        faces = detect_image(det, rgb)
        assert len(faces) >= 1, (name, photos[0])
        x1, y1, x2, y2 = faces.xyxy[0]
        # LFW photos are centred on the face
        assert x1 < 125 < x2 and y1 < 125 < y2, (name, faces.xyxy[0])
        lm = faces.landmarks[0]
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0], "left before right"
        assert lm[:2, 1].mean() < lm[2, 1] < lm[3:, 1].mean(), "eyes above nose above mouth"
        assert 0 < faces.confidence[0] <= 1


@pytest.mark.parametrize("name", ["scrfd", "blazeface"])
def test_detector_finds_both_faces(name: str, fr_examples: Path) -> None:
    from facekit.detect import detect_image, get_detector

    faces = detect_image(get_detector(name), _rgb(fr_examples / "two_people.jpg"))
    assert len(faces) == 2, name


def test_noncommercial_notice_once(caplog) -> None:
    from facekit.models import notices

    spec = get_spec("arcface-mbf")
    notices._shown.clear()
    with caplog.at_level(logging.WARNING, logger="facekit.licence"):
        assert notices.licence_notice(spec)
        assert not notices.licence_notice(spec)
        notices._shown.clear()  # a new process: the notice file remembers it was shown
        assert not notices.licence_notice(spec)
        assert not notices.licence_notice(get_spec("sface"))  # commercial: no notice
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "non-commercial" in lines[0] and "arcface-mbf" in lines[0]


def test_recommend_follows_licence_choice(monkeypatch) -> None:
    from facekit.models.recommend import recommend, resolve_best

    rec = recommend(False)
    assert rec.models == ("sface",) and rec.detector == "yunet"
    assert rec.noncommercial == ()
    rec = recommend(True)
    # YuNet found as many faces as SCRFD at a 13th of the cost (docs/models.md): still first
    assert rec.models == ("arcface-mbf",) and rec.detector == "yunet"
    assert set(rec.noncommercial) == {"arcface-mbf"}
    assert resolve_best("best-nc", "best") == ("arcface-mbf", "yunet")
    assert resolve_best("dlib", None) == ("dlib", None)
    monkeypatch.delenv("FACEKIT_MODEL_MIRROR")
    rec = recommend(True)  # nothing beyond the PyPI-installed dlib models
    assert rec.models == ("dlib",) and rec.detector == "dlib-hog"
    assert "arcface-mbf" in rec.missing_better


def test_corrupt_model_file_is_a_model_error(tmp_path: Path) -> None:
    from facekit.detect_onnx import ScrfdDetector
    from facekit.errors import ModelError

    junk = tmp_path / "scrfd_2.5g.onnx"
    junk.write_bytes(b"\0garbage" * 100)
    with pytest.raises(ModelError, match="cannot load model"):
        ScrfdDetector({"scrfd_2.5g.onnx": junk})


def test_yunet_logs_nothing_from_opencv(fr_examples: Path, capfd) -> None:
    from facekit.detect import YuNetDetector
    from facekit.models import store

    det = YuNetDetector(store.ensure("yunet"))
    det.detect(_rgb(fr_examples / "two_people.jpg"))
    assert "WARN" not in capfd.readouterr().err


def test_mirror_copy_is_the_pinned_file(mirror: Path) -> None:
    """The mirror's files are the ones the registry pins (sizes and hashes)."""
    import hashlib

    for name in (*NEW_RECOGNISERS, *NEW_DETECTORS):
        for f in get_spec(name).files:
            path = mirror / f.name
            assert path.stat().st_size == f.size, f.name
            assert hashlib.sha256(path.read_bytes()).hexdigest() == f.sha256, f.name


def test_deepface_preprocessing_matches_deepface() -> None:
    """facekit's DeepFace input equals DeepFace's own resize + normalize_input chain."""
    pytest.importorskip("deepface")
    from deepface.modules import preprocessing

    from facekit.embed import deepface_input

    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (1, 160, 160, 3), dtype=np.uint8)
    for norm in ("base", "Facenet2018", "ArcFace"):
        theirs = preprocessing.resize_image(crop[0][:, :, ::-1].copy(), (160, 160))
        theirs = preprocessing.normalize_input(theirs.copy(), normalization=norm)
        np.testing.assert_allclose(deepface_input(crop, norm), theirs, atol=1e-5)


def test_cached_hog_detector_is_verified(caplog) -> None:
    """The cached HOG detector (a derived file) is rebuilt when changed on disk."""
    pytest.importorskip("dlib")
    import dlib

    from facekit.detect import _cached_hog_detector
    from facekit.models.store import models_dir

    _cached_hog_detector()
    path = models_dir() / f"dlib-{dlib.__version__}-frontal_face_detector.svm"
    good = path.read_bytes()
    assert json.loads(derived.sidecar(path).read_text())["size"] == len(good)
    data = bytearray(good)
    data[100:110] = b"9999999999"  # same size, different weights
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="facekit.models.derived"):
        _cached_hog_detector()
    assert "SHA-256 differs" in caplog.text and path.read_bytes() == good
