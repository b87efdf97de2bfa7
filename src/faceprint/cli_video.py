"""``faceprint video ...``: stored video from the command line (docs/video.md).

The synchronous commands (``search-faces``, ``detect-faces``, ``detect-text``, ``segments``) run
the analyser in this process, with a progress bar on stderr, and print what the Get operation
would answer (every item, sorted, no paging) or, with ``--format table``, a compact table; the
items wait in a scratch job store on disk, so that memory does not grow with the video. The
asynchronous pairs (``start-face-search`` ... ``get-face-search`` ...) queue a job in the home's
job store, make sure a runner runs it, and read it back by its JobId.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from faceprint.errors import InvalidParameterException
from faceprint.progress import ProgressBar
from faceprint.video.tables import TABLES

SYNC = {"search-faces": "StartFaceSearch", "detect-faces": "StartFaceDetection",
        "detect-text": "StartTextDetection", "segments": "StartSegmentDetection"}
"""Synchronous commands and the Start operation whose analyser they run."""
START = {"start-face-search": "StartFaceSearch", "start-face-detection": "StartFaceDetection",
         "start-text-detection": "StartTextDetection", "start-segment-detection": "StartSegmentDetection"}
GET = {"get-face-search": "StartFaceSearch", "get-face-detection": "StartFaceDetection",
       "get-text-detection": "StartTextDetection", "get-segment-detection": "StartSegmentDetection"}
"""The asynchronous commands, and the Start operation of their jobs."""
GETTERS = {"StartFaceSearch": "get_face_search", "StartFaceDetection": "get_face_detection",
           "StartTextDetection": "get_text_detection", "StartSegmentDetection": "get_segment_detection"}
"""The Get operation of each Start operation's jobs."""
ITEMS = {"StartFaceSearch": "Persons", "StartFaceDetection": "Faces", "StartTextDetection": "TextDetections",
         "StartSegmentDetection": "Segments"}
"""Where each Get answer holds its items."""


class Printed:
    """What a command answers once it has printed its output itself: the exit status. (Here, not in
    ``faceprint.cli``: that module may be ``__main__``.)"""

    def __init__(self, status: int = 0) -> None:
        self.status = status


# -- the parser -------------------------------------------------------------------------------------

def add_video_commands(sub: Any) -> None:
    """``faceprint video ...`` on the top-level subparsers ``sub``."""
    video = sub.add_parser("video", help="stored video: who appears when, faces, text and shots (docs/video.md)")
    vsub = video.add_subparsers(dest="video_command", required=True, parser_class=type(video))
    for name, help_text in (("search-faces", "who of a collection appears when (StartFaceSearch, here and now)"),
                            ("detect-faces", "faces and when they appear (StartFaceDetection, here and now)"),
                            ("detect-text", "text lines and words and when (StartTextDetection, here and now)"),
                            ("segments", "shots and black frames (StartSegmentDetection, here and now)")):
        p = vsub.add_parser(name, help=help_text)
        _analysis_arguments(p, name)
        p.add_argument("--format", choices=["json", "table"], default="json",
                       help="json: the Get operation's answer, every item, sorted (default); table: one line a "
                       "person's appearance, a run of faces, a text line or a segment")
    for name in START:
        p = vsub.add_parser(name, help=f"queue a {name[6:].replace('-', ' ')} job; prints its JobId "
                            "(a runner for the home is started if none runs)")
        _analysis_arguments(p, name)
        p.add_argument("--client-request-token", metavar="T", help="the same token and request give the same JobId")
        p.add_argument("--job-tag", metavar="TAG", help="a tag the Get answer carries")
    for name in GET:
        p = vsub.add_parser(name, help=f"the status and results of a {name[4:].replace('-', ' ')} job")
        p.add_argument("--job-id", required=True)
        p.add_argument("--max-results", type=int, default=1000)
        p.add_argument("--next-token")
        if name == "get-face-search":
            p.add_argument("--sort-by", choices=["TIMESTAMP", "INDEX"], default="TIMESTAMP")
        p.add_argument("--format", choices=["json", "table"], default="json", help="table: this page as a table")


