"""The ``faceprint`` command line: each operation prints Rekognition's JSON.

On error it prints the AWS-style error JSON (``__type``, ``Code``, ``Message``) on
stderr and exits non-zero (1 for a failed operation, 2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from faceprint.errors import FaceprintError, InvalidParameterException, ResourceNotFoundException


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _print_error(InvalidParameterException(f"{self.prog}: {message}"))
        self.print_usage(sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="faceprint", description="Face and text recognition with Rekognition's operations; "
                     "every command prints Rekognition's JSON.")
    parser.add_argument("--home", help="faceprint home folder (default $FACEPRINT_HOME or ~/.faceprint)")
    parser.add_argument("--profile", help="model profile: accurate (default), fast or an operator profile "
                        "(`faceprint models list`)")
    parser.add_argument("--max-image-bytes", type=int, help="largest encoded image accepted (default 5 MB)")
    _backend_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("detect-faces", help="DetectFaces on an image file ('-' reads stdin)")
    p.add_argument("image")
    p.add_argument("--attributes", nargs="+", default=["DEFAULT"], metavar="ATTR",
                   help="DEFAULT, ALL (every attribute, 30 landmarks) or names such as AGE_RANGE EMOTIONS")

    p = sub.add_parser("compare-faces", help="CompareFaces: SOURCE's largest face against TARGET")
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("--similarity-threshold", type=float, default=80.0)
    p.add_argument("--quality-filter", default="NONE")
    _case_arguments(p)

    p = sub.add_parser("detect-text", help="DetectText: lines and words of text in an image ('-' reads stdin)")
    p.add_argument("image")
    p.add_argument("--filters", metavar="JSON",
                   help='Rekognition Filters, e.g. \'{"WordFilter": {"MinConfidence": 90}}\'')

    _collection_commands(sub)
    from faceprint.cli_video import add_video_commands

    add_video_commands(sub)
    from faceprint.cli_streams import add_stream_commands

    add_stream_commands(sub)
    _keys_commands(sub)
    for module in _accountability_clis():
        module.add_commands(sub)
    _serve_command(sub)

    from faceprint import cli_models

    cli_models.add_commands(sub)
    return parser


def _accountability_clis() -> list[Any]:
    """The command modules of accountability: audit, review and collection settings, erase, console users;
    calibrate; migrate, backup, restore and doctor (each has ``add_commands``, ``COMMANDS`` and ``run``)."""
    from faceprint import cli_audit, cli_calibrate, cli_console, cli_erase, cli_ops, cli_review

    return [cli_audit, cli_review, cli_erase, cli_console, cli_calibrate, cli_ops]


AUDITED = frozenset({"compare-faces", "delete-collection", "delete-faces", "search-faces", "search-faces-by-image",
                     "search-users", "search-users-by-image", "index-faces"})
"""Commands recorded in the home's audit log: they take --case and --purpose."""


def _case_arguments(p: argparse.ArgumentParser) -> None:
    """An audited command's ``--case`` and ``--purpose`` (not ``serve``'s audit settings: :func:`_audit_arguments`)."""
    p.add_argument("--case", help="the case reference this is for (kept in the audit record)")
    p.add_argument("--purpose", help="why this is done (kept in the audit record)")


def _declared(args: argparse.Namespace) -> dict[str, Any]:
    """The purpose and case an audited command declares (the caller is the OS user)."""
    return {"purpose": args.purpose, "case": args.case}


