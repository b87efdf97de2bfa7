"""``faceprint audit verify|seal|keygen|export|report|prune``: the audit record from the shell.

``verify`` exits 1 when it finds a problem (after printing its JSON report); ``seal`` countersigns
the current signed head with the operator's offline key (made once with ``keygen``, kept off
the machine) into ``HOME/audit/seals.jsonl``, after verifying the log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from faceprint.errors import InvalidParameterException

COMMANDS: frozenset[str] = frozenset({"audit"})
"""The top-level command names this module adds."""


def add_commands(sub: Any) -> None:
    """Add ``faceprint audit ...`` to the ``faceprint`` parser's subparsers."""
    audit = sub.add_parser("audit", help="the audit record: verify, seal, export, report, prune (docs/audit.md)")
    asub = audit.add_subparsers(dest="audit_command", required=True, parser_class=type(audit))
    p = asub.add_parser("verify", help="check the chain, signed heads and seals; exit status 1 on a problem")
    p.add_argument("--seals", metavar="FILE", help="seals to check (default HOME/audit/seals.jsonl)")
    p.add_argument("--offline-public-key", metavar="FILE", help="the offline public key (PEM or hex) to check "
                   "the seals' signatures with")
    p = asub.add_parser("seal", help="countersign the current signed head with the offline key")
    p.add_argument("--offline-key", metavar="FILE", required=True, help="the offline private key (PEM, from keygen)")
    p.add_argument("--seals", metavar="FILE", help="where to add the seal (default HOME/audit/seals.jsonl)")
    p = asub.add_parser("keygen", help="make an offline Ed25519 key pair for seals (keep the private key off "
                        "this machine)")
    p.add_argument("--out", metavar="FILE", required=True, help="the private key file to write (PEM, 0600); "
                   "the public key goes to FILE.pub")
    p = asub.add_parser("export", help="entries as JSON lines or CSV")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    _filters(p)
    p.add_argument("--out", metavar="FILE", help="write here (0600) instead of standard output")
    p = asub.add_parser("report", help="the accountability report: uses per purpose, actor and collection, "
                        "low-quality searches, review outcomes")
    p.add_argument("--since", help="ISO 8601 time or date (UTC unless it says), or epoch seconds")
    p.add_argument("--until", help="ISO 8601 time or date (UTC unless it says), or epoch seconds")
    p = asub.add_parser("prune", help="remove entries older than the retention, leaving a signed marker")
    p.add_argument("--older-than-days", type=float, required=True,
                   help="remove entries started more than this many days ago (at least the retention, 183 days "
                   "by default)")
    p.add_argument("--force", action="store_true", help="prune even a log that does not verify (the marker says so)")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="ISO 8601 time or date (UTC unless it says), or epoch seconds")
    p.add_argument("--until", help="ISO 8601 time or date (UTC unless it says), or epoch seconds")
    p.add_argument("--actor")
    p.add_argument("--operation")
    p.add_argument("--collection-id")
    p.add_argument("--case")


def run(args: argparse.Namespace) -> Any:
    """Run ``faceprint audit ...``; returns what the CLI prints as JSON (or a ``Printed``)."""
    if args.audit_command == "keygen":
        return _keygen(Path(args.out))
    from faceprint.cli import _faceprint

    fp = _faceprint(args)
    command = args.audit_command
    if command == "verify":
        return _printed(fp.verify_audit(args.seals, args.offline_public_key).to_json())
    if command == "seal":
        return _seal(fp, Path(args.offline_key), args.seals)
    if command == "export":
        return _export(fp, args)
    if command == "report":
        return fp.audit_report(parse_time(args.since, "--since"), parse_time(args.until, "--until"))
    return fp.prune_audit(args.older_than_days, force=args.force)


def _printed(report: dict[str, Any]) -> Any:
    """Print a verification report; the exit status says whether it found a problem."""
    from faceprint.cli_video import Printed

    print(json.dumps(report, indent=2))
    return Printed(0 if report["Ok"] else 1)


def _keygen(out: Path) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from faceprint.audit.signing import public_hex, write_new_key

    if out.exists() or out.with_name(out.name + ".pub").exists():
        raise InvalidParameterException(f"{out} (or {out}.pub) exists already: give another --out.")
    key = Ed25519PrivateKey.generate()
    if not write_new_key(out, key):
        raise InvalidParameterException(f"{out} exists already: give another --out.")
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    out.with_name(out.name + ".pub").write_bytes(pem)
    return {"PrivateKeyFile": str(out), "PublicKeyFile": f"{out}.pub", "PublicKey": public_hex(key.public_key()),
            "Note": "Keep the private key off this machine; give the public key to `faceprint audit verify "
                    "--offline-public-key`."}


def _seal(fp: Any, key_file: Path, seals: str | None) -> Any:
    import time

    from faceprint.audit.signing import load_private, make_seal, write_seal

    try:
        key = load_private(key_file)
    except (OSError, ValueError) as exc:
        raise InvalidParameterException(f"{key_file} is not an Ed25519 private key (PEM): {exc}") from None
    report = fp.verify_audit(seals)
    if not report.ok:
        print("The audit log has problems; it is not sealed.", file=sys.stderr)
        return _printed(report.to_json())
    fp.audit_log.sync()  # what is sealed is on disk first
    head = report.latest_head  # the head verified, not one appended since
    if head is None:
        raise InvalidParameterException("The audit log is empty: there is nothing to seal.")
    seal = make_seal(head.seq, head.hash, head.time, head.signature, fp.audit_log.signer.public, key, time.time())
    write_seal(Path(seals) if seals else fp.audit_log.folder / "seals.jsonl", seal)
    return seal


def _export(fp: Any, args: argparse.Namespace) -> Any:
    from faceprint.audit.export import export
    from faceprint.audit.log import AuditFilter
    from faceprint.cli_video import Printed

    filters = AuditFilter(since=parse_time(args.since, "--since"), until=parse_time(args.until, "--until"),
                          actor=args.actor, operation=args.operation, collection_id=args.collection_id,
                          case=args.case)
    if not args.out:
        export(fp.audit_log, sys.stdout, args.format, filters)
        return Printed(0)
    from faceprint.home import create_private

    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(create_private(tmp), "w", encoding="utf-8", newline="") as stream:
            count = export(fp.audit_log, stream, args.format, filters)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"Exported": count, "File": str(out), "Format": args.format}


def parse_time(value: str | None, name: str) -> float | None:
    """Epoch seconds from ISO 8601 (a date alone is its midnight; UTC unless the text gives a zone)
    or from a number of epoch seconds."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise InvalidParameterException(f"{name} must be a time.")
        return number
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameterException(f"{name} must be an ISO 8601 time (2026-12-01T10:00:00Z) or epoch "
                                        "seconds.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
