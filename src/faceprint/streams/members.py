"""The members of the stream processor requests, checked as Rekognition's model says (names,
types, patterns, limits) and as faceprint offers them: each function answers the member as stored,
or raises ``InvalidParameterException`` with a short message (a request's size never shows in it,
a URL in it is redacted)."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faceprint.errors import InvalidParameterException
from faceprint.faces import validate_percent
from faceprint.streams.config import show as _shown

PROCESSOR_NAME = re.compile(r"[a-zA-Z0-9_.\-]{1,128}")
COLLECTION_ID = re.compile(r"[a-zA-Z0-9_.\-]{1,255}")
ROLE_ARN = re.compile(r"arn:aws:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-/]{1,2000}")
FRAGMENT_NUMBER = re.compile(r"[0-9]{1,128}")
MAX_REGIONS = 10
MAX_POLYGON_POINTS = 10
MAX_TIMESTAMP = 2**63 - 1
EDGE = 1e-6
"""How far past the image's edge a region's box may reach (rounding in a client's arithmetic)."""


def only(value: Any, allowed: tuple[str, ...], where: str, required: tuple[str, ...] = ()) -> Mapping:
    if not isinstance(value, Mapping):
        raise InvalidParameterException(f"{where} must be an object with {' or '.join(allowed)}.")
    unknown = sorted((_shown(k, 64) for k in value if k not in allowed), key=str)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise InvalidParameterException(f"{where} has unknown member(s) {shown}; allowed: {', '.join(allowed)}.")
    missing = [k for k in required if value.get(k) is None]
    if missing:
        raise InvalidParameterException(f"{where} needs {', '.join(missing)}.")
    return value


def arn_member(value: Any, where: str, member: str) -> str:
    outer = only(value, (member,), where, required=(member,))
    inner = only(outer[member], ("Arn",), f"{where}.{member}", required=("Arn",))
    return inner["Arn"]


def refuse_unsupported(tags: Any, channel: Any, kms_key_id: Any) -> None:
    if tags:
        raise InvalidParameterException("faceprint does not store stream processor Tags; create it without them.")
    if channel is not None:
        raise InvalidParameterException("NotificationChannel is for ConnectedHome (label detection) processors; "
                                        "face search records go to Output.KinesisDataStream.")
    if kms_key_id is not None:
        raise InvalidParameterException("KmsKeyId is not offered: faceprint keeps nothing of the frames to encrypt "
                                        "(frames are kept only as match snapshots, by a sink that asks for them).")


def pattern(where: str, value: Any, regex: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not regex.fullmatch(value):
        raise InvalidParameterException(f"{where} {_shown(value)} does not match {regex.pattern}.")
    return value


def integer(where: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        top = f" to {high}" if high is not None else " or more"
        raise InvalidParameterException(f"{where} must be an integer from {low}{top}, got {_shown(value)}.")
    return value


def _number(value: Any, where: str, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameterException(f"{where} must be a number from {low:g} to {high:g}.")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidParameterException(f"{where} must be a number from {low:g} to {high:g}, got {_shown(value)}.")
    return number


def percent(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameterException(f"{where} must be a number from 0 to 100.")
    return validate_percent(where, value)


def check_regions(regions: Any, where: str) -> list[dict[str, Any]]:
    """Regions of interest (faceprint's extension for face search): at most 10, each a BoundingBox
    (Width, Height, Left, Top in 0..1, inside the image) or a Polygon of 3 to 10 points (X, Y in 0..1)."""
    if not isinstance(regions, list) or len(regions) > MAX_REGIONS:
        raise InvalidParameterException(f"{where} must be a list of at most {MAX_REGIONS} regions.")
    return [_region(region, f"{where}[{i}]") for i, region in enumerate(regions)]


def _region(region: Any, where: str) -> dict[str, Any]:
    only(region, ("BoundingBox", "Polygon"), where)
    if ("BoundingBox" in region) == ("Polygon" in region):
        raise InvalidParameterException(f"{where} needs exactly one of BoundingBox and Polygon.")
    if "Polygon" in region:
        points = region["Polygon"]
        if not isinstance(points, list) or not 3 <= len(points) <= MAX_POLYGON_POINTS:
            raise InvalidParameterException(f"{where}.Polygon must be a list of 3 to {MAX_POLYGON_POINTS} points.")
        return {"Polygon": [_point(p, f"{where}.Polygon[{i}]") for i, p in enumerate(points)]}
    box = only(region["BoundingBox"], ("Width", "Height", "Left", "Top"), f"{where}.BoundingBox",
                required=("Width", "Height", "Left", "Top"))
    out = {k: _number(box[k], f"{where}.BoundingBox.{k}") for k in ("Width", "Height", "Left", "Top")}
    if out["Width"] <= 0 or out["Height"] <= 0:
        raise InvalidParameterException(f"{where}.BoundingBox has no area.")
    if out["Left"] + out["Width"] > 1 + EDGE or out["Top"] + out["Height"] > 1 + EDGE:
        raise InvalidParameterException(f"{where}.BoundingBox reaches past the image (Left + Width and "
                                        "Top + Height must be at most 1).")
    return {"BoundingBox": out}


def _point(point: Any, where: str) -> dict[str, float]:
    only(point, ("X", "Y"), where, required=("X", "Y"))
    return {"X": _number(point["X"], f"{where}.X"), "Y": _number(point["Y"], f"{where}.Y")}


def sharing(value: Any, where: str) -> dict[str, bool]:
    only(value, ("OptIn",), where, required=("OptIn",))
    if not isinstance(value["OptIn"], bool):
        raise InvalidParameterException(f"{where}.OptIn must be true or false.")
    return {"OptIn": value["OptIn"]}


def start_selector(value: Any) -> dict[str, Any]:
    outer = only(value, ("KVSStreamStartSelector",), "StartSelector", required=("KVSStreamStartSelector",))
    where = "StartSelector.KVSStreamStartSelector"
    inner = only(outer["KVSStreamStartSelector"], ("ProducerTimestamp", "FragmentNumber"), where)
    if ("ProducerTimestamp" in inner) == ("FragmentNumber" in inner):
        raise InvalidParameterException(f"{where} needs exactly one of ProducerTimestamp and FragmentNumber.")
    if "ProducerTimestamp" in inner:
        return {"KVSStreamStartSelector": {"ProducerTimestamp": integer(
            f"{where}.ProducerTimestamp", inner["ProducerTimestamp"], 0, MAX_TIMESTAMP)}}
    fragment = pattern(f"{where}.FragmentNumber", inner["FragmentNumber"], FRAGMENT_NUMBER)
    return {"KVSStreamStartSelector": {"FragmentNumber": fragment}}


def stop_selector(value: Any) -> dict[str, Any]:
    inner = only(value, ("MaxDurationInSeconds",), "StopSelector", required=("MaxDurationInSeconds",))
    return {"MaxDurationInSeconds": integer("StopSelector.MaxDurationInSeconds", inner["MaxDurationInSeconds"], 1, 120)}


def threshold_update(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, Mapping) and "ConnectedHomeForUpdate" in value:
        raise InvalidParameterException("SettingsForUpdate.ConnectedHomeForUpdate is not offered: faceprint has no "
                                        "label model. Use FaceSearchForUpdate (a faceprint extension).")
    outer = only(value, ("FaceSearchForUpdate",), "SettingsForUpdate")
    if "FaceSearchForUpdate" not in outer:
        return None
    inner = only(outer["FaceSearchForUpdate"], ("FaceMatchThreshold",), "SettingsForUpdate.FaceSearchForUpdate",
                 required=("FaceMatchThreshold",))
    return percent("FaceMatchThreshold", inner["FaceMatchThreshold"])


def parameters_to_delete(value: Any) -> set[str]:
    if value is None:
        return set()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameterException("ParametersToDelete must be a list of parameter names.")
    if "ConnectedHomeMinConfidence" in value:
        raise InvalidParameterException("ParametersToDelete: ConnectedHomeMinConfidence is for ConnectedHome "
                                        "processors, which faceprint does not offer.")
    unknown = sorted(set(value) - {"RegionsOfInterest"})
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        shown = ", ".join(_shown(u) for u in unknown[:5]) + more
        raise InvalidParameterException(f"ParametersToDelete has unknown parameter(s) {shown}; allowed: "
                                        "RegionsOfInterest.")
    return set(value)


@dataclass(frozen=True)
class Update:
    """An UpdateStreamProcessor's changes, checked (:meth:`of`); :meth:`apply` gives a processor's new
    request members. ``regions``: the new regions ([] or ``clear_regions``: none)."""

    threshold: float | None = None
    regions: list[dict[str, Any]] | None = None
    sharing: dict[str, bool] | None = None
    clear_regions: bool = False

    @classmethod
    def of(cls, settings: Any, regions: Any, sharing_: Any, to_delete: Any) -> Update:
        deleted = parameters_to_delete(to_delete)
        update = cls(threshold=threshold_update(settings),
                     regions=check_regions(regions, "RegionsOfInterestForUpdate") if regions is not None else None,
                     sharing=sharing(sharing_, "DataSharingPreferenceForUpdate") if sharing_ is not None else None,
                     clear_regions="RegionsOfInterest" in deleted)
        if update.regions is not None and update.clear_regions:
            raise InvalidParameterException("RegionsOfInterestForUpdate and ParametersToDelete [\"RegionsOfInterest\"] "
                                            "contradict each other: give one.")
        if update == cls():
            raise InvalidParameterException("Nothing to update: give SettingsForUpdate, RegionsOfInterestForUpdate, "
                                            "DataSharingPreferenceForUpdate or ParametersToDelete.")
        return update

    def apply(self, request: dict[str, Any]) -> dict[str, Any]:
        new = copy.deepcopy(request)
        if self.threshold is not None:
            new["Settings"]["FaceSearch"]["FaceMatchThreshold"] = self.threshold
        if self.regions is not None or self.clear_regions:
            new.pop("RegionsOfInterest", None)
        if self.regions:
            new["RegionsOfInterest"] = self.regions
        if self.sharing is not None:
            new["DataSharingPreference"] = self.sharing
        return new
