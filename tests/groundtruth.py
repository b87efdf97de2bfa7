"""Readers for the ground truth in ../shared/data (boxes as x, y, w, h in pixels)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np


def dlib_boxes(xml_path: Path) -> dict[str, np.ndarray]:
    root = ET.parse(xml_path).getroot()
    out = {}
    for image in root.iter("image"):
        boxes = [[float(b.get(k)) for k in ("left", "top", "width", "height")]
                 for b in image.iter("box") if b.get("ignore") != "1"]
        out[image.get("file")] = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    return out


def wider_boxes(json_path: Path) -> dict[str, np.ndarray]:
    data = json.loads(json_path.read_text())
    return {name + ".jpg": np.array(boxes, dtype=np.float32).reshape(-1, 4)
            for name, boxes in data["boxes"].items()}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` against every box in ``b`` (x, y, w, h)."""
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    w = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    h = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = w * h
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-9)


def matched(truth: np.ndarray, found: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """For each true box, whether a found box overlaps it by IoU >= threshold (greedy, one-to-one)."""
    hit = np.zeros(len(truth), dtype=bool)
    if not len(truth) or not len(found):
        return hit
    iou = iou_matrix(truth, found)
    used: set[int] = set()
    for i in np.argsort(-iou.max(1)):
        for j in np.argsort(-iou[i]):
            if iou[i, j] < threshold:
                break
            if j not in used:
                used.add(int(j))
                hit[i] = True
                break
    return hit


def icdar_words(gt_path: Path) -> list[tuple[np.ndarray, str]]:
    """ICDAR 2015 words: (4 x 2 quad in pixels, transcription); '###' marks don't-care regions."""
    out = []
    for line in gt_path.read_text(encoding="utf-8-sig").splitlines():
        parts = line.strip().split(",", 8)
        if len(parts) == 9:
            quad = np.array([float(v) for v in parts[:8]], np.float32).reshape(4, 2)
            out.append((quad, parts[8]))
    return out


def quad_iou(a: np.ndarray, b: np.ndarray) -> float:
    from shapely.geometry import Polygon

    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    inter = pa.intersection(pb).area
    union = pa.area + pb.area - inter
    return inter / union if union > 0 else 0.0


def score_words(truth: list[tuple[np.ndarray, str]], found: list[tuple[np.ndarray, str]],
                threshold: float = 0.5) -> dict[str, int]:
    """ICDAR-style counts for one image: matches (IoU >= threshold, one-to-one), correctly read
    matches (case-insensitive), cared-for truth words, and detections not on don't-care regions."""
    care = [(q, t) for q, t in truth if t != "###"]
    dont = [q for q, t in truth if t == "###"]
    dets = [(q, t) for q, t in found
            if not any(quad_iou(q, d) >= threshold or _inside(q, d) for d in dont)]
    pairs = sorted(((quad_iou(gq, dq), i, j) for i, (gq, _) in enumerate(care)
                    for j, (dq, _) in enumerate(dets)), reverse=True)
    used_g: set[int] = set()
    used_d: set[int] = set()
    matched = correct = 0
    for iou, i, j in pairs:
        if iou < threshold:
            break
        if i in used_g or j in used_d:
            continue
        used_g.add(i)
        used_d.add(j)
        matched += 1
        correct += care[i][1].casefold() == dets[j][1].casefold()
    return {"matched": matched, "correct": correct, "truth": len(care), "found": len(dets)}


def _inside(quad: np.ndarray, region: np.ndarray) -> bool:
    from shapely.geometry import Polygon

    p, r = Polygon(quad).buffer(0), Polygon(region).buffer(0)
    return p.area > 0 and p.intersection(r).area > 0.5 * p.area
