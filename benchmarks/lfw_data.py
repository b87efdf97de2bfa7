"""LFW View 1 helpers shared by the LFW benchmark and the similarity calibration.

Faces are embedded through faceprint's own engine: the detected face nearest
the image centre (LFW's protocol), in worker processes that use both cores.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACEPRINT_TEST_DATA", ROOT.parent / "shared" / "data"))
LFW = DATA / "faces" / "lfw-dev"

_worker = None


def image_path(name: str, number: int) -> Path:
    return LFW / "images" / name / f"{name}_{number:04d}.jpg"


def pairs(split: str) -> list[tuple[Path, Path, bool]]:
    out = []
    for line in (LFW / f"pairs{split}.txt").read_text().split("\n")[1:]:
        p = line.split()
        if len(p) == 3:
            out.append((image_path(p[0], int(p[1])), image_path(p[0], int(p[2])), True))
        elif len(p) == 4:
            out.append((image_path(p[0], int(p[1])), image_path(p[2], int(p[3])), False))
    return out


def people(split: str) -> set[str]:
    return {path.parent.name for a, b, _ in pairs(split) for path in (a, b)}


def images_of(names: set[str]) -> list[Path]:
    return sorted(p for name in sorted(names) for p in (LFW / "images" / name).glob("*.jpg"))


def make_faceprint(profile: str, home: Path | str | None = None, threads: int = 0):
    """A Faceprint of ``profile``: a built-in, or an operator profile registered in ``home``; the
    usual model cache either way (no second download)."""
    from faceprint.service import Faceprint, default_home, default_models_dir

    return Faceprint(home, profile=profile, threads=threads, models_dir=default_models_dir(default_home()))


def profile_names(home: Path | str | None) -> list[str]:
    """Every registered profile: the built-ins, then the operator profiles of ``home``."""
    from faceprint.models.profiles import PROFILES

    if home is None:
        return list(PROFILES)
    from faceprint.models.registry import ProfileRegistry

    return ProfileRegistry(Path(home)).names()


def _init(profile: str, threads: int, home: Path | str | None = None) -> None:
    global _worker
    import cv2

    cv2.setNumThreads(threads)
    _worker = make_faceprint(profile, home, threads)
    _worker.engine.load()


def centre_face(fp, path: Path):
    """(decoded image, detections of the face nearest the centre), or (image, None)."""
    image = fp.load_image(path)
    faces = fp.engine.detect(image, 1000)
    if not len(faces):
        return image, None
    centres = faces.boxes[:, :2] + faces.boxes[:, 2:] / 2
    target = np.array([image.width / 2, image.height / 2], np.float32)
    return image, faces.take([int(np.argmin(((centres - target) ** 2).sum(1)))])


def centre_face_vector(fp, path: Path) -> np.ndarray | None:
    """The profile's vector of the face nearest the centre, or None if no face is found."""
    image, face = centre_face(fp, path)
    return None if face is None else fp.engine.embed(image, face)[0]


def _call(job):
    fn, path = job
    return fn(_worker, path)


def map_images(fn, profile: str, paths: list[Path], workers: int = 2, home: Path | str | None = None
               ) -> dict[Path, object]:
    """``fn(faceprint, path)`` for every path, in ``workers`` processes of one thread each (``home``:
    where an operator profile is registered)."""
    out: dict[Path, object] = {}
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(profile, 1, home)) as pool:
        for i, value in enumerate(pool.map(_call, [(fn, p) for p in paths], chunksize=16)):
            out[paths[i]] = value
            if (i + 1) % 500 == 0:
                print(f"  {profile}: {i + 1}/{len(paths)} images", file=sys.stderr, flush=True)
    return out


def embed_all(profile: str, paths: list[Path], workers: int = 2, home: Path | str | None = None
              ) -> dict[Path, np.ndarray | None]:
    return map_images(centre_face_vector, profile, paths, workers, home)  # type: ignore[return-value]


def impostor_scores(vectors: dict[Path, np.ndarray | None]) -> np.ndarray:
    """Scores of every pair of images of different people (faces found in both)."""
    items = [(p.parent.name, v) for p, v in vectors.items() if v is not None]
    return impostor_scores_of(np.array([name for name, _ in items]),
                              np.stack([v for _, v in items]).astype(np.float32))


def impostor_scores_of(labels: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Scores of every pair of rows whose labels differ (each pair once)."""
    scores = []
    for i in range(0, len(labels), 512):
        rows = np.arange(i, min(i + 512, len(labels)))
        block = matrix[rows] @ matrix.T
        upper = rows[:, None] < np.arange(len(labels))[None, :]
        scores.append(block[upper & (labels[rows][:, None] != labels[None, :])])
    return np.concatenate(scores)


def pair_scores(vectors: dict[Path, np.ndarray | None], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(scores, same) for the split's pairs; a pair with a missed face scores -1."""
    scores, same = [], []
    for a, b, is_same in pairs(split):
        va, vb = vectors.get(a), vectors.get(b)
        scores.append(-1.0 if va is None or vb is None else float(va @ vb))
        same.append(is_same)
    return np.array(scores), np.array(same)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    candidates = np.unique(scores)
    mids = np.concatenate([[candidates[0] - 1e-6], (candidates[:-1] + candidates[1:]) / 2])
    acc = [((scores >= t) == same).mean() for t in mids]
    return float(mids[int(np.argmax(acc))])
