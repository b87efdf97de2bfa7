"""Statistics shared by the attribute benchmarks: each figure comes with a 95% interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959964


def wilson(successes: int, n: int) -> tuple[float, float, float]:
    """A proportion and its 95% Wilson interval, in percent."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    p = successes / n
    denom = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / denom
    return 100 * p, 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (ties count half): the chance a positive outscores a negative."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order), np.float64)
    both = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(both):  # average ranks over ties
        j = i
        while j + 1 < len(both) and both[j + 1] == both[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def auc_ci(scores: Sequence[float], labels: Sequence[int], rounds: int = 1000, seed: int = 0
           ) -> tuple[float, float, float]:
    """AUC and its 95% bootstrap interval (resampling positives and negatives separately)."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    point = auc(s, y)
    if len(pos) == 0 or len(neg) == 0:
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        p = rng.choice(pos, len(pos))
        n = rng.choice(neg, len(neg))
        values.append(auc(np.concatenate([p, n]), [1] * len(p) + [0] * len(n)))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return point, float(lo), float(hi)


def mean_ci(values: Sequence[float], rounds: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """A mean and its 95% bootstrap interval."""
    v = np.asarray(values, np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(v, (rounds, len(v))).mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(v.mean()), float(lo), float(hi)


def fmt(triple: tuple[float, float, float], digits: int = 1) -> str:
    """``98.1 (97.6-98.5)``."""
    point, lo, hi = triple
    return f"{point:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"
