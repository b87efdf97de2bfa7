"""Face detection with an operator-supplied SCRFD model (insightface's detectors) on onnxruntime.

SCRFD answers, for each of its strides (8, 16 and 32 pixels), a score, a box and five keypoints
per anchor point (two anchors per grid cell), as distances from the anchor's centre in units of
the stride. Decoding follows insightface's ``SCRFD.detect`` (``distance2bbox`` and
``distance2kps``), but the network sees the picture at its own resolution, padded at the right and
bottom to a multiple of 32 (scaled down only when its longer side exceeds ``max_side``), not
letterboxed into 640 x 640: small faces stay as large as the picture has them. SCRFD misses
faces much larger than its biggest anchors (about 400 pixels: a portrait at 600 x 600 that the face
fills was missed), so a picture whose longer side exceeds 1.5 x ``coarse_side`` is also seen whole
at ``coarse_side`` (a tenth of the cost of a 1024-pixel picture's pass) and the passes' faces are
merged by non-maximum suppression, as YuNet's passes are.

The model's outputs are identified on load by a trial run on a small blank picture, by their
shapes (rows = anchor points of one stride, columns 1, 4 or 10), so exports that order them
differently work; a file that is not such a detector is refused with ``ModelUnavailableError``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from faceprint.errors import ModelUnavailableError
from faceprint.models.arcface import load_session
from faceprint.models.detector import MIN_PASS_SIDE, Detections, _clip, _concat, _nms

STRIDES = (8, 16, 32)
PAD = 32
PROBE_SIDE = 128
"""Side of the blank picture the model is tried on when loaded."""
MEAN, SCALE = 127.5, 1.0 / 128.0
"""insightface's SCRFD input: RGB, (x - 127.5) / 128."""


