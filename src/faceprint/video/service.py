"""Rekognition Video's stored-video operations: :class:`VideoJobs` (Start* queue a job, Get* read
its results) over the job store, with a runner started in this process when jobs are queued.

A Start validates everything it can at once, as Rekognition does: its members
(``InvalidParameterException``), the collection (``ResourceNotFoundException``), the video's size
and, from a cheap probe, its duration (``VideoTooLargeException``), the S3 object
(``InvalidS3ObjectException``), the number of jobs in progress (``LimitExceededException``) and
the ClientRequestToken (``IdempotentParameterMismatchException``). A file that is no video at all
is accepted: the job fails with a ``StatusMessage`` saying why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faceprint.collections import check_int, check_pattern
from faceprint.errors import (
    IdempotentParameterMismatchException,
    InvalidParameterException,
    InvalidS3ObjectException,
    ResourceNotFoundException,
    VideoTooLargeException,
)
from faceprint.faces import validate_percent
from faceprint.home import private_folder
from faceprint.video.decode import VideoLimits
from faceprint.video.runner import RunnerSettings, VideoRunner
from faceprint.video.store import QUEUED, SUCCEEDED, JobRow, JobStore, new_secret, open_job_store
from faceprint.video.types import (
    AudioMetadata,
    GetFaceDetectionResult,
    GetFaceSearchResult,
    GetSegmentDetectionResult,
    GetTextDetectionResult,
    S3Object,
    SegmentTypeInfo,
    StartJobResult,
    Video,
    VideoMetadata,
)

TOKEN = re.compile(r"[a-zA-Z0-9\-_]{1,64}")
JOB_ID = re.compile(r"[a-zA-Z0-9\-_]{1,64}")
JOB_TAG = re.compile(r"[a-zA-Z0-9_.\-:+=/]{1,1024}")
SNS_TOPIC_ARN = re.compile(r"(?=[^\n]*\Z)arn:aws:sns:.*:\w{12}:.+", re.ASCII)
"""Rekognition's SNSTopicArn pattern (``arn:aws:sns:.*:\\w{12}:.+``) made linear: without the
lookahead, a long value ending in a newline costs Python's ``re`` quadratic time (a 200 kB one,
seconds), as each ``:\\w{12}:`` in it makes ``.+`` run to the newline again."""
ROLE_ARN = re.compile(r"arn:aws:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-/]+")
MAX_RESULTS = 1000
"""Rekognition answers at most 1,000 items a page, whatever MaxResults asks."""
FACE_ATTRIBUTES = ("DEFAULT", "ALL")
SORT_BY = ("TIMESTAMP", "INDEX")
WAIT_POLL = 0.2
Record = Callable[[str], "dict[str, Any] | None"]
"""``record(job_id)``: writes a Start's audit entry; answers what the job keeps of it."""


@dataclass(frozen=True)
class VideoSettings:
    workers: int = 1
    """Worker processes running jobs (one runner per home: see ``faceprint.video.runner``)."""
    max_jobs: int = 20
    """Jobs in progress (queued or running) at once; more is ``LimitExceededException``."""
    expiry_seconds: float = 7 * 24 * 3600
    """Results are kept this long after the job finished."""
    limits: VideoLimits = VideoLimits()
    """10 GB / 6 h by default: more is ``VideoTooLargeException``."""
    sns_topics: Mapping[str, str] = field(default_factory=dict)
    """SNS topic ARN -> HTTP(S) URL that its notifications are POSTed to."""
    buckets: Any = None
    """The server's ``Buckets`` (``video_size``, ``copy_video``): where ``Video.S3Object`` videos come from."""
    run_jobs: bool = True
    """This process may run a runner (the home's lock decides which process does)."""

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_jobs < 1 or not self.expiry_seconds > 0:
            raise InvalidParameterException("Video workers and max jobs must be 1 or more, and expiry positive.")
        for arn, url in self.sns_topics.items():
            check_sns_topic(arn, url)


