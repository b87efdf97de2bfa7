"""Rekognition's stream processor operations: :class:`StreamProcessors` (``Faceprint.streams``) over the
processor store, for the ``FaceSearch`` setting.

The operations only read and write the store: Start, Stop and Update set what is wanted (``desired``,
``generation``) and the home's stream host (``faceprint.streams.host``, supervised by a
``StreamRunner``) opens the cameras and reports what is (``status``, ``StatusMessage``). Status moves
STOPPED -> STARTING -> RUNNING -> STOPPING -> STOPPED, UPDATING while a running processor takes an
update, FAILED with a StatusMessage saying why.

Every request is checked as Rekognition does (``InvalidParameterException`` with what is wrong;
``ResourceNotFoundException``, ``ResourceInUseException``, ``LimitExceededException``), and against
what faceprint has: the Input's Kinesis video stream name must be mapped to a camera and the
Output's data stream name to sinks (``faceprint.streams.config``). As Rekognition's model says,
``S3Destination`` and ``ConnectedHome`` are not for face search. faceprint's extensions for face
search: ``RegionsOfInterest`` (faces whose box centre is outside every region are not analysed),
``StartSelector`` (``KVSStreamStartSelector``: frames before ``ProducerTimestamp``, or fragments
below ``FragmentNumber``, are not analysed), and ``UpdateStreamProcessor`` of
``SettingsForUpdate.FaceSearchForUpdate.FaceMatchThreshold`` and of the regions. Refused, as
faceprint has nothing to do with them: Tags, KmsKeyId and NotificationChannel (Rekognition uses
it for ConnectedHome). ``DataSharingPreference`` is kept and shown; faceprint sends nothing
anywhere, whatever it says.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceprint.account import partition
from faceprint.collections import decode_token, encode_token
from faceprint.errors import InvalidParameterException, ResourceInUseException, ResourceNotFoundException
from faceprint.streams import members
from faceprint.streams.config import StreamConfig, kinesis_stream_name, kvs_stream_name
from faceprint.streams.config import host_running as host_holds_lock
from faceprint.streams.members import COLLECTION_ID, PROCESSOR_NAME, ROLE_ARN
from faceprint.streams.store import ProcessorStore
from faceprint.streams.types import (
    FAILED,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    UPDATING,
    CreateStreamProcessorResult,
    DescribeStreamProcessorResult,
    ListStreamProcessorsResult,
    ProcessorRow,
    StartStreamProcessorResult,
)
from faceprint.types import EmptyResult

if TYPE_CHECKING:
    from faceprint.account import CollectionArns
    from faceprint.collections import Collections
    from faceprint.streams.runner import StreamRunner

MAX_RESULTS = 1000
"""ListStreamProcessors answers at most 1,000 processors a page (Rekognition's default)."""
TOKEN_KIND = "streamprocessor"
START_FROM = (STOPPED, FAILED)
STOP_FROM = (RUNNING, STARTING, UPDATING)
UPDATE_FROM = (STOPPED, FAILED, RUNNING)
DELETE_FROM = (STOPPED, FAILED)


@dataclass(frozen=True)
class StreamSettings:
    max_processors: int = 100
    """Stream processors of the home; more is ``LimitExceededException``."""
    connect_timeout: float = 30.0
    """Seconds a freshly started processor waits for its camera before it FAILS."""
    sources: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Kinesis video stream name -> camera URL (the server's ``--stream``), over the home's own.
    Not in the settings' repr: camera URLs carry passwords."""
    data_streams: Mapping[str, Sequence[str]] = field(default_factory=dict, repr=False)
    """Kinesis data stream name -> sink specs (the server's ``--data-stream``), over the home's own
    (not in the repr either)."""

    def __post_init__(self) -> None:
        if isinstance(self.max_processors, bool) or not isinstance(self.max_processors, int) \
                or self.max_processors < 1:
            raise InvalidParameterException("Stream settings: max_processors must be an integer of 1 or more.")
        if not isinstance(self.connect_timeout, int | float) or not self.connect_timeout > 0:
            raise InvalidParameterException("Stream settings: connect_timeout must be a positive number of seconds.")


class StreamProcessors:
    """The seven stream processor operations over ``store``; ``config`` maps stream names to cameras
    and sinks, ``collections`` checks FaceSearch's collection, ``arns`` gives the region and account
    of processor ARNs, ``clock`` dates rows, ``host_running()`` says whether a stream host runs now
    (default: whether some process holds ``HOME/streams/host.lock``). ``models_dir``, ``profile`` and
    ``threads`` are what :meth:`start_runner`'s host runs with."""

    def __init__(self, home: Path, store: ProcessorStore, config: StreamConfig, collections: Collections,
                 arns: CollectionArns, settings: StreamSettings | None = None, clock: Callable[[], float] = time.time,
                 host_running: Callable[[], bool] | None = None, *, models_dir: Path | None = None,
                 profile: str = "accurate", threads: int = 0) -> None:
        self.home = Path(home)
        self.store = store
        self.config = config
        self.collections = collections
        self.arns = arns
        self.settings = settings or StreamSettings()
        self.clock = clock
        self.host_running = host_running or (store.host_running if store.shared else
                                             lambda: host_holds_lock(self.home))
        self.models_dir = models_dir
        self.profile = profile
        self.threads = threads
        self._runner: StreamRunner | None = None
        self._lock = threading.Lock()

    def arn(self, name: str) -> str:
        region = self.arns.region
        return f"arn:{partition(region)}:rekognition:{region}:{self.arns.account}:streamprocessor/{name}"

    # -- Create --------------------------------------------------------------------------------------

    def create_stream_processor(self, input: Mapping, output: Mapping, name: str, settings: Mapping, role_arn: str,
                                tags: Mapping | None = None, notification_channel: Mapping | None = None,
                                kms_key_id: str | None = None, regions_of_interest: list | None = None,
                                data_sharing_preference: Mapping | None = None) -> CreateStreamProcessorResult:
        """Rekognition CreateStreamProcessor (FaceSearch): the processor, STOPPED."""
        members.pattern("Name", name, PROCESSOR_NAME)
        request: dict[str, Any] = {"Input": self._input(input), "Output": self._output(output),
                                   "Settings": self._settings(settings),
                                   "RoleArn": members.pattern("RoleArn", role_arn, ROLE_ARN)}
        members.refuse_unsupported(tags, notification_channel, kms_key_id)
        if regions_of_interest is not None and (regions := members.check_regions(regions_of_interest,
                                                                                 "RegionsOfInterest")):
            request["RegionsOfInterest"] = regions
        if data_sharing_preference is not None:
            request["DataSharingPreference"] = members.sharing(data_sharing_preference, "DataSharingPreference")
        now = self.clock()
        row = ProcessorRow(name=name, arn=self.arn(name), status=STOPPED, status_message=None, created=now,
                           updated=now, request=request)
        self.store.insert(row, self.settings.max_processors)
        return CreateStreamProcessorResult(stream_processor_arn=row.arn)

    def _input(self, value: Any) -> dict[str, Any]:
        arn = members.arn_member(value, "Input", "KinesisVideoStream")
        stream = kvs_stream_name(arn)
        if not self._mapped("sources", stream):
            raise InvalidParameterException(
                f"The Kinesis video stream {stream} is not mapped to a camera: add it with "
                f"`faceprint streams add {stream} URL` or `faceprint serve --stream {stream}=URL`.")
        return {"KinesisVideoStream": {"Arn": arn}}

    def _output(self, value: Any) -> dict[str, Any]:
        if isinstance(value, Mapping) and "S3Destination" in value:
            raise InvalidParameterException("Output.S3Destination is not for face search, as in Rekognition: "
                                            "face search records go to Output.KinesisDataStream.")
        arn = members.arn_member(value, "Output", "KinesisDataStream")
        stream = kinesis_stream_name(arn)
        if not self._mapped("data_streams", stream):
            raise InvalidParameterException(
                f"The Kinesis data stream {stream} is not mapped to any sink: add one with "
                f"`faceprint data-streams add {stream} SINK` or `faceprint serve --data-stream {stream}=SINK`.")
        return {"KinesisDataStream": {"Arn": arn}}

    def _settings(self, value: Any) -> dict[str, Any]:
        if isinstance(value, Mapping) and "ConnectedHome" in value:
            raise InvalidParameterException("Settings.ConnectedHome (label detection) is not offered: faceprint has "
                                            "no label model. Use Settings.FaceSearch.")
        members.only(value, ("FaceSearch",), "Settings", required=("FaceSearch",))
        search = value["FaceSearch"]
        members.only(search, ("CollectionId", "FaceMatchThreshold"), "Settings.FaceSearch", required=("CollectionId",))
        collection_id = members.pattern("CollectionId", search["CollectionId"], COLLECTION_ID)
        out: dict[str, Any] = {"CollectionId": collection_id}
        if search.get("FaceMatchThreshold") is not None:
            out["FaceMatchThreshold"] = members.percent("FaceMatchThreshold", search["FaceMatchThreshold"])
        try:
            self.collections.collection(collection_id)
        except ResourceNotFoundException:
            raise InvalidParameterException(f"The collection {collection_id} does not exist.") from None
        return {"FaceSearch": out}

    # -- Describe, List ----------------------------------------------------------------------------

    def describe_stream_processor(self, name: str) -> DescribeStreamProcessorResult:
        """Rekognition DescribeStreamProcessor: its members (ARNs, never a camera URL) and status."""
        return DescribeStreamProcessorResult.of(self._settled(self._row(name)))

    def list_stream_processors(self, max_results: int = MAX_RESULTS, next_token: str | None = None
                               ) -> ListStreamProcessorsResult:
        """Rekognition ListStreamProcessors: names and statuses, by name, a page at a time."""
        limit = min(members.integer("MaxResults", max_results, 1), MAX_RESULTS)
        position = decode_token(next_token, _is_position)
        rows = self.store.page(position[1] if position else None, limit + 1)
        token = encode_token([TOKEN_KIND, rows[limit - 1].name]) if len(rows) > limit else None
        return ListStreamProcessorsResult(
            stream_processors=[{"Name": r.name, "Status": r.status} for r in rows[:limit]], next_token=token)

    # -- Start, Stop ---------------------------------------------------------------------------------

    def start_stream_processor(self, name: str, start_selector: Mapping | None = None,
                               stop_selector: Mapping | None = None) -> StartStreamProcessorResult:
        """Rekognition StartStreamProcessor: STARTING (the host makes it RUNNING at its first frame)."""
        members.pattern("Name", name, PROCESSOR_NAME)
        start = members.start_selector(start_selector) if start_selector is not None else None
        stop = members.stop_selector(stop_selector) if stop_selector is not None else None
        row = self._settled(self._row(name))
        if row.status not in START_FROM:
            raise ResourceInUseException(f"The stream processor {name} is {row.status}; it can be started when "
                                         "STOPPED or FAILED.")
        try:
            self.collections.collection(row.collection_id)
        except ResourceNotFoundException:
            raise ResourceNotFoundException(f"The collection {row.collection_id} of stream processor {name} "
                                            "does not exist.") from None
        self._check_mapped(row)
        session = str(uuid.uuid4())
        now = self.clock()
        self.store.transition(name, START_FROM, status=STARTING, status_message=None, desired=RUNNING,
                              generation=_next, session_id=session, start_selector=start, stop_selector=stop,
                              started_at=now, updated=now, health={})
        return StartStreamProcessorResult(session_id=session)

    def _mapped(self, kind: str, name: str) -> bool:
        """Whether stream (``kind`` "sources") or data stream ("data_streams") ``name`` is mapped here
        or, with several nodes, by a live node's stream host (which publishes the names it maps)."""
        here = self.config.source_url(name) is not None if kind == "sources" else bool(self.config.sinks_of(name))
        return here or self.store.mapped_elsewhere(kind, name)

    def _check_mapped(self, row: ProcessorRow) -> None:
        if not self._mapped("sources", row.video_stream):
            raise InvalidParameterException(f"The Kinesis video stream {row.video_stream} is no longer mapped to "
                                            "a camera (faceprint streams add NAME URL).")
        if row.data_stream is not None and not self._mapped("data_streams", row.data_stream):
            raise InvalidParameterException(f"The Kinesis data stream {row.data_stream} is no longer mapped to a "
                                            "sink (faceprint data-streams add NAME SINK).")

    def stop_stream_processor(self, name: str) -> EmptyResult:
        """Rekognition StopStreamProcessor: STOPPING until the host has stopped it (STOPPED at once
        when no host runs)."""
        row = self._settled(self._row(name))
        if row.status not in STOP_FROM:
            raise ResourceInUseException(f"The stream processor {name} is {row.status}; it can be stopped when "
                                         f"{', '.join(STOP_FROM[:-1])} or {STOP_FROM[-1]}.")
        status = STOPPING if self.host_running() else STOPPED
        self.store.transition(name, STOP_FROM, status=status, status_message=None, desired=STOPPED,
                              generation=_next, updated=self.clock())
        return EmptyResult()

    # -- Update, Delete ------------------------------------------------------------------------------

    def update_stream_processor(self, name: str, settings_for_update: Mapping | None = None,
                                regions_of_interest_for_update: list | None = None,
                                data_sharing_preference_for_update: Mapping | None = None,
                                parameters_to_delete: list | None = None) -> EmptyResult:
        """Rekognition UpdateStreamProcessor, for face search: the threshold
        (``SettingsForUpdate.FaceSearchForUpdate.FaceMatchThreshold``), the regions of interest and the
        data sharing preference. A RUNNING processor is UPDATING until the host has applied it."""
        members.pattern("Name", name, PROCESSOR_NAME)
        update = members.Update.of(settings_for_update, regions_of_interest_for_update,
                                   data_sharing_preference_for_update, parameters_to_delete)
        self._settled(self._row(name))
        self.store.transition(name, UPDATE_FROM, request=lambda r: update.apply(r.request), generation=_next,
                              updated=self.clock(),
                              status=lambda r: UPDATING if r.status == RUNNING else r.status)
        return EmptyResult()

    def delete_stream_processor(self, name: str) -> EmptyResult:
        """Rekognition DeleteStreamProcessor: a STOPPED or FAILED processor, and its recent events."""
        self._settled(self._row(name))
        if not self.store.delete(name, DELETE_FROM):
            raise ResourceNotFoundException(f"The stream processor {name} does not exist.")
        return EmptyResult()

    # -- helpers -------------------------------------------------------------------------------------

    def _row(self, name: str) -> ProcessorRow:
        members.pattern("Name", name, PROCESSOR_NAME)
        row = self.store.get(name)
        if row is None:
            raise ResourceNotFoundException(f"The stream processor {name} does not exist.")
        return row

    def _settled(self, row: ProcessorRow) -> ProcessorRow:
        """``row``, STOPPED if it was left STOPPING by a host that is gone (none runs now)."""
        if row.status != STOPPING or self.host_running():
            return row
        try:
            return self.store.transition(row.name, (STOPPING,), status=STOPPED, status_message=None,
                                         desired=STOPPED, updated=self.clock())
        except (ResourceInUseException, ResourceNotFoundException):  # changed meanwhile: as it is now
            return self._row(row.name)

    def collection_of(self, name: str) -> str | None:
        """The collection a processor searches (None for no such processor): the server lets a key
        limited to some collections use the processors of those alone."""
        if not isinstance(name, str) or not PROCESSOR_NAME.fullmatch(name):
            return None
        row = self.store.get(name)
        return row.collection_id if row is not None else None

    # -- the host ------------------------------------------------------------------------------------

    def start_runner(self) -> None:
        """Run this home's wanted processors from now on, in a stream host child of this process
        (a ``StreamRunner``; if another process's host runs them, this one waits its turn)."""
        with self._lock:
            if self._runner is None:
                self._runner = self.make_runner()
                self._runner.start()

    def make_runner(self) -> StreamRunner:
        """The ``StreamRunner`` :meth:`start_runner` starts: this home and config (the overrides go to
        its host on stdin), region, models, profile, threads and ``settings.connect_timeout``."""
        from faceprint.streams.runner import StreamRunner

        sources, data_streams = self.config.overrides()
        return StreamRunner(self.home, models_dir=self.models_dir, profile=self.profile, region=self.arns.region,
                            sources=sources, data_streams=data_streams, threads=self.threads,
                            connect_timeout=self.settings.connect_timeout,
                            store_url=self.store.url if self.store.shared else None)

    def close(self) -> None:
        """Stop this process's runner (its host stops the processors, which stay wanted: they resume at
        the next host's start) and close this thread's store connection."""
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()
        self.store.close()


# -- rows and tokens ----------------------------------------------------------------------------------


def _next(row: ProcessorRow) -> int:
    return row.generation + 1


def _is_position(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and value[0] == TOKEN_KIND and isinstance(value[1], str)
            and PROCESSOR_NAME.fullmatch(value[1]) is not None)
