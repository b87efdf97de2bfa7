"""Probe quality: say when a search cannot be trusted.

A still from a surveillance camera is often small and blurred, and recognition falls with it.
``benchmarks/probe_quality.py`` measures, per profile, the rank-1 rate of 1:N searches on LFW
with probes degraded as a CCTV still would be (scaled so that the face is W pixels wide, Gaussian
blur of radius 0.6 at that size, JPEG quality 30, scaled back up), and stores the curve in
``models/probe_quality.json``. Every search by image is told:

- ``face_width``: the face's width in pixels in the probe as submitted;
- ``sharpness`` (0-100): how much detail the face holds for its size. The face is cropped,
  resampled to 112 px (area averaging to shrink, bicubic to enlarge, so a small face looks as soft
  as it is), and the variance of its Laplacian over the variance of its pixels (so that contrast
  does not count) is mapped onto 0-100 as ``100 * (1 - exp(-ratio / 0.05))``. A face of 112 px or
  more is measured at 112 px, so the same photo scores about the same at any larger size; a smaller
  face, or one blown up from a few pixels, scores low. LFW's
  own photos score 47-93 (10th-90th percentile; median 72); degraded to a face 24 px wide and scaled
  back up, 9-22 (median 14).
- ``expected_rank1``: the profile's measured rank-1 at the probe's *effective* width: its face
  width, or less where its sharpness is that of a face degraded to a smaller width (the benchmark
  stores the median sharpness of its probes at each width), since a still scaled up after the fact
  is as poor as the small one it came from. Between measured widths the curve is interpolated
  linearly (made monotone first); outside them it holds its end values.
- ``low_quality``: ``expected_rank1`` is under the floor (default 90%).

Rekognition's own ``Quality.Sharpness`` (faceprint.analysis) enlarges a small face by area
averaging and so calls a small sharp-edged face sharp; this measure does not.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from faceprint.faces import MeasuredFace
    from faceprint.imaging import DecodedImage

CURVE_FILE = Path(__file__).with_name("models") / "probe_quality.json"
DEFAULT_FLOOR = 90.0
SHARPNESS_SIDE = 112
SHARPNESS_SCALE = 0.05
"""Laplacian-to-face variance ratio that maps to sharpness 63 (as Rekognition's Quality.Sharpness)."""


@dataclass(frozen=True)
class ProbeQuality:
    face_width: int
    """The face's width in pixels in the probe as submitted."""
    sharpness: float
    """0-100: detail for the face's size (see the module's notes)."""
    expected_rank1: float | None
    """Percent: the profile's measured rank-1 at this quality (None where the profile has no curve)."""
    floor: float
    """The floor in force (percent)."""

    @property
    def low_quality(self) -> bool:
        return self.expected_rank1 is not None and self.expected_rank1 < self.floor

    def to_json(self) -> dict[str, Any]:
        return {"FaceWidth": self.face_width, "Sharpness": self.sharpness, "ExpectedRank1": self.expected_rank1,
                "Floor": self.floor, "LowQuality": self.low_quality}

    def headers(self) -> dict[str, str]:
        out = {"X-Faceprint-Probe-Face-Width": str(self.face_width),
               "X-Faceprint-Probe-Sharpness": f"{self.sharpness:.1f}"}
        if self.expected_rank1 is not None:
            out["X-Faceprint-Probe-Expected-Rank1"] = f"{self.expected_rank1:.1f}"
        out["X-Faceprint-Probe-Low-Quality"] = "true" if self.low_quality else "false"
        return out


def monotone(values: list[float]) -> list[float]:
    """The closest non-decreasing sequence (least squares; pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, count]
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, n2), (m1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    return [m for m, n in blocks for _ in range(int(n))]


@dataclass(frozen=True)
class ProbeCurve:
    """A profile's measured rank-1 (percent) against the probe face's width in pixels, and the
    median sharpness of the benchmark's probes at each width."""

    profile: str
    widths: tuple[float, ...]
    rank1: tuple[float, ...]
    sharpness: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.widths) < 1 or len(self.widths) != len(self.rank1) or list(self.widths) != sorted(set(self.widths)):
            raise ValueError("a probe curve needs increasing widths, one rank-1 each")
        if self.sharpness is not None and len(self.sharpness) != len(self.widths):
            raise ValueError("a probe curve's sharpness needs one value per width")

    @classmethod
    def load(cls, profile_name: str, path: Path = CURVE_FILE) -> ProbeCurve | None:
        """The curve stored for ``profile_name``, or None where there is none."""
        return cls.from_entry(profile_name, json.loads(path.read_text()).get("profiles", {}).get(profile_name))

    @classmethod
    def from_entry(cls, profile_name: str, entry: dict[str, Any] | None) -> ProbeCurve | None:
        """The curve of a stored entry (``widths``, ``rank1``, optional ``sharpness``); None for None."""
        if entry is None:
            return None
        sharp = entry.get("sharpness")
        return cls(profile_name, tuple(float(w) for w in entry["widths"]), tuple(float(r) for r in entry["rank1"]),
                   None if sharp is None else tuple(float(s) for s in sharp))

    def effective_width(self, face_width: float, sharpness: float | None = None) -> float:
        """``face_width``, or the width whose degraded probes are as sharp, where that is smaller."""
        if sharpness is None or self.sharpness is None:
            return float(face_width)
        sharp = monotone(list(self.sharpness))
        if sharpness >= sharp[-1]:
            return float(face_width)
        xs, ys = _increasing(sharp, list(self.widths))
        return min(float(face_width), float(np.interp(sharpness, xs, ys)))

    def rank1_at(self, face_width: float, sharpness: float | None = None) -> float:
        """Measured rank-1 (percent) at the effective width; the end values outside the measured range."""
        width = self.effective_width(face_width, sharpness)
        return float(np.interp(width, self.widths, monotone(list(self.rank1))))


