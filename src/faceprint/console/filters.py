"""Jinja2 filters and globals of the console's templates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from faceprint.audit import fmr

if TYPE_CHECKING:
    import jinja2

    from faceprint.console.app import Console


def install(env: jinja2.Environment, console: Console) -> None:
    profile = console.fp.profile
    env.globals.update(url=console.url, query=lambda **kw: urlencode({k: v for k, v in kw.items() if v}))
    env.filters.update(
        when=when,
        percent=lambda value: "" if value is None else f"{float(value):.1f}",
        rate=lambda similarity: rate_text(profile, similarity),
        one_in=lambda rate: one_in(rate),
        brief=brief,
    )


def when(value: Any) -> str:
    """Epoch seconds or an ISO 8601 text as ``2026-12-02 06:50:12 UTC``."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = str(value)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def rate_text(profile: Any, similarity: Any) -> str:
    """The false-match rate a similarity stands for, in words (``about 1 in 10,000 comparisons``)."""
    if similarity is None:
        return ""
    return fmr.describe_rate(profile, float(similarity))


def brief(details: Any, most: int = 60) -> list[tuple[str, str]]:
    """An entry's details as (key, short text) pairs: each value's JSON cut to ``most`` characters."""
    import json

    if not isinstance(details, dict):
        return []
    out = []
    for key, value in details.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        out.append((str(key), text if len(text) <= most else text[: most - 1] + "…"))
    return out


def one_in(rate: Any) -> str:
    if not rate:
        return ""
    return f"1 in {round(1 / float(rate)):,}"
