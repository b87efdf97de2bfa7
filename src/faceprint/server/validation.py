"""Request validation driven by Rekognition's service model, answering as AWS does.

Constraint violations (required members, lengths, patterns, ranges, enums) are collected and
reported together as a ``ValidationException`` in the words of AWS's own framework
("1 validation error detected: Value 'x' at 'collectionId' failed to satisfy constraint: ...").
A value of the wrong JSON type is a ``SerializationException``, and so is one the service's Java
types cannot hold (AWS's deserializer refuses it before any constraint is checked): an integer
outside a Java ``int`` (``long`` for the model's longs), a number outside a Java ``float`` or
``double`` (``1e999`` included), a string that is not Unicode text (a lone surrogate such as
JSON's ``"\\ud800"``). Blobs arrive base64-encoded and leave as ``bytes``; image bytes that are
not base64 are an ``InvalidImageFormatException`` and image bytes over the model's 5 MB (or the
server's ``--max-image-bytes``) an ``ImageTooLargeException``, as Rekognition answers.
Members the model does not know are ignored, as AWS does (newer clients may send them).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from typing import Any

from faceprint.errors import FaceprintError, ImageTooLargeException, InvalidImageFormatException
from faceprint.server.model import ServiceModel

IMAGE_BLOB = "ImageBlob"
INTEGER_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
"""What a Java ``int`` and ``long`` hold: the model's ``integer`` and ``long``."""
FLOAT_LIMITS = {"float": 3.4028234663852886e38, "double": sys.float_info.max, "timestamp": sys.float_info.max}
"""The largest finite Java ``float`` and ``double``."""


class ValidationException(FaceprintError):
    code = "ValidationException"
    http_status = 400


class SerializationException(FaceprintError):
    code = "SerializationException"
    http_status = 400


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value)
    elif isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    else:
        text = str(value)
    return "'" + (text if len(text) <= 200 else text[:200] + "...") + "'"


