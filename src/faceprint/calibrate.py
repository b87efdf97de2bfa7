"""Calibration on the operator's own faces: score distributions, knots, threshold table, DET, groups.

The operator's labelled faces come as a folder per person (``DIR/<person>/*.jpg``) or as a pairs file in
LFW's ``pairs.txt`` format (``name i j`` same person, ``name1 i name2 j`` different; the first line a
count) with the images in ``DIR/<name>/<name>_<i:04d>.jpg``; optional groups as a CSV ``person,group``.

Each image's face nearest the centre (LFW's protocol, as ``benchmarks/calibrate.py``) is embedded by
the profile's engine; an image with no face (or that cannot be read) is left out and counted.
Genuine pairs: every pair of images of the same person (a pairs file: its same-person pairs).
Impostor pairs: every pair of images of different people among the images (a pairs file: among every
image it names), or, beyond ``max_impostors``, a deterministic sample of them (drawn with replacement by
a seeded generator over the sorted images).

The knots follow the built-in calibration: similarity 50/60/70/80/90/99 sit at the scores that
1e-1 ... 1e-6 of the impostor pairs reach (the same order statistic as ``benchmarks/calibrate.py``),
with the ends (-1, 0) and (1, 100). A level whose rate the data cannot measure (fewer than
``MIN_PAIRS_ABOVE`` impostor pairs expected above it) is extrapolated from a straight line fitted to
log10(FMR) against score over the measured tail (the order statistics from ``MIN_PAIRS_ABOVE`` to
100 times that), and marked ``extrapolated``. Impostor score tails bend down faster than a straight
line on that scale, so an extrapolated threshold errs high: fewer false matches than it states.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceprint.errors import FaceprintError, InvalidParameterException
from faceprint.models.profiles import FMR_LEVELS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MIN_PAIRS_ABOVE = 5
"""A level is measured where at least this many impostor pairs are expected above it; else extrapolated."""
MAX_IMPOSTORS = 20_000_000
"""All impostor pairs up to this many; a deterministic sample of this many beyond."""
MAX_GENUINE = 2_000_000
SEED = 20260
DET_POINTS = 60


@dataclass(frozen=True)
class LabelledFaces:
    """Images with their person, and, for a pairs file, the listed same-person pairs (indexes)."""

    root: Path
    people: tuple[str, ...]
    paths: tuple[Path, ...]
    same_pairs: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.people):
            raise ValueError("one person per image")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_people(root: Path) -> LabelledFaces:
    """A folder per person, each with that person's images."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidParameterException(f"--people {root}: not a folder")
    people, paths = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in _images_in(folder):
            people.append(folder.name)
            paths.append(path)
    if len(set(people)) < 2:
        raise InvalidParameterException(f"--people {root}: needs a folder per person, at least two people with images")
    return LabelledFaces(root, tuple(people), tuple(paths))


def read_pairs(pairs_file: Path, images: Path) -> LabelledFaces:
    """A pairs file in LFW's format; images at ``images/<name>/<name>_<i:04d>.jpg``."""
    pairs_file, images = Path(pairs_file), Path(images)
    if not pairs_file.is_file():
        raise InvalidParameterException(f"--pairs {pairs_file}: no such file")
    if not images.is_dir():
        raise InvalidParameterException(f"--images {images}: not a folder")
    index: dict[Path, int] = {}
    people: list[str] = []
    same: list[tuple[int, int]] = []

    def at(name: str, number: str, line_no: int) -> int:
        if not number.isdigit() or "/" in name or name in (".", ".."):
            raise InvalidParameterException(f"--pairs {pairs_file} line {line_no}: not 'name i j' or 'name1 i name2 j'")
        path = images / name / f"{name}_{int(number):04d}.jpg"
        if path not in index:
            if not path.is_file():
                raise InvalidParameterException(f"--pairs {pairs_file} line {line_no}: no image {path}")
            index[path] = len(index)
            people.append(name)
        return index[path]

    lines = pairs_file.read_text(errors="replace").splitlines()
    for line_no, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if len(fields) == 3:
            same.append((at(fields[0], fields[1], line_no), at(fields[0], fields[2], line_no)))
        elif len(fields) == 4:
            at(fields[0], fields[1], line_no), at(fields[2], fields[3], line_no)
        elif fields:
            raise InvalidParameterException(f"--pairs {pairs_file} line {line_no}: not 'name i j' or 'name1 i name2 j'")
    if len(set(people)) < 2:
        raise InvalidParameterException(f"--pairs {pairs_file}: needs pairs of at least two people")
    return LabelledFaces(images, tuple(people), tuple(index), tuple(same))


