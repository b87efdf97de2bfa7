"""``faceprint console-users add|list|delete|passwd|unlock|set``: who may sign in to ``/console``.

Console users are people using the web console (``faceprint.console.users``), not Rekognition's
users. A password comes from a prompt (asked twice) or, with ``--password-stdin``, from the
first line of standard input (for scripts: ``printf '%s\\n' "$PW" | faceprint console-users add
NAME --role reviewer --password-stdin``); it is never an argument, which other local users could
read in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from faceprint.errors import InvalidParameterException

COMMANDS: frozenset[str] = frozenset({"console-users"})
"""The top-level command names this module adds."""


def add_commands(sub: Any) -> None:
    """Add ``console-users`` to the ``faceprint`` parser's subparsers."""
    from faceprint.console.users import ROLES

    users = sub.add_parser("console-users", help="people who may sign in to the web console (/console)")
    usub = users.add_subparsers(dest="console_command", required=True, parser_class=type(users))

    def command(name: str, help_text: str, named: bool = True) -> argparse.ArgumentParser:
        p = usub.add_parser(name, help=help_text)
        p.add_argument("--home", default=argparse.SUPPRESS, help="faceprint home folder")
        if named:
            p.add_argument("name", metavar="NAME")
        return p

    p = command("add", "a new console user (asks for the password)")
    p.add_argument("--role", required=True, choices=ROLES,
                   help="investigator: search, send to review; reviewer: review queue; auditor: audit record, "
                        "read-only; admin: everything, deleting faces included")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    p.add_argument("--refuse-low-quality", action="store_true",
                   help="refuse this user's searches whose probe is under the quality floor")
    command("list", "the console users (never their passwords)", named=False)
    command("delete", "delete a console user (their sessions end)")
    p = command("passwd", "set a console user's password (their sessions end, a lock-out is lifted)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    command("unlock", "lift a lock-out after too many wrong passwords")
    p = command("set", "change a console user's role or low-quality setting")
    p.add_argument("--role", choices=ROLES)
    p.add_argument("--refuse-low-quality", choices=["true", "false"])


def run(args: argparse.Namespace) -> Any:
    """Run ``console-users``; returns what the CLI prints as JSON. A change is checked, then written
    to the audit log (``ConsoleUserChanged``, by the OS user), then made: no entry, no change."""
    from faceprint.console.pgusers import open_console_users
    from faceprint.console.users import check_password, check_role

    home = _home(args)
    users = open_console_users(home, getattr(args, "store", None))
    now = users.clock()
    command = args.console_command
    if command == "list":
        return {"ConsoleUsers": [user.to_json(now) for user in users.list()]}
    if command == "add":
        from faceprint.console.users import check_name
        from faceprint.errors import ResourceAlreadyExistsException

        check_name(args.name), check_role(args.role)
        if users.get(args.name) is not None:
            raise ResourceAlreadyExistsException(f"Console user {args.name} already exists.")
        password = check_password(_password(args.password_stdin))
        _record(home, "added", args.name, {"Role": args.role, "RefuseLowQuality": args.refuse_low_quality})
        user = users.add(args.name, args.role, password, args.refuse_low_quality)
    elif command == "passwd":
        users.require(args.name)
        password = check_password(_password(args.password_stdin))
        _record(home, "password", args.name, {})
        user = users.set_password(args.name, password)
    elif command == "unlock":
        users.require(args.name)
        _record(home, "unlocked", args.name, {})
        user = users.unlock(args.name)
    elif command == "set":
        before = users.require(args.name)
        refuse = None if args.refuse_low_quality is None else args.refuse_low_quality == "true"
        if args.role is not None:
            check_role(args.role)
        keep = before.refuse_low_quality if refuse is None else refuse
        _record(home, "updated", args.name, {"Role": args.role or before.role, "RefuseLowQuality": keep})
        user = users.update(args.name, args.role, refuse)
    else:
        users.require(args.name)
        _record(home, "deleted", args.name, {})
        users.delete(args.name)
        return None
    return {"ConsoleUser": user.to_json(now)}


def _home(args: argparse.Namespace) -> Path:
    from faceprint.service import default_home

    return Path(args.home) if getattr(args, "home", None) else default_home()


def _record(home: Path, change: str, name: str, details: dict[str, Any]) -> None:
    """The change as an audit entry (``ConsoleUserChanged``), by the OS user running the command."""
    from faceprint.console.audit import record_user_change

    record_user_change(home, change, name, details)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise InvalidParameterException("No terminal to ask for the password: give it with --password-stdin.")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise InvalidParameterException("The two passwords differ.")
    return first
