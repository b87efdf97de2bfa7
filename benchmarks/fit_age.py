"""Fit AgeRange (AGE_CORRECTION and BAND_TAIL, BAND_SPREAD, BAND_A, BAND_B in
faceprint.attributes.agegender) on half A of the UTKFace evaluation images (file-name hash,
attr_age.utk_half); attr_age.py reports half B.

First the correction: the corrected age at five knots of the expected age (0, 20, 40, 60, 80;
linear between), least absolute error on half A (iteratively reweighted least squares). Then the
band around the corrected age: among the bands that hold the true age for at least ``--target`` of
half A's faces with a median width of at most 14 years and a mean width no wider than the earlier
band's (tail 0.25, spread 1, 3 + 0.11 x age around the uncorrected age) on the same faces, the one
whose worst-covered adult age band (18-29, 30-44, 45-59, 60+) holds the most true ages: the
narrowest median band alone gave young children narrow bands and people over 60 a band holding 61%.

    python benchmarks/fit_age.py [--target 0.82] [--limit N] [--save readings.npz] [--load readings.npz]

``--resting`` instead prints emotions.RESTING: each blendshape's median over every fifth lfw-dev
image (the face nearest the centre), the level an action unit counts from, and
emotions.PROTOTYPE_RESTING: each FACS prototype's median activation on the same faces.

    python benchmarks/fit_age.py --resting
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attr_age  # noqa: E402

TAILS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
SPREADS = tuple(np.round(np.arange(0.0, 2.01, 0.1), 2))
SLOPES = tuple(np.round(np.arange(0.0, 0.21, 0.01), 2))
OFFSETS = tuple(np.round(np.arange(0.0, 12.01, 0.25), 2))
KNOTS = (0.0, 20.0, 40.0, 60.0, 80.0)
AGES = np.array([0.25, *range(1, 81)])
MAX_MEDIAN_WIDTH = 14
"""On half A, a year under the goal (15), so that half B keeps it."""
ADULT_BANDS = ((18, 29), (30, 44), (45, 59), (60, 200))


def fit_correction(expected: np.ndarray, truth: np.ndarray) -> tuple[float, ...]:
    """The corrected age at each of KNOTS (linear between), least absolute error."""
    basis = np.stack([np.interp(expected, KNOTS, row) for row in np.eye(len(KNOTS))], 1)
    values = np.linalg.lstsq(basis, truth, rcond=None)[0]
    for _ in range(200):
        weights = 1.0 / np.maximum(np.abs(basis @ values - truth), 0.5)
        weighted = basis * weights[:, None]
        values = np.linalg.solve(basis.T @ weighted + 1e-6 * np.eye(len(KNOTS)), weighted.T @ truth)
    return tuple(round(float(v), 1) for v in values)


def middles(cdf: np.ndarray, tail: float) -> np.ndarray:
    """Half the distribution's ``tail`` to ``1 - tail`` quantile range, per face."""
    return ((cdf < 1 - tail).sum(1) - (cdf < tail).sum(1)) / 2


def bands(ages: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) for each face, as agegender.band_ends computes them."""
    spread = np.minimum(spread, np.maximum(ages, 1.0))
    return np.maximum(0, np.round(ages - spread)), np.maximum(1, np.round(ages + spread))


def earlier_mean_width(cdf: np.ndarray, expected: np.ndarray) -> float:
    """The earlier band's mean width (tail 0.25, 3 + 0.11 x age, floor and ceiling, no correction)."""
    spread = middles(cdf, 0.25) + 3.0 + 0.11 * expected
    return float(np.mean(np.ceil(expected + spread) - np.maximum(0, np.floor(expected - spread))))


