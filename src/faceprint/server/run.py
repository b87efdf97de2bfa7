"""Run the server: ``faceprint serve`` builds :class:`ServeSettings` and calls :func:`serve`.

One process by default; ``workers`` > 1 starts that many processes on one socket (uvicorn's
supervisor), each with its own Faceprint on the same home: the SQLite store and the vector
indexes follow each other's writes, and the metrics are shared through a folder. Every process
serves through :mod:`faceprint.server.guard` (header and idle deadlines, connection caps, TLS).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import resource
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
from faceprint.server.guard import GuardedConfig, GuardSettings, tls_context
from faceprint.server.streams import (
    RunnerHolder,
    StreamFlags,
    flags_of,
    models_dir,
    runner_factory,
    stream_flags,
    wants_runner,
)

SETTINGS_ENV = "FACEPRINT_SERVE_SETTINGS"
DEFAULT_MAX_CONNECTIONS = 4096
FD_RESERVE = 256
"""File handles a worker keeps for other things than connections: models, the database, indexes, logs."""
DEFAULT_JOB_EXPIRY = 7 * 24 * 3600.0
"""Rekognition keeps a video job's results for 7 days."""


MIN_STREAM_LEASE, MAX_STREAM_LEASE = 2.0, 3600.0
"""Bounds of ``--stream-lease``: a host renews its leases several times a lease."""

@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    home: str | None = None
    profile: str | None = None
    max_image_bytes: int | None = None
    store_url: str | None = field(default=None, repr=False)
    index_url: str | None = field(default=None, repr=False)
    """Where collections and faces are kept and what indexes them (``faceprint.backends``; None:
    ``FACEPRINT_STORE`` / ``FACEPRINT_INDEX``, else the embedded default); may hold a password: never logged."""
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
    """Seconds a request's body may take to arrive; also how long a client may leave its answers
    unread, the socket's buffers full (the guard's ``send_timeout``)."""
    header_timeout: float = 10.0
    """Seconds from a connection's start, or its previous answer, until a request's headers are in."""
    idle_timeout: float = 5.0
    """Seconds a keep-alive connection may wait, silent, for its next request."""
    max_connections: int | None = None
    """Connections per worker (None: 4096, or fewer if the process's file handles do not allow it)."""
    max_connections_per_ip: int = 0
    """Connections per client address and worker (0: no cap)."""
    tls_cert: str | None = None
    tls_key: str | None = None
    """PEM files: serve HTTPS."""
    video_workers: int = 1
    """Worker processes running stored-video jobs (for the whole home: one runner runs them)."""
    max_video_jobs: int = 20
    """Video jobs queued or running at once; more answer ``LimitExceededException``."""
    job_expiry: float = DEFAULT_JOB_EXPIRY
    """Seconds a finished video job's results stay retrievable."""
    max_video_bytes: int = 10 * 1024**3
    max_video_seconds: float = 6 * 3600.0
    """Longer or larger videos are ``VideoTooLargeException`` (Rekognition: 10 GB, 6 hours)."""
    sns_topics: list[str] = field(default_factory=list)
    """``ARN=URL``: completion notifications for the SNS topic ARN are POSTed to the URL."""
    streams: list[str] = field(default_factory=list, repr=False)
    """``NAME=URL``: the camera (or other live source) of the Kinesis video stream NAME (secret: never logged)."""
    data_streams: list[str] = field(default_factory=list, repr=False)
    """``NAME=SINK``: a sink of the Kinesis data stream NAME (repeatable per name; secret: never logged)."""
    no_streams: bool = False
    """Run no stream host from this server (another process runs the home's processors)."""
    stream_lease: float = 15.0
    """Seconds a node's lease on a stream processor lasts unrenewed (PostgreSQL store: a dead node's
    processors move to another node after this long); every node of a deployment should agree."""
    streams_file: str | None = None
    """Where a worker process reads the streams and data streams (a 0600 file of the server's)."""
    store_probes: bool = False
    """Keep each search's probe image beside its digest in the audit record (``HOME/audit/probes``)."""
    audit_retention_days: int = 183
    """Audit entries are kept at least this long (``faceprint audit prune`` refuses younger ones)."""
    probe_retention_days: int | None = None
    """Stored probes are erased after this many days (None: kept as long as their audit entries)."""
    quality_floor: float = 90.0
    """Measured rank-1 (percent) under which a probe is flagged low quality."""
    durable_audit: bool = False
    """Flush every audit entry to disk before answering (slower; see faceprint.audit.config)."""
    retention_every: float = 3600.0
    """Seconds between two runs of the collections' face retention (0: never from this server)."""


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
    if not all(t > 0 for t in (settings.body_timeout, settings.graceful_timeout, settings.header_timeout,
                               settings.idle_timeout)):
        raise InvalidParameterException("--body-timeout, --graceful-timeout, --header-timeout and --idle-timeout "
                                        "must be more than 0 seconds.")
    if settings.max_connections is not None and settings.max_connections < 1 or settings.max_connections_per_ip < 0:
        raise InvalidParameterException("--max-connections must be 1 or more, --max-connections-per-ip 0 (no cap) "
                                        "or more.")
    tls_context(guard_settings(settings, 1))  # fails here, clearly, on files that do not load
    check_video_settings(settings)
    check_audit_settings(settings)
    stream_flags(settings.streams, settings.data_streams)
    if not MIN_STREAM_LEASE <= settings.stream_lease <= MAX_STREAM_LEASE:
        raise InvalidParameterException(f"--stream-lease must be from {MIN_STREAM_LEASE:g} to {MAX_STREAM_LEASE:g} "
                                        "seconds.")
    check_backends(settings)


