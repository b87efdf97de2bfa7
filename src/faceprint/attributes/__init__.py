"""Face attributes beyond DEFAULT (DetectFaces ``Attributes``, IndexFaces ``DetectionAttributes``,
StartFaceDetection ``FaceAttributes=ALL``): age, gender, emotions, smile, eyes, mouth, eyewear,
facial hair, eye direction, occlusion and the 30 landmarks.

:func:`requested` turns a request's attribute names into what to compute; :class:`AttributeEngine`
computes only that, loading each model on first use. Each model lives in its own module:

- ``mesh``: MediaPipe's face landmarker (478 points, irises, 52 blendshapes) on a crop around
  the detector's box; ``face_state`` turns a mesh into Smile, EyesOpen, MouthOpen, EyeDirection,
  FaceOccluded and the 30 landmarks.
- ``agegender``: AgeRange and Gender (dlib's age and gender networks as ONNX).
- ``emotions``: the eight Emotions (fer's expression network with the mesh's blendshapes).
- ``wear``: Eyeglasses, Sunglasses, Beard and Mustache.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from faceprint.types import BoolAttribute

ATTRIBUTE_NAMES = ("AGE_RANGE", "BEARD", "EMOTIONS", "EYE_DIRECTION", "EYEGLASSES", "EYES_OPEN",
                   "GENDER", "MOUTH_OPEN", "MUSTACHE", "FACE_OCCLUDED", "SMILE", "SUNGLASSES")
"""The attributes a request may name one by one (Rekognition's ``Attribute`` enum less DEFAULT and ALL)."""

LANDMARKS = "LANDMARKS"
"""Not a request name: ``ALL`` also returns the 30 landmarks in place of DEFAULT's five."""

EVERYTHING = frozenset((*ATTRIBUTE_NAMES, LANDMARKS))

MESH_ATTRIBUTES = frozenset(("SMILE", "EYES_OPEN", "MOUTH_OPEN", "EYE_DIRECTION", "FACE_OCCLUDED", LANDMARKS))
"""What the face mesh alone answers."""


def requested(attributes: Iterable[str]) -> frozenset[str]:
    """What to compute beyond DEFAULT for a request's (validated) attribute names: ``ALL`` is
    everything (and the 30 landmarks), ``DEFAULT`` adds nothing, other names add themselves."""
    names = set(attributes)
    if "ALL" in names:
        return EVERYTHING
    return frozenset(names & set(ATTRIBUTE_NAMES))


@dataclass
class Described:
    """The attributes computed for one face, as Rekognition's shapes; None where not asked."""

    values: dict[str, object] = field(default_factory=dict)
    """FaceDetail field name (snake_case, e.g. ``age_range``, ``landmarks``) to its value."""


def as_bool(probability: float) -> BoolAttribute:
    """A yes/no attribute from the probability of yes: yes from 0.5, and the confidence (50-100)
    the probability that the answer is right."""
    value = probability >= 0.5
    return BoolAttribute(value=value, confidence=round(100.0 * (probability if value else 1.0 - probability), 3))
