"""ONNX Runtime face detectors with keypoints: SCRFD (InsightFace) and BlazeFace (MediaPipe).

Both return :class:`~facekit.types.Faces` with the standard five landmarks (left eye, right eye,
nose tip, left and right mouth corner, as seen in the image), so every recogniser can align
their faces to its template.

* :class:`ScrfdDetector`: SCRFD-2.5GF (dynamic input) or SCRFD-500MF (fixed 640x640), decoded
  as InsightFace's ``scrfd.py`` does: RGB, ``(x-127.5)/128``, two anchors per cell at strides
  8/16/32, box distances and keypoint offsets in units of the stride, NMS at IoU 0.4.
* :class:`BlazeFaceDetector`: MediaPipe's back-camera BlazeFace (ONNX conversion, NHWC
  256x256, ``x/127.5-1``), decoded with MediaPipe's SSD anchors (16x16x2 + 8x8x6 = 896) and
  sigmoid scores. It gives six keypoints (eyes, nose tip, mouth centre, ear tragions); the two
  mouth corners are estimated from the mouth centre along the eye line (mouth width = 0.83 x the
  eye distance, as in the ArcFace template).

Licences: SCRFD weights are for non-commercial research only; BlazeFace is Apache-2.0.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np

from .detect import Detector
from .errors import ModelError
from .types import Faces

__all__ = ["BlazeFaceDetector", "ScrfdDetector", "nms"]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    if len(boxes) == 0:
        return np.zeros(0, int)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        ovr = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[ovr <= iou]
    return np.asarray(keep, int)


def _clip(xyxy: np.ndarray, w: int, h: int) -> np.ndarray:
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    return xyxy


def _letterbox(rgb: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, float]:
    """``rgb`` scaled to fit ``out_w x out_h`` (aspect kept), placed top-left on black."""
    import cv2

    h, w = rgb.shape[:2]
    scale = min(out_w / w, out_h / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas = np.zeros((out_h, out_w, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(rgb, (nw, nh), interpolation=interp)
    return canvas, scale


class ScrfdDetector(Detector):
    """SCRFD (InsightFace) with five keypoints; non-commercial weights.

    Args:
        files: ``{file_name: path}`` from the model store.
        threshold: minimum face score (0-1).
        nms_iou: IoU above which overlapping boxes are suppressed.
        side: long side of the network input (multiple of 32).
    """

    strides = (8, 16, 32)
    num_anchors = 2

    def __init__(
        self,
        files: dict[str, Any],
        threshold: float = 0.5,
        nms_iou: float = 0.4,
        side: int = 640,
        name: str = "scrfd",
    ):
        from .models.runtime import onnx_session

        self.name = name
        self.session = onnx_session(next(iter(files.values())))
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        self.fixed = (
            (int(shape[3]), int(shape[2]))
            if isinstance(shape[2], int) and isinstance(shape[3], int)
            else None
        )
        if len(self.session.get_outputs()) != 9:
            raise ModelError(f"{name}: expected 9 outputs (scores, boxes, keypoints x 3 strides)")
        self.threshold = threshold
        self.nms_iou = nms_iou
        self.side = side
        self._lock = threading.Lock()

    @functools.lru_cache(maxsize=16)  # noqa: B019 - few sizes, detector lives for the process
    def _centers(self, fh: int, fw: int, stride: int) -> np.ndarray:
        ys, xs = np.mgrid[:fh, :fw]
        grid = np.stack([xs, ys], axis=-1).astype(np.float32) * stride
        return np.repeat(grid.reshape(-1, 2), self.num_anchors, axis=0)

    def _input_size(self, w: int, h: int) -> tuple[int, int]:
        if self.fixed is not None:
            return self.fixed
        scale = self.side / max(w, h)
        return (
            max(32, int(np.ceil(w * scale / 32)) * 32),
            max(32, int(np.ceil(h * scale / 32)) * 32),
        )

    def detect(self, rgb: np.ndarray) -> Faces:
        h, w = rgb.shape[:2]
        iw, ih = self._input_size(w, h)
        img, scale = _letterbox(rgb, iw, ih)
        x = ((img.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        with self._lock:
            outs = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})
        boxes, scores, kps = [], [], []
        n = len(self.strides)
        for i, stride in enumerate(self.strides):
            sc = outs[i].reshape(-1)
            bb = outs[i + n].reshape(-1, 4) * stride
            kp = outs[i + 2 * n].reshape(-1, 10) * stride
            centers = self._centers(int(np.ceil(ih / stride)), int(np.ceil(iw / stride)), stride)
            if len(centers) != len(sc):
                raise ModelError(
                    f"{self.name}: unexpected output size {len(sc)} at stride {stride}"
                )
            keep = sc >= self.threshold
            c = centers[keep]
            b = bb[keep]
            boxes.append(np.concatenate([c - b[:, :2], c + b[:, 2:]], axis=1))
            scores.append(sc[keep])
            kps.append(kp[keep].reshape(-1, 5, 2) + c[:, None, :])
        xyxy = np.concatenate(boxes) / scale
        conf = np.concatenate(scores)
        lm = np.concatenate(kps) / scale
        keep_idx = nms(xyxy, conf, self.nms_iou)
        if len(keep_idx) == 0:
            return Faces.empty(detector=self.name)
        xyxy = _clip(xyxy[keep_idx].astype(np.float32), w, h)
        return Faces(
            xyxy,
            conf[keep_idx].astype(np.float32),
            lm[keep_idx].astype(np.float32),
            {},
            {"detector": self.name},
        )


def _blazeface_anchors() -> np.ndarray:
    """MediaPipe's SSD anchors for the 256x256 back-camera model: (896, 2) centres in 0-1."""
    anchors = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.mgrid[:grid, :grid]
        centers = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 2)
        anchors.append(np.repeat(centers, per_cell, axis=0))
    return np.concatenate(anchors).astype(np.float32)


