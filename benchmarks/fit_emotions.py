"""What CALM costs: the Emotions fusion with CALM's evidence gated by the other types' evidence,
measured on CK+'s six expressions (evaluation only) and on LFW's hand-labelled random sample.

The served CALM rule (emotions.CALM_RULE) gives CALM the evidence ``1 - `` the strongest FACS
prototype's activation. The variants here let CALM win only when every other expression's evidence
is weak, fer's included: CALM's evidence is ``(1 - strongest prototype) * (1 - strongest other fer
type)^gamma`` (fer's answers with equal priors), weighted ``calm_weight`` instead of FACS_WEIGHT.
gamma 0 and weight 2 is the served rule. ``--scales`` also averages fer over crops 0.9 and 1.15
times the served square (test-time augmentation; each scale costs one more fer pass and its mirror).
Nothing here is fitted: the table shows the trade between CK+'s posed expressions and calm news faces.

    python benchmarks/fit_emotions.py [--limit N] [--workers 2] [--scales]
"""

from __future__ import annotations

import argparse
import csv
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attr_age  # noqa: E402
from attr_stats import fmt, wilson  # noqa: E402

LABELS = Path(__file__).resolve().parent / "labels" / "lfw-dev-attributes.csv"
SCALES = (0.9, 1.15)
RULES = (("no CALM rule", None, None), ("served: gamma 0, weight 2", 0, 2.0), ("gamma 0, weight 1", 0, 1.0),
         ("gamma 1, weight 2", 1, 2.0), ("gamma 1, weight 3", 1, 3.0), ("gamma 2, weight 2", 2, 2.0),
         ("gamma 2, weight 3", 2, 3.0))


def scaled(box: np.ndarray, scale: float) -> np.ndarray:
    """``box`` (x, y, w, h) scaled about its centre."""
    x, y, w, h = (float(v) for v in box)
    return np.array([x + w / 2 - scale * w / 2, y + h / 2 - scale * h / 2, scale * w, scale * h])


def reading(job: tuple[str, Path, bool]) -> dict | None:
    """fer's seven (mirrored, per crop scale) and the FACS activations of one face."""
    from faceprint.attributes.emotions import FACS, facs_activation

    kind, path, scales = job
    t = attr_age.tools()
    image = attr_age.ck_image(path) if kind == "ck" else t.fp.load_image(path)
    face = t.centre_face(image)
    if face is None and kind != "ck":
        return None
    box, lm5 = face if face is not None else attr_age.whole_crop_face(image)
    mesh = t.mesh.run(image.bgr, box, lm5, blendshapes=True)
    fers = [t.emotions.fer(image, box)]
    if scales:
        fers += [t.emotions.fer(image, scaled(np.asarray(box), s)) for s in SCALES]
    return {"fer": np.mean(fers, axis=0), "acts": np.array([facs_activation(mesh, k) for k in FACS])}


def readings(jobs: list, workers: int) -> list:
    if workers <= 1:
        return [reading(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(reading, jobs, chunksize=16))


def tops(rows: list[dict], gamma: int | None, calm_weight: float | None) -> list[str]:
    """The top type of each face under a rule (None: no CALM rule)."""
    from faceprint.attributes.emotions import FACS, FACS_WEIGHT, FER2013_TRAINING, FER_TYPES, PROTOTYPE_RESTING

    order = [list(FACS).index(t) for t in FER_TYPES[:6]]
    resting = np.array([PROTOTYPE_RESTING[k] for k in FACS])
    out = []
    for row in rows:
        p = np.clip(row["fer"], 1e-6, None) / FER2013_TRAINING
        p = p / p.sum()
        acts = row["acts"]
        if gamma is None:
            evidence = np.append(acts[order], 0.0)
        else:
            calm = (1.0 - acts.max()) * (1.0 - p[:6].max()) ** gamma * calm_weight / FACS_WEIGHT
            evidence = np.append((acts - resting)[order], calm)
        out.append(FER_TYPES[int(np.argmax(p * np.exp(FACS_WEIGHT * evidence)))])
    return out


def pct(k: int, n: int) -> str:
    return f"{fmt(wilson(k, n))} (n={n})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scales", action="store_true", help="also average fer over crop scales 0.9 and 1.15")
    args = parser.parse_args()
    ck = attr_age.ck_six(args.limit)
    with LABELS.open() as handle:
        lfw = [r for r in csv.DictReader(handle) if r["smile"] in ("0", "1") and r.get("sample") == "random"]
    lfw = attr_age.spread(lfw, args.limit)
    ck_rows = readings([("ck", p, args.scales) for p, _ in ck], args.workers)
    lfw_read = readings([("lfw", attr_age.LFW / r["image"], args.scales) for r in lfw], args.workers)
    smiles = [r["smile"] == "1" for r, x in zip(lfw, lfw_read, strict=True) if x is not None]
    lfw_rows = [x for x in lfw_read if x is not None]
    print(f"fer crops: {'the served square and 0.9, 1.15 times it' if args.scales else 'the served square'}\n")
    print("| CALM's evidence | CK+ six right | LFW: HAPPY exactly when smiling | not smiling: CALM | ANGRY |")
    print("|---|---|---|---|---|")
    for name, gamma, weight in RULES:
        ck_top = tops(ck_rows, gamma, weight)
        lfw_top = tops(lfw_rows, gamma, weight)
        still = [top for top, smile in zip(lfw_top, smiles, strict=True) if not smile]
        print(f"| {name} | {pct(sum(t == k for t, (_, k) in zip(ck_top, ck, strict=True)), len(ck))} | "
              f"{pct(sum((t == 'HAPPY') == s for t, s in zip(lfw_top, smiles, strict=True)), len(smiles))} | "
              f"{pct(still.count('CALM'), len(still))} | {pct(still.count('ANGRY'), len(still))} |")


if __name__ == "__main__":
    main()
