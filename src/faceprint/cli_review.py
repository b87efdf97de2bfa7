"""``faceprint review request|confirm|reject|inconclusive|show|list`` and ``faceprint
collection-settings get|set``: the review of search candidates and the collections' own settings.

A search's id is its audit entry's id (``X-Faceprint-Audit-Id`` over the wire, ``audit_id`` in
Python, ``Seq`` in ``faceprint audit export``). The reviewer is the OS user running the command;
``--case`` and ``--purpose`` default to the search's.
"""

from __future__ import annotations

import argparse
from typing import Any

from faceprint.errors import InvalidParameterException

COMMANDS: frozenset[str] = frozenset({"review", "collection-settings"})
"""The top-level command names this module adds."""

DECIDING = {"confirm": "CONFIRMED", "reject": "REJECTED", "inconclusive": "INCONCLUSIVE"}


def add_commands(sub: Any) -> None:
    """Add ``review`` and ``collection-settings`` to the ``faceprint`` parser's subparsers."""
    _review_commands(sub)
    _settings_commands(sub)


def _leaf(parent: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p = parent.add_parser(name, help=help_text)
    # --home and --profile may also follow the subcommand; SUPPRESS keeps one given before it
    p.add_argument("--home", default=argparse.SUPPRESS, help="faceprint home folder")
    p.add_argument("--profile", default=argparse.SUPPRESS, help="model profile: accurate (default) or fast")
    return p


def _declared(p: argparse.ArgumentParser) -> None:
    p.add_argument("--case", help="case reference (default: the search's)")
    p.add_argument("--purpose", help="purpose (default: the search's)")


def _review_commands(sub: Any) -> None:
    review = sub.add_parser("review", help="review search candidates: a match is a candidate until people confirm it")
    rsub = review.add_subparsers(dest="review_command", required=True, parser_class=type(review))
    p = _leaf(rsub, "request", "put a search's candidates in the review queue")
    p.add_argument("--search-id", type=int, required=True, help="the search's audit entry id")
    p.add_argument("--face-ids", nargs="+", help="the candidates to review (default: all of them)")
    _declared(p)
    for name, decision in DECIDING.items():
        p = _leaf(rsub, name, f"mark one candidate of a search {decision} (recorded in the audit log)")
        p.add_argument("--search-id", type=int, required=True, help="the search's audit entry id")
        p.add_argument("--face-id", required=True, help="the candidate's face id (user id for SearchUsers)")
        p.add_argument("--note", help="why (kept in the audit log)")
        _declared(p)
    p = _leaf(rsub, "show", "every candidate of a search and its review")
    p.add_argument("--search-id", type=int, required=True)
    p = _leaf(rsub, "list", "the review queue, oldest first")
    p.add_argument("--status", choices=["pending", "awaiting-second", "confirmed", "rejected", "inconclusive"])
    p.add_argument("--collection-id")
    p.add_argument("--max-results", type=int, default=100)
    p.add_argument("--next-token")


def _settings_commands(sub: Any) -> None:
    settings = sub.add_parser("collection-settings",
                              help="a collection's own settings: two-person rule, face crops, face retention")
    ssub = settings.add_subparsers(dest="settings_command", required=True, parser_class=type(settings))
    p = _leaf(ssub, "get", "a collection's settings")
    p.add_argument("--collection-id", required=True)
    p = _leaf(ssub, "set", "change a collection's settings (recorded in the audit log)")
    p.add_argument("--collection-id", required=True)
    p.add_argument("--two-person-rule", choices=["true", "false"],
                   help="a candidate is confirmed only once two different reviewers confirm it")
    p.add_argument("--keep-face-crops", choices=["true", "false"],
                   help="IndexFaces keeps a thumbnail of each face (erased with the face)")
    p.add_argument("--face-retention-days", metavar="DAYS|none",
                   help="faces older than this are deleted by `faceprint retention apply` (none: kept)")
    p.add_argument("--case", help="case reference")
    p.add_argument("--purpose", help="purpose")


def run(args: argparse.Namespace) -> Any:
    """Run ``review`` or ``collection-settings``; returns what the CLI prints as JSON."""
    from faceprint.cli import _faceprint

    fp = _faceprint(args)
    if args.command == "collection-settings":
        return _settings(fp, args)
    command = args.review_command
    if command == "request":
        return fp.request_review(args.search_id, args.face_ids, purpose=args.purpose, case=args.case)
    if command in DECIDING:
        return fp.review_candidate(args.search_id, args.face_id, DECIDING[command], args.note,
                                   purpose=args.purpose, case=args.case)
    if command == "show":
        return fp.get_review(args.search_id)
    return fp.list_reviews(args.status, args.collection_id, args.max_results, args.next_token)


def _settings(fp: Any, args: argparse.Namespace) -> Any:
    from faceprint.audit.settings import KEEP

    if args.settings_command == "get":
        return fp.describe_collection_settings(args.collection_id)
    return fp.update_collection_settings(
        args.collection_id, two_person_rule=_flag(args.two_person_rule), keep_face_crops=_flag(args.keep_face_crops),
        face_retention_days=KEEP if args.face_retention_days is None else _days(args.face_retention_days),
        purpose=args.purpose, case=args.case)


def _flag(value: str | None) -> bool | None:
    return None if value is None else value == "true"


def _days(value: str) -> int | None:
    if value.lower() == "none":
        return None
    if not (value.isascii() and value.isdigit()):
        raise InvalidParameterException("--face-retention-days must be a number of days or none.")
    return int(value) if len(value) <= 6 else -1  # checked against the range where it is set
