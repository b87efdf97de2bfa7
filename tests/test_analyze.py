"""The analysis behind every face operation, one image and many."""

from __future__ import annotations

import numpy as np

from conftest import lfw_image
from faceprint.errors import FaceprintError


def test_analyze_gives_unit_vectors_for_kept_faces(fast, data) -> None:
    a, b = (np.asarray(fast.load_image(lfw_image(n, 1)).rgb) for n in ("Aaron_Peirsol", "Aaron_Sorkin"))
    result = fast.analyze(np.concatenate([a, b], axis=1))
    assert len(result.faces) == 2 and result.vectors.shape == (2, fast.profile.dim)
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.rejected == []


def test_analyze_reports_rejections_with_reasons(fast, data) -> None:
    dark = (fast.load_image(lfw_image("Aaron_Peirsol", 1)).rgb * 0.2).astype(np.uint8)  # brightness ~11
    assert len(fast.analyze(dark, quality_filter="NONE", embed=False).faces) == 1
    assert len(fast.analyze(dark, quality_filter="LOW", embed=False).faces) == 1
    result = fast.analyze(dark, quality_filter="HIGH")
    assert result.faces == [] and result.vectors.shape == (0, fast.profile.dim)
    assert [reason for _, reason in result.rejected] == ["LOW_BRIGHTNESS"]


def test_analyze_many_keeps_order_and_survives_bad_input(fast, data) -> None:
    paths = [lfw_image("Aaron_Peirsol", i) for i in (1, 2, 3, 4)]
    inputs = [paths[0], b"not an image", paths[1], paths[2], paths[3]]
    results = list(fast.analyze_many(inputs, max_faces=1, workers=2))
    assert len(results) == 5
    assert isinstance(results[1], FaceprintError) and results[1].code == "InvalidImageFormatException"
    singles = [fast.analyze(p, 1).vectors[0] for p in paths]
    batch = [r.vectors[0] for r in results if not isinstance(r, FaceprintError)]
    for one, many in zip(singles, batch, strict=True):
        assert float(one @ many) > 0.9999
