"""What every console page shares: the signed-in session, its role's permission, a bounded
request body, the CSRF check on every POST, rendering, and errors shown as pages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from faceprint.audit.caller import Caller
from faceprint.console import csrf
from faceprint.console.roles import allowed
from faceprint.console.sessions import COOKIE, Session
from faceprint.errors import DELIBERATE_FAULTS, FaceprintError

if TYPE_CHECKING:
    from faceprint.console.app import Console

log = logging.getLogger("faceprint.console")
FORM_BYTES = 64 * 1024
"""The largest body of a form without a file."""
FORM_FIELDS = 2100
"""Fields one form may have (a collection page deletes up to 1,000 faces at once: 4096 is Rekognition's cap)."""


@dataclass
class Ctx:
    """One request to a console page, from a signed-in user allowed to see it."""

    console: Console
    request: Request
    session: Session
    form: FormData | None = None

    @property
    def user(self) -> Any:
        return self.session.user

    @property
    def csrf(self) -> str:
        return csrf.token(self.console.sessions, self.session.sid)

    def can(self, permission: str) -> bool:
        return allowed(self.user.role, permission)

    def caller(self, purpose: str | None = None, case: str | None = None, require_case: bool = False) -> Caller:
        """The audit record's "who" for this user's calls."""
        return Caller(self.user.name, "console", purpose=purpose or None, case=case or None,
                      require_case=require_case, refuse_low_quality=self.user.refuse_low_quality)

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else default

    def fields(self, name: str) -> list[str]:
        return [v for v in self.form.getlist(name) if isinstance(v, str)] if self.form is not None else []

    async def run(self, fn: Callable[..., Any], *args: Any, heavy: bool = False, **kwargs: Any) -> Any:
        return await self.console.run(fn, *args, heavy=heavy, **kwargs)

    def render(self, template: str, status: int = 200, /, **values: Any) -> HTMLResponse:
        return self.console.render(template, status, ctx=self, **values)

    def redirect(self, path: str) -> RedirectResponse:
        return RedirectResponse(self.console.url(path), status_code=303)


Handler = Callable[[Ctx], Awaitable[Response]]


class Refused(Exception):
    """A request answered with an error page before its handler runs."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def endpoint(console: Console, permission: str, handler: Handler, max_body: int = FORM_BYTES
             ) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint: signed in (else to the sign-in page), allowed (else 403), and for a POST
    a body of at most ``max_body`` bytes (else 413) whose CSRF token is the session's (else 403)."""

    async def serve(request: Request) -> Response:
        session = await console.run(console.sessions.find, request.cookies.get(COOKIE))
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(console.url(f"/sign-in?next={quote(target, safe='')}"), status_code=303)
        ctx = Ctx(console, request, session)
        try:
            if not ctx.can(permission):
                raise Refused(403, "Not allowed", f"Your role ({ctx.user.role}) does not allow this page.")
            if request.method == "POST":
                ctx.form = await read_form(console, request, max_body)
                if not csrf.valid(console.sessions, session.sid, ctx.form.get("csrf")):
                    raise Refused(403, "Form expired", "This form is stale or was not sent from this console: "
                                  "reload the page and try again.")
            response = await handler(ctx)
        except Refused as exc:
            response = ctx.render("error.html", exc.status, title=exc.title, message=exc.message)
        except FaceprintError as exc:
            response = error_page(ctx, exc)
        except Exception:  # a bug: a page that says so, never a traceback
            log.exception("console: %s %s failed", request.method, request.url.path)
            response = ctx.render("error.html", 500, title="Internal error", message="See the server log.")
        finally:
            if ctx.form is not None:  # an upload's spooled file goes at once
                await ctx.form.close()
        return response

    return serve


def error_page(ctx: Ctx, exc: FaceprintError) -> HTMLResponse:
    status = 500 if exc.http_status >= 500 else 400
    safe = status == 400 or getattr(exc, "safe_message", False) or exc.code in DELIBERATE_FAULTS
    if not safe:
        log.error("console: %s: %s", exc.code, exc.message)
    message = exc.message if safe else "Internal error; see the server log."
    return ctx.render("error.html", status, title=exc.code, message=message)


async def read_form(console: Console, request: Request, limit: int) -> FormData:
    """The request's form, its body read first with its bytes counted against ``limit`` (and, all
    requests together, the console's body budget), within the body timeout."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, "Too large", f"The request is {int(declared):,} bytes, over the {limit:,} this form "
                      "accepts.")
    try:
        async with asyncio.timeout(console.options.body_timeout):
            body = await _read_body(console, request, limit)
    except TimeoutError:
        raise Refused(408, "Too slow", "The request did not arrive in time.") from None
    except ClientDisconnect:
        raise Refused(400, "Gone", "The request was cut short.") from None
    request._body = body  # Starlette's form parser reads the body from here
    try:
        return await request.form(max_files=1, max_fields=FORM_FIELDS, max_part_size=limit)
    except Exception as exc:  # multipart's own errors: a malformed form is the sender's
        raise Refused(400, "Bad form", f"The form could not be read ({type(exc).__name__}).") from None


async def _read_body(console: Console, request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, "Too large", f"The request is over the {limit:,} bytes this form accepts.")
            if console.receiving + len(chunk) > console.options.body_budget:
                raise Refused(503, "Busy", "The console is receiving too much at once; try again shortly.")
            console.receiving += len(chunk)
            chunks.append(chunk)
    finally:
        console.receiving -= sum(len(c) for c in chunks)
    return b"".join(chunks)
