"""Check JSON against botocore's Rekognition service model (the contract)."""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any


@cache
def service_model() -> dict[str, Any]:
    import botocore

    base = Path(botocore.__file__).parent / "data" / "rekognition" / "2016-06-27" / "service-2.json"
    if base.exists():
        return json.loads(base.read_text())
    return json.loads(gzip.decompress(base.with_suffix(".json.gz").read_bytes()))


def output_shape(operation: str) -> str:
    return service_model()["operations"][operation]["output"]["shape"]


def validate(value: Any, shape_name: str, path: str = "$") -> None:
    """Raise AssertionError where ``value`` does not fit the model's ``shape_name``."""
    shape = service_model()["shapes"][shape_name]
    kind = shape["type"]
    if kind == "structure":
        assert isinstance(value, dict), f"{path}: expected object"
        for key in shape.get("required", []):
            assert key in value, f"{path}: missing required {key}"
        for key, item in value.items():
            assert key in shape["members"], f"{path}: {key} is not a member of {shape_name}"
            validate(item, shape["members"][key]["shape"], f"{path}.{key}")
    elif kind == "list":
        assert isinstance(value, list), f"{path}: expected list"
        for i, item in enumerate(value):
            validate(item, shape["member"]["shape"], f"{path}[{i}]")
    elif kind in ("float", "double"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: not a number"
        _check_range(value, shape, path)
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: not an integer"
        _check_range(value, shape, path)
    elif kind == "string":
        assert isinstance(value, str), f"{path}: expected string"
        if "enum" in shape:
            assert value in shape["enum"], f"{path}: {value!r} not in {shape_name}"
    elif kind == "timestamp":  # AWS JSON 1.1 sends epoch seconds
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: not epoch seconds"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{path}: expected boolean"
    else:
        raise AssertionError(f"{path}: unchecked shape type {kind}")


def _check_range(value: float, shape: dict[str, Any], path: str) -> None:
    if "min" in shape:
        assert value >= shape["min"], f"{path}: {value} < min {shape['min']}"
    if "max" in shape:
        assert value <= shape["max"], f"{path}: {value} > max {shape['max']}"
