"""Operator SCRFD detectors against the built-in YuNet: recall of ground-truth faces, and time.

    nice .venv/bin/python benchmarks/detectors.py [--threads 1] [--repeat 3]

Sets (../shared/data/faces/groups): wider_val_samples (4 WIDER FACE validation crowd photos,
328 official boxes, many under 12 px) and dlib_faces (9 PASCAL VOC group photos with dlib's boxes).
A true face counts as found when a detection overlaps it by IoU >= 0.5 (one-to-one, as
tests/test_detect_faces.py counts); "extra" are detections overlapping no true face by 0.3 or
more (WIDER boxes nearly every face, dlib's sets do not: read extras there loosely).

Detectors, all measured in this run on the same pictures and the same thread count:
  yunet             the built-in YuNet as FaceEngine runs it (DetectorSettings defaults: full
                    resolution up to 2560, a coarse pass, a 2x pass for tiny faces)
  scrfd-500m/-2.5g  faceprint.models.scrfd.ScrfdDetector as an operator profile runs it: the
                    picture's own resolution padded to a multiple of 32 (up to 1920) plus a
                    coarse pass at 320
  ...@640           the same network on insightface's default input: the picture letterboxed
                    into 640 x 640 (scaled to fit, padded with black)
  ... t=0.3         own resolution at score threshold 0.3 instead of insightface's (and the
                    profile's default) 0.5: more of the small faces, more extras (--low)
Time per picture is the median of --repeat runs (detection only, decoded pixels in memory).
Ratios are against YuNet's recall and time of this run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from faceprint.models import catalog  # noqa: E402
from faceprint.models.detector import Detections, YuNetDetector  # noqa: E402
from faceprint.models.scrfd import ScrfdDetector  # noqa: E402
from faceprint.models.store import ModelStore  # noqa: E402
from groundtruth import dlib_boxes, iou_matrix, matched, wider_boxes  # noqa: E402

DATA = Path(os.environ.get("FACEPRINT_TEST_DATA", ROOT.parent / "shared" / "data"))
GROUPS = DATA / "faces" / "groups"
MODELS_TEST = DATA / "models-test"
LETTERBOX = 640

Detect = Callable[[np.ndarray], Detections]


@dataclass
class Tally:
    truth: int = 0
    found: int = 0
    truth_20: int = 0
    found_20: int = 0
    detections: int = 0
    extra: int = 0

    def add(self, truth: np.ndarray, found: Detections) -> None:
        hit = matched(truth, found.boxes)
        big = np.minimum(truth[:, 2], truth[:, 3]) >= 20
        self.truth += len(truth)
        self.found += int(hit.sum())
        self.truth_20 += int(big.sum())
        self.found_20 += int(hit[big].sum())
        self.detections += len(found)
        if len(found):
            overlap = iou_matrix(found.boxes, truth).max(axis=1) if len(truth) else np.zeros(len(found))
            self.extra += int((overlap < 0.3).sum())

    def recall(self) -> float:
        return self.found / max(self.truth, 1)

    def recall_20(self) -> float:
        return self.found_20 / max(self.truth_20, 1)


def letterboxed(detector: ScrfdDetector, side: int = LETTERBOX) -> Detect:
    """``detector`` on insightface's default input: the picture scaled to fit side x side and padded."""
    def detect(bgr: np.ndarray) -> Detections:
        height, width = bgr.shape[:2]
        scale = side / max(height, width)
        size = (min(side, round(width * scale)), min(side, round(height * scale)))
        canvas = np.zeros((side, side, 3), np.uint8)
        canvas[:size[1], :size[0]] = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if scale < 1
                                                 else cv2.INTER_LINEAR)
        found = detector.detect(canvas)
        return Detections(found.boxes / np.float32(scale), found.landmarks / np.float32(scale), found.scores)
    return detect


def detectors(threads: int, low: float) -> dict[str, Detect]:
    cv2.setNumThreads(threads)
    store = ModelStore(Path(os.environ.get("FACEPRINT_MODELS_DIR", Path.home() / ".faceprint" / "models")))
    store.pull([catalog.YUNET])
    out: dict[str, Detect] = {"yunet": YuNetDetector(store.path(catalog.YUNET)).detect}
    for name, file in (("scrfd-500m", "det_500m.onnx"), ("scrfd-2.5g", "det_2.5g.onnx")):
        own = ScrfdDetector(MODELS_TEST / file, threads=threads)
        boxed = ScrfdDetector(MODELS_TEST / file, threads=threads, max_side=LETTERBOX, coarse_side=LETTERBOX)
        out[name] = own.detect
        out[f"{name} t={low:g}"] = ScrfdDetector(MODELS_TEST / file, score_threshold=low, threads=threads).detect
        out[f"{name}@640"] = letterboxed(boxed)
    return out


def sets() -> dict[str, dict[Path, np.ndarray]]:
    wider = GROUPS / "wider_val_samples"
    dlib = GROUPS / "dlib_faces"
    dlib_truth = dlib_boxes(dlib / "training.xml") | dlib_boxes(dlib / "testing.xml")
    return {"wider": {wider / name: boxes for name, boxes in wider_boxes(wider / "wider_val_gt_boxes.json").items()},
            "dlib": {dlib / name: boxes for name, boxes in dlib_truth.items()}}


def measure(detect: Detect, pictures: dict[Path, np.ndarray], images: dict[Path, np.ndarray],
            repeat: int) -> tuple[Tally, float]:
    tally, times = Tally(), []
    for path, truth in pictures.items():
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            found = detect(images[path])
            runs.append(time.perf_counter() - start)
        tally.add(truth, found)
        times.append(statistics.median(runs))
    return tally, 1000 * sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="threads per detector (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per picture (median)")
    parser.add_argument("--low", type=float, default=0.3, help="the lower SCRFD score threshold tried")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads={args.threads}, "
          f"load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    runs = detectors(args.threads, args.low)
    for set_name, pictures in sets().items():
        images = {path: cv2.imread(str(path)) for path in pictures}
        print(f"\n## {set_name}: {len(pictures)} pictures, {sum(len(b) for b in pictures.values())} true faces")
        print(f"{'detector':18} {'recall':>7} {'>=20px':>7} {'found':>9} {'extra':>6} {'ms/pic':>8}"
              f" {'recall/yunet':>13} {'time/yunet':>11}")
        base: tuple[float, float] | None = None
        for name, detect in runs.items():
            tally, ms = measure(detect, pictures, images, args.repeat)
            base = base or (tally.recall(), ms)
            print(f"{name:18} {tally.recall():7.3f} {tally.recall_20():7.3f} {tally.found:4d}/{tally.truth:<4d}"
                  f" {tally.extra:6d} {ms:8.1f} {tally.recall() / base[0]:13.3f} {ms / base[1]:11.2f}")


if __name__ == "__main__":
    main()
