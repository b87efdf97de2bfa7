"""Run the server: ``faceprint serve`` builds :class:`ServeSettings` and calls :func:`serve`.

One process by default; ``workers`` > 1 starts that many processes on one socket (uvicorn's
supervisor), each with its own Faceprint on the same home: the SQLite store and the vector
indexes follow each other's writes, and the metrics are shared through a folder.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from faceprint.account import check_region
from faceprint.errors import InvalidParameterException
from faceprint.server.app import ACCESS_LOG, AppOptions, create_app

SETTINGS_ENV = "FACEPRINT_SERVE_SETTINGS"


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    home: str | None = None
    profile: str | None = None
    max_image_bytes: int | None = None
    buckets: list[str] = field(default_factory=list)
    """``NAME=DIR`` local buckets (or ``NAME`` for a bucket of the S3 endpoint)."""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    """The endpoint's credentials (None: boto3's usual chain)."""
    region: str = "us-east-1"
    """The region this server answers as: collection ARNs are arn:aws:rekognition:REGION:ACCOUNT:collection/ID."""
    auth: bool = True
    workers: int = 1
    threads: int = 0
    """Inference threads per worker (0: one per core)."""
    log_level: str = "info"
    metrics_dir: str | None = None
    graceful_timeout: float = 30.0
    """Seconds shutdown waits for requests in progress; then they are dropped."""
    body_timeout: float = 30.0
    """Seconds a request's body may take to arrive."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_settings(settings: ServeSettings) -> None:
    if not settings.auth and not is_loopback(settings.host):
        raise InvalidParameterException(
            f"--no-auth is allowed only on a loopback host (127.0.0.1, ::1, localhost), not {settings.host!r}: "
            "anyone who can reach the port could use and delete your collections. Create a key with "
            "`faceprint keys create --name NAME` and keep authentication on.")
    check_region(settings.region)
    if settings.workers < 1:
        raise InvalidParameterException("--workers must be 1 or more.")
    if not settings.body_timeout > 0 or not settings.graceful_timeout > 0:
        raise InvalidParameterException("--body-timeout and --graceful-timeout must be more than 0 seconds.")


def build_app(settings: ServeSettings) -> Starlette:
    """The app of one worker process, from its settings."""
    from faceprint.imaging import ImageLimits
    from faceprint.service import Faceprint

    limits = ImageLimits(max_bytes=settings.max_image_bytes) if settings.max_image_bytes else None
    share = max(1, (os.cpu_count() or 1) // settings.workers)  # each worker's part of the cores
    fp = Faceprint(settings.home, profile=settings.profile, limits=limits,
                   threads=0 if settings.workers == 1 else share, region=settings.region)
    keys = None
    if settings.auth:
        from faceprint.server.auth import KeyStore

        keys = KeyStore(fp.home)
    buckets = None
    if settings.buckets or settings.s3_endpoint_url:
        from faceprint.server.s3 import Buckets

        buckets = Buckets.from_specs(settings.buckets, endpoint_url=settings.s3_endpoint_url,
                                     region=settings.s3_region, access_key_id=settings.s3_access_key_id,
                                     secret_access_key=settings.s3_secret_access_key)
    options = AppOptions(inference_threads=settings.threads or share, body_timeout=settings.body_timeout,
                         metrics_dir=Path(settings.metrics_dir) if settings.metrics_dir else None)
    return create_app(fp, keys=keys, buckets=buckets, options=options)


def app_from_environment() -> Starlette:
    """uvicorn's app factory in each worker process: the settings come in an environment variable."""
    configure_logging(json.loads(os.environ[SETTINGS_ENV]).get("log_level", "info"))
    return build_app(ServeSettings(**json.loads(os.environ[SETTINGS_ENV])))


def _warn_without_keys(settings: ServeSettings) -> None:
    if not settings.auth:
        return
    from faceprint.server.auth import KeyStore
    from faceprint.service import default_home

    home = Path(settings.home) if settings.home else default_home()
    store = KeyStore(home)
    if not store.list():
        logging.getLogger("faceprint.server").warning(
            "no access keys in %s: every request is refused until you create one with "
            "`faceprint keys create --name NAME --home %s`", store.path, home)


def _hint_workers(settings: ServeSettings) -> None:
    from faceprint.models.profiles import DEFAULT_PROFILE

    profile = settings.profile or os.environ.get("FACEPRINT_PROFILE") or DEFAULT_PROFILE
    if profile == "accurate" and settings.workers == 1 and (os.cpu_count() or 1) > 1:
        logging.getLogger("faceprint.server").info(
            "the accurate profile's dlib model holds Python's GIL, so one process cannot keep all %d cores "
            "busy; --workers %d serves more searches a second (docs/benchmarks.md, Server)",
            os.cpu_count(), os.cpu_count())


def configure_logging(level: str) -> None:
    access = logging.getLogger(ACCESS_LOG)
    if not access.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.propagate = False
    access.setLevel(logging.INFO if level.lower() in ("debug", "info") else logging.WARNING)
    server = logging.getLogger("faceprint.server")
    if not server.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(name)s: %(message)s"))
        server.addHandler(handler)
        server.propagate = False
    server.setLevel(level.upper())


def serve(settings: ServeSettings) -> None:
    """Run until SIGINT or SIGTERM; in-flight requests are answered before the process exits."""
    import uvicorn

    check_settings(settings)
    configure_logging(settings.log_level)
    _warn_without_keys(settings)
    _hint_workers(settings)
    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": settings.log_level,
                              "access_log": False, "timeout_graceful_shutdown": settings.graceful_timeout}
    if settings.workers == 1:
        uvicorn.run(build_app(settings), **common)
        return
    build_app(settings)  # fail here, once, on bad settings (not in every worker, over and over)
    share = Path(tempfile.mkdtemp(prefix="faceprint-metrics-"))
    try:
        worker = dataclasses.replace(settings, metrics_dir=str(share))
        os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(worker))
        _run_workers(uvicorn.Config("faceprint.server.run:app_from_environment", factory=True,
                                    workers=settings.workers, **common))
    finally:
        shutil.rmtree(share, ignore_errors=True)


def _run_workers(config: Any) -> None:
    """uvicorn's multiprocess supervisor, on a socket made by :func:`listening_socket`."""
    from uvicorn.supervisors import Multiprocess

    sock = listening_socket(config.host, config.port)
    logging.getLogger("faceprint.server").info("listening on http://%s:%d with %d workers", config.host,
                                               sock.getsockname()[1], config.workers)
    Multiprocess(config, sockets=[sock]).run()


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket that worker processes inherit. Its protocol number is IPPROTO_TCP: on
    uvicorn's own (protocol 0) asyncio does not set TCP_NODELAY on the connections, and every
    answer (headers, then body) then waits about 40 ms for the client's delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise InvalidParameterException(f"Cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock
