"""``faceprint migrate`` (an embedded deployment to PostgreSQL), ``faceprint backup`` / ``restore``
and ``faceprint doctor``: see ``faceprint.ops`` and docs/scale.md, "Moving, backing up, checking"."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from faceprint.backends import INDEX_ENV, STORE_ENV

COMMANDS: frozenset[str] = frozenset({"migrate", "backup", "restore", "doctor"})
"""The top-level command names this module adds."""


def add_commands(sub: Any) -> None:
    p = sub.add_parser("migrate", help="move an embedded deployment (SQLite store and home) to PostgreSQL, "
                                       "without embedding faces again; checks counts and digests")
    p.add_argument("--home", default=argparse.SUPPRESS, help="faceprint home folder")
    p.add_argument("--from", dest="source", metavar="URL",
                   help="the embedded store, sqlite:///PATH (default: the home's faceprint.db)")
    p.add_argument("--to", dest="target", metavar="URL", required=False,
                   help="the PostgreSQL database (postgresql://...; default $FACEPRINT_STORE); an empty one")
    p.add_argument("--no-index", action="store_true",
                   help="do not bring the index (--index, or the home's) up to date from the new store afterwards")
    p.add_argument("--force", action="store_true",
                   help="move video jobs still queued or running as FAILED (their input files are this node's) "
                   "instead of refusing")

    p = sub.add_parser("backup", help="a consistent copy of the home's databases and files and of the store "
                                      "(SQLite online backup; pg_dump for PostgreSQL), taken while it runs")
    p.add_argument("--home", default=argparse.SUPPRESS, help="faceprint home folder")
    p.add_argument("dest", metavar="DEST", help="a new (or empty) folder for the backup")
    p = sub.add_parser("restore", help="put a backup back into a home and its store (--store; an empty target "
                                       "unless --force)")
    p.add_argument("--home", default=argparse.SUPPRESS, help="faceprint home folder")
    p.add_argument("source", metavar="SRC", help="the backup's folder")
    p.add_argument("--force", action="store_true", help="replace what the home and the database hold")
    p = sub.add_parser("doctor", help="check a deployment: store and parts (reachable, schema versions), home "
                                      "databases, index freshness, model files (SHA-256), disk, file modes; "
                                      "exit 0 ok, 2 warnings, 1 failures")
    p.add_argument("--home", default=argparse.SUPPRESS, help="faceprint home folder")
    p.add_argument("--profile", default=argparse.SUPPRESS, help="the model profile whose files to check")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")


def run(args: argparse.Namespace) -> Any:
    from faceprint.service import default_home

    home = Path(args.home) if getattr(args, "home", None) else default_home()
    if args.command == "migrate":
        return _migrate(home, args)
    store = args.store or os.environ.get(STORE_ENV)
    if args.command == "backup":
        from faceprint.ops.backup import backup

        return backup(home, store, Path(args.dest))
    if args.command == "restore":
        from faceprint.ops.restore import restore

        return restore(Path(args.source), home, store, force=args.force)
    return _doctor(home, store, args)


def _doctor(home: Path, store: str | None, args: argparse.Namespace) -> Any:
    import json

    from faceprint.cli_video import Printed
    from faceprint.models.profiles import DEFAULT_PROFILE
    from faceprint.ops.doctor import Deployment, doctor, exit_status, table
    from faceprint.service import default_models_dir

    profile = getattr(args, "profile", None) or os.environ.get("FACEPRINT_PROFILE") or DEFAULT_PROFILE
    found = doctor(Deployment(home, store, args.index or os.environ.get(INDEX_ENV), profile,
                              default_models_dir(home)))
    if args.json:
        print(json.dumps({"Findings": [f.to_dict() for f in found], "Status": exit_status(found)}, indent=2))
    else:
        print(table(found))
    return Printed(exit_status(found))
    raise AssertionError(args.command)


def _migrate(home: Path, args: argparse.Namespace) -> Any:
    from faceprint.ops.migrate import migrate, rebuild_indexes

    target = args.target or os.environ.get(STORE_ENV)
    moved = migrate(home, args.source, target, log=lambda line: print(line, file=sys.stderr), force=args.force)
    out: dict[str, Any] = {"Moved": [m.to_dict() for m in moved]}
    if not args.no_index:
        index = args.index or os.environ.get(INDEX_ENV)
        out["Indexed"] = rebuild_indexes(home, target, index)  # target checked by migrate
    return out
