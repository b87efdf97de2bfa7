"""``faceprint streams``, ``faceprint data-streams`` and ``faceprint stream-processor``: live
camera streams from the command line (docs/streams.md).

``streams`` and ``data-streams`` keep the home's map of Kinesis video stream names to camera URLs
and of Kinesis data stream names to sinks (``HOME/streams/*.json``, 0600). URLs and sink specs may
hold passwords and tokens: ``list`` shows them redacted, ``add`` echoes only the redacted form, and
``add NAME -`` reads the value from stdin so that it never appears on a command line (``ps``).

``stream-processor`` calls the seven operations of the Python API (Rekognition's JSON out) with
the ARNs built from the names and the home's account id, and ``run`` is the home's stream host
in the foreground (until Ctrl-C), for a home that no ``faceprint serve`` runs processors for.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from faceprint.cli import _json_arg
from faceprint.errors import InvalidParameterException

DEFAULT_ROLE = "faceprint"
"""The role name in the RoleArn the CLI sends (Rekognition requires one; faceprint does not use it)."""


def add_stream_commands(sub: Any) -> None:
    """``streams``, ``data-streams`` and ``stream-processor`` on the top-level subparsers ``sub``."""
    _config_commands(sub, "streams", "camera URLs by Kinesis video stream name (the ARN's stream name picks "
                     "the camera)", "URL", "rtsp://user:pass@cam/stream, rtsps://, http(s):// MJPEG or HLS, "
                     "udp://host:port (MPEG-TS), rtsp-listen://host:port/path, file:///path?loop=1; '-' reads it "
                     "from stdin")
    _config_commands(sub, "data-streams", "sinks by Kinesis data stream name (where a processor's records go)",
                     "SINK", "file:/path.jsonl, http(s)://webhook, kinesis:ENDPOINT_URL#STREAM (ENDPOINT_URL may "
                     "be 'aws'), each optionally followed by ;matches-only and ;snapshots; '-' reads it from stdin")
    sp = sub.add_parser("stream-processor", help="stream processors: face search on live cameras (Rekognition's "
                        "CreateStreamProcessor ... DeleteStreamProcessor)")
    psub = sp.add_subparsers(dest="processor_command", required=True, parser_class=type(sp))
    p = _command(psub, "create", "CreateStreamProcessor with FaceSearch (prints its StreamProcessorArn)")
    p.add_argument("--name", required=True)
    p.add_argument("--stream", required=True, metavar="CAMERA", help="the video stream name (`faceprint streams "
                   "add` or `serve --stream`)")
    p.add_argument("--collection", required=True, metavar="COLLECTION_ID")
    p.add_argument("--threshold", type=float, default=80.0, metavar="S", help="FaceMatchThreshold (default 80)")
    p.add_argument("--data-stream", required=True, metavar="NAME", help="the data stream whose sinks get the records")
    p.add_argument("--region", default="us-east-1", help="the region in the ARNs (default us-east-1)")
    p.add_argument("--role-arn", help="RoleArn to record (default arn:aws:iam::ACCOUNT:role/faceprint)")
    p.add_argument("--regions", metavar="JSON", help="RegionsOfInterest (faceprint's extension for face search)")
    for name, text in (("describe", "DescribeStreamProcessor"), ("stop", "StopStreamProcessor"),
                       ("delete", "DeleteStreamProcessor")):
        _command(psub, name, text).add_argument("name", metavar="NAME")
    p = _command(psub, "list", "ListStreamProcessors")
    p.add_argument("--max-results", type=int, default=1000)
    p.add_argument("--next-token")
    p = _command(psub, "start", "StartStreamProcessor (a stream host for the home runs it: `faceprint serve` "
                 "or `faceprint stream-processor run`)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--max-duration", type=int, metavar="S", help="StopSelector.MaxDurationInSeconds (1-120)")
    p = _command(psub, "update", "UpdateStreamProcessor: threshold and regions of interest (faceprint's extensions)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--threshold", type=float, metavar="S", help="a new FaceMatchThreshold")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--regions", metavar="JSON", help="new RegionsOfInterest (a JSON list)")
    group.add_argument("--clear-regions", action="store_true", help="analyse the whole frame again")
    p = _command(psub, "run", "run the home's stream processors in the foreground until Ctrl-C (no server needed)")
    p.add_argument("--region", default="us-east-1", help="the region of kinesis:aws sinks (default us-east-1)")


def _command(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text)
    # --home and --profile may also follow the subcommand; SUPPRESS keeps one given before it
    p.add_argument("--home", default=argparse.SUPPRESS, help="faceprint home folder")
    p.add_argument("--profile", default=argparse.SUPPRESS, help="model profile: accurate (default) or fast")
    return p


def _config_commands(sub: Any, command: str, help_text: str, what: str, forms: str) -> None:
    p = sub.add_parser(command, help=help_text)
    csub = p.add_subparsers(dest=f"{command.replace('-', '_')}_command", required=True, parser_class=type(p))
    add = _command(csub, "add", f"map NAME to a {what} (kept 0600 in the home; echoed redacted)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("value", metavar=what, help=forms)
    _command(csub, "remove", "forget NAME").add_argument("name", metavar="NAME")
    _command(csub, "list", f"the names and their {what}s, redacted")


# -- running ---------------------------------------------------------------------------------------------

def run_streams(args: argparse.Namespace) -> Any:
    """The output of ``faceprint streams|data-streams|stream-processor ...``."""
    if args.command in ("streams", "data-streams"):
        return _config(args)
    if args.processor_command == "run":
        return _run_host(args)
    return _processor(args)


def _home(args: argparse.Namespace) -> Path:
    from faceprint.service import default_home

    return Path(args.home) if args.home else default_home()


def _config(args: argparse.Namespace) -> Any:
    from faceprint.streams.config import StreamConfig, parse_sink, redact

    config = StreamConfig(_home(args))
    sources = args.command == "streams"
    action = args.streams_command if sources else args.data_streams_command
    if action == "list":
        listing = config.listing()
        return {"Streams": listing["Streams"]} if sources else {"DataStreams": listing["DataStreams"]}
    if action == "remove":
        removed = config.remove_source(args.name) if sources else config.remove_data_stream(args.name)
        if not removed:
            from faceprint.errors import ResourceNotFoundException

            raise ResourceNotFoundException(f"No {'stream' if sources else 'data stream'} named {args.name} in "
                                            "this home.")
        return None
    value = _secret_input(what="URL" if sources else "SINK") if args.value == "-" else args.value
    if sources:
        config.add_source(args.name, value)
        return {"Name": args.name, "Url": redact(value)}
    config.add_data_stream(args.name, value)
    return {"Name": args.name, "Sink": parse_sink(value).display()}


def _secret_input(what: str) -> str:
    """A value from stdin: asked for without echo on a terminal, else its first line."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"{what} (not shown): ")
    return sys.stdin.readline().rstrip("\r\n")


