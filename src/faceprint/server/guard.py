"""The connection guard: what uvicorn's HTTP/1.1 protocol lacks against slow and idle clients.

uvicorn (h11) closes a keep-alive connection idle between requests, but it has no deadline for a
request's headers: a connection that sends nothing, or half a request line, is held for ever,
and a thousand of them exhaust the process's file handles. :class:`GuardedH11Protocol` is
uvicorn's own ``H11Protocol`` (so HTTP parsing, ASGI and graceful shutdown stay uvicorn's) with

- a header deadline: from a connection's start (TLS handshake included), or from the end of its
  previous answer, its next request's headers must be complete within ``header_timeout``; else
  the connection is closed (with a 408 ``RequestTimeoutException`` if part of a request came);
- the idle deadline between requests: uvicorn's keep-alive timeout, set to ``idle_timeout``;
- a send deadline: a client that reads nothing of its answers while the socket's buffers are full
  (uvicorn then waits, a request in progress, for it to read) is dropped after ``send_timeout``;
- connection caps per worker process, total and per client address: past a cap, the connection
  that has waited longest for its next request's headers (from that address, for the per-address
  cap) is closed to make room; if none is waiting (every connection has a request in progress),
  the new connection is closed at once, unanswered;
- at shutdown, long-lived answers (Server-Sent Events) are told to end at once (the app's
  ``faceprint.stopping`` event), so that they do not hold the graceful shutdown to its timeout;
- TLS made here (asyncio's ``start_tls``) rather than by uvicorn, so that a connection counts
  against the caps and its header deadline from the moment it is accepted, handshake included.

:class:`GuardedConfig` carries the settings to each worker process (uvicorn pickles its Config
for them); its ``load()``, run in each process, makes that process's connection table.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from faceprint.errors import InvalidParameterException
from faceprint.server.events import STOPPING
from faceprint.server.protocol import Reply, RequestTimeoutException, response_headers


@dataclass(frozen=True)
class GuardSettings:
    header_timeout: float = 10.0
    """Seconds from a connection's start, or from the end of its previous answer, until the next
    request's headers are complete."""
    idle_timeout: float = 5.0
    """Seconds a keep-alive connection may wait, silent, for its next request."""
    send_timeout: float = 30.0
    """Seconds the server may wait, its writes paused, for a client to read what it was sent."""
    max_connections: int = 4096
    """Connections per worker process."""
    max_connections_per_ip: int = 0
    """Connections per client address and worker process (0: no cap)."""
    tls_cert: str | None = None
    tls_key: str | None = None


def tls_context(settings: GuardSettings) -> ssl.SSLContext | None:
    """The server's TLS context (None without a certificate); a clear error for files that do not load."""
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if not settings.tls_cert or not settings.tls_key:
        raise InvalidParameterException("--tls-cert and --tls-key go together: give both (PEM files).")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except FileNotFoundError as exc:
        raise InvalidParameterException(f"No such file: {exc.filename or settings.tls_cert!r} "
                                        "(--tls-cert and --tls-key name PEM files).") from None
    except (ssl.SSLError, OSError) as exc:
        raise InvalidParameterException(f"Cannot load the TLS certificate {settings.tls_cert!r} with the key "
                                        f"{settings.tls_key!r}: {exc.strerror or exc} (both must be PEM files, "
                                        "the key unencrypted and matching the certificate).") from None
    return context


class ConnectionTable:
    """One worker process's connections: how many, from which address, and which are waiting for
    their next request's headers (oldest first: the first to give way at a cap)."""

    def __init__(self, settings: GuardSettings) -> None:
        self.max_total = settings.max_connections
        self.max_per_ip = settings.max_connections_per_ip
        self.members: dict[GuardedH11Protocol, str] = {}
        self.per_ip: Counter[str] = Counter()
        self.waiting: dict[GuardedH11Protocol, None] = {}

    def admit(self, conn: GuardedH11Protocol, ip: str) -> bool:
        """Count ``conn`` in, closing a waiting connection to make room if a cap is reached; False
        if there is no room (``conn`` is then not counted)."""
        if self.max_per_ip and self.per_ip[ip] >= self.max_per_ip and not self._evict(ip):
            return False
        if len(self.members) >= self.max_total and not self._evict(None):
            return False
        self.members[conn] = ip
        self.per_ip[ip] += 1
        return True

    def release(self, conn: GuardedH11Protocol) -> None:
        """Count ``conn`` out (again: no effect)."""
        ip = self.members.pop(conn, None)
        self.waiting.pop(conn, None)
        if ip is not None:
            self.per_ip[ip] -= 1
            if not self.per_ip[ip]:
                del self.per_ip[ip]

    def set_waiting(self, conn: GuardedH11Protocol, waiting: bool) -> None:
        if not waiting:
            self.waiting.pop(conn, None)
        elif conn in self.members:
            self.waiting.setdefault(conn, None)

    def _evict(self, ip: str | None) -> bool:
        victim = next((c for c in self.waiting if ip is None or self.members[c] == ip), None)
        if victim is None:
            return False
        self.release(victim)
        victim.drop(answer=False)
        return True


