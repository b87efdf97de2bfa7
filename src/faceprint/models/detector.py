"""Face detection with YuNet (OpenCV ``FaceDetectorYN``) over a small image pyramid.

YuNet finds faces of roughly 10 to 300 pixels. One pass at (up to) full
resolution catches the small faces of a crowd or a 1080p frame; a second pass
on a downscaled copy catches faces that fill the picture. Results of the passes
are merged by non-maximum suppression.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass
class Detections:
    """Faces found in one image, in pixels of that image.

    ``boxes`` is N x 4 (x, y, width, height), ``landmarks`` N x 5 x 2 in the
    order eyeLeft, eyeRight, nose, mouthLeft, mouthRight (left and right as
    seen in the picture), ``scores`` N in [0, 1].
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32),
                   np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, index: np.ndarray | list[int]) -> Detections:
        index = np.asarray(index, dtype=np.int64)
        return Detections(self.boxes[index], self.landmarks[index], self.scores[index])

    def areas(self) -> np.ndarray:
        return self.boxes[:, 2] * self.boxes[:, 3]


CONFIDENCE_KNOTS = ((0.3, 0.1364), (0.6, 0.1522), (0.7, 0.3611), (0.8, 0.8906), (0.85, 0.9318), (0.9, 0.9969),
                    (0.92, 0.9989), (1.0, 0.999))
"""YuNet's raw score -> the measured probability that the box is a face (benchmarks/confidence.py:
face rates of detections on LFW, dlib's group photos and street scenes, made increasing; the
reliability is measured on other photos). Linear between knots, flat outside them."""


def face_confidence(score: float) -> float:
    """Rekognition's face ``Confidence`` (0-100, rounded to 4 places) for a raw YuNet score."""
    xs, ys = zip(*CONFIDENCE_KNOTS, strict=True)
    return round(float(np.interp(score, xs, ys)) * 100.0, 4)


def raw_score(confidence: float) -> float:
    """The raw YuNet score (0.3-1) a face ``Confidence`` came from: the inverse of
    :func:`face_confidence` (within 0.001 above 0.92, where the table is nearly flat), for what
    was tuned on raw scores and ranks faces rather than asks whether they are faces."""
    xs, ys = zip(*CONFIDENCE_KNOTS, strict=True)
    return float(np.interp(confidence / 100.0, ys, xs))


@dataclass(frozen=True)
class DetectorSettings:
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    max_side: int = 2560
    """Images are scaled down so their longer side is at most this for the fine pass."""
    coarse_side: int = 480
    """Longer side of the coarse pass that catches very large faces."""
    small_face: int = 32
    """If the fine pass finds a face this small (px, as seen by YuNet), look again at twice the
    scale, within ``max_side``: crowds get their tiny faces, portraits pay nothing."""
    top_k: int = 5000


class YuNetDetector:
    """Thread-safe YuNet wrapper: one OpenCV detector per thread, model read once."""

    def __init__(self, model_path: Path, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        self._model = np.frombuffer(Path(model_path).read_bytes(), np.uint8)
        self._local = threading.local()

    def _net(self) -> cv2.FaceDetectorYN:
        net = getattr(self._local, "net", None)
        if net is None:
            s = self.settings
            net = cv2.FaceDetectorYN.create("onnx", self._model, np.zeros(0, np.uint8), (320, 320),
                                            s.score_threshold, s.nms_threshold, s.top_k)
            self._local.net = net
        return net

    def scales(self, width: int, height: int) -> tuple[float, float | None]:
        """The fine pass's scale factor, and the coarse pass's (None when not needed)."""
        s = self.settings
        long_side = max(width, height)
        fine = min(1.0, s.max_side / long_side)
        coarse = s.coarse_side / long_side if long_side * fine > 1.5 * s.coarse_side else None
        if coarse is not None and min(width, height) * coarse < MIN_PASS_SIDE:
            coarse = None  # a strip: its faces are small enough for the fine pass
        return fine, coarse

    def detect(self, bgr: np.ndarray) -> Detections:
        height, width = bgr.shape[:2]
        fine, coarse = self.scales(width, height)
        parts = [self._detect_at(bgr, fine)]
        if self._has_small_faces(parts[0], fine) and max(width, height) * fine * 2 <= self.settings.max_side:
            parts.append(self._detect_at(bgr, fine * 2))
        if coarse is not None:
            parts.append(self._detect_at(bgr, coarse))
        merged = _concat(parts)
        if len(parts) > 1 and len(merged):
            merged = merged.take(_nms(merged.boxes, merged.scores, self.settings.nms_threshold))
        return _clip(merged, width, height)

    def _has_small_faces(self, found: Detections, scale: float) -> bool:
        return bool(len(found)) and float(found.boxes[:, 2:].min()) * scale < self.settings.small_face

    def _detect_at(self, bgr: np.ndarray, scale: float) -> Detections:
        if abs(scale - 1.0) > 1e-6:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=interp)
        net = self._net()
        net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = net.detect(bgr)
        faces = finite_rows(faces)
        if faces is None or len(faces) == 0:
            return Detections.empty()
        faces = faces.astype(np.float32) / np.float32(scale)
        faces[:, 14] *= scale  # the score is not a coordinate
        return Detections(faces[:, 0:4].copy(), faces[:, 4:14].reshape(-1, 5, 2).copy(),
                          faces[:, 14].copy())