def check_sns_topic(arn: Any, url: Any) -> None:
    """InvalidParameterException unless ``arn`` is an SNS topic ARN (Rekognition's pattern) and
    ``url`` an http:// or https:// URL with a host (``faceprint serve --sns-topic ARN=URL``)."""
    from urllib.parse import urlsplit

    if not isinstance(arn, str) or not SNS_TOPIC_ARN.fullmatch(arn):
        raise InvalidParameterException(f"SNS topic {arn!r} is not an SNS topic ARN such as "
                                        "arn:aws:sns:us-east-1:123456789012:AmazonRekognitionJobs.")
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        host = parts.hostname if parts is not None else None
    except ValueError:  # a bad IPv6 literal, a bad port
        parts = host = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise InvalidParameterException(f"SNS topic {arn}: {url!r} is not an http:// or https:// URL.")


@dataclass(frozen=True)
class _Source:
    kind: str
    """"path" (read in place), "input" (bytes, written to the job's input file), "s3"."""
    source: str
    key: dict[str, Any]
    """What the request's digest covers."""
    data: bytes | None = None
    s3_object: dict[str, Any] | None = None


class VideoJobs:
    """The eight stored-video operations over ``HOME/video/jobs.db``, or over the PostgreSQL
    database ``store_url`` names (shared by every node: ``faceprint.video.store_pg``). ``profile`` is
    the face profile jobs run with, ``models_dir`` where workers find models, ``collections`` checks
    face search's collection, ``clock`` dates jobs and decides expiry."""

    def __init__(self, home: str | os.PathLike, profile: str, models_dir: str | os.PathLike | None,
                 collections: Any, settings: VideoSettings | None = None,
                 clock: Callable[[], float] = time.time, store: JobStore | None = None,
                 store_url: str | None = None) -> None:
        self.home = private_folder(Path(home))
        self.profile = profile
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.collections = collections
        self.settings = settings or VideoSettings()
        self.clock = clock
        self.store = store or open_job_store(self.home, store_url)  # PostgreSQL's when store_url names it
        self._runner: VideoRunner | None = None
        self._lock = threading.Lock()

    # -- Start -------------------------------------------------------------------------------------

    def start_face_search(self, video: Any, collection_id: str, face_match_threshold: float | None = None,
                          client_request_token: str | None = None, notification_channel: Mapping | None = None,
                          job_tag: str | None = None, record: Record | None = None) -> StartJobResult:
        """Rekognition StartFaceSearch: who of the collection appears when. ``record(job_id)`` writes
        the job's audit entry once the request is accepted, before the job is queued (what it raises
        queues nothing); what it answers is kept with the job (``params["Audit"]``) for the entry the
        job's end writes (``faceprint.video.worker``)."""
        self.collections.collection(collection_id)
        params: dict[str, Any] = {"CollectionId": collection_id}
        if face_match_threshold is not None:
            params["FaceMatchThreshold"] = validate_percent("FaceMatchThreshold", face_match_threshold)
        return self._start("StartFaceSearch", video, params, client_request_token, notification_channel, job_tag,
                           record)

    def start_face_detection(self, video: Any, face_attributes: str | None = None,
                             client_request_token: str | None = None, notification_channel: Mapping | None = None,
                             job_tag: str | None = None) -> StartJobResult:
        """Rekognition StartFaceDetection: the faces in the video, with their timestamps."""
        params: dict[str, Any] = {}
        if face_attributes is not None:
            if face_attributes not in FACE_ATTRIBUTES:
                raise InvalidParameterException(f"FaceAttributes must be DEFAULT or ALL, got {face_attributes!r}.")
            params["FaceAttributes"] = face_attributes
        return self._start("StartFaceDetection", video, params, client_request_token, notification_channel, job_tag)

    def start_text_detection(self, video: Any, filters: Mapping | None = None,
                             client_request_token: str | None = None, notification_channel: Mapping | None = None,
                             job_tag: str | None = None) -> StartJobResult:
        """Rekognition StartTextDetection: text lines and words, with ``Filters`` as DetectText's."""
        from faceprint.text import parse_filters

        params: dict[str, Any] = {}
        if filters is not None:
            if not isinstance(filters, Mapping):
                raise InvalidParameterException("Filters must be an object with WordFilter and/or RegionsOfInterest.")
            parse_filters(dict(filters))
            params["Filters"] = _plain(filters)
        return self._start("StartTextDetection", video, params, client_request_token, notification_channel, job_tag)

    def start_segment_detection(self, video: Any, segment_types: list[str], filters: Mapping | None = None,
                                client_request_token: str | None = None, notification_channel: Mapping | None = None,
                                job_tag: str | None = None) -> StartJobResult:
        """Rekognition StartSegmentDetection: SHOT and TECHNICAL_CUE (BlackFrames) segments."""
        from faceprint.video.segments import parse_segment_filters

        plain = _plain(filters) if isinstance(filters, Mapping) else filters
        parsed = parse_segment_filters(plain, segment_types)
        params: dict[str, Any] = {"SegmentTypes": list(parsed.types)}
        if plain is not None:
            params["Filters"] = plain
        return self._start("StartSegmentDetection", video, params, client_request_token, notification_channel,
                           job_tag)

    def _start(self, api: str, video: Any, params: dict[str, Any], token: str | None, channel: Mapping | None,
               tag: str | None, record: Record | None = None) -> StartJobResult:
        if token is not None:
            check_pattern("ClientRequestToken", token, TOKEN)
        if tag is not None:
            check_pattern("JobTag", tag, JOB_TAG)
        notification = self._channel(channel)
        source = self._source(video)
        digest = _digest({"Video": source.key, "Params": params, "JobTag": tag,
                          "NotificationChannel": {k: v for k, v in (notification or {}).items() if k != "URL"}})
        if token is not None and (found := self.store.by_token(api, token)) is not None:
            return _same(found, digest)
        self.store.check_limit(self.settings.max_jobs)  # before any file is written; checked again on insert
        job_id = uuid.uuid4().hex
        row = self._row(job_id, api, params, digest, token, tag, notification, source)
        try:
            self._accept(source, job_id)
            audit = record(job_id) if record is not None else None
            if audit is not None:  # not in the request's digest: a replay with the same token still matches
                row = dataclasses.replace(row, params={**row.params, "Audit": audit})
            stored = self.store.insert(row, self.settings.max_jobs)
        except BaseException:
            self.store.delete_input(job_id)
            raise
        if stored.job_id != job_id:  # the same token, started meanwhile by another call
            self.store.delete_input(job_id)
            return _same(stored, digest)
        self._kick()
        return StartJobResult(job_id=job_id)

    def _row(self, job_id: str, api: str, params: dict[str, Any], digest: str, token: str | None, tag: str | None,
             notification: dict[str, str] | None, source: _Source) -> JobRow:
        return JobRow(job_id=job_id, api=api, status=QUEUED, status_message=None, params=params, request_hash=digest,
                      client_token=token, job_tag=tag, notification=notification, notify_pending=False,
                      source_kind="input" if source.kind == "path" and self.store.shared else source.kind,
                      source=source.source, profile=self.profile, owner=None,
                      secret=new_secret(), created=self.clock(), started=None, finished=None,
                      expiry_seconds=float(self.settings.expiry_seconds), expires=None, attempts=0, frames_done=0,
                      frames_total=0, metadata=None, limits=asdict(self.settings.limits))

    def _channel(self, channel: Mapping | None) -> dict[str, str] | None:
        if channel is None:
            return None
        if not isinstance(channel, Mapping) or set(channel) - {"SNSTopicArn", "RoleArn"}:
            raise InvalidParameterException("NotificationChannel must be an object with SNSTopicArn and RoleArn.")
        topic = channel.get("SNSTopicArn")
        if not isinstance(topic, str) or not SNS_TOPIC_ARN.fullmatch(topic):
            raise InvalidParameterException("NotificationChannel.SNSTopicArn must be an SNS topic ARN "
                                            "(arn:aws:sns:REGION:ACCOUNT:NAME).")
        role = check_pattern("NotificationChannel.RoleArn", channel.get("RoleArn"), ROLE_ARN)
        url = self.settings.sns_topics.get(topic)
        if url is None:
            raise InvalidParameterException(f"The SNS topic {topic!r} is not one this service publishes to "
                                            "(faceprint serve --sns-topic ARN=URL).")
        return {"SNSTopicArn": topic, "RoleArn": role, "URL": url}

    def _source(self, video: Any) -> _Source:
        if isinstance(video, Video):
            video = video.to_dict()
        if isinstance(video, bytes | bytearray | memoryview):
            data = bytes(video)
            return _Source("input", "", {"Bytes": hashlib.sha256(data).hexdigest()}, data=data)
        if isinstance(video, str | os.PathLike):
            path = _path(video)
            return _Source("path", str(path), {"Path": str(path)})
        if isinstance(video, Mapping) and set(video) == {"S3Object"} and isinstance(video["S3Object"], Mapping):
            s3 = {k: video["S3Object"][k] for k in ("Bucket", "Name", "Version") if k in video["S3Object"]}
            if self.settings.buckets is None:
                raise InvalidS3ObjectException("Video.S3Object needs S3 buckets (faceprint serve --bucket); "
                                               "give a path or bytes instead.")
            return _Source("s3", json.dumps(s3), {"S3Object": s3}, s3_object=s3)
        raise InvalidParameterException("Video must be a file path, the video's bytes, or {\"S3Object\": {...}}.")

    def _accept(self, source: _Source, job_id: str) -> None:
        """Check the video's size and (probing a file) its duration; write bytes to the input file."""
        limits = self.settings.limits
        if source.kind == "s3":
            _check_size(self.settings.buckets.video_size(source.s3_object), limits)
            return
        if source.kind == "input":
            assert source.data is not None
            _check_size(len(source.data), limits)
            path = self.store.write_input(job_id, source.data)
        else:
            path = Path(source.source)
            _check_size(_regular_file_size(path), limits)
        _probe(path, limits)
        if source.kind == "path" and self.store.shared:  # kept for whichever node runs the job
            self.store.write_input(job_id, path, limits.max_bytes)

    def _kick(self) -> None:
        if self.settings.run_jobs:
            self.start_runner()
            assert self._runner is not None
            self._runner.wake()

    # -- Get ---------------------------------------------------------------------------------------

    def get_face_search(self, job_id: str, max_results: int = 1000, next_token: str | None = None,
                        sort_by: str = "TIMESTAMP") -> GetFaceSearchResult:
        row, items, token = self._get(job_id, "StartFaceSearch", max_results, next_token, sort_by)
        return GetFaceSearchResult(**self._common(row, token), video_metadata=_video_metadata(row), persons=items)

    def get_face_detection(self, job_id: str, max_results: int = 1000, next_token: str | None = None
                           ) -> GetFaceDetectionResult:
        row, items, token = self._get(job_id, "StartFaceDetection", max_results, next_token)
        return GetFaceDetectionResult(**self._common(row, token), video_metadata=_video_metadata(row), faces=items)

    def get_text_detection(self, job_id: str, max_results: int = 1000, next_token: str | None = None
                           ) -> GetTextDetectionResult:
        from faceprint.models.text import TEXT_MODEL_VERSION

        row, items, token = self._get(job_id, "StartTextDetection", max_results, next_token)
        return GetTextDetectionResult(**self._common(row, token), video_metadata=_video_metadata(row),
                                      text_detections=items, text_model_version=TEXT_MODEL_VERSION)

    def get_segment_detection(self, job_id: str, max_results: int = 1000, next_token: str | None = None
                              ) -> GetSegmentDetectionResult:
        from faceprint.video.segments import MODEL_VERSIONS

        # Rekognition lists segments by type, in SegmentTypes' order, then by time: the analyser
        # gives each segment its type's place in SegmentTypes as its index.
        row, items, token = self._get(job_id, "StartSegmentDetection", max_results, next_token, "INDEX")
        video = _video_metadata(row)
        audio = [AudioMetadata(**a) for a in row.metadata["audio"]] if row.metadata else None
        selected = [SegmentTypeInfo(type=t, model_version=MODEL_VERSIONS[t]) for t in row.params["SegmentTypes"]]
        return GetSegmentDetectionResult(**self._common(row, token), video_metadata=[video] if video else None,
                                         audio_metadata=audio, segments=items, selected_segment_types=selected)

    def _get(self, job_id: str, api: str, max_results: int, next_token: str | None, sort_by: str = "TIMESTAMP"
             ) -> tuple[JobRow, list[dict[str, Any]] | None, str | None]:
        limit = min(check_int("MaxResults", max_results, 1), MAX_RESULTS)
        if sort_by not in SORT_BY:
            raise InvalidParameterException(f"SortBy must be TIMESTAMP or INDEX, got {sort_by!r}.")
        with self.store.reading():  # the job and its page as they were at once (an expiry sweep may run)
            row = self._job(job_id)
            if row.api != api:
                raise ResourceNotFoundException(f"The job {job_id!r} is not a {api[5:]} job.")
            if row.status != SUCCEEDED:
                self.store.position(row, sort_by, next_token)  # a bad token is refused whatever the status
                return row, None, None
            items, token = self.store.page(row, sort_by, limit, next_token)
        return row, items, token

    def _job(self, job_id: str) -> JobRow:
        check_pattern("JobId", job_id, JOB_ID)
        row = self.store.get(job_id)
        if row is None or (row.expires is not None and row.expires <= self.clock()):
            raise ResourceNotFoundException(f"The job {job_id!r} does not exist, or its results expired.")
        return row

    @staticmethod
    def _common(row: JobRow, token: str | None) -> dict[str, Any]:
        s3 = row.s3_object
        return {"job_status": row.job_status, "job_id": row.job_id,
                "status_message": row.status_message if row.job_status == "FAILED" else None,
                "next_token": token, "job_tag": row.job_tag,
                "video": Video(s3_object=S3Object(bucket=s3["Bucket"], name=s3["Name"], version=s3.get("Version")))
                if s3 else None}

    # -- jobs --------------------------------------------------------------------------------------

    def list_jobs(self, max_results: int = 100, next_token: str | None = None) -> dict[str, Any]:
        """The jobs whose results are not expired, newest first: ``{"Jobs": [{"JobId", "Api", "Status",
        "CollectionId", "Created", "JobTag"}], "NextToken"?}`` (Status is Rekognition's JobStatus,
        Created epoch seconds)."""
        from faceprint.collections import decode_token, encode_token

        limit = check_int("MaxResults", max_results, 1, MAX_RESULTS)
        after = decode_token(next_token, _is_job_position)
        rows = self.store.listing(self.clock(), None if after is None else (after[0], after[1]), limit + 1)
        page = rows[:limit]
        out: dict[str, Any] = {"Jobs": [{"JobId": r.job_id, "Api": r.api, "Status": r.job_status,
                                         "CollectionId": r.params.get("CollectionId"), "Created": r.created,
                                         "JobTag": r.job_tag} for r in page]}
        if len(rows) > limit:
            out["NextToken"] = encode_token([page[-1].created, page[-1].job_id])
        return out

    def wait(self, job_id: str, timeout: float | None = None) -> str:
        """Block until the job leaves IN_PROGRESS (or ``timeout`` seconds pass); answers its JobStatus."""
        if self.settings.run_jobs:
            self.start_runner()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self._job(job_id).job_status
            if status != "IN_PROGRESS" or (deadline is not None and time.monotonic() >= deadline):
                return status
            time.sleep(WAIT_POLL if deadline is None else max(0.0, min(WAIT_POLL, deadline - time.monotonic())))

    def collection_of(self, job_id: str) -> str | None:
        """The collection a face search job searched (None for other jobs, or no such job): the server
        lets a key limited to some collections read the results of searches in those alone."""
        row = self.store.get(job_id) if isinstance(job_id, str) and JOB_ID.fullmatch(job_id) else None
        return row.params.get("CollectionId") if row is not None else None

    def progress(self, job_id: str) -> tuple[int, int]:
        """Frames done and frames in all (about), for progress bars."""
        row = self._job(job_id)
        return row.frames_done, row.frames_total

    def start_runner(self) -> None:
        """Run queued jobs from now on, in this process (if no other process runs this home's jobs)."""
        if not self.settings.run_jobs:
            return
        with self._lock:
            if self._runner is None:
                self._runner = VideoRunner(self.home, self.store, RunnerSettings(
                    workers=self.settings.workers, models_dir=self.models_dir, buckets=self.settings.buckets),
                    clock=self.clock)
                self._runner.start()

    def close(self) -> None:
        """Stop this process's runner: running jobs stop and are requeued for the next runner."""
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()


