"""Operator profiles: a detector and a recogniser the operator supplies, described by a TOML file.

The format (``docs/models.md``, "Operator profiles")::

    name = "buffalo_l"                      # [a-z0-9][a-z0-9._-]*, at most 64; not a built-in's
    version = "insightface-buffalo_l-0.7"   # becomes part of the collections' face_model_version
    licence = "insightface-non-commercial"  # `faceprint models add --accept-licence` must repeat it
    description = "..."                     # optional

    [detector]
    kind = "scrfd"            # or "yunet": faceprint's own YuNet (then no file nor sha256)
    file = "det_10g.onnx"     # a path: absolute, or relative to the TOML file (or to --from DIR)
    sha256 = "..."            # 64 hex digits
    score_threshold = 0.5     # optional, (0, 1]
    nms_threshold = 0.4       # optional, (0, 1]
    max_side = 1920           # optional, 320..8192: larger pictures are scaled down for the detector

    [recogniser]
    kind = "arcface"          # five-point aligned crop -> one vector
    file = "w600k_r50.onnx"
    sha256 = "..."
    input_size = 112          # optional (default 112), square, 16..1024
    mean = [127.5, 127.5, 127.5]   # optional: (pixel - mean) / std per channel, in `colour` order
    std = [127.5, 127.5, 127.5]
    colour = "RGB"            # or "BGR": the channel order the network wants
    layout = "NCHW"           # or "NHWC"
    template = "arcface"      # the five-point alignment template (only "arcface")
    output_dim = 512          # the vector's length, 1..4096

Unknown keys are refused (a misspelt key must not silently fall back to a default), and every
value is checked here, before any file is read. Parsing never touches the model files; the
registry (``faceprint.models.registry``) resolves, hashes and loads them.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from faceprint.errors import InvalidParameterException

BUILT_IN_NAMES = frozenset({"accurate", "fast"})
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
LICENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+:-]{0,127}")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
SHA256 = re.compile(r"[0-9a-f]{64}")
RESERVED_FILES = frozenset({"profile.toml", "calibration.json", "registration.json"})
"""Names the profile's folder keeps for itself."""
MAX_TOML_BYTES = 64 * 1024
DETECTOR_KINDS = ("scrfd", "yunet")
RECOGNISER_KINDS = ("arcface",)


@dataclass(frozen=True)
class DetectorSpec:
    kind: str
    file: str = ""
    """The file's name in the profile's folder ("" for YuNet, faceprint's own)."""
    sha256: str = ""
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    max_side: int = 1920
    source: str = field(default="", compare=False)
    """Where the operator's TOML said the file is (as written); not part of the identity."""


@dataclass(frozen=True)
class RecogniserSpec:
    kind: str
    file: str
    sha256: str
    input_size: int = 112
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    colour: str = "RGB"
    layout: str = "NCHW"
    template: str = "arcface"
    output_dim: int = 512
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class OperatorSpec:
    """One operator profile, as validated from its TOML."""

    name: str
    version: str
    licence: str
    detector: DetectorSpec
    recogniser: RecogniserSpec
    description: str = ""

    @property
    def face_model_version(self) -> str:
        """What collections indexed with this profile record: its name and version, and the first
        12 hex digits of each file's SHA-256, so that other weights under the same name never pass
        for the same model."""
        det = self.detector
        det_part = "yunet-2023mar" if det.kind == "yunet" else f"{det.kind} {det.file} {det.sha256[:12]}"
        rec = self.recogniser
        return f"operator:{self.name}/{self.version} ({det_part}, {rec.kind} {rec.file} {rec.sha256[:12]})"

    def files(self) -> dict[str, tuple[str, str, str]]:
        """role -> (file name in the profile's folder, SHA-256, source as written) of the files it needs."""
        out = {}
        if self.detector.kind != "yunet":
            out["detector"] = (self.detector.file, self.detector.sha256, self.detector.source)
        out["recogniser"] = (self.recogniser.file, self.recogniser.sha256, self.recogniser.source)
        return out

    def to_toml(self) -> str:
        """The canonical TOML of this profile (file names only, no sources): what the registry keeps."""
        det, rec = self.detector, self.recogniser
        lines = [f"name = {_q(self.name)}", f"version = {_q(self.version)}", f"licence = {_q(self.licence)}"]
        if self.description:
            lines.append(f"description = {_q(self.description)}")
        lines += ["", "[detector]", f"kind = {_q(det.kind)}"]
        if det.kind != "yunet":
            lines += [f"file = {_q(det.file)}", f"sha256 = {_q(det.sha256)}"]
        lines += [f"score_threshold = {det.score_threshold!r}", f"nms_threshold = {det.nms_threshold!r}",
                  f"max_side = {det.max_side}", "", "[recogniser]", f"kind = {_q(rec.kind)}",
                  f"file = {_q(rec.file)}", f"sha256 = {_q(rec.sha256)}", f"input_size = {rec.input_size}",
                  f"mean = [{', '.join(repr(v) for v in rec.mean)}]", f"std = [{', '.join(repr(v) for v in rec.std)}]",
                  f"colour = {_q(rec.colour)}", f"layout = {_q(rec.layout)}", f"template = {_q(rec.template)}",
                  f"output_dim = {rec.output_dim}"]
        return "\n".join(lines) + "\n"


