"""PostgreSQL's own programs (``pg_dump``, ``pg_restore``: Debian's ``postgresql-client``) run on a
store URL without the URL on their command line: its parts go to libpq's environment variables
(``PGHOST``, ``PGUSER``, ``PGPASSWORD``, ...), which no other user can read in ``ps``."""

from __future__ import annotations

import os
import shutil
import subprocess

from faceprint.errors import FaceprintError, InvalidParameterException

LIBPQ_ENV = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER",
    "password": "PGPASSWORD", "passfile": "PGPASSFILE", "service": "PGSERVICE", "options": "PGOPTIONS",
    "application_name": "PGAPPNAME", "connect_timeout": "PGCONNECT_TIMEOUT", "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslcrl": "PGSSLCRL",
    "channel_binding": "PGCHANNELBINDING", "gssencmode": "PGGSSENCMODE",
    "target_session_attrs": "PGTARGETSESSIONATTRS", "krbsrvname": "PGKRBSRVNAME",
}


class ToolFailed(FaceprintError):
    """pg_dump or pg_restore failed (its message says why)."""


def libpq_env(url: str) -> dict[str, str]:
    """The process environment with ``url``'s parameters as libpq's variables (over any set already)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception as e:  # noqa: BLE001 - psycopg's ProgrammingError, or a bad value
        raise InvalidParameterException(f"The PostgreSQL URL cannot be read: {type(e).__name__}") from None
    env = dict(os.environ)
    for name, value in params.items():
        if name not in LIBPQ_ENV:
            raise InvalidParameterException(f"The PostgreSQL URL's parameter {name!r} has no libpq environment "
                                            "variable; set it in the environment or a service file instead.")
        env[LIBPQ_ENV[name]] = str(value)
    return env


def run_tool(program: str, args: list[str], url: str, timeout: float | None = None) -> None:
    """Run ``program`` (found on PATH) with ``args`` against ``url``'s database; ToolFailed with its
    stderr (which names no password: libpq never prints it) if it fails."""
    path = shutil.which(program)
    if path is None:
        raise ToolFailed(f"{program} is not installed (Debian: apt-get install postgresql-client).")
    done = subprocess.run([path, *args], env=libpq_env(url), capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode:
        raise ToolFailed(f"{program} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
