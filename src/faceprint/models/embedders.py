"""Face embedders: SFace (ONNX, through onnxruntime) and dlib's ResNet.

Each takes the upright image and one face (box and YuNet's five landmarks) and
returns a unit-length float32 vector. Both are thread-safe and load their
weights once, when constructed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from faceprint.imaging import DecodedImage

# ArcFace's 112 x 112 template for the five landmarks (as OpenCV's alignCrop uses).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, image: DecodedImage, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """A unit vector of ``dim`` floats for the face at ``box`` / ``landmarks``."""
        ...


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping ``src`` points onto ``dst``; 2 x 3."""
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rot = u @ np.diag(d) @ vt
    var = (src_c ** 2).sum() / len(src)
    scale = (s * d).sum() / var if var > 0 else 1.0
    t = dst_mean - scale * rot @ src_mean
    return np.hstack([scale * rot, t[:, None]]).astype(np.float32)


def align_112(bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112 x 112 ArcFace-aligned crop of a face (BGR)."""
    matrix = similarity_transform(landmarks.astype(np.float64), ARCFACE_TEMPLATE.astype(np.float64))
    return cv2.warpAffine(bgr, matrix, (112, 112), flags=cv2.INTER_LINEAR)


def unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class SFaceEmbedder:
    """SFace 2021dec on onnxruntime; optionally adds the mirrored crop's embedding."""

    dim = 128

    def __init__(self, model_path: Path, flip: bool = False, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model_path), options,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.flip = flip
        self.name = "sface-flip" if flip else "sface"

    def embed(self, image: DecodedImage, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        crop = align_112(image.bgr, landmarks)
        vector = unit(self._forward(crop))
        if self.flip:
            vector = vector + unit(self._forward(crop[:, ::-1]))
        return unit(vector)

    def embed_both(self, image: DecodedImage, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(plain, with-mirror) vectors of one face: what ``sface`` and ``sface-flip`` give."""
        crop = align_112(image.bgr, landmarks)
        plain = unit(self._forward(crop))
        return plain, unit(plain + unit(self._forward(crop[:, ::-1])))

    def _forward(self, crop_bgr: np.ndarray) -> np.ndarray:
        # OpenCV's FaceRecognizerSF feeds RGB, unscaled 0-255, NCHW.
        blob = np.ascontiguousarray(crop_bgr[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
        return self._session.run(None, {self._input: blob})[0][0]


class DlibEmbedder:
    """dlib's ResNet v1 face descriptor, aligned by its 5-point shape predictor."""

    dim = 128
    name = "dlib"

    def __init__(self, model_path: Path, shape_path: Path) -> None:
        import dlib

        self._dlib = dlib
        self._encoder = dlib.face_recognition_model_v1(str(model_path))
        self._shape = dlib.shape_predictor(str(shape_path))
        self._lock = threading.Lock()

    def embed(self, image: DecodedImage, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        rect = self._dlib.rectangle(*dlib_box(box, landmarks))
        with self._lock:  # dlib's networks keep per-call state: one call at a time
            shape = self._shape(image.rgb, rect)
            vector = self._encoder.compute_face_descriptor(image.rgb, shape)
        return unit(np.array(vector))


def dlib_box(box: np.ndarray, landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """A square box like dlib's HOG detector gives, built from YuNet's landmarks."""
    eyes = landmarks[:2].mean(0)
    mouth = landmarks[3:5].mean(0)
    centre = (eyes + mouth) / 2
    span = float(np.linalg.norm(mouth - eyes))
    eye_span = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    side = max(span * 2.2, eye_span * 2.2, 8.0)
    left, top = int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2 + 0.1 * side))
    return left, top, left + int(round(side)), top + int(round(side))
