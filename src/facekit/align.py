"""Landmarks -> aligned face crops.

Each recogniser expects faces warped onto its own template:

* dlib's ResNet: dlib's ``get_face_chip`` (150x150, padding 0.25) from its 5-point shape
  predictor (eye corners + nose base), done inside the dlib embedder.
* ArcFace-family ONNX models (MobileFaceNet, ArcFace, SFace, Facenet512): a similarity
  transform of the five standard landmarks onto :data:`ARCFACE_TEMPLATE` (112x112), scaled
  for other input sizes.
"""

from __future__ import annotations

import numpy as np

#: The standard 5-point template of InsightFace/ArcFace for 112x112 crops
#: (left eye, right eye, nose tip, left mouth corner, right mouth corner).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)

# dlib's 5-point shape predictor gives both corners of each eye and the base of the nose, not
# the standard five points. The two tables below relate them: DLIB5_MEAN is the mean dlib
# shape (after similarity alignment) and STANDARD5_IN_DLIB_FRAME the mean position of YuNet's
# five landmarks in that same frame, measured on 375 LFW faces (benchmarks/landmark_map.py).
# Median reconstruction error: 0.08-0.12 of the inter-ocular distance per point.
DLIB5_MEAN = np.array(
    [[27.835, -1.05], [12.693, -3.477], [-25.719, -11.401], [-10.626, -7.992], [-4.183, 23.92]],
    dtype=np.float32,
)
STANDARD5_IN_DLIB_FRAME = np.array(
    [[-18.543, -10.864], [22.247, -2.949], [-2.197, 16.675], [-22.954, 30.918], [11.624, 37.586]],
    dtype=np.float32,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` to ``dst``.

    Args:
        src: ``(k, 2)`` points.
        dst: ``(k, 2)`` points.

    Returns:
        ``(2, 3) float64`` affine matrix ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    # Umeyama's closed form, restricted to 2-D.
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var = (s**2).sum() / len(src)
    scale = (sig * sign).sum() / var if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def apply_transform(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine matrix to ``(k, 2)`` points."""
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


def dlib5_to_standard(shape5: np.ndarray) -> np.ndarray:
    """Estimate the five standard landmarks from dlib 5-point shapes.

    Args:
        shape5: ``(n, 5, 2)`` dlib shape-predictor points in image pixels.

    Returns:
        ``(n, 5, 2) float32`` standard landmarks (see :class:`facekit.types.Faces`).
    """
    out = np.zeros((len(shape5), 5, 2), np.float32)
    for i, pts in enumerate(np.asarray(shape5)):
        m = similarity_transform(DLIB5_MEAN, pts)
        out[i] = apply_transform(m, STANDARD5_IN_DLIB_FRAME)
    return out


def template_for(size: int | tuple[int, int]) -> np.ndarray:
    """The ArcFace template scaled to a square crop of ``size`` pixels (e.g. 160 for Facenet)."""
    w, h = (size, size) if isinstance(size, int) else size
    t = ARCFACE_TEMPLATE.copy()
    t[:, 0] *= w / 112.0
    t[:, 1] *= h / 112.0
    return t


def align_crops(
    rgb: np.ndarray, landmarks: np.ndarray, size: int | tuple[int, int] = 112
) -> np.ndarray:
    """Warp each face onto the ArcFace template.

    Args:
        rgb: ``(H, W, 3) uint8`` image.
        landmarks: ``(n, 5, 2)`` standard landmarks in the image's pixels.
        size: output crop size (square int or ``(width, height)``).

    Returns:
        ``(n, h, w, 3) uint8`` aligned crops.

    Example:
        >>> crops = align_crops(img, faces.landmarks, 112)
    """
    import cv2

    w, h = (size, size) if isinstance(size, int) else size
    tmpl = template_for((w, h))
    out = np.zeros((len(landmarks), h, w, 3), np.uint8)
    for i, pts in enumerate(landmarks):
        m = similarity_transform(pts, tmpl)
        out[i] = cv2.warpAffine(
            rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    return out


def box_crops(
    rgb: np.ndarray, xyxy: np.ndarray, size: int = 112, margin: float = 0.2
) -> np.ndarray:
    """Square crops around boxes (with ``margin`` of the box size), for contact sheets and thumbnails.

    Returns:
        ``(n, size, size, 3) uint8``.
    """
    import cv2

    out = np.zeros((len(xyxy), size, size, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(xyxy, float)):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        half = max(x2 - x1, y2 - y1) * (0.5 + margin)
        src = np.array(
            [[cx - half, cy - half], [cx + half, cy - half], [cx - half, cy + half]], np.float32
        )
        dst = np.array([[0, 0], [size, 0], [0, size]], np.float32)
        m = cv2.getAffineTransform(src, dst)
        out[i] = cv2.warpAffine(
            rgb,
            m,
            (size, size),
            flags=cv2.INTER_AREA if half * 2 > size else cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
    return out
