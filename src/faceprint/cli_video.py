"""``faceprint video ...``: stored video from the command line (docs/video.md).

The synchronous commands (``search-faces``, ``detect-faces``, ``detect-text``, ``segments``) run
the analyser in this process, with a progress bar on stderr, and print what the Get operation
would answer (every item, sorted, no paging) or, with ``--format table``, a compact table. The
asynchronous pairs (``start-face-search`` ... ``get-face-search`` ...) queue a job in the home's
job store, make sure a runner runs it, and read it back by its JobId.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from faceprint.errors import InvalidParameterException

SYNC = {"search-faces": "StartFaceSearch", "detect-faces": "StartFaceDetection",
        "detect-text": "StartTextDetection", "segments": "StartSegmentDetection"}
"""Synchronous commands and the Start operation whose analyser they run."""
ITEMS = {"StartFaceSearch": "Persons", "StartFaceDetection": "Faces", "StartTextDetection": "TextDetections",
         "StartSegmentDetection": "Segments"}
"""Where each Get answer holds its items."""
START = {"start-face-search": "start_face_search", "start-face-detection": "start_face_detection",
         "start-text-detection": "start_text_detection", "start-segment-detection": "start_segment_detection"}
GET = {"get-face-search": "get_face_search", "get-face-detection": "get_face_detection",
       "get-text-detection": "get_text_detection", "get-segment-detection": "get_segment_detection"}
TABLES = {"search-faces": "face_search", "get-face-search": "face_search", "detect-faces": "faces",
          "get-face-detection": "faces", "detect-text": "text", "get-text-detection": "text",
          "segments": "segments", "get-segment-detection": "segments"}
"""Which table ``--format table`` prints for each command."""


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
                   "the video file (read where it is when the job runs: leave it there)")
    if name.endswith("search-faces") or name.endswith("face-search"):
        p.add_argument("--collection-id", required=True)
        p.add_argument("--face-match-threshold", type=float, metavar="S", help="lowest similarity (default 80)")
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
        status, answer = analyse(args)
        if args.format == "table":
            _print_table(command, answer)
            return Printed(status)
        if status:
            _print_json(answer)
            return Printed(status)
        return answer
    fp = _faceprint(args, run_jobs=False)  # a detached runner runs the jobs: this process ends at once
    if command in START:
        return _start(fp, args)
    answer = getattr(fp, GET[command])(args.job_id, **_page(args)).to_dict()
    if args.format == "table":
        _print_table(command, answer)
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


def _start(fp: Any, args: argparse.Namespace) -> dict[str, Any]:
    from faceprint.video.runner import ensure_runner

    path = Path(args.file)
    if not path.is_file():
        raise InvalidParameterException(f"{args.file} is not a video file.")
    p = params(args)
    common = {"client_request_token": args.client_request_token, "job_tag": args.job_tag}
    method = getattr(fp, START[args.video_command])
    if args.video_command == "start-face-search":
        result = method(path.resolve(), p["CollectionId"], p.get("FaceMatchThreshold"), **common)
    elif args.video_command == "start-face-detection":
        result = method(path.resolve(), p.get("FaceAttributes"), **common)
    elif args.video_command == "start-text-detection":
        result = method(path.resolve(), p.get("Filters"), **common)
    else:
        result = method(path.resolve(), p["SegmentTypes"], p.get("Filters"), **common)
    ensure_runner(fp.home, fp.profile.name, fp.models.root)
    return result.to_dict()


# -- the synchronous commands ----------------------------------------------------------------------------

@dataclass
class ProgressContext:
    """A job context in memory (as :class:`faceprint.video.context.LocalContext`) whose progress
    drives ``on_progress``."""

    path: Path
    params: dict[str, Any]
    fp: Any
    limits: Any
    on_progress: Callable[[int, int], None]
    info: Any = None
    items: list[Any] = field(default_factory=list)

    def metadata(self, info: Any) -> None:
        self.info = info

    def emit(self, items: list[Any]) -> None:
        self.items.extend(items)

    def progress(self, frames_done: int, frames_total: int) -> None:
        self.on_progress(frames_done, frames_total)

    def cancelled(self) -> bool:
        return False


def analyse(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """Run the command's analyser on its file here and now: (exit status, the Get answer)."""
    from faceprint.video.analysers import analyser
    from faceprint.video.decode import VideoError, VideoLimits

    api = SYNC[args.video_command]
    fp = _faceprint(args, run_jobs=False)
    request = check_params(fp, api, params(args))
    bar = ProgressBar(sys.stderr)
    with _video_file(args.file) as path:
        ctx = ProgressContext(path, request, fp, VideoLimits(), bar.update)
        try:
            analyser(api)(ctx)
        except VideoError as exc:
            return 1, {"JobStatus": "FAILED", "StatusMessage": exc.message}
        finally:
            bar.finish()
    return 0, answer_of(api, ctx, request)


