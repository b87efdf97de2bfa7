"""Stream config (camera URLs and sinks by stream name: parsing, redaction, private files) and the
processor store (transitions, events ring, two processes' view of one file)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faceprint.errors import (
    InvalidParameterException,
    LimitExceededException,
    ResourceInUseException,
    ResourceNotFoundException,
)
from faceprint.streams.config import (
    StreamConfig,
    check_name,
    host_lock_path,
    host_running,
    kinesis_stream_name,
    kvs_stream_name,
    parse_sink,
    parse_source_url,
    redact,
    streams_folder,
)
from faceprint.streams.store import EVENT_RING, ProcessorStore
from faceprint.streams.types import RUNNING, STARTING, STOPPED, ProcessorRow

SECRET = "s3cr3t-P4ss"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- camera URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "rtsp://127.0.0.1:8554/cam", "rtsp://admin:pw@10.0.0.2/live?transport=udp", "rtsps://cam.example:322/s",
    "http://127.0.0.1:8080/video.mjpg", "https://cams.example/hls/index.m3u8", "udp://127.0.0.1:5000",
    "rtsp-listen://127.0.0.1:8555/push", "file:///data/clip.mp4", "file:///data/clip.mp4?loop=1"])
def test_source_urls_accepted_unchanged(url: str) -> None:
    assert parse_source_url(url) == url


@pytest.mark.parametrize(("url", "says"), [
    ("srt://127.0.0.1:9000", "SRT is not offered: this PyAV build has no libsrt"),
    ("ftp://host/x", "not one faceprint reads"),
    ("rtsp:///path", "names no host"),
    ("udp://127.0.0.1", "needs a port"),
    ("rtsp-listen://127.0.0.1/push", "needs a port"),
    ("rtsp://h/x?transport=sctp", "transport must be tcp or udp"),
    ("file://relative/x.mp4", "file:///ABSOLUTE/PATH"),
    ("file:///x.mp4?loop=yes", "loop must be 0 or 1"),
    ("rtsp://h:99999/x", "not a URL"),
    ("rtsp://h/a b", "spaces or control characters"),
    ("", "1 to 4096"),
    ("rtsp://h/" + "x" * 5000, "1 to 4096"),
])
def test_bad_source_urls(url: str, says: str) -> None:
    with pytest.raises(InvalidParameterException, match=says):
        parse_source_url(url)


def test_errors_about_a_camera_url_never_show_its_password() -> None:
    with pytest.raises(InvalidParameterException) as caught:
        parse_source_url(f"rtsp://admin:{SECRET}@/x")
    assert SECRET not in caught.value.message and "***" in caught.value.message
    with pytest.raises(InvalidParameterException) as caught:
        parse_sink(f"ftp://user:{SECRET}@host/x")
    assert SECRET not in caught.value.message


@pytest.mark.parametrize(("url", "shown"), [
    (f"rtsp://admin:{SECRET}@10.0.0.2:554/live", "rtsp://***:***@10.0.0.2:554/live"),
    ("rtsp://admin@10.0.0.2/live", "rtsp://***@10.0.0.2/live"),
    (f"https://h/x.m3u8?token={SECRET}&camera=3", "https://h/x.m3u8?token=***&camera=3"),
    (f"https://h/x?X-Amz-Signature={SECRET}&X-Amz-Credential={SECRET}", "https://h/x?X-Amz-Signature=***&X-Amz-Credential=***"),
    (f"rtsp://u:{SECRET[:4]}/{SECRET[4:]}@cam/x", "rtsp://***:***@cam/x"),  # an unencoded '/' in a password
    (f"rtsp://u:a#{SECRET}@cam/x", "rtsp://***:***@cam/x"),
    ("rtsp://127.0.0.1:8554/cam", "rtsp://127.0.0.1:8554/cam"),
    # credentials in the path, as some cameras take them
    (f"rtsp://10.0.0.9:554/user=admin&password={SECRET}&channel=1", "rtsp://10.0.0.9:554/user=admin&password=***&channel=1"),
    (f"rtsp://cam/live;token={SECRET}", "rtsp://cam/live;token=***"),
    (f"rtsp://cam/user=admin_password={SECRET}_channel=1.sdp", "rtsp://cam/user=admin_password=***"),
    ("rtsp://cam/live?channel=keyframe", "rtsp://cam/live?channel=keyframe"),
    # not a URL: perhaps a mistyped password
    (f"not a url {SECRET}", "***"),
    (SECRET, "***"),
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize("text", [f"not a url {SECRET}", f"{SECRET}", f"cam:{SECRET}"])
def test_a_camera_url_that_is_no_url_is_not_echoed(text: str) -> None:
    with pytest.raises(InvalidParameterException) as caught:
        parse_source_url(text)
    assert SECRET not in caught.value.message


def test_redaction_is_linear_in_the_text() -> None:
    """A megabyte where an ARN or a URL goes is refused at once (a backtracking pattern over a URL's
    path took 13 s for 16 KB), and shown by its size only."""
    huge = "http://h/" + "a" * 1_000_000
    redact(huge)  # in linear time: a quadratic one would not end within the test's time
    with pytest.raises(InvalidParameterException) as caught:
        kvs_stream_name(huge)
    assert "1000009 characters" in caught.value.message


def test_bad_names_and_arns_are_shown_short() -> None:
    with pytest.raises(InvalidParameterException) as caught:
        check_name("door cam")
    assert "door cam" in caught.value.message
    with pytest.raises(InvalidParameterException) as caught:
        check_name("x" * 1_000_000 + "!")
    assert len(caught.value.message) < 400
    with pytest.raises(InvalidParameterException) as caught:
        kvs_stream_name("arn:" + "x" * 2000)
    assert len(caught.value.message) < 400 and "arn:xxx" in caught.value.message


# -- sinks ----------------------------------------------------------------------------------------------


def test_sinks_parsed() -> None:
    spec = parse_sink("file:/var/log/fp/cam.jsonl")
    assert (spec.kind, spec.target, spec.stream, spec.matches_only, spec.snapshots) == (
        "file", "/var/log/fp/cam.jsonl", None, False, False)
    spec = parse_sink(f"https://hook:{SECRET}@alerts.example/in?key={SECRET};snapshots;matches-only")
    assert (spec.kind, spec.matches_only, spec.snapshots) == ("webhook", True, True)
    assert spec.target == f"https://hook:{SECRET}@alerts.example/in?key={SECRET}"
    shown = spec.display()
    assert re.fullmatch(r"https://alerts\.example/\*\*\*~[0-9a-f]{8};matches-only;snapshots", shown), shown
    assert SECRET not in repr(spec) and SECRET not in str(spec)
    spec = parse_sink("kinesis:http://127.0.0.1:4567#faces;matches-only")
    assert (spec.kind, spec.target, spec.stream, spec.matches_only) == (
        "kinesis", "http://127.0.0.1:4567", "faces", True)
    assert parse_sink("kinesis:aws#faces").target == "aws"
    assert parse_sink("http://h/x;snapshot").target == "http://h/x;snapshot"  # not an option word: part of the URL


@pytest.mark.parametrize(("text", "says"), [
    ("file:relative.jsonl", "ABSOLUTE"),
    ("file:/var/log/", "ABSOLUTE"),
    ("kinesis:http://127.0.0.1:4567", "ENDPOINT_URL#STREAM"),
    ("kinesis:http://h#bad/name", "ENDPOINT_URL#STREAM"),
    ("kinesis:ftp://h#s", "http:// or https://"),
    ("kinesis:aws#s;snapshots", "Snapshots are kept by file and webhook sinks"),
    ("http://", "with a host"),
    ("http://h/x;matches-only;matches-only", "twice"),
    ("s3://bucket/key", "not one faceprint writes to"),
])
def test_bad_sinks(text: str, says: str) -> None:
    with pytest.raises(InvalidParameterException, match=says):
        parse_sink(text)


def test_a_webhook_is_shown_without_its_path() -> None:
    """Webhook URLs are often capabilities: the path is the secret (Slack-like hooks). Two of them on
    one host still get two labels (metrics, listings)."""
    one = parse_sink(f"https://hooks.example/services/T0/B0/{SECRET}").display()
    two = parse_sink(f"https://hooks.example/services/T0/B1/{SECRET}x").display()
    assert SECRET not in one and SECRET not in two and one != two
    assert one.startswith("https://hooks.example/***~")
    # the digest is of the path alone: a password or a token could be guessed back from a digest of them
    weak = parse_sink("https://officer:1234@hooks.example/in?token=5678").display()
    assert weak == parse_sink("https://hooks.example/in").display()
    assert parse_sink("http://127.0.0.1:9000").display() == "http://127.0.0.1:9000/"
    assert parse_sink("http://127.0.0.1:9000/").display() == "http://127.0.0.1:9000/"


# -- ARNs -----------------------------------------------------------------------------------------------


def test_stream_names_from_arns() -> None:
    arn = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/front-door/1700000000000"
    assert kvs_stream_name(arn) == "front-door"
    assert kvs_stream_name("arn:aws-cn:kinesisvideo:cn-north-1:123456789012:stream/cam.1") == "cam.1"
    assert kinesis_stream_name("arn:aws:kinesis:eu-west-1:123456789012:stream/faces_out") == "faces_out"
    for bad in ("arn:aws:kinesis:us-east-1:123456789012:stream/x", "arn:aws:kinesisvideo:us-east-1:12345:stream/x/1",
                "arn:aws:kinesisvideo:us-east-1:123456789012:channel/x/1", "stream/x", 7, "a" * 5000):
        with pytest.raises(InvalidParameterException, match="KinesisVideoStream.Arn"):
            kvs_stream_name(bad)  # type: ignore[arg-type]
    for bad in ("arn:aws:kinesisvideo:us-east-1:123456789012:stream/x/1",
                "arn:aws:kinesis:us-east-1:123456789012:stream/a/b", None):
        with pytest.raises(InvalidParameterException, match="KinesisDataStream.Arn"):
            kinesis_stream_name(bad)  # type: ignore[arg-type]


# -- the maps in the home -----------------------------------------------------------------------------


def test_config_files_are_private_and_merged_with_overrides(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = StreamConfig(home, sources={"lobby": f"rtsp://srv:{SECRET}@10.0.0.9/x"},
                          data_streams={"alerts": "https://h/in"})
    config.add_source("door", f"rtsp://admin:{SECRET}@10.0.0.2/live")
    config.add_source("lobby", "rtsp://10.0.0.3/home-entry")  # the server's flag wins over it
    config.add_data_stream("faces", "file:/tmp/faces.jsonl")
    config.add_data_stream("faces", "kinesis:http://127.0.0.1:4567#faces")
    config.add_data_stream("faces", "file:/tmp/faces.jsonl")  # the same twice: once
    folder = streams_folder(home)
    assert mode(folder) == 0o700
    for name in ("sources.json", "data-streams.json"):
        assert mode(folder / name) == 0o600
    assert config.sources() == {"door": f"rtsp://admin:{SECRET}@10.0.0.2/live",
                                "lobby": f"rtsp://srv:{SECRET}@10.0.0.9/x"}
    assert config.data_streams() == {"faces": ["file:/tmp/faces.jsonl", "kinesis:http://127.0.0.1:4567#faces"],
                                     "alerts": ["https://h/in"]}
    assert [s.kind for s in config.sinks_of("faces")] == ["file", "kinesis"]
    assert config.sinks_of("nothing") == []
    listing = config.listing()
    assert SECRET not in json.dumps(listing)
    assert listing["Streams"] == [{"Name": "door", "Url": "rtsp://***:***@10.0.0.2/live", "From": "home"},
                                  {"Name": "lobby", "Url": "rtsp://***:***@10.0.0.9/x", "From": "server"}]
    assert listing["DataStreams"][0] == {"Name": "alerts", "Sinks": [parse_sink("https://h/in").display()],
                                         "From": "server"}
    assert listing["DataStreams"][0]["Sinks"][0].startswith("https://h/***~")
    # another process (a CLI) sees the home's entries; not the server's overrides
    other = StreamConfig(home)
    assert other.source_url("door") == f"rtsp://admin:{SECRET}@10.0.0.2/live"
    assert other.source_url("lobby") == "rtsp://10.0.0.3/home-entry"
    assert other.remove_source("door") and not other.remove_source("door")
    assert other.remove_data_stream("faces") and not other.remove_data_stream("faces")
    assert config.sources() == {"lobby": f"rtsp://srv:{SECRET}@10.0.0.9/x"}
    assert config.overrides() == ({"lobby": f"rtsp://srv:{SECRET}@10.0.0.9/x"}, {"alerts": ["https://h/in"]})
    assert mode(folder / "sources.json") == 0o600
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_config_refuses_bad_names_urls_and_sinks(tmp_path: Path) -> None:
    config = StreamConfig(tmp_path)
    with pytest.raises(InvalidParameterException, match="stream name"):
        config.add_source("bad name", "rtsp://h/x")
    with pytest.raises(InvalidParameterException, match="SRT"):
        config.add_source("cam", "srt://h:1")
    with pytest.raises(InvalidParameterException, match="data stream name"):
        config.add_data_stream("x/y", "file:/tmp/x")
    with pytest.raises(InvalidParameterException, match="ABSOLUTE"):
        config.add_data_stream("out", "file:x")
    with pytest.raises(InvalidParameterException, match="SRT"):
        StreamConfig(tmp_path, sources={"cam": "srt://h:1"})
    assert not (tmp_path / "streams" / "sources.json").exists()


def test_a_damaged_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    config = StreamConfig(tmp_path)
    config.add_source("cam", "rtsp://h/x")
    (tmp_path / "streams" / "sources.json").write_text("[1, 2")
    with pytest.raises(Exception, match="sources.json cannot be read"):
        config.sources()


def test_host_running_follows_the_host_lock(tmp_path: Path) -> None:
    assert not host_running(tmp_path)  # no lock file: no host ever ran
    streams_folder(tmp_path)
    host_lock_path(tmp_path).touch()
    assert not host_running(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
        "print('held', flush=True); sys.stdin.read()"), str(host_lock_path(tmp_path))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert host_running(tmp_path)
        assert host_running(tmp_path)  # asking does not take the lock away
    finally:
        holder.communicate("", timeout=10)
    assert not host_running(tmp_path)


# -- the store --------------------------------------------------------------------------------------------


def row(name: str, status: str = STOPPED) -> ProcessorRow:
    return ProcessorRow(name=name, arn=f"arn:aws:rekognition:us-east-1:123456789012:streamprocessor/{name}",
                        status=status, status_message=None, created=1.0, updated=1.0,
                        request={"Settings": {"FaceSearch": {"CollectionId": "c"}}})


def test_store_rows_transitions_and_limits(tmp_path: Path) -> None:
    store = ProcessorStore(tmp_path / "streams" / "processors.db")
    assert mode(tmp_path / "streams" / "processors.db") == 0o600
    store.insert(row("b"), 2)
    with pytest.raises(ResourceInUseException, match="already exists"):
        store.insert(row("b"), 2)
    store.insert(row("a"), 2)
    with pytest.raises(LimitExceededException):
        store.insert(row("c"), 2)
    assert [r.name for r in store.page(None, 1)] == ["a"] and [r.name for r in store.page("a", 5)] == ["b"]
    new = store.transition("a", {STOPPED}, status=STARTING, desired=RUNNING, generation=lambda r: r.generation + 1,
                           updated=5.0)
    assert (new.status, new.desired, new.generation, new.updated) == (STARTING, RUNNING, 1, 5.0)
    assert store.get("a") == new and [r.name for r in store.wanted()] == ["a"]
    with pytest.raises(ResourceInUseException, match="a is STARTING"):
        store.transition("a", {STOPPED}, status=RUNNING)
    with pytest.raises(ResourceNotFoundException):
        store.transition("zz", {STOPPED}, status=RUNNING)
    assert not store.set_status("a", RUNNING, None, generation=0)  # an old generation writes nothing
    assert store.set_status("a", RUNNING, "ok", generation=1)
    assert (store.get("a").status, store.get("a").status_message) == (RUNNING, "ok")
    changed = store.get("a").updated
    assert changed > 5.0  # LastUpdateTimestamp follows status changes
    assert store.set_status("a", RUNNING, "Camera reconnecting (attempt 1)", generation=1)
    assert store.get("a").updated == changed  # not messages alone
    assert store.set_status("a", "FAILED", "Camera door could not be reached: timeout")
    assert (store.get("a").status, store.get("a").desired) == ("FAILED", STOPPED)  # a failed processor is unwanted
    store.set_health("a", {"connected": True, "frames_read": 7})
    assert store.get("a").health == {"connected": True, "frames_read": 7}
    with pytest.raises(ResourceInUseException):
        store.delete("b", allowed={"FAILED"})
    assert store.delete("a") and not store.delete("a") and [r.name for r in store.all()] == ["b"]


def test_events_ring_and_events_after(tmp_path: Path) -> None:
    store = ProcessorStore(tmp_path / "p.db")
    store.insert(row("cam"), 5)
    store.insert(row("other"), 5)
    assert store.last_seq("cam") == 0 and store.events_after("cam", 0) == []
    store.add_events("other", [("record", '{"n": -1}')])
    for start in range(0, EVENT_RING + 300, 100):
        store.add_events("cam", [("alert" if n % 50 == 0 else "record", json.dumps({"n": n}))
                                 for n in range(start, start + 100)])
    kept = store.events_after("cam", 0, limit=10 * EVENT_RING)
    assert len(kept) == EVENT_RING  # the oldest 300 were trimmed
    assert [json.loads(body)["n"] for _, _, body in kept] == list(range(300, EVENT_RING + 300))
    seqs = [seq for seq, _, _ in kept]
    assert seqs == sorted(seqs) and store.last_seq("cam") == seqs[-1]
    assert kept[0][1] == "alert" and kept[1][1] == "record"
    page = store.events_after("cam", seqs[10], limit=5)
    assert [s for s, _, _ in page] == seqs[11:16]
    assert len(store.events_after("other", 0)) == 1  # another processor's ring is its own
    last = store.last_seq("cam")
    store.delete("cam")
    store.insert(row("cam"), 5)
    store.add_events("cam", [("record", "{}")])
    assert store.events_after("cam", 0)[0][0] > last  # seqs are never reused: old Last-Event-IDs stay meaningful


def on_disk(folder: Path, pattern: bytes) -> set[bytes]:
    """The matches of ``pattern`` anywhere in the store's files (database, WAL, shared memory)."""
    data = b"".join(p.read_bytes() for p in folder.glob("p.db*"))
    return set(re.findall(pattern, data))