def _collection_commands(sub: Any) -> None:
    def command(name: str, help_text: str, collection: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        if collection:
            p.add_argument("--collection-id", required=True)
        if name in AUDITED:
            _case_arguments(p)
        return p

    command("create-collection", "CreateCollection")
    command("describe-collection", "DescribeCollection")
    command("delete-collection", "DeleteCollection")
    p = command("list-collections", "ListCollections", collection=False)
    p.add_argument("--max-results", type=int, default=1000)
    p.add_argument("--next-token")
    p = command("list-faces", "ListFaces")
    p.add_argument("--max-results", type=int, default=1000)
    p.add_argument("--next-token")
    p.add_argument("--face-ids", nargs="+")
    p = command("delete-faces", "DeleteFaces")
    p.add_argument("--face-ids", nargs="+", required=True)
    p = command("search-faces", "SearchFaces: faces like a stored face")
    p.add_argument("--face-id", required=True)
    p.add_argument("--max-faces", type=int, default=80)
    p.add_argument("--face-match-threshold", type=float, default=80.0)
    p = command("search-faces-by-image", "SearchFacesByImage: the largest face of IMAGE")
    p.add_argument("image")
    p.add_argument("--max-faces", type=int, default=80)
    p.add_argument("--face-match-threshold", type=float, default=80.0)
    p.add_argument("--quality-filter", default="NONE")
    for name in ("create-user", "delete-user"):
        p = command(name, name.replace("-", " ").title().replace(" ", ""))
        p.add_argument("--user-id", required=True)
        p.add_argument("--client-request-token")
    p = command("list-users", "ListUsers")
    p.add_argument("--max-results", type=int, default=100)
    p.add_argument("--next-token")
    p = command("associate-faces", "AssociateFaces: attach faces to a user")
    p.add_argument("--user-id", required=True)
    p.add_argument("--face-ids", nargs="+", required=True)
    p.add_argument("--user-match-threshold", type=float, default=75.0)
    p.add_argument("--client-request-token")
    p = command("disassociate-faces", "DisassociateFaces")
    p.add_argument("--user-id", required=True)
    p.add_argument("--face-ids", nargs="+", required=True)
    p.add_argument("--client-request-token")
    p = command("search-users", "SearchUsers: users like a stored face or user")
    p.add_argument("--user-id")
    p.add_argument("--face-id")
    p.add_argument("--user-match-threshold", type=float, default=80.0)
    p.add_argument("--max-users", type=int, default=100)
    p = command("search-users-by-image", "SearchUsersByImage: users like the largest face of IMAGE")
    p.add_argument("image")
    p.add_argument("--user-match-threshold", type=float, default=80.0)
    p.add_argument("--max-users", type=int, default=100)
    p.add_argument("--quality-filter", default="NONE")
    p = command("index-faces", "IndexFaces for one image file; for folders or several paths, a bulk "
                "import on all cores that resumes where it stopped")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--external-image-id", help="one image: its ExternalImageId (default: the file name)")
    p.add_argument("--external-ids", metavar="CSV", help="bulk: path,external_image_id rows")
    p.add_argument("--max-faces", type=int)
    p.add_argument("--quality-filter", default="AUTO")
    p.add_argument("--detection-attributes", nargs="+", default=["DEFAULT"], metavar="ATTR",
                   help="one image: the FaceDetails' attributes, as detect-faces --attributes")
    p.add_argument("--workers", type=int, help="bulk: worker processes (default: one per core)")
    p.add_argument("--jsonl", action="store_true", help="bulk: print one JSON line per image as it is committed")


def _keys_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="access keys for `faceprint serve` (AWS Signature V4)")
    ksub = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = ksub.add_parser(name, help=help_text)
        # --home may also follow the subcommand; SUPPRESS keeps a --home given before it
        p.add_argument("--home", default=argparse.SUPPRESS, help="faceprint home folder holding the keys")
        return p

    p = command("create", "a new key, printed as `aws iam create-access-key` prints it")
    p.add_argument("--name", required=True, help="who the key is for (like an IAM user name)")
    p.add_argument("--operations", metavar="OP,OP", help="Rekognition operations it may call (default: all)")
    p.add_argument("--collections", metavar="PAT,PAT", help="collection id patterns, e.g. 'team-a-*' (default: all)")
    _expiry_arguments(p, "(default: never)")
    _rate_arguments(p)
    p.add_argument("--purpose", help="what its searches are for, recorded in their audit entries unless a request "
                   "declares another (X-Faceprint-Purpose)")
    p.add_argument("--require-case", action="store_true", help="its searches must give a case reference "
                   "(X-Faceprint-Case), else AccessDeniedException")
    p.add_argument("--refuse-low-quality", action="store_true", help="refuse its searches whose probe is under "
                   "the quality floor (InvalidParameterException)")
    command("list", "the keys (without their secrets)")
    p = command("delete", "delete a key; requests signed with it are refused from then on")
    p.add_argument("access_key_id", metavar="ACCESS_KEY_ID")
    p = command("rotate", "a new key (same name, policy and rate limit) replacing ACCESS_KEY_ID, which keeps "
                "working for the grace period; printed as `aws iam create-access-key` prints it")
    p.add_argument("access_key_id", metavar="ACCESS_KEY_ID")
    p.add_argument("--grace", default="24h", metavar="DURATION",
                   help="how long the old key keeps working, e.g. 24h, 30m, 0s (default 24h)")
    _expiry_arguments(p, "of the new key (default: the old key's lifetime, or never)")
    p = command("update", "change a key's status, expiration or rate limit (prints nothing)")
    p.add_argument("access_key_id", metavar="ACCESS_KEY_ID")
    p.add_argument("--status", choices=["Active", "Inactive"], help="an Inactive key is refused until Active again")
    when = _expiry_arguments(p, "(a past time expires it now)")
    when.add_argument("--no-expiry", action="store_true", help="the key never expires")
    rate = _rate_arguments(p)
    rate.add_argument("--no-rate", action="store_true", help="remove the key's rate limit")
    purpose = p.add_mutually_exclusive_group()
    purpose.add_argument("--purpose", help="what its searches are for")
    purpose.add_argument("--no-purpose", action="store_true", help="remove the key's purpose")
    p.add_argument("--require-case", action=argparse.BooleanOptionalAction, default=None,
                   help="whether its searches must give a case reference")
    p.add_argument("--refuse-low-quality", action=argparse.BooleanOptionalAction, default=None,
                   help="whether its searches with a low-quality probe are refused")