def read_groups(path: Path) -> dict[str, str]:
    """``person,group`` rows (a header row ``person,group`` is allowed)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterException(f"--groups {path}: no such file")
    out: dict[str, str] = {}
    with path.open(newline="", errors="replace") as handle:
        try:
            for line_no, row in enumerate(csv.reader(handle), start=1):
                if not row or (line_no == 1 and [c.strip().lower() for c in row] == ["person", "group"]):
                    continue
                if len(row) != 2 or not row[0].strip() or not row[1].strip():
                    raise InvalidParameterException(f"--groups {path} line {line_no}: not 'person,group'")
                out[row[0].strip()] = row[1].strip()
        except csv.Error as exc:
            raise InvalidParameterException(f"--groups {path}: not a CSV file ({exc})") from None
    return out


def data_digest(faces: LabelledFaces, groups: dict[str, str] | None = None) -> str:
    """SHA-256 over every image's person, path (relative to the data's root) and content SHA-256, and
    the groups: the same labelled data gives the same digest wherever it lies."""
    digest = hashlib.sha256()
    for person, path in sorted(zip(faces.people, faces.paths, strict=True), key=lambda x: (x[0], str(x[1]))):
        relative = path.relative_to(faces.root) if path.is_relative_to(faces.root) else Path(path.name)
        digest.update(f"{person}\t{relative.as_posix()}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    for person, group in sorted((groups or {}).items()):
        digest.update(f"group\t{person}\t{group}\n".encode())
    if faces.same_pairs is not None:
        for a, b in faces.same_pairs:
            digest.update(f"pair\t{faces.paths[a].name}\t{faces.paths[b].name}\n".encode())
    return digest.hexdigest()


def centre_face_vector(engine: Any, load: Callable[[Path], Any], path: Path) -> np.ndarray | None:
    """The engine's vector of the face nearest the image centre; None: unreadable or no face."""
    try:
        image = load(path)
    except (FaceprintError, OSError):
        return None
    faces = engine.detect(image, 1000)
    if not len(faces):
        return None
    centres = faces.boxes[:, :2] + faces.boxes[:, 2:] / 2
    target = np.array([image.width / 2, image.height / 2], np.float32)
    return engine.embed(image, faces.take([int(np.argmin(((centres - target) ** 2).sum(1)))]))[0]


def embed(engine: Any, load: Callable[[Path], Any], paths: Iterable[Path], workers: int = 1,
          progress: Callable[[int, int], None] | None = None) -> list[np.ndarray | None]:
    """:func:`centre_face_vector` of each path, in order, on ``workers`` threads (``progress(done,
    total)`` after each image)."""
    paths = list(paths)
    out: list[np.ndarray | None] = []
    with ThreadPoolExecutor(max(workers, 1), thread_name_prefix="calibrate") as pool:
        for vector in pool.map(lambda p: centre_face_vector(engine, load, p), paths):
            out.append(vector)
            if progress is not None:
                progress(len(out), len(paths))
    return out


@dataclass
class Scores:
    """Genuine and impostor scores and each pair's group (index into ``groups``; -1: a person without
    a group; -2: an impostor pair of two groups)."""

    genuine: np.ndarray
    impostor: np.ndarray
    genuine_group: np.ndarray
    impostor_group: np.ndarray
    groups: tuple[str, ...] = ()
    impostor_total: int = 0
    """Impostor pairs in the data (more than ``len(impostor)`` where they were sampled)."""
    faces: int = 0
    people: int = 0
    no_face: int = 0
    group_people: dict[str, int] = field(default_factory=dict)

    @property
    def sampled(self) -> bool:
        return self.impostor_total > len(self.impostor)


def scores_of(faces: LabelledFaces, vectors: list[np.ndarray | None], groups: dict[str, str] | None = None,
              max_impostors: int = MAX_IMPOSTORS, seed: int = SEED) -> Scores:
    """Genuine and impostor score distributions of the embedded faces."""
    keep = [i for i, v in enumerate(vectors) if v is not None]
    if len(keep) < 2:
        raise InvalidParameterException(
            f"a face was found in {len(keep)} of {len(vectors)} images: too few to calibrate")
    matrix = np.stack([vectors[i] for i in keep]).astype(np.float32)
    names, labels = np.unique(np.array([faces.people[i] for i in keep]), return_inverse=True)
    group_names = tuple(sorted(set((groups or {}).values())))
    per_person = np.array([group_names.index(groups[n]) if groups and n in groups else -1 for n in names])
    person_group = per_person[labels]
    genuine, genuine_rows = _genuine(faces, keep, labels, matrix)
    impostor, (rows_a, rows_b), total = _impostors(labels, matrix, max_impostors, seed)
    if total < 1:
        raise InvalidParameterException("the faces found are all of one person: no impostor pairs")
    return Scores(genuine=genuine, impostor=impostor,
                  genuine_group=person_group[genuine_rows[0]] if len(genuine) else np.zeros(0, np.int64),
                  impostor_group=_pair_group(person_group[rows_a], person_group[rows_b]),
                  groups=group_names, impostor_total=total, faces=len(keep), people=len(names),
                  no_face=len(vectors) - len(keep),
                  group_people={g: int((per_person[np.unique(labels)] == k).sum()) for k, g in enumerate(group_names)})


