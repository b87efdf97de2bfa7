"""Ed25519 signatures of the audit log: the online key signs chain heads, the operator's offline
key countersigns them (seals).

The online key (``HOME/audit/online-ed25519.pem``, PKCS#8 PEM, 0600) is made on first use and
lives beside the log: it shows that a head was written by this faceprint, and so that entries
were not cut off the end once their head was signed. Someone who can write the home can use it
too; the offline key, kept off the machine, is what they cannot use: a seal it makes fixes the
log up to its head for good (``faceprint audit seal``).

The latest head, rewritten by every append, is authenticated with an HMAC-SHA256 tag
(:data:`MAC_PREFIX` and 64 hex digits) under a key derived from the online private key, not with
an Ed25519 signature: it is checked where the online key is, as every verification is, and costs
about a microsecond instead of the signature's 30. The same message, signed with Ed25519, is what
:meth:`OnlineSigner.signed_latest` gives out (a seal countersigns that); checkpoints, seals' heads
and prune markers are Ed25519 signatures as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import re
import threading
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from faceprint.audit.chain import canonical_json
from faceprint.home import create_private, private_folder

HEAD_CONTEXT = b"faceprint-audit-head:v1:"
CHECKPOINT_CONTEXT = b"faceprint-audit-checkpoint:v1:"
SEAL_CONTEXT = b"faceprint-audit-seal:v1:"
PRUNE_CONTEXT = b"faceprint-audit-prune:v1:"
MAC_KEY_CONTEXT = b"faceprint-audit-head-mac-key:v1:"
MAC_PREFIX = "hmac-sha256:"
"""How a latest head's stored signature starts when it is a MAC (then 64 hex digits), not an Ed25519 signature."""


def head_message(seq: int, hash_: str, time_: float, latest: bool = True) -> bytes:
    """What the online key signs of a chain head: as the log's latest head, or (``latest`` False)
    as a checkpoint kept after later entries. The two differ, so that a checkpoint's signature
    cannot stand for a latest head once the entries after it are cut off."""
    context = HEAD_CONTEXT if latest else CHECKPOINT_CONTEXT
    if type(seq) is int and type(time_) is float and math.isfinite(time_) and type(hash_) is str \
            and HEX.fullmatch(hash_):  # what faceprint signs: canonical JSON written straight out
        return context + f'{{"Hash":"{hash_}","Seq":{seq},"Time":{time_!r}}}'.encode("ascii")
    return context + canonical_json({"Seq": seq, "Hash": hash_, "Time": time_}).encode("ascii")


HEX = re.compile("[0-9a-f]*")
"""A hash as the chain writes it (lowercase hex): canonical JSON holds it as it is."""


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_from_hex(text: str) -> Ed25519PublicKey:
    """A public key from its 64 hex digits (ValueError when it is not one)."""
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.strip()))


def verifies(public_key: Ed25519PublicKey | str, signature_hex: str, message: bytes) -> bool:
    """True when ``signature_hex`` is ``public_key``'s signature of ``message`` (False for any junk)."""
    try:
        key = public_from_hex(public_key) if isinstance(public_key, str) else public_key
        key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path`` (ValueError when it holds something else)."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from ``path``: a PEM public key, a PEM private key, or 64 hex digits."""
    data = Path(path).read_bytes()
    if b"PRIVATE KEY" in data:
        return load_private(path).public_key()
    if b"PUBLIC KEY" in data:
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} does not hold an Ed25519 public key")
        return key
    return public_from_hex(data.decode("ascii", "replace"))