def _expiry_arguments(p: argparse.ArgumentParser, what: str) -> Any:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--expires-in", metavar="DURATION", help=f"e.g. 90d, 12h, 1h30m, 2w {what}")
    group.add_argument("--expires-at", metavar="TIME", help=f"ISO 8601, e.g. 2027-03-01T00:00:00Z {what}")
    return group


def _rate_arguments(p: argparse.ArgumentParser) -> Any:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--rate", type=float, metavar="R", help="requests a second it may make on average "
                       "(per server process); more answer ThrottlingException (default: no limit)")
    p.add_argument("--burst", type=int, metavar="B", help="requests it may make at once (default: R, at least 1)")
    return group


def _keys(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from faceprint.server.keys import KEEP, expiration_from, parse_duration
    from faceprint.server.pgkeys import open_keys
    from faceprint.server.ratelimit import RateLimit
    from faceprint.service import default_home

    def split(value: str | None) -> list[str] | None:
        return None if value is None else value.split(",")

    home = Path(args.home) if args.home else default_home()
    store = open_keys(home, args.store, on_change=_keys_audit(home))
    if args.keys_command == "create":
        if args.burst is not None and args.rate is None:
            raise InvalidParameterException("--burst needs --rate.")
        return store.create(args.name, split(args.operations), split(args.collections),
                            expiration=expiration_from(args.expires_in, args.expires_at),
                            rate_limit=None if args.rate is None else RateLimit.of(args.rate, args.burst),
                            purpose=args.purpose, require_case=args.require_case,
                            refuse_low_quality=args.refuse_low_quality).to_iam_dict()
    if args.keys_command == "list":
        return {"AccessKeyMetadata": [key.metadata() for key in store.list()]}
    if args.keys_command == "rotate":
        given = args.expires_in is not None or args.expires_at is not None
        return store.rotate(args.access_key_id, parse_duration(args.grace),
                            expiration_from(args.expires_in, args.expires_at) if given else KEEP).to_iam_dict()
    if args.keys_command == "update":
        _update_key(store, args)
        return None
    store.delete(args.access_key_id)
    return None


def _update_key(store: Any, args: argparse.Namespace) -> None:
    """``keys update``: what is not given stays; --burst alone keeps the rate, --rate alone the burst."""
    from faceprint.server.keys import KEEP, expiration_from
    from faceprint.server.ratelimit import RateLimit

    expiration: Any = KEEP
    if args.no_expiry or args.expires_in is not None or args.expires_at is not None:
        expiration = None if args.no_expiry else expiration_from(args.expires_in, args.expires_at)
    if args.no_rate and args.burst is not None:
        raise InvalidParameterException("--burst and --no-rate contradict each other.")
    rate_limit: Any = None if args.no_rate else KEEP
    key = store.get(args.access_key_id)
    if key is None:
        raise ResourceNotFoundException(f"The access key with id {args.access_key_id} cannot be found.")
    if args.rate is not None or args.burst is not None:
        rate_limit = RateLimit.changed(key.rate_limit, args.rate, args.burst)
    duties = {name: value for name, value in (("purpose", None if args.no_purpose else args.purpose),
                                              ("require_case", args.require_case),
                                              ("refuse_low_quality", args.refuse_low_quality))
              if value is not None or (name == "purpose" and args.no_purpose)}
    if args.status is None and expiration is KEEP and rate_limit is KEEP and not duties:
        raise InvalidParameterException("Nothing to update: give --status, --expires-in, --expires-at, --no-expiry, "
                                        "--rate, --burst, --no-rate, --purpose, --no-purpose, --[no-]require-case "
                                        "or --[no-]refuse-low-quality.")
    store.update(args.access_key_id, status=args.status, expiration=expiration, rate_limit=rate_limit, **duties)


def _keys_audit(home: Any) -> Any:
    """What records each key change in the home's audit log (``HOME/audit``), as the OS user running
    the command: a change whose entry cannot be written is not made."""
    import time

    def record(operation: str, key: Any, details: dict[str, Any]) -> None:
        from faceprint.audit.backend import open_audit_log
        from faceprint.audit.caller import os_caller
        from faceprint.audit.log import Entry

        now = time.time()
        log = open_audit_log(home)  # the store's where --store / FACEPRINT_STORE names PostgreSQL
        try:
            log.append(Entry(operation, os_caller(), now, now, details={
                "AccessKeyId": key.access_key_id, "UserName": key.user_name, **details}))
        finally:
            log.close()

    return record


def _backend_arguments(p: argparse.ArgumentParser, after_command: bool = False) -> None:
    """``--store URL`` and ``--index URL`` (docs/scale.md); after ``serve`` too, SUPPRESS keeping one given before."""
    default = argparse.SUPPRESS if after_command else None
    p.add_argument("--store", metavar="URL", default=default,
                   help="where collections and faces are kept: sqlite:///PATH or postgresql://[USER@]HOST[:PORT]/DB "
                   "(credentials from libpq's environment: PGPASSWORD, PGPASSFILE...; default $FACEPRINT_STORE, "
                   "else HOME/faceprint.db)")
    p.add_argument("--index", metavar="URL", default=default,
                   help="which engine indexes the faces: milvus://HOST[:PORT], or file:///FOLDER for the embedded "
                   "index elsewhere than HOME/indexes (default $FACEPRINT_INDEX, else the embedded index)")


def _serve_command(sub: Any) -> None:
    p = sub.add_parser("serve", help="a Rekognition-compatible HTTP server (boto3 and the AWS CLI work against it)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    # --home and --profile may also follow the subcommand; SUPPRESS keeps one given before it
    p.add_argument("--home", default=argparse.SUPPRESS, help="faceprint home: collections and access keys")
    p.add_argument("--profile", default=argparse.SUPPRESS,
                   help="model profile: accurate (default), fast or an operator profile (faceprint models list)")
    p.add_argument("--max-image-bytes", type=int, default=argparse.SUPPRESS,
                   help="largest Image.Bytes accepted (default 5 MB; may be raised or lowered)")
    _backend_arguments(p, after_command=True)
    p.add_argument("--bucket", action="append", default=[], metavar="NAME=DIR",
                   help="serve Image.S3Object from a local folder as bucket NAME (repeatable); a bare NAME "
                   "limits the S3 endpoint to the buckets so named")
    p.add_argument("--s3-endpoint-url", metavar="URL",
                   help="S3-compatible endpoint for the other buckets (credentials: boto3's usual chain)")
    p.add_argument("--s3-region", metavar="REGION", help="region to sign S3 requests for (default us-east-1)")
    p.add_argument("--region", default="us-east-1", metavar="REGION",
                   help="the region this server answers as, in collection ARNs (default us-east-1)")
    p.add_argument("--s3-access-key-id", metavar="ID", help="the S3 endpoint's access key id (with the secret)")
    p.add_argument("--s3-secret-access-key", metavar="SECRET",
                   help="the S3 endpoint's secret access key (visible to `ps`: prefer AWS_SECRET_ACCESS_KEY)")
    p.add_argument("--no-auth", action="store_true", help="accept unsigned requests (loopback hosts only)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="inference threads per worker (default: its share of the cores)")
    p.add_argument("--body-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="seconds a request body may take to arrive (default 30); then RequestTimeoutException. "
                   "Also how long a client may leave its answers unread, the socket's buffers full")
    p.add_argument("--graceful-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="seconds shutdown waits for requests in progress (default 30)")
    _connection_arguments(p)
    _video_arguments(p)
    _stream_arguments(p)
    _audit_arguments(p)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="'warning' turns the access log off")


def _audit_arguments(p: argparse.ArgumentParser) -> None:
    """The audit record's and retention's settings of ``faceprint serve`` (docs/audit.md)."""
    p.add_argument("--store-probes", action="store_true",
                   help="keep each search's probe image beside its digest in the audit record (HOME/audit/probes)")
    p.add_argument("--audit-retention-days", type=int, default=183, metavar="DAYS",
                   help="keep audit entries at least this long (default 183: six months)")
    p.add_argument("--probe-retention-days", type=int, metavar="DAYS",
                   help="erase stored probes after this many days (default: kept as long as their entries)")
    p.add_argument("--quality-floor", type=float, default=90.0, metavar="PERCENT",
                   help="flag probes whose measured rank-1 at their quality is under this (default 90)")
    p.add_argument("--durable-audit", action="store_true",
                   help="flush every audit entry to disk before answering (slower)")
    p.add_argument("--retention-every", type=float, default=3600.0, metavar="SECONDS",
                   help="apply the collections' face retention periods this often (default 3600; 0: never)")


def _connection_arguments(p: argparse.ArgumentParser) -> None:
    """``serve``'s defences against slow and idle clients, and TLS (docs/server.md, Connections)."""
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="seconds from a connection's start, or its previous answer, until a request's headers are "
                   "complete (default 10); then the connection is closed")
    p.add_argument("--idle-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="seconds a keep-alive connection may sit idle between requests (default 5)")
    p.add_argument("--max-connections", type=int, metavar="N",
                   help="connections per worker process (default 4096, fewer if `ulimit -n` is low); past it the "
                   "longest-idle connection is closed, or the new one if none is idle")
    p.add_argument("--max-connections-per-ip", type=int, default=0, metavar="N",
                   help="connections per client address and worker (default: no cap; behind a proxy every client "
                   "has the proxy's address, so this caps them all together)")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate (chain), with --tls-key")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's PEM private key (unencrypted)")


def _video_arguments(p: argparse.ArgumentParser) -> None:
    """``serve``'s stored-video settings (docs/video.md)."""
    p.add_argument("--video-workers", type=int, default=1, metavar="N",
                   help="worker processes running video jobs, for the whole home (default 1)")
    p.add_argument("--max-video-jobs", type=int, default=20, metavar="N",
                   help="video jobs queued or running at once (default 20, as Rekognition); more answer "
                   "LimitExceededException")
    p.add_argument("--job-expiry", default="7d", metavar="DURATION",
                   help="how long a finished video job's results are kept: seconds or e.g. 7d, 12h, 30m (default 7d)")
    p.add_argument("--max-video-bytes", type=int, default=10 * 1024**3, metavar="N",
                   help="largest video accepted, in bytes (default 10 GB); larger: VideoTooLargeException")
    p.add_argument("--max-video-seconds", type=float, default=6 * 3600.0, metavar="S",
                   help="longest video accepted, in seconds (default 6 hours); longer: VideoTooLargeException")
    p.add_argument("--sns-topic", action="append", default=[], metavar="ARN=URL",
                   help="POST an SNS-style notification to URL when a job that names topic ARN ends (repeatable)")


def _stream_arguments(p: argparse.ArgumentParser) -> None:
    """``serve``'s live camera streams (docs/streams.md)."""
    p.add_argument("--stream", action="append", default=[], metavar="NAME=URL",
                   help="the camera of Kinesis video stream NAME (repeatable): rtsp://, rtsps://, http(s):// MJPEG or "
                   "HLS, udp://, rtsp-listen://, file://; over the home's `faceprint streams` (never logged; visible "
                   "to `ps`: prefer `faceprint streams add NAME -`)")
    p.add_argument("--data-stream", action="append", default=[], metavar="NAME=SINK",
                   help="a sink of Kinesis data stream NAME (repeatable, also per NAME): file:PATH, http(s):// "
                   "webhook, kinesis:ENDPOINT_URL#STREAM; optional ;matches-only ;snapshots")
    p.add_argument("--no-streams", action="store_true",
                   help="run no stream processors from this server (another process runs the home's)")
    p.add_argument("--stream-lease", type=float, default=15.0, metavar="S",
                   help="with a PostgreSQL store: seconds a node's lease on a stream processor lasts unrenewed, "
                   "after which another node takes it over (default 15; give every node the same)")


def _serve(args: argparse.Namespace) -> None:
    from faceprint.server.run import ServeSettings, parse_job_expiry, serve

    serve(ServeSettings(host=args.host, port=args.port, home=args.home, profile=args.profile,
                        store_url=args.store, index_url=args.index,
                        max_image_bytes=args.max_image_bytes, buckets=args.bucket,
                        s3_endpoint_url=args.s3_endpoint_url, s3_region=args.s3_region,
                        s3_access_key_id=args.s3_access_key_id, s3_secret_access_key=args.s3_secret_access_key,
                        auth=not args.no_auth, region=args.region,
                        workers=args.workers, threads=args.threads, log_level=args.log_level,
                        body_timeout=args.body_timeout, graceful_timeout=args.graceful_timeout,
                        header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
                        max_connections=args.max_connections, max_connections_per_ip=args.max_connections_per_ip,
                        tls_cert=args.tls_cert, tls_key=args.tls_key,
                        video_workers=args.video_workers, max_video_jobs=args.max_video_jobs,
                        job_expiry=parse_job_expiry(args.job_expiry), max_video_bytes=args.max_video_bytes,
                        max_video_seconds=args.max_video_seconds, sns_topics=args.sns_topic,
                        streams=args.stream, data_streams=args.data_stream, no_streams=args.no_streams,
                        stream_lease=args.stream_lease,
                        store_probes=args.store_probes, audit_retention_days=args.audit_retention_days,
                        probe_retention_days=args.probe_retention_days, quality_floor=args.quality_floor,
                        durable_audit=args.durable_audit, retention_every=args.retention_every))


def main(argv: list[str] | None = None) -> int:
    from faceprint.backends import exported

    args = build_parser().parse_args(argv)
    try:
        with exported(args.store, args.index):  # the processes a command starts use them too
            output = _run(args)
    except FaceprintError as exc:
        _print_error(exc)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback for the user
        _print_error(FaceprintError(f"{type(exc).__name__}: {exc}"))
        return 1
    from faceprint.cli_video import Printed

    if isinstance(output, Printed):  # printed already (a table, a failed job's JSON)
        return output.status
    try:
        if output is not None:  # e.g. `keys delete` prints nothing, like `aws iam delete-access-key`
            print(json.dumps(output, indent=2))
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
    return 0


def _run(args: argparse.Namespace) -> Any:
    if args.command == "keys":
        return _keys(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "video":
        from faceprint.cli_video import run_video

        return run_video(args)
    if args.command in ("streams", "data-streams", "stream-processor"):
        from faceprint.cli_streams import run_streams

        return run_streams(args)
    for module in _accountability_clis():
        if args.command in module.COMMANDS:
            return module.run(args)
    if args.command == "models":
        from faceprint import cli_models

        return cli_models.run(args)
    fp = _faceprint(args)
    if args.command == "detect-faces":
        return fp.detect_faces(_image(args.image), args.attributes).to_dict()
    if args.command == "compare-faces":
        return fp.compare_faces(_image(args.source), _image(args.target),
                                args.similarity_threshold, args.quality_filter, **_declared(args)).to_dict()
    if args.command in _COLLECTION_COMMANDS:
        try:
            return _COLLECTION_COMMANDS[args.command](fp, args)
        finally:  # a one-shot process: leave a current index file of a large collection for the next
            from faceprint.index.cache import SAVE_MIN

            fp.save_indexes(min_faces=SAVE_MIN, grown_only=True)
    if args.command == "index-faces":
        return _index_faces(fp, args)
    if args.command == "detect-text":
        return fp.detect_text(_image(args.image), _json_arg("--filters", args.filters)).to_dict()
    raise InvalidParameterException(f"unknown command {args.command!r}")


_COLLECTION_COMMANDS = {
    "create-collection": lambda fp, a: fp.create_collection(a.collection_id).to_dict(),
    "describe-collection": lambda fp, a: fp.describe_collection(a.collection_id).to_dict(),
    "delete-collection": lambda fp, a: fp.delete_collection(a.collection_id, **_declared(a)).to_dict(),
    "list-collections": lambda fp, a: fp.list_collections(a.max_results, a.next_token).to_dict(),
    "list-faces": lambda fp, a: fp.list_faces(a.collection_id, a.max_results, a.next_token, a.face_ids).to_dict(),
    "delete-faces": lambda fp, a: fp.delete_faces(a.collection_id, a.face_ids, **_declared(a)).to_dict(),
    "search-faces": lambda fp, a: fp.search_faces(a.collection_id, a.face_id, a.max_faces,
                                                  a.face_match_threshold, **_declared(a)).to_dict(),
    "search-faces-by-image": lambda fp, a: fp.search_faces_by_image(
        a.collection_id, _image(a.image), a.max_faces, a.face_match_threshold, a.quality_filter,
        **_declared(a)).to_dict(),
    "create-user": lambda fp, a: fp.create_user(a.collection_id, a.user_id, a.client_request_token).to_dict(),
    "delete-user": lambda fp, a: fp.delete_user(a.collection_id, a.user_id, a.client_request_token).to_dict(),
    "list-users": lambda fp, a: fp.list_users(a.collection_id, a.max_results, a.next_token).to_dict(),
    "associate-faces": lambda fp, a: fp.associate_faces(a.collection_id, a.user_id, a.face_ids,
                                                        a.user_match_threshold, a.client_request_token).to_dict(),
    "disassociate-faces": lambda fp, a: fp.disassociate_faces(a.collection_id, a.user_id, a.face_ids,
                                                              a.client_request_token).to_dict(),
    "search-users": lambda fp, a: fp.search_users(a.collection_id, a.user_id, a.face_id, a.user_match_threshold,
                                                  a.max_users, **_declared(a)).to_dict(),
    "search-users-by-image": lambda fp, a: fp.search_users_by_image(
        a.collection_id, _image(a.image), a.user_match_threshold, a.max_users, a.quality_filter,
        **_declared(a)).to_dict(),
}


def _index_faces(fp: Any, args: argparse.Namespace) -> Any:
    from pathlib import Path

    from faceprint.bulk import BulkImporter, external_id_for, find_images, read_external_ids
    from faceprint.progress import ProgressBar

    if len(args.paths) == 1 and Path(args.paths[0]).is_file() and not args.external_ids:
        path = Path(args.paths[0])
        return fp.index_faces(args.collection_id, path, args.external_image_id or external_id_for(path),
                              detection_attributes=args.detection_attributes, max_faces=args.max_faces,
                              quality_filter=args.quality_filter, **_declared(args)).to_dict()
    if args.detection_attributes != ["DEFAULT"]:
        raise InvalidParameterException("--detection-attributes works on one image; a bulk import prints no "
                                        "FaceDetails.")

    def on_image(path: Any, record: dict[str, Any]) -> None:
        if args.jsonl:
            print(json.dumps(record), flush=True)

    bar = ProgressBar(sys.stderr, unit="images")
    from faceprint.audit.caller import os_caller

    importer = BulkImporter(fp, args.collection_id, args.workers, args.max_faces, args.quality_filter,
                            progress=lambda done, total, start: bar.update(done, total), on_image=on_image,
                            caller=os_caller(args.purpose, args.case))
    ids = read_external_ids(args.external_ids) if args.external_ids else None
    try:
        return {"Summary": importer.run(find_images(args.paths), ids).to_dict()}
    finally:
        bar.finish()


def _json_arg(name: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidParameterException(f"{name} is not valid JSON: {exc}") from exc


def _faceprint(args: argparse.Namespace) -> Any:
    from faceprint.imaging import ImageLimits
    from faceprint.service import Faceprint

    limits = ImageLimits(max_bytes=args.max_image_bytes) if args.max_image_bytes else None
    return Faceprint(args.home, profile=args.profile, limits=limits, store_url=args.store, index_url=args.index)


def _image(arg: str) -> Any:
    return sys.stdin.buffer.read() if arg == "-" else arg


def _print_error(exc: FaceprintError) -> None:
    print(json.dumps(exc.to_dict()), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