class GuardedConfig(uvicorn.Config):
    """uvicorn's Config serving :class:`GuardedH11Protocol` with ``guard``'s settings."""

    def __init__(self, app: Any, guard: GuardSettings, **kwargs: Any) -> None:
        # no WebSocket upgrades: an upgraded connection would leave this protocol, and its count
        kwargs |= {"http": GuardedH11Protocol, "ws": "none", "timeout_keep_alive": guard.idle_timeout}
        super().__init__(app, **kwargs)
        self.guard = guard
        self.table: ConnectionTable | None = None
        self.tls: ssl.SSLContext | None = None

    def load(self) -> None:
        super().load()  # in the process that serves: each worker has its own table
        self.table = ConnectionTable(self.guard)
        self.tls = tls_context(self.guard)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's H11Protocol under :class:`ConnectionTable`'s caps and the header deadline."""

    def __init__(self, config: GuardedConfig, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert config.table is not None
        self.table = config.table
        self.tls = config.tls
        self.header_timeout = config.guard.header_timeout
        self.send_timeout = config.guard.send_timeout
        self.raw: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.stalled: asyncio.TimerHandle | None = None
        """The send deadline, while writing is paused."""
        self.handshake: asyncio.Task[None] | None = None
        self.early: list[bytes] = []
        """Bytes that came with the end of the TLS handshake, before ``start_tls`` returned."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.raw = transport
        peer = transport.get_extra_info("peername")
        if not self.table.admit(self, peer[0] if isinstance(peer, tuple) else ""):
            transport.close()
            return
        self._await_headers(True)
        if self.tls is None:
            super().connection_made(transport)
        else:
            self.handshake = self.loop.create_task(self._start_tls(transport, self.tls))

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        try:
            transport = await self.loop.start_tls(raw, self, context, server_side=True,
                                                  ssl_handshake_timeout=self.header_timeout)
        except (Exception, asyncio.CancelledError):  # a failed handshake, or closed by its deadline
            transport = None
        if transport is None or transport.is_closing():
            raw.close()
            self._forget()
            return
        super().connection_made(transport)  # type: ignore[arg-type]
        early, self.early = self.early, []
        for data in early:
            super().data_received(data)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            self.early.append(data)
        else:
            super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        self._await_headers(self._between_requests())

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.trailing_data[0]:  # part of the next request came already: not idle, its headers are late
            self._unset_keepalive_if_required()
        # the answer may have gone before its request's body came (/health, a 404): what the client
        # sends now, that body's rest included, is not a request in progress; the deadline runs
        self._await_headers(self._between_requests())

    def _between_requests(self) -> bool:
        """True if no request is in progress: none yet, or the last one answered."""
        answered = self.cycle is None or self.cycle.response_complete
        return answered and not self.transport.is_closing()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: first tell long-lived answers (Server-Sent Events) to end, so
        that their connections close with the others rather than at the graceful timeout."""
        stopping = self.app_state.get(STOPPING)
        if stopping is not None:
            stopping.set()
        super().shutdown()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.stalled is None:
            self.stalled = self.loop.call_later(self.send_timeout, self.drop, False)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._unstall()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        if self.handshake is not None and not self.handshake.done():
            self.handshake.cancel()
        if self.transport is not None:  # None: refused, or lost before its TLS handshake ended
            super().connection_lost(exc)

    def drop(self, answer: bool) -> None:
        """Close the connection now (its headers late, its answers unread, or to make room);
        ``answer``: say 408 first if part of a request came. The TCP connection itself is closed, so
        that its file handle is freed at once (with TLS, a graceful close would wait up to 30 s for
        the client's reply), and reset if what was written to it has not all left (a client that
        does not read)."""
        self._forget()
        if self.handshake is not None and not self.handshake.done():
            self.handshake.cancel()
        opened = self.transport is not None and not self.transport.is_closing()
        if answer and opened and self.conn.trailing_data[0]:
            self.transport.write(self._late_answer())
        if self.raw is not None and self.raw.get_write_buffer_size():
            self.raw.abort()
        elif self.raw is not None:
            self.raw.close()

    def _await_headers(self, waiting: bool) -> None:
        """Start the header deadline if ``waiting`` for a request's headers, else stop it."""
        if waiting and self.deadline is None:
            self.deadline = self.loop.call_later(self.header_timeout, self.drop, True)
        elif not waiting and self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.table.set_waiting(self, waiting)

    def _forget(self) -> None:
        self._await_headers(False)
        self._unstall()
        self.table.release(self)

    def _unstall(self) -> None:
        if self.stalled is not None:
            self.stalled.cancel()
            self.stalled = None

    def _late_answer(self) -> bytes:
        error = RequestTimeoutException(f"The request's headers did not arrive within {self.header_timeout:g} "
                                        "seconds.")
        body = Reply(408, error.to_dict()).encode()
        headers = response_headers(str(uuid.uuid4()), len(body)) | {"connection": "close"}
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return f"HTTP/1.1 408 Request Timeout\r\n{head}\r\n".encode() + body
