"""What a face mesh says about the face: Smile, EyesOpen, MouthOpen, EyeDirection, FaceOccluded
and Rekognition's 30 landmarks.

Each yes/no attribute comes from one raw measure (``*_measure``) turned into the probability
that the answer is yes (``score_*``, 0-1) by a logistic curve: its centre (where the answer
turns) was chosen by reasoning about the measure, its steepness fitted on half of the random
LFW labels (``benchmarks/labels``; ``benchmarks/attr_state.py`` reports on the other half; for
FaceOccluded it is set, not fitted: see :data:`OCCLUDED_CURVE`). The ``BoolAttribute`` is yes
when the score is at least 0.5, with the probability of the answer given (50-100) as its
confidence.

Left and right are as seen in the picture (``eyeLeft`` is the eye on the picture's left), as
for DEFAULT's five landmarks. MediaPipe numbers the mesh anatomically (its "right eye" points,
33 to 133, are the subject's right eye, on the picture's left), and its blendshapes name the
subject's sides; the measures here average both sides, so only the landmarks care.
"""

from __future__ import annotations

import math

import numpy as np

from faceprint.attributes.mesh import Mesh
from faceprint.types import BoolAttribute, EyeDirection, Landmark, Pose

# Mesh points (MediaPipe's face mesh numbering). "L"/"R": the picture's left and right.
EYE_L = (33, 133, 159, 145)        # outer corner, inner corner, upper lid, lower lid
EYE_R = (263, 362, 386, 374)
LIDS_L = ((159, 145), (158, 153), (160, 144))
LIDS_R = ((386, 374), (385, 380), (387, 373))
IRIS_L, IRIS_R = 468, 473
LIPS_INNER = ((13, 14), (82, 87), (312, 317))
MOUTH_CORNERS = (61, 291)
KEY_POINTS = (*EYE_L, *EYE_R, 1, 4, 13, 14, 61, 291, 152)
"""Points that must be in the picture for a whole face: eyes, nose, mouth and chin."""

LANDMARK_POINTS: dict[str, tuple[int, ...]] = {
    "eyeLeft": EYE_L,
    "eyeRight": EYE_R,
    "nose": (1, 4),
    "mouthLeft": (61,),
    "mouthRight": (291,),
    "leftEyeBrowLeft": (70, 46),
    "leftEyeBrowRight": (107, 55),
    "leftEyeBrowUp": (105, 52),
    "rightEyeBrowLeft": (336, 285),
    "rightEyeBrowRight": (300, 276),
    "rightEyeBrowUp": (334, 282),
    "leftEyeLeft": (33,),
    "leftEyeRight": (133,),
    "leftEyeUp": (159,),
    "leftEyeDown": (145,),
    "rightEyeLeft": (362,),
    "rightEyeRight": (263,),
    "rightEyeUp": (386,),
    "rightEyeDown": (374,),
    "noseLeft": (64,),
    "noseRight": (294,),
    "mouthUp": (0,),
    "mouthDown": (17,),
    "leftPupil": (IRIS_L,),
    "rightPupil": (IRIS_R,),
    "upperJawlineLeft": (234,),
    "midJawlineLeft": (172,),
    "chinBottom": (152,),
    "midJawlineRight": (397,),
    "upperJawlineRight": (454,),
}
"""Rekognition's 30 ``LandmarkType`` values and the mesh points each is the mean of (eyebrow
points lie mid-way across the brow's thickness; eyes are the centre of corners and lids)."""

# Logistic curves: probability = 1 / (1 + exp(-(measure - centre) * steepness)).
SMILE_CURVE = (0.5, 8.0)
"""Mean of mouthSmileLeft/Right: near 0 on a neutral mouth, 0.8-0.95 on a clear smile."""
MOUTH_CURVE = (0.07, 26.0)
"""Inner-lip gap over mouth width: closed lips measure 0.00-0.04 (the mesh's lips touch), a
visible gap of a few pixels on a 45 px mouth is 0.07."""
EYES_CURVE = (0.0, 1.0)
"""The eyes' measure is centred already (see :func:`eyes_measure`)."""
OCCLUDED_CURVE = (0.5, 6.4)
"""Half the key points outside the picture, or a presence of 0.5, turns the answer. The
steepness is not fitted: it gives a face that looks whole the share of such faces the random
LFW labels found unoccluded (96%); the mesh cannot see a hand or a microphone in front of a
face, so that is all it can honestly say (AUC 0.72 on the labels)."""


