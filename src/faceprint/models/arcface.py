"""Operator-supplied ArcFace-style recognisers (insightface's w600k_r50 and the like) on onnxruntime.

The face is aligned by a similarity transform of its five landmarks onto ArcFace's 112 x 112
template, scaled to the network's input size as insightface's ``face_align.estimate_norm`` does
(a multiple of 112: scaled; otherwise scaled by size / 128 and shifted 8 of those units right).
The crop is fed in the colour order, normalisation and layout the profile declares, and the
answer is made unit-length. The model is checked on load: one image input of the declared size
and layout, and a trial run that must answer ``output_dim`` finite numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceprint.errors import ModelUnavailableError
from faceprint.imaging import DecodedImage
from faceprint.models.embedders import ARCFACE_TEMPLATE, similarity_transform, unit
from faceprint.models.onnx_edit import flush_denormals

TEMPLATES = {"arcface": ARCFACE_TEMPLATE}
COLOURS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class Conventions:
    """What the recogniser expects: how to cut, colour, normalise and lay out the face crop."""

    input_size: int = 112
    """Side of the square crop, in pixels."""
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    """Per channel, in the network's colour order: it sees (pixel - mean) / std."""
    colour: str = "RGB"
    """"RGB" or "BGR": the channel order the network wants."""
    layout: str = "NCHW"
    """"NCHW" or "NHWC"."""
    template: str = "arcface"
    """Five-point template name: "arcface" (ArcFace's 112 x 112 points, scaled to input_size)."""
    output_dim: int = 512

    def __post_init__(self) -> None:
        problems = []
        if not 16 <= self.input_size <= 1024:
            problems.append(f"input_size {self.input_size} is not between 16 and 1024")
        if len(self.mean) != 3 or len(self.std) != 3:
            problems.append("mean and std need three values each")
        elif not all(np.isfinite(self.mean)) or not all(np.isfinite(s) and s > 0 for s in self.std):
            problems.append("mean must be finite and std positive")
        if self.colour not in COLOURS:
            problems.append(f"colour {self.colour!r} is not one of {', '.join(COLOURS)}")
        if self.layout not in LAYOUTS:
            problems.append(f"layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.template not in TEMPLATES:
            problems.append(f"template {self.template!r} is not one of {', '.join(TEMPLATES)}")
        if not 1 <= self.output_dim <= 8192:
            problems.append(f"output_dim {self.output_dim} is not between 1 and 8192")
        if problems:
            raise ValueError("recogniser conventions: " + "; ".join(problems))

    def points(self) -> np.ndarray:
        """The template's five points in the input_size x input_size crop (insightface's rule)."""
        size = self.input_size
        points = TEMPLATES[self.template].astype(np.float64)
        if size % 112 == 0:
            return points * (size / 112.0)
        ratio = size / 128.0
        return points * ratio + np.array([8.0 * ratio, 0.0])


class ArcFaceEmbedder:
    """An ArcFace-style ONNX recogniser: aligned crop in, unit ``output_dim`` float32 vector out.
    Thread-safe (one onnxruntime session; no per-call state kept on the object)."""

    def __init__(self, model_path: Path, conventions: Conventions, name: str = "arcface",
                 threads: int = 0) -> None:
        self.conventions = conventions
        self.name = name
        self.dim = conventions.output_dim
        self._points = conventions.points()
        self._mean = np.asarray(conventions.mean, np.float32)
        self._inv_std = 1.0 / np.asarray(conventions.std, np.float32)
        self._session = load_session(Path(model_path), threads)
        self._input = self._session.get_inputs()[0].name
        self._check(Path(model_path).name)

    def embed(self, image: DecodedImage, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return unit(self._forward(self.crop(image, landmarks)[None]))

    def crop(self, image: DecodedImage, landmarks: np.ndarray) -> np.ndarray:
        """The aligned input_size x input_size crop, in the network's colour order (uint8)."""
        pixels = image.rgb if self.conventions.colour == "RGB" else image.bgr
        size = self.conventions.input_size
        matrix = similarity_transform(np.asarray(landmarks, np.float64).reshape(5, 2), self._points)
        return cv2.warpAffine(pixels, matrix, (size, size), flags=cv2.INTER_LINEAR)

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        """The network's raw answer for N crops (N x size x size x 3, uint8): N x output_dim."""
        blob = (crops.astype(np.float32) - self._mean) * self._inv_std
        if self.conventions.layout == "NCHW":
            blob = blob.transpose(0, 3, 1, 2)
        answer = self._session.run(None, {self._input: np.ascontiguousarray(blob)})[0]
        return np.asarray(answer, np.float32).reshape(len(crops), -1)

    def _check(self, label: str) -> None:
        """Refuses (ModelUnavailableError) a model that does not fit the conventions."""
        c = self.conventions
        inputs = self._session.get_inputs()
        want = (3, c.input_size, c.input_size) if c.layout == "NCHW" else (c.input_size, c.input_size, 3)
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        fits = len(shape) == 4 and all(not isinstance(got, int) or got == need
                                       for got, need in zip(shape[1:], want, strict=True))
        if not fits or "float" not in inputs[0].type:
            raise ModelUnavailableError(
                f"{label}: does not fit the declared conventions: expected one float input of "
                f"N x {' x '.join(map(str, want))} ({c.layout}), got "
                f"{[(i.name, i.shape, i.type) for i in inputs]}")
        probe = np.full((1, c.input_size, c.input_size, 3), 128, np.uint8)
        try:
            answer = self._forward(probe)
        except Exception as exc:  # onnxruntime's errors have no common public base
            raise ModelUnavailableError(f"{label}: failed on a trial {c.layout} input: {exc}") from exc
        if answer.shape != (1, c.output_dim) or not np.isfinite(answer).all():
            raise ModelUnavailableError(
                f"{label}: does not fit the declared conventions: output_dim is {c.output_dim} "
                f"but the model answered {answer.size} values"
                + ("" if np.isfinite(answer).all() else " (not all finite)"))


def load_session(path: Path, threads: int):
    """An onnxruntime CPU session of the model at ``path``, its subnormal weights flushed to zero
    first (the test recogniser has enough of them to cost 3.6x: 91 against 25 ms a face, same
    output; see onnx_edit.flush_denormals). A file that is not a loadable ONNX model raises
    ModelUnavailableError naming it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        model = flush_denormals(path.read_bytes())
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # OSError, ValueError, InvalidProtobuf, Fail...: no common base
        raise ModelUnavailableError(f"{path.name}: not a loadable ONNX model ({exc})") from exc
