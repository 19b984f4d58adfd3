"""Unit tests of the typed batch records (Faces, Embeddings, ImageResult)."""

from __future__ import annotations

import numpy as np
import pytest

from facekit.types import Embeddings, Faces, ImageResult
from factories import make_embeddings, make_faces


def test_faces_shapes_and_dtypes():
    f = make_faces(3)
    assert len(f) == 3
    assert f.xyxy.shape == (3, 4) and f.xyxy.dtype == np.float32
    assert f.confidence.shape == (3,) and f.confidence.dtype == np.float32
    assert f.landmarks.shape == (3, 5, 2) and f.landmarks.dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"confidence": np.zeros(2)}, "confidence"),
        ({"landmarks": np.zeros((2, 5, 2))}, "landmarks"),
        ({"data": {"extra": np.zeros(4)}}, "extra"),
    ],
)
def test_faces_rejects_mismatched_shapes(kwargs, match):
    args = {"xyxy": np.zeros((3, 4)), "confidence": np.zeros(3), "landmarks": np.zeros((3, 5, 2))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Faces(**args)


def test_faces_mask_index_and_int():
    f = make_faces(4)
    sub = f[f.confidence > 0.75]
    assert len(sub) == 2
    np.testing.assert_array_equal(sub.xyxy, f.xyxy[:2])
    assert sub.data["dlib_shape5"].shape == (2, 5, 2)
    assert sub.metadata == f.metadata and sub.metadata is not f.metadata
    one = f[2]
    assert len(one) == 1 and one.xyxy.shape == (1, 4)
    np.testing.assert_array_equal(one.landmarks[0], f.landmarks[2])
    np.testing.assert_array_equal(f[np.array([3, 0])].confidence, f.confidence[[3, 0]])


def test_faces_empty_and_merge():
    e = Faces.empty(source="x.jpg")
    assert len(e) == 0 and e.metadata == {"source": "x.jpg"}
    assert e.xywh.shape == (0, 4) and e.size.shape == (0,)
    a, b = make_faces(2), make_faces(3, seed=1)
    m = Faces.merge([a, Faces.empty(), b])
    assert len(m) == 5
    np.testing.assert_array_equal(m.xyxy[2:], b.xyxy)
    assert "dlib_shape5" not in m.data  # only columns every part has are kept
    m2 = Faces.merge([a, b])
    assert m2.data["dlib_shape5"].shape == (5, 5, 2)
    assert len(Faces.merge([])) == 0


def test_faces_xywh_size_scaled():
    f = Faces(
        np.array([[10, 20, 50, 100]]),
        [0.5],
        np.full((1, 5, 2), 30.0),
        {"dlib_shape5": np.full((1, 5, 2), 40.0)},
    )
    np.testing.assert_array_equal(f.xywh, [[10, 20, 40, 80]])
    np.testing.assert_array_equal(f.size, [40])
    s = f.scaled(2.5)
    np.testing.assert_allclose(s.xyxy, [[25, 50, 125, 250]])
    np.testing.assert_allclose(s.landmarks, 75.0)
    np.testing.assert_allclose(s.data["dlib_shape5"], 100.0)
    np.testing.assert_array_equal(s.confidence, f.confidence)
    np.testing.assert_array_equal(f.xyxy, [[10, 20, 50, 100]])  # original untouched


def test_embeddings_shapes_index_merge():
    e = make_embeddings(3, {"dlib": 128, "mobilefacenet": 128})
    assert len(e) == 3 and e.models == ["dlib", "mobilefacenet"]
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in e.vectors.values())
    np.testing.assert_allclose(np.linalg.norm(e.vectors["dlib"], axis=1), 1, atol=1e-6)
    sub = e[np.array([True, False, True])]
    assert len(sub) == 2 and sub.fingerprints == e.fingerprints
    assert e[1].vectors["dlib"].shape == (1, 128)
    m = Embeddings.merge([e, make_embeddings(2, {"dlib": 128, "mobilefacenet": 128}, seed=1)])
    assert len(m) == 5 and m.vectors["mobilefacenet"].shape == (5, 128)
    assert len(Embeddings.merge([])) == 0 and len(Embeddings({})) == 0
    with pytest.raises(ValueError, match="disagree"):
        Embeddings({"a": np.zeros((2, 4)), "b": np.zeros((3, 4))})


def test_embeddings_empty():
    e = Embeddings.empty({"dlib": 128}, {"dlib": "abc"})
    assert len(e) == 0 and e.vectors["dlib"].shape == (0, 128)
    assert e.fingerprints == {"dlib": "abc"}


def test_embeddings_of_zero_faces():
    # What Ensemble.embed builds for a photo without a face.
    e = Embeddings({"dlib": np.zeros((0, 128), np.float32)})
    assert len(e) == 0


def test_image_result_defaults():
    r = ImageResult("a.jpg")
    assert r.ok and len(r.faces) == 0 and len(r.embeddings) == 0 and r.time is None
    assert not ImageResult("b.jpg", error="b.jpg: truncated").ok
