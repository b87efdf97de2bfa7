"""Hypothesis strategies for requests to `faceprint serve`, generated from botocore's input shapes
of every served operation, valid and mutated; tests/fuzzrun.py sends them and judges the answers
(the short run is tests/test_fuzz.py, the long one benchmarks/fuzz_server.py).

A request is valid (with the collection, users, faces, bucket objects and page tokens the server
under test holds, so that it reaches deep code paths), or valid but for one value anywhere in it
(replaced by a mutation, removed, or given an extra member), or valid with many of its leaves
replaced by one kind of nasty value (numbers beyond a double, int64 edges, lone surrogates, NUL,
bidi marks, very long strings, wrong JSON types), or made of members each mutated, or no request
object at all (other JSON, broken JSON, bad UTF-8, deep nesting); a few carry a wrong target or
content type. Images are a handful of small real JPEGs and PNGs, junk, and bad base64.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from hypothesis import strategies as st

PREFIX = "RekognitionService."
SCRATCH = "fuzz-scratch"
"""A collection id and a user id that requests may create and delete."""
UNSERVED = ("DetectLabels", "StartLabelDetection", "CreateProject", "DetectModerationLabels")
"""Real Rekognition operations that faceprint does not serve."""


# -- what the server holds, so that valid requests reach deep code paths ---------------------------
@dataclass(frozen=True)
class Fixtures:
    """Names that exist on the server under test, and image bytes to send."""

    collection: str
    """A collection with faces and users; requests never delete it."""
    users: tuple[str, ...]
    face_ids: tuple[str, ...]
    bucket: str
    objects: tuple[str, ...]
    """Object names in ``bucket`` (real images, junk, folders, links, a FIFO)."""
    images: tuple[bytes, ...]
    """Real, small JPEG and PNG pictures (a face, and none)."""
    junk: tuple[bytes, ...]
    """Bytes that are no image, or a broken one."""
    tokens: tuple[str, ...] = ()
    """NextTokens the server issued."""
    refused: tuple[str, ...] = ()
    """Object names that no request may read: links out of the bucket, a FIFO."""

    @property
    def protected(self) -> frozenset[str]:
        return frozenset({self.collection, *self.users, *self.face_ids})


def small_images(face_jpeg: bytes) -> tuple[bytes, ...]:
    """A face as JPEG, as a smaller PNG and as a grey JPEG, and a blank PNG: cheap to run."""
    from PIL import Image

    face = Image.open(io.BytesIO(face_jpeg)).convert("RGB")
    out = [face_jpeg]
    for picture, fmt in ((face.resize((125, 125)), "PNG"), (Image.new("RGB", (96, 96), (90, 120, 150)), "PNG"),
                         (face.convert("L").resize((100, 100)), "JPEG")):
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt)
        out.append(buffer.getvalue())
    return tuple(out)


def junk_images(real: bytes) -> tuple[bytes, ...]:
    """Broken and fake pictures: truncated, lying signatures, 1 x 1, not an image."""
    from PIL import Image

    tiny = io.BytesIO()
    Image.new("RGB", (1, 1)).save(tiny, format="PNG")
    return (b"\x00", b"not an image", real[:200], real[:2] + b"\x00" * 100, b"\x89PNG\r\n\x1a\n" + b"\xff" * 64,
            b"GIF89a" + b"\x00" * 32, tiny.getvalue(), bytes(range(256)))


# -- JSON with what json.dumps never writes -------------------------------------------------------
@dataclass(frozen=True)
class Raw:
    """JSON text written as is where a value goes."""

    text: str


RAW_NUMBERS = ("1e999", "-1e999", "1E400", "-0", "-0.0", "0e0", "1" + "0" * 5000, "1.0e-400",
               "123456789012345678901234567890.5", "NaN", "Infinity", "-Infinity")
RAW_VALUES = (*RAW_NUMBERS, '"\\ud800"', '"\\udfff"', '"\\udc00\\ud800"', '"a\\ud83dz"', '"\\u0000"', '"\\x41"',
              '"\\u12"', "[" * 3000 + "]" * 3000, '{"a":' * 2000 + "1" + "}" * 2000, "tru", "01", ".5", "+1",
              '"\t"', "[1,]", '{"a" 1}')
"""Out-of-range numbers and literals, lone surrogate and bad escapes, nesting deeper than a
recursive parser goes, broken syntax."""


def encode(value: Any) -> bytes:
    """``value`` as JSON (ASCII: a lone surrogate is written as a ``\\ud800`` escape), each
    :class:`Raw` as its text."""
    raws: list[str] = []

    def swap(v: Any) -> Any:
        if isinstance(v, Raw):
            raws.append(v.text)
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    text = json.dumps(swap(value))
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000raw{i}\\u0000"', raw, 1)
    return text.encode()


# -- generic values -------------------------------------------------------------------------------
LONE_SURROGATES = ("\ud800", "\udfff", "a\udc00", "\udbff", "x\ud800y", "\udc00\ud800", "face.jpg\ud800")
ODD = (*LONE_SURROGATES, "\x00", "\u202e", "\u200f", "\u200b", "\ufeff", "\udbff\udfff", "\U0001f600", "e\u0301",
       "\uffff", "\x7f", "\n", "\r\n", "/", "../", "%00", "'", '"', "\\", "\u0130", "\u00df", "\ufdd0", " ")
BEYOND_DOUBLE = (10**309, -(10**309), 10**400, -(10**400), 2**1024, 10**4000)
"""Integers that no double holds (JSON allows them; Python's json reads them as ints)."""
INT64_EDGES = (2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, -(2**64))
EXTREME_FLOATS = (1e308, -1e308, 5e-324, -0.0, 1.7976931348623157e308, 2.2250738585072014e-308, float("nan"),
                  float("inf"), -float("inf"), 100.00000000000001, -1e-12)
BAD_BASE64 = ("not base64!", "====", "YQ", "YQ=", "Y Q = =", "YWJj\nZA==", "\u00e9\u00e9\u00e9\u00e9", "-_-_",
              "\ud800AAA", "AAAA" * 3 + "=A", "data:image/jpeg;base64,/9j/")


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each as often as its weight says (``st.one_of`` draws each alike,
    repeated ones included)."""
    slots = [strategy for weight, strategy in options for _ in range(weight)]
    return st.sampled_from(range(len(slots))).flatmap(lambda i: slots[i])


@cache
def odd_text() -> st.SearchStrategy[str]:
    """Short strings of control characters, bidi marks, surrogates (lone and paired) and the like."""
    return st.lists(weighted((2, st.sampled_from(ODD)), (1, st.text(max_size=4))), min_size=1,
                    max_size=5).map("".join)


@cache
def long_text() -> st.SearchStrategy[str]:
    return st.builds(lambda c, n: c * n, st.sampled_from(("a", "\u00e9", "\U0001f600", "\ud800", "0")),
                     st.sampled_from((256, 1025, 4097, 70_000, 300_000)))


@cache
def garbage() -> st.SearchStrategy[Any]:
    """Any JSON value, nested."""
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=6), st.sampled_from(BEYOND_DOUBLE + INT64_EDGES))
    return st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                        max_leaves=10)


@cache
def wrong_type() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from((True, False, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}, [None])),
                     st.builds(Raw, st.sampled_from(RAW_VALUES)), garbage())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bad_number(shape: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    """Boundaries of the shape's range, numbers beyond a double or int64, extreme and raw numbers."""
    edges: list[Any] = [0, -1, 1]
    for bound in ("min", "max"):
        if bound in shape:
            edges += [shape[bound] - 1, shape[bound], shape[bound] + 1, shape[bound] + 1e-9, shape[bound] - 1e-9]
    odd = [1.0, 1.5, "1", True] if integer else ["50", True, [50]]
    return weighted((2, st.sampled_from(edges + odd)), (2, st.sampled_from(BEYOND_DOUBLE)),
                    (1, st.sampled_from(INT64_EDGES)), (1, st.sampled_from(EXTREME_FLOATS)),
                    (1, st.sampled_from([Raw(r) for r in RAW_NUMBERS])), (1, st.integers()), (1, st.floats()))


@cache
def bad_blob() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(BAD_BASE64), st.binary(max_size=64).map(b64))