def check_backends(settings: ServeSettings) -> None:
    """``--store`` and ``--index`` name known kinds of store and index (reached when the app is built)."""
    from faceprint.backends import INDEX_SCHEMES, STORE_SCHEMES, url_scheme

    if settings.store_url:
        url_scheme(settings.store_url, STORE_SCHEMES, "store")
    if settings.index_url:
        url_scheme(settings.index_url, INDEX_SCHEMES, "index")


def check_audit_settings(settings: ServeSettings) -> None:
    if settings.audit_retention_days < 1 or (settings.probe_retention_days is not None
                                             and settings.probe_retention_days < 1):
        raise InvalidParameterException("--audit-retention-days and --probe-retention-days must be 1 or more.")
    if not 0 <= settings.quality_floor <= 100:
        raise InvalidParameterException("--quality-floor must be a percentage from 0 to 100.")
    if settings.retention_every < 0:
        raise InvalidParameterException("--retention-every must be 0 (never) or more seconds.")


def check_video_settings(settings: ServeSettings) -> None:
    if settings.video_workers < 1 or settings.max_video_jobs < 1:
        raise InvalidParameterException("--video-workers and --max-video-jobs must be 1 or more.")
    if not (settings.job_expiry > 0 and settings.max_video_bytes > 0 and settings.max_video_seconds > 0):
        raise InvalidParameterException("--job-expiry, --max-video-bytes and --max-video-seconds must be more than 0.")
    sns_topics(settings.sns_topics)


def parse_job_expiry(text: str) -> float:
    """``--job-expiry``: seconds (``604800``) or a duration (``7d``, ``12h``, ``30m``, ``1h30m``)."""
    from faceprint.server.keys import parse_duration

    try:
        seconds = float(text)
    except ValueError:
        seconds = parse_duration(text).total_seconds()
    if not seconds > 0 or seconds == float("inf"):
        raise InvalidParameterException(f"--job-expiry {text} must be a number of seconds more than 0, or a "
                                        "duration such as 7d, 12h or 30m.")
    return seconds


def sns_topics(specs: list[str]) -> dict[str, str]:
    """``--sns-topic ARN=URL`` specs as a mapping; the ARN must be an SNS topic ARN (as Rekognition's
    model has it) and the URL an http or https one."""
    from faceprint.video.service import check_sns_topic

    topics: dict[str, str] = {}
    for spec in specs:
        arn, sep, url = spec.partition("=")
        if not sep:
            raise InvalidParameterException(f"--sns-topic {spec!r} must be ARN=URL.")
        check_sns_topic(arn, url)
        if arn in topics:
            raise InvalidParameterException(f"--sns-topic {arn} is given twice.")
        topics[arn] = url
    return topics


