"""Verification of the audit log: the chain, the signed heads, prune markers and seals.

Finds, and names by seq:
- ``edited``: an entry whose content no longer matches its hash, or whose link to the next breaks
  (changed and rehashed), or whose indexed columns disagree with it; a chain that differs from
  the one a signed head or seal fixed (rewritten from some entry on);
- ``missing``: a gap in the seqs, or a start after seq 1 that no signed prune marker accounts for;
- ``reordered``: an entry found at another entry's seq;
- ``truncated``: a signed head or a seal names a seq past the last entry;
- ``bad-signature``: a head, prune marker or seal whose signature does not verify, or entries
  after the last signed head (written without faceprint).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from faceprint.audit.chain import GENESIS, link
from faceprint.audit.log import AuditLog, SignedHead
from faceprint.audit.signing import head_message, prune_message, public_hex, read_seals, seal_message, verifies

MAX_PROBLEMS = 1000
"""Problems listed at most (the count goes on)."""

COLUMNS = (("Started", 4), ("Operation", 5), ("Actor", 6), ("CollectionId", 7), ("Case", 8))
"""Body fields and their indexed column in a row of ``AuditLog.rows``."""


@dataclass(frozen=True)
class Problem:
    seq: int | None
    kind: str  # "edited" | "missing" | "reordered" | "truncated" | "bad-signature"
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"Seq": self.seq, "Kind": self.kind, "Message": self.message}


@dataclass
class VerifyReport:
    ok: bool
    entries: int
    problems: list[Problem]
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    heads_checked: int = 0
    seals_checked: int = 0
    sealed_through: int | None = None
    online_public_key: str | None = None
    more_problems: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"Ok": self.ok, "Entries": self.entries, "FirstSeq": self.first_seq, "LastSeq": self.last_seq,
                "HeadHash": self.head_hash, "SignedHeadsChecked": self.heads_checked,
                "SealsChecked": self.seals_checked, "SealedThrough": self.sealed_through,
                "OnlinePublicKey": self.online_public_key, "Problems": [p.to_json() for p in self.problems],
                "MoreProblems": self.more_problems, "Notes": self.notes}


class _Problems:
    def __init__(self, most: int) -> None:
        self.items: list[Problem] = []
        self.more = 0
        self.most = most

    def add(self, seq: int | None, kind: str, message: str) -> None:
        if len(self.items) < self.most:
            self.items.append(Problem(seq, kind, message))
        else:
            self.more += 1


@dataclass
class _Scan:
    """What the pass over the entries keeps: the first row, the hashes at checked seqs, prune markers."""

    entries: int = 0
    first: tuple[int, str] | None = None  # seq, prev_hash
    last: tuple[int, str] | None = None   # seq, hash
    hashes: dict[int, str] = field(default_factory=dict)
    prunes: list[tuple[int, dict]] = field(default_factory=list)


def verify(log: AuditLog, seals: Path | str | None = None,
           offline_public_key: Ed25519PublicKey | str | None = None, max_problems: int = MAX_PROBLEMS) -> VerifyReport:
    """Check ``log``: every entry against its hash and its neighbours, the signed heads (with the
    online key), prune markers, and the seals in ``seals`` (default ``seals.jsonl`` beside the
    log), their offline signatures checked with ``offline_public_key`` when given (else with the
    key each seal names, which shows only that the seal is whole)."""
    problems = _Problems(max_problems)
    online = log.signer.existing_public()
    seal_list = read_seals(Path(seals) if seals is not None else log.folder / "seals.jsonl")
    with log.snapshot():  # the heads and the entries as of one moment
        heads = log.signed_heads()
        wanted = {h.seq for h in heads} | {s["Seq"] for s in seal_list
                                           if isinstance(s, dict) and isinstance(s["Seq"], int)}
        scan = _scan(log.rows(), wanted, problems)
    _check_start(scan, online, problems)
    notes: list[str] = []
    _check_heads(scan, heads, online, problems)
    offline = public_hex(offline_public_key) if isinstance(offline_public_key, Ed25519PublicKey) else offline_public_key
    sealed = _check_seals(scan, seal_list, online, offline, problems)
    if seal_list and offline is None:
        notes.append("Seals were checked against the offline public key each names; give the offline public key "
                     "(--offline-public-key) to check that they are yours.")
    if not seal_list:
        notes.append("No seals: entries cut off the end together with their signed heads would not show. "
                     "Seal the log with the offline key (faceprint audit seal) now and then.")
    listed = sorted(problems.items, key=lambda p: (p.seq is None, p.seq or 0))
    return VerifyReport(ok=not listed, entries=scan.entries, problems=listed,
                        first_seq=scan.first[0] if scan.first else None, last_seq=scan.last[0] if scan.last else None,
                        head_hash=scan.last[1] if scan.last else None, heads_checked=len(heads),
                        seals_checked=sum(isinstance(s, dict) for s in seal_list), sealed_through=sealed,
                        online_public_key=online, more_problems=problems.more, notes=notes)


def _scan(rows: Iterator[tuple], wanted: set[int], problems: _Problems) -> _Scan:
    scan = _Scan()
    prev: tuple[int, str] | None = None  # the previous row's seq and stored hash
    prev_moved = False
    for seq, body, prev_hash, hash_, *columns in rows:
        scan.entries += 1
        if scan.first is None:
            scan.first = (seq, prev_hash)
        moved, fields = _check_row(seq, body, prev_hash, hash_, columns, problems)
        if fields is None and columns[1] == "Prune":
            fields = _fields(body)
        if prev is not None and not moved and not prev_moved:
            if seq != prev[0] + 1:
                _missing(prev[0] + 1, seq - 1, problems)
            elif prev_hash != prev[1]:
                problems.add(prev[0], "edited", f"entry {prev[0]} was changed and rehashed: entry {seq} "
                             "no longer links to it")
        if seq in wanted:
            scan.hashes[seq] = hash_
        if fields is not None and fields.get("Operation") == "Prune":
            scan.prunes.append((seq, fields.get("Details") or {}))
        prev, prev_moved = (seq, hash_), moved
    scan.last = prev
    return scan


def _fields(body: str) -> dict | None:
    try:
        fields = json.loads(body)
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


def _agrees(seq: int, body: str, columns: list) -> bool:
    """The quick check of a row (no parsing): its body, in the canonical form faceprint writes,
    holds its seq and its indexed columns' values where they belong. False: look closer."""
    started, operation, actor, collection_id, case = columns
    dumps = json.dumps
    return (body.startswith('{"Actor":' + dumps(actor) + ',"ActorKind":')
            and (',"Case":' + dumps(case) + ',"CollectionId":' + dumps(collection_id) + ',"CollectionSize":') in body
            and (',"Operation":' + dumps(operation) + ',"ProbeQuality":') in body
            and body.startswith(f',"Seq":{seq},"Started":{started!r},"Threshold":', body.rfind(',"Seq":')))


