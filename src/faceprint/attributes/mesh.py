"""MediaPipe's face landmarker (478 points, irises, 52 blendshapes) on a crop around our face box.

MediaPipe's own face detector is skipped: the crop comes from the detector's box and five
landmarks instead, the way MediaPipe builds it from its detector's rectangle (rotated so the
eyes are level, square, 1.5 times the box). The landmark model takes that crop as 256x256 RGB
in 0-1 and answers 478 points in crop pixels, which are mapped back into the image; the
blendshape model takes 146 of those points in image pixels (MediaPipe's
``face_blendshapes_graph.cc``).

The two LiteRT models come out of ``face_landmarker.task`` (a zip) after their SHA-256 is
checked. An interpreter is not thread-safe: each has its own lock.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceprint.models import catalog

LANDMARKS_MEMBER = "face_landmarks_detector.tflite"
BLENDSHAPES_MEMBER = "face_blendshapes.tflite"
CROP = 256
ROI_SCALE = 1.5
"""MediaPipe's RectTransformationCalculator scale for the face rectangle."""

BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
"""The 52 blendshapes in the model's output order (MediaPipe's ``kBlendshapeNames``). As in
ARKit, "Left" is the subject's left: the eye on the picture's right."""

_BLEND_INDEX = {name: i for i, name in enumerate(BLENDSHAPE_NAMES)}

BLENDSHAPE_SUBSET = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66,
    67, 70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145,
    146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176,
    178, 181, 185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285,
    288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334,
    336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387,
    388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473, 474,
    475, 476, 477,
)
"""The 146 mesh points the blendshape model reads (MediaPipe's ``kLandmarksSubsetIdxs``)."""


@dataclass
class Mesh:
    """The landmarker's answer for one face."""

    points: np.ndarray
    """478 x 3: x and y in image pixels, z (relative depth) in the same scale."""
    presence: float
    """The landmarker's probability (0-1) that the crop holds a face."""
    blendshapes: np.ndarray | None
    """52 values (0-1) in :data:`BLENDSHAPE_NAMES`' order; None when not asked."""

    def blend(self, name: str) -> float:
        if self.blendshapes is None:
            raise ValueError("the mesh was computed without blendshapes")
        return float(self.blendshapes[_BLEND_INDEX[name]])


def read_members(task_path: Path) -> dict[str, bytes]:
    """The landmarker's two LiteRT models, each checked against its pinned SHA-256."""
    out = {}
    with zipfile.ZipFile(task_path) as archive:
        for name, digest in catalog.LANDMARKER_MEMBERS.items():
            data = archive.read(name)
            if hashlib.sha256(data).hexdigest() != digest:
                raise ValueError(f"{task_path}: {name} does not match its pinned SHA-256")
            out[name] = data
    return out


def crop_transform(box: np.ndarray, lm5: np.ndarray) -> np.ndarray:
    """2x3 affine matrix taking crop pixels (0-256) to image pixels: a square of 1.5 times the
    box's longer side around its centre, turned so the eyes are level."""
    if not (np.isfinite(box).all() and np.isfinite(lm5).all()):
        raise ValueError("the face box and landmarks must be finite numbers")
    x, y, w, h = (float(v) for v in box[:4])
    (lx, ly), (rx, ry) = lm5[0], lm5[1]
    angle = math.atan2(float(ry - ly), float(rx - lx))
    side = max(w, h, 1.0) * ROI_SCALE
    scale = side / CROP
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    cx, cy = x + w / 2, y + h / 2
    half = CROP / 2
    return np.array([[c, -s, cx - c * half + s * half],
                     [s, c, cy - s * half - c * half]], np.float64)


NOISE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