def parse_profile(text: str | bytes, where: str = "profile") -> OperatorSpec:
    """The validated :class:`OperatorSpec` of a profile's TOML text; InvalidParameterException
    naming ``where`` and the offending key otherwise."""
    if len(text) > MAX_TOML_BYTES:
        raise InvalidParameterException(f"{where}: a profile file is at most {MAX_TOML_BYTES} bytes.")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidParameterException(f"{where}: not UTF-8 text.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidParameterException(f"{where}: not valid TOML: {exc}") from None
    return _Reader(where).profile(data)


class _Reader:
    """Reads one profile's tables, naming the offending key in every error."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, message: str) -> InvalidParameterException:
        return InvalidParameterException(f"{self.where}: {key} {message}")

    def profile(self, data: dict[str, Any]) -> OperatorSpec:
        self.only(data, "", {"name", "version", "licence", "description", "detector", "recogniser"})
        name = self.text(data, "", "name", pattern=NAME, hint="lower-case letters, digits, '.', '_' or '-'")
        if name in BUILT_IN_NAMES:
            raise self.fail("name", f"{name!r} is a built-in profile's name; choose another.")
        version = self.text(data, "", "version", limit=100)
        licence = self.text(data, "", "licence", pattern=LICENCE,
                            hint="letters, digits and . _ + : - (no spaces: it is typed as --accept-licence)")
        description = self.text(data, "", "description", limit=300, default="")
        det = self.detector(self.table(data, "detector"))
        rec = self.recogniser(self.table(data, "recogniser"))
        if det.file and det.file == rec.file:
            raise self.fail("[detector] file", "and [recogniser] file must have different names.")
        return OperatorSpec(name, version, licence, det, rec, description)

    def detector(self, t: dict[str, Any]) -> DetectorSpec:
        s = "[detector] "
        self.only(t, s, {"kind", "file", "sha256", "score_threshold", "nms_threshold", "max_side"})
        kind = self.choice(t, s, "kind", DETECTOR_KINDS)
        if kind == "yunet":
            if "file" in t or "sha256" in t:
                raise self.fail(s + "file", "and sha256 are not given for kind \"yunet\" (faceprint's own YuNet).")
            file = sha = source = ""
        else:
            file, source = self.file(t, s)
            sha = self.digest(t, s)
        return DetectorSpec(kind, file, sha,
                            self.number(t, s, "score_threshold", 0.5, 0.0, 1.0, low_open=True),
                            self.number(t, s, "nms_threshold", 0.4, 0.0, 1.0, low_open=True),
                            int(self.number(t, s, "max_side", 1920, 320, 8192, integer=True)), source)

    def recogniser(self, t: dict[str, Any]) -> RecogniserSpec:
        s = "[recogniser] "
        self.only(t, s, {"kind", "file", "sha256", "input_size", "mean", "std", "colour", "layout",
                         "template", "output_dim"})
        kind = self.choice(t, s, "kind", RECOGNISER_KINDS)
        file, source = self.file(t, s)
        return RecogniserSpec(
            kind, file, self.digest(t, s),
            input_size=int(self.number(t, s, "input_size", 112, 16, 1024, integer=True)),
            mean=self.triple(t, s, "mean", 127.5, positive=False),
            std=self.triple(t, s, "std", 127.5, positive=True),
            colour=self.choice(t, s, "colour", ("RGB", "BGR"), default="RGB"),
            layout=self.choice(t, s, "layout", ("NCHW", "NHWC"), default="NCHW"),
            template=self.choice(t, s, "template", ("arcface",), default="arcface"),
            output_dim=int(self.number(t, s, "output_dim", 512, 1, 4096, integer=True)),
            source=source)

    # -- single values ---------------------------------------------------------------------------
    def only(self, t: dict[str, Any], section: str, allowed: set[str]) -> None:
        unknown = sorted(set(t) - allowed)
        if unknown:
            raise self.fail(section + unknown[0][:40],
                            f"is not a profile key; expected one of {', '.join(sorted(allowed))}.")

    def table(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key)
        if not isinstance(value, dict):
            raise self.fail(f"[{key}]", "table is required.")
        return value

    def text(self, t: dict[str, Any], section: str, key: str, *, pattern: re.Pattern[str] | None = None,
             hint: str = "", limit: int = 0, default: str | None = None) -> str:
        value = t.get(key, default)
        if value is None:
            raise self.fail(section + key, "is required.")
        if not isinstance(value, str):
            raise self.fail(section + key, "must be a string.")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(section + key, f"{value[:80]!r} is not allowed: {hint}.")
        if limit and (len(value) > limit or any(ord(c) < 32 or ord(c) == 127 for c in value)):
            raise self.fail(section + key, f"must be at most {limit} printable characters.")
        if pattern is None and not value.strip() and default is None:
            raise self.fail(section + key, "must not be empty.")
        return value

    def choice(self, t: dict[str, Any], section: str, key: str, allowed: tuple[str, ...],
               default: str | None = None) -> str:
        value = t.get(key, default)
        if value not in allowed:
            shown = repr(value)[:40] if value is not None else "missing"
            raise self.fail(section + key, f"must be one of {', '.join(allowed)} (is {shown}).")
        return str(value)

    def file(self, t: dict[str, Any], section: str) -> tuple[str, str]:
        """(the file's name in the profile's folder, the path as written)."""
        source = self.text(t, section, "file", limit=4096)
        name = PurePath(source).name
        if not FILE_NAME.fullmatch(name) or name in RESERVED_FILES:
            raise self.fail(section + "file", f"{name[:80]!r}: the file's name must be letters, digits and . _ + - "
                                              f"(not {', '.join(sorted(RESERVED_FILES))}).")
        return name, source

    def digest(self, t: dict[str, Any], section: str) -> str:
        value = t.get("sha256")
        if not isinstance(value, str) or not SHA256.fullmatch(value.lower()):
            raise self.fail(section + "sha256", "must be the file's SHA-256: 64 hex digits.")
        return value.lower()

    def number(self, t: dict[str, Any], section: str, key: str, default: float, low: float, high: float, *,
               integer: bool = False, low_open: bool = False) -> float:
        value = t.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) \
                or not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            kind = "an integer" if integer else "a number"
            raise self.fail(section + key, f"must be {kind} in {'(' if low_open else '['}{low:g}, {high:g}].")
        return value

    def triple(self, t: dict[str, Any], section: str, key: str, default: float,
               positive: bool) -> tuple[float, float, float]:
        value = t.get(key, [default] * 3)
        if not isinstance(value, list) or len(value) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and (v > 0 if positive else 0 <= v <= 255) for v in value):
            rule = "positive numbers" if positive else "numbers in [0, 255]"
            raise self.fail(section + key, f"must be a list of three {rule}, one per channel.")
        return (float(value[0]), float(value[1]), float(value[2]))


def _q(value: str) -> str:
    """A TOML basic string."""
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{out}"'
