"""Head pose (yaw, pitch, roll in degrees) from a face's five landmarks.

Method: the 2-D landmarks are matched to the same points of a generic 3-D face (MediaPipe's
canonical face model, Apache-2.0, in cm) and the rotation is found with OpenCV's
``solvePnP`` (SQPnP, refined by Levenberg-Marquardt) for a pinhole camera whose focal length
is the image's long side (a ~53 degree field of view) and whose centre is the image centre.
Two point sets are supported:

* ``standard5``: eye centres, nose tip and mouth corners (YuNet, SCRFD, RetinaFace,
  BlazeFace);
* ``dlib5``: dlib's shape predictor's four eye corners and the base of the nose (dlib
  detectors). For those, :attr:`Faces.landmarks` are *estimated* from the dlib points by a
  similarity transform and carry no out-of-plane information, so the dlib points
  (``Faces.data["dlib_shape5"]``) are used instead.

Angles, in the image's frame as the viewer sees it:

* ``yaw``: positive when the face turns towards the right of the image (its nose moves
  right); 0 frontal, about +-90 a full profile;
* ``pitch``: positive when the face looks up;
* ``roll``: positive when the head tilts clockwise in the image.

Five points and a generic face cannot give a precise pose: errors on real photos are stated
in docs/pose.md. Profile faces (beyond ~60 degrees) are where detectors place the hidden
eye's landmarks by guesswork, so estimates there saturate; what they are good for is telling
frontal, turned and profile faces apart (``--max-yaw``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "MODEL_STANDARD5",
    "MODEL_DLIB5",
    "pose_from_points",
    "face_poses",
    "yaw_within",
    "rotation_from_angles",
    "project",
]

# MediaPipe canonical face model vertices (cm; x towards the subject's left, y up, z towards
# the camera): eye centres = midpoints of corners 33/133 and 263/362, nose tip 1, mouth
# corners 61/291, nose base 2. Ordered as the detectors order their points: the first eye is
# the one on the image's left (the subject's right eye).
_R_EYE_OUT, _R_EYE_IN = (-4.445859, 2.663991, 3.173422), (-1.856432, 2.585245, 3.757904)
_L_EYE_OUT, _L_EYE_IN = (4.445859, 2.663991, 3.173422), (1.856432, 2.585245, 3.757904)
_NOSE_TIP, _NOSE_BASE = (0.0, -1.126865, 7.475604), (0.0, -2.089024, 6.058267)
_R_MOUTH, _L_MOUTH = (-2.456206, -4.342621, 4.283884), (2.456206, -4.342621, 4.283884)

#: The five standard landmarks (left eye, right eye, nose tip, left and right mouth corner as
#: seen in the image), model frame.
MODEL_STANDARD5 = np.array(
    [
        np.add(_R_EYE_OUT, _R_EYE_IN) / 2,
        np.add(_L_EYE_OUT, _L_EYE_IN) / 2,
        _NOSE_TIP,
        _R_MOUTH,
        _L_MOUTH,
    ],
    np.float64,
)
#: dlib's five points: image-right eye outer and inner corner, image-left eye outer and inner
#: corner, base of the nose; model frame.
MODEL_DLIB5 = np.array([_L_EYE_OUT, _L_EYE_IN, _R_EYE_OUT, _R_EYE_IN, _NOSE_BASE], np.float64)

_MODELS = {"standard5": MODEL_STANDARD5, "dlib5": MODEL_DLIB5}
# model frame (y up, z towards the camera) -> OpenCV camera frame (y down, z away)
_FLIP = np.diag([1.0, -1.0, -1.0])


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The ``(3, 3)`` rotation (OpenCV camera frame) of a head at these angles (degrees).

    The inverse of what :func:`pose_from_points` measures; used to make synthetic faces.
    """
    y, p, r = np.radians([-yaw, -pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx)


def _angles(rot: np.ndarray) -> tuple[float, float, float]:
    # rot = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)
    y = np.degrees(np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0)))
    p = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
    r = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    return float(-y), float(-p), float(r)


def _camera(width: float, height: float) -> np.ndarray:
    f = float(max(width, height, 1.0))
    return np.array([[f, 0, width / 2.0], [0, f, height / 2.0], [0, 0, 1]], np.float64)


def project(
    layout: str,
    yaw: float,
    pitch: float,
    roll: float,
    *,
    centre: tuple[float, float],
    eye_distance: float,
    width: int,
    height: int,
) -> np.ndarray:
    """Image points of the generic face at a given pose (for tests and checks).

    Args:
        layout: ``"standard5"`` or ``"dlib5"``.
        yaw, pitch, roll: degrees, as :func:`pose_from_points` reports them.
        centre: where the model's origin lands in the image (pixels).
        eye_distance: the distance between the eye centres of a frontal face, pixels.
        width, height: image size (the camera's focal length is the long side).

    Returns:
        ``(5, 2) float64`` points.
    """
    import cv2

    pts = _MODELS[layout] @ _FLIP
    k = _camera(width, height)
    ipd = float(np.linalg.norm(MODEL_STANDARD5[1] - MODEL_STANDARD5[0]))
    z = k[0, 0] * ipd / eye_distance
    t = np.array([(centre[0] - k[0, 2]) * z / k[0, 0], (centre[1] - k[1, 2]) * z / k[1, 1], z])
    rvec, _ = cv2.Rodrigues(rotation_from_angles(yaw, pitch, roll))
    out, _ = cv2.projectPoints(pts, rvec, t, k, None)
    return np.asarray(out.reshape(-1, 2), np.float64)