def check_params(fp: Any, api: str, request: dict[str, Any]) -> dict[str, Any]:
    """``request`` checked as the Start operation checks it, before the video is read
    (InvalidParameterException; ResourceNotFoundException for an unknown collection)."""
    from faceprint.faces import validate_percent

    if api == "StartFaceSearch":
        fp.collections.collection(request["CollectionId"])
        if "FaceMatchThreshold" in request:
            request["FaceMatchThreshold"] = validate_percent("FaceMatchThreshold", request["FaceMatchThreshold"])
    elif api == "StartTextDetection" and "Filters" in request:
        from faceprint.text import parse_filters

        if not isinstance(request["Filters"], dict):
            raise InvalidParameterException("--filters must be a JSON object with WordFilter and/or "
                                            "RegionsOfInterest.")
        parse_filters(request["Filters"])
    elif api == "StartSegmentDetection":
        from faceprint.video.segments import parse_segment_filters

        parse_segment_filters(request.get("Filters"), request["SegmentTypes"])
    return request


@contextmanager
def _video_file(name: str) -> Iterator[Path]:
    """The file to read: ``name``, or stdin copied to a temporary file for ``-``."""
    if name != "-":
        path = Path(name)
        if not path.is_file():
            raise InvalidParameterException(f"{name} is not a video file.")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="faceprint-video-") as folder:
        path = Path(folder) / "stdin"
        with path.open("wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1024 * 1024)
        yield path


def answer_of(api: str, ctx: ProgressContext, request: dict[str, Any]) -> dict[str, Any]:
    """The Get operation's answer for the items ``ctx`` holds: all of them, as one page, in the
    Get operation's order: by timestamp (then person index); segments by their type's place in
    SegmentTypes, then timestamp (as Rekognition sorts them)."""
    from faceprint.video import types

    if api == "StartSegmentDetection":
        ordered = sorted(ctx.items, key=lambda i: (i.index, i.timestamp_ms))
    else:
        ordered = sorted(ctx.items, key=lambda i: (i.timestamp_ms, i.index))
    items = [item.body for item in ordered]
    metadata = ctx.info.metadata() if ctx.info is not None else None
    if api == "StartFaceSearch":
        return types.GetFaceSearchResult("SUCCEEDED", video_metadata=metadata, persons=items).to_dict()
    if api == "StartFaceDetection":
        return types.GetFaceDetectionResult("SUCCEEDED", video_metadata=metadata, faces=items).to_dict()
    if api == "StartTextDetection":
        from faceprint.models.text import TEXT_MODEL_VERSION

        return types.GetTextDetectionResult("SUCCEEDED", video_metadata=metadata, text_detections=items,
                                            text_model_version=TEXT_MODEL_VERSION).to_dict()
    from faceprint.video.segments import MODEL_VERSIONS

    selected = [types.SegmentTypeInfo(t, MODEL_VERSIONS[t]) for t in request["SegmentTypes"]]
    audio = list(ctx.info.audio) if ctx.info is not None else []
    return types.GetSegmentDetectionResult("SUCCEEDED", video_metadata=[metadata] if metadata else [],
                                           audio_metadata=audio, segments=items,
                                           selected_segment_types=selected).to_dict()


# -- progress ---------------------------------------------------------------------------------------------

class ProgressBar:
    """Frames done of about how many, frames a second and time left, on ``stream``: redrawn in
    place (at most 5 times a second) on a terminal, else a line every 5%."""

    WIDTH = 30

    def __init__(self, stream: IO[str], clock: Callable[[], float] = time.monotonic,
                 tty: bool | None = None) -> None:
        self.stream, self.clock = stream, clock
        self.tty = stream.isatty() if tty is None else tty
        self.started = clock()
        self.last_draw = float("-inf")
        self.last_step = -1
        self.drawn = False
        self.state = (0, 0)

    def update(self, done: int, total: int) -> None:
        self.state = (done, total)
        now = self.clock()
        if self.tty:
            if now - self.last_draw >= 0.2:
                self.last_draw = now
                self._write("\r" + self.line(done, total, now) + "\x1b[K")
            return
        step = int(self._fraction(done, total) * 20)  # every 5%
        if step > self.last_step:
            self.last_step = step
            self._write(self.line(done, total, now) + "\n")

    def finish(self) -> None:
        """The last state, drawn once more on a terminal, then a new line."""
        if self.tty and self.drawn:
            done, total = self.state
            self._write("\r" + self.line(done, max(total, done), self.clock()) + "\x1b[K\n")

    def line(self, done: int, total: int, now: float) -> str:
        fraction = self._fraction(done, total)
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        left = (max(total - done, 0) / rate) if rate > 0 else None
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        eta = clock_time(left * 1000, tenths=False) if left is not None else "--:--:--"
        return f"[{bar}] {fraction * 100:5.1f}%  {done}/{total} frames  {rate:.1f} frames/s  ETA {eta}"

    @staticmethod
    def _fraction(done: int, total: int) -> float:
        return min(done / total, 1.0) if total > 0 else 0.0

    def _write(self, text: str) -> None:
        self.drawn = True
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed: the work goes on
            pass


def clock_time(ms: float, tenths: bool = True) -> str:
    """``01:12:04.3`` (hours, minutes, seconds and tenths) for ``ms`` milliseconds."""
    if tenths:
        tenth = int(round(ms / 100))
        seconds, rest = divmod(tenth, 10)
        return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{rest}"
    seconds = int(round(ms / 1000))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# -- output -------------------------------------------------------------------------------------------------

def _print_json(answer: dict[str, Any]) -> None:
    try:
        print(json.dumps(answer, indent=2))
    except BrokenPipeError:
        sys.stderr.close()


def _print_table(command: str, answer: dict[str, Any]) -> None:
    status = answer.get("JobStatus")
    if status != "SUCCEEDED":
        message = answer.get("StatusMessage")
        print(f"{status}{': ' + message if message else ''}", file=sys.stderr)
        return
    try:
        for line in TABLE_MAKERS[TABLES[command]](answer):
            print(line)
    except BrokenPipeError:
        sys.stderr.close()


GAP_MS = 1000
"""Timestamps of one person (one face count, one text line) further apart than this are two
appearances in a table."""


def runs(timestamps: list[int], gap_ms: int = GAP_MS) -> list[tuple[int, int, list[int]]]:
    """Sorted ``timestamps`` cut into runs wherever two follow each other more than ``gap_ms``
    apart: (first, last, positions in the list) for each run."""
    out: list[tuple[int, int, list[int]]] = []
    for position, ts in sorted(enumerate(timestamps), key=lambda p: p[1]):
        if out and ts - out[-1][1] <= gap_ms:
            out[-1] = (out[-1][0], ts, [*out[-1][2], position])
        else:
            out.append((ts, ts, [position]))
    return out


def span(first: int, last: int) -> str:
    return f"{clock_time(first)}-{clock_time(last)}"


def face_search_table(answer: dict[str, Any]) -> list[str]:
    """One line a person's appearance: when, who (the person index), the collection's match
    (its ExternalImageId, else its FaceId, or '-') and the best similarity."""
    by_person: dict[int, list[dict[str, Any]]] = {}
    for item in answer.get("Persons") or []:
        by_person.setdefault(item["Person"]["Index"], []).append(item)
    rows: list[tuple[int, int, str]] = []
    for index, items in by_person.items():
        for first, last, positions in runs([i["Timestamp"] for i in items]):
            matches = [m for p in positions for m in items[p].get("FaceMatches") or []]
            best = max(matches, key=lambda m: m["Similarity"], default=None)
            who = "-  -" if best is None else (f"{best['Face'].get('ExternalImageId') or best['Face']['FaceId']}  "
                                               f"{best['Similarity']:.1f}")
            rows.append((first, index, f"{span(first, last)}  person {index}  {who}"))
    return [line for _, _, line in sorted(rows)]


def faces_table(answer: dict[str, Any]) -> list[str]:
    """One line a run of sampled frames showing the same number of faces, with the range of their
    detection confidence."""
    per_frame: dict[int, list[float]] = {}
    for item in answer.get("Faces") or []:
        per_frame.setdefault(item["Timestamp"], []).append(item["Face"].get("Confidence", 0.0))
    lines = []
    stamps = sorted(per_frame)
    start = 0
    for end in range(1, len(stamps) + 1):
        if end < len(stamps) and len(per_frame[stamps[end]]) == len(per_frame[stamps[start]]) \
                and stamps[end] - stamps[end - 1] <= GAP_MS:
            continue
        scores = [c for ts in stamps[start:end] for c in per_frame[ts]]
        count = len(per_frame[stamps[start]])
        lines.append(f"{span(stamps[start], stamps[end - 1])}  {count} face{'s' if count != 1 else ''}  "
                     f"confidence {min(scores):.1f}-{max(scores):.1f}")
        start = end
    return lines


def text_table(answer: dict[str, Any]) -> list[str]:
    """One line a text line's appearance: when, its best confidence and the text."""
    by_text: dict[str, list[dict[str, Any]]] = {}
    for item in answer.get("TextDetections") or []:
        detection = item["TextDetection"]
        if detection.get("Type") == "LINE":
            by_text.setdefault(detection["DetectedText"], []).append(item)
    rows = []
    for text, items in by_text.items():
        for first, last, positions in runs([i["Timestamp"] for i in items]):
            confidence = max(items[p]["TextDetection"].get("Confidence", 0.0) for p in positions)
            rows.append((first, text, f"{span(first, last)}  {confidence:5.1f}  {text}"))
    return [line for _, _, line in sorted(rows)]


def segments_table(answer: dict[str, Any]) -> list[str]:
    """One line a segment, in time order: when, its SMPTE timecodes and frames, what it is, its confidence."""
    lines = []
    for s in sorted(answer.get("Segments") or [], key=lambda s: (s["StartTimestampMillis"], s["Type"])):
        if s["Type"] == "SHOT":
            what, confidence = f"SHOT {s['ShotSegment']['Index']}", s["ShotSegment"]["Confidence"]
        else:
            what, confidence = f"{s['TechnicalCueSegment']['Type']}", s["TechnicalCueSegment"]["Confidence"]
        lines.append(f"{span(s['StartTimestampMillis'], s['EndTimestampMillis'])}  "
                     f"{s['StartTimecodeSMPTE']}-{s['EndTimecodeSMPTE']}  frames {s['StartFrameNumber']}-"
                     f"{s['EndFrameNumber']}  {what}  {confidence:.1f}")
    return lines


TABLE_MAKERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "face_search": face_search_table, "faces": faces_table, "text": text_table, "segments": segments_table}