def guard_settings(settings: ServeSettings, max_connections: int) -> GuardSettings:
    return GuardSettings(header_timeout=settings.header_timeout, idle_timeout=settings.idle_timeout,
                         send_timeout=settings.body_timeout,
                         max_connections=max_connections, max_connections_per_ip=settings.max_connections_per_ip,
                         tls_cert=settings.tls_cert, tls_key=settings.tls_key)


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (worker processes inherit
    it); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def connection_cap(requested: int | None, fd_limit: int) -> int:
    """``--max-connections``, checked against the file handles a worker may open."""
    room = fd_limit - FD_RESERVE
    if requested is None:
        if room < 1:
            raise InvalidParameterException(f"This process may open only {fd_limit} files (ulimit -n): too few to "
                                            "serve; raise the limit.")
        return min(DEFAULT_MAX_CONNECTIONS, room)
    if requested > room:
        raise InvalidParameterException(
            f"--max-connections {requested} needs more file handles than this process may open: its limit is "
            f"{fd_limit} (ulimit -n), {FD_RESERVE} of them kept for models, database and logs, so at most "
            f"{max(room, 0)} connections. Lower --max-connections or raise the hard limit.")
    return requested


def build_app(settings: ServeSettings) -> Starlette:
    """The app of one worker process, from its settings."""
    from faceprint.imaging import ImageLimits
    from faceprint.service import Faceprint

    limits = ImageLimits(max_bytes=settings.max_image_bytes) if settings.max_image_bytes else None
    share = max(1, (os.cpu_count() or 1) // settings.workers)  # each worker's part of the cores
    buckets = None
    if settings.buckets or settings.s3_endpoint_url:
        from faceprint.server.s3 import Buckets

        buckets = Buckets.from_specs(settings.buckets, endpoint_url=settings.s3_endpoint_url,
                                     region=settings.s3_region, access_key_id=settings.s3_access_key_id,
                                     secret_access_key=settings.s3_secret_access_key)
    flags = flags_of(dataclasses.asdict(settings))
    fp = Faceprint(settings.home, profile=settings.profile, limits=limits,
                   threads=0 if settings.workers == 1 else share, region=settings.region,
                   video=video_settings(settings, buckets), streams=stream_settings(flags),
                   audit=audit_settings(settings), store_url=settings.store_url, index_url=settings.index_url)
    if fp.store_url:  # a store elsewhere is reached (and migrated) now: a bad URL or login fails at start
        fp.store  # noqa: B018
    keys = None
    if settings.auth:
        from faceprint.server.pgkeys import open_keys

        keys = open_keys(fp.home, fp.store_url)
    options = AppOptions(inference_threads=settings.threads or share, body_timeout=settings.body_timeout,
                         metrics_dir=Path(settings.metrics_dir) if settings.metrics_dir else None,
                         video_runner=buckets is not None, retention_every=settings.retention_every,
                         processes=settings.workers,
                         **_streams_options(settings, fp, flags))
    return create_app(fp, keys=keys, buckets=buckets, options=options)


def audit_settings(settings: ServeSettings) -> Any:
    """The server's :class:`faceprint.audit.config.AuditSettings`: the record on, and the two-person
    rule on for the collections it creates."""
    from faceprint.audit.config import AuditSettings

    return AuditSettings(store_probes=settings.store_probes, retention_days=settings.audit_retention_days,
                         probe_retention_days=settings.probe_retention_days, quality_floor=settings.quality_floor,
                         two_person_default=True, durable=settings.durable_audit)


def _streams_options(settings: ServeSettings, fp: Any, flags: StreamFlags) -> dict[str, Any]:
    """One process serving: it runs the home's stream host once streams are configured (at startup, or
    when they are later), or from the first StartStreamProcessor. Several: the server's supervisor runs it."""
    if settings.no_streams or settings.streams_file is not None:
        return {}
    factory = runner_factory(fp.home, flags, profile=fp.profile.name, region=settings.region,
                             models_dir=fp.models.root, store_url=fp.store_url,
                             lease_seconds=settings.stream_lease)
    return {"streams_runner": factory, "streams_start": lambda: wants_runner(fp.home, flags)}


def stream_settings(flags: StreamFlags) -> Any:
    """The Faceprint's :class:`faceprint.streams.service.StreamSettings`: the server's streams and sinks
    over the home's own."""
    from faceprint.streams.service import StreamSettings

    return StreamSettings(sources=flags.sources, data_streams=flags.data_streams)


def video_settings(settings: ServeSettings, buckets: Any) -> Any:
    """The Faceprint's :class:`faceprint.video.service.VideoSettings` from the server's."""
    from faceprint.video.decode import VideoLimits
    from faceprint.video.service import VideoSettings

    return VideoSettings(workers=settings.video_workers, max_jobs=settings.max_video_jobs,
                         expiry_seconds=settings.job_expiry,
                         limits=VideoLimits(max_bytes=settings.max_video_bytes,
                                            max_seconds=settings.max_video_seconds),
                         sns_topics=sns_topics(settings.sns_topics), buckets=buckets)


def app_from_environment() -> Starlette:
    """uvicorn's app factory in each worker process: the settings come in an environment variable."""
    configure_logging(json.loads(os.environ[SETTINGS_ENV]).get("log_level", "info"))
    return build_app(ServeSettings(**json.loads(os.environ[SETTINGS_ENV])))


def _warn_without_keys(settings: ServeSettings) -> None:
    if not settings.auth:
        return
    from faceprint.server.pgkeys import open_keys
    from faceprint.service import default_home

    home = Path(settings.home) if settings.home else default_home()
    store = open_keys(home, settings.store_url)
    found = store.list()
    store.close()
    if not found:
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


def _warn_uncalibrated(settings: ServeSettings) -> None:
    """An operator profile not yet calibrated: its thresholds mean no measured false-match rate."""
    from faceprint.models.profiles import DEFAULT_PROFILE, get_profile
    from faceprint.service import default_home

    home = Path(settings.home) if settings.home else default_home()
    profile = get_profile(settings.profile or os.environ.get("FACEPRINT_PROFILE") or DEFAULT_PROFILE, home)
    if not profile.calibrated:
        logging.getLogger("faceprint.server").warning(
            "profile %s is not calibrated: its similarity is a provisional map of the cosine and its thresholds "
            "mean no measured false-match rate; run `faceprint calibrate --profile %s` (docs/models.md)",
            profile.name, profile.name)


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
    check_settings(settings)
    guard = guard_settings(settings, connection_cap(settings.max_connections, raise_fd_limit()))
    configure_logging(settings.log_level)
    _warn_without_keys(settings)
    _hint_workers(settings)
    _warn_uncalibrated(settings)
    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": settings.log_level,
                              "access_log": False, "timeout_graceful_shutdown": settings.graceful_timeout}
    if settings.workers == 1:
        _run_one(GuardedConfig(build_app(settings), guard, **common))
        return
    build_app(dataclasses.replace(settings, no_streams=True))  # fail here, once, on bad settings
    share = Path(tempfile.mkdtemp(prefix="faceprint-metrics-"))
    holder = RunnerHolder(None)
    try:
        flags = stream_flags(settings.streams, settings.data_streams)
        flags.write(share / "streams.json")
        worker = dataclasses.replace(settings, metrics_dir=str(share), streams=[], data_streams=[],
                                     streams_file=str(share / "streams.json"))
        os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(worker))
        holder = _supervisor_runner(settings, flags)
        _run_workers(GuardedConfig("faceprint.server.run:app_from_environment", guard, factory=True,
                                   workers=settings.workers, **common))
    finally:
        holder.close()
        shutil.rmtree(share, ignore_errors=True)


