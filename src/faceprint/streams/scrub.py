"""Camera URLs and sink specs hold passwords and tokens: keeping them out of texts (error messages,
log lines, tracebacks) that a library may have written them into, whole or in parts.

:func:`scrub` replaces each secret text by what may be shown of it (the redacted URL, a sink's
display form, ``***`` for a password or a query); :class:`ScrubSecrets` does it to every record a
logging handler writes (message and traceback), with the secrets of a :class:`StreamConfig` as they
are now (a camera added while the host runs included).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from faceprint.errors import FaceprintError
from faceprint.streams.config import HIDDEN, parse_sink, redact

if TYPE_CHECKING:
    from faceprint.streams.config import StreamConfig

Pairs = list[tuple[str, str]]
"""(secret text, what to show instead) pairs."""
SHORTEST = 4
"""Parts of a URL shorter than this are not replaced on their own (a user 'u' would take every 'u' of a text)."""


def url_secrets(url: str, shown: str, *, path: bool = False) -> Pairs:
    """``url`` (shown as ``shown``) and its parts that are secret on their own, hidden as ``***``:
    its password and user name (also percent-decoded and -encoded), its query and, with ``path`` (webhooks, whose
    path is often the secret), its path."""
    pairs = [(url, shown)]
    try:
        parts = urlsplit(url) if "://" in url else None
        pieces = [parts.password, parts.username, parts.query, parts.path if path else None] if parts else []
    except ValueError:
        pieces = []
    for piece in pieces:
        for text in {piece, unquote(piece), quote(piece, safe="")} if piece else ():
            if len(text) >= SHORTEST:
                pairs.append((text, HIDDEN))
    return pairs


def scrub(text: str, pairs: Iterable[tuple[str, str]]) -> str:
    """``text`` with each secret of ``pairs`` replaced (the longest first, so that a URL is replaced
    whole before its password is looked for)."""
    for secret, shown in sorted(pairs, key=lambda pair: len(pair[0]), reverse=True):
        if secret and secret in text:
            text = text.replace(secret, shown)
    return text


def config_secrets(sources: Mapping[str, str], data_streams: Mapping[str, Sequence[str]]) -> Pairs:
    """The secrets of a stream configuration: its camera URLs and its sink specs (with their URLs)."""
    pairs: Pairs = []
    for url in sources.values():
        pairs += url_secrets(url, redact(url))
    for specs in data_streams.values():
        for text in specs:
            try:
                spec = parse_sink(text)
            except FaceprintError:
                pairs.append((text, HIDDEN))
                continue
            pairs.append((text, spec.display()))
            if spec.kind != "file" and spec.target != "aws":
                pairs += url_secrets(spec.target, spec.display(), path=spec.kind == "webhook")
    return pairs


class ScrubSecrets(logging.Filter):
    """A handler's filter: every record's message and traceback without the secrets ``secrets()``
    names (asked again at most every ``refresh`` seconds; the last answer kept if it fails)."""

    def __init__(self, secrets: Callable[[], Pairs], refresh: float = 1.0) -> None:
        super().__init__()
        self.secrets = secrets
        self.refresh = refresh
        self._pairs: Pairs = []
        self._asked = float("-inf")

    def pairs(self) -> Pairs:
        now = time.monotonic()
        if now - self._asked >= self.refresh:
            self._asked = now
            with contextlib.suppress(Exception):  # a config file being rewritten: the last secrets known
                self._pairs = self.secrets()
        return self._pairs

    def filter(self, record: logging.LogRecord) -> bool:
        pairs = self.pairs()
        if not pairs:
            return True
        record.msg, record.args = scrub(record.getMessage(), pairs), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, pairs)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, pairs)
        return True


def scrub_logs(config: StreamConfig) -> ScrubSecrets:
    """Scrub the secrets of ``config`` (a :class:`faceprint.streams.config.StreamConfig`) from what
    every handler of the root logger writes."""
    scrubber = ScrubSecrets(lambda: config_secrets(config.sources(), config.data_streams()))
    for handler in logging.getLogger().handlers:
        handler.addFilter(scrubber)
    return scrubber
