"""The console's Starlette app, mounted by ``faceprint serve`` at ``/console``.

Pages are rendered on the server (Jinja2, autoescaped); the small script and style sheet are
served from ``static/`` (no build step). Every page works through the Faceprint Python API of
the server's own Faceprint (never over HTTP), with the signed-in console user as the audit
record's caller. Requests are bounded as the API's are: a form's body is capped (a probe upload at
the Faceprint image limit plus room for the fields), all bodies arriving at once share a budget,
blocking work runs on the console's own small thread pools (searches on ``search_threads``), and
a page lists at most ``PAGE_SIZE`` rows at a time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceprint.console.pgusers import open_console_users, signing_secret
from faceprint.console.sessions import IDLE_SECONDS, LIFETIME_SECONDS, Sessions
from faceprint.console.users import ConsoleUsers

if TYPE_CHECKING:
    import jinja2

    from faceprint.service import Faceprint

PREFIX = "/console"
HERE = Path(__file__).parent
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
     b"script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
"""On every console answer: no inline script, nothing framed, nothing cached (pages show faces)."""


@dataclass(frozen=True)
class ConsoleOptions:
    idle_seconds: float = IDLE_SECONDS
    """A session ends after this long without a request."""
    lifetime_seconds: float = LIFETIME_SECONDS
    """A session ends this long after sign-in, however busy."""
    search_threads: int = 2
    """Searches (and other image work) run at once; more wait their turn."""
    max_queued: int = 16
    """Image work waiting or running at once; past it a search answers 503 (try again)."""
    light_threads: int = 4
    """Threads for the rest (pages, sessions, sign-ins: each sign-in's scrypt holds one)."""
    body_budget: int = 64 * 1024 * 1024
    """Bytes of console request bodies arriving at once, all together; past it a form answers 503."""
    body_timeout: float = 30.0
    """Seconds a form's body may take to arrive."""


class Console:
    """The console of one Faceprint (one server process); ``app`` is its ASGI app, ``close()`` ends its pools."""

    def __init__(self, fp: Faceprint, options: ConsoleOptions | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.fp = fp
        self.options = options or ConsoleOptions()
        self.clock = clock
        self.receiving = 0
        """Bytes of form bodies still arriving (the event loop's alone)."""
        self.queued = 0
        """Image work waiting or running (the event loop's alone)."""
        self._users: ConsoleUsers | None = None
        self._sessions: Sessions | None = None
        self._templates: jinja2.Environment | None = None
        self._lock = threading.Lock()
        self.light = ThreadPoolExecutor(self.options.light_threads, thread_name_prefix="fp-console")
        self.heavy = ThreadPoolExecutor(self.options.search_threads, thread_name_prefix="fp-console-search")
        self.app = self._make_app()

    @property
    def users(self) -> ConsoleUsers:
        """``HOME/console/users.db``, opened on first use (a server without console users makes nothing)."""
        with self._lock:
            if self._users is None:
                self._users = open_console_users(self.fp.home, self.fp.store_url, clock=self.clock)
            return self._users

    @property
    def sessions(self) -> Sessions:
        users = self.users
        with self._lock:
            if self._sessions is None:
                self._sessions = Sessions(users, signing_secret(users), self.options.idle_seconds,
                                          self.options.lifetime_seconds)
            return self._sessions

    @property
    def templates(self) -> jinja2.Environment:
        if self._templates is None:
            import jinja2

            from faceprint.console import filters

            env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                     autoescape=jinja2.select_autoescape(default=True))
            filters.install(env, self)
            self._templates = env
        return self._templates

    def url(self, path: str) -> str:
        return PREFIX + path

    async def run(self, fn: Callable[..., Any], *args: Any, heavy: bool = False, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on a worker thread: image work (``heavy``) on the search pool, at most
        ``max_queued`` at once (else :class:`~faceprint.console.web.Refused` 503)."""
        loop = asyncio.get_running_loop()
        if not heavy:
            return await loop.run_in_executor(self.light, lambda: fn(*args, **kwargs))
        if self.queued >= self.options.max_queued:
            from faceprint.console.web import Refused

            raise Refused(503, "Busy", "The console is running as many searches as it may; try again shortly.")
        self.queued += 1
        try:
            return await loop.run_in_executor(self.heavy, lambda: fn(*args, **kwargs))
        finally:
            self.queued -= 1

    def render(self, template: str, status: int = 200, /, **values: Any) -> HTMLResponse:
        text = self.templates.get_template(template).render(console=self, **values)
        return HTMLResponse(text, status_code=status)

    def close(self) -> None:
        self.light.shutdown(wait=True)
        self.heavy.shutdown(wait=True)

    def _make_app(self) -> ASGIApp:
        from faceprint.console.pages import routes

        async def not_found(request: Request, exc: Exception) -> Response:
            return HTMLResponse("<!doctype html><title>Not found</title><p>No such console page. "
                                f"<a href=\"{PREFIX}/\">Console</a>", status_code=404)

        app = Starlette(routes=[*routes(self), Mount("/static", app=StaticFiles(directory=HERE / "static"))],
                        exception_handlers={404: not_found, 405: not_found})
        return _SecurityHeaders(app)


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
