"""Fit AgeRange's band (BAND_TAIL, BAND_A, BAND_B in faceprint.attributes.agegender) on half A of
the UTKFace evaluation images (file-name hash, attr_age.utk_half): the narrowest median band that
holds the true age for at least ``--target`` of half A's faces. Only the band's width is fitted
on UTKFace (the age estimate itself is the network's); attr_age.py reports half B.

    python benchmarks/fit_age.py [--target 0.82] [--limit N]

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

TAILS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45)
SLOPES = tuple(np.round(np.arange(0.0, 0.31, 0.01), 2))
OFFSETS = tuple(np.round(np.arange(0.0, 12.01, 0.25), 2))


def bands(cdf: np.ndarray, ages: np.ndarray, tail: float, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) for each face, as agegender.age_band computes them."""
    spread = ((cdf < 1 - tail).sum(1) - (cdf < tail).sum(1)) / 2 + a + b * ages
    return np.maximum(0, np.floor(ages - spread)), np.maximum(1, np.ceil(ages + spread))


def fit(probabilities: np.ndarray, truth: np.ndarray, target: float) -> tuple[float, float, float, float, float]:
    """(tail, a, b, share inside, median width) of the narrowest band reaching ``target``."""
    cdf = np.cumsum(probabilities, 1)
    expected = probabilities @ np.array([0.25, *range(1, 81)])
    best = None
    for tail in TAILS:
        for b in SLOPES:
            for a in OFFSETS:
                low, high = bands(cdf, expected, tail, a, b)
                inside = float(((truth >= low) & (truth <= high)).mean())
                if inside >= target:
                    width = float(np.median(high - low))
                    key = (width, float(np.mean(high - low)))
                    if best is None or key < best[0]:
                        best = (key, (tail, a, float(b), inside, width))
                    break
    if best is None:
        raise SystemExit("no band reaches the target")
    return best[1]


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
    parser.add_argument("--resting", action="store_true", help="print emotions.RESTING (LFW) instead")
    args = parser.parse_args()
    if args.resting:
        print("RESTING = {}\nPROTOTYPE_RESTING = {}".format(*resting()))
        return
    items = [i for i in attr_age.utk_faces(args.limit) if attr_age.utk_half(i[0]) == "A"]
    results = attr_age.run_all("face", [p for p, *_ in items], args.workers)
    kept = [(r["age"], age) for (_, age, *_), r in zip(items, results, strict=True) if r is not None]
    if args.save:
        np.savez(args.save, probabilities=np.stack([p for p, _ in kept]), truth=[age for _, age in kept])
    probabilities = np.stack([p for p, _ in kept])
    truth = np.array([age for _, age in kept], np.float64)
    tail, a, b, inside, width = fit(probabilities, truth, args.target)
    print(f"half A: {len(kept)} faces; BAND_TAIL = {tail}, BAND_A = {a}, BAND_B = {b}: "
          f"{100 * inside:.1f}% inside, median width {width:.0f} years")
    assert math.isfinite(width)


if __name__ == "__main__":
    main()