def _pair_group(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A pair's group: the group of both, -2 for two different groups, -1 where either has none."""
    return np.where((a < 0) | (b < 0), -1, np.where(a == b, a, -2)).astype(np.int16)


def _genuine(faces: LabelledFaces, keep: list[int], labels: np.ndarray, matrix: np.ndarray
             ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    if faces.same_pairs is not None:
        row = {image: r for r, image in enumerate(keep)}
        pairs = [(row[a], row[b]) for a, b in faces.same_pairs if a in row and b in row]
        a = np.array([p[0] for p in pairs], np.int64)
        b = np.array([p[1] for p in pairs], np.int64)
    else:
        order = np.argsort(labels, kind="stable")
        a_list, b_list = [], []
        for person in np.unique(labels):
            rows = order[labels[order] == person]
            i, j = np.triu_indices(len(rows), 1)
            a_list.append(rows[i])
            b_list.append(rows[j])
        a, b = np.concatenate(a_list), np.concatenate(b_list)
        if len(a) > MAX_GENUINE:
            pick = np.sort(np.random.default_rng(SEED).choice(len(a), MAX_GENUINE, replace=False))
            a, b = a[pick], b[pick]
    return np.einsum("ij,ij->i", matrix[a], matrix[b]) if len(a) else np.zeros(0, np.float32), (a, b)


def _impostors(labels: np.ndarray, matrix: np.ndarray, max_pairs: int, seed: int
               ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], int]:
    """(scores, (rows a, rows b), impostor pairs in all): every pair, or a sample of ``max_pairs``."""
    n = len(labels)
    counts = np.bincount(labels)
    total = int((n * n - int((counts ** 2).sum())) // 2)
    if total <= max_pairs:
        scores, rows_a, rows_b = [], [], []
        for start in range(0, n, 512):
            rows = np.arange(start, min(start + 512, n))
            upper = (rows[:, None] < np.arange(n)[None, :]) & (labels[rows][:, None] != labels[None, :])
            i, j = np.nonzero(upper)
            scores.append((matrix[rows] @ matrix.T)[i, j])
            rows_a.append(rows[i].astype(np.int32))
            rows_b.append(j.astype(np.int32))
        return np.concatenate(scores), (np.concatenate(rows_a), np.concatenate(rows_b)), total
    rng = np.random.default_rng(seed)
    a_parts, b_parts, found = [], [], 0
    while found < max_pairs:
        a, b = rng.integers(0, n, 2 * (max_pairs - found)), rng.integers(0, n, 2 * (max_pairs - found))
        ok = labels[a] != labels[b]
        a_parts.append(a[ok])
        b_parts.append(b[ok])
        found += int(ok.sum())
    a = np.concatenate(a_parts)[:max_pairs].astype(np.int32)
    b = np.concatenate(b_parts)[:max_pairs].astype(np.int32)
    scores = np.concatenate([np.einsum("ij,ij->i", matrix[a[s:s + 1_000_000]], matrix[b[s:s + 1_000_000]])
                             for s in range(0, len(a), 1_000_000)])
    return scores, (a, b), total


def knots_for(impostor: np.ndarray) -> tuple[list[list[float]], list[bool]]:
    """(knots, extrapolated per FMR level): similarity 50..99 at FMR 1e-1..1e-6 of ``impostor``."""
    ordered = np.sort(impostor)
    n = len(ordered)
    if n < 10 * MIN_PAIRS_ABOVE:
        raise InvalidParameterException(f"{n} impostor pairs: too few to calibrate (at least {10 * MIN_PAIRS_ABOVE})")
    knots: list[list[float]] = [[-1.0, 0.0]]
    extrapolated = []
    tail = _tail_fit(ordered)
    for fmr, similarity in FMR_LEVELS:
        if n * fmr >= MIN_PAIRS_ABOVE:  # benchmarks/calibrate.py's order statistic
            score = float(ordered[min(n - 1, int(np.ceil(n * (1 - fmr))))])
            extrapolated.append(False)
        else:
            score = tail(fmr)
            extrapolated.append(True)
        score = min(max(score, knots[-1][0] + 1e-4), 1.0 - 1e-4 * (len(FMR_LEVELS) + 1 - len(knots)))
        knots.append([round(score, 6), similarity])
    knots.append([1.0, 100.0])
    return knots, extrapolated


def _tail_fit(ordered: np.ndarray) -> Callable[[float], float]:
    """score(FMR) from a line fitted to log10(FMR) against score over the measured tail."""
    n = len(ordered)
    k = np.unique(np.geomspace(MIN_PAIRS_ABOVE, min(100 * MIN_PAIRS_ABOVE, max(n // 10, 2 * MIN_PAIRS_ABOVE)),
                               20).astype(np.int64))
    x = ordered[n - k].astype(np.float64)  # the k-th highest score: FMR k / n
    y = np.log10(k / n)
    slope, intercept = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (-np.inf, 0.0)
    if not slope < 0:
        return lambda fmr: float(ordered[-1])
    return lambda fmr: float((np.log10(fmr) - intercept) / slope)


def rates_at(scores: np.ndarray, threshold: float, above: bool) -> tuple[float | None, int]:
    """(rate, count) of ``scores`` at or above (``above``) or below ``threshold``; None when empty."""
    count = int((scores >= threshold).sum()) if above else int((scores < threshold).sum())
    return (count / len(scores) if len(scores) else None), count


def threshold_table(knots: list[list[float]], extrapolated: list[bool], genuine: np.ndarray,
                    impostor: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for (score, similarity), (target, _), guessed in zip(knots[1:-1], FMR_LEVELS, extrapolated, strict=True):
        fmr, fm = rates_at(impostor, score, True)
        fnmr, fnm = rates_at(genuine, score, False)
        out.append({"similarity": similarity, "score": score, "target_fmr": target, "fmr": fmr,
                    "false_matches": fm, "fnmr": fnmr, "false_non_matches": fnm, "extrapolated": guessed})
    return out


def det_points(genuine: np.ndarray, impostor: np.ndarray, count: int = DET_POINTS) -> list[list[float]]:
    """[score, FMR, FNMR] at thresholds where the impostor FMR falls log-evenly from 1 to 1/n."""
    ordered = np.sort(impostor)
    n = len(ordered)
    fmrs = np.unique(np.geomspace(1.0 / n, 1.0, count))
    out = []
    for fmr in fmrs:
        t = float(ordered[min(n - 1, int(np.ceil(n * (1 - fmr))))])
        out.append([round(t, 6), rates_at(impostor, t, True)[0], rates_at(genuine, t, False)[0]])
    return out


def group_rates(scores: Scores, knots: list[list[float]]) -> dict[str, Any]:
    """Per group: FMR over impostor pairs of two people of the group, FNMR over its genuine pairs; and
    the FMR of impostor pairs across groups."""
    out: dict[str, Any] = {}
    for k, name in enumerate(scores.groups):
        gen = scores.genuine[scores.genuine_group == k]
        imp = scores.impostor[scores.impostor_group == k]
        out[name] = {"people": scores.group_people.get(name, 0), "genuine": len(gen), "impostor": len(imp),
                     "thresholds": _rows(knots, gen, imp)}
    return out


def _rows(knots: list[list[float]], gen: np.ndarray, imp: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for score, similarity in knots[1:-1]:
        fmr, fm = rates_at(imp, score, True)
        fnmr, fnm = rates_at(gen, score, False)
        rows.append({"similarity": similarity, "fmr": fmr, "false_matches": fm, "fnmr": fnmr,
                     "false_non_matches": fnm})
    return rows


def calibration_of(scores: Scores, digest: str, shipped_knots: list[list[float]] | None = None
                   ) -> dict[str, Any]:
    """The calibration dict kept with the profile (``knots`` and what they were made from).

    ``shipped_knots``: measure those instead of making new ones (a built-in profile)."""
    knots, extrapolated = knots_for(scores.impostor)
    used = shipped_knots if shipped_knots is not None else knots
    out: dict[str, Any] = {
        "knots": used, "data_sha256": digest, "genuine": len(scores.genuine), "impostor": len(scores.impostor),
        "impostor_in_data": scores.impostor_total, "impostor_sampled": scores.sampled,
        "faces": scores.faces, "people": scores.people, "no_face": scores.no_face,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "extrapolated": [s for (_, s), e in zip(FMR_LEVELS, extrapolated, strict=True) if e],
        "thresholds": threshold_table(used, extrapolated, scores.genuine, scores.impostor),
        "det": det_points(scores.genuine, scores.impostor),
    }
    if shipped_knots is not None:
        out["proposed_knots"] = knots
        for row in out["thresholds"]:
            row["extrapolated"] = False
    if scores.groups:
        out["groups"] = group_rates(scores, used)
        out["groups_across"] = _rows(used, np.zeros(0), scores.impostor[scores.impostor_group == -2])
    return out