def _mean(points: np.ndarray, idx: tuple[int, ...]) -> np.ndarray:
    return points[list(idx), :2].mean(axis=0)


def _dist(points: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(points[a, :2] - points[b, :2]))


def _logistic(measure: float, curve: tuple[float, float]) -> float:
    centre, steepness = curve
    z = (measure - centre) * steepness
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def _bool(score: float) -> BoolAttribute:
    value = score >= 0.5
    return BoolAttribute(value=value, confidence=round(100.0 * (score if value else 1.0 - score), 3))


# --- measures -----------------------------------------------------------------------------------

def smile_measure(mesh: Mesh) -> float:
    return (mesh.blend("mouthSmileLeft") + mesh.blend("mouthSmileRight")) / 2


def mouth_measure(mesh: Mesh) -> float:
    p = mesh.points
    gap = sum(_dist(p, a, b) for a, b in LIPS_INNER) / len(LIPS_INNER)
    return gap / max(_dist(p, *MOUTH_CORNERS), 1e-6)


def eye_aspect(mesh: Mesh) -> float:
    """Lid opening over eye width, both eyes averaged (about 0.3 open, under 0.1 closed)."""
    p = mesh.points
    left = sum(_dist(p, a, b) for a, b in LIDS_L) / 3 / max(_dist(p, EYE_L[0], EYE_L[1]), 1e-6)
    right = sum(_dist(p, a, b) for a, b in LIDS_R) / 3 / max(_dist(p, EYE_R[0], EYE_R[1]), 1e-6)
    return (left + right) / 2


def eyes_measure(mesh: Mesh) -> float:
    """The lids' opening and the blink blendshapes, each as distance from where the eyes turn
    from open to closed (opening 0.10 of the eye's width, blink 0.55), in units of their spread
    on open eyes; positive is open."""
    blink = (mesh.blend("eyeBlinkLeft") + mesh.blend("eyeBlinkRight")) / 2
    return (eye_aspect(mesh) - 0.10) / 0.06 + (0.55 - blink) / 0.12


def occlusion_measure(mesh: Mesh, width: int, height: int) -> float:
    """0-1: the share of the key points (eyes, nose, mouth, chin) outside the picture, or the
    landmarker's doubt that it sees a whole face, whichever is larger."""
    p = mesh.points[list(KEY_POINTS), :2]
    outside = float(np.mean((p[:, 0] < 0) | (p[:, 1] < 0) | (p[:, 0] >= width) | (p[:, 1] >= height)))
    return max(outside * 2.0, 1.0 - mesh.presence)


# --- scores (probability of yes) and attributes --------------------------------------------------

SMALL_FACE_KNOTS = ((9.0, 0.72), (11.0, 0.77), (14.0, 0.86), (19.0, 0.93), (30.0, 1.0))
"""Eye span in picture pixels (:func:`eye_span`; about 0.63 of the detector's box width) -> the
share of a score's distance from 0.5 that is kept (linear between knots, flat outside). The
mesh still reads a face 15-20 px wide, but less surely: on the random LFW labels with the
pictures shrunk (boxes 98, 30, 22, 17 and 14 px wide), smile was right for 91%, 86%, 84%, 79%
and 76% of faces while its confidences averaged 90% at every size (eyes open: 97% down to 72%
right at 17 px, with confidences of 97-81%). Each knot brings the mean confidence of smile,
eyes open and mouth open down to their accuracy at that size (the first 300 random labels;
reduced decodes count at their decoded size, since that is the detail the mesh saw)."""


def eye_span(mesh: Mesh) -> float:
    """Distance between the eyes' outer corners in 3-D (unchanged by a turned head), in pixels."""
    return float(np.linalg.norm(mesh.points[EYE_L[0]] - mesh.points[EYE_R[0]]))


def _shrunk(probability: float, mesh: Mesh) -> float:
    """Towards 0.5 as the landmarker doubts it sees a face (what a mesh of something else says
    about a smile or an eye is no evidence; faces it sees have a presence of 0.99 and more) and
    as the face gets small (:data:`SMALL_FACE_KNOTS`)."""
    sizes, kept = zip(*SMALL_FACE_KNOTS, strict=True)
    sure = mesh.presence * float(np.interp(eye_span(mesh), sizes, kept))
    return 0.5 + (probability - 0.5) * sure


