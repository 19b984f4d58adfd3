"""Alignment: similarity transforms, warping onto the ArcFace template, dlib 5-point mapping."""

from __future__ import annotations

import numpy as np
import pytest

from facekit.align import (
    ARCFACE_TEMPLATE,
    align_crops,
    apply_transform,
    dlib5_to_standard,
    similarity_transform,
    template_for,
)


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rot, [[tx], [ty]]])


@pytest.mark.parametrize(
    "angle, scale, tx, ty", [(0, 1, 0, 0), (30, 1.7, 5, -3), (-75, 0.4, 120, 80)]
)
def test_similarity_transform_recovers_known_transform(angle, scale, tx, ty):
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, size=(7, 2))
    m_true = _similarity(angle, scale, tx, ty)
    dst = apply_transform(m_true, src)
    m = similarity_transform(src, dst)
    assert m.shape == (2, 3)
    np.testing.assert_allclose(m, m_true, atol=1e-9)
    # Least squares with noise: still close, and never a reflection.
    noisy = dst + rng.normal(0, 0.1, dst.shape)
    m2 = similarity_transform(src, noisy)
    np.testing.assert_allclose(m2, m_true, atol=0.05 * max(1, abs(tx), abs(ty)))
    assert np.linalg.det(m2[:, :2]) > 0


def test_template_for_scales():
    np.testing.assert_allclose(template_for(112), ARCFACE_TEMPLATE)
    t = template_for((160, 224))
    np.testing.assert_allclose(t[:, 0], ARCFACE_TEMPLATE[:, 0] * 160 / 112, rtol=1e-6)
    np.testing.assert_allclose(t[:, 1], ARCFACE_TEMPLATE[:, 1] * 2, rtol=1e-6)


def test_align_crops_puts_landmarks_on_template():
    # Five bright dots where a rotated, scaled "face" has its landmarks; after alignment the
    # dots must sit on the template points.
    m = _similarity(20, 2.5, 90, 40)
    lms = apply_transform(m, ARCFACE_TEMPLATE)
    img = np.zeros((420, 420, 3), np.uint8)
    yy, xx = np.mgrid[0:420, 0:420]
    for x, y in lms:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= 9] = 255
    crops = align_crops(img, lms[None].astype(np.float32), 112)
    assert crops.shape == (1, 112, 112, 3) and crops.dtype == np.uint8
    crop = crops[0, :, :, 0].astype(float)
    for tx, ty in ARCFACE_TEMPLATE:
        x0, y0 = int(round(tx)) - 5, int(round(ty)) - 5
        win = crop[y0 : y0 + 11, x0 : x0 + 11]
        assert win.sum() > 0, f"no dot near template point {(tx, ty)}"
        wy, wx = np.mgrid[0:11, 0:11]
        cx, cy = (wx * win).sum() / win.sum() + x0, (wy * win).sum() / win.sum() + y0
        assert abs(cx - tx) < 1.0 and abs(cy - ty) < 1.0
    # Other sizes use the scaled template.
    assert align_crops(img, lms[None], (96, 128)).shape == (1, 128, 96, 3)
    assert align_crops(img, np.zeros((0, 5, 2)), 112).shape == (0, 112, 112, 3)


def test_dlib5_to_standard_on_a_real_face(astronaut):
    from facekit.detect import detect_image, get_detector
    from facekit.imageio import load_image

    rgb = load_image(astronaut).rgb
    faces = detect_image(get_detector("dlib-hog"), rgb)
    assert len(faces) == 1
    std = dlib5_to_standard(faces.data["dlib_shape5"])
    assert std.shape == (1, 5, 2) and std.dtype == np.float32
    np.testing.assert_allclose(std, faces.landmarks)
    (le, re, nose, lm, rm) = std[0]
    x1, y1, x2, y2 = faces.xyxy[0]
    width = x2 - x1
    assert le[0] < nose[0] < re[0] and lm[0] < rm[0]
    assert max(le[1], re[1]) < nose[1] < min(lm[1], rm[1])
    assert 0.25 * width < re[0] - le[0] < 0.65 * width
    pad = 0.15 * width
    assert (std[0, :, 0] > x1 - pad).all() and (std[0, :, 0] < x2 + pad).all()
    assert (std[0, :, 1] > y1 - pad).all() and (std[0, :, 1] < y2 + pad).all()