def _analysis_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("file", metavar="FILE", help="the video file ('-' reads stdin)" if name in SYNC else
                   "the video file (read where it is when the job runs: leave it there; with a "
                   "PostgreSQL store, copied into the database at once)")
    if name.endswith("search-faces") or name.endswith("face-search"):
        p.add_argument("--collection-id", required=True)
        p.add_argument("--face-match-threshold", type=float, metavar="S", help="lowest similarity (default 80)")
        p.add_argument("--case", help="the case reference this search is for (kept in the audit record)")
        p.add_argument("--purpose", help="why this search is made (kept in the audit record)")
    elif name.endswith("detect-faces") or name.endswith("face-detection"):
        p.add_argument("--face-attributes", choices=["DEFAULT", "ALL"], help="ALL: every attribute DetectFaces gives")
    elif name.endswith("detect-text") or name.endswith("text-detection"):
        p.add_argument("--filters", metavar="JSON", help='Rekognition Filters, e.g. \'{"WordFilter": '
                       '{"MinConfidence": 90}, "RegionsOfInterest": [...]}\'')
    else:
        p.add_argument("--segment-types", nargs="+", choices=["SHOT", "TECHNICAL_CUE"],
                       default=["SHOT", "TECHNICAL_CUE"], metavar="TYPE", help="SHOT, TECHNICAL_CUE (default both)")
        p.add_argument("--filters", metavar="JSON", help='Rekognition Filters, e.g. \'{"ShotFilter": '
                       '{"MinSegmentConfidence": 80}}\'')


# -- running -------------------------------------------------------------------------------------------

def run_video(args: argparse.Namespace) -> Any:
    """The output of ``faceprint video ...`` (a :class:`Printed` when printed already)."""
    command = args.video_command
    if command in SYNC:
        return analyse(args)
    fp = _faceprint(args, run_jobs=False)  # a detached runner runs the jobs: this process ends at once
    if command in START:
        return _start(fp, args)
    answer = getattr(fp, GETTERS[GET[command]])(args.job_id, **_page(args)).to_dict()
    if args.format == "table":
        _print_table(GET[command], answer)
        return Printed(1 if answer.get("JobStatus") == "FAILED" else 0)
    return answer


def _faceprint(args: argparse.Namespace, **video: Any) -> Any:
    from faceprint.imaging import ImageLimits
    from faceprint.service import Faceprint
    from faceprint.video.service import VideoSettings

    limits = ImageLimits(max_bytes=args.max_image_bytes) if args.max_image_bytes else None
    return Faceprint(args.home, profile=args.profile, limits=limits, video=VideoSettings(**video))


def _page(args: argparse.Namespace) -> dict[str, Any]:
    page = {"max_results": args.max_results, "next_token": args.next_token}
    if getattr(args, "sort_by", None):
        page["sort_by"] = args.sort_by
    return page


def params(args: argparse.Namespace) -> dict[str, Any]:
    """The Start request's members (Rekognition's names) that the command's options give."""
    out: dict[str, Any] = {}
    if getattr(args, "collection_id", None) is not None:
        out["CollectionId"] = args.collection_id
    if getattr(args, "face_match_threshold", None) is not None:
        out["FaceMatchThreshold"] = args.face_match_threshold
    if getattr(args, "face_attributes", None) is not None:
        out["FaceAttributes"] = args.face_attributes
    if getattr(args, "segment_types", None) is not None:
        out["SegmentTypes"] = list(dict.fromkeys(args.segment_types))
    if getattr(args, "filters", None) is not None:
        try:
            out["Filters"] = json.loads(args.filters)
        except json.JSONDecodeError as exc:
            raise InvalidParameterException(f"--filters is not valid JSON: {exc}") from None
    return out


