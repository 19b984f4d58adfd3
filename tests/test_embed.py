"""Recognisers on real faces: identity separation, normalisation, flip, ensemble, caching."""

from __future__ import annotations

import numpy as np
import pytest

from facekit.embed import Embedder, Ensemble, get_embedder, get_ensemble
from facekit.errors import ModelError
from facekit.pipeline import Pipeline, PipelineConfig

# Two people, two photos each.
PEOPLE = {"Bill_Clinton": ("0001", "0002"), "Ann_Veneman": ("0001", "0003")}


@pytest.fixture(scope="module")
def photos(lfw):
    return {(n, k): str(lfw / n / f"{n}_{k}.jpg") for n, ks in PEOPLE.items() for k in ks}


def _assert_same_closer(vectors: dict[tuple[str, str], np.ndarray]) -> None:
    keys = list(vectors)
    same, diff = [], []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            d = 1 - float(vectors[a] @ vectors[b])
            (same if a[0] == b[0] else diff).append(d)
    assert max(same) < min(diff), (same, diff)


@pytest.mark.parametrize("models", [("dlib",), ("mobilefacenet",)])
def test_same_person_closer_than_different_person(models, photos, mirror):
    pipe = Pipeline(PipelineConfig(models=models, digest=False))
    vectors = {}
    for key, path in photos.items():
        r = pipe.process_path(path)
        assert r.ok and len(r.faces) >= 1, r.error
        emb = r.embeddings.vectors[models[0]]
        assert emb.dtype == np.float32 and emb.shape == (len(r.faces), 128)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        assert r.embeddings.fingerprints[models[0]]
        vectors[key] = emb[0]
    _assert_same_closer(vectors)


def test_flip_on_off(photos, mirror):
    from facekit.detect import detect_image, get_detector
    from facekit.imageio import load_image

    rgb = load_image(photos[("Bill_Clinton", "0001")]).rgb
    faces = detect_image(get_detector("dlib-hog"), rgb)
    on, off = get_embedder("mobilefacenet", flip=True), get_embedder("mobilefacenet", flip=False)
    assert on is not off and on.flip and not off.flip
    assert on.fingerprint == off.fingerprint + "f"
    crops = on.crops(rgb, faces)
    e_on, e_off = on.embed_crops(crops), off.embed_crops(crops)
    assert not np.allclose(e_on, e_off, atol=1e-4)
    assert float(e_on[0] @ e_off[0]) > 0.8
    # With flip on, a face and its mirror image get the same embedding.
    mirrored = np.ascontiguousarray(crops[:, :, ::-1])
    np.testing.assert_allclose(on.embed_crops(mirrored), e_on, atol=1e-5)
    assert not np.allclose(off.embed_crops(mirrored), e_off, atol=1e-3)
    # Mirror averaging is on by default for every model (dlib included); it can be turned off.
    assert get_embedder("dlib").flip is True
    dlib_off = get_embedder("dlib", flip=False)
    assert not dlib_off.flip and dlib_off.fingerprint + "f" == get_embedder("dlib").fingerprint
    e_dlib_on, e_dlib_off = get_embedder("dlib").embed(rgb, faces), dlib_off.embed(rgb, faces)
    assert e_dlib_on.shape == e_dlib_off.shape == (1, 128)
    assert 0.9 < float(e_dlib_on[0] @ e_dlib_off[0]) < 0.99999


class _Fake(Embedder):
    def __init__(self, model_id: str, dim: int = 4):
        self.model_id, self.dim = model_id, dim

    def crops(self, rgb, faces):
        return np.zeros((len(faces), 2, 2, 3), np.uint8)

    def embed_batch(self, crops):
        return np.ones((len(crops), self.dim), np.float32)


def test_ensemble_weights_validation():
    a, b = _Fake("a"), _Fake("b", 8)
    assert Ensemble([a, b]).weights == {"a": 0.5, "b": 0.5}
    assert Ensemble([a, b], [1, 3]).weights == {"a": 0.25, "b": 0.75}
    assert Ensemble([a, b]).dims == {"a": 4, "b": 8}
    for bad in ([1], [1, 2, 3], [-1, 2], [0, 0]):
        with pytest.raises(ModelError, match="weights"):
            Ensemble([a, b], bad)
    with pytest.raises(ModelError, match="at least one"):
        Ensemble([])


def test_models_loaded_once_and_unknown_names(mirror):
    assert get_embedder("dlib") is get_embedder("dlib")
    ens = get_ensemble("dlib, mobilefacenet", [1, 1])
    assert ens.model_ids == ["dlib", "mobilefacenet"]
    assert ens.embedders[0] is get_embedder("dlib")
    assert get_ensemble(["mobilefacenet"]).embedders[0] is ens.embedders[1]
    with pytest.raises(ModelError, match="unknown recogniser"):
        get_embedder("nope")
    with pytest.raises(ModelError):
        get_ensemble("dlib-hog")  # a detector