def _increasing(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """Keep the first point of each run of equal ``xs`` (np.interp wants them increasing)."""
    out_x: list[float] = []
    out_y: list[float] = []
    for x, y in zip(xs, ys, strict=True):
        if not out_x or x > out_x[-1]:
            out_x.append(x)
            out_y.append(y)
    return out_x, out_y


def face_sharpness(bgr: np.ndarray, box: np.ndarray) -> float:
    """0-100: the face's detail for its size (see the module's notes)."""
    x, y, w, h = (int(round(float(v))) for v in box[:4])
    height, width = bgr.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(bgr[y0:y1, x0:x1]), cv2.COLOR_BGR2GRAY)
    shrink = grey.shape[1] >= SHARPNESS_SIDE and grey.shape[0] >= SHARPNESS_SIDE
    small = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE),
                       interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC).astype(np.float64)
    ratio = float(cv2.Laplacian(small, cv2.CV_64F).var()) / (float(small.var()) + 1.0)
    return round(100.0 * (1.0 - math.exp(-ratio / SHARPNESS_SCALE)), 1)


class ProbeAssessor:
    """Rates a search's probe face against the profile's measured curve: a built-in profile's from
    ``models/probe_quality.json``; an operator profile's from its calibration (``calibration``: the
    profile's ``calibration_data``, key ``probe_quality``, written by ``benchmarks/probe_quality.py
    --home HOME --profiles NAME --write``)."""

    def __init__(self, profile_name: str, floor: float = DEFAULT_FLOOR, curve: ProbeCurve | None = None,
                 calibration: dict[str, Any] | None = None) -> None:
        if not isinstance(floor, (int, float)) or math.isnan(floor) or not 0.0 <= floor <= 100.0:
            raise ValueError(f"the probe-quality floor must be a percentage from 0 to 100, not {floor!r}")
        self.profile_name = profile_name
        self.floor = float(floor)
        if curve is None and calibration is not None:
            curve = ProbeCurve.from_entry(profile_name, calibration.get("probe_quality"))
        elif curve is None:
            curve = ProbeCurve.load(profile_name)
        self.curve = curve

    def assess(self, image: DecodedImage, face: MeasuredFace) -> ProbeQuality:
        """The quality of ``face``, found in ``image`` (the probe as decoded)."""
        box = np.asarray(face.box_px, np.float64)
        width = max(int(round(float(box[2]) * face.reduced_by)), 0)
        sharpness = face_sharpness(image.bgr, box)
        expected = None if self.curve is None else round(self.curve.rank1_at(width, sharpness), 1)
        return ProbeQuality(face_width=width, sharpness=sharpness, expected_rank1=expected, floor=self.floor)
