"""Per-face measurements: head pose from the five landmarks, and image quality.

Pose is solved by PnP against a generic 3-D head (nose tip at the origin) with
a virtual camera centred on the face. Angles are in degrees: ``roll`` is the
in-plane tilt (positive: clockwise as seen in the picture), ``yaw`` positive
when the face turns towards the picture's right, ``pitch`` positive when it
looks up.

Quality follows Rekognition's meaning: ``brightness`` is the mean luminance of
the face region scaled to 0-100; ``sharpness`` is the variance of the Laplacian
of the face (resampled to 112 px) over the variance of the face itself, so that
it measures blur rather than contrast, mapped onto 0-100.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceprint.types import ImageQuality, Pose

# Generic head in millimetres: x to the picture's right, y down, z away from the camera.
_HEAD = np.array([[-32.0, -35.0, 30.0], [32.0, -35.0, 30.0], [0.0, 0.0, 0.0],
                  [-24.0, 31.0, 22.0], [24.0, 31.0, 22.0]], dtype=np.float64)

SHARPNESS_SCALE = 0.05
"""Laplacian-to-face variance ratio that maps to sharpness 63: about the median of LFW's faces
(5th-95th percentile 0.025-0.12; Gaussian blur of sigma 1.5 gives about 0.013, sigma 3 0.006)."""


def estimate_pose(landmarks: np.ndarray) -> Pose:
    pts = landmarks.astype(np.float64)
    eye_dx, eye_dy = pts[1] - pts[0]
    roll = math.degrees(math.atan2(eye_dy, eye_dx))
    centre = pts.mean(0)
    scale = max(float(np.linalg.norm(pts[1] - pts[0])), 1.0)
    focal = scale * 12.0
    camera = np.array([[focal, 0, centre[0]], [0, focal, centre[1]], [0, 0, 1]], dtype=np.float64)
    ok, rvec, _ = cv2.solvePnP(_HEAD, pts, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return Pose(roll=_r(roll), yaw=0.0, pitch=0.0)
    rot, _ = cv2.Rodrigues(rvec)
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -rot[2, 0]))))
    pitch = math.degrees(math.atan2(rot[2, 1], rot[2, 2]))
    return Pose(roll=_r(roll), yaw=_r(-yaw), pitch=_r(pitch))


def _r(angle: float) -> float:
    angle = (angle + 180.0) % 360.0 - 180.0
    return round(angle, 4)


def estimate_quality(bgr: np.ndarray, box: np.ndarray) -> ImageQuality:
    x, y, w, h = (int(round(v)) for v in box)
    height, width = bgr.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return ImageQuality(brightness=0.0, sharpness=0.0)
    grey = cv2.cvtColor(bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    brightness = float(grey.mean()) / 255.0 * 100.0
    small = cv2.resize(grey, (112, 112), interpolation=cv2.INTER_AREA).astype(np.float64)
    ratio = float(cv2.Laplacian(small, cv2.CV_64F).var()) / (float(small.var()) + 1.0)
    sharpness = 100.0 * (1.0 - math.exp(-ratio / SHARPNESS_SCALE))
    return ImageQuality(brightness=round(brightness, 4), sharpness=round(sharpness, 4))