def pose_from_points(
    points: np.ndarray, layout: str = "standard5", *, width: int, height: int
) -> np.ndarray:
    """Yaw, pitch and roll of each face from its five points.

    Args:
        points: ``(n, 5, 2)`` landmarks in image pixels, ordered as ``layout`` says.
        layout: ``"standard5"`` (:attr:`Faces.landmarks`) or ``"dlib5"`` (dlib's points).
        width, height: size of the image the points are in (sets the camera).

    Returns:
        ``(n, 3) float32`` ``[yaw, pitch, roll]`` in degrees (NaN where no pose was found,
        e.g. degenerate points).

    Example:
        >>> pose_from_points(faces.landmarks, width=640, height=480)[:, 0]  # yaw
    """

    pts = np.asarray(points, np.float64).reshape(-1, 5, 2)
    out = np.full((len(pts), 3), np.nan, np.float32)
    model = _MODELS[layout] @ _FLIP
    k = _camera(width, height)
    for i, p in enumerate(pts):
        if not np.all(np.isfinite(p)) or np.ptp(p[:, 0]) < 1e-3:
            continue
        rot = _solve(model, p, k)
        if rot is not None:
            out[i] = _angles(rot)
    return out


def _solve(model: np.ndarray, p: np.ndarray, k: np.ndarray) -> np.ndarray | None:
    """The rotation that best explains ``p``. Five points on a near-flat face leave two
    poses that fit almost equally (the nose seen from above or below): both are found (SQPnP,
    and Levenberg-Marquardt started from a frontal face at the right distance) and the one
    closer to frontal wins unless the other fits clearly better."""
    import cv2

    ipd = float(np.linalg.norm(model[0] - model[1]))
    z = k[0, 0] * ipd / max(float(np.linalg.norm(p[0] - p[1])), 1e-6)
    c = p.mean(0)
    t0 = np.array([[(c[0] - k[0, 2]) * z / k[0, 0]], [(c[1] - k[1, 2]) * z / k[1, 1]], [z]])
    found: list[tuple[float, float, np.ndarray]] = []
    starts: list[tuple[np.ndarray, np.ndarray] | None] = [None, (np.zeros((3, 1)), t0)]
    for start in starts:
        try:
            if start is None:
                ok, rvec, tvec = cv2.solvePnP(model, p, k, None, flags=cv2.SOLVEPNP_SQPNP)
            else:
                ok, rvec, tvec = True, start[0].copy(), start[1].copy()
            if ok:
                ok, rvec, tvec = cv2.solvePnP(
                    model, p, k, None, rvec, tvec, True, flags=cv2.SOLVEPNP_ITERATIVE
                )
        except cv2.error:
            continue
        if not ok or tvec[2, 0] <= 0:
            continue
        proj, _ = cv2.projectPoints(model, rvec, tvec, k, None)
        err = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - p) ** 2, 1))))
        rot, _ = cv2.Rodrigues(rvec)
        found.append(
            (err, float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1)))), rot)
        )
    if not found:
        return None
    scale = float(np.linalg.norm(p[0] - p[1])) or 1.0
    best_err = min(f[0] for f in found)
    # fits within 5% of the eye distance of the best are equally good: take the most frontal
    near = [f for f in found if f[0] <= best_err + 0.05 * scale]
    return min(near, key=lambda f: f[1])[2]


def face_poses(faces: Any, width: int, height: int) -> np.ndarray:
    """``(n, 3) float32`` yaw, pitch, roll of every face of a :class:`~facekit.types.Faces`.

    Uses dlib's own points when the detector provides them (see the module docstring), else
    the five standard landmarks.
    """
    shapes = faces.data.get("dlib_shape5")
    if shapes is not None and len(shapes) == len(faces):
        return pose_from_points(shapes, "dlib5", width=width, height=height)
    return pose_from_points(faces.landmarks, "standard5", width=width, height=height)


def yaw_within(faces: Any, max_yaw: float | None) -> np.ndarray:
    """``(n,) bool``: faces whose ``|yaw|`` is at most ``max_yaw`` degrees.

    Faces without a pose (none stored, or not found) count as within: they are not judged.
    """
    n = len(faces)
    pose = faces.data.get("pose")
    if max_yaw is None or pose is None or len(pose) != n:
        return np.ones(n, bool)
    yaw = np.abs(np.asarray(pose, np.float32)[:, 0])
    return np.asarray(~(yaw > max_yaw), bool)  # NaN counts as within


def drop_beyond_yaw(result: Any, max_yaw: float | None) -> tuple[Any, int]:
    """``result`` without its faces turned more than ``max_yaw`` degrees, and how many went.

    Args:
        result: an :class:`~facekit.types.ImageResult`.
        max_yaw: the largest ``|yaw|`` kept (``None``: keep every face).

    Returns:
        ``(result, dropped)``; ``result`` is the same object when nothing is dropped.
    """
    from dataclasses import replace

    if max_yaw is None or result.error or not len(result.faces):
        return result, 0
    keep = yaw_within(result.faces, max_yaw)
    if keep.all():
        return result, 0
    emb = result.embeddings[np.flatnonzero(keep)] if len(result.embeddings) else result.embeddings
    return replace(result, faces=result.faces[keep], embeddings=emb), int((~keep).sum())
