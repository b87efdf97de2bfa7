"""The AWS-style identity of a faceprint home: a 12-digit account id and collection ARNs.

Each home gets one random account id the first time it needs one (``HOME/account-id``, mode
0600), kept for good, so a collection's ARN stays the same across restarts:
``arn:aws:rekognition:REGION:ACCOUNT:collection/ID``, with the server's ``--region``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from faceprint.errors import FaceprintError, InvalidParameterException
from faceprint.home import private_folder

ACCOUNT_FILE = "account-id"
DEFAULT_REGION = "us-east-1"
REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
"""A region name as botocore accepts one (``us-east-1``, ``eu-west-3``, ...)."""
ACCOUNT = re.compile(r"[1-9][0-9]{11}")
PARTITIONS = (("cn-", "aws-cn"), ("us-gov-", "aws-us-gov"), ("us-isob-", "aws-iso-b"), ("us-iso-", "aws-iso"))


def check_region(region: str) -> str:
    if not isinstance(region, str) or not REGION.fullmatch(region):
        raise InvalidParameterException(f"The region {region!r} is not a region name such as {DEFAULT_REGION}.")
    return region


def partition(region: str) -> str:
    """The ARN partition of a region: ``aws`` but for the China, GovCloud and ISO regions."""
    return next((name for prefix, name in PARTITIONS if region.startswith(prefix)), "aws")


def account_id(home: Path) -> str:
    """The home's account id, made (and stored, 0600) the first time."""
    path = home / ACCOUNT_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = _create(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise FaceprintError(f"Cannot read the account id in {path}: {exc}") from None
    if not ACCOUNT.fullmatch(text.strip()):
        raise FaceprintError(f"The account id file {path} is damaged: it should hold 12 digits.")
    return text.strip()


def _create(path: Path) -> str:
    """Write a new account id where none is, atomically: the first process to link its file wins."""
    private_folder(path.parent)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{ACCOUNT_FILE}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(f"{secrets.randbelow(9 * 10**11) + 10**11}\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs is the one
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return path.read_text()


class CollectionArns:
    """``arns(collection_id)``: the collection's ARN in ``region``, with the account id of ``home``
    (read on first use), or the one ``account`` gives (a deployment's shared id: several nodes)."""

    def __init__(self, home: Path, region: str = DEFAULT_REGION, account: Callable[[], str] | None = None) -> None:
        self.home = home
        self.region = check_region(region)
        self._source = account or (lambda: account_id(self.home))
        self._account: str | None = None
        self._lock = threading.Lock()

    @property
    def account(self) -> str:
        if self._account is None:
            with self._lock:
                if self._account is None:
                    self._account = self._source()
        return self._account

    def __call__(self, collection_id: str) -> str:
        return f"arn:{partition(self.region)}:rekognition:{self.region}:{self.account}:collection/{collection_id}"