@cache
def forged_token() -> st.SearchStrategy[str]:
    """Page tokens the server never issued: junk, and base64 of JSON of every kind (what a
    token holds is no secret)."""
    inner = weighted((3, st.sampled_from(("\ud800", "a\udc00", "\x00", "zzzz", "", -1, 1.5, True, None,
                                          ["long", "x"], ["long", 5], ["long", "\ud800"], ["long"], {"a": 1}))),
                     (2, st.sampled_from(BEYOND_DOUBLE + INT64_EDGES)), (1, garbage()), (1, odd_text()))
    tokens = inner.map(lambda v: base64.urlsafe_b64encode(encode(v)).decode())
    return weighted((4, tokens), (1, st.text(max_size=40)), (1, odd_text()), (1, st.sampled_from(BAD_BASE64)),
                    (1, long_text()))


def not_a_request(valid_body: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Bodies that are no JSON object: other JSON values, broken JSON, bad UTF-8, deep nesting."""
    return st.one_of(
        garbage().filter(lambda v: not isinstance(v, dict)).map(encode),
        st.builds(Raw, st.sampled_from(RAW_VALUES)).map(encode),
        st.binary(max_size=200),
        st.sampled_from((b"", b" ", b"{", b"}", b"null", b'{"a":1}{"b":2}', b"{\"CollectionId\": \"\xff\xfe\"}",
                         b"\xef\xbb\xbf{}", '{"CollectionId": "x"}'.encode("utf-16"), b"[" * 200_000,
                         b'{"a":' * 100_000, b"\x00" * 1000, b"{}" + b" " * 500_000)),
        valid_body.flatmap(lambda b: st.integers(0, max(len(b) - 1, 0)).map(lambda n: b[:n])),
        valid_body.map(lambda b: b.replace(b"{", b"{\"CollectionId\": 1, ", 1)))


NUMERIC = ("integer", "long", "float", "double")
TEXTUAL = ("string", "blob")
NASTY: dict[str, tuple[tuple[str, ...], Callable[[], st.SearchStrategy[Any]]]] = {
    "beyond-double": (NUMERIC, lambda: st.sampled_from(BEYOND_DOUBLE)),
    "int64": (NUMERIC, lambda: st.sampled_from(INT64_EDGES)),
    "extreme": (NUMERIC, lambda: st.sampled_from(EXTREME_FLOATS + tuple(Raw(r) for r in RAW_NUMBERS))),
    "lone-surrogate": (TEXTUAL, lambda: st.sampled_from(LONE_SURROGATES)),
    "nul": (TEXTUAL, lambda: st.sampled_from(("\x00", "a\x00b", "face.jpg\x00", "\x00" * 300))),
    "odd": (TEXTUAL, odd_text),
    "long": (TEXTUAL, long_text),
    "empty": (TEXTUAL, lambda: st.just("")),
    "wrong-type": (NUMERIC + TEXTUAL + ("boolean",), wrong_type),
}
"""Kinds of nasty leaf value, each with the shape types it replaces."""


# -- requests -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FuzzRequest:
    """One request as sent: the operation it was made for, its target, content type and body,
    and whether the body is sent in chunks (no Content-Length)."""

    operation: str
    target: str | None
    content_type: str | None
    body: bytes
    chunked: bool = False

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(repr((self.target, self.content_type, self.chunked)).encode() + self.body).digest()

    def show(self, limit: int = 600) -> str:
        """The request, its body cut at ``limit`` characters and long numbers shortened."""
        body = re.sub(r"\d{41,}", lambda m: f"{m.group()[:12]}<{len(m.group())} digits>",
                      self.body.decode("utf-8", "backslashreplace"))
        if len(body) > limit:
            body = f"{body[:limit]}... ({len(self.body)} bytes)"
        chunked = " chunked" if self.chunked else ""
        return f"target={self.target!r} content-type={self.content_type!r}{chunked} body={body}"


TARGET_KINDS = ("op",) * 60 + ("unserved", "unknown", "none", "lower", "spaced", "prefix")
TYPE_KINDS = ("application/x-amz-json-1.1",) * 60 + (
    "application/x-amz-json-1.0", "application/json", "application/x-amz-json-1.1; charset=utf-8", None, "",
    "text/plain", "application/xml", "multipart/form-data; boundary=x", "application/x-amz-json-1.1, text/html")
MODES = ("valid",) * 6 + ("one",) * 6 + ("leaves",) * 5 + ("many",) + ("body",) * 2
MEMBER_MODES = ("valid",) * 6 + ("mutated",) * 3 + ("absent",) * 2
ONE_ACTIONS = ("replace",) * 6 + ("remove", "extra")
Where = tuple[Any, ...]
"""A place in a request body: member names and list indexes."""


class Requests:
    """Hypothesis strategies for requests to ``operations``, from the model's input shapes."""

    def __init__(self, model: dict[str, Any], fixtures: Fixtures, operations: Iterable[str]) -> None:
        from faceprint.server.model import compile_pattern

        self.model, self.fixtures, self.operations = model, fixtures, sorted(operations)
        self.shapes: dict[str, Any] = model["shapes"]
        self._compile = compile_pattern
        self._cache: dict[tuple[str, ...], st.SearchStrategy[Any]] = {}

    def requests(self) -> st.SearchStrategy[FuzzRequest]:
        return st.sampled_from(self.operations).flatmap(self.request)

    def request(self, operation: str) -> st.SearchStrategy[FuzzRequest]:
        return st.builds(FuzzRequest, st.just(operation), self.target(operation), st.sampled_from(TYPE_KINDS),
                         self.body(operation), st.sampled_from((False,) * 19 + (True,)))

    def target(self, operation: str) -> st.SearchStrategy[str | None]:
        def pick(kind: str, other: str) -> str | None:
            return {"op": PREFIX + operation, "unserved": PREFIX + other, "unknown": PREFIX + operation + "X",
                    "none": None, "lower": (PREFIX + operation).lower(), "spaced": f" {PREFIX}{operation} ",
                    "prefix": f"AWSRekognition.{operation}"}[kind]

        return st.builds(pick, st.sampled_from(TARGET_KINDS), st.sampled_from(UNSERVED))

    def body(self, operation: str) -> st.SearchStrategy[bytes]:
        shape = self.model["operations"][operation]["input"]["shape"]
        return st.sampled_from(MODES).flatmap(
            lambda mode: self._memo(("body", mode, operation), lambda: self._body(mode, operation, shape)))

    def _memo(self, key: tuple[str, ...], make: Callable[[], st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
        """The strategy made once for ``key`` (Hypothesis validates each new strategy it draws from)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _body(self, mode: str, operation: str, shape: str) -> st.SearchStrategy[bytes]:
        valid = self.valid(operation, shape, "")
        if mode == "body":
            return not_a_request(valid.map(encode))
        if mode == "one":
            return self.one_mutation(valid, shape).map(encode)
        if mode == "leaves":
            return self.nasty_leaves(valid, shape).map(encode)
        return self.structure(operation, shape, mutate=mode == "many").map(encode)

    # -- mutations of a valid body -----------------------------------------------------------------
    def one_mutation(self, valid: st.SearchStrategy[dict[str, Any]], shape: str) -> st.SearchStrategy[Any]:
        """A valid body with one value anywhere in it replaced, removed, or given an extra member."""

        @st.composite
        def mutate(draw: st.DrawFn) -> Any:
            body = copy.deepcopy(draw(valid))
            path, name = draw(st.sampled_from(list(self.spots(body, shape, ()))))
            action = draw(st.sampled_from(ONE_ACTIONS))
            if not path:
                return {**body, **draw(st.dictionaries(st.text(max_size=12), garbage(), min_size=1, max_size=2))}
            parent = _parent(body, path)
            node = parent[path[-1]]
            if action == "remove":
                del parent[path[-1]]
            elif action == "extra" and isinstance(node, dict):
                node[draw(st.text(max_size=12))] = draw(garbage())
            else:
                parent[path[-1]] = draw(self.mutated(name))
            return body

        return mutate()

    def nasty_leaves(self, valid: st.SearchStrategy[dict[str, Any]], shape: str) -> st.SearchStrategy[Any]:
        """A valid body with some of its numbers or strings replaced by one kind of nasty value."""

        @st.composite
        def mutate(draw: st.DrawFn) -> Any:
            body = copy.deepcopy(draw(valid))
            kinds, values = NASTY[draw(st.sampled_from(sorted(NASTY)))]
            leaves = [p for p, name in self.spots(body, shape, ()) if p and self.shapes[name]["type"] in kinds]
            chosen = [p for p in leaves if draw(st.booleans())] or leaves[:1]
            for path in chosen:
                _parent(body, path)[path[-1]] = draw(values())
            return body

        return mutate()

    def spots(self, value: Any, name: str, path: Where) -> Iterator[tuple[Where, str]]:
        """Every value in ``value`` (of shape ``name``) with its path and shape, the root first."""
        yield path, name
        shape = self.shapes[name]
        if shape["type"] == "structure" and isinstance(value, dict):
            for member, ref in shape["members"].items():
                if member in value:
                    yield from self.spots(value[member], ref["shape"], (*path, member))
        elif shape["type"] == "list" and isinstance(value, list):
            for i, item in enumerate(value):
                yield from self.spots(item, shape["member"]["shape"], (*path, i))
        elif shape["type"] == "map" and isinstance(value, dict):
            for key, item in value.items():
                yield from self.spots(item, shape["value"]["shape"], (*path, key))

    # -- structures ----------------------------------------------------------------------------------
    def structure(self, operation: str, name: str, mutate: bool) -> st.SearchStrategy[dict[str, Any]]:
        """An object of shape ``name``: members valid or absent, or (``mutate``) also mutated, with
        extra members."""
        shape = self.shapes[name]
        required = set(shape.get("required", ()))
        members = {}
        for member, ref in shape["members"].items():
            modes = MEMBER_MODES if mutate else ("valid",) * 2 + (() if member in required else ("absent",))
            members[member] = st.sampled_from(modes).flatmap(
                lambda mode, m=member, s=ref["shape"]: self._member(mode, operation, s, m))
        extra = st.dictionaries(st.one_of(st.text(max_size=12), st.sampled_from(
            ("__type", "collectionId", "COLLECTIONID", "Image ", "Bytes", "MaxFaces\u0000"))), garbage(), max_size=3)
        extras = extra if mutate else st.just({})
        return st.builds(lambda fixed, more: {**more, **{k: v for k, v in fixed.items() if v is not _ABSENT}},
                         st.fixed_dictionaries(members), extras)

    def _member(self, mode: str, operation: str, shape: str, member: str) -> st.SearchStrategy[Any]:
        if mode == "absent":
            return st.just(_ABSENT)
        if mode == "mutated":
            return self.mutated(shape)
        return self.valid(operation, shape, member)

    # -- valid values ----------------------------------------------------------------------------------
    def valid(self, operation: str, shape: str, member: str) -> st.SearchStrategy[Any]:
        return self._memo(("valid", operation, member or shape),
                          lambda: st.deferred(lambda: self._valid(operation, shape, member)))

    def _valid(self, operation: str, name: str, member: str) -> st.SearchStrategy[Any]:
        known = self._known(operation, name)
        if known is not None:
            return known
        shape = self.shapes[name]
        kind = shape["type"]
        if kind == "structure":
            return self.structure(operation, name, mutate=False)
        if kind == "list":
            item = self.valid(operation, shape["member"]["shape"], "")
            return st.lists(item, min_size=shape.get("min", 0), max_size=min(shape.get("max", 4), 4))
        if kind == "map":
            return st.dictionaries(self.valid(operation, shape["key"]["shape"], ""),
                                   self.valid(operation, shape["value"]["shape"], ""), max_size=3)
        if kind == "string":
            return self.text(name)
        if kind in ("integer", "long"):
            return st.integers(shape.get("min", -(2**31)), min(shape.get("max", 2**31 - 1), 10_000))
        if kind in ("float", "double"):
            return st.floats(shape.get("min", -1e6), shape.get("max", 1e6), allow_nan=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "blob":
            return st.binary(min_size=shape.get("min", 0), max_size=64).map(b64)
        return st.none()

    def text(self, name: str) -> st.SearchStrategy[str]:
        shape = self.shapes[name]
        low, high = shape.get("min", 0), shape.get("max", 64)
        if "enum" in shape:
            return st.sampled_from(shape["enum"])
        if "pattern" in shape:
            base = st.from_regex(self._compile(shape["pattern"]), fullmatch=True)
        else:
            base = st.text(min_size=low, max_size=min(high, 64))
        return base.map(lambda s: s[:high]).filter(lambda s: len(s) >= low)

    def _known(self, operation: str, name: str) -> st.SearchStrategy[Any] | None:
        """Names that exist on the server (but never one that the operation would destroy)."""
        fx = self.fixtures
        # Without an operation (the items of a mutated list, say DeleteFaces' FaceIds) a value
        # may land in a delete: a fixture's name there would be a valid delete, not a lost face.
        destroys = not operation or operation.startswith("Delete")
        if name == "Image":
            return self.image()
        if name == "CollectionId":
            mine = st.sampled_from((fx.collection,) * 4 + ("fuzz-nowhere",))
            if operation in ("CreateCollection", "DeleteCollection"):
                mine = st.sampled_from(("fuzz-nowhere", SCRATCH))
            return weighted((4, mine), (1, self.text(name).filter(lambda s: s not in fx.protected)))
        if name == "UserId":
            mine = st.sampled_from((SCRATCH,) if destroys else (*fx.users, SCRATCH))
            return weighted((3, mine), (1, self.text(name).filter(lambda s: s not in fx.protected)))
        if name == "FaceId" and not destroys:
            return st.one_of(st.sampled_from(fx.face_ids), st.uuids().map(str))
        if name == "FaceId":
            return st.uuids().map(str).filter(lambda s: s not in fx.protected)
        if name == "PaginationToken":
            return st.one_of(st.sampled_from(fx.tokens or ("",)), forged_token())
        if name == "S3Bucket":
            return st.sampled_from((fx.bucket,) * 3 + ("no-such-bucket",))
        if name == "S3ObjectName":
            return st.one_of(st.sampled_from(fx.objects + fx.refused),
                             st.sampled_from(("missing.jpg", "../etc/passwd", "/etc", "../outside/face.jpg")))
        return None

    def image(self) -> st.SearchStrategy[dict[str, Any]]:
        fx = self.fixtures
        data = st.sampled_from(fx.images * 3 + fx.junk).map(b64)
        s3 = st.builds(lambda b, n: {"S3Object": {"Bucket": b, "Name": n}},
                       self.valid("", "S3Bucket", ""), self.valid("", "S3ObjectName", ""))
        return weighted((2, data.map(lambda d: {"Bytes": d})), (1, s3))

    # -- mutated values ------------------------------------------------------------------------------
    def mutated(self, name: str) -> st.SearchStrategy[Any]:
        """A value that shape ``name`` does not allow, or one at its edges."""
        return self._memo(("mutated", name), lambda: st.deferred(lambda: self._mutated(name)))

    def _mutated(self, name: str) -> st.SearchStrategy[Any]:
        shape = self.shapes[name]
        kind = shape["type"]
        special: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
            "structure": lambda: self.mutated_structure(name), "list": lambda: self.mutated_list(name),
            "string": lambda: self.mutated_string(name), "integer": lambda: bad_number(shape, integer=True),
            "long": lambda: bad_number(shape, integer=True), "float": lambda: bad_number(shape, False),
            "double": lambda: bad_number(shape, False), "blob": bad_blob}
        own = special.get(kind)
        return weighted((3, own()), (1, wrong_type())) if own else wrong_type()

    def mutated_structure(self, name: str) -> st.SearchStrategy[Any]:
        if name == "Image":
            return self.mutated_image()
        return self.structure("", name, mutate=True)

    def mutated_image(self) -> st.SearchStrategy[Any]:
        fx = self.fixtures
        real = st.sampled_from(fx.images).map(b64)
        bad = st.one_of(st.sampled_from(BAD_BASE64), st.binary(max_size=300).map(b64),
                        st.sampled_from(fx.junk).map(b64))
        s3 = st.fixed_dictionaries({"Bucket": st.one_of(st.just(fx.bucket), self.mutated("S3Bucket")),
                                    "Name": st.one_of(st.sampled_from(fx.objects + fx.refused),
                                                      self.mutated("S3ObjectName"))},
                                   optional={"Version": self.mutated("S3ObjectVersion")})
        both = st.builds(lambda d, o: {"Bytes": d, "S3Object": o}, real, s3)
        empty = st.sampled_from(({}, {"Bytes": None, "S3Object": None}, {"Bytes": "", "S3Object": {}}))
        from_s3 = s3.map(lambda o: {"S3Object": o})
        return weighted((2, bad.map(lambda d: {"Bytes": d})), (3, from_s3), (1, both), (1, empty))

    def mutated_list(self, name: str) -> st.SearchStrategy[Any]:
        """Empty, one over the maximum (or 300 where there is none), bad items, garbage."""
        shape = self.shapes[name]
        item_shape = shape["member"]["shape"]
        item = self.valid("", item_shape, "")
        huge = st.sampled_from((0, shape["max"] + 1 if "max" in shape else 300)).flatmap(
            lambda n: item.map(lambda v: [v] * n))
        return st.one_of(huge, st.lists(st.one_of(item, self.mutated(item_shape)), max_size=5),
                         st.lists(garbage(), max_size=3))

    def mutated_string(self, name: str) -> st.SearchStrategy[Any]:
        shape = self.shapes[name]
        near = [n for n in (shape.get("min", 0) - 1, shape.get("max", 0) + 1) if n >= 0]
        sized = st.sampled_from(near or [0]).map(lambda n: "a" * n)
        enums = st.sampled_from([e.lower() for e in shape.get("enum", ("x",))] + ["", " NONE", "ALL\u0000"])
        return weighted((3, odd_text()), (1, long_text()), (1, sized), (1, enums), (1, st.text(max_size=20)))


def regressions(fx: Fixtures) -> list[FuzzRequest]:
    """Requests that once answered HTTP 500 (issue 9, defect 5), sent by every run: a number
    beyond a double in a decimal field, a lone surrogate in an object name, forged page tokens."""
    def token(value: Any) -> str:
        return base64.urlsafe_b64encode(encode(value)).decode()

    s3 = {"S3Object": {"Bucket": fx.bucket, "Name": fx.objects[0]}}
    bodies = [
        ("SearchFaces", {"CollectionId": fx.collection, "FaceId": fx.face_ids[0], "FaceMatchThreshold": 10**400}),
        ("SearchUsers", {"CollectionId": fx.collection, "UserId": fx.users[0], "UserMatchThreshold": -(10**309)}),
        ("CompareFaces", {"SourceImage": s3, "TargetImage": s3, "SimilarityThreshold": 2**1024}),
        ("DetectText", {"Image": s3, "Filters": {"WordFilter": {"MinConfidence": 10**400}}}),
        ("DetectFaces", {"Image": {"S3Object": {"Bucket": fx.bucket, "Name": "\ud800"}}}),
        ("IndexFaces", {"CollectionId": fx.collection, "Image": {"S3Object": {"Bucket": fx.bucket,
                                                                              "Name": "face.jpg\udc00"}}}),
        ("ListCollections", {"NextToken": token("\ud800")}),
        ("ListCollections", {"NextToken": token(["long", "\ud800"])}),
        ("ListUsers", {"CollectionId": fx.collection, "NextToken": token("\udc00")}),
        ("ListFaces", {"CollectionId": fx.collection, "NextToken": token(10**30)}),
        ("ListFaces", {"CollectionId": fx.collection, "NextToken": token(True)}),
    ]
    return [FuzzRequest(op, PREFIX + op, TYPE_KINDS[0], encode(body)) for op, body in bodies]


def _parent(body: Any, path: Where) -> Any:
    for step in path[:-1]:
        body = body[step]
    return body


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()
