"""The ``faceprint`` commands for erase (to be built)."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS: frozenset[str] = frozenset()
"""The top-level command names this module adds."""


def add_commands(sub: Any) -> None:
    """Add this module's commands to the ``faceprint`` parser's subparsers."""


def run(args: argparse.Namespace) -> Any:
    """Run one of :data:`COMMANDS`; returns what the CLI prints as JSON (or a ``Printed``)."""
    raise NotImplementedError(args.command)
