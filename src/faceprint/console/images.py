"""Pictures the console shows: probe thumbnails (decoded under the Faceprint image limits and
re-encoded, never served as uploaded) with the searched face framed, stored probes and crops."""

from __future__ import annotations

import base64
from typing import Any

THUMB_SIDE = 360
JPEG_QUALITY = 82
FRAME = (0, 200, 255)
"""The searched face's frame colour (BGR: amber)."""


def thumbnail(fp: Any, data: bytes, box: Any = None, side: int = THUMB_SIDE) -> bytes:
    """``data`` (an image as the Faceprint API accepts it) as a JPEG at most ``side`` pixels on its
    longer side, with ``box`` (a BoundingBox or its dict, ratios) framed."""
    import cv2

    image = fp.load_image(data)
    bgr = image.bgr
    scale = min(1.0, side / max(bgr.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    else:
        bgr = bgr.copy()
    if box is not None:
        left, top, width, height = _box(box)
        h, w = bgr.shape[:2]
        cv2.rectangle(bgr, (round(left * w), round(top * h)), (round((left + width) * w), round((top + height) * h)),
                      FRAME, max(2, round(max(h, w) / 150)))
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("the thumbnail could not be encoded")
    return encoded.tobytes()


def _box(box: Any) -> tuple[float, float, float, float]:
    if isinstance(box, dict):
        return box["Left"], box["Top"], box["Width"], box["Height"]
    return box.left, box.top, box.width, box.height


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
