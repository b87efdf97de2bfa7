"""Sign-in, sign-out and the start page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from faceprint.console import csrf
from faceprint.console.roles import HOME_PAGE
from faceprint.console.sessions import COOKIE
from faceprint.console.users import SignInRefused
from faceprint.console.web import Ctx, Refused, endpoint, read_form

if TYPE_CHECKING:
    from faceprint.console.app import Console

PRE_SECONDS = 3600


def routes(console: Console) -> list[BaseRoute]:
    async def home(ctx: Ctx) -> Response:
        return ctx.redirect(f"/{HOME_PAGE[ctx.user.role]}")

    async def sign_in_page(request: Request) -> Response:
        return await _sign_in_page(console, request)

    async def sign_in(request: Request) -> Response:
        return await _sign_in(console, request)

    async def sign_out(ctx: Ctx) -> Response:
        await ctx.run(console.sessions.close, ctx.request.cookies.get(COOKIE))
        response = ctx.redirect("/sign-in")
        response.delete_cookie(COOKIE, path=console.url("/"), secure=_secure(ctx.request), httponly=True,
                               samesite="strict")
        return response

    return [Route("/", endpoint(console, "signed-in", home)),
            Route("/sign-in", sign_in_page, methods=["GET"]),
            Route("/sign-in", sign_in, methods=["POST"]),
            Route("/sign-out", endpoint(console, "signed-in", sign_out), methods=["POST"])]


def _secure(request: Request) -> bool:
    """Served over TLS: cookies are ``Secure``."""
    return request.url.scheme == "https"


def _next(console: Console, value: object) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    prefix = console.url("/")
    if isinstance(value, str) and value.startswith(prefix) and "//" not in value and "\\" not in value:
        return value
    return prefix


async def _sign_in_page(console: Console, request: Request, message: str | None = None, status: int = 200,
                        name: str = "", next_path: object = None) -> Response:
    pre = request.cookies.get(csrf.PRE_COOKIE)
    fresh = pre is None or len(pre) != 32
    if fresh:
        pre = csrf.new_pre_session()
    has_users = bool(await console.run(console.users.list))
    response = console.render("sign_in.html", status, ctx=None, message=message, name=name, has_users=has_users,
                              next=_next(console, next_path or request.query_params.get("next")),
                              csrf=csrf.token(console.sessions, "pre:" + pre))
    if fresh:
        response.set_cookie(csrf.PRE_COOKIE, pre, max_age=PRE_SECONDS, path=console.url("/"),
                            secure=_secure(request), httponly=True, samesite="strict")
    return response


async def _sign_in(console: Console, request: Request) -> Response:
    try:
        form = await read_form(console, request, 8 * 1024)
    except Refused as exc:
        return await _sign_in_page(console, request, exc.message, exc.status)
    back = form.get("next")
    pre = request.cookies.get(csrf.PRE_COOKIE)
    name = form.get("name")
    name = name.strip() if isinstance(name, str) else ""
    if pre is None or not csrf.valid(console.sessions, "pre:" + pre, form.get("csrf")):
        return await _sign_in_page(console, request, "The sign-in form expired; please try again.", 403, name,
                                   back)
    try:
        user = await console.run(console.users.authenticate, name, form.get("password"))
    except SignInRefused as exc:
        return await _sign_in_page(console, request, str(exc), 401, name, back)
    cookie = await console.run(console.sessions.open, user)
    response = RedirectResponse(_next(console, form.get("next")), status_code=303)
    response.set_cookie(COOKIE, cookie, path=console.url("/"), secure=_secure(request), httponly=True,
                        samesite="strict")
    response.delete_cookie(csrf.PRE_COOKIE, path=console.url("/"), secure=_secure(request), httponly=True,
                           samesite="strict")
    return response