def _processor(args: argparse.Namespace) -> Any:
    from faceprint.service import Faceprint

    fp = Faceprint(args.home, profile=args.profile, region=getattr(args, "region", None) or "us-east-1")
    command, name = args.processor_command, getattr(args, "name", None)
    if command == "create":
        return _create(fp, args)
    if command == "describe":
        return fp.describe_stream_processor(name).to_dict()
    if command == "list":
        return fp.list_stream_processors(args.max_results, args.next_token).to_dict()
    if command == "start":
        stop = {"MaxDurationInSeconds": args.max_duration} if args.max_duration is not None else None
        answer = fp.start_stream_processor(name, None, stop).to_dict()
        _hint_host(fp.home, fp.streams.host_running())  # with PostgreSQL: any node's host
        return answer
    if command == "stop":
        return fp.stop_stream_processor(name).to_dict()
    if command == "update":
        return _update(fp, args)
    return fp.delete_stream_processor(name).to_dict()


def arns(account: str, region: str, stream: str, data_stream: str) -> tuple[str, str, str]:
    """The Kinesis video stream, Kinesis data stream and IAM role ARNs for these names, in ``account``
    (the home's, or the deployment's on a PostgreSQL store: ``Faceprint.arns.account``)."""
    from faceprint.account import check_region, partition

    part = partition(check_region(region))
    return (f"arn:{part}:kinesisvideo:{region}:{account}:stream/{stream}",
            f"arn:{part}:kinesis:{region}:{account}:stream/{data_stream}",
            f"arn:{part}:iam::{account}:role/{DEFAULT_ROLE}")


def _create(fp: Any, args: argparse.Namespace) -> Any:
    video, data, role = arns(fp.arns.account, args.region, args.stream, args.data_stream)
    settings = {"FaceSearch": {"CollectionId": args.collection, "FaceMatchThreshold": args.threshold}}
    return fp.create_stream_processor({"KinesisVideoStream": {"Arn": video}}, {"KinesisDataStream": {"Arn": data}},
                                      args.name, settings, args.role_arn or role,
                                      regions_of_interest=_json_arg("--regions", args.regions)).to_dict()


def _update(fp: Any, args: argparse.Namespace) -> Any:
    regions = _json_arg("--regions", args.regions)
    if args.threshold is None and regions is None and not args.clear_regions:
        raise InvalidParameterException("Nothing to update: give --threshold, --regions or --clear-regions.")
    settings = {"FaceSearchForUpdate": {"FaceMatchThreshold": args.threshold}} if args.threshold is not None else None
    return fp.update_stream_processor(args.name, settings_for_update=settings, regions_of_interest_for_update=regions,
                                      parameters_to_delete=["RegionsOfInterest"] if args.clear_regions else None
                                      ).to_dict()


def _hint_host(home: Path, running: bool) -> None:
    if not running:
        print(f"faceprint: no stream host runs for {home}: the processor starts when one does "
              "(`faceprint serve` or `faceprint stream-processor run`).", file=sys.stderr)


def _run_host(args: argparse.Namespace) -> Any:
    """The home's stream host in the foreground (supervised, restarted if it dies) until Ctrl-C or SIGTERM."""
    from faceprint.account import check_region
    from faceprint.cli_video import Printed
    from faceprint.server.streams import default_profile, models_dir
    from faceprint.streams.config import host_running
    from faceprint.streams.runner import StreamRunner

    home = _home(args)
    runner = StreamRunner(home, models_dir=models_dir(), profile=args.profile or default_profile(),
                          region=check_region(args.region))
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:  # from here on, Ctrl-C (KeyboardInterrupt, wherever it lands) closes the runner and its host
        if host_running(home):  # asked before this runner's own host can take the lock
            print(f"faceprint: another stream host runs the processors of {home} (a server?); this one takes "
                  "over when it stops.", file=sys.stderr)
        runner.start()
        print(f"faceprint: running the stream processors of {home} until Ctrl-C.", file=sys.stderr)
        while not done.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        runner.close()
    return Printed(0)