def start_job(target: Any, api: str, video: Any, request: dict[str, Any], **common: Any) -> Any:
    """``target``'s (a Faceprint's or a VideoJobs') Start operation ``api`` with ``request``'s members."""
    if api == "StartFaceSearch":
        return target.start_face_search(video, request["CollectionId"], request.get("FaceMatchThreshold"), **common)
    if api == "StartFaceDetection":
        return target.start_face_detection(video, request.get("FaceAttributes"), **common)
    if api == "StartTextDetection":
        return target.start_text_detection(video, request.get("Filters"), **common)
    return target.start_segment_detection(video, request["SegmentTypes"], request.get("Filters"), **common)


def _start(fp: Any, args: argparse.Namespace) -> dict[str, Any]:
    from faceprint.video.runner import ensure_runner

    path = Path(args.file)
    if not path.is_file():
        raise InvalidParameterException(f"{args.file} is not a video file.")
    api = START[args.video_command]
    declared = {"purpose": args.purpose, "case": args.case} if api == "StartFaceSearch" else {}
    result = start_job(fp, api, path.resolve(), params(args),
                       client_request_token=args.client_request_token, job_tag=args.job_tag, **declared)
    ensure_runner(fp.home, fp.models.root)  # each job runs with the profile it was started with
    return result.to_dict()


# -- the synchronous commands ----------------------------------------------------------------------------

def analyse(args: argparse.Namespace) -> Printed:
    """Run the command's analyser on its file here and now, then print the Get answer with every
    item. The request is checked as its Start operation checks it, and the items go to a scratch
    job store on disk, not to memory (hours of video give millions of them), from which the
    answer is written an item at a time."""
    from faceprint.video.service import VideoJobs, VideoSettings

    api = SYNC[args.video_command]
    fp = _faceprint(args, run_jobs=False)
    with tempfile.TemporaryDirectory(prefix="faceprint-video-") as scratch:
        settings = VideoSettings(run_jobs=False)
        jobs = VideoJobs(scratch, fp.profile.name, None, fp.collections, settings)
        path = _video_file(args.file, Path(scratch), settings.limits.max_bytes)
        job_id = start_job(jobs, api, path, params(args), **_audited(fp, api, args)).job_id
        succeeded = run_here(jobs, job_id, api, fp)
        get = getattr(jobs, GETTERS[api])
        if args.format == "table":
            _print_whole_table(api, get, job_id)
        else:
            _guarded(lambda: write_whole_answer(get, job_id, ITEMS[api], sys.stdout))
    return Printed(0 if succeeded else 1)


def _audited(fp: Any, api: str, args: argparse.Namespace) -> dict[str, Any]:
    """A face search run here is recorded in the home's audit log as a queued one is (its start now,
    its end with the faces it matched): the ``record`` its Start takes."""
    if api != "StartFaceSearch":
        return {}
    from faceprint.audit.caller import resolve
    from faceprint.audit.recorder import face_search_start

    who = resolve(None, args.purpose, args.case)
    return {"record": face_search_start(fp.recorder, who, time.time(), args.collection_id,
                                        args.face_match_threshold, None,
                                        size=lambda: fp.store.count_faces(args.collection_id))}


def run_here(jobs: Any, job_id: str, api: str, fp: Any) -> bool:
    """Run the queued job ``job_id`` of ``jobs`` in this process, with a progress bar on stderr;
    True if it succeeded (a video it cannot read fails it)."""
    from faceprint.video.analysers import analyser
    from faceprint.video.decode import VideoError
    from faceprint.video.store import FAILED, SUCCEEDED
    from faceprint.video.worker import StoreContext

    row = jobs.store.claim("here", time.time(), ("path", "input"))
    assert row is not None and row.job_id == job_id
    job = {"job_id": row.job_id, "owner": row.owner, "path": row.source, "params": row.params, "limits": row.limits}
    bar = ProgressBar(sys.stderr)
    ctx = StoreContext(jobs.store, job, fp, threading.Event(), on_progress=bar.update)
    try:
        analyser(api)(ctx)
    except VideoError as exc:
        ctx.finish(*ctx.record_end(FAILED, exc.message))
        return False
    finally:
        bar.finish()
    status, message = ctx.record_end(SUCCEEDED, None)
    ctx.finish(status, message)
    if status != SUCCEEDED:
        from faceprint.errors import AuditUnavailable

        raise AuditUnavailable(message or "The audit record could not be written.")
    return True


def _video_file(name: str, folder: Path, max_bytes: int) -> Path:
    """The file to read: ``name``, or stdin copied into ``folder`` for ``-`` (at most ``max_bytes``:
    more is VideoTooLargeException, as for a file)."""
    if name != "-":
        return Path(name)
    path = folder / "stdin"
    copy_limited(sys.stdin.buffer, path, max_bytes)
    return path


def copy_limited(source: IO[bytes], dest: Path, max_bytes: int, chunk: int = 1024 * 1024) -> int:
    """Copy ``source`` to the new file ``dest``, 1 MB at a time; VideoTooLargeException (and no
    ``dest``) past ``max_bytes``."""
    from faceprint.errors import VideoTooLargeException
    from faceprint.home import create_private

    size = 0
    try:
        with os.fdopen(create_private(dest), "wb") as out:
            while data := source.read(chunk):
                size += len(data)
                if size > max_bytes:
                    raise VideoTooLargeException(f"The video on stdin is over {max_bytes} bytes, the limit.")
                out.write(data)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return size


def all_items(get: Callable[..., Any], job_id: str, key: str, token: str | None = None, **sort: Any
              ) -> Iterator[dict[str, Any]]:
    """Every item of a job from ``token`` on, page after page of ``get`` (a Get operation)."""
    while True:
        page = get(job_id, next_token=token, **sort).to_dict()
        yield from page.get(key) or []
        token = page.get("NextToken")
        if token is None:
            return


_MARK = "\x00faceprint-items\x00"


def write_whole_answer(get: Callable[..., Any], job_id: str, key: str, out: IO[str]) -> None:
    """The Get answer with every item of every page (and no JobId or NextToken), written as
    ``json.dumps(answer, indent=2)`` writes it, but an item at a time."""
    answer = get(job_id).to_dict()
    answer.pop("JobId", None)
    token = answer.pop("NextToken", None)
    first = answer.get(key)
    if not first:
        out.write(json.dumps(answer, indent=2) + "\n")
        return
    answer[key] = [_MARK]
    head, tail = json.dumps(answer, indent=2).split(json.dumps(_MARK), 1)
    out.write(head)
    rest = all_items(get, job_id, key, token) if token is not None else iter(())
    for n, item in enumerate(itertools.chain(first, rest)):
        out.write((",\n    " if n else "") + json.dumps(item, indent=2).replace("\n", "\n    "))
    out.write(tail + "\n")
    out.flush()


def _guarded(write: Callable[[], None]) -> None:
    """``write()`` to stdout; a reader that went away (``| head``) ends it quietly."""
    try:
        write()
    except BrokenPipeError:
        sys.stderr.close()


# -- output -------------------------------------------------------------------------------------------------

def _print_table(api: str, answer: dict[str, Any]) -> None:
    """One page of a Get answer as a table (its items sorted as the table reads them)."""
    if _print_status(answer):
        maker, order, _ = TABLES[api]
        _guarded(lambda: _print_lines(maker(sorted(answer.get(ITEMS[api]) or [], key=order))))


def _print_whole_table(api: str, get: Callable[..., Any], job_id: str) -> None:
    """Every item of a job as a table, read page by page in the order the table reads them."""
    maker, _, sort = TABLES[api]
    if _print_status(get(job_id, max_results=1, **sort).to_dict()):
        _guarded(lambda: _print_lines(maker(all_items(get, job_id, ITEMS[api], **sort))))


def _print_status(answer: dict[str, Any]) -> bool:
    """True for a job that SUCCEEDED; else its status (and message) go to stderr."""
    status = answer.get("JobStatus")
    if status == "SUCCEEDED":
        return True
    message = answer.get("StatusMessage")
    print(f"{status}{': ' + message if message else ''}", file=sys.stderr)
    return False


def _print_lines(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)