def test_events_dropped_from_the_ring_or_deleted_are_not_left_on_disk(tmp_path: Path) -> None:
    """Only the ring stays on disk: copies of the events it dropped do not linger in the WAL, and a
    processor deleted while its sinks still deliver gets no events back."""
    store = ProcessorStore(tmp_path / "p.db", erase_every=0.0)
    store.insert(row("cam"), 5)
    pad = "y" * 800
    for start in range(0, 3 * EVENT_RING, 20):
        store.add_events("cam", [("record", json.dumps({"box": f"B{n:05d}X", "pad": pad}))
                                 for n in range(start, start + 20)])
    kept = on_disk(tmp_path, rb"B(\d{5})X")
    assert len(kept) <= EVENT_RING + 40, len(kept)  # the ring, and the last writes' pages
    assert min(int(k) for k in kept) >= 2 * EVENT_RING - 40
    store.delete("cam")
    store.add_events("cam", [("record", '{"box": "B99999X"}')])  # a sink's late delivery
    assert store.events_after("cam", 0) == [] and on_disk(tmp_path, rb"B(\d{5})X") == set()


def test_two_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    """The API process and the host process each open the store; a write of one is read by the other."""
    path = tmp_path / "streams" / "processors.db"
    api, host = ProcessorStore(path), ProcessorStore(path)
    api.insert(row("door"), 10)
    api.transition("door", {STOPPED}, status=STARTING, desired=RUNNING, generation=1)
    assert [(r.name, r.generation) for r in host.wanted()] == [("door", 1)]
    assert host.set_status("door", RUNNING, None, generation=1)
    host.add_events("door", [("record", '{"x": 1}')])
    assert api.get("door").status == RUNNING and api.events_after("door", 0)[0][2] == '{"x": 1}'
    # and from another OS process, as the host really is
    script = ("import sys; from faceprint.streams.store import ProcessorStore; s = ProcessorStore(sys.argv[1]); "
              "s.set_status('door', 'STOPPED', None, generation=2); s.add_events('door', [('alert', '{}')]); "
              "print(s.get('door').status)")
    api.transition("door", {RUNNING}, status="STOPPING", desired=STOPPED, generation=2)
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == STOPPED
    assert api.get("door").status == STOPPED and api.last_seq("door") == host.last_seq("door")
    assert api.get("door").updated <= time.time()
