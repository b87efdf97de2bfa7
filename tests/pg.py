"""A real PostgreSQL server for the tests, from Debian's ``postgresql`` package: ``initdb`` and
``pg_ctl`` (found under ``/usr/lib/postgresql/*/bin``) into a temporary folder, listening only on a
unix socket in that folder (no TCP port), started once a session and stopped at its end.

The cluster's superuser ``faceprint`` logs in without a password (``trust``) over the socket;
every other role needs its password (``scram-sha-256``), so a test can show that credentials come
from libpq's environment. Durability is off (``fsync``, ``synchronous_commit``,
``full_page_writes``): these are throw-away clusters. PostgreSQL refuses to run as root: as root
the server runs as the ``postgres`` user that the package creates, its folder owned by it.

Use the ``pg`` fixture (add ``from pg import pg  # noqa: F401`` to a test module) and
``pg.database()`` for a fresh, empty database's URL.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SUPERUSER = "faceprint"


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (None: not installed)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


class PgServer:
    def __init__(self, folder: Path, bin_dir: Path, run_as: pwd.struct_passwd | None,
                 settings: dict[str, str] | None = None) -> None:
        """``settings``: postgresql.conf lines over the tests' (e.g. durability back on for a benchmark)."""
        self.folder, self.bin, self.run_as = folder, bin_dir, run_as
        self.overrides = settings or {}
        self.data, self.socket_dir = folder / "data", folder / "socket"
        self._names = itertools.count(1)

    def _run(self, *args: str) -> None:
        """Run a PostgreSQL program, as ``run_as`` through util-linux's ``setpriv``: subprocess's own
        ``user=`` makes Python fork() rather than vfork(), and a forked child of a test process that
        has talked to Milvus over gRPC died of SIGSEGV in the fork handlers before exec (CI)."""
        command = [str(self.bin / args[0]), *args[1:]]
        if self.run_as:
            command = ["setpriv", f"--reuid={self.run_as.pw_uid}", f"--regid={self.run_as.pw_gid}",
                       "--init-groups", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.folder, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout}\n{done.stderr}")

    def start(self) -> None:
        for folder in (self.folder, self.socket_dir):
            folder.mkdir(exist_ok=True)
            if self.run_as:
                os.chown(folder, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth-local=scram-sha-256",
                  "--auth-host=reject", "-E", "UTF8", "--locale=C.UTF-8")
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"local all {SUPERUSER} trust\nlocal all all scram-sha-256\n")
        settings = {"listen_addresses": "''", "unix_socket_directories": f"'{self.socket_dir}'",
                    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                    "max_connections": "200", "shared_buffers": "64MB"} | self.overrides
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-t", "60", "start")

    def restart(self) -> None:
        """Stop (fast: sessions are cut) and start again, as a failover or an upgrade would."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-m", "fast", "-w",
                  "-t", "60", "restart")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        """A URL that reaches ``database`` over the socket as ``user`` (no password in it)."""
        return f"postgresql://{user}@/{database}?host={self.socket_dir}"

    def env(self, database: str, user: str, password: str) -> dict[str, str]:
        """libpq's environment for ``user``'s login to ``database`` (with ``postgresql://`` and nothing else)."""
        return {"PGHOST": str(self.socket_dir), "PGDATABASE": database, "PGUSER": user, "PGPASSWORD": password}

    def sql(self, statement: str, database: str = "postgres") -> list[tuple]:
        """Run one statement as the superuser (autocommit); its rows."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as db:
            cursor = db.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def database(self) -> str:
        """A new empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)


DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
"""Settings for benchmarks: durability on, as a deployment has it."""


@contextmanager
def temporary_server(settings: dict[str, str] | None = None) -> Iterator[PgServer]:
    """A PostgreSQL server started in a new temporary folder (as user ``postgres`` when run as root),
    stopped and removed after; ``settings`` as :class:`PgServer`'s."""
    bin_dir = pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed: run scripts/install-test-tools")
    run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="fp-pg-"))  # short: a socket path has ~100 bytes
    if run_as:
        os.chown(folder, run_as.pw_uid, run_as.pw_gid)
    server = PgServer(folder, bin_dir, run_as, settings)
    try:
        server.start()
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    with temporary_server() as server:
        yield server
