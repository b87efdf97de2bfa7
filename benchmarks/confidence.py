"""Calibrate the face Confidence: raw YuNet score -> measured probability that the box is a face.

Run: nice python benchmarks/confidence.py collect   (two detection runs, about 4 minutes on one core)
     python benchmarks/confidence.py [report|fit|sheets|sheets-lfw]

Detections come from faceprint's own YuNetDetector with the shipped pyramid settings, run twice:
with the raw score threshold at COLLECT_THRESHOLD (0.3: for the fit and to re-tune the threshold)
and at the shipped threshold (the reliability tables; a lower threshold also changes when the
pyramid's second pass runs). Cached under CACHE.

Labels (../shared/data):
- faces/groups/dlib_faces (9 photos, training.xml + testing.xml boxes) and
  faces/groups/wider_val_samples (4 crowd photos, official WIDER boxes): a detection matched
  one-to-one to a true box with IoU >= MATCH_IOU (0.4: YuNet's boxes are tighter than dlib's and
  WIDER's on small faces) is a face; an unmatched one is not, unless confidence_review.csv (looked
  at by eye on the contact sheets of ``sheets``) says it is a real face nobody annotated, or can't
  tell. Recall is given on all true boxes and on those of MIN_REACH px or more (WIDER's tiniest
  are beyond YuNet's reach).
- faces/lfw-dev (4,992 images, 250x250): the detection that holds the image centre and is 50 to
  200 px wide is LFW's face (a face); other detections are unknown unless looked at (those of raw
  0.9 or more were: ``sheets-lfw``).
- text/icdar2015-train (150 street scenes) and the three unannotated dlib_faces photos: each
  detection of raw 0.6 or more was looked at; others are unknown and left out.
confidence_review.csv labels are 1 face, 0 not a face, -1 can't tell (left out of the fit; the
report shows the tables with them left out and counted as not faces).

Fit and report are kept apart: the knots are fitted on the FIT split (LFW's centre faces,
dlib_faces, ICDAR's even-numbered images) and the reliability table is measured on the rest
(WIDER, ICDAR's odd-numbered images, LFW's other faces); a second table shows every box, fit
included, and says so. Paste the printed knots into faceprint.models.detector.CONFIDENCE_KNOTS;
the tables read the confidence through the shipped face_confidence.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from attr_stats import wilson  # noqa: E402
from groundtruth import dlib_boxes, iou_matrix, matched, wider_boxes  # noqa: E402

DATA = Path(os.environ.get("FACEPRINT_TEST_DATA", ROOT.parent / "shared" / "data"))
GROUPS = DATA / "faces" / "groups"
LFW = DATA / "faces" / "lfw-dev" / "images"
ICDAR = DATA / "text" / "icdar2015-train" / "images"
CACHE = Path(os.environ.get("FACEPRINT_CONF_CACHE", "/tmp/fp-conf"))
COLLECT_THRESHOLD = 0.3
"""Raw score threshold of the collection run: below the shipped one, so the threshold can be re-tuned."""
MATCH_IOU = 0.4
MIN_REACH = 10


@dataclass
class Row:
    source: str
    image: str
    box: list[float]
    score: float
    label: int | None
    """1 face, 0 not a face, -1 can't tell (looked at), None unknown."""
    how: str


def _detector(threshold: float):
    from faceprint.models import catalog
    from faceprint.models.detector import DetectorSettings, YuNetDetector
    from faceprint.models.store import ModelStore

    models = Path(os.environ.get("FACEPRINT_MODELS_DIR", Path.home() / ".faceprint" / "models"))
    store = ModelStore(models, catalog=catalog.ALL_MODELS)
    return YuNetDetector(store.path(catalog.YUNET), DetectorSettings(score_threshold=threshold))


def _load(path: Path):
    from faceprint.imaging import ImageLimits, load_image

    return load_image(path, ImageLimits())


def _key(image: str, box) -> str:
    x, y, w, h = (int(round(float(v))) for v in box)
    return f"{image}@{x},{y},{w},{h}"


