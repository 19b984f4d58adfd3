"""Detectors on real photos: counts, boxes in original pixels, model cache."""

from __future__ import annotations

import numpy as np
import pytest

from facekit.detect import detect_image, get_detector
from facekit.errors import ModelError
from facekit.imageio import load_image


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / area)


@pytest.fixture(scope="module")
def clinton(lfw):
    return load_image(lfw / "Bill_Clinton" / "Bill_Clinton_0001.jpg").rgb


def test_dlib_hog_finds_one_face_in_an_lfw_photo(clinton):
    faces = detect_image(get_detector("dlib-hog"), clinton)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces.xyxy[0]
    # LFW crops are centred on the face, 250x250.
    assert 80 < (x1 + x2) / 2 < 170 and 80 < (y1 + y2) / 2 < 170
    assert 60 < x2 - x1 < 180
    assert faces.metadata == {"detector": "dlib-hog", "width": 250, "height": 250}
    assert faces.data["dlib_shape5"].shape == (1, 5, 2)


def test_dlib_hog_on_a_group_photo_largest_first(fr_examples):
    rgb = load_image(fr_examples / "knn_examples" / "test" / "obama_and_biden.jpg").rgb
    faces = detect_image(get_detector("dlib-hog"), rgb)
    # Obama and Biden, plus a smaller face in the background (3 with facekit 0.1 / dlib 19.24).
    assert len(faces) >= 2
    area = (faces.xyxy[:, 2] - faces.xyxy[:, 0]) * (faces.xyxy[:, 3] - faces.xyxy[:, 1])
    assert list(area) == sorted(area, reverse=True)
    assert (faces.xyxy[:, [0, 2]] <= rgb.shape[1]).all() and (
        faces.xyxy[:, [1, 3]] <= rgb.shape[0]
    ).all()


def test_hog_gray_scan_finds_the_same_faces_with_rgb_landmarks(fr_examples, mirror, clinton):
    """Video frames are scanned in grayscale by HOG: same faces, landmarks still from RGB;
    other detectors ignore the flag."""
    rgb = load_image(fr_examples / "knn_examples" / "test" / "obama_and_biden.jpg").rgb
    hog = get_detector("dlib-hog")
    plain, gray = detect_image(hog, rgb), detect_image(hog, rgb, gray=True)
    assert len(gray) == len(plain) >= 2
    for a, b in zip(plain.xyxy, gray.xyxy, strict=True):
        assert _iou(a, b) > 0.9
    # the landmarks come from the shape predictor on the same boxes of the RGB image
    ours = detect_image(hog, clinton, gray=True)
    base = detect_image(hog, clinton)
    assert np.abs(ours.landmarks - base.landmarks).max() < 3.0
    # the scan really is single-channel (dlib is wrapped to record what it is given)
    seen = []

    class Recorder:
        def __init__(self, inner):
            self.inner = inner

        def run(self, img, *args):
            seen.append(img.ndim)
            return self.inner.run(img, *args)

    inner = hog.detector
    hog.detector = Recorder(inner)
    try:
        detect_image(hog, clinton, gray=True)
        detect_image(hog, clinton)
    finally:
        hog.detector = inner
    assert seen == [2, 3]
    yunet = get_detector("yunet")
    assert len(detect_image(yunet, clinton, gray=True)) == len(detect_image(yunet, clinton))


def test_yunet_from_the_mirror(mirror, clinton):
    hog = detect_image(get_detector("dlib-hog"), clinton)
    faces = detect_image(get_detector("yunet"), clinton)
    assert len(faces) >= 1
    assert 0.7 <= faces.confidence[0] <= 1.0
    assert _iou(faces.xyxy[0], hog.xyxy[0]) > 0.4
    # Landmarks of the same face from both detectors agree to within a fifth of the eye distance.
    iod = np.linalg.norm(faces.landmarks[0, 1] - faces.landmarks[0, 0])
    assert np.linalg.norm(faces.landmarks[0] - hog.landmarks[0], axis=1).max() < 0.35 * iod


@pytest.mark.parametrize("name", ["dlib-hog", "yunet"])
def test_boxes_in_original_pixels_when_downscaled(name, mirror, clinton):
    import cv2

    det = get_detector(name)
    small = detect_image(det, clinton)
    big_rgb = cv2.resize(clinton, (1000, 1000), interpolation=cv2.INTER_CUBIC)
    big = detect_image(det, big_rgb, max_side=250)  # detected on a 250x250 copy
    assert len(big) == len(small) >= 1
    assert big.metadata["width"] == 1000 and big.metadata["height"] == 1000
    np.testing.assert_allclose(big.xyxy, small.xyxy * 4, atol=12)  # 3 px in the copy
    np.testing.assert_allclose(big.landmarks, small.landmarks * 4, atol=12)
    if name == "dlib-hog":
        np.testing.assert_allclose(big.data["dlib_shape5"], small.data["dlib_shape5"] * 4, atol=12)


def test_detector_loaded_once_and_unknown_name():
    assert get_detector("dlib-hog") is get_detector("dlib-hog")
    with pytest.raises(ModelError, match="unknown detector"):
        get_detector("nope")
    with pytest.raises(ModelError):
        get_detector("dlib")  # a recogniser, not a detector