def write_new_key(path: Path, key: Ed25519PrivateKey) -> bool:
    """Write ``key`` to ``path`` (0600) unless a file is there already (then False): written to a
    temporary file and linked into place, so a concurrent writer never sees half a key."""
    private_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = create_private(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(private_pem(key))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class OnlineSigner:
    """The online key at ``path``, made on first use; signs heads and prune markers."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._key: Ed25519PrivateKey | None = None
        self._mac_key: bytes | None = None
        self._pads: tuple[Any, Any] | None = None  # SHA-256 states after HMAC's inner and outer key blocks
        self._lock = threading.Lock()

    @property
    def key(self) -> Ed25519PrivateKey:
        """The key (made and written now if there is none; OSError when it cannot be)."""
        if self._key is None:
            with self._lock:
                if self._key is None:
                    if not self.path.exists():
                        write_new_key(self.path, Ed25519PrivateKey.generate())
                    self._key = load_private(self.path)
        return self._key

    def existing_public(self) -> str | None:
        """The public key (hex) if the key exists, without making one."""
        if self._key is None and not self.path.exists():
            return None
        return public_hex(self.key.public_key())

    @property
    def public(self) -> str:
        return public_hex(self.key.public_key())

    def sign(self, message: bytes) -> str:
        return self.key.sign(message).hex()

    def sign_head(self, seq: int, hash_: str, time_: float, latest: bool = True) -> str:
        return self.sign(head_message(seq, hash_, time_, latest))

    @property
    def mac_key(self) -> bytes:
        """The key of latest heads' MACs: SHA-256 of a context and the online private key's raw bytes."""
        if self._mac_key is None:
            raw = self.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                         serialization.NoEncryption())
            self._mac_key = hashlib.sha256(MAC_KEY_CONTEXT + raw).digest()
        return self._mac_key

    def mac_head(self, seq: int, hash_: str, time_: float) -> str:
        """A latest head's stored signature: :data:`MAC_PREFIX` and the HMAC-SHA256 of its message
        (RFC 2104, from SHA-256 states that have taken the padded key already: a third of
        ``hmac.digest``'s time, which sets the key up again for every message)."""
        if self._pads is None:
            block = self.mac_key.ljust(64, b"\0")  # 32 bytes: HMAC pads the key to SHA-256's block
            self._pads = (hashlib.sha256(bytes(b ^ 0x36 for b in block)),
                          hashlib.sha256(bytes(b ^ 0x5C for b in block)))
        inner, outer = self._pads[0].copy(), self._pads[1].copy()
        inner.update(head_message(seq, hash_, time_))
        outer.update(inner.digest())
        return MAC_PREFIX + outer.hexdigest()

    def verifies_head(self, seq: int, hash_: str, time_: float, signature: str, latest: bool = True) -> bool:
        """Whether ``signature`` is this key's of the head: an Ed25519 signature (as the latest head
        or, ``latest`` False, as a checkpoint), or a MAC, which only a latest head has."""
        if isinstance(signature, str) and signature.startswith(MAC_PREFIX):
            return latest and hmac.compare_digest(signature.encode("utf-8", "replace"),
                                                  self.mac_head(seq, hash_, time_).encode("ascii"))
        return verifies(self.key.public_key(), signature, head_message(seq, hash_, time_, latest))

    def signed_latest(self, seq: int, hash_: str, time_: float, signature: str) -> str:
        """The Ed25519 signature of a latest head whose stored signature is ``signature``: itself
        where it is one, else (a MAC) made now (Ed25519 is deterministic: the same each time)."""
        if isinstance(signature, str) and signature.startswith(MAC_PREFIX):
            return self.sign_head(seq, hash_, time_)
        return signature


# -- seals: the offline key's countersignatures of signed heads --------------------------------------

def seal_message(seal: dict) -> bytes:
    """What the offline key signs: the seal without its ``Signature``."""
    return SEAL_CONTEXT + canonical_json({k: v for k, v in seal.items() if k != "Signature"}).encode("ascii")


def make_seal(head_seq: int, head_hash: str, head_time: float, head_signature: str, online_public: str,
              offline_key: Ed25519PrivateKey, sealed_at: float) -> dict:
    """A seal of one signed head: the head, the online key that signed it, the time, the offline
    public key, and the offline key's signature of all that."""
    seal = {"Seq": head_seq, "Hash": head_hash, "HeadTime": head_time, "HeadSignature": head_signature,
            "OnlinePublicKey": online_public, "SealedAt": sealed_at,
            "OfflinePublicKey": public_hex(offline_key.public_key())}
    seal["Signature"] = offline_key.sign(seal_message(seal)).hex()
    return seal


def write_seal(path: Path, seal: dict) -> None:
    """Append ``seal`` to the JSON-lines file ``path`` (private), flushed to disk."""
    private_folder(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as out:
        out.write(canonical_json(seal) + "\n")
        out.flush()
        os.fsync(out.fileno())


def read_seals(path: Path) -> list[dict | str]:
    """The seals in ``path`` (none when it is missing); a line that is not a seal is its error text."""
    if not Path(path).exists():
        return []
    out: list[dict | str] = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                seal = json.loads(line)
            except (ValueError, RecursionError):
                out.append(f"line {number} of {path} is not JSON")
                continue
            missing = [k for k in SEAL_KEYS if k not in seal] if isinstance(seal, dict) else list(SEAL_KEYS)
            out.append(f"line {number} of {path} lacks {', '.join(missing)}" if missing else seal)
    return out


SEAL_KEYS = ("Seq", "Hash", "HeadTime", "HeadSignature", "OnlinePublicKey", "SealedAt", "OfflinePublicKey",
             "Signature")


def prune_message(first_seq: int, last_seq: int, last_hash: str) -> bytes:
    """What the online key signs in a prune marker: the range removed and the last hash removed."""
    return PRUNE_CONTEXT + canonical_json({"FirstSeq": first_seq, "LastSeq": last_seq,
                                           "LastHash": last_hash}).encode("ascii")