MIN_PASS_SIDE = 32
"""The coarse pass is skipped where it would see the picture less than this high (or wide)."""

LANDMARK_MARGIN = 0.5
"""A row's five landmarks must lie within the box grown by this share of its size on each side."""


def finite_rows(faces: np.ndarray | None) -> np.ndarray | None:
    """YuNet's rows that can be faces. On degenerate inputs (a blank 4000 x 80 strip, detected at
    480 x 9) it can answer NaN rows, which NMS would then compute with, and now and then a finite
    row of garbage with a high score: a box of no size, or landmarks far outside the box (one seen
    had its nose six picture-heights below a blank strip). Such rows are dropped."""
    if faces is None:
        return faces
    faces = faces[np.isfinite(faces).all(axis=1)]
    x, y, w, h = (faces[:, i:i + 1] for i in range(4))
    lx, ly = faces[:, 4:14:2], faces[:, 5:14:2]
    inside = ((lx >= x - LANDMARK_MARGIN * w) & (lx <= x + (1 + LANDMARK_MARGIN) * w)
              & (ly >= y - LANDMARK_MARGIN * h) & (ly <= y + (1 + LANDMARK_MARGIN) * h)).all(axis=1)
    return faces[(w[:, 0] > 0) & (h[:, 0] > 0) & inside]


def _concat(parts: list[Detections]) -> Detections:
    if len(parts) == 1:
        return parts[0]
    return Detections(np.concatenate([p.boxes for p in parts]),
                      np.concatenate([p.landmarks for p in parts]),
                      np.concatenate([p.scores for p in parts]))


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order = np.argsort(-scores)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    areas = boxes[:, 2] * boxes[:, 3]
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= threshold]
    return keep


def _clip(det: Detections, width: int, height: int) -> Detections:
    """Clip boxes to the image; drop any that end up empty, and any with fewer than three of its
    five landmarks in the picture (a face cut by the frame keeps its eyes or its nose and mouth;
    YuNet's garbage on a blank 4000 x 80 strip, seen once in CI, had all five below it)."""
    if not len(det):
        return det
    lx, ly = det.landmarks[:, :, 0], det.landmarks[:, :, 1]
    seen = ((lx >= 0) & (lx <= width) & (ly >= 0) & (ly <= height)).sum(axis=1) >= 3
    x1 = np.clip(det.boxes[:, 0], 0, width)
    y1 = np.clip(det.boxes[:, 1], 0, height)
    x2 = np.clip(det.boxes[:, 0] + det.boxes[:, 2], 0, width)
    y2 = np.clip(det.boxes[:, 1] + det.boxes[:, 3], 0, height)
    boxes = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    keep = np.nonzero((boxes[:, 2] > 1) & (boxes[:, 3] > 1) & seen)[0]
    return Detections(boxes, det.landmarks, det.scores).take(keep)
