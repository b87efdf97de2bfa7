"""``faceprint erase --external-image-id X | --user-id U [--collection-id C]`` (remove one person
everywhere: every collection, video results, stream events, stored probes and crops; an ``Erase``
audit entry says what was erased; ``--compact``: then rewritten, see faceprint.compaction),
``faceprint compact [--collection-id C]`` and ``faceprint retention apply`` (delete the faces older than
their collection's face retention period; ``faceprint collection-settings set
--face-retention-days``). See docs/privacy.md.
"""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS: frozenset[str] = frozenset({"erase", "retention", "compact"})
"""The top-level command names this module adds."""


def add_commands(sub: Any) -> None:
    """Add ``erase`` and ``retention`` to the ``faceprint`` parser's subparsers."""
    p = _common(sub.add_parser("erase", help="remove one person everywhere: faces, user, crops, video results, "
                                             "stream events and stored probes (recorded in the audit log)"))
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--external-image-id", help="the person's ExternalImageId: every face indexed with it")
    who.add_argument("--user-id", help="the person's UserId: the user and its faces")
    p.add_argument("--collection-id", help="only in this collection (default: every collection)")
    p.add_argument("--case", help="the case reference this is for (kept in the audit record)")
    p.add_argument("--purpose", help="why this is done, e.g. an erasure request (kept in the audit record)")
    p.add_argument("--compact", action="store_true",
                   help="then rewrite the collections it erased from and the crops and probes tables (PostgreSQL "
                   "store: the bytes leave the database files now, not at a later rewrite)")
    p = _common(sub.add_parser("compact", help="PostgreSQL store: rewrite collections and the crops and probes "
                                               "tables so that deleted faces' bytes leave the database files now"))
    p.add_argument("--collection-id", action="append", help="only this collection (repeatable; default: every one)")
    retention = sub.add_parser("retention", help="collections' face retention periods")
    rsub = retention.add_subparsers(dest="retention_command", required=True, parser_class=type(retention))
    _common(rsub.add_parser("apply", help="delete the faces older than their collection's face retention period "
                                          "(recorded in the audit log as RetentionDeleted)"))


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    # --home and --profile may also follow the subcommand; SUPPRESS keeps one given before it
    p.add_argument("--home", default=argparse.SUPPRESS, help="faceprint home folder")
    p.add_argument("--profile", default=argparse.SUPPRESS, help="model profile: accurate (default) or fast")
    return p


def run(args: argparse.Namespace) -> Any:
    """Run ``erase`` or ``retention apply``; returns what the CLI prints as JSON."""
    from faceprint.cli import _faceprint

    fp = _faceprint(args)
    if args.command == "compact":
        return fp.compact(args.collection_id)
    if args.command == "erase":
        erased = fp.erase(args.external_image_id, args.user_id, args.collection_id, purpose=args.purpose,
                          case=args.case)
        if args.compact:
            erased["Compacted"] = fp.compact([c["CollectionId"] for c in erased["Collections"]])
        return erased
    return fp.apply_retention()