def score_smile(mesh: Mesh) -> float:
    return _shrunk(_logistic(smile_measure(mesh), SMILE_CURVE), mesh)


def score_mouth_open(mesh: Mesh) -> float:
    return _shrunk(_logistic(mouth_measure(mesh), MOUTH_CURVE), mesh)


def score_eyes_open(mesh: Mesh) -> float:
    return _shrunk(_logistic(eyes_measure(mesh), EYES_CURVE), mesh)


def score_face_occluded(mesh: Mesh, width: int, height: int) -> float:
    return _logistic(occlusion_measure(mesh, width, height), OCCLUDED_CURVE)


def smile(mesh: Mesh) -> BoolAttribute:
    return _bool(score_smile(mesh))


def mouth_open(mesh: Mesh) -> BoolAttribute:
    return _bool(score_mouth_open(mesh))


def eyes_open(mesh: Mesh) -> BoolAttribute:
    return _bool(score_eyes_open(mesh))


def face_occluded(mesh: Mesh, width: int, height: int) -> BoolAttribute:
    return _bool(score_face_occluded(mesh, width, height))


# --- eye direction ------------------------------------------------------------------------------

EYEBALL = 0.38
"""Distance from the eye's centre of rotation to the iris, over the eye's width (corner to
corner): about 11 of 29 mm (anatomical averages, not fitted)."""
STRAIGHT_DOWN = -0.066
"""Where the iris centre sits below the corners' line when the eye looks straight ahead, in eye
widths (negative: above): the median over the labelled LFW faces, who mostly face the camera."""


def _head_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of the head in the mesh's 3-D space: x from the picture-left eye's outer
    corner to the other's, y from the forehead towards the chin (made square to x)."""
    x = points[EYE_R[0]] - points[EYE_L[0]]
    x = x / max(float(np.linalg.norm(x)), 1e-6)
    y = points[152] - points[10]
    y = y - float(y @ x) * x
    return x, y / max(float(np.linalg.norm(y)), 1e-6)


def _iris_offset(points: np.ndarray, eye: tuple[int, ...], iris: int,
                 frame: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """The iris centre's offset from the middle of the eye's corners along the head's x and y,
    over the eye's width."""
    corners = points[eye[0]], points[eye[1]]
    width = max(float(np.linalg.norm(corners[0] - corners[1])), 1e-6)
    offset = points[iris] - (corners[0] + corners[1]) / 2
    return float(offset @ frame[0]) / width, float(offset @ frame[1]) / width


def eye_direction(mesh: Mesh, pose: Pose | None = None) -> EyeDirection:
    """Where the eyes look relative to the head (Rekognition's EyeDirection is independent of
    the head pose): each iris's offset from the middle of its eye's corners, measured in the
    head's own frame (from the mesh's 3-D points, so a turned head does not move it), as the
    angle of an eye of :data:`EYEBALL` radius; both eyes averaged. Yaw is positive towards the
    picture's right, pitch positive up, as ``Pose``. The confidence is the eyes-open score
    times the landmarker's presence (a closed eye has no gaze).

    ``pose`` is not needed (the head frame comes from the mesh); callers may pass it."""
    points = mesh.points.astype(np.float64)
    frame = _head_frame(points)
    lx, ly = _iris_offset(points, EYE_L, IRIS_L, frame)
    rx, ry = _iris_offset(points, EYE_R, IRIS_R, frame)
    x, y = (lx + rx) / 2, (ly + ry) / 2 - STRAIGHT_DOWN
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, x / EYEBALL))))
    pitch = -math.degrees(math.asin(max(-1.0, min(1.0, y / EYEBALL))))
    confidence = 100.0 * score_eyes_open(mesh) * mesh.presence
    return EyeDirection(yaw=round(yaw, 3), pitch=round(pitch, 3), confidence=round(confidence, 3))


# --- landmarks ----------------------------------------------------------------------------------

def landmark_pixels(mesh: Mesh) -> dict[str, np.ndarray]:
    """The 30 landmarks in image pixels."""
    return {name: _mean(mesh.points, idx) for name, idx in LANDMARK_POINTS.items()}


def landmarks30(mesh: Mesh, width: int, height: int) -> list[Landmark]:
    """Rekognition's 30 landmarks as ratios of a ``width`` x ``height`` picture (the picture
    the mesh's pixels are in)."""
    return [Landmark(type=name, x=float(xy[0]) / width, y=float(xy[1]) / height)
            for name, xy in landmark_pixels(mesh).items()]
