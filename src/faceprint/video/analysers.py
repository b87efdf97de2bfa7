"""Which analyser runs each Start operation: ``"module:function"`` names, imported only when a job
runs (in the worker process), so that starting a job never loads models or decoders."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

from faceprint.video.context import JobContext

Analyser = Callable[[JobContext], None]

ANALYSERS: Mapping[str, str] = {
    "StartFaceSearch": "faceprint.video.faces:search",
    "StartFaceDetection": "faceprint.video.faces:detect",
    "StartTextDetection": "faceprint.video.text:run",
    "StartSegmentDetection": "faceprint.video.segments:run",
}


def analyser(api: str, registry: Mapping[str, str] = ANALYSERS) -> Analyser:
    """The function that runs an ``api`` job (``KeyError`` for an API with none)."""
    return load(registry[api])


def load(name: str) -> Analyser:
    """The function named ``"package.module:function"``."""
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)