class BlazeFaceDetector(Detector):
    """MediaPipe BlazeFace, back-camera model (ONNX conversion), Apache-2.0.

    Args:
        files: ``{file_name: path}`` from the model store.
        threshold: minimum face score after the sigmoid (MediaPipe uses 0.65 for this model).
        nms_iou: IoU above which overlapping boxes are suppressed.
    """

    name = "blazeface"
    size = 256

    def __init__(self, files: dict[str, Any], threshold: float = 0.65, nms_iou: float = 0.3):
        from .models.runtime import onnx_session

        self.session = onnx_session(next(iter(files.values())))
        self.input_name = self.session.get_inputs()[0].name
        outs = self.session.get_outputs()
        if len(outs) != 4:
            raise ModelError("blazeface: expected 4 outputs (scores and boxes at two strides)")
        self.anchors = _blazeface_anchors()
        self.threshold = threshold
        self.nms_iou = nms_iou
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> Faces:
        h, w = rgb.shape[:2]
        img, scale = _letterbox(rgb, self.size, self.size)
        x = (img.astype(np.float32) / 127.5 - 1.0)[None]
        with self._lock:
            outs = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})
        by_len: dict[tuple[int, int], np.ndarray] = {(o.shape[1], o.shape[2]): o[0] for o in outs}
        raw_scores = np.concatenate([by_len[(512, 1)], by_len[(384, 1)]]).reshape(-1)
        raw = np.concatenate([by_len[(512, 16)], by_len[(384, 16)]])
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -80, 80)))
        keep = scores >= self.threshold
        if not keep.any():
            return Faces.empty(detector=self.name)
        raw, scores, anc = raw[keep], scores[keep], self.anchors[keep]
        s = float(self.size)
        cx = raw[:, 0] / s + anc[:, 0]
        cy = raw[:, 1] / s + anc[:, 1]
        bw, bh = raw[:, 2] / s, raw[:, 3] / s
        xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) * s
        kp = raw[:, 4:16].reshape(-1, 6, 2) / s + anc[:, None, :]
        kp = kp * s
        keep_idx = nms(xyxy, scores, self.nms_iou)
        xyxy = xyxy[keep_idx] / scale
        kp = kp[keep_idx] / scale
        return Faces(
            _clip(xyxy.astype(np.float32), w, h),
            scores[keep_idx].astype(np.float32),
            blazeface_to_standard(kp).astype(np.float32),
            {"blazeface_keypoints": kp.astype(np.float32)},
            {"detector": self.name},
        )


def blazeface_to_standard(kp6: np.ndarray) -> np.ndarray:
    """Five standard landmarks from BlazeFace's six keypoints ``(n, 6, 2)``.

    BlazeFace gives the two eyes, the nose tip, the mouth centre and the two ear tragions. The
    eyes are ordered left-to-right in the image; the mouth corners are placed on either side of
    the mouth centre, parallel to the eye line, 0.414 eye distances away (the ArcFace template's
    mouth width is 0.828 of its eye distance).
    """
    kp6 = np.asarray(kp6, np.float64)
    out = np.zeros((len(kp6), 5, 2), np.float64)
    for i, pts in enumerate(kp6):
        e1, e2 = pts[0], pts[1]
        left, right = (e1, e2) if e1[0] <= e2[0] else (e2, e1)
        eye_vec = right - left
        mouth = pts[3]
        out[i] = [left, right, pts[2], mouth - 0.414 * eye_vec, mouth + 0.414 * eye_vec]
    return out
