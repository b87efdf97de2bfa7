"""Service models: Rekognition's, as botocore ships it (the contract of the wire protocol), and
faceprint's own (``FaceprintService``: review, collection settings, audit, erasure), shipped in the
package as a botocore-style model under ``faceprint/data`` (:data:`DATA_PATH`), so that boto3
reads it too (``boto3.client("faceprint")`` once that folder is on botocore's data path).

A model is read once per :class:`ServiceModel` object (about 30 ms); nothing is read at import.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVICE = "rekognition"
API_VERSION = "2016-06-27"
FACEPRINT_SERVICE = "faceprint"
FACEPRINT_API_VERSION = "2026-12-01"
DATA_PATH = Path(__file__).resolve().parent.parent / "data"
"""botocore's data path layout: ``DATA_PATH/faceprint/2026-12-01/service-2.json``."""

# Java regular expression classes that Python's ``re`` lacks (only in tag patterns).
_JAVA_CLASSES = {r"\p{L}": r"\w", r"\p{N}": r"\w", r"\p{Z}": r"\s"}


def load_service_model() -> dict[str, Any]:
    """botocore's ``rekognition/2016-06-27/service-2.json`` as a dict."""
    from botocore.loaders import Loader

    return Loader().load_service_model(SERVICE, "service-2", API_VERSION)


def faceprint_model_path() -> Path:
    """The shipped model of faceprint's own operations."""
    return DATA_PATH / FACEPRINT_SERVICE / FACEPRINT_API_VERSION / "service-2.json"


def load_model_file(path: str | Path) -> dict[str, Any]:
    """A botocore-style ``service-2.json`` as a dict."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_faceprint_model() -> dict[str, Any]:
    """faceprint's ``FaceprintService`` model as a dict."""
    return load_model_file(faceprint_model_path())


# Constructs through which a pattern could match a line break.
_MAY_MATCH_NEWLINE = re.compile(r"\\[sSWDn]|\[\^|\\p\{Z\}")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The model's pattern for ``fullmatch``. A pattern that cannot match a line break first refuses
    a value holding one, in one linear scan: without it, a pattern such as SNSTopicArn's
    ``(^arn:aws:sns:.*:\\w{12}:.+$)`` backtracks in quadratic time over a long value that ends in a
    newline (``$`` matches before it, ``fullmatch`` then fails, and ``re`` tries every split)."""
    guard = "" if _MAY_MATCH_NEWLINE.search(pattern) else r"(?=[^\n]*\Z)"
    for java, python in _JAVA_CLASSES.items():
        pattern = pattern.replace(java, python)
    return re.compile(guard + pattern)


@dataclass
class ServiceModel:
    """The operations, shapes and errors of a service model (Rekognition's by default), with compiled patterns."""

    raw: dict[str, Any] = field(default_factory=load_service_model)
    _patterns: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_file(cls, path: str | Path) -> ServiceModel:
        """The model in a botocore-style ``service-2.json`` file."""
        return cls(load_model_file(path))

    @classmethod
    def faceprint(cls) -> ServiceModel:
        """faceprint's own ``FaceprintService`` model, as shipped in the package."""
        return cls.from_file(faceprint_model_path())

    @property
    def target_prefix(self) -> str:
        return str(self.raw["metadata"]["targetPrefix"])

    @property
    def operations(self) -> list[str]:
        return sorted(self.raw["operations"])

    def shape(self, name: str) -> dict[str, Any]:
        return self.raw["shapes"][name]

    def input_shape(self, operation: str) -> str | None:
        spec = self.raw["operations"][operation].get("input")
        return spec["shape"] if spec else None

    def documentation(self, operation: str) -> str:
        return str(self.raw["operations"][operation].get("documentation", ""))

    def pattern(self, shape_name: str) -> re.Pattern[str]:
        if shape_name not in self._patterns:
            self._patterns[shape_name] = compile_pattern(self.shape(shape_name)["pattern"])
        return self._patterns[shape_name]

    def image_members(self, operation: str) -> list[str]:
        """Top-level input members of shape ``Image`` (each may carry a 5 MB blob)."""
        name = self.input_shape(operation)
        if name is None:
            return []
        return [m for m, ref in self.shape(name)["members"].items() if ref["shape"] == "Image"]

    def error_status(self, code: str) -> int:
        """The HTTP status of an error shape: its ``httpStatusCode`` if the model gives one,
        else 500 for a fault and 400 for a client error (botocore's reading of the model)."""
        shape = self.raw["shapes"].get(code)
        if shape is None or not shape.get("exception"):
            return 400
        status = shape.get("error", {}).get("httpStatusCode")
        if status:
            return int(status)
        return 500 if shape.get("fault") else 400