def _supervisor_runner(settings: ServeSettings, flags: StreamFlags) -> RunnerHolder:
    """The stream host of a server of several worker processes, run by its supervisor (the
    workers' StartStreamProcessor cannot start it, so it runs from the start)."""
    from faceprint.service import default_home

    if settings.no_streams:
        return RunnerHolder(None)
    home = Path(settings.home) if settings.home else default_home()
    holder = RunnerHolder(runner_factory(home, flags, profile=settings.profile, region=settings.region,
                                         models_dir=models_dir(), store_url=settings.store_url,
                                         lease_seconds=settings.stream_lease))
    holder.ensure_started()
    return holder


def _run_one(config: GuardedConfig) -> None:
    """What ``uvicorn.run`` does for one process, with faceprint's config."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _run_workers(config: GuardedConfig) -> None:
    """uvicorn's multiprocess supervisor, on a socket made by :func:`listening_socket`; the config
    (its guard settings with it) is pickled to each worker."""
    from uvicorn.supervisors import Multiprocess

    sock = listening_socket(config.host, config.port)
    scheme = "https" if config.guard.tls_cert else "http"
    logging.getLogger("faceprint.server").info("listening on %s://%s:%d with %d workers (at most %d connections "
                                               "each)", scheme, config.host, sock.getsockname()[1], config.workers,
                                               config.guard.max_connections)
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
