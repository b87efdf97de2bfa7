"""Verification of the audit log: the chain, the signed heads, prune markers and seals.

Finds, and names by seq:
- ``edited``: an entry whose content no longer matches its hash, or whose link to the next breaks
  (changed and rehashed), or whose indexed columns disagree with it; a chain that differs from
  the one a signed head or seal fixed (rewritten from some entry on);
- ``missing``: a gap in the seqs, or a start after seq 1 that no signed prune marker accounts for;
- ``reordered``: an entry found at another entry's seq;
- ``truncated``: a signed head or a seal names a seq past the last entry, or the last signed head
  is a checkpoint (the latest head was removed with the entries after it);
- ``bad-signature``: a head, prune marker or seal whose signature does not verify, or entries
  after the last signed head (written without faceprint).

An append that finds the stored chain not ending at the latest signed head writes an
``AuditChainBroken`` entry first (``faceprint.audit.log.BROKEN``), so that what it found stays in
the chain once a new head is signed over it: each is reported as one of the kinds above.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from faceprint.audit.chain import GENESIS, link
from faceprint.audit.config import DEFAULT_RETENTION_DAYS
from faceprint.audit.log import BROKEN, AuditLog, SignedHead, as_text
from faceprint.audit.signing import (
    OnlineSigner,
    head_message,
    prune_message,
    public_hex,
    read_seals,
    seal_message,
    verifies,
)

DAY = 86400.0

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
    latest_head: SignedHead | None = None
    """The latest signed head as verified (what ``faceprint audit seal`` countersigns)."""

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
    prunes: list[tuple[int, Any, dict]] = field(default_factory=list)  # seq, started, details
    breaks: list[tuple[int, dict]] = field(default_factory=list)


def verify(log: AuditLog, seals: Path | str | None = None,
           offline_public_key: Ed25519PublicKey | str | None = None, max_problems: int = MAX_PROBLEMS, *,
           minimum_days: float = DEFAULT_RETENTION_DAYS, now: float | None = None) -> VerifyReport:
    """Check ``log``: every entry against its hash and its neighbours, the signed heads (with the
    online key), prune markers, and the seals in ``seals`` (default ``seals.jsonl`` beside the
    log), their offline signatures checked with ``offline_public_key`` when given (else with the
    key each seal names, which shows only that the seal is whole). A prune marker must keep the
    retention (``minimum_days``), be no later than ``now`` (default: the log's clock), and remove
    no sealed entry signed after its cutoff."""
    problems = _Problems(max_problems)
    online = log.signer.existing_public()
    seal_list = read_seals(Path(seals) if seals is not None else log.folder / "seals.jsonl")
    with log.snapshot():  # the heads and the entries as of one moment
        heads = log.signed_heads()
        wanted = {h.seq for h in heads} | {s["Seq"] for s in seal_list
                                           if isinstance(s, dict) and isinstance(s["Seq"], int)}
        scan = _scan(log.rows(), wanted, log.index_top(), problems)
    _check_start(scan, online, problems)
    _check_breaks(scan, problems)
    notes: list[str] = []
    signer = log.signer if online is not None else None
    _check_heads(scan, heads, signer, problems)
    offline = public_hex(offline_public_key) if isinstance(offline_public_key, Ed25519PublicKey) else offline_public_key
    sealed, whole = _check_seals(scan, seal_list, online, offline, problems)
    _check_prunes(scan, whole, minimum_days, log.clock() if now is None else now, problems)
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
                        online_public_key=online, more_problems=problems.more, notes=notes,
                        latest_head=_latest(log, heads, signer))


def _scan(rows: Iterator[tuple], wanted: set[int], top: int, problems: _Problems) -> _Scan:
    """One pass over the rows; their filter-index columns are checked up to the index's ``top``
    (the entries after it are not indexed yet)."""
    scan = _Scan()
    prev: tuple[int, str] | None = None  # the previous row's seq and stored hash
    prev_moved = False
    for seq, stored_body, stored_prev, stored_hash, *columns in rows:
        body, prev_hash, hash_ = as_text(stored_body), as_text(stored_prev), as_text(stored_hash)
        scan.entries += 1
        if scan.first is None:
            scan.first = (seq, prev_hash)
        moved, fields = _check_row(seq, body, prev_hash, hash_, columns if seq <= top else None, problems)
        if fields is None and columns[1] in ("Prune", BROKEN):
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
            scan.prunes.append((seq, fields.get("Started"), fields.get("Details") or {}))
        elif fields is not None and fields.get("Operation") == BROKEN:
            scan.breaks.append((seq, fields.get("Details") or {}))
        prev, prev_moved = (seq, hash_), moved
    scan.last = prev
    return scan


def _fields(body: str) -> dict | None:
    try:
        fields = json.loads(body)
    except (ValueError, TypeError, RecursionError):  # not JSON, not text, nested past Python's stack
        return None
    return fields if isinstance(fields, dict) else None


def _agrees(seq: int, body: str, columns: list) -> bool:
    """The quick check of a row (no parsing): its body, in the canonical form faceprint writes,
    holds its seq and its indexed columns' values where they belong. False: look closer."""
    started, operation, actor, collection_id, case = columns
    if not all(isinstance(v, str | None) for v in (operation, actor, collection_id, case)) \
            or not isinstance(started, float):
        return False  # an edited column of another type: the slow path names it
    dumps = json.dumps
    return (body.startswith('{"Actor":' + dumps(actor) + ',"ActorKind":')
            and (',"Case":' + dumps(case) + ',"CollectionId":' + dumps(collection_id) + ',"CollectionSize":') in body
            and (',"Operation":' + dumps(operation) + ',"ProbeQuality":') in body
            and body.startswith(f',"Seq":{seq},"Started":{started!r},"Threshold":', body.rfind(',"Seq":')))


def _check_row(seq: int, body: str, prev_hash: str, hash_: str, columns: list | None,
               problems: _Problems) -> tuple[bool, dict | None]:
    """One row on its own: whether it holds another seq's entry (reordered), and its parsed body
    (None when the quick check passed and it was not parsed, or when it is not JSON). ``columns``:
    its filter-index row (None: the entry is past the index's top, so there is none to check)."""
    if columns is not None and _agrees(seq, body, columns):
        if link(prev_hash, body) != hash_:
            problems.add(seq, "edited", f"entry {seq} was changed: its content does not match its hash")
        return False, None
    fields = _fields(body)
    if fields is not None and type(fields.get("Seq")) is int and fields["Seq"] != seq:
        problems.add(seq, "reordered", f"the entry at seq {seq} is entry {fields.get('Seq')}: entries were moved")
        return True, fields
    if fields is None or link(prev_hash, body) != hash_:
        problems.add(seq, "edited", f"entry {seq} was changed: its content does not match its hash")
    elif columns is None:
        pass
    elif not any(v is not None for v in columns) and any(fields.get(name) is not None for name, _ in COLUMNS):
        problems.add(seq, "edited", f"entry {seq} was taken out of the filter index: queries would not find it")
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
    for marker_seq, _, details in scan.prunes:
        if details.get("LastSeq") == seq - 1 and details.get("LastHash") == prev_hash:
            ok = online is not None and verifies(online, str(details.get("Signature", "")), prune_message(
                details.get("FirstSeq", 0), details["LastSeq"], details["LastHash"]))
            if not ok:
                problems.add(marker_seq, "bad-signature", f"the prune marker at seq {marker_seq} is not signed by "
                             "the online key")
            return
    _missing(1, seq - 1, problems)


def _check_heads(scan: _Scan, heads: list[SignedHead], online: OnlineSigner | None, problems: _Problems) -> None:
    """Each signed head against the chain: the last must be signed as the latest head (a
    checkpoint's signature does not stand for one), the others as either."""
    last = scan.last[0] if scan.last else 0
    first = scan.first[0] if scan.first else 1
    good = first - 1  # the last seq known good from heads
    for n, head in enumerate(heads):
        final = n == len(heads) - 1
        if not (_signed(head, online, True) or (not final and _signed(head, online, False))):
            _bad_head(head, final and head.seq <= last and _signed(head, online, False), problems)
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
    if not heads and not last and online is not None:
        problems.add(1, "truncated", "the log holds no entry and no signed head, but its online key exists: "
                     "its entries were removed (or its first entry could not be written)")


def _signed(head: SignedHead, online: OnlineSigner | None, latest: bool) -> bool:
    """Whether the online key signed ``head`` as the latest head (``latest``: with Ed25519 or its
    MAC) or as a checkpoint (Ed25519 only)."""
    return online is not None and online.verifies_head(head.seq, head.hash, head.time, head.signature, latest)


def _latest(log: AuditLog, heads: list[SignedHead], online: OnlineSigner | None) -> SignedHead | None:
    """The last head, with its Ed25519 signature where it verifies as the latest head (what a seal
    countersigns: a MAC is no signature that the online public key checks)."""
    if not heads:
        return None
    return log.ed25519(heads[-1]) if _signed(heads[-1], online, True) else heads[-1]


def _bad_head(head: SignedHead, checkpoint_last: bool, problems: _Problems) -> None:
    if checkpoint_last:
        problems.add(head.seq + 1, "truncated", f"the last signed head, at seq {head.seq}, is a checkpoint: the "
                     "latest head was removed, and with it the entries after it")
    else:
        problems.add(head.seq, "bad-signature", f"the signed head at seq {head.seq} does not verify with the "
                     "online key")


def _check_breaks(scan: _Scan, problems: _Problems) -> None:
    """The :data:`~faceprint.audit.log.BROKEN` entries: an append found the chain not ending at its
    latest signed head."""
    for seq, details in scan.breaks:
        signed, found = _position(details.get("SignedHead")), _position(details.get("LastEntry"))
        said = (f"when entry {seq} was written, the latest signed head named "
                f"{'no entry' if signed is None else f'seq {signed[0]}'} but the log ended at "
                f"{'no entry' if found is None else f'seq {found[0]}'}")
        if signed is None:
            problems.add(seq, "bad-signature", f"{said}: the signed heads were removed")
        elif found is None or signed[0] > found[0]:
            problems.add((found[0] if found else 0) + 1, "truncated", f"{said}: entries were removed")
        elif signed[0] < found[0]:
            problems.add(signed[0] + 1, "bad-signature", f"{said}: entries were added without faceprint")
        else:
            problems.add(signed[0], "edited", f"{said}, another entry than the one signed: entries were rewritten")


def _position(value: Any) -> tuple[int, str] | None:
    if not isinstance(value, dict) or type(value.get("Seq")) is not int:
        return None
    return value["Seq"], str(value.get("Hash"))


def _check_seals(scan: _Scan, seals: list[dict | str], online: str | None, offline: str | None,
                 problems: _Problems) -> tuple[int | None, list[dict]]:
    """The last seq the seals fix, and the seals whose signatures verify."""
    last = scan.last[0] if scan.last else 0
    first = scan.first[0] if scan.first else 1
    sealed: int | None = None
    whole: list[dict] = []
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
        whole.append(seal)
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
    return sealed, whole


def _check_prunes(scan: _Scan, seals: list[dict], minimum_days: float, now: float, problems: _Problems) -> None:
    """Each prune marker: it kept the retention (``OlderThanDays`` at least ``minimum_days``), it is
    not dated after ``now``, and no seal fixes an entry it removed that was signed after its cutoff
    (its time less ``OlderThanDays``; a day's grace for entries that started long before they ended)."""
    for seq, started, details in scan.prunes:
        days, first, last = details.get("OlderThanDays"), details.get("FirstSeq"), details.get("LastSeq")
        if not _number(started) or not _number(days) or type(first) is not int or type(last) is not int:
            problems.add(seq, "edited", f"the prune marker at seq {seq} lacks its time, age or range")
            continue
        if days < minimum_days:
            problems.add(first, "missing", f"the prune marker at seq {seq} removed entries {first} to {last} "
                         f"younger than {days:g} days, under the retention of {minimum_days:g} days")
        if started > now + DAY:
            problems.add(seq, "edited", f"the prune marker at seq {seq} is dated {_when(started)}, in the future")
        cutoff = started - days * DAY
        late = sorted(s["Seq"] for s in seals if first <= s["Seq"] <= last and _number(s["HeadTime"])
                      and s["HeadTime"] > cutoff + DAY)
        if late:
            problems.add(late[0], "missing", f"the prune marker at seq {seq} removed sealed entries (seq "
                         f"{', '.join(map(str, late))}) that were written after its cutoff, {_when(cutoff)}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)




def _when(epoch: Any) -> str:
    from faceprint.audit.log import iso

    try:
        return f"at {iso(float(epoch))}"
    except (TypeError, ValueError, OverflowError, OSError):
        return "at an unreadable time"
