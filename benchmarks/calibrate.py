"""Calibrate the similarity scale: mean face vectors and the score -> similarity knots.

Run: python benchmarks/calibrate.py   (about 10 minutes on 2 cores)

Uses only the people of LFW View 1's pairsDevTrain (pairsDevTest's people are
disjoint and stay held out for benchmarks/lfw.py). For each image the face
nearest the centre is embedded by every embedder; the mean SFace vectors are
taken over those faces; then, per profile, the fused scores of every pair of
images of different people give the false-match rate curve, and the knots put
similarity 50/60/70/80/90/99 at FMR 1e-1 ... 1e-6. Writes
src/faceprint/models/calibration.json.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faceprint.models.profiles import CALIBRATION_FILE, FMR_LEVELS, PROFILES  # noqa: E402
from lfw_data import centre_face, images_of, impostor_scores_of, map_images, people  # noqa: E402


def raw_vectors(fp, path: Path) -> dict[str, np.ndarray] | None:
    """Every embedder's raw unit vector for the centre face (None: no face found)."""
    image, face = centre_face(fp, path)
    if face is None:
        return None
    sface, dlib = fp.engine.embedders  # the accurate profile: sface-flip, dlib
    plain, flipped = sface.embed_both(image, face.landmarks[0])
    return {"sface": plain, "sface-flip": flipped,
            "dlib": dlib.embed(image, face.boxes[0], face.landmarks[0])}


def knots_for(impostors: np.ndarray) -> list[list[float]]:
    ordered = np.sort(impostors)
    knots = [[-1.0, 0.0]]
    for fmr, similarity in FMR_LEVELS:
        index = min(len(ordered) - 1, int(np.ceil(len(ordered) * (1 - fmr))))
        score = max(float(ordered[index]), knots[-1][0] + 1e-4)
        knots.append([round(score, 6), similarity])
    knots.append([1.0, 100.0])
    return knots


def main() -> None:
    paths = images_of(people("DevTrain"))
    print(f"embedding {len(paths)} images of the pairsDevTrain people", file=sys.stderr)
    raw = {p: v for p, v in map_images(raw_vectors, "accurate", paths).items() if v is not None}
    labels = np.array([p.parent.name for p in raw])
    means = {k: np.mean([v[k] for v in raw.values()], axis=0) for k in ("sface", "sface-flip")}
    result = {"means": {k: [round(float(x), 7) for x in v] for k, v in means.items()}, "profiles": {}}
    for profile in PROFILES.values():
        fused = np.stack([profile.fuse([v[c.embedder] for c in profile.components], means)
                          for v in raw.values()])
        impostors = impostor_scores_of(labels, fused)
        result["profiles"][profile.name] = {"knots": knots_for(impostors)}
        print(f"{profile.name}: {len(impostors)} impostor pairs; knots {result['profiles'][profile.name]}")
    result["provenance"] = {
        "data": "LFW View 1, images of the people in pairsDevTrain.txt",
        "faces": len(raw), "images": len(paths), "people": int(len(set(labels))),
        "made": datetime.date.today().isoformat(), "script": "benchmarks/calibrate.py",
    }
    CALIBRATION_FILE.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {CALIBRATION_FILE}")


if __name__ == "__main__":
    main()
