"""The movers of the home's parts that have a PostgreSQL twin (see ``faceprint.ops.migrate``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def part_movers(home: Path, target: str) -> list[Callable[[], Any]]:
    """Each part's mover, in order; a part whose home files do not exist is still moved (as empty)."""
    return []
