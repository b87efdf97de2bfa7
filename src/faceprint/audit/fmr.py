"""The false-match rate a similarity threshold stands for: what the audit record and the console
show beside every threshold.

A profile's similarity scale is calibrated so that similarity 50, 60, 70, 80, 90 and 99 are the
scores that 1e-1, 1e-2, 1e-3, 1e-4, 1e-5 and 1e-6 of impostor pairs reach
(``faceprint.models.profiles.FMR_LEVELS``, measured by ``benchmarks/calibrate.py``). Between two
levels the rate is interpolated log-linearly (linear in log10 of the rate). Outside them the
calibration says nothing precise: under 50 the rate is *at least* 1e-1 per comparison (this
function answers 1e-1, a lower bound), above 99 *at most* 1e-6 (it answers 1e-6, an upper bound).

The rate is per comparison: a search of a collection of N faces compares the probe with each, so
the chance that some stranger reaches the threshold grows with N (about N x rate while that is
small): :func:`expected_false_matches` gives that figure. A user search keeps each user's best face
(over every query face, for SearchUsers by UserId), so a stranger with k faces, searched with q,
reaches the threshold with about k x q x rate.
"""

from __future__ import annotations

import math

from faceprint.models.profiles import FMR_LEVELS, Profile

LOWEST_LEVEL = FMR_LEVELS[0][1]
"""Under this similarity the rate is only known to be at least ``FMR_LEVELS[0][0]``."""
HIGHEST_LEVEL = FMR_LEVELS[-1][1]
"""Over this similarity the rate is only known to be at most ``FMR_LEVELS[-1][0]``."""


def false_match_rate(profile: Profile | None, similarity_threshold: float) -> float | None:
    """The share of impostor comparisons that reach ``similarity_threshold`` on ``profile``'s
    calibrated scale (the shipped profiles and every calibrated operator profile are pinned to the
    same levels); None for an operator profile not yet calibrated (``faceprint calibrate``): its
    similarity is a plain map of the cosine and stands for no measured rate."""
    if profile is not None and not profile.calibrated:
        return None
    threshold = float(similarity_threshold)
    if math.isnan(threshold):
        raise ValueError("the similarity threshold is not a number")
    if threshold <= LOWEST_LEVEL:
        return FMR_LEVELS[0][0]
    if threshold >= HIGHEST_LEVEL:
        return FMR_LEVELS[-1][0]
    for (rate_low, sim_low), (rate_high, sim_high) in zip(FMR_LEVELS, FMR_LEVELS[1:], strict=False):
        if threshold <= sim_high:
            share = (threshold - sim_low) / (sim_high - sim_low)
            exponent = math.log10(rate_low) + share * (math.log10(rate_high) - math.log10(rate_low))
            return float(f"{10 ** exponent:.3g}")
    raise AssertionError("unreachable: the levels cover (LOWEST_LEVEL, HIGHEST_LEVEL)")


def bound(similarity_threshold: float) -> str:
    """How the rate relates to the truth: ``"at-least"`` under the lowest calibrated level,
    ``"at-most"`` over the highest, else ``"about"`` (the levels themselves are calibrated)."""
    if similarity_threshold < LOWEST_LEVEL:
        return "at-least"
    if similarity_threshold > HIGHEST_LEVEL:
        return "at-most"
    return "about"


def describe_rate(profile: Profile | None, similarity_threshold: float) -> str:
    """The rate in words, e.g. ``"about 1 in 10,000 comparisons"`` (``"at least 1 in 10"`` under 50)."""
    rate = false_match_rate(profile, similarity_threshold)
    if rate is None:
        return "not measured (the profile is not calibrated)"
    words = {"at-least": "at least", "at-most": "at most", "about": "about"}[bound(similarity_threshold)]
    return f"{words} 1 in {round(1 / rate):,} comparisons"


def expected_false_matches(rate: float | None, collection_size: int) -> float | None:
    """The expected number of strangers reaching the threshold in one search of ``collection_size``
    faces (each comparison independent: ``size x rate``); None where the rate is not measured."""
    if rate is None:
        return None
    return max(0, int(collection_size)) * float(rate)
