"""Stream processors' sinks against real endpoints: the JSON-lines log on disk, a real HTTP webhook
receiver (slow, failing, dead), moto's real Kinesis server read back with boto3, and the store's
event ring (Server-Sent Events)."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faceprint.streams.config import parse_sink
from faceprint.streams.sinks import EventsSink, FileSink, KinesisSink, WebhookSink, open_sinks
from faceprint.streams.store import ProcessorStore
from faceprint.streams.types import RUNNING, ProcessorRow
from serverkit import free_port
from sinkkit import kinesis_server, throttling_proxy, wait_for, webhook_receiver

STREAM_ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/door/1700000000000"
FACE_ID = "0b683aed-a0f1-48b2-9b5e-139e9cc2a757"
SECRET = "Pa55-w0rd-9f3"


def frame(number: int, matched: bool = False) -> dict[str, Any]:
    """A Kinesis face search frame record as Rekognition writes it: one face, matched or not."""
    box = {"Width": 0.1, "Height": 0.2, "Left": 0.3 + number % 5 / 100, "Top": 0.25}
    face: dict[str, Any] = {"DetectedFace": {"BoundingBox": box, "Confidence": 99.9}, "MatchedFaces": []}
    if matched:
        face["DetectedFace"] |= {"Landmarks": [{"X": 0.35, "Y": 0.3, "Type": "eyeLeft"}],
                                 "Pose": {"Pitch": 1.0, "Roll": -2.0, "Yaw": 3.0},
                                 "Quality": {"Brightness": 60.0, "Sharpness": 80.0}}
        face["MatchedFaces"] = [{"Similarity": 97.5, "Face": {
            "BoundingBox": box, "Confidence": 99.99, "ExternalImageId": "visitor", "FaceId": FACE_ID,
            "ImageId": "9b0d9d2e-57f6-3e1b-a8d5-6bc0c5e4d1f2"}}]
    return {
        "InputInformation": {"KinesisVideo": {
            "StreamArn": STREAM_ARN, "FragmentNumber": str(91343852333181432392682062000 + number),
            "ServerTimestamp": 1700000000.5 + number / 5, "ProducerTimestamp": 1700000000.25 + number / 5,
            "FrameOffsetInSeconds": number % 5 / 5}},
        "StreamProcessorInformation": {"Status": "RUNNING"},
        "FaceSearchResponse": [face],
    }


def alert(number: int) -> dict[str, Any]:
    record = frame(number, matched=True)
    face = record["FaceSearchResponse"][0]
    return {"Alert": {"StreamProcessorName": "door", "StreamProcessorArn": "arn:aws:rekognition:us-east-1:"
                      "123456789012:streamprocessor/door", "StreamArn": STREAM_ARN, "TrackId": number,
                      "ProducerTimestamp": 1700000000.25, "ServerTimestamp": 1700000000.5,
                      "DetectedFace": face["DetectedFace"], "MatchedFaces": face["MatchedFaces"]}}


class Snapshot:
    """A snapshot callable that counts its calls (frames are encoded only for sinks that ask)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return b"\xff\xd8\xff\xe0 a jpeg \xff\xd9"


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[ProcessorStore]:
    """A store holding processors "door" and "gate" (events are kept for existing processors only)."""
    s = ProcessorStore(tmp_path / "processors.db")
    for name in ("door", "gate"):
        s.insert(ProcessorRow(name=name, arn=f"arn:aws:rekognition:us-east-1:123456789012:streamprocessor/{name}",
                              status=RUNNING, status_message=None, created=1.0, updated=1.0, request={}), 10)
    yield s
    s.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- the JSON-lines log -------------------------------------------------------------------------