def fit_band(probabilities: np.ndarray, ages: np.ndarray, truth: np.ndarray, target: float) -> tuple:
    """(tail, spread, a, b, share inside, median width, mean width, worst adult band's share inside) of
    the band reaching ``target`` with a median width of at most MAX_MEDIAN_WIDTH and a mean width within
    the earlier band's whose worst-covered adult age band (ADULT_BANDS) holds the most true ages."""
    cdf = np.cumsum(probabilities, 1)
    cap = earlier_mean_width(cdf, probabilities @ AGES)
    groups = [(truth >= low) & (truth <= high) for low, high in ADULT_BANDS]
    best = None
    for tail in TAILS:
        middle = middles(cdf, tail)
        for k in SPREADS:
            for b in SLOPES:
                for a in OFFSETS:
                    low, high = bands(ages, k * middle + a + b * ages)
                    inside = (truth >= low) & (truth <= high)
                    if inside.mean() >= target:
                        width, mean_width = float(np.median(high - low)), float(np.mean(high - low))
                        worst = min(float(inside[g].mean()) for g in groups)
                        if width <= MAX_MEDIAN_WIDTH and mean_width <= cap and (best is None or worst > best[-1]):
                            best = (tail, float(k), a, float(b), float(inside.mean()), width, mean_width, worst)
                        break
    if best is None:
        raise SystemExit("no band reaches the target")
    return best


def resting() -> tuple[dict[str, float], dict[str, float]]:
    """emotions.RESTING (median of each blendshape it lists) and emotions.PROTOTYPE_RESTING (median of
    each FACS prototype's activation, action units counted from RESTING), over every fifth lfw-dev image."""
    from faceprint.attributes.emotions import FACS, RESTING, facs_activation
    from faceprint.attributes.mesh import BLENDSHAPE_NAMES

    t = attr_age.tools()
    meshes = []
    for path in sorted(attr_age.LFW.glob("*/*.jpg"))[::5]:
        image = t.fp.load_image(path)
        face = t.centre_face(image)
        if face is not None:
            meshes.append(t.mesh.run(image.bgr, *face))
    medians = np.median(np.array([m.blendshapes for m in meshes]), axis=0)
    blend = {name: round(float(medians[BLENDSHAPE_NAMES.index(name)]), 3) for name in RESTING}
    prototypes = {kind: round(float(np.median([facs_activation(m, kind) for m in meshes])), 3) for kind in FACS}
    return blend, prototypes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", type=float, default=0.82,
                        help="share of half A inside the band (a little over 80%% so half B keeps 80%%)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--save", default=None, help="also save half A's readings here (.npz)")
    parser.add_argument("--load", default=None, help="fit on readings saved with --save instead")
    parser.add_argument("--resting", action="store_true", help="print emotions.RESTING (LFW) instead")
    args = parser.parse_args()
    if args.resting:
        print("RESTING = {}\nPROTOTYPE_RESTING = {}".format(*resting()))
        return
    if args.load:
        saved = np.load(args.load)
        probabilities, truth = saved["probabilities"].astype(np.float64), saved["truth"].astype(np.float64)
    else:
        items = [i for i in attr_age.utk_faces(args.limit) if attr_age.utk_half(i[0]) == "A"]
        results = attr_age.run_all("face", [p for p, *_ in items], args.workers)
        kept = [(r["age"], age) for (_, age, *_), r in zip(items, results, strict=True) if r is not None]
        probabilities = np.stack([p for p, _ in kept])
        truth = np.array([age for _, age in kept], np.float64)
        if args.save:
            np.savez(args.save, probabilities=probabilities, truth=truth)
    expected = probabilities @ AGES
    values = fit_correction(expected, truth)
    ages = np.interp(expected, KNOTS, values)
    print(f"half A: {len(truth)} faces; AGE_CORRECTION = ({KNOTS}, {values}): mean error "
          f"{np.abs(ages - truth).mean():.2f} years, uncorrected {np.abs(expected - truth).mean():.2f}")
    tail, k, a, b, inside, width, mean_width, worst = fit_band(probabilities, ages, truth, args.target)
    print(f"BAND_TAIL = {tail}, BAND_SPREAD = {k}, BAND_A = {a}, BAND_B = {b}: {100 * inside:.1f}% inside, "
          f"median width {width:.0f} years, mean width {mean_width:.2f}, "
          f"worst adult age band {100 * worst:.1f}% inside")
    assert math.isfinite(width)

if __name__ == "__main__":
    main()