class Validator:
    """Validates one request body against an input shape; see the module's docstring."""

    def __init__(self, model: ServiceModel, max_image_bytes: int | None = None) -> None:
        """``max_image_bytes`` replaces the model's 5 MB limit on image bytes (``--max-image-bytes``)."""
        self.model = model
        self.max_image_bytes = max_image_bytes

    def validate(self, shape_name: str, value: Any) -> dict[str, Any]:
        errors: list[str] = []
        if not isinstance(value, dict):
            raise SerializationException("The request body must be a JSON object.")
        result = self._value(shape_name, value, "", errors)
        if errors:
            count = len(errors)
            raise ValidationException(f"{count} validation error{'s' if count > 1 else ''} detected: "
                                      + "; ".join(errors))
        return result

    # -- one value of each kind ----------------------------------------------------------------
    def _value(self, shape_name: str, value: Any, path: str, errors: list[str]) -> Any:
        shape = self.model.shape(shape_name)
        kind = shape["type"]
        check = getattr(self, f"_{kind}")
        return check(shape_name, shape, value, path, errors)

    def _structure(self, name: str, shape: dict[str, Any], value: Any, path: str, errors: list[str]) -> Any:
        if not isinstance(value, dict):
            raise self._type_error(value, path, "an object")
        out: dict[str, Any] = {}
        for member in shape.get("required", []):
            if value.get(member) is None:
                errors.append(f"Value null at '{self._join(path, member)}' failed to satisfy constraint: "
                              "Member must not be null")
        for member, ref in shape["members"].items():
            if value.get(member) is not None:
                out[member] = self._value(ref["shape"], value[member], self._join(path, member), errors)
        return out

    def _list(self, name: str, shape: dict[str, Any], value: Any, path: str, errors: list[str]) -> Any:
        if not isinstance(value, list):
            raise self._type_error(value, path, "a list")
        self._length(shape, len(value), value, path, errors)
        item = shape["member"]["shape"]
        return [self._value(item, v, f"{path}.{i}.member", errors) for i, v in enumerate(value, 1)]

    def _map(self, name: str, shape: dict[str, Any], value: Any, path: str, errors: list[str]) -> Any:
        if not isinstance(value, dict):
            raise self._type_error(value, path, "an object")
        self._length(shape, len(value), value, path, errors)
        key_shape, value_shape = shape["key"]["shape"], shape["value"]["shape"]
        return {self._value(key_shape, k, f"{path}.key", errors): self._value(value_shape, v, f"{path}.value", errors)
                for k, v in value.items()}

    def _string(self, name: str, shape: dict[str, Any], value: Any, path: str, errors: list[str]) -> Any:
        if not isinstance(value, str):
            raise self._type_error(value, path, "a string")
        if not value.isascii() and not _is_unicode(value):
            raise SerializationException(f"The value at '{path}' is not valid Unicode text (it holds a lone "
                                         "surrogate).")
        self._length(shape, len(value), value, path, errors)
        if "pattern" in shape and not self.model.pattern(name).fullmatch(value):
            self._fail(errors, value, path, f"Member must satisfy regular expression pattern: {shape['pattern']}")
        if "enum" in shape and value not in shape["enum"]:
            self._fail(errors, value, path, f"Member must satisfy enum value set: [{', '.join(shape['enum'])}]")
        return value

    def _integer(self, name: str, shape: dict[str, Any], value: Any, path: str, errors: list[str]) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._type_error(value, path, "an integer")
        low, high = INTEGER_RANGES[shape["type"]]
        if not low <= value <= high:
            raise SerializationException(f"Value {_show(value)} at '{path}' is out of range of a Java "
                                         f"{'int' if shape['type'] == 'integer' else 'long'} ({low} to {high}).")
        self._range(shape, value, path, errors)
        return value

    _long = _integer

    def _float(self, name: str, shape: dict[str, Any], value: Any, path: str, errors: list[str]) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._type_error(value, path, "a number")
        number = _finite(value, FLOAT_LIMITS[shape["type"]], path, shape["type"])
        self._range(shape, number, path, errors)
        return number

    _double = _float

    def _boolean(self, name: str, shape: dict[str, Any], value: Any, path: str, errors: list[str]) -> Any:
        if not isinstance(value, bool):
            raise self._type_error(value, path, "a boolean")
        return value

    def _timestamp(self, name: str, shape: dict[str, Any], value: Any, path: str, errors: list[str]) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._type_error(value, path, "epoch seconds")
        _finite(value, FLOAT_LIMITS["timestamp"], path, "timestamp")
        return value

    def _blob(self, name: str, shape: dict[str, Any], value: Any, path: str, errors: list[str]) -> Any:
        image = name == IMAGE_BLOB
        if not isinstance(value, str):
            raise self._type_error(value, path, "a base64 string")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            if image:
                raise InvalidImageFormatException(f"{path}: the image bytes are not valid base64.") from None
            raise SerializationException(f"{path}: not valid base64.") from None
        if image:
            limit = self.max_image_bytes or shape.get("max")
            if limit is not None and len(data) > limit:
                raise ImageTooLargeException(f"The image is {len(data)} bytes; image bytes may be at most "
                                             f"{limit} (use S3Object for larger images).")
            shape = {k: v for k, v in shape.items() if k != "max"}
        self._length(shape, len(data), data, path, errors)
        return data

    # -- constraints ---------------------------------------------------------------------------
    def _length(self, shape: dict[str, Any], length: int, value: Any, path: str, errors: list[str]) -> None:
        if "min" in shape and length < shape["min"]:
            self._fail(errors, value, path, f"Member must have length greater than or equal to {shape['min']}")
        if "max" in shape and length > shape["max"]:
            self._fail(errors, value, path, f"Member must have length less than or equal to {shape['max']}")

    def _range(self, shape: dict[str, Any], value: float, path: str, errors: list[str]) -> None:
        if "min" in shape and value < shape["min"]:
            self._fail(errors, value, path, f"Member must have value greater than or equal to {shape['min']}")
        if "max" in shape and value > shape["max"]:
            self._fail(errors, value, path, f"Member must have value less than or equal to {shape['max']}")

    @staticmethod
    def _fail(errors: list[str], value: Any, path: str, constraint: str) -> None:
        errors.append(f"Value {_show(value)} at '{path}' failed to satisfy constraint: {constraint}")

    @staticmethod
    def _join(path: str, member: str) -> str:
        return f"{path}.{_camel(member)}" if path else _camel(member)

    @staticmethod
    def _type_error(value: Any, path: str, expected: str) -> SerializationException:
        return SerializationException(f"Value {_show(value)} at '{path}' must be {expected}.")


def _is_unicode(text: str) -> bool:
    """Whether ``text`` is Unicode text: JSON's ``\\ud800`` escapes can make a lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _finite(value: int | float, limit: float, path: str, kind: str) -> float:
    """``value`` as a float, if a Java ``float`` or ``double`` holds it (an integer of 400 digits
    does not; nor does ``1e999``, which Python's JSON reads as infinity)."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or abs(number) > limit:
        raise SerializationException(f"Value {_show(value)} at '{path}' is out of range of a Java "
                                     f"{'float' if kind == 'float' else 'double'}.")
    return number

