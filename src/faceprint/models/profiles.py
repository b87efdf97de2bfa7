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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from faceprint.errors import InvalidParameterException
from faceprint.models import catalog
from faceprint.models.store import ModelFile

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
FMR_LEVELS = ((1e-1, 50.0), (1e-2, 60.0), (1e-3, 70.0), (1e-4, 80.0), (1e-5, 90.0), (1e-6, 99.0))
"""(false-match rate, similarity) pairs that the calibration pins."""


@dataclass(frozen=True)
class Component:
    embedder: str
    """"sface", "sface-flip" or "dlib"."""
    weight: float
    centred: bool = False


@dataclass(frozen=True)
class Profile:
    name: str
    face_model_version: str
    components: tuple[Component, ...]
    description: str = field(default="", compare=False)

    @property
    def dim(self) -> int:
        return 128 * len(self.components)

    def model_files(self) -> tuple[ModelFile, ...]:
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


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise InvalidParameterException(
            f"Unknown model profile {name!r}; choose one of {', '.join(PROFILES)}."
        ) from None
