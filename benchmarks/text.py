"""DetectText on ICDAR 2015 (150 training images): word detection and reading, beside raw rapidocr.

Run: python benchmarks/text.py [--images 150]

For each image, a raw rapidocr engine (its own defaults, ``return_word_box=True``, same model
files) and faceprint's ``detect_text`` (WORD entries; with Rekognition's default MinConfidence
of 80, and with MinConfidence 0) are run one after the other in the same process. Words are
matched one-to-one to the ground-truth quadrilaterals at IoU >= 0.5; detections on '###'
(don't care) regions are not counted. Reported: precision, recall, F1, end-to-end word
accuracy (ground-truth words matched and read exactly, case-insensitive, over all
ground-truth words), and seconds per image.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from groundtruth import icdar_words, score_words  # noqa: E402

DATA = Path(os.environ.get("FACEPRINT_TEST_DATA", ROOT.parent / "shared" / "data")) / "text" / "icdar2015-train"


def ours(fp, path: Path, filters: dict | None = None) -> list[tuple[np.ndarray, str]]:
    result = fp.detect_text(path, filters)
    image = fp.load_image(path)
    scale = np.array([image.width, image.height], np.float32)
    return [(np.array([[p.x, p.y] for p in d.geometry.polygon], np.float32) * scale, d.detected_text)
            for d in result.text_detections if d.type == "WORD"]


def raw(engine, path: Path) -> list[tuple[np.ndarray, str]]:
    out = engine(str(path), return_word_box=True)
    if out.txts is None:  # nothing found: word_results is then a placeholder
        return []
    words = []
    for line in out.word_results or ():
        words += [(np.asarray(w[2], np.float32), str(w[0])) for w in line if len(w) == 3 and str(w[0]).strip()]
    return words


def summary(counts: list[dict[str, int]], seconds: float, n: int) -> dict[str, float]:
    total = {k: sum(c[k] for c in counts) for k in counts[0]}
    p = total["matched"] / max(total["found"], 1)
    r = total["matched"] / max(total["truth"], 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-9),
            "e2e": total["correct"] / max(total["truth"], 1), "s_per_image": seconds / n,
            "truth": total["truth"], "found": total["found"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=150)
    args = parser.parse_args()
    from rapidocr import RapidOCR

    from faceprint.service import Faceprint

    fp = Faceprint()
    engine = RapidOCR(params={"Global.log_level": "error"})
    paths = sorted((DATA / "images").glob("*.jpg"), key=lambda p: int(p.stem.split("_")[1]))[: args.images]
    ours(fp, paths[0]), raw(engine, paths[0])  # warm up both
    runs = {
        "rapidocr": lambda p: raw(engine, p),
        "faceprint (default MinConfidence 80)": lambda p: ours(fp, p),
        "faceprint, MinConfidence 0": lambda p: ours(fp, p, {"WordFilter": {"MinConfidence": 0}}),
    }
    counts: dict[str, list[dict[str, int]]] = {name: [] for name in runs}
    seconds = dict.fromkeys(runs, 0.0)
    for path in paths:
        truth = icdar_words(DATA / "gt" / f"gt_{path.stem}.txt")
        for name, run in runs.items():
            start = time.perf_counter()
            found = run(path)
            seconds[name] += time.perf_counter() - start
            counts[name].append(score_words(truth, found))
    print(f"# ICDAR 2015 DetectText benchmark, {time.strftime('%Y-%m-%d')}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {len(paths)} images\n")
    print("| pipeline | precision | recall | F1 | end-to-end word accuracy | s / image | ratio of time |")
    print("|---|---|---|---|---|---|---|")
    base = summary(counts["rapidocr"], seconds["rapidocr"], len(paths))
    for name in runs:
        s = summary(counts[name], seconds[name], len(paths))
        print(f"| {name} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['e2e']:.3f} "
              f"| {s['s_per_image']:.3f} | {s['s_per_image'] / base['s_per_image']:.2f} |")
    found = ", ".join(f"{name} {summary(counts[name], 1, 1)['found']}" for name in runs)
    print(f"\n(ground-truth words that count: {base['truth']}; words found: {found})")


if __name__ == "__main__":
    main()