class ScrfdDetector:
    """insightface SCRFD (3 strides 8/16/32, 2 anchors, score/bbox/kps outputs), run at the image's
    own resolution padded to a multiple of 32 (capped: longer side <= max_side, scaled down beyond).
    Thread-safe: one onnxruntime session, whose ``run`` may be called from many threads."""

    def __init__(self, model_path: Path, score_threshold: float = 0.5, nms_threshold: float = 0.4,
                 max_side: int = 1920, threads: int = 0, coarse_side: int = 320) -> None:
        if (not 0.0 <= score_threshold <= 1.0 or not 0.0 < nms_threshold <= 1.0
                or not PAD <= coarse_side <= max_side):
            raise ValueError("SCRFD: score_threshold must be in [0, 1], nms_threshold in (0, 1], "
                             f"{PAD} <= coarse_side <= max_side")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_side = int(max_side)
        self.coarse_side = int(coarse_side)
        self._session = _session(Path(model_path), threads)
        self._input = self._session.get_inputs()[0].name
        self._order, self.anchors = self._identify_outputs(Path(model_path).name)

    def scales(self, width: int, height: int) -> tuple[float, float | None]:
        """The fine pass's scale factor (1 or less), and the coarse pass's (None when not needed)."""
        long_side = max(width, height, 1)
        fine = min(1.0, self.max_side / long_side)
        coarse = self.coarse_side / long_side
        if long_side * fine <= 1.5 * self.coarse_side or min(width, height) * coarse < MIN_PASS_SIDE:
            return fine, None
        return fine, coarse

    def detect(self, bgr: np.ndarray) -> Detections:
        height, width = bgr.shape[:2]
        if not height or not width:
            return Detections.empty()
        parts = [self._detect_at(bgr, scale) for scale in self.scales(width, height) if scale]
        found = _concat(parts)
        if not len(found):
            return found
        found = found.take(_nms(found.boxes, found.scores, self.nms_threshold))
        return _clip(found, width, height)

    def _detect_at(self, bgr: np.ndarray, scale: float) -> Detections:
        found = self._decode(self._run(bgr, scale))
        if not len(found) or scale == 1.0:
            return found
        return Detections(found.boxes / np.float32(scale), found.landmarks / np.float32(scale),
                          found.scores)

    def _run(self, bgr: np.ndarray, scale: float) -> tuple[list[np.ndarray], int, int]:
        """The outputs in (score, box, kps) x strides order, and the input's height and width."""
        if scale < 1.0:
            size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        blob = _blob(bgr)
        raw = self._session.run(None, {self._input: blob})
        return [_rows(raw[i]) for i in self._order], blob.shape[2], blob.shape[3]

    def _decode(self, run: tuple[list[np.ndarray], int, int]) -> Detections:
        outputs, height, width = run
        boxes, kps, scores = [], [], []
        for k, stride in enumerate(STRIDES):
            score, dist, points = outputs[3 * k], outputs[3 * k + 1], outputs[3 * k + 2]
            centres = _anchor_centres(height // stride, width // stride, stride, self.anchors)
            if len(centres) != len(score):
                raise ModelUnavailableError(
                    f"SCRFD model answered {len(score)} rows at stride {stride} for a "
                    f"{width} x {height} input, expected {len(centres)}")
            finite = np.isfinite(dist).all(axis=1) & np.isfinite(points).all(axis=1)
            keep = np.nonzero((score[:, 0] >= self.score_threshold) & finite)[0]
            if not keep.size:
                continue
            centre = centres[keep]
            boxes.append(_distance2bbox(centre, dist[keep] * stride))
            kps.append(_distance2kps(centre, points[keep] * stride))
            scores.append(score[keep, 0])
        if not scores:
            return Detections.empty()
        corners = np.concatenate(boxes).astype(np.float32)
        xywh = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
        return Detections(xywh, np.concatenate(kps).astype(np.float32).reshape(-1, 5, 2),
                          np.clip(np.concatenate(scores), 0.0, 1.0).astype(np.float32))

    def _identify_outputs(self, label: str) -> tuple[list[int], int]:
        """The outputs' indices in the order (score, box, kps) for strides 8, 16, 32, and the
        number of anchors per grid cell, from a trial run on a blank picture."""
        try:
            raw = self._session.run(None, {self._input: _blob(np.zeros((PROBE_SIDE, PROBE_SIDE, 3),
                                                                       np.uint8))})
        except Exception as exc:  # onnxruntime's errors have no common public base
            raise ModelUnavailableError(
                f"{label}: not an SCRFD detector (it failed on a 3 x {PROBE_SIDE} x {PROBE_SIDE} "
                f"input: {exc})") from exc
        shapes = [tuple(_rows(r).shape) if _rows_ok(r) else tuple(np.shape(r)) for r in raw]
        cells = {stride: (PROBE_SIDE // stride) ** 2 for stride in STRIDES}
        rows = [shape[0] for shape in shapes if len(shape) == 2]
        anchors = max(rows) // cells[8] if rows else 0  # stride 8 has the most rows
        order: list[int] = []
        for stride in STRIDES:
            for columns in (1, 4, 10):
                want = (cells[stride] * anchors, columns)
                match = [i for i, shape in enumerate(shapes) if shape == want]
                if len(match) != 1 or anchors < 1:
                    raise ModelUnavailableError(
                        f"{label}: not an SCRFD detector with keypoints: expected one output of "
                        f"{want[0] if anchors else 'N'} x {columns} for stride {stride} "
                        f"(score, box and 5 keypoints at strides 8, 16, 32), got outputs {shapes}")
                order.append(match[0])
        scores = np.concatenate([_rows(raw[i]) for i in order[0::3]])
        if not (np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()):
            raise ModelUnavailableError(f"{label}: not an SCRFD detector: its face scores on a blank "
                                        "picture are not probabilities in [0, 1]")
        return order, anchors


def _session(path: Path, threads: int):
    session = load_session(path, threads)
    inputs = session.get_inputs()
    shape = inputs[0].shape if len(inputs) == 1 else []
    if len(shape) != 4 or shape[1] not in (3, None) and not isinstance(shape[1], str):
        raise ModelUnavailableError(
            f"{path.name}: not an SCRFD detector: expected one N x 3 x H x W input, got "
            f"{[(i.name, i.shape) for i in inputs]}")
    if isinstance(shape[2], int) and isinstance(shape[3], int):
        raise ModelUnavailableError(
            f"{path.name}: not an SCRFD detector faceprint can run: its input is fixed at {shape[3]} x "
            f"{shape[2]}, and SCRFD runs at each picture's own size, which needs a dynamic height "
            "and width (insightface's buffalo det files have them; re-export an SCRFD so)")
    return session


def _blob(bgr: np.ndarray) -> np.ndarray:
    """The network's input: RGB, (x - 127.5) / 128, NCHW, padded right and bottom with black to a
    multiple of 32 (as insightface pads its letterbox)."""
    height, width = bgr.shape[:2]
    padded_h, padded_w = -(-height // PAD) * PAD, -(-width // PAD) * PAD
    canvas = np.zeros((padded_h, padded_w, 3), np.float32)
    canvas[:height, :width] = bgr[:, :, ::-1]
    canvas = (canvas - np.float32(MEAN)) * np.float32(SCALE)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None])


def _rows_ok(output: np.ndarray) -> bool:
    return np.ndim(output) == 2 or (np.ndim(output) == 3 and np.shape(output)[0] == 1)


def _rows(output: np.ndarray) -> np.ndarray:
    """An output as rows x columns (some exports keep a batch axis of 1)."""
    return output[0] if np.ndim(output) == 3 else output


def _anchor_centres(rows: int, cols: int, stride: int, anchors: int) -> np.ndarray:
    """(x, y) of each anchor, row-major over the grid, ``anchors`` copies per cell (insightface)."""
    ys, xs = np.mgrid[:rows, :cols]
    centres = (np.stack([xs, ys], axis=-1).astype(np.float32) * stride).reshape(-1, 2)
    return np.repeat(centres, anchors, axis=0) if anchors > 1 else centres


def _distance2bbox(centres: np.ndarray, distance: np.ndarray) -> np.ndarray:
    return np.stack([centres[:, 0] - distance[:, 0], centres[:, 1] - distance[:, 1],
                     centres[:, 0] + distance[:, 2], centres[:, 1] + distance[:, 3]], axis=-1)


def _distance2kps(centres: np.ndarray, distance: np.ndarray) -> np.ndarray:
    points = distance.reshape(len(distance), -1, 2) + centres[:, None, :]
    return points.reshape(len(distance), -1)
