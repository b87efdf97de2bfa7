"""faceprint: self-hosted face and text recognition with Amazon Rekognition's operations.

Quick use::

    import faceprint
    result = faceprint.detect_faces("group.jpg")
    print(result.to_dict())

The module-level functions run on a default :class:`Faceprint` created on first
use (home ``$FACEPRINT_HOME`` or ``~/.faceprint``); create your own object for
other settings.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from faceprint.errors import (
    FaceprintError,
    ImageTooLargeException,
    InvalidImageFormatException,
    InvalidParameterException,
    ResourceNotFoundException,
)

if TYPE_CHECKING:
    from faceprint.service import Faceprint
    from faceprint.types import CompareFacesResult, DetectFacesResult, DetectTextResult

__all__ = [
    "Faceprint",
    "FaceprintError",
    "ImageTooLargeException",
    "InvalidImageFormatException",
    "InvalidParameterException",
    "ResourceNotFoundException",
    "compare_faces",
    "default",
    "detect_faces",
    "detect_text",
]
__version__ = "0.1.0"

_default: Faceprint | None = None
_default_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    if name == "Faceprint":
        from faceprint.service import Faceprint

        return Faceprint
    raise AttributeError(f"module 'faceprint' has no attribute {name!r}")


def default() -> Faceprint:
    """The shared default instance, created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                from faceprint.service import Faceprint

                _default = Faceprint()
    return _default


def detect_faces(image: Any, attributes: tuple[str, ...] | list[str] = ("DEFAULT",)
                 ) -> DetectFacesResult:
    """Faces in ``image`` (bytes, path or RGB array); see :meth:`Faceprint.detect_faces`."""
    return default().detect_faces(image, attributes)


def compare_faces(source: Any, target: Any, similarity_threshold: float = 80.0,
                  quality_filter: str = "NONE") -> CompareFacesResult:
    """The source's largest face against the target's faces; see :meth:`Faceprint.compare_faces`."""
    return default().compare_faces(source, target, similarity_threshold, quality_filter)


def detect_text(image: Any, filters: dict[str, Any] | None = None) -> DetectTextResult:
    """Lines and words of text in ``image``; see :meth:`Faceprint.detect_text`."""
    return default().detect_text(image, filters)