class QuietStderr:
    """Runs LiteRT's ``allocate_tensors()`` without its "INFO: Created TensorFlow Lite XNNPACK
    delegate for CPU." line on stderr (it would land in the CLI's JSON error stream; neither
    ``TF_CPP_MIN_LOG_LEVEL`` nor any interpreter option turns it off, and LiteRT prints it once a
    process, at the first allocation that applies XNNPACK).

    File descriptor 2 is the process's, so one object serves the process (:data:`QUIET`): a lock
    keeps two threads from swapping it at once, and once the line has been hidden nothing more is
    redirected. While an allocation runs, fd 2 is a pipe that a thread reads as it fills (a writer
    never waits on a full pipe) and passes on to the real stderr, line by line, all but that line:
    other threads' output, and that of a process started meanwhile (which keeps the pipe), is
    delayed by milliseconds, never lost."""

    def __init__(self, noise: bytes = NOISE) -> None:
        self._noise = noise
        self._lock = threading.Lock()
        self._hidden = False

    def allocate(self, interpreter: Any) -> None:
        with self._lock:
            if self._hidden:
                interpreter.allocate_tensors()
            else:
                self._hidden = self._filtered(interpreter.allocate_tensors)

    def _filtered(self, call: Any) -> bool:
        """Runs ``call`` with fd 2 filtered; whether the noise line was seen."""
        try:
            real = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep clean
            call()
            return False
        try:
            read_end, write_end = os.pipe()
        except OSError:  # out of file descriptors: better the line than no model
            os.close(real)
            call()
            return False
        seen = threading.Event()
        relay = threading.Thread(target=self._relay, args=(read_end, real, seen), name="litert-stderr", daemon=True)
        relay.start()
        os.dup2(write_end, 2)
        os.close(write_end)
        try:
            call()
        finally:
            os.dup2(real, 2)  # the pipe's last writer goes (unless a child process holds it): the relay ends
        relay.join(timeout=1.0)
        return seen.is_set()

    def _relay(self, read_end: int, real: int, seen: threading.Event) -> None:
        pending = b""
        try:
            while chunk := os.read(read_end, 65536):
                *lines, pending = (pending + chunk).split(b"\n")
                self._pass(real, [line + b"\n" for line in lines], seen)
            self._pass(real, [pending], seen)
        finally:
            os.close(read_end)
            os.close(real)

    def _pass(self, real: int, lines: list[bytes], seen: threading.Event) -> None:
        kept = []
        for line in lines:
            if line.startswith(self._noise):
                seen.set()
            else:
                kept.append(line)
        out = b"".join(kept)
        while out:
            try:
                out = out[os.write(real, out):]
            except OSError:  # stderr closed or gone: keep draining the pipe regardless
                return


QUIET = QuietStderr()
"""The process's one :class:`QuietStderr` (fd 2 is shared by every thread)."""


def allocate_quietly(interpreter: Any) -> None:
    """``interpreter.allocate_tensors()`` without LiteRT's one-time INFO line on stderr (see
    :class:`QuietStderr`). Every LiteRT interpreter of the package should be allocated so."""
    QUIET.allocate(interpreter)


class _Model:
    """One LiteRT interpreter behind a lock."""

    def __init__(self, content: bytes, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._lock = threading.Lock()
        self._interpreter = Interpreter(model_content=content, num_threads=threads)
        allocate_quietly(self._interpreter)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}

    def __call__(self, tensor: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            return [self._interpreter.get_tensor(self._outputs[n]).copy() for n in names]


class FaceMesh:
    """The 478-point mesh and blendshapes of a face the detector found."""

    def __init__(self, task_path: Path, threads: int = 1) -> None:
        members = read_members(Path(task_path))
        self._landmarks = _Model(members[LANDMARKS_MEMBER], threads)
        self._blendshapes = _Model(members[BLENDSHAPES_MEMBER], threads)

    def run(self, bgr: np.ndarray, box: np.ndarray, lm5: np.ndarray, blendshapes: bool = True) -> Mesh:
        import cv2

        to_image = crop_transform(np.asarray(box, np.float64), np.asarray(lm5, np.float64))
        crop = cv2.warpAffine(bgr, to_image, (CROP, CROP), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        tensor = (cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)[None]
        raw, logit = self._landmarks(tensor, ("Identity", "Identity_1"))
        local = raw.reshape(478, 3).astype(np.float64)
        points = np.empty_like(local)
        points[:, :2] = local[:, :2] @ to_image[:, :2].T + to_image[:, 2]
        points[:, 2] = local[:, 2] * math.hypot(to_image[0, 0], to_image[1, 0])
        presence = 1.0 / (1.0 + math.exp(-float(np.clip(logit.ravel()[0], -60, 60))))
        shapes = self._blend(points) if blendshapes else None
        return Mesh(points=points.astype(np.float32), presence=presence, blendshapes=shapes)

    def _blend(self, points: np.ndarray) -> np.ndarray:
        subset = points[list(BLENDSHAPE_SUBSET), :2].astype(np.float32)[None]
        (out,) = self._blendshapes(subset, ("StatefulPartitionedCall:0",))
        return np.clip(out.reshape(52), 0.0, 1.0).astype(np.float32)
