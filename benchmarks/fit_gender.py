"""Gender heads on face descriptors, fused with the gender network: trained on LFW only, measured by
person-disjoint cross-validation on LFW and on UTKFace adults per race (evaluation only).

The experiment behind agegender's docstring (the heads were not shipped). Training faces: the first
image (sorted file names) of each of the first ``--people`` lfw-dev people whose names the verified
gender lists give, the face nearest the centre. Features: a face descriptor (``dlib``: dlib's ResNet,
the ``dlib`` face vector's alignment; ``sface``: SFace's unit vector) and the gender network's
log-odds. A logistic regression with the two classes weighted equally (LFW is 73% men) and an L2
penalty ``--lam`` on standardised features. UTKFace: every ``--utk-step``-th adult image.

    python benchmarks/fit_gender.py [--people 1950] [--lam 30] [--utk-step 3] [--descriptor dlib]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attr_age  # noqa: E402
from attr_stats import fmt, wilson  # noqa: E402


def training_faces(people: int | None) -> list[tuple[Path, bool]]:
    """(image, is male): each person's first labelled image, the first ``people`` people."""
    seen: set[str] = set()
    out = []
    for path, male in attr_age.lfw_gender():
        if path.parent.name not in seen:
            seen.add(path.parent.name)
            out.append((path, male))
    return out[:people]


def features(paths: list[Path], descriptor: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows of descriptor + the network's log-odds, mask of the images where a face was found)."""
    from faceprint.models import catalog
    from faceprint.models.embedders import DlibEmbedder, SFaceEmbedder

    t = attr_age.tools()
    store = t.fp.engine.store
    if descriptor == "dlib":
        embedder = DlibEmbedder(store.path(catalog.DLIB_RESNET), store.path(catalog.DLIB_SHAPE5))
    else:
        embedder = SFaceEmbedder(store.path(catalog.SFACE), threads=1)
    rows, kept = [], []
    for k, path in enumerate(paths):
        image = t.fp.load_image(path)
        face = t.centre_face(image)
        kept.append(face is not None)
        if face is not None:
            male = min(max(t.age_gender.read(image, *face, age=False).male, 1e-6), 1 - 1e-6)
            rows.append(np.append(embedder.embed(image, *face), np.log(male / (1 - male))))
        if k % 250 == 0:
            print(f"{k}/{len(paths)} faces", file=sys.stderr, flush=True)
    return np.array(rows), np.array(kept)


def fit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """(weights, bias) on the raw features: Newton's method on standardised ones, classes weighted equally."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    weight = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    penalty = lam * np.diag(np.r_[np.ones(x.shape[1]), 0.0])
    w = np.zeros(z.shape[1])
    for _ in range(30):
        p = 1 / (1 + np.exp(-np.clip(z @ w, -30, 30)))
        gradient = z.T @ (weight * (p - y)) + penalty @ w
        hessian = (z * (weight * p * (1 - p))[:, None]).T @ z + penalty
        w -= np.linalg.solve(hessian, gradient)
    return w[:-1] / sd, float(w[-1] - np.sum(w[:-1] * mu / sd))


def male_of(x: np.ndarray, head: tuple[np.ndarray, float]) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(x @ head[0] + head[1], -30, 30)))


def cross_validate(x: np.ndarray, y: np.ndarray, people: list[str], lam: float) -> np.ndarray:
    """Out-of-fold P(male), folds by a hash of the person's name."""
    fold = np.array([hashlib.sha256(n.encode()).digest()[0] % 5 for n in people])
    out = np.zeros(len(y))
    for k in range(5):
        out[fold == k] = male_of(x[fold == k], fit(x[fold != k], y[fold != k], lam))
    return out


def rates(male: np.ndarray, y: np.ndarray) -> str:
    """accuracy | women called men | men called women, with Wilson intervals."""
    def pct(k: int, n: int) -> str:
        return f"{fmt(wilson(int(k), int(n)))} (n={n})" if n else "–"

    return " | ".join((pct(((male >= 0.5) == y).sum(), len(y)), pct((male[y == 0] >= 0.5).sum(), (y == 0).sum()),
                       pct((male[y == 1] < 0.5).sum(), (y == 1).sum())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=1950)
    parser.add_argument("--lam", type=float, default=30.0)
    parser.add_argument("--utk-step", type=int, default=3)
    parser.add_argument("--descriptor", choices=("dlib", "sface"), default="dlib")
    args = parser.parse_args()
    faces = training_faces(args.people)
    x, kept = features([p for p, _ in faces], args.descriptor)
    y = np.array([male for (_, male), k in zip(faces, kept, strict=True) if k], np.float64)
    people = [p.parent.name for (p, _), k in zip(faces, kept, strict=True) if k]
    network = 1 / (1 + np.exp(-x[:, -1]))
    print(f"| LFW ({len(y)} people, 5-fold by person) | accuracy | women called men | men called women |")
    print("|---|---|---|---|")
    print(f"| gender network | {rates(network, y)} |")
    print(f"| {args.descriptor} head + network | {rates(cross_validate(x, y, people, args.lam), y)} |")
    head = fit(x, y, args.lam)
    adults = [i for i in attr_age.utk_faces() if i[1] >= attr_age.ADULT][::args.utk_step]
    ux, ukept = features([p for p, *_ in adults], args.descriptor)
    kept_items = [i for i, k in zip(adults, ukept, strict=True) if k]
    uy = np.array([not female for _, _, female, _ in kept_items], np.float64)
    race = np.array([r for *_, r in kept_items])
    print(f"\n| UTKFace adults (evaluation only) | network: accuracy | women called men | men called women | "
          f"{args.descriptor} head: accuracy | women called men | men called women |")
    print("|---|---|---|---|---|---|---|")
    for code, name in [*enumerate(attr_age.RACES), (None, "all")]:
        g = np.ones(len(uy), bool) if code is None else race == code
        print(f"| {name} | {rates(1 / (1 + np.exp(-ux[g, -1])), uy[g])} | {rates(male_of(ux[g], head), uy[g])} |")


if __name__ == "__main__":
    main()
