"""Model profiles: which embedders make a face's vector, and how scores become similarity.

A profile's face vector is the concatenation of its embedders' vectors, each
first centred (minus a mean face vector, where calibrated), made unit-length
and scaled by the square root of its weight (weights sum to one). The whole
vector is unit-length and the dot product of two of them is the weighted sum
of the embedders' cosine similarities: score fusion that an index can search
as one vector.

Similarity (0-100) is a monotonic, piecewise-linear map of that score whose
knots sit at measured false-match rates: 50, 60, 70, 80, 90 and 99 are where
1e-1, 1e-2, 1e-3, 1e-4, 1e-5 and 1e-6 of impostor pairs score as high. Means
and knots come from ``benchmarks/calibrate.py`` (``calibration.json`` beside
this file); ``docs/models.md`` gives the rates measured on held-out people.

Operator profiles (``faceprint.models.operator``, registered under ``HOME/profiles`` by
``faceprint.models.registry``) have one component, their recogniser, and take their knots from
their own calibration (``faceprint calibrate``); until calibrated, the provisional map
``PROVISIONAL_KNOTS`` (cosine -1..1 onto 0..100) stands and ``Profile.calibrated`` is False: its
thresholds mean no measured false-match rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint.errors import InvalidParameterException
from faceprint.models import catalog
from faceprint.models.store import ModelFile

if TYPE_CHECKING:
    from faceprint.models.operator import OperatorSpec

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
FMR_LEVELS = ((1e-1, 50.0), (1e-2, 60.0), (1e-3, 70.0), (1e-4, 80.0), (1e-5, 90.0), (1e-6, 99.0))
"""(false-match rate, similarity) pairs that the calibration pins."""
PROVISIONAL_KNOTS = ((-1.0, 0.0), (1.0, 100.0))
"""An uncalibrated operator profile's map: cosine -1..1 onto similarity 0..100 (no measured rate)."""


@dataclass(frozen=True)
class Component:
    embedder: str
    """"sface", "sface-flip" or "dlib"; "arcface" for an operator profile's recogniser."""
    weight: float
    centred: bool = False


@dataclass(frozen=True)
class Profile:
    name: str
    face_model_version: str
    components: tuple[Component, ...]
    description: str = field(default="", compare=False)
    operator: OperatorSpec | None = None
    """None for the built-in profiles."""
    folder: Path | None = field(default=None, compare=False)
    """An operator profile's folder (``HOME/profiles/NAME``): its files and calibration."""
    calibration_data: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """An operator profile's calibration (``calibration.json`` in its folder), None if uncalibrated."""

    @classmethod
    def from_operator(cls, spec: OperatorSpec, folder: Path, calibration_data: dict[str, Any] | None) -> Profile:
        return cls(name=spec.name, face_model_version=spec.face_model_version,
                   components=(Component(spec.recogniser.kind, 1.0),),
                   description=spec.description or f"operator profile {spec.name} ({spec.licence})",
                   operator=spec, folder=folder, calibration_data=calibration_data)

    @property
    def dim(self) -> int:
        if self.operator is not None:
            return self.operator.recogniser.output_dim
        return 128 * len(self.components)

    @property
    def calibrated(self) -> bool:
        """Whether similarity thresholds mean measured false-match rates (built-ins: always)."""
        return self.operator is None or self.calibration_data is not None

    def file_path(self, role: str) -> Path:
        """An operator profile's ``detector`` or ``recogniser`` file in its folder."""
        if self.operator is None or self.folder is None or role not in self.operator.files():
            raise ValueError(f"profile {self.name!r} has no operator {role} file")
        return self.folder / self.operator.files()[role][0]

    def model_files(self) -> tuple[ModelFile, ...]:
        """The pinned package-index files it needs (an operator profile's own files are in its folder)."""
        if self.operator is not None:
            return (catalog.YUNET,) if self.operator.detector.kind == "yunet" else ()
        files = [catalog.YUNET]
        for comp in self.components:
            if comp.embedder.startswith("sface"):
                files.append(catalog.SFACE)
            else:
                files += [catalog.DLIB_RESNET, catalog.DLIB_SHAPE5]
        return tuple(dict.fromkeys(files))

    def fuse(self, parts: list[np.ndarray], means: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """One unit vector from the components' raw unit vectors (same order as ``components``).

        ``means`` overrides the calibrated mean vectors (the calibration itself uses it).
        """
        out = []
        for comp, vec in zip(self.components, parts, strict=True):
            if comp.centred:
                vec = vec - (means or _means())[comp.embedder]
                vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
            out.append(np.sqrt(comp.weight) * vec)
        return np.concatenate(out).astype(np.float32)

    @property
    def knots(self) -> tuple[tuple[float, float], ...]:
        """(score, similarity) pairs, both increasing."""
        if self.operator is not None:
            if self.calibration_data is None:
                return PROVISIONAL_KNOTS
            return tuple((float(s), float(v)) for s, v in self.calibration_data["knots"])
        return tuple((float(s), float(v)) for s, v in calibration()["profiles"][self.name]["knots"])

    def similarity(self, score: np.ndarray | float) -> np.ndarray | float:
        """Map fused scores to Rekognition-style similarity in [0, 100]."""
        xs, ys = zip(*self.knots, strict=True)
        out = np.interp(score, xs, ys)
        return float(out) if np.ndim(out) == 0 else out

    def score_for(self, similarity: float) -> float:
        """The fused score at which similarity reaches ``similarity`` (inverse map)."""
        xs, ys = zip(*self.knots, strict=True)
        return float(np.interp(similarity, ys, xs))


@cache
def calibration() -> dict[str, Any]:
    return json.loads(CALIBRATION_FILE.read_text())


@cache
def _means() -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float32) for k, v in calibration()["means"].items()}


ACCURATE = Profile(
    name="accurate",
    face_model_version="faceprint-accurate-1 (yunet-2023mar, sface-2021dec+flip centred 0.4, dlib-resnet-v1 0.6)",
    components=(Component("sface-flip", 0.4, centred=True), Component("dlib", 0.6)),
    description="SFace (with its mirrored crop) fused with dlib's ResNet: the most accurate",
)

FAST = Profile(
    name="fast",
    face_model_version="faceprint-fast-1 (yunet-2023mar, sface-2021dec centred)",
    components=(Component("sface", 1.0, centred=True),),
    description="SFace alone: about three times faster",
)

PROFILES = {p.name: p for p in (ACCURATE, FAST)}
DEFAULT_PROFILE = ACCURATE.name


def get_profile(name: str, home: Path | None = None) -> Profile:
    """A built-in profile, or (given the faceprint ``home``) an operator profile registered there;
    InvalidParameterException naming the choices otherwise."""
    if name in PROFILES:
        return PROFILES[name]
    if home is not None:
        from faceprint.models.registry import ProfileRegistry

        return ProfileRegistry(home).get(name)
    raise InvalidParameterException(
        f"Unknown model profile {str(name)[:80]!r}; choose one of {', '.join(PROFILES)} "
        f"(or an operator profile of the faceprint home: `faceprint models list`)."
    )