def _against_truth(source: str, name: str, boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray,
                   reviewed: dict[str, int]) -> list[Row]:
    rows = []
    taken: set[int] = set()
    iou = iou_matrix(boxes, truth) if len(truth) and len(boxes) else np.zeros((len(boxes), len(truth)))
    for i in np.argsort(-scores):
        best = -1
        for j in np.argsort(-iou[i]) if iou.shape[1] else []:
            if iou[i, j] < MATCH_IOU:
                break
            if int(j) not in taken:
                best = int(j)
                break
        if best >= 0:
            taken.add(best)
            rows.append(Row(source, name, boxes[i].tolist(), float(scores[i]), 1, "truth"))
        else:
            key = _key(name, boxes[i])
            label = reviewed.get(key, 0)
            rows.append(Row(source, name, boxes[i].tolist(), float(scores[i]), label,
                            "reviewed" if key in reviewed else "unmatched"))
    return rows


def _truth_sets() -> list[tuple[str, Path, dict[str, np.ndarray]]]:
    dlib = GROUPS / "dlib_faces"
    truth = {**dlib_boxes(dlib / "training.xml"), **dlib_boxes(dlib / "testing.xml")}
    wider = GROUPS / "wider_val_samples"
    return [("dlib", dlib, truth), ("wider", wider, wider_boxes(wider / "wider_val_gt_boxes.json"))]


def _lfw_rows(detector) -> list[Row]:
    rows = []
    for path in sorted(LFW.glob("*/*.jpg")):
        name = f"{path.parent.name}/{path.name}"
        found = detector.detect(_load(path).bgr)
        for box, score in zip(found.boxes, found.scores, strict=True):
            x, y, w, h = (float(v) for v in box)
            centre = x <= 125 <= x + w and y <= 125 <= y + h and 50 <= w <= 200
            rows.append(Row("lfw", name, box.tolist(), float(score), 1 if centre else None,
                            "centre" if centre else "other"))
    return rows


def _open_rows(detector, source: str, paths: list[Path], reviewed: dict[str, int]) -> list[Row]:
    rows = []
    for path in paths:
        found = detector.detect(_load(path).bgr)
        for box, score in zip(found.boxes, found.scores, strict=True):
            key = _key(path.name, box)
            rows.append(Row(source, path.name, box.tolist(), float(score), reviewed.get(key),
                            "reviewed" if key in reviewed else "unreviewed"))
    return rows


def _open_sets() -> list[tuple[str, list[Path]]]:
    dlib = GROUPS / "dlib_faces"
    return [("dlib-open", [dlib / n for n in ("Tom_Cruise_avp_2014_4.jpg", "bald_guys.jpg", "dogs.jpg")]),
            ("icdar", sorted(ICDAR.glob("*.jpg"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0)))]


def collect(threshold: float) -> list[Row]:
    import cv2

    cv2.setNumThreads(1)
    seen = reviewed()
    detector = _detector(threshold)
    rows: list[Row] = []
    for source, folder, truth in _truth_sets():
        for name, boxes in sorted(truth.items()):
            found = detector.detect(_load(folder / name).bgr)
            rows += _against_truth(source, name, found.boxes, found.scores, boxes, seen)
    for source, paths in _open_sets():
        rows += _open_rows(detector, source, paths, seen)
    rows += _lfw_rows(detector)
    CACHE.mkdir(parents=True, exist_ok=True)
    _rows_file(threshold).write_text(json.dumps([asdict(r) for r in rows]))
    return rows


def _rows_file(threshold: float) -> Path:
    return CACHE / f"rows-{threshold:g}.json"


def shipped_threshold() -> float:
    from faceprint.models.detector import DetectorSettings

    return DetectorSettings().score_threshold


def load_rows(threshold: float = COLLECT_THRESHOLD) -> list[Row]:
    rows = [Row(**r) for r in json.loads(_rows_file(threshold).read_text())]
    seen = reviewed()
    for r in rows:  # reviews added after the collection run apply without running it again
        key = _key(r.image, r.box)
        if r.how in ("unmatched", "unreviewed", "reviewed", "other") and key in seen:
            r.label, r.how = seen[key], "reviewed"
    return rows