def test_file_sink_rotates_keeping_n_private_files(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "door.jsonl"
    sink = FileSink(parse_sink(f"file:{path}"), max_bytes=6000, keep=2)
    records = [frame(n, matched=n % 3 == 0) for n in range(80)]
    for record in records:
        sink.put(record)
    sink.put(alert(1), alert=True)  # never in the Kinesis-format log
    sink.close()
    assert sink.stats.delivered == 80 and sink.stats.dropped == sink.stats.failed == 0
    kept = [path.with_name("door.jsonl.2"), path.with_name("door.jsonl.1"), path]
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(p.name for p in kept)
    assert all(mode(p) == 0o600 for p in kept) and all(p.stat().st_size <= 6000 for p in kept)
    written = [record for p in kept for record in lines(p)]
    assert written == records[-len(written):] and 15 < len(written) < 80  # the newest, in order, whole


def test_file_sink_appends_to_an_existing_log_and_tightens_it(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    path.write_text(json.dumps(frame(0)) + "\n")
    path.chmod(0o644)
    sink = FileSink(parse_sink(f"file:{path}"))
    sink.put(frame(1))
    sink.close()
    assert lines(path) == [frame(0), frame(1)] and mode(path) == 0o600


def test_file_sink_follows_a_log_moved_away(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    sink = FileSink(parse_sink(f"file:{path}"))
    sink.put(frame(1))
    wait_for(lambda: sink.stats.delivered == 1, what="the first record")
    path.rename(tmp_path / "door.jsonl.old")  # as logrotate does
    sink.put(frame(2))
    sink.close()
    assert lines(tmp_path / "door.jsonl.old") == [frame(1)] and lines(path) == [frame(2)] and mode(path) == 0o600


def test_file_sink_matches_only_with_snapshots(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    sink = FileSink(parse_sink(f"file:{path};matches-only;snapshots"))
    unmatched, matched, alerted = Snapshot(), Snapshot(), Snapshot()
    sink.put(frame(1), snapshot=unmatched)
    sink.put(frame(2, matched=True), snapshot=matched)
    sink.put(alert(2), alert=True, snapshot=alerted)
    sink.close()
    assert lines(path) == [frame(2, matched=True)]
    assert (unmatched.calls, matched.calls, alerted.calls) == (0, 1, 0)
    folder = tmp_path / "door.jsonl.snapshots"
    producer_ms = round(frame(2)["InputInformation"]["KinesisVideo"]["ProducerTimestamp"] * 1000)
    picture = folder / f"{producer_ms}-{FACE_ID}.jpg"
    assert [p.name for p in folder.iterdir()] == [picture.name]
    assert picture.read_bytes() == Snapshot()() and mode(picture) == 0o600 and mode(folder) == 0o700


def test_file_sink_keeps_no_frame_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    sink = FileSink(parse_sink(f"file:{path}"))
    snapshot = Snapshot()
    sink.put(frame(1, matched=True), snapshot=snapshot)
    sink.close()
    assert lines(path) == [frame(1, matched=True)] and snapshot.calls == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["door.jsonl"]


FULL_DISK = """
import json, resource, signal, sys
from pathlib import Path
from faceprint.streams.filelog import RotatingLog
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
log, failed = RotatingLog(Path(sys.argv[1])), 0
for n in range(40):
    try:
        log.write(json.dumps({"n": n, "pad": "x" * 50}).encode() + b"\\n")
    except OSError:
        failed += 1
log.close()
print(failed)
"""


def test_a_line_that_does_not_fit_leaves_no_part_of_it(tmp_path: Path) -> None:
    """A full disk (here: the process's file size limit, as the kernel enforces it) in the middle of a
    line: the log keeps whole lines only, so the retried line is readable after it."""
    path = tmp_path / "door.jsonl"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(path), "1000"], capture_output=True, text=True,
                          timeout=60, check=True)
    assert int(done.stdout) > 0, done.stderr  # some lines did not fit
    text = path.read_text()
    numbers = [json.loads(line)["n"] for line in text.splitlines()]
    assert text.endswith("\n") and numbers == list(range(len(numbers)))


def test_file_sink_counts_what_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the log's folder should be")
    sink = FileSink(parse_sink(f"file:{tmp_path}/taken/door.jsonl"), attempts=2, backoff=0.01)
    sink.put(frame(1))
    wait_for(lambda: sink.stats.failed == 1, what="a failed write")
    sink.close()
    stats = sink.stats
    assert (stats.delivered, stats.failed, stats.retries) == (0, 1, 1)
    assert "taken" in (stats.last_error or "")


# --- the webhook --------------------------------------------------------------------------------


def test_webhook_posts_matched_records_and_alerts_with_snapshots() -> None:
    with webhook_receiver() as hook:
        sink = WebhookSink(parse_sink(f"{hook.url};matches-only;snapshots"))
        unmatched, matched, alerted = Snapshot(), Snapshot(), Snapshot()
        sink.put(frame(1), snapshot=unmatched)
        sink.put(frame(2, matched=True), snapshot=matched)
        sink.put(alert(2), alert=True, snapshot=alerted)
        hook.wait(2)
        sink.close()
    assert hook.bodies[0] == frame(2, matched=True) and hook.kinds == ["frame", "alert"]
    assert hook.bodies[1] == alert(2) | {"Snapshot": {"Format": "jpeg",
                                                        "Bytes": base64.b64encode(Snapshot()()).decode()}}
    assert (unmatched.calls, matched.calls, alerted.calls) == (0, 0, 1)  # alerts only carry snapshots
    assert all(h["content-type"] == "application/json" for h, _ in hook.requests)
    assert sink.stats.delivered == 2 and len(hook.requests) == 2


def test_webhook_retries_with_backoff_and_counts_failures() -> None:
    with webhook_receiver(fail_first=2) as hook:
        sink = WebhookSink(parse_sink(hook.url), backoff=0.02)
        sink.put(frame(1))
        hook.wait(1)
        sink.close()
    assert hook.bodies == [frame(1)] and len(hook.requests) == 3  # two 500s, then delivered
    assert [json.loads(body) for _, body in hook.requests] == [frame(1)] * 3
    stats = sink.stats
    assert (stats.delivered, stats.retries, stats.failed, stats.last_error) == (1, 2, 0, "HTTP 500 from the webhook")
    with webhook_receiver(fail_first=100) as hook:
        sink = WebhookSink(parse_sink(hook.url), attempts=3, backoff=0.02)
        sink.put(frame(1))
        sink.put(frame(2))
        wait_for(lambda: sink.stats.failed == 2, what="two records given up")
        sink.close()
    assert len(hook.requests) == 6 and sink.stats.delivered == 0 and sink.stats.retries == 4


def test_dead_webhook_counts_failures() -> None:
    sink = WebhookSink(parse_sink(f"http://127.0.0.1:{free_port()}/hook"), attempts=2, backoff=0.01)
    for n in range(3):
        sink.put(frame(n))
    wait_for(lambda: sink.stats.failed == 3, what="three records given up")
    sink.close()
    assert sink.stats.delivered == 0 and "Connection refused" in (sink.stats.last_error or "")


def test_slow_webhook_never_stalls_put_and_close_is_bounded() -> None:
    with webhook_receiver(delay=5.0) as hook:
        sink = WebhookSink(parse_sink(hook.url), capacity=50)
        for n in range(200):
            sink.put(frame(n))
        # put returned 200 times while the receiver held its first request: the queue kept the
        # newest 50 (the one in flight aside) and dropped the oldest others, counted
        assert len(hook.requests) <= 1 and hook.bodies == []
        assert 149 <= sink.stats.dropped <= 150
        sink.close(timeout=0.5)  # a request in flight for 5 s: close gives up after 0.5 s
        stats = sink.stats
        assert (stats.delivered, stats.dropped, stats.failed) == (0, 200, 0)
        sink.put(frame(201))  # a closed sink drops
        assert sink.stats.dropped == 201


def test_https_webhook_checks_the_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_server_tls import self_signed

    cert, key = self_signed(tmp_path)
    with webhook_receiver(tls=(cert, key)) as hook:
        assert hook.url.startswith("https://")
        untrusted = WebhookSink(parse_sink(hook.url), attempts=1)
        untrusted.put(frame(1))
        wait_for(lambda: untrusted.stats.failed == 1, what="an untrusted certificate refused")
        untrusted.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the operator's CA, as for any OpenSSL client
        sink = WebhookSink(parse_sink(hook.url))
        sink.put(frame(2))
        hook.wait(1)
        sink.close()
    assert "CERTIFICATE_VERIFY_FAILED" in (untrusted.stats.last_error or "")
    assert hook.bodies == [frame(2)] and sink.stats.delivered == 1


def test_webhook_credentials_are_sent_not_shown() -> None:
    with webhook_receiver() as hook:
        url = hook.url.replace("http://", "http://officer:s3cret@")
        sink = open_sinks([parse_sink(url)], processor="door", region="us-east-1", store=None)[0]  # type: ignore[arg-type]
        assert isinstance(sink, WebhookSink) and "s3cret" not in sink.label
        sink.put(frame(1))
        hook.wait(1)
        sink.close()
    assert hook.requests[0][0]["authorization"] == "Basic " + base64.b64encode(b"officer:s3cret").decode()


def test_sink_errors_never_show_the_sinks_secrets(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
                                                 ) -> None:
    """botocore quotes an endpoint URL whole in its errors; a webhook's path is often its secret:
    neither reaches a log line or the stats."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    long_user = "u" * 215  # the password straddles the 300th character of botocore's error text
    sinks = [KinesisSink(parse_sink(f"kinesis:http://officer:{SECRET}@127.0.0.1:{port}/?token={SECRET}#faces"),
                         processor="door", region="us-east-1", attempts=1),
             WebhookSink(parse_sink(f"http://127.0.0.1:{port}/hooks/{SECRET}"), attempts=1),
             KinesisSink(parse_sink(f"kinesis:http://{long_user}:{SECRET}@127.0.0.1:{port}#faces"),
                         processor="door", region="us-east-1", attempts=1)]
    with caplog.at_level("WARNING", logger="faceprint.streams.delivery"):
        for sink in sinks:
            sink.put(frame(1))
        for sink in sinks:
            wait_for(lambda sink=sink: sink.stats.failed == 1, what="the record given up")
            sink.close()
    errors = [sink.stats.last_error or "" for sink in sinks]
    assert "Could not connect to the endpoint URL" in errors[0] and "127.0.0.1" in errors[0], errors
    assert caplog.records and all(SECRET[:6] not in r.getMessage() for r in caplog.records), caplog.text
    assert all(SECRET[:6] not in text for text in [*errors, *(s.label for s in sinks)]), errors


# --- Kinesis and the event ring -----------------------------------------------------------------


@pytest.fixture(scope="module")
def kinesis() -> Iterator[Any]:
    with kinesis_server() as server:
        yield server


@pytest.fixture()
def aws_env(kinesis: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in kinesis.env.items():
        monkeypatch.setenv(key, value)


def test_kinesis_and_events_read_back(kinesis: Any, aws_env: None, store: ProcessorStore, tmp_path: Path) -> None:
    kinesis.create_stream("faces")
    log = tmp_path / "door.jsonl"
    sinks = open_sinks([parse_sink(kinesis.spec("faces")), parse_sink(f"file:{log}")], processor="door",
                       region="us-east-1", store=store)
    assert [type(s) for s in sinks] == [KinesisSink, FileSink, EventsSink]
    records = [frame(n, matched=n % 4 == 0) for n in range(30)]
    for n, record in enumerate(records):
        for sink in sinks:
            sink.put(record)
        if n % 10 == 0:
            for sink in sinks:
                sink.put(alert(n), alert=True)
    for sink in sinks:
        sink.close()
    assert [s.stats.delivered for s in sinks] == [30, 30, 33]
    read = kinesis.records("faces")
    assert [json.loads(r["Data"]) for r in read] == records  # exactly Rekognition's records, no alert
    assert {r["PartitionKey"] for r in read} == {"door"}
    assert lines(log) == records
    events = store.events_after("door", 0, limit=1000)
    assert [kind for _, kind, _ in events].count("alert") == 3
    assert [json.loads(body) for _, kind, body in events if kind == "record"] == records
    assert [json.loads(body) for _, kind, body in events if kind == "alert"] == [alert(0), alert(10), alert(20)]


def test_kinesis_matches_only_and_oversized_records(kinesis: Any) -> None:
    kinesis.create_stream("matches")
    sink = KinesisSink(parse_sink(kinesis.spec("matches") + ";matches-only"), processor="door",
                       region="us-east-1", client=kinesis.client())
    huge = frame(3, matched=True)
    huge["FaceSearchResponse"][0]["MatchedFaces"][0]["Face"]["ExternalImageId"] = "x" * (1 << 20)
    for record in (frame(1), frame(2, matched=True), huge, frame(4)):
        sink.put(record)
    sink.close()
    assert kinesis.json_records("matches") == [frame(2, matched=True)]
    assert (sink.stats.delivered, sink.stats.failed) == (1, 1) and "1 MiB" in (sink.stats.last_error or "")


def test_kinesis_retries_until_the_stream_exists(kinesis: Any) -> None:
    sink = KinesisSink(parse_sink(kinesis.spec("late")), processor="door", region="us-east-1",
                       client=kinesis.client(), attempts=8, backoff=0.1)
    sink.put(frame(1))
    wait_for(lambda: sink.stats.retries >= 1, what="a retry")
    assert "ResourceNotFoundException" in (sink.stats.last_error or "")
    kinesis.create_stream("late")
    wait_for(lambda: sink.stats.delivered == 1, what="the record delivered")
    sink.close()
    assert kinesis.json_records("late") == [frame(1)] and sink.stats.failed == 0


def test_events_sink_keeps_alerts_apart(store: ProcessorStore) -> None:
    sink = EventsSink(store, "gate")
    sink.put(frame(1))
    sink.put(alert(1), alert=True)
    sink.close()
    assert [(kind, json.loads(body)) for _, kind, body in store.events_after("gate", 0)] == [
        ("record", frame(1)), ("alert", alert(1))]
    assert store.events_after("door", 0) == []


def test_open_sinks_starts_nothing_before_a_record(tmp_path: Path, store: ProcessorStore) -> None:
    import threading

    sinks = open_sinks([parse_sink(f"file:{tmp_path}/a.jsonl"), parse_sink("http://127.0.0.1:9/x")],
                       processor="quiet", region="us-east-1", store=store)
    assert [s.label for s in sinks] == [f"file:{tmp_path}/a.jsonl", parse_sink("http://127.0.0.1:9/x").display(),
                                        "events"]
    mine = [t.name for t in threading.enumerate() if str(tmp_path) in t.name or "127.0.0.1:9" in t.name
            or "quiet" in t.name]
    assert mine == []
    for sink in sinks:
        sink.close(timeout=0.1)
    assert not (tmp_path / "a.jsonl").exists()


def test_kinesis_retries_failed_records(kinesis: Any) -> None:
    kinesis.create_stream("busy")
    with throttling_proxy(kinesis) as proxy:
        sink = KinesisSink(parse_sink(f"kinesis:{proxy.endpoint}#busy"), processor="door", region="us-east-1",
                           client=kinesis.client(endpoint=proxy.endpoint), backoff=0.02)
        records = [frame(n) for n in range(10)]
        for record in records:
            sink.put(record)
        sink.close()
    assert proxy.throttled == 1
    stats = sink.stats
    assert (stats.delivered, stats.retries, stats.failed) == (10, 1, 0)
    assert "ProvisionedThroughputExceededException" in (stats.last_error or "")
    read = kinesis.json_records("busy")  # each once (the throttled ones after the others)
    assert sorted(read, key=lambda r: r["InputInformation"]["KinesisVideo"]["FragmentNumber"]) == records


def test_alerts_go_ahead_of_a_backlog_and_are_dropped_last() -> None:
    with webhook_receiver(delay=0.1) as first, webhook_receiver(delay=0.1) as second:
        ahead = WebhookSink(parse_sink(first.url), capacity=50)
        kept = WebhookSink(parse_sink(second.url), capacity=5)
        for sink in (ahead, kept):
            for n in range(20):
                sink.put(frame(n))
            sink.put(alert(20), alert=True)
            for n in range(21, 60):
                sink.put(frame(n))  # a full queue drops its oldest frame records, not the alert
        first.wait(2)
        second.wait(2)
        for sink in (ahead, kept):
            sink.close(timeout=0.1)
    # behind a backlog the alert went first, or second after the record in flight (not 11th)
    assert "alert" in first.kinds[:2] and first.bodies[first.kinds.index("alert")] == alert(20)
    assert alert(20) in second.bodies  # kept while 54 frame records were dropped
    assert ahead.stats.dropped >= 9 and kept.stats.dropped >= 54