def _check_row(seq: int, body: str, prev_hash: str, hash_: str, columns: list,
               problems: _Problems) -> tuple[bool, dict | None]:
    """One row on its own: whether it holds another seq's entry (reordered), and its parsed body
    (None when the quick check passed and it was not parsed, or when it is not JSON)."""
    if _agrees(seq, body, columns):
        if link(prev_hash, body) != hash_:
            problems.add(seq, "edited", f"entry {seq} was changed: its content does not match its hash")
        return False, None
    fields = _fields(body)
    if fields is not None and fields.get("Seq") != seq:
        problems.add(seq, "reordered", f"the entry at seq {seq} is entry {fields.get('Seq')}: entries were moved")
        return True, fields
    if fields is None or link(prev_hash, body) != hash_:
        problems.add(seq, "edited", f"entry {seq} was changed: its content does not match its hash")
    elif any(fields.get(name) != columns[i - 4] for name, i in COLUMNS):
        differ = [name for name, i in COLUMNS if fields.get(name) != columns[i - 4]]
        problems.add(seq, "edited", f"entry {seq} was changed: its indexed {', '.join(differ)} differ from "
                     "its content")
    return False, fields


def _missing(first: int, last: int, problems: _Problems) -> None:
    what = f"entry {first} is" if first == last else f"entries {first} to {last} are"
    problems.add(first, "missing", f"{what} missing")