def _path_of(row: Row) -> Path:
    if row.source == "lfw":
        return LFW / row.image
    if row.source == "icdar":
        return ICDAR / row.image
    return GROUPS / ("wider_val_samples" if row.source == "wider" else "dlib_faces") / row.image


def sheets(min_score: float = 0.6, per_sheet: int = 36, lfw: bool = False) -> None:
    """Contact sheets of every unannotated detection at or above ``min_score`` (the box in green,
    twice its size around it) to look at by eye; writes CACHE/sheets/*.png and index.json.
    ``lfw``: LFW's other detections (not the centre face) instead, into CACHE/sheets-lfw."""
    import cv2

    kinds = ("other",) if lfw else ("unmatched", "unreviewed", "reviewed")
    todo = [r for r in load_rows() if r.how in kinds and r.score >= min_score and (r.source == "lfw") == lfw]
    todo.sort(key=lambda r: (r.source, r.image, -r.score))
    out = CACHE / ("sheets-lfw" if lfw else "sheets")
    out.mkdir(parents=True, exist_ok=True)
    images: dict[Path, np.ndarray] = {}
    cells, index = [], {}
    for n, row in enumerate(todo):
        path = _path_of(row)
        bgr = images.setdefault(path, _load(path).bgr)
        cells.append(_cell(bgr, row, n, 120 if lfw else 160))
        index[n] = {"key": _key(row.image, row.box), "score": row.score, "source": row.source, "how": row.how}
    for s in range(0, len(cells), per_sheet):
        cols = 8 if per_sheet > 36 else 6
        part = cells[s:s + per_sheet] + [np.zeros_like(cells[0])] * (-len(cells[s:s + per_sheet]) % cols)
        grid = np.vstack([np.hstack(part[i:i + cols]) for i in range(0, len(part), cols)])
        cv2.imwrite(str(out / f"sheet_{s // per_sheet:02d}.png"), grid)
    (out / "index.json").write_text(json.dumps(index, indent=1))
    print(len(cells), "crops in", -(-len(cells) // per_sheet), "sheets under", out)


def _cell(bgr: np.ndarray, row: Row, n: int, size: int = 160) -> np.ndarray:
    import cv2

    x, y, w, h = row.box
    side = max(2.0 * max(w, h), 64.0)  # tiny boxes get some context
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    pad = int(side) + 2
    padded = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(40, 40, 40))
    crop = padded[y0 + pad:y0 + pad + int(side), x0 + pad:x0 + pad + int(side)]
    k = size / max(1, crop.shape[0])
    cell = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    bx, by = (x - x0) * k, (y - y0) * k
    lab = cv2.cvtColor(cell, cv2.COLOR_BGR2LAB)  # dark street scenes: even out the light to see
    lab[:, :, 0] = cv2.createCLAHE(2.0, (4, 4)).apply(lab[:, :, 0])
    cell = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    cv2.rectangle(cell, (int(bx), int(by)), (int(bx + w * k), int(by + h * k)), (0, 255, 0), 1)
    cv2.putText(cell, f"{n} {row.score:.2f}", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
    cv2.rectangle(cell, (0, 0), (size - 1, size - 1), (90, 90, 90), 1)
    return cell


def reviewed() -> dict[str, int]:
    """Detections looked at by eye (crops from ``sheets``), from confidence_review.csv:
    image@x,y,w,h (px, rounded) -> 1 face, 0 not a face, -1 can't tell."""
    out = {}
    for line in (Path(__file__).resolve().parent / "confidence_review.csv").read_text().splitlines():
        if line and not line.startswith(("#", "source,")):
            _, image, x, y, w, h, label = line.split(",")
            out[f"{image}@{x},{y},{w},{h}"] = int(label)
    return out


FIT_SOURCES = ("lfw", "dlib", "dlib-open")
KNOT_SCORES = (0.3, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 1.0)
TOP = 0.999
"""No knot goes above this: the top block has no non-face in thousands of boxes, not in millions."""


def in_fit(row: Row) -> bool:
    """The fit split: LFW's centre faces, dlib_faces (annotated and not) and ICDAR's even-numbered
    images."""
    if row.source == "lfw":
        return row.how == "centre"
    if row.source == "icdar":
        return int(re.sub(r"\D", "", row.image)) % 2 == 0
    return row.source in FIT_SOURCES


def isotonic(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: blocks of increasing face rate. Returns each block's mean score,
    face rate and size."""
    order = np.argsort(scores, kind="mergesort")
    means, rates, sizes = [], [], []
    for s, y in zip(scores[order], labels[order], strict=True):
        means.append(float(s))
        rates.append(float(y))
        sizes.append(1)
        while len(rates) > 1 and rates[-2] >= rates[-1]:
            n = sizes[-2] + sizes[-1]
            means[-2] = (means[-2] * sizes[-2] + means[-1] * sizes[-1]) / n
            rates[-2] = (rates[-2] * sizes[-2] + rates[-1] * sizes[-1]) / n
            sizes[-2] = n
            del means[-1], rates[-1], sizes[-1]
    return np.array(means), np.array(rates), np.array(sizes)


def fit(rows: list[Row]) -> list[tuple[float, float]]:
    """Knots (raw score, probability) on the fit split's known boxes ("can't tell" left out): each
    knot's face rate over the scores nearer to it than to its neighbours, smoothed as
    (faces + 0.5) / (boxes + 1) and capped at TOP, then made increasing by pool-adjacent-violators
    (isotonic regression, weighted by the boxes) and strictly increasing by 0.0001 steps."""
    known = [r for r in rows if in_fit(r) and r.label in (0, 1)]
    scores = np.array([r.score for r in known])
    labels = np.array([r.label for r in known])
    edges = [-np.inf, *((a + b) / 2 for a, b in zip(KNOT_SCORES, KNOT_SCORES[1:], strict=False)), np.inf]
    rates, sizes = [], []
    for lo, hi in zip(edges, edges[1:], strict=False):
        inside = (scores >= lo) & (scores < hi)
        n = int(inside.sum())
        rates.append(min((float(labels[inside].sum()) + 0.5) / (n + 1.0), TOP))
        sizes.append(n + 1)
    pooled = _pav(np.array(rates), np.array(sizes, float))
    knots, last = [], 0.0
    for score, value in zip(KNOT_SCORES, pooled, strict=True):
        value = max(round(float(value), 4), round(last + 0.0001, 4))
        knots.append((score, value))
        last = value
    return knots


def _pav(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted isotonic (non-decreasing) fit of ``values`` in their order."""
    blocks: list[list[float]] = []  # value, weight, count
    for v, w in zip(values, weights, strict=True):
        blocks.append([float(v), float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + v2 * w2) / (blocks[-1][1] + w2),
                          blocks[-1][1] + w2, blocks[-1][2] + c2]
    return np.array([b[0] for b in blocks for _ in range(int(b[2]))])


def _print_blocks(rows: list[Row]) -> None:
    known = [r for r in rows if in_fit(r) and r.label in (0, 1)]
    means, rates, sizes = isotonic(np.array([r.score for r in known]), np.array([r.label for r in known]))
    print("the fit split in isotonic (pool-adjacent-violators) blocks: mean raw score, face rate, boxes")
    for m, r, n in zip(means, rates, sizes, strict=True):
        print(f"  {m:.3f}  {r:.4f}  {n}")


BINS = ((99.0, 100.01), (95.0, 99.0), (90.0, 95.0), (80.0, 90.0), (60.0, 80.0), (40.0, 60.0),
        (20.0, 40.0), (0.0, 20.0))


def reliability(rows: list[Row], threshold: float, unsure_as: int) -> list[str]:
    """Per confidence bin (shipped map): boxes, faces, share of faces and its Wilson interval, and
    the mean confidence (what the share should be)."""
    from faceprint.models.detector import face_confidence

    lines = ["| confidence | boxes | faces | share that are faces (95% CI) | mean confidence |",
             "|---|---|---|---|---|"]
    known = [(face_confidence(r.score), r.label if r.label in (0, 1) else unsure_as) for r in rows
             if r.score >= threshold and (r.label in (0, 1) or (r.label == -1 and unsure_as >= 0))]
    for lo, hi in BINS:
        sel = [(c, y) for c, y in known if lo <= c < hi]
        if not sel:
            continue
        faces = sum(y for _, y in sel)
        share, low, high = wilson(faces, len(sel))
        mean = sum(c for c, _ in sel) / len(sel)
        label = f">= {lo:g}" if hi > 100 else f"{lo:g}-{hi:g}"
        lines.append(f"| {label} | {len(sel)} | {faces} | {share:.2f}% ({low:.2f}-{high:.2f}) | {mean:.2f} |")
    return lines


def recall_at(threshold: float, rows: list[Row], truth_sets: list) -> str:
    """Recall on the annotated photos (all true boxes, and those of MIN_REACH px or more) and the
    non-faces among known boxes, at a raw score threshold."""
    out = []
    for source, _, truth in truth_sets:
        hits = reach = hits_reach = total = 0
        for name, boxes in truth.items():
            found = np.array([r.box for r in rows if r.source == source and r.image == name
                              and r.score >= threshold], np.float32).reshape(-1, 4)
            hit = matched(boxes, found, MATCH_IOU)
            big = np.minimum(boxes[:, 2], boxes[:, 3]) >= MIN_REACH
            hits, total = hits + int(hit.sum()), total + len(boxes)
            hits_reach, reach = hits_reach + int(hit[big].sum()), reach + int(big.sum())
        out.append(f"{source} {hits}/{total} ({hits_reach}/{reach} of {MIN_REACH} px or more)")
    known = [r for r in rows if r.score >= threshold and r.label in (0, 1)]
    faces = sum(1 for r in known if r.label == 1)
    return (f"raw >= {threshold:.2f}: true faces found {'; '.join(out)}; known boxes: {faces} faces, "
            f"{len(known) - faces} not faces")


def report(rows: list[Row]) -> None:
    """``rows``: the low-threshold run (fit, threshold table); the reliability tables use the run
    with the shipped settings (the low threshold also changes when the pyramid's second pass runs)."""
    threshold = shipped_threshold()
    _print_blocks(rows)
    from faceprint.models.detector import CONFIDENCE_KNOTS

    knots = fit(rows)
    same = "the shipped ones" if tuple(knots) == CONFIDENCE_KNOTS else "NOT the shipped ones: paste them in"
    print(f"\nfitted knots (raw score, probability), {same}:", knots)
    shipped = load_rows(threshold)
    unseen = sum(1 for r in shipped if r.how in ("unmatched", "unreviewed") and r.score >= 0.6)
    print(f"shipped-settings run: {len(shipped)} boxes, {unseen} unannotated and not looked at "
          "(counted as not faces in the annotated photos, left out elsewhere)")
    held = [r for r in shipped if not in_fit(r)]
    for title, subset in (("REPORT split (WIDER, ICDAR odd images, LFW other faces): not used by the fit", held),
                          ("every box, fit split included (LFW dominates the top bin)", shipped)):
        for unsure_as, how in ((-1, "can't-tell boxes left out"), (0, "can't-tell boxes counted as not faces")):
            print(f"\n{title}; {how}; raw score >= {threshold}")
            print("\n".join(reliability(subset, threshold, unsure_as)))
    print("\nrecall (IoU >= MATCH_IOU) and known boxes by raw threshold:")
    truth_sets = _truth_sets()
    for t in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75):
        print(" ", recall_at(t, rows, truth_sets))


if __name__ == "__main__":
    step = sys.argv[1] if len(sys.argv) > 1 else "report"
    if step == "collect":  # the low threshold run (fit, thresholds), then the shipped settings (report)
        for t in (COLLECT_THRESHOLD, shipped_threshold()):
            print(f"raw threshold {t}: {len(collect(t))} rows")
    elif step == "sheets":
        sheets()
    elif step == "sheets-lfw":
        sheets(0.9, 48, lfw=True)
    elif step == "fit":
        print(fit(load_rows()))
    else:
        report(load_rows())
