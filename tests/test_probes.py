"""Probe quality: face width, sharpness and the measured rank-1 curve, on real LFW faces."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import lfw_image
from faceprint.probes import CURVE_FILE, ProbeAssessor, ProbeCurve, ProbeQuality, monotone

PERSON = ("Aaron_Peirsol", 1)


def cctv(rgb: np.ndarray, scale: float, back_up: bool) -> np.ndarray:
    """As the benchmark degrades a probe: scaled, blur 0.6, JPEG q30, and (optionally) scaled back up."""
    image = Image.fromarray(rgb)
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    small.filter(ImageFilter.GaussianBlur(0.6)).save(buffer, "JPEG", quality=30)
    small = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if back_up:
        return np.asarray(small.resize(image.size, Image.Resampling.BICUBIC))
    canvas = Image.new("RGB", (120, 120), (120, 120, 120))  # Rekognition's images are at least 80 px a side
    canvas.paste(small, ((120 - small.width) // 2, (120 - small.height) // 2))
    return np.asarray(canvas)


def assess(fp, assessor: ProbeAssessor, rgb: np.ndarray) -> ProbeQuality:
    analysis = fp.analyze(rgb, max_faces=1, embed=False)
    assert analysis.faces, "the detector should find the face"
    return assessor.assess(analysis.image, analysis.faces[0])


@pytest.fixture(scope="module")
def original(fast) -> np.ndarray:
    return fast.load_image(lfw_image(*PERSON)).rgb


@pytest.fixture(scope="module")
def assessor() -> ProbeAssessor:
    return ProbeAssessor("fast")


def test_full_size_face_is_trusted_and_a_24px_still_is_not(fast, assessor, original):
    full = assess(fast, assessor, original)
    assert 80 <= full.face_width <= 130 and full.sharpness > 40
    assert full.expected_rank1 is not None and not full.low_quality
    scale = 24 / full.face_width
    small = assess(fast, assessor, cctv(original, scale, back_up=False))
    assert small.face_width <= 32 and small.face_width < full.face_width
    assert small.sharpness < full.sharpness / 2
    assert small.low_quality and small.expected_rank1 < full.expected_rank1


def test_a_still_scaled_back_up_is_caught_by_its_sharpness(fast, assessor, original):
    full = assess(fast, assessor, original)
    blown_up = assess(fast, assessor, cctv(original, 24 / full.face_width, back_up=True))
    assert abs(blown_up.face_width - full.face_width) <= 0.2 * full.face_width  # as wide as before...
    assert blown_up.sharpness < full.sharpness / 2  # ...but soft,
    assert blown_up.low_quality  # and rated as the small still it came from
    assert blown_up.expected_rank1 < 90.0 <= full.expected_rank1


def test_the_floor_decides(fast, original):
    analysis = fast.analyze(original, max_faces=1, embed=False)
    strict = ProbeAssessor("fast", floor=100.0).assess(analysis.image, analysis.faces[0])
    lax = ProbeAssessor("fast", floor=0.0).assess(analysis.image, analysis.faces[0])
    assert strict.low_quality and not lax.low_quality
    assert strict.floor == 100.0 and strict.expected_rank1 == lax.expected_rank1
    for bad in (-1.0, 100.5, float("nan")):
        with pytest.raises(ValueError):
            ProbeAssessor("fast", floor=bad)


def test_curve_interpolates_monotonically_and_clamps():
    curve = ProbeCurve("test", (20.0, 30.0, 40.0, 60.0), (10.0, 50.0, 45.0, 90.0))  # 40 px measured a little low
    assert curve.rank1_at(5) == 10.0 and curve.rank1_at(20) == 10.0  # clamped below
    assert curve.rank1_at(60) == 90.0 and curve.rank1_at(4000) == 90.0  # and above
    assert curve.rank1_at(25) == pytest.approx(28.75)  # between 10 and the pooled 47.5
    grid = [curve.rank1_at(w) for w in np.linspace(0, 100, 201)]
    assert all(b >= a for a, b in zip(grid, grid[1:], strict=False))
    assert monotone([1, 3, 2, 4, 0, 5]) == [1, 2.25, 2.25, 2.25, 2.25, 5]


def test_sharpness_lowers_the_effective_width_only():
    curve = ProbeCurve("test", (20.0, 40.0, 80.0), (20.0, 80.0, 98.0), sharpness=(10.0, 30.0, 60.0))
    assert curve.effective_width(100, 90.0) == 100  # sharper than any degraded probe: its own width
    assert curve.effective_width(100, 30.0) == 40.0  # as soft as the 40 px probes
    assert curve.effective_width(100, 20.0) == 30.0
    assert curve.effective_width(25, 50.0) == 25  # never more than its width
    assert curve.rank1_at(100, 30.0) == 80.0 and curve.rank1_at(100) == 98.0
    with pytest.raises(ValueError):
        ProbeCurve("bad", (40.0, 20.0), (1.0, 2.0))


@pytest.mark.parametrize("profile", ["fast", "accurate"])
def test_shipped_curves_load(profile):
    curve = ProbeCurve.load(profile)
    assert curve is not None and len(curve.widths) >= 5 and curve.sharpness is not None
    assert all(0.0 <= r <= 100.0 for r in curve.rank1)
    assert curve.rank1_at(24) < 90.0 <= curve.rank1_at(110)
    entry = json.loads(CURVE_FILE.read_text())["profiles"][profile]
    assert entry["probes"] > 0 and entry["date"] and entry["machine"] and entry["command"]
    assert ProbeAssessor(profile).curve == curve


def test_unknown_profile_has_no_expectation_and_is_never_low_quality():
    assert ProbeCurve.load("no-such-profile") is None
    quality = ProbeQuality(face_width=20, sharpness=5.0, expected_rank1=None, floor=90.0)
    assert not quality.low_quality
    assert "X-Faceprint-Probe-Expected-Rank1" not in quality.headers()


def test_json_and_headers():
    quality = ProbeQuality(face_width=31, sharpness=18.25, expected_rank1=71.4, floor=90.0)
    assert quality.to_json() == {"FaceWidth": 31, "Sharpness": 18.25, "ExpectedRank1": 71.4, "Floor": 90.0,
                                 "LowQuality": True}
    assert quality.headers() == {"X-Faceprint-Probe-Face-Width": "31", "X-Faceprint-Probe-Sharpness": "18.2",
                                 "X-Faceprint-Probe-Expected-Rank1": "71.4", "X-Faceprint-Probe-Low-Quality": "true"}