def _check_start(scan: _Scan, online: str | None, problems: _Problems) -> None:
    """A log that starts after seq 1 must do so where a signed prune marker says it was cut."""
    if scan.first is None:
        return
    seq, prev_hash = scan.first
    if seq == 1:
        if prev_hash != GENESIS and not any(p.seq == 1 for p in problems.items):
            problems.add(1, "edited", "entry 1 was changed: it does not start the chain")
        return
    for marker_seq, details in scan.prunes:
        if details.get("LastSeq") == seq - 1 and details.get("LastHash") == prev_hash:
            ok = online is not None and verifies(online, str(details.get("Signature", "")), prune_message(
                details.get("FirstSeq", 0), details["LastSeq"], details["LastHash"]))
            if not ok:
                problems.add(marker_seq, "bad-signature", f"the prune marker at seq {marker_seq} is not signed by "
                             "the online key")
            return
    _missing(1, seq - 1, problems)


def _check_heads(scan: _Scan, heads: list[SignedHead], online: str | None, problems: _Problems) -> None:
    last = scan.last[0] if scan.last else 0
    first = scan.first[0] if scan.first else 1
    good = first - 1  # the last seq known good from heads
    for head in heads:
        if online is None or not verifies(online, head.signature, head_message(head.seq, head.hash, head.time)):
            problems.add(head.seq, "bad-signature", f"the signed head at seq {head.seq} does not verify with the "
                         "online key")
            continue
        if head.seq > last:
            problems.add(last + 1, "truncated", f"the log ends at seq {last} but a head signed "
                         f"{_when(head.time)} names seq {head.seq}: entries {last + 1} to {head.seq} were removed")
        elif head.seq < first or head.seq not in scan.hashes:
            continue  # pruned, or missing (said already)
        elif scan.hashes[head.seq] != head.hash:
            problems.add(head.seq, "edited", f"the chain at seq {head.seq} is not the one signed "
                         f"{_when(head.time)}: entries {good + 1} to {head.seq} were rewritten")
        else:
            good = head.seq
    if heads and heads[-1].seq < last:
        problems.add(heads[-1].seq + 1, "bad-signature", f"entries {heads[-1].seq + 1} to {last} have no signed "
                     "head: they were not written by faceprint")
    if not heads and last:
        problems.add(first, "bad-signature", "no entry has a signed head")


def _check_seals(scan: _Scan, seals: list[dict | str], online: str | None, offline: str | None,
                 problems: _Problems) -> int | None:
    last = scan.last[0] if scan.last else 0
    first = scan.first[0] if scan.first else 1
    sealed: int | None = None
    for seal in seals:
        if isinstance(seal, str):
            problems.add(None, "bad-signature", f"a seal cannot be read: {seal}")
            continue
        seq = seal["Seq"]
        key = offline or str(seal["OfflinePublicKey"])
        if not isinstance(seq, int) or str(seal["OfflinePublicKey"]) != key or not verifies(
                key, str(seal["Signature"]), seal_message(seal)):
            problems.add(seq if isinstance(seq, int) else None, "bad-signature",
                         f"the seal of seq {seq} is not signed by the offline key")
            continue
        if seal["OnlinePublicKey"] != online or not verifies(str(seal["OnlinePublicKey"]), str(seal["HeadSignature"]),
                                                             head_message(seq, seal["Hash"], seal["HeadTime"])):
            problems.add(seq, "bad-signature", f"the seal of seq {seq} names another online key or head signature: "
                         "the online key was replaced")
            continue
        if seq > last:
            problems.add(last + 1, "truncated", f"the log ends at seq {last} but a seal of {_when(seal['SealedAt'])} "
                         f"names seq {seq}: entries {last + 1} to {seq} were removed")
        elif seq < first or seq not in scan.hashes:
            continue  # pruned, or missing (said already)
        elif scan.hashes[seq] != seal["Hash"]:
            problems.add(seq, "edited", f"the chain at seq {seq} is not the one sealed {_when(seal['SealedAt'])}: "
                         f"entries up to {seq} were rewritten")
        else:
            sealed = max(sealed or 0, seq)
    return sealed


def _when(epoch: Any) -> str:
    from faceprint.audit.log import iso

    try:
        return f"at {iso(float(epoch))}"
    except (TypeError, ValueError, OverflowError, OSError):
        return "at an unreadable time"