def _is_job_position(value: Any) -> bool:
    """A ListJobs position: [created, job id] of the last job of a page."""
    return (isinstance(value, list) and len(value) == 2 and type(value[0]) in (int, float)
            and isinstance(value[1], str) and bool(JOB_ID.fullmatch(value[1])))


def _same(found: JobRow, digest: str) -> StartJobResult:
    if found.request_hash != digest:
        raise IdempotentParameterMismatchException(
            f"ClientRequestToken {found.client_token!r} was used with another request.")
    return StartJobResult(job_id=found.job_id)


def _digest(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _plain(value: Any) -> Any:
    """A JSON copy of a request member (InvalidParameterException if it is not JSON)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise InvalidParameterException(f"Filters must be JSON data ({exc}).") from None


def _check_size(size: int, limits: VideoLimits) -> None:
    if size > limits.max_bytes:
        raise VideoTooLargeException(f"The video is {size} bytes; the limit is {limits.max_bytes} bytes.")


def _path(video: str | os.PathLike) -> Path:
    """The absolute path of a video file; InvalidParameterException for a name no file can have
    (a NUL byte, a lone surrogate, a PathLike that is no text)."""
    try:
        path = Path(video).absolute()
        os.fsencode(path)
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        raise InvalidParameterException(f"The video file name {video!r} is not a file name.") from None
    if "\x00" in str(path):
        raise InvalidParameterException(f"The video file name {video!r} holds a NUL byte.")
    return path


def _regular_file_size(path: Path) -> int:
    try:
        info = path.stat()
    except OSError as exc:
        raise InvalidParameterException(f"The video file {str(path)!r} cannot be read "
                                        f"({exc.strerror or type(exc).__name__}).") from None
    if not path.is_file():
        raise InvalidParameterException(f"The video {str(path)!r} is not a regular file.")
    return info.st_size


def _probe(path: Path, limits: VideoLimits) -> None:
    """``VideoTooLargeException`` if the file says it is longer (or its frames larger) than the limits;
    a file that is not a readable video passes (its job fails, saying why)."""
    from faceprint.video.decode import VideoError, VideoTooLong, probe

    try:
        probe(path, limits)
    except VideoTooLong as exc:
        raise VideoTooLargeException(exc.message) from None
    except VideoError:
        pass


def _video_metadata(row: JobRow) -> VideoMetadata | None:
    return VideoMetadata(**row.metadata["video"]) if row.metadata else None
