"""Console users, for an admin: add, change role, unlock, delete. Each change is an audit entry
(``ConsoleUserChanged``, by the admin) written before it is made; passwords never reach the log.
Everyone may change their own password (``/console/password``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from faceprint.console.audit import record_user_change
from faceprint.console.users import ROLES, SignInRefused, check_name, check_password, check_role
from faceprint.console.web import Ctx, Refused, endpoint
from faceprint.errors import FaceprintError, ResourceAlreadyExistsException

if TYPE_CHECKING:
    from faceprint.console.app import Console

ACTIONS = ("add", "role", "unlock", "delete")


def routes(console: Console) -> list[BaseRoute]:
    return [Route("/users", endpoint(console, "users", listing), methods=["GET"]),
            Route("/users", endpoint(console, "users", change), methods=["POST"]),
            Route("/password", endpoint(console, "signed-in", password_page), methods=["GET"]),
            Route("/password", endpoint(console, "signed-in", password), methods=["POST"])]


async def listing(ctx: Ctx, status: int = 200, message: str | None = None, done: str | None = None) -> Response:
    users = await ctx.run(ctx.console.users.list)
    now = ctx.console.clock()
    return ctx.render("users.html", status, title="Console users", users=[u.to_json(now) for u in users],
                      roles=ROLES, message=message, done=done)


async def change(ctx: Ctx) -> Response:
    action, name = ctx.field("action"), ctx.field("name")
    if action not in ACTIONS:
        raise Refused(400, "Bad request", "Unknown change.")
    try:
        done = await ctx.run(_change, ctx, action, name, heavy=action == "add")
    except ValueError as exc:
        return await listing(ctx, 400, str(exc))
    except FaceprintError as exc:
        if exc.http_status >= 500:  # the audit log cannot be written: no entry, no change
            raise
        return await listing(ctx, 400, exc.message)
    return await listing(ctx, done=done)


def _change(ctx: Ctx, action: str, name: str) -> str:
    """Check, record, then make the change; what was done, in words."""
    users, home, caller = ctx.console.users, ctx.console.fp.home, ctx.caller()
    if action == "add":
        role, secret, refuse = ctx.field("role"), ctx.field("password"), ctx.field("refuse_low_quality") == "on"
        check_name(name), check_role(role), check_password(secret)
        if users.get(name) is not None:
            raise ResourceAlreadyExistsException(f"Console user {name} already exists.")
        record_user_change(home, "added", name, {"Role": role, "RefuseLowQuality": refuse}, caller=caller,
                           log=ctx.console.fp.audit_log)
        users.add(name, role, secret, refuse)
        return f"Added {name} ({role})."
    user = users.require(name)
    if name == ctx.user.name and action in ("role", "delete"):
        raise ValueError("An admin does not change their own role or delete themselves here (ask another admin, "
                         "or use faceprint console-users on the server).")
    if action == "role":
        role = check_role(ctx.field("role"))
        record_user_change(home, "updated", name, {"Role": role, "RefuseLowQuality": user.refuse_low_quality},
                           caller=caller, log=ctx.console.fp.audit_log)
        users.update(name, role=role)
        return f"{name} is now {role}."
    record_user_change(home, "unlocked" if action == "unlock" else "deleted", name, {}, caller=caller,
                       log=ctx.console.fp.audit_log)
    if action == "unlock":
        users.unlock(name)
        return f"Unlocked {name}."
    users.delete(name)
    return f"Deleted {name}; their sessions are over."


async def password_page(ctx: Ctx, status: int = 200, message: str | None = None, done: bool = False) -> Response:
    return ctx.render("password.html", status, title="Your password", message=message, done=done)


async def password(ctx: Ctx) -> Response:
    """Your own password: the current one first; the new one ends your other sessions (and this one:
    sign in again)."""
    current, new, again = ctx.field("current"), ctx.field("new"), ctx.field("again")
    if new != again:
        return await password_page(ctx, 400, "The two new passwords differ.")
    try:
        check_password(new)
        await ctx.run(_set_password, ctx, current, new, heavy=True)
    except SignInRefused as exc:
        return await password_page(ctx, 400, "The current password is wrong." if not exc.locked else str(exc))
    except FaceprintError as exc:
        if exc.http_status >= 500:
            raise
        return await password_page(ctx, 400, exc.message)
    return ctx.redirect("/sign-in")


def _set_password(ctx: Ctx, current: str, new: str) -> Any:
    users = ctx.console.users
    users.authenticate(ctx.user.name, current)  # a wrong one counts towards the lock-out
    record_user_change(ctx.console.fp.home, "password", ctx.user.name, {}, caller=ctx.caller(),
                       log=ctx.console.fp.audit_log)
    return users.set_password(ctx.user.name, new)
