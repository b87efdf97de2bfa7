"""Eyeglasses, Sunglasses, Beard, Mustache (and the FaceOccluded head) on held-out labelled faces.

The heads are trained on the same labels (benchmarks/labels/lfw-dev-attributes.csv), so every
figure here is cross-validated: 5 folds, people disjoint (all of a person's images in one fold),
each face scored by heads fitted without its fold, exactly as benchmarks/train_wear.py trains the
shipped heads. Accuracy uses the shipped decision rule (calibrated probability >= 0.5; the 2
calibration numbers are fitted on all held-out scores). The random part of the labels is
reported apart: the enriched part was picked by eye for rare classes.

    python benchmarks/attr_wear.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attr_stats import auc_ci, fmt, wilson  # noqa: E402
from train_wear import Faces, load_faces, out_of_fold, platt, prior_shift  # noqa: E402


def section(limit: int | None = None) -> str:
    """The wear section of the attributes report (markdown)."""
    import cv2

    from faceprint.attributes.wear import HEADS, FeatureMaps, WearReader
    from faceprint.service import Faceprint

    cv2.setNumThreads(1)
    fp = Faceprint(threads=1)
    faces = load_faces(FeatureMaps(fp.models, threads=1), limit)
    lines = ["## Eyewear and facial hair (LFW dev, own labels)", "",
             f"{len(faces.images)} labelled faces ({(faces.sample == 'random').sum()} random, "
             f"{(faces.sample == 'enriched').sum()} enriched), {len(set(faces.people))} people; heads on "
             "SFace's last feature map (faceprint.attributes.wear), 5 person-disjoint folds.", "",
             "| attribute | positives / negatives | AUC [95% CI] | accuracy [95% CI] | mean confidence "
             "| random part: AUC, accuracy (pos / neg) |",
             "|---|---|---|---|---|---|"]
    lines += [_row(faces, name) for name in HEADS]
    reader = WearReader(fp.models, threads=1)
    lines += ["", _cost(fp, reader, faces, 40), ""]
    lines += _small_faces(fp, reader, faces, (0.4, 0.22))
    return "\n".join(lines)


def _small_faces(fp, reader, faces: Faces, scales: tuple[float, ...]) -> list[str]:
    """The labelled images downscaled: held-out AUC, accuracy and mean confidence of the shipped
    decision (WearReader.scores with heads refitted without the face's fold, and the small-face
    confidence rule) for beard, mustache and eyeglasses."""
    import cv2

    from faceprint.imaging import DecodedImage
    from train_wear import LFW_IMAGES, fit_head

    lines = ["Small faces (the same labelled images downscaled; held-out as above):", "",
             "| scale | median box | attribute | AUC | accuracy | mean confidence |", "|---|---|---|---|---|---|"]
    fold = faces.fold()
    for scale in scales:
        jobs = []
        for name in faces.images:
            bgr = cv2.resize(cv2.imread(str(LFW_IMAGES / name)), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            image = DecodedImage(rgb=np.ascontiguousarray(bgr[:, :, ::-1]))
            found = fp.engine.detect(image, 1000)
            if not len(found):
                jobs.append(None)
                continue
            centres = found.boxes[:, :2] + found.boxes[:, 2:] / 2
            i = int(np.argmin(((centres - [image.width / 2, image.height / 2]) ** 2).sum(1)))
            jobs.append((reader.maps.features(image, found.landmarks[i]), found.boxes[i]))
        widths = [j[1][2] for j in jobs if j is not None]
        for name in ("eyeglasses", "beard", "mustache"):
            lines.append(_small_row(faces, name, jobs, fold, scale, float(np.median(widths)), fit_head))
    return lines + [""]


def _small_row(faces: Faces, name: str, jobs, fold, scale: float, width: float, fit_head) -> str:
    """One attribute at one scale: heads refitted without each fold, calibrated as shipped, and
    the small-face rule of WearReader.scores applied to beard and mustache."""
    from faceprint.attributes.wear import SMALL_FACE_KNOTS

    y = faces.labels[name]
    a, c = platt(out_of_fold(faces, name), y)
    shift = prior_shift(faces, name)
    probs, truth = [], []
    for k in range(5):
        w, b = fit_head(faces.plain[(fold != k) & (y >= 0)], faces.mirror[(fold != k) & (y >= 0)],
                        y[(fold != k) & (y >= 0)])
        for i in np.flatnonzero((fold == k) & (y >= 0)):
            if jobs[i] is None:
                continue
            features, box = jobs[i]
            p = 1 / (1 + np.exp(-np.clip(a * (features @ w + b) + c + shift, -30, 30)))
            if name in ("beard", "mustache"):
                p = 0.5 + (p - 0.5) * float(np.interp(float(box[2]), *SMALL_FACE_KNOTS))
            probs.append(p)
            truth.append(y[i])
    p, t = np.array(probs), np.array(truth)
    right = (p >= 0.5) == (t == 1)
    return (f"| {scale} | {width:.0f} px | {name} | {auc_ci(p, t, rounds=200)[0]:.3f} | {100 * right.mean():.1f}% "
            f"| {100 * np.where(p >= 0.5, p, 1 - p).mean():.1f} |")


def _row(faces: Faces, name: str) -> str:
    y = faces.labels[name]
    logits = out_of_fold(faces, name)
    known = ~np.isnan(logits)
    a, c = platt(logits, y)
    prob = 1 / (1 + np.exp(-(a * logits + c + prior_shift(faces, name))))
    right = (prob >= 0.5) == (y == 1)
    confidence = np.where(prob >= 0.5, prob, 1 - prob)
    value, lo, hi = auc_ci(logits[known], y[known])
    acc = wilson(int(right[known].sum()), int(known.sum()))
    rand = known & (faces.sample == "random")
    pos_r, neg_r = int((y[rand] == 1).sum()), int((y[rand] == 0).sum())
    rand_auc = auc_ci(logits[rand], y[rand])[0] if pos_r >= 5 else float("nan")
    rand_acc = wilson(int(right[rand].sum()), int(rand.sum()))[0]
    rand_text = f"{rand_auc:.3f}" if pos_r >= 5 else "- (under 5 positives)"
    return (f"| {name} | {int((y[known] == 1).sum())} / {int((y[known] == 0).sum())} | {fmt((value, lo, hi), 3)} "
            f"| {fmt(acc, 1)}% | {100 * confidence[known].mean():.1f} "
            f"| {rand_text}, {rand_acc:.1f}% ({pos_r} / {neg_r}) |")


def _cost(fp, reader, faces: Faces, n: int) -> str:
    """Milliseconds a face for WearReader.scores (both crops, one thread), on n labelled images."""
    from lfw_data import centre_face
    from train_wear import LFW_IMAGES

    jobs = []
    for name in faces.images[:n]:
        image, face = centre_face(fp, LFW_IMAGES / name)
        jobs.append((image, face.boxes[0], face.landmarks[0]))
    reader.scores(*jobs[0])
    start = time.perf_counter()
    for job in jobs:
        reader.scores(*job)
    ms = (time.perf_counter() - start) / len(jobs) * 1000
    return (f"Cost: {ms:.1f} ms a face for all five heads (one SFace pass, "
            f"one thread; {len(jobs)} faces, shared machine).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="only the first N labelled faces")
    print(section(parser.parse_args().limit))


if __name__ == "__main__":
    main()
