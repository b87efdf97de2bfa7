"""Trains the wear heads (src/faceprint/attributes/wear_heads.npz) from the LFW labels.

Features: faceprint.attributes.wear's region averages of SFace's last feature map, for the
detected centre face of each labelled LFW image, and for its mirrored crop (both are training
rows; held-out faces are scored as the mean of the two, as WearReader does). Each head is a
logistic regression on the standardised features reduced to their first principal components,
its regularisation fixed (not searched), folded back into one weight vector a head. Then:

- out-of-fold logits (5 folds, people disjoint: a person's images are all in one fold) fit a
  Platt scaling, so the probability means what held-out faces showed;
- the logit is shifted from the labelled set's share of positives to the random part's share
  (the enriched part over-represents rare classes), so the probability fits a random news photo.

    python benchmarks/train_wear.py            # writes src/faceprint/attributes/wear_heads.npz
    python benchmarks/train_wear.py --check    # cross-validated AUCs only, writes nothing

Only the project's LFW labels are used (benchmarks/labels/README.md).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from attr_stats import auc  # noqa: E402

LABELS = HERE / "labels" / "lfw-dev-attributes.csv"
DATA = Path(os.environ.get("FACEPRINT_TEST_DATA", ROOT.parent / "shared" / "data"))
LFW_IMAGES = DATA / "faces" / "lfw-dev" / "images"
OUT = ROOT / "src" / "faceprint" / "attributes" / "wear_heads.npz"
FOLDS = 5
COMPONENTS = 128
RIDGE = 10.0


@dataclass
class Faces:
    """Labelled faces with their features (plain and mirrored crops)."""

    images: list[str]
    people: np.ndarray
    sample: np.ndarray
    labels: dict[str, np.ndarray]  # head -> 1 / 0 / -1 (cannot tell)
    plain: np.ndarray
    mirror: np.ndarray

    def fold(self) -> np.ndarray:
        """Person-disjoint fold of each face (a hash of the person's name)."""
        return np.array([zlib.crc32(p.encode()) % FOLDS for p in self.people])

    def take(self, n: int | None) -> Faces:
        if n is None:
            return self
        return Faces(self.images[:n], self.people[:n], self.sample[:n],
                     {k: v[:n] for k, v in self.labels.items()}, self.plain[:n], self.mirror[:n])


def read_labels(path: Path = LABELS) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def load_faces(maps, limit: int | None = None, heads=None) -> Faces:
    """Detect the centre face of each labelled image and compute its features (``maps``: a
    faceprint.attributes.wear.FeatureMaps)."""
    from faceprint.attributes.wear import HEADS
    from faceprint.service import Faceprint
    from lfw_data import centre_face

    heads = heads or HEADS
    fp = Faceprint(threads=1)
    rows = read_labels()[:limit] if limit else read_labels()
    images, plain, mirror, kept = [], [], [], []
    for row in rows:
        image, face = centre_face(fp, LFW_IMAGES / row["image"])
        if face is None:
            continue
        lm5 = face.landmarks[0]
        plain.append(maps.features(image, lm5))  # as WearReader scores it
        mirror.append(maps.features(image, lm5, mirror=True))
        images.append(row["image"])
        kept.append(row)
    labels = {h: np.array([int(r[h]) if r[h] != "" else -1 for r in kept]) for h in heads}
    return Faces(images, np.array([i.split("/")[0] for i in images]), np.array([r["sample"] for r in kept]),
                 labels, np.array(plain), np.array(mirror))


def logistic(x: np.ndarray, y: np.ndarray, ridge: float, weights: np.ndarray | None = None,
             iterations: int = 60) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method; returns [w..., bias]."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    sw = np.ones(n) if weights is None else weights
    reg = ridge * np.eye(d + 1)
    reg[-1, -1] = 0.0
    w = np.zeros(d + 1)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (sw * (p - y)) + reg @ w
        hess = (xb * (sw * (p * (1 - p)) + 1e-9)[:, None]).T @ xb + reg + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-7:
            break
    return w


def fit_linear(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """One head: standardise, PCA (whitened), logistic; folded into (weights on x, bias)."""
    mu, sd = x.mean(0), x.std(0) + 1e-3
    z = (x - mu) / sd
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    k = min(COMPONENTS, len(s))
    proj = vt[:k].T / s[:k] * np.sqrt(len(z))
    w = logistic(z @ proj, y, RIDGE)
    direction = proj @ w[:-1] / sd
    return direction, float(w[-1] - direction @ mu)


def fit_head(plain: np.ndarray, mirror: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """A head on the labelled rows (y >= 0), each face counted with its mirrored crop."""
    known = y >= 0
    return fit_linear(np.vstack([plain[known], mirror[known]]), np.concatenate([y[known], y[known]]))


def logit_of(head: tuple[np.ndarray, float], plain: np.ndarray) -> np.ndarray:
    w, b = head
    return plain @ w + b


def out_of_fold(faces: Faces, name: str) -> np.ndarray:
    """Held-out logit of every face (NaN where its label is unknown), people-disjoint folds."""
    y = faces.labels[name]
    fold = faces.fold()
    out = np.full(len(y), np.nan)
    for k in range(FOLDS):
        train, test = (fold != k) & (y >= 0), (fold == k) & (y >= 0)
        if not test.any() or len(set(y[train])) < 2:
            continue
        head = fit_head(faces.plain[train], faces.mirror[train], y[train])
        out[test] = logit_of(head, faces.plain[test])
    return out


def platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, c) so that sigmoid(a * logit + c) fits the held-out labels."""
    known = ~np.isnan(logits) & (y >= 0)
    w = logistic(logits[known, None], y[known].astype(float), 1e-3)
    return float(w[0]), float(w[1])


def prior_shift(faces: Faces, name: str) -> float:
    """logit(share of positives in the random part) - logit(share in the training set),
    with one pseudo-count each way (the random part has only a handful of sunglasses)."""
    y = faces.labels[name]
    known, rand = y >= 0, (y >= 0) & (faces.sample == "random")

    def logit_share(mask: np.ndarray) -> float:
        pos = (y[mask] == 1).sum() + 1
        return float(np.log(pos / (mask.sum() - pos + 2)))

    return logit_share(rand) - logit_share(known) if rand.any() else 0.0


def train(faces: Faces) -> dict[str, object]:
    from faceprint.attributes.wear import HEADS

    weights, bias, report = [], [], {}
    for name in HEADS:
        y = faces.labels[name]
        held_out = out_of_fold(faces, name)
        a, c = platt(held_out, y)
        shift = prior_shift(faces, name)
        w, b = fit_head(faces.plain, faces.mirror, y)
        weights.append(a * w)
        bias.append(a * b + c + shift)
        known = ~np.isnan(held_out)
        report[name] = (auc(held_out[known], y[known]), int((y == 1).sum()), int((y == 0).sum()), a, c, shift)
    return {"heads": np.array(HEADS), "weights": np.array(weights, np.float16),
            "bias": np.array(bias, np.float32), "report": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="print the cross-validated AUCs, write nothing")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import cv2

    from faceprint.attributes.wear import FeatureMaps
    from faceprint.service import Faceprint

    cv2.setNumThreads(1)
    faces = load_faces(FeatureMaps(Faceprint(threads=1).models, threads=1))
    model = train(faces)
    for name, (value, pos, neg, a, c, shift) in model.pop("report").items():
        print(f"{name:14s} held-out AUC {value:.3f}  ({pos} positives, {neg} negatives; "
              f"platt a={a:.3f} c={c:.3f}, prior shift {shift:+.2f})")
    if not args.check:
        np.savez_compressed(args.out, **model)
        print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
