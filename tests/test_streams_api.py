"""The stream processor operations (``Faceprint.streams``): validation, ARNs, the status lifecycle and
every error code, paging, update rules, and that no camera password ever comes back. No models and
no cameras: the host's writes are made through the store, as the host makes them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from contract import output_shape, validate
from faceprint.errors import (
    InvalidPaginationTokenException,
    InvalidParameterException,
    LimitExceededException,
    ResourceInUseException,
    ResourceNotFoundException,
)
from faceprint.service import Faceprint
from faceprint.streams.config import host_lock_path
from faceprint.streams.service import StreamProcessors, StreamSettings
from faceprint.streams.types import FAILED, RUNNING, STARTING, STOPPED, STOPPING, UPDATING

SECRET = "Pa55-w0rd-9f3"
CAMERA = f"rtsp://admin:{SECRET}@127.0.0.1:8554/door"
HOOK = f"https://hooks.example/in?token={SECRET}"
KVS = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/door/1700000000000"
KDS = "arn:aws:kinesis:us-east-1:123456789012:stream/alerts"
ROLE = "arn:aws:iam::123456789012:role/RekognitionStreams"
INPUT = {"KinesisVideoStream": {"Arn": KVS}}
OUTPUT = {"KinesisDataStream": {"Arn": KDS}}
SETTINGS = {"FaceSearch": {"CollectionId": "watch", "FaceMatchThreshold": 85.5}}


class Host:
    """Stands for the home's stream host in the API's eyes: ``running`` is what ``host_running()`` answers."""

    def __init__(self) -> None:
        self.running = False

    def __call__(self) -> bool:
        return self.running


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(tmp_path: Path, region: str = "us-east-1", **settings: Any) -> Faceprint:
    fp = Faceprint(tmp_path / "home", region=region, streams=StreamSettings(
        sources={"door": CAMERA}, data_streams={"alerts": [HOOK, "file:/tmp/fp-alerts.jsonl"]}, **settings))
    fp.create_collection("watch")
    return fp


@pytest.fixture
def fp(tmp_path: Path) -> Faceprint:
    return make(tmp_path)


@pytest.fixture
def streams(fp: Faceprint) -> tuple[StreamProcessors, Host, Clock]:
    """The operations built alone, with a clock and a host that the test moves."""
    host, clock = Host(), Clock()
    base = fp.streams
    ops = StreamProcessors(fp.home, base.store, base.config, fp.collections, fp.arns, base.settings, clock=clock,
                           host_running=host)
    return ops, host, clock


def create(api: Any, name: str = "door-watch", **members: Any) -> str:
    args = {"input": INPUT, "output": OUTPUT, "name": name, "settings": SETTINGS, "role_arn": ROLE} | members
    return api.create_stream_processor(**args).stream_processor_arn


def status(api: Any, name: str = "door-watch") -> str:
    return api.describe_stream_processor(name).status


# -- Create and Describe ------------------------------------------------------------------------------


def test_create_and_describe(tmp_path: Path) -> None:
    fp = make(tmp_path, region="eu-west-3")
    arn = create(fp, regions_of_interest=[{"BoundingBox": {"Width": 0.5, "Height": 0.4, "Left": 0.5, "Top": 0.6}}],
                 data_sharing_preference={"OptIn": False})
    account = (fp.home / "account-id").read_text().strip()
    assert arn == f"arn:aws:rekognition:eu-west-3:{account}:streamprocessor/door-watch"
    described = fp.describe_stream_processor("door-watch").to_dict()
    validate(described, output_shape("DescribeStreamProcessor"))
    assert set(described) == {"Name", "StreamProcessorArn", "Status", "CreationTimestamp", "LastUpdateTimestamp",
                              "Input", "Output", "RoleArn", "Settings", "RegionsOfInterest", "DataSharingPreference"}
    assert (described["Name"], described["StreamProcessorArn"], described["Status"]) == ("door-watch", arn, STOPPED)
    assert (described["Input"], described["Output"], described["RoleArn"]) == (INPUT, OUTPUT, ROLE)
    assert described["Settings"] == SETTINGS
    assert described["CreationTimestamp"] == described["LastUpdateTimestamp"]
    validate(fp.create_stream_processor(INPUT, OUTPUT, "second", SETTINGS, ROLE).to_dict(),
             output_shape("CreateStreamProcessor"))
    china = Faceprint(tmp_path / "cn", region="cn-north-1").streams.arn("x")
    assert china.startswith("arn:aws-cn:rekognition:cn-north-1:") and china.endswith(":streamprocessor/x")


def test_the_stream_names_of_the_arns_pick_camera_and_sinks(fp: Faceprint) -> None:
    create(fp)
    row = fp.streams.store.get("door-watch")
    assert (row.video_stream, row.data_stream, row.collection_id, row.threshold) == ("door", "alerts", "watch", 85.5)
    assert fp.streams.config.source_url(row.video_stream) == CAMERA
    assert [s.kind for s in fp.streams.config.sinks_of(row.data_stream)] == ["webhook", "file"]


def test_a_processor_in_the_home_config_and_default_threshold(tmp_path: Path) -> None:
    fp = Faceprint(tmp_path / "home")
    fp.create_collection("watch")
    fp.streams.config.add_source("door", CAMERA)
    fp.streams.config.add_data_stream("alerts", "file:/tmp/x.jsonl")
    create(fp, settings={"FaceSearch": {"CollectionId": "watch"}})
    assert fp.streams.store.get("door-watch").threshold == 80.0
    assert "FaceMatchThreshold" not in fp.describe_stream_processor("door-watch").to_dict()["Settings"]["FaceSearch"]


BAD_CREATE = [
    ({"name": "bad name"}, "Name"),
    ({"name": "x" * 129}, "Name"),
    ({"name": ""}, "Name"),
    ({"input": {}}, "Input needs KinesisVideoStream"),
    ({"input": {"KinesisVideoStream": {"Arn": "arn:aws:kinesis:us-east-1:123456789012:stream/door"}}},
     "not a Kinesis video stream ARN"),
    ({"input": {"KinesisVideoStream": {"Arn": KVS.replace("/door/", "/porch/")}}},
     "porch is not mapped to a camera: add it with `faceprint streams add porch URL`"),
    ({"input": {"KinesisVideoStream": {"Arn": KVS, "Extra": 1}}}, "unknown member"),
    ({"input": "door"}, "Input must be an object"),
    ({"output": {"S3Destination": {"Bucket": "b"}}}, "S3Destination is not for face search"),
    ({"output": {"KinesisDataStream": {"Arn": "arn:aws:kinesis:us-east-1:123456789012:stream/nowhere"}}},
     "nowhere is not mapped to any sink"),
    ({"output": {"KinesisDataStream": {"Arn": "arn:aws:s3:::bucket"}}}, "not a Kinesis data stream ARN"),
    ({"settings": {"ConnectedHome": {"Labels": ["PERSON"]}}}, "ConnectedHome"),
    ({"settings": {}}, "Settings needs FaceSearch"),
    ({"settings": {"FaceSearch": {}}}, "Settings.FaceSearch needs CollectionId"),
    ({"settings": {"FaceSearch": {"CollectionId": "missing"}}}, "The collection missing does not exist"),
    ({"settings": {"FaceSearch": {"CollectionId": "bad id!"}}}, "CollectionId"),
    ({"settings": {"FaceSearch": {"CollectionId": "watch", "FaceMatchThreshold": 100.5}}}, "FaceMatchThreshold"),
    ({"settings": {"FaceSearch": {"CollectionId": "watch", "FaceMatchThreshold": True}}}, "FaceMatchThreshold"),
    ({"settings": {"FaceSearch": {"CollectionId": "watch", "FaceMatchThreshold": "90"}}}, "FaceMatchThreshold"),
    ({"role_arn": "arn:aws:iam::123:role/x"}, "RoleArn"),
    ({"tags": {"team": "pilot"}}, "Tags"),
    ({"notification_channel": {"SNSTopicArn": "arn:aws:sns:us-east-1:123456789012:t"}}, "NotificationChannel"),
    ({"kms_key_id": "alias/x"}, "KmsKeyId"),
    ({"regions_of_interest": [{"Polygon": [{"X": 0, "Y": 0}, {"X": 1, "Y": 0}, {"X": 1, "Y": 1}]}] * 11},
     "at most 10 regions"),
    ({"regions_of_interest": [{"BoundingBox": {"Width": 1, "Height": 1, "Left": 0, "Top": 0},
                               "Polygon": [{"X": 0, "Y": 0}] * 3}]}, "exactly one of BoundingBox and Polygon"),
    ({"regions_of_interest": [{}]}, "exactly one of BoundingBox and Polygon"),
    ({"regions_of_interest": [{"BoundingBox": {"Width": 1.5, "Height": 1, "Left": 0, "Top": 0}}]},
     r"RegionsOfInterest\[0\].BoundingBox.Width must be a number from 0 to 1"),
    ({"regions_of_interest": [{"BoundingBox": {"Width": 0.6, "Height": 0.5, "Left": 0.6, "Top": 0}}]},
     "reaches past the image"),
    ({"regions_of_interest": [{"BoundingBox": {"Width": 0, "Height": 0.5, "Left": 0.1, "Top": 0}}]}, "no area"),
    ({"regions_of_interest": [{"BoundingBox": {"Width": 0.5, "Height": 0.5, "Left": 0.1}}]}, "needs Top"),
    ({"regions_of_interest": [{"BoundingBox": {"Width": float("nan"), "Height": 0.5, "Left": 0.1, "Top": 0}}]},
     "Width must be a number"),
    ({"regions_of_interest": [{"Polygon": [{"X": 0, "Y": 0}, {"X": 1, "Y": 0}]}]}, "3 to 10 points"),
    ({"regions_of_interest": [{"Polygon": [{"X": 0, "Y": 0}, {"X": 1, "Y": 0}, {"X": 1, "Y": -0.1}]}]},
     r"Polygon\[2\].Y must be a number from 0 to 1"),
    ({"regions_of_interest": "everywhere"}, "list of at most 10"),
    ({"data_sharing_preference": {"OptIn": "yes"}}, "OptIn must be true or false"),
    ({"data_sharing_preference": {}}, "needs OptIn"),
]


@pytest.mark.parametrize(("members", "says"), BAD_CREATE)
def test_create_refuses_bad_members(fp: Faceprint, members: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidParameterException, match=says):
        create(fp, **members)
    assert fp.list_stream_processors().stream_processors == []


HUGE_INT = 10**5000  # past Python's 4300 digits for int -> str: an error message must not try to write it
BIG = "x" * 1_000_000


def test_hostile_members_get_short_clear_errors(fp: Faceprint) -> None:
    """Huge or odd members: InvalidParameterException whose message does not grow with the request,
    never a traceback (a ValueError writing a huge integer, a message echoing a megabyte)."""
    box = {"Width": HUGE_INT, "Height": 0.5, "Left": 0, "Top": 0}
    for members in ({"name": BIG}, {"role_arn": BIG}, {"settings": {"FaceSearch": {"CollectionId": BIG}}},
                    {"regions_of_interest": [{"BoundingBox": box}]},
                    {"regions_of_interest": [{"Polygon": [{"X": -HUGE_INT, "Y": 0}] * 3}]},
                    {"input": {HUGE_INT: 1, "x" * 10**6: 2, f"rtsp://admin:{SECRET}@cam/x": 3}}):
        with pytest.raises(InvalidParameterException) as caught:
            create(fp, **members)
        assert len(caught.value.message) < 500 and SECRET not in caught.value.message, members.keys()
    create(fp)
    start = {"KVSStreamStartSelector": {"ProducerTimestamp": HUGE_INT}}
    fragment = {"KVSStreamStartSelector": {"FragmentNumber": "9" * 10**6}}
    for call in (lambda: fp.start_stream_processor("door-watch", start),
                 lambda: fp.start_stream_processor("door-watch", fragment),
                 lambda: fp.start_stream_processor("door-watch", stop_selector={"MaxDurationInSeconds": HUGE_INT}),
                 lambda: fp.start_stream_processor("door-watch", stop_selector={"MaxDurationInSeconds": [[1]]}),
                 lambda: fp.list_stream_processors(max_results=-HUGE_INT),
                 lambda: fp.update_stream_processor("door-watch", parameters_to_delete=[BIG] * 100),
                 lambda: fp.describe_stream_processor(BIG)):
        with pytest.raises(InvalidParameterException) as caught:
            call()
        assert len(caught.value.message) < 500
    assert status(fp) == STOPPED


def test_create_refuses_a_taken_name_and_more_than_the_limit(tmp_path: Path) -> None:
    fp = make(tmp_path, max_processors=2)
    create(fp, "one")
    with pytest.raises(ResourceInUseException, match="one already exists"):
        create(fp, "one")
    create(fp, "two")
    with pytest.raises(LimitExceededException, match="at most 2"):
        create(fp, "three")
    for bad in ({"max_processors": 0}, {"max_processors": True}, {"connect_timeout": 0},
                {"sources": {"door": "srt://h:1"}}, {"data_streams": {"alerts": ["ftp://x"]}},
                {"data_streams": {"alerts": 5}}, {"data_streams": {"alerts": [f"file:/x{n}" for n in range(17)]}},
                {"sources": {"door": None}}, {"sources": {5: CAMERA}}):
        with pytest.raises(InvalidParameterException):
            Faceprint(tmp_path / "other", streams=StreamSettings(**bad)).streams  # noqa: B018


# -- the lifecycle ----------------------------------------------------------------------------------------


def test_lifecycle_with_a_host(streams: tuple[StreamProcessors, Host, Clock]) -> None:
    api, host, clock = streams
    create(api)
    store = api.store
    host.running = True
    clock.now += 10
    session = api.start_stream_processor("door-watch", stop_selector={"MaxDurationInSeconds": 60}).session_id
    assert uuid.UUID(session).version == 4
    row = store.get("door-watch")
    assert (row.status, row.desired, row.generation, row.session_id) == (STARTING, RUNNING, 1, session)
    assert (row.stop_selector, row.start_selector, row.started_at, row.updated) == (
        {"MaxDurationInSeconds": 60}, None, clock.now, clock.now)
    for call in (lambda: api.start_stream_processor("door-watch"), lambda: api.delete_stream_processor("door-watch"),
                 lambda: api.update_stream_processor("door-watch", regions_of_interest_for_update=[])):
        with pytest.raises(ResourceInUseException, match="door-watch is STARTING"):
            call()
    assert store.set_status("door-watch", RUNNING, None, generation=1)  # the host: first frame
    assert status(api) == RUNNING
    api.update_stream_processor("door-watch", {"FaceSearchForUpdate": {"FaceMatchThreshold": 95}})
    row = store.get("door-watch")
    assert (row.status, row.generation, row.threshold, row.desired) == (UPDATING, 2, 95.0, RUNNING)
    with pytest.raises(ResourceInUseException, match="UPDATING"):
        api.update_stream_processor("door-watch", {"FaceSearchForUpdate": {"FaceMatchThreshold": 90}})
    assert store.set_status("door-watch", RUNNING, None, generation=2)  # the host applied it
    api.stop_stream_processor("door-watch")
    row = store.get("door-watch")
    assert (row.status, row.desired, row.generation) == (STOPPING, STOPPED, 3)
    for call in (lambda: api.stop_stream_processor("door-watch"), lambda: api.start_stream_processor("door-watch"),
                 lambda: api.delete_stream_processor("door-watch")):
        with pytest.raises(ResourceInUseException, match="STOPPING"):
            call()
    assert not store.set_status("door-watch", RUNNING, None, generation=2)  # a late write of the old run: ignored
    assert store.set_status("door-watch", STOPPED, None, generation=3)  # the host stopped it
    api.delete_stream_processor("door-watch")
    for call in (lambda: api.describe_stream_processor("door-watch"), lambda: api.start_stream_processor("door-watch"),
                 lambda: api.stop_stream_processor("door-watch"), lambda: api.delete_stream_processor("door-watch"),
                 lambda: api.update_stream_processor("door-watch", parameters_to_delete=["RegionsOfInterest"])):
        with pytest.raises(ResourceNotFoundException, match="door-watch does not exist"):
            call()


def test_stop_without_a_host_is_at_once_and_a_stopping_left_by_a_dead_host_settles(
        streams: tuple[StreamProcessors, Host, Clock]) -> None:
    api, host, _ = streams
    create(api)
    api.start_stream_processor("door-watch")
    api.stop_stream_processor("door-watch")  # STARTING, no host: nothing to wait for
    assert (status(api), api.store.get("door-watch").desired) == (STOPPED, STOPPED)
    host.running = True
    api.start_stream_processor("door-watch")
    api.stop_stream_processor("door-watch")
    assert status(api) == STOPPING
    host.running = False  # the host died before it stopped the processor
    assert status(api) == STOPPED
    api.delete_stream_processor("door-watch")


def test_racing_calls_make_one_transition(streams: tuple[StreamProcessors, Host, Clock]) -> None:
    """Starts (and then stops) racing on separate connections, as from several server workers: one
    wins, the others get ResourceInUseException, and the generation moves once per winner."""
    api, host, _ = streams
    create(api)
    host.running = True

    def race(call: Any) -> list[str]:
        barrier, outcomes = threading.Barrier(6), []

        def one() -> None:
            barrier.wait()
            try:
                call()
                outcomes.append("ok")
            except ResourceInUseException:
                outcomes.append("in use")

        threads = [threading.Thread(target=one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        return sorted(outcomes)

    assert race(lambda: api.start_stream_processor("door-watch")) == ["in use"] * 5 + ["ok"]
    assert (api.store.get("door-watch").status, api.store.get("door-watch").generation) == (STARTING, 1)
    assert race(lambda: api.stop_stream_processor("door-watch")) == ["in use"] * 5 + ["ok"]
    assert (api.store.get("door-watch").status, api.store.get("door-watch").generation) == (STOPPING, 2)


def test_the_default_host_probe_is_the_host_lock(fp: Faceprint, tmp_path: Path) -> None:
    create(fp)
    fp.start_stream_processor("door-watch")
    lock = host_lock_path(fp.home)
    lock.touch()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
        "print('held', flush=True); sys.stdin.read()"), str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        fp.stop_stream_processor("door-watch")
        assert status(fp) == STOPPING  # a host runs: it will stop the processor
    finally:
        holder.communicate("", timeout=10)
    assert status(fp) == STOPPED  # that host is gone


def test_start_checks_the_collection_and_the_maps_again(tmp_path: Path) -> None:
    fp = Faceprint(tmp_path / "home")
    fp.create_collection("watch")
    config = fp.streams.config
    config.add_source("door", CAMERA)
    config.add_data_stream("alerts", HOOK)
    create(fp)
    config.remove_source("door")
    with pytest.raises(InvalidParameterException, match="door is no longer mapped to a camera"):
        fp.start_stream_processor("door-watch")
    config.add_source("door", CAMERA)
    config.remove_data_stream("alerts")
    with pytest.raises(InvalidParameterException, match="alerts is no longer mapped to a sink"):
        fp.start_stream_processor("door-watch")
    config.add_data_stream("alerts", HOOK)
    fp.delete_collection("watch")
    with pytest.raises(ResourceNotFoundException, match="collection watch"):
        fp.start_stream_processor("door-watch")
    assert status(fp) == STOPPED


def test_a_failed_processor_can_be_updated_started_or_deleted(streams: tuple[StreamProcessors, Host, Clock]) -> None:
    api, _, _ = streams
    create(api)
    api.start_stream_processor("door-watch")
    api.store.set_status("door-watch", FAILED, "Camera door could not be reached: Connection refused")
    described = api.describe_stream_processor("door-watch").to_dict()
    validate(described, output_shape("DescribeStreamProcessor"))
    assert (described["Status"], described["StatusMessage"]) == (
        FAILED, "Camera door could not be reached: Connection refused")
    assert api.store.wanted() == []
    with pytest.raises(ResourceInUseException, match="FAILED"):
        api.stop_stream_processor("door-watch")
    api.update_stream_processor("door-watch", data_sharing_preference_for_update={"OptIn": False})
    assert status(api) == FAILED
    api.start_stream_processor("door-watch")
    assert "StatusMessage" not in api.describe_stream_processor("door-watch").to_dict()
    api.store.set_status("door-watch", FAILED, "Collection watch was deleted.")
    api.delete_stream_processor("door-watch")


def test_selectors(streams: tuple[StreamProcessors, Host, Clock]) -> None:
    api, _, _ = streams
    create(api)
    start = {"KVSStreamStartSelector": {"ProducerTimestamp": 1_700_000_000_123}}
    api.start_stream_processor("door-watch", start, {"MaxDurationInSeconds": 120})
    row = api.store.get("door-watch")
    assert (row.start_selector, row.stop_selector) == (start, {"MaxDurationInSeconds": 120})
    api.stop_stream_processor("door-watch")
    api.start_stream_processor("door-watch", {"KVSStreamStartSelector": {"FragmentNumber": "91343852333181432"}})
    row = api.store.get("door-watch")
    assert (row.start_selector, row.stop_selector) == (
        {"KVSStreamStartSelector": {"FragmentNumber": "91343852333181432"}}, None)
    api.stop_stream_processor("door-watch")
    for start_selector, stop_selector, says in [
            ({}, None, "StartSelector needs KVSStreamStartSelector"),
            ({"KVSStreamStartSelector": {}}, None, "exactly one of ProducerTimestamp and FragmentNumber"),
            ({"KVSStreamStartSelector": {"ProducerTimestamp": 1, "FragmentNumber": "1"}}, None, "exactly one"),
            ({"KVSStreamStartSelector": {"ProducerTimestamp": -1}}, None, "ProducerTimestamp"),
            ({"KVSStreamStartSelector": {"ProducerTimestamp": 1.5}}, None, "ProducerTimestamp"),
            ({"KVSStreamStartSelector": {"FragmentNumber": "12a"}}, None, "FragmentNumber"),
            ({"KVSStreamStartSelector": {"FragmentNumber": "1" * 129}}, None, "FragmentNumber"),
            (None, {"MaxDurationInSeconds": 121}, "MaxDurationInSeconds must be an integer from 1 to 120"),
            (None, {"MaxDurationInSeconds": 0}, "MaxDurationInSeconds"),
            (None, {}, "StopSelector needs MaxDurationInSeconds"),
            (None, {"MaxDurationInSeconds": 5, "Other": 1}, "unknown member")]:
        with pytest.raises(InvalidParameterException, match=says):
            api.start_stream_processor("door-watch", start_selector, stop_selector)
    assert status(api) == STOPPED


def test_bad_names_are_invalid_not_missing(fp: Faceprint) -> None:
    for call in (fp.describe_stream_processor, fp.start_stream_processor, fp.stop_stream_processor,
                 fp.delete_stream_processor, lambda n: fp.update_stream_processor(n, parameters_to_delete=[])):
        for bad in ("bad name", "x" * 129, "", None, 7):
            with pytest.raises(InvalidParameterException, match="Name"):
                call(bad)
    assert fp.streams.collection_of("bad name") is None and fp.streams.collection_of("nothing") is None
    create(fp)
    assert fp.streams.collection_of("door-watch") == "watch"


# -- List ----------------------------------------------------------------------------------------------------


def test_list_pages_by_name(fp: Faceprint) -> None:
    names = ["e", "a", "d.2", "b_1", "c-3"]
    for name in names:
        create(fp, name)
    fp.start_stream_processor("d.2")
    first = fp.list_stream_processors().to_dict()
    validate(first, output_shape("ListStreamProcessors"))
    assert first == {"StreamProcessors": [{"Name": n, "Status": STARTING if n == "d.2" else STOPPED}
                                          for n in sorted(names)]}
    seen, token = [], None
    while True:
        page = fp.list_stream_processors(max_results=2, next_token=token)
        assert len(page.stream_processors) <= 2
        seen += [p["Name"] for p in page.stream_processors]
        token = page.next_token
        if token is None:
            break
        assert len(token) <= 255
    assert seen == sorted(names)
    assert fp.list_stream_processors(max_results=5).next_token is None
    for bad in ("not-a-token", "W1sic3RyZWFtcHJvY2Vzc29yIl1d", "x" * 300,
                fp.list_collections(max_results=1).next_token or "eyJhIjogMX0="):
        with pytest.raises(InvalidPaginationTokenException):
            fp.list_stream_processors(next_token=bad)
    for bad in (0, -1, "2", True):
        with pytest.raises(InvalidParameterException, match="MaxResults"):
            fp.list_stream_processors(max_results=bad)  # type: ignore[arg-type]


# -- Update ---------------------------------------------------------------------------------------------


def test_update_rules(fp: Faceprint) -> None:
    box = {"BoundingBox": {"Width": 0.5, "Height": 0.5, "Left": 0.25, "Top": 0.25}}
    polygon = {"Polygon": [{"X": 0.1, "Y": 0.1}, {"X": 0.9, "Y": 0.1}, {"X": 0.5, "Y": 0.9}]}
    create(fp, regions_of_interest=[box])
    fp.update_stream_processor("door-watch", regions_of_interest_for_update=[polygon, box])
    row = fp.streams.store.get("door-watch")
    assert (row.regions, row.status, row.generation) == ([polygon, box], STOPPED, 1)
    fp.update_stream_processor("door-watch", {"FaceSearchForUpdate": {"FaceMatchThreshold": 70}},
                               data_sharing_preference_for_update={"OptIn": True})
    described = fp.describe_stream_processor("door-watch").to_dict()
    assert described["Settings"] == {"FaceSearch": {"CollectionId": "watch", "FaceMatchThreshold": 70.0}}
    assert described["DataSharingPreference"] == {"OptIn": True}
    assert described["RegionsOfInterest"] == [polygon, box]
    fp.update_stream_processor("door-watch", parameters_to_delete=["RegionsOfInterest"])
    assert "RegionsOfInterest" not in fp.describe_stream_processor("door-watch").to_dict()
    fp.update_stream_processor("door-watch", regions_of_interest_for_update=[box])
    fp.update_stream_processor("door-watch", regions_of_interest_for_update=[])  # [] clears them too
    assert fp.streams.store.get("door-watch").regions == []
    for kwargs, says in [
            ({}, "Nothing to update"),
            ({"settings_for_update": {"ConnectedHomeForUpdate": {"Labels": ["PERSON"]}}}, "ConnectedHomeForUpdate"),
            ({"settings_for_update": {"FaceSearchForUpdate": {}}}, "needs FaceMatchThreshold"),
            ({"settings_for_update": {"FaceSearchForUpdate": {"FaceMatchThreshold": -1}}}, "FaceMatchThreshold"),
            ({"settings_for_update": {"Other": {}}}, "unknown member"),
            ({"parameters_to_delete": ["ConnectedHomeMinConfidence"]}, "ConnectedHomeMinConfidence"),
            ({"parameters_to_delete": ["Settings"]}, "unknown parameter"),
            ({"parameters_to_delete": "RegionsOfInterest"}, "list of parameter names"),
            ({"parameters_to_delete": ["RegionsOfInterest"], "regions_of_interest_for_update": [box]}, "contradict"),
            ({"regions_of_interest_for_update": [{"Polygon": []}]}, "3 to 10 points"),
            ({"data_sharing_preference_for_update": {"OptIn": 1}}, "OptIn")]:
        with pytest.raises(InvalidParameterException, match=says):
            fp.update_stream_processor("door-watch", **kwargs)
    assert fp.streams.store.get("door-watch").generation == 5  # the refused updates changed nothing


# -- secrets ---------------------------------------------------------------------------------------------


def test_no_answer_error_or_stored_row_holds_a_camera_password(fp: Faceprint) -> None:
    outputs: list[Any] = []
    outputs.append(fp.create_stream_processor(INPUT, OUTPUT, "door-watch", SETTINGS, ROLE).to_dict())
    outputs.append(fp.start_stream_processor("door-watch").to_dict())
    outputs.append(fp.describe_stream_processor("door-watch").to_dict())
    outputs.append(fp.list_stream_processors().to_dict())
    outputs.append(fp.streams.config.listing())
    outputs.append([s.display() for s in fp.streams.config.sinks_of("alerts")])
    outputs.append(repr(fp.streams.config.sinks_of("alerts")))
    outputs.append(repr(fp.streams.settings))  # a settings object in a log line or a traceback
    for call in (lambda: create(fp, input={"KinesisVideoStream": {"Arn": CAMERA}}),
                 lambda: create(fp, output={"KinesisDataStream": {"Arn": HOOK}}),
                 lambda: fp.streams.config.add_source("x", CAMERA.replace("rtsp", "srt")),
                 lambda: fp.streams.config.add_source("x", CAMERA + " "),
                 lambda: fp.streams.config.add_data_stream("x", HOOK.replace("https", "gopher"))):
        with pytest.raises(InvalidParameterException) as caught:
            call()
        outputs.append(caught.value.message)
    text = json.dumps(outputs)
    assert SECRET not in text, text
    assert re.search(r"\*\*\*", text)
    db = fp.home / "streams" / "processors.db"
    fp.streams.store.close()
    stored = b"".join(p.read_bytes() for p in db.parent.glob("processors.db*"))
    assert SECRET.encode() not in stored and KVS.encode() in stored
    sources = fp.home / "streams" / "sources.json"
    assert not sources.exists()  # the server's flags are never written to the home


def test_the_runner_gets_the_settings(tmp_path: Path) -> None:
    fp = make(tmp_path, connect_timeout=7.5)
    runner = fp.streams.make_runner()  # built, not started: no host process
    assert runner.pid is None and runner.config["connect_timeout"] == 7.5
    assert runner.config["sources"] == {"door": CAMERA} and runner.config["region"] == "us-east-1"
    assert SECRET not in " ".join(runner.command())  # camera URLs go on the host's stdin only


def test_streams_are_not_imported_by_faceprint(tmp_path: Path) -> None:
    code = ("import sys, faceprint, faceprint.service; from faceprint.service import Faceprint; "
            "fp = Faceprint(sys.argv[1]); print(sorted(m for m in sys.modules if m.startswith('faceprint.streams')))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
