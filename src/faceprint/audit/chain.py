"""The hash chain of the audit log: each entry's hash covers the hash before it.

An entry's body is the canonical JSON of its fields and its sequence number (keys sorted, no
spaces, ASCII only, floats as Python's ``repr``); its hash is
``sha256(prev_hash_hex + body)``, hex. The first entry's ``prev_hash`` is :data:`GENESIS`. The
body is stored as is, so that what is verified later is byte for byte what was hashed.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry."""


def canonical_json(value: Any) -> str:
    """``value`` (made JSON-able as :func:`jsonable` says) as canonical JSON text."""
    try:  # the usual case, plain values, straight through the C encoder
        if _ENCODE is not None:  # json.dumps's own encoder, made once (no circular-reference check)
            return "".join(_ENCODE(value, 0))
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
                          default=_default)
    except (TypeError, ValueError):  # NaN, keys of mixed types...: the slow way
        return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False)


def _default(value: Any) -> Any:
    """What the encoder cannot write itself (numpy numbers, sets, paths...), as :func:`jsonable` has it."""
    return jsonable(value)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON values: tuples and sets as lists, numpy numbers as Python ones,
    non-finite floats as None, keys as strings, anything else as its ``str``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    return str(value)


_ENCODE = None if c_make_encoder is None else c_make_encoder(
    None, _default, encode_basestring_ascii, None, ":", ",", True, False, False)
"""The C encoder json.dumps makes for canonical JSON on every call: markers (none), default, string
encoder, indent, key and item separators, sort_keys, skipkeys, allow_nan."""


def link(prev_hash: str, body: str) -> str:
    """The hash of an entry whose body is ``body`` after the entry whose hash is ``prev_hash``."""
    return hashlib.sha256((prev_hash + body).encode("ascii")).hexdigest()


def link_bytes(prev_hash: str, body: bytes) -> str:
    """:func:`link` of a body already encoded (ASCII): the same hash, without joining the two first."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(body)
    return digest.hexdigest()
