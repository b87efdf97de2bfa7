"""Stream processors through `faceprint serve` and boto3, on real parts: a GStreamer RTSP camera serving a
clip of an enrolled LFW person, moto's Kinesis server, a JSON-lines file and real webhook receivers, and
Server-Sent Events read with botocore-presigned URLs. Also, on their own: presigned URL verification
against botocore's own URLs, the serve flags (never showing a secret) and the stream metrics text."""

from __future__ import annotations

import http.client
import json
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from camerakit import rtsp_camera
from conftest import lfw_image, models_dir
from faceprint.server.auth import AuthError, KeyStore, verify_presigned
from faceprint.server.metrics import stream_metrics
from faceprint.server.streams import stream_flags
from serverkit import REGION, Server, faceprint_keys
from sinkkit import kinesis_server, wait_for, webhook_receiver

SECRET = "s3cr3t-Pa55"


# -- presigned URLs (botocore's SigV4QueryAuth) -------------------------------------------------------------

def presign(url: str, key_id: str, secret: str, expires: int = 600, region: str = "us-east-1",
            service: str = "rekognition", when: datetime | None = None) -> str:
    """``url`` presigned as botocore presigns (``SigV4QueryAuth``), signed at ``when`` (default now)."""
    from unittest.mock import patch

    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=url)
    signer = SigV4QueryAuth(Credentials(key_id, secret), service, region, expires=expires)
    if when is None:
        signer.add_auth(request)
    else:  # botocore reads the clock through botocore.auth.get_current_datetime
        with patch("botocore.auth.get_current_datetime", return_value=when):
            signer.add_auth(request)
    return request.url


def check(url: str, keys: KeyStore, now: datetime | None = None) -> Any:
    parts = urlsplit(url)
    return verify_presigned("GET", parts.path, parts.query, {"host": parts.netloc}, keys, now=now)


def refused(url: str, keys: KeyStore, now: datetime | None = None) -> AuthError:
    with pytest.raises(AuthError) as exc:
        check(url, keys, now)
    return exc.value


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path)


EVENTS = "/stream-processors/door%20one/events?after=3"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_botocore_presigned_urls_are_accepted(keys: KeyStore, scheme: str) -> None:
    key = keys.create("dash")
    url = presign(f"{scheme}://127.0.0.1:8443{EVENTS}", key.access_key_id, key.secret_access_key)
    assert check(url, keys).access_key_id == key.access_key_id
    assert "X-Amz-Signature=" in url and "after=3" in url


def test_presigned_urls_that_are_changed_or_wrong_are_refused(keys: KeyStore) -> None:
    key = keys.create("dash")
    url = presign(f"http://127.0.0.1:8080{EVENTS}", key.access_key_id, key.secret_access_key)
    assert refused(url.replace("after=3", "after=0"), keys).code == "InvalidSignatureException"
    assert refused(url.replace("door%20one", "door%20two"), keys).code == "InvalidSignatureException"
    parts = urlsplit(url)
    with pytest.raises(AuthError) as exc:  # another host than the one signed
        verify_presigned("GET", parts.path, parts.query, {"host": "127.0.0.1:9999"}, keys)
    assert exc.value.code == "InvalidSignatureException"
    wrong = presign(f"http://127.0.0.1:8080{EVENTS}", key.access_key_id, "not-the-secret")
    assert refused(wrong, keys).code == "InvalidSignatureException"
    unknown = presign(f"http://127.0.0.1:8080{EVENTS}", "AKIAUNKNOWNKEY000000", key.secret_access_key)
    assert refused(unknown, keys).code == "UnrecognizedClientException"
    other = presign(f"http://127.0.0.1:8080{EVENTS}", key.access_key_id, key.secret_access_key, service="s3")
    assert refused(other, keys).code == "InvalidSignatureException"
    assert refused(f"http://127.0.0.1:8080{EVENTS}", keys).code == "MissingAuthenticationTokenException"
    no_signature = "&".join(p for p in url.split("&") if not p.startswith("X-Amz-Signature"))
    assert refused(no_signature, keys).code == "IncompleteSignatureException"
    twice = url + "&X-Amz-Expires=600"
    assert refused(twice, keys).code == "IncompleteSignatureException"
    keys.update(key.access_key_id, status="Inactive")
    assert refused(url, keys).code == "UnrecognizedClientException"


def test_presigned_urls_expire(keys: KeyStore) -> None:
    key = keys.create("dash")
    signed_at = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    url = presign(f"http://127.0.0.1:8080{EVENTS}", key.access_key_id, key.secret_access_key, expires=300,
                  when=signed_at)
    assert "X-Amz-Date=20260301T120000Z" in url
    assert check(url, keys, now=signed_at + timedelta(seconds=299)).access_key_id == key.access_key_id
    late = refused(url, keys, now=signed_at + timedelta(seconds=301))
    assert late.code == "AccessDeniedException" and late.status == 403 and "expired" in late.message
    early = refused(url, keys, now=signed_at - timedelta(minutes=16))  # signed in the future
    assert early.code == "InvalidSignatureException"
    week = presign(f"http://127.0.0.1:8080{EVENTS}", key.access_key_id, key.secret_access_key,
                   expires=7 * 24 * 3600, when=signed_at)
    assert check(week, keys, now=signed_at + timedelta(days=6, hours=23)).access_key_id == key.access_key_id
    longer = presign(f"http://127.0.0.1:8080{EVENTS}", key.access_key_id, key.secret_access_key,
                     expires=7 * 24 * 3600 + 1, when=signed_at)
    assert refused(longer, keys, now=signed_at).code == "IncompleteSignatureException"


# -- the serve flags ---------------------------------------------------------------------------------------

def test_stream_flags_check_without_showing_secrets(tmp_path: Path) -> None:
    flags = stream_flags([f"door=rtsp://admin:{SECRET}@10.0.0.7/cam", "yard=udp://127.0.0.1:5004"],
                         [f"faces=file:{tmp_path}/f.jsonl", f"faces=https://hook.example/x?token={SECRET}",
                          f"faces=file:{tmp_path}/f.jsonl"])
    assert flags.sources["door"].endswith("@10.0.0.7/cam") and len(flags.data_streams["faces"]) == 2
    assert SECRET not in repr(flags)
    for streams, sinks in (([f"door=srt://cam:9000?passphrase={SECRET}"], []),
                           ([f"door=gopher://u:{SECRET}@cam"], []),
                           ([f"door=rtsp://u:{SECRET}@cam/a", f"door=rtsp://u:{SECRET}@cam/b"], []),
                           ([f"rtsp://u:{SECRET}@cam/a"], []),
                           ([SECRET], []),
                           ([], [f"faces=ftp://u:{SECRET}@x"]),
                           ([], [f"faces:kinesis:http://u:{SECRET}@x#s"]),
                           ([], [f"bad name=file:/tmp/{SECRET}"])):
        with pytest.raises(Exception) as exc:
            stream_flags(streams, sinks)
        assert getattr(exc.value, "code", None) == "InvalidParameterException", exc.value
        assert SECRET not in str(exc.value), exc.value


# -- a key limited to some collections ----------------------------------------------------------------------

def test_a_limited_key_lists_only_its_collections_processors(tmp_path: Path) -> None:
    from faceprint.server.handler import visible_processors
    from faceprint.service import Faceprint
    from faceprint.streams.service import StreamSettings

    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir(), streams=StreamSettings(
        sources={"cam": "rtsp://127.0.0.1:9/cam"}, data_streams={"faces": [f"file:{tmp_path}/f.jsonl"]}))
    for collection in ("team-a-1", "team-b-1"):
        fp.create_collection(collection)
    names = [f"p{i}" for i in range(7)]
    for i, name in enumerate(names):  # p0, p3, p6 on team-a; the others on team-b
        fp.create_stream_processor({"KinesisVideoStream": {"Arn": VIDEO_ARN.replace("/lobby/", "/cam/")}},
                                   {"KinesisDataStream": {"Arn": DATA_ARN}}, name,
                                   {"FaceSearch": {"CollectionId": "team-a-1" if i % 3 == 0 else "team-b-1"}}, ROLE)
    key = KeyStore(tmp_path).create("a", collections=["team-a-*"])
    for size in (1, 2, 3, 1000):
        seen, token, pages = [], None, 0
        while True:
            page = visible_processors(fp, key, size, token)
            pages += 1
            assert page["StreamProcessors"] and len(page["StreamProcessors"]) <= size
            seen += [p["Name"] for p in page["StreamProcessors"]]
            token = page.get("NextToken")
            if token is None:
                break
        assert seen == ["p0", "p3", "p6"] and pages == -(-3 // size), (size, seen)
    nobody = KeyStore(tmp_path).create("c", collections=["team-c-*"])
    assert visible_processors(fp, nobody, 2, None) == {"StreamProcessors": []}


# -- the events endpoint in this process ---------------------------------------------------------------------

def test_idle_event_streams_get_heartbeats_and_end_at_shutdown(tmp_path: Path) -> None:
    """In a guarded uvicorn (as `faceprint serve` runs it): a stream with nothing to send gets comment lines, and
    the server's graceful shutdown ends it at once (not at the graceful timeout)."""
    import threading

    import uvicorn

    from faceprint.server.app import AppOptions, create_app
    from faceprint.server.events import EventSettings
    from faceprint.server.guard import GuardedConfig, GuardSettings
    from faceprint.service import Faceprint
    from faceprint.streams.service import StreamSettings
    from serverkit import free_port

    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir(), streams=StreamSettings(
        sources={"cam": "rtsp://127.0.0.1:9/cam"}, data_streams={"faces": [f"file:{tmp_path}/f.jsonl"]}))
    fp.create_collection("watch")
    fp.create_stream_processor({"KinesisVideoStream": {"Arn": VIDEO_ARN.replace("/lobby/", "/cam/")}},
                               {"KinesisDataStream": {"Arn": DATA_ARN}}, "quiet",
                               {"FaceSearch": {"CollectionId": "watch"}}, ROLE)
    app = create_app(fp, options=AppOptions(warm=False, events=EventSettings(heartbeat=0.2)))
    port = free_port()
    server = uvicorn.Server(GuardedConfig(app, GuardSettings(), host="127.0.0.1", port=port, log_level="warning",
                                          timeout_graceful_shutdown=60))
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "the server")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/stream-processors/quiet/events")
        response = conn.getresponse()
        assert response.status == 200
        lines = [response.readline() for _ in range(6)]
        assert lines[:2] == [b"retry: 2000\n", b"\n"] and lines[2:] == [b": heartbeat\n", b"\n"] * 2, lines
        server.should_exit = True  # what SIGTERM does
        while response.readline():  # the stream ends (else the read times out in 30 s)
            pass
        conn.close()
        thread.join(30)
        assert not thread.is_alive()  # the server stopped, not held to its 60 s graceful timeout
    finally:
        server.should_exit = True
        thread.join(30)


# -- the stream metrics text --------------------------------------------------------------------------------

def test_stream_metrics_are_prometheus_text(tmp_path: Path) -> None:
    assert stream_metrics(tmp_path) == ""
    (tmp_path / "streams").mkdir()
    path = tmp_path / "streams" / "metrics.json"
    now = time.time()
    path.write_text(json.dumps({"updated": now, "processors": {"door": {
        "status": "RUNNING", "connected": True, "reconnects": 2, "frames_read": 300, "frames_analysed": 100,
        "frames_dropped": 3, "records": 100, "alerts": 1, "lag": 0.25, "skips": 4,
        "latency": {"buckets": [0.1, 0.25, 0.5], "counts": [10, 80, 9, 1], "sum": 20.5, "count": 100},
        "alert_latency": {"buckets": [0.1, 0.25, 0.5], "counts": [0, 1, 0, 0], "sum": 0.2, "count": 1},
        "sinks": {"file:/x.jsonl": {"delivered": 100, "failed": 0, "dropped": 0, "retries": 0},
                  'file:/odd"name\\.jsonl': {"delivered": 7, "failed": 0, "dropped": 0, "retries": 0},
                  "https://hook/***": {"delivered": 90, "failed": 4, "dropped": 6, "retries": 9}}}}}))
    text = stream_metrics(tmp_path, now=now)
    lines = set(text.splitlines())
    for line in ('faceprint_stream_frames_read_total{processor="door"} 300',
                 'faceprint_stream_frames_analysed_total{processor="door"} 100',
                 'faceprint_stream_frames_dropped_total{processor="door"} 3',
                 'faceprint_stream_reconnects_total{processor="door"} 2',
                 'faceprint_stream_alerts_total{processor="door"} 1',
                 'faceprint_stream_records_total{processor="door"} 100',
                 'faceprint_stream_connected{processor="door"} 1',
                 'faceprint_stream_skips_total{processor="door"} 4',
                 'faceprint_stream_lag_seconds{processor="door"} 0.25',
                 'faceprint_stream_latency_seconds_bucket{processor="door",le="0.1"} 10',
                 'faceprint_stream_latency_seconds_bucket{processor="door",le="0.25"} 90',
                 'faceprint_stream_latency_seconds_bucket{processor="door",le="0.5"} 99',
                 'faceprint_stream_latency_seconds_bucket{processor="door",le="+Inf"} 100',
                 'faceprint_stream_latency_seconds_count{processor="door"} 100',
                 'faceprint_stream_alert_latency_seconds_bucket{processor="door",le="0.25"} 1',
                 'faceprint_stream_sink_delivered_total{processor="door",sink="https://hook/***"} 90',
                 'faceprint_stream_sink_failed_total{processor="door",sink="https://hook/***"} 4',
                 'faceprint_stream_sink_dropped_total{processor="door",sink="https://hook/***"} 6',
                 'faceprint_stream_sink_delivered_total{processor="door",sink="file:/odd\\"name\\\\.jsonl"} 7'):
        assert line in lines, (line, text)
    assert 'faceprint_stream_connected{processor="door"} 0' in stream_metrics(tmp_path, now=now + 60)  # host gone
    path.write_text("{not json")
    assert stream_metrics(tmp_path) == ""


# -- through the server ----------------------------------------------------------------------------------

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/RekognitionStreams"
VIDEO_ARN = f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT}:stream/lobby/1700000000000"
DATA_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/faces"
STREAM_SECONDS = 5.0
"""The camera's clip loops every 5 s: 1.5 s of an empty scene, then the person walking for 3.5 s."""
FIRST_SHOWN = 1.5


class World:
    """The parts one server runs against: camera, sinks, home, keys, and the server's flags."""

    def __init__(self, stack: ExitStack, folder: Path) -> None:
        from faceprint.service import Faceprint
        from videokit import Walker, background, paste

        self.folder = folder
        self.home = folder / "home"
        self.home.mkdir()
        clip = folder / "lobby.mp4"
        walker = Walker(lfw_image("Aaron_Peirsol", 2), 130, (60, 60), (380, 110), first_s=FIRST_SHOWN)
        _clip(clip, walker, background(640, 360, seed=5), paste)
        self.camera = stack.enter_context(rtsp_camera(clip, workdir=folder))
        self.kinesis = stack.enter_context(kinesis_server())
        self.kinesis.create_stream("faces")
        self.hook = stack.enter_context(webhook_receiver())
        self.slow = stack.enter_context(webhook_receiver(delay=3.0))
        self.file = folder / "faces.jsonl"
        fp = Faceprint(self.home, profile="fast", models_dir=models_dir())
        fp.create_collection("watch")
        self.faces = {name: fp.index_faces("watch", lfw_image(name, 1), name).face_records[0].face.face_id
                      for name in ("Aaron_Peirsol", "Aaron_Sorkin")}
        fp.create_collection("other-team")
        admin = faceprint_keys(self.home, "create", "--name", "admin")["AccessKey"]
        self.admin = (admin["AccessKeyId"], admin["SecretAccessKey"])
        other = faceprint_keys(self.home, "create", "--name", "other", "--collections", "other-*")["AccessKey"]
        self.other = (other["AccessKeyId"], other["SecretAccessKey"])
        camera = self.camera.url.replace("rtsp://", f"rtsp://viewer:{SECRET}@")  # credentials, unused here
        hook = f"{self.hook.url}?token={SECRET}"
        self.flags = ["--stream", f"lobby={camera}", "--data-stream", f"faces={self.kinesis.spec('faces')}",
                      "--data-stream", f"faces=file:{self.file}", "--data-stream", f"faces={hook}",
                      "--data-stream", f"faces={self.slow.url}", "--idle-timeout", "1", "--header-timeout", "2",
                      "--graceful-timeout", "120"]

    def serve(self) -> Server:
        return Server(self.home, *self.flags, env=self.kinesis.env)


def _clip(path: Path, walker: Any, scene: Any, paste: Any) -> None:
    from camerakit import write_camera_video

    def frames() -> Iterator[Any]:
        for n in range(int(STREAM_SECONDS * 15)):
            frame = scene.copy()
            corner = walker.at(n / 15, STREAM_SECONDS)
            if corner is not None:
                paste(frame, walker.sprite, *corner)
            yield frame

    write_camera_video(path, frames(), fps=15)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ExitStack() as stack:
        yield World(stack, tmp_path_factory.mktemp("streams-server"))


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[Server]:
    srv = world.serve()
    try:
        yield srv
    finally:
        srv.stop()


def rek(server: Server, key: tuple[str, str]) -> Any:
    return server.client(*key)


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def create(client: Any, name: str = "lobby", stream: str = "lobby", collection: str = "watch", python: bool = False,
           **extra: Any) -> Any:
    """CreateStreamProcessor through boto3 (or, ``python``, through a Faceprint)."""
    request = {"Input": {"KinesisVideoStream": {"Arn": VIDEO_ARN.replace("/lobby/", f"/{stream}/")}},
               "Output": {"KinesisDataStream": {"Arn": DATA_ARN}}, "Name": name, "RoleArn": ROLE,
               "Settings": {"FaceSearch": {"CollectionId": collection, "FaceMatchThreshold": 80}}}
    if python:
        return client.create_stream_processor(request["Input"], request["Output"], name, request["Settings"], ROLE)
    return client.create_stream_processor(**request, **extra)


def status_of(client: Any, name: str) -> str:
    return client.describe_stream_processor(Name=name)["Status"]


def test_errors_are_rekognitions(world: World, server: Server) -> None:
    client = rek(server, world.admin)
    for call, code in ((lambda: client.describe_stream_processor(Name="nobody"), "ResourceNotFoundException"),
                       (lambda: client.start_stream_processor(Name="nobody"), "ResourceNotFoundException"),
                       (lambda: client.stop_stream_processor(Name="nobody"), "ResourceNotFoundException"),
                       (lambda: client.delete_stream_processor(Name="nobody"), "ResourceNotFoundException"),
                       (lambda: client.update_stream_processor(Name="nobody", RegionsOfInterestForUpdate=[]),
                        "ResourceNotFoundException"),
                       (lambda: create(client, stream="unmapped"), "InvalidParameterException"),
                       (lambda: create(client, collection="no-such-collection"), "InvalidParameterException"),
                       (lambda: create(client, KmsKeyId="alias/x"), "InvalidParameterException"),
                       (lambda: client.create_stream_processor(
                           Input={"KinesisVideoStream": {"Arn": VIDEO_ARN}}, Name="s3", RoleArn=ROLE,
                           Output={"S3Destination": {"Bucket": "bucket"}},
                           Settings={"FaceSearch": {"CollectionId": "watch"}}), "InvalidParameterException")):
        with pytest.raises(ClientError) as exc:
            call()
        assert code_of(exc) == code, exc.value.response
    assert client.list_stream_processors()["StreamProcessors"] == []
    with pytest.raises(ClientError) as exc:  # a key for other collections may not act on "watch"
        create(rek(server, world.other))
    assert code_of(exc) == "AccessDeniedException"
    create(client, name="spare")
    with pytest.raises(ClientError) as exc:
        rek(server, world.other).describe_stream_processor(Name="spare")
    assert code_of(exc) == "AccessDeniedException"
    assert rek(server, world.other).list_stream_processors()["StreamProcessors"] == []
    assert client.list_stream_processors()["StreamProcessors"] == [{"Name": "spare", "Status": "STOPPED"}]
    with pytest.raises(ClientError) as exc:
        client.stop_stream_processor(Name="spare")
    assert code_of(exc) == "ResourceInUseException"
    client.delete_stream_processor(Name="spare")
    with pytest.raises(ClientError) as exc:
        client.describe_stream_processor(Name="spare")
    assert code_of(exc) == "ResourceNotFoundException"


def test_a_live_camera_is_searched_and_recorded_in_every_sink(world: World, server: Server) -> None:
    client = rek(server, world.admin)
    arn = create(client)["StreamProcessorArn"]
    assert arn.endswith(":streamprocessor/lobby") and f":rekognition:{REGION}:" in arn
    assert status_of(client, "lobby") == "STOPPED"
    session = client.start_stream_processor(Name="lobby")["SessionId"]
    assert session
    wait_for(lambda: status_of(client, "lobby") == "RUNNING", 60, "RUNNING")
    described = client.describe_stream_processor(Name="lobby")
    assert SECRET not in json.dumps(described, default=str)
    with pytest.raises(ClientError) as exc:
        create(client)
    assert code_of(exc) == "ResourceInUseException"
    with pytest.raises(ClientError) as exc:
        client.delete_stream_processor(Name="lobby")
    assert code_of(exc) == "ResourceInUseException"

    # Kinesis: Rekognition's frame records, the person matched within 3 s of stream time of appearing
    wait_for(lambda: _appearance_matched(world.kinesis.json_records("faces")) is not None, 90,
             "a whole appearance of the person matched in the Kinesis records")
    records = world.kinesis.json_records("faces")
    assert _appearance_matched(records) <= 3.0
    assert all(set(r) == {"InputInformation", "StreamProcessorInformation", "FaceSearchResponse"} for r in records)
    assert all(r["InputInformation"]["KinesisVideo"]["StreamArn"] == VIDEO_ARN for r in records)
    matched = {m["Face"]["FaceId"] for r in records for f in r["FaceSearchResponse"] for m in f["MatchedFaces"]}
    assert matched == {world.faces["Aaron_Peirsol"]}
    unmatched = [f["DetectedFace"] for r in records for f in r["FaceSearchResponse"] if not f["MatchedFaces"]]
    assert all(set(face) <= {"BoundingBox", "Confidence"} for face in unmatched)

    # the alert goes to the webhooks and the SSE ring, never into Kinesis
    wait_for(lambda: any("Alert" in b for b in world.hook.bodies), 30, "an alert at the webhook")
    alert = next(b for b in world.hook.bodies if "Alert" in b)["Alert"]
    assert alert["StreamProcessorName"] == "lobby" and alert["StreamProcessorArn"] == arn
    assert [m["Face"]["FaceId"] for m in alert["MatchedFaces"]] == [world.faces["Aaron_Peirsol"]]
    assert not any("Alert" in r for r in world.kinesis.json_records("faces"))

    # a webhook that takes 3 s an answer holds nothing up: the file keeps growing
    lines = _lines(world.file)
    wait_for(lambda: len(_lines(world.file)) >= len(lines) + 25, 60, "25 more records in the file sink")
    assert len(world.slow.bodies) < len(_lines(world.file)) // 2
    assert all(set(json.loads(line)) == set(records[0]) for line in _lines(world.file))

    status, _, body = server.get("/metrics")
    text = body.decode()
    assert status == 200
    assert _metric(text, 'faceprint_stream_frames_analysed_total{processor="lobby"}') > 0
    assert _metric(text, 'faceprint_stream_alerts_total{processor="lobby"}') >= 1
    assert _metric(text, 'faceprint_stream_alert_latency_seconds_count{processor="lobby"}') >= 1
    assert _metric(text, 'faceprint_stream_records_total{processor="lobby"}') >= len(records)
    assert _metric(text, 'faceprint_stream_connected{processor="lobby"}') == 1
    assert 'faceprint_stream_sink_delivered_total{processor="lobby",sink="file:' in text
    assert SECRET not in text  # sinks are labelled redacted
    assert SECRET not in server.log.read_text()  # nor does the server (or the host) log a URL's secrets
    started = [r for r in server.access_log() if r["operation"] == "StartStreamProcessor"]
    assert started and started[-1]["collectionId"] == "watch" and started[-1]["keyId"] == world.admin[0]


@pytest.fixture
def lobby(world: World, server: Server) -> str:
    """The processor "lobby", started: made by the test before when the module runs whole, made here
    when a test runs alone (``-k``)."""
    client = rek(server, world.admin)
    try:
        status = status_of(client, "lobby")
    except ClientError:
        create(client)
        status = "STOPPED"
    if status in ("STOPPED", "FAILED"):
        client.start_stream_processor(Name="lobby")
    return "lobby"


def test_events_stream_with_presigned_urls(world: World, server: Server, lobby: str) -> None:
    wait_for(lambda: status_of(rek(server, world.admin), "lobby") == "RUNNING", 60, "RUNNING")
    url = presign(f"{server.url}/stream-processors/lobby/events?after=0", *world.admin)
    with EventStream(server, url) as events:
        assert events.status == 200 and events.headers["content-type"].startswith("text/event-stream")
        seen = events.until(lambda e: e["event"] == "alert", 60)
    alert = json.loads(seen[-1]["data"])["Alert"]
    assert alert["MatchedFaces"][0]["Face"]["FaceId"] == world.faces["Aaron_Peirsol"]
    ids = [int(e["id"]) for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {e["event"] for e in seen} == {"record", "alert"}
    assert set(json.loads(seen[0]["data"])) == {"InputInformation", "StreamProcessorInformation", "FaceSearchResponse"}

    live = presign(f"{server.url}/stream-processors/lobby/events", *world.admin)
    with EventStream(server, live) as events:  # outlives the server's 1 s idle and 2 s header deadlines
        began = time.monotonic()
        flowing = events.until(lambda e: time.monotonic() - began > 4.0, 30)
        assert int(flowing[0]["id"]) > ids[-1] and len(flowing) >= 4

    resume = presign(f"{server.url}/stream-processors/lobby/events", *world.admin)
    with EventStream(server, resume, {"Last-Event-ID": str(ids[-1])}) as events:  # a reconnecting EventSource
        assert int(events.until(lambda e: True, 30)[0]["id"]) > ids[-1]

    for bad, code, status in (
            (f"{server.url}/stream-processors/lobby/events", "MissingAuthenticationTokenException", 400),
            (url.replace("after=0", "after=1"), "InvalidSignatureException", 400),
            (presign(f"{server.url}/stream-processors/lobby/events", world.admin[0], "wrong"),
             "InvalidSignatureException", 400),
            (presign(f"{server.url}/stream-processors/lobby/events", *world.other), "AccessDeniedException", 400),
            (presign(f"{server.url}/stream-processors/nobody/events", *world.admin), "ResourceNotFoundException", 404),
            (presign(f"{server.url}/stream-processors/lobby/events?after=x", *world.admin),
             "InvalidParameterException", 400)):
        with EventStream(server, bad) as events:
            assert (events.status, events.json()["__type"]) == (status, code), bad


def test_at_most_32_event_streams(world: World, server: Server, lobby: str) -> None:
    url = presign(f"{server.url}/stream-processors/lobby/events", *world.admin)
    with ExitStack() as stack:
        streams = [stack.enter_context(EventStream(server, url)) for _ in range(32)]
        assert {s.status for s in streams} == {200}
        with EventStream(server, url) as refused:
            assert refused.status == 503 and refused.json()["__type"] == "ThrottlingException"
        assert rek(server, world.admin).list_stream_processors()["StreamProcessors"] == [
            {"Name": "lobby", "Status": "RUNNING"}]  # other requests are answered all along
        streams[0].close()
        wait_for(lambda: EventStream(server, url).probe() == 200, 10, "room for a stream again")


def test_a_killed_server_resumes_its_processors(world: World, server: Server, lobby: str) -> None:
    client = rek(server, world.admin)
    extended = with_threshold_update(server.client(*world.admin), 85)  # faceprint's extension, through boto3
    extended.update_stream_processor(Name="lobby")
    wait_for(lambda: status_of(client, "lobby") == "RUNNING", 60, "RUNNING after the update")
    assert client.describe_stream_processor(Name="lobby")["Settings"]["FaceSearch"]["FaceMatchThreshold"] == 85
    server.process.send_signal(signal.SIGKILL)
    server.stop()
    before = len(_lines(world.file))

    again = world.serve()
    try:
        client = rek(again, world.admin)
        wait_for(lambda: len(_lines(world.file)) >= before + 10, 90, "records after the restart")
        assert status_of(client, "lobby") == "RUNNING"
        client.stop_stream_processor(Name="lobby")
        wait_for(lambda: status_of(client, "lobby") == "STOPPED", 60, "STOPPED")
        url = presign(f"{again.url}/stream-processors/lobby/events?after=0", *world.admin)
        with EventStream(again, url) as events:  # an open stream does not hold the shutdown up
            events.until(lambda e: True, 30)
            assert again.stop(timeout=60) in (0, -signal.SIGTERM)
            assert events.drained()
    finally:
        again.stop()


def test_a_server_without_streams_runs_them_once_one_is_started(world: World, tmp_path: Path) -> None:
    """A --no-auth server started before the home had any stream runs the host once the CLI's config
    commands give the home a camera and a processor is started there (not through the server); SSE needs
    no signature; a stream ends when its processor is deleted."""
    from faceprint.service import Faceprint
    from faceprint.streams.config import StreamConfig

    home = tmp_path / "home"
    fp = Faceprint(home, profile="fast", models_dir=models_dir())
    fp.create_collection("watch")
    srv = Server(home, "--no-auth")
    try:
        assert not (home / "streams").exists()
        config = StreamConfig(home)  # what `faceprint streams add` and `data-streams add` do
        config.add_source("hall", f"file://{world.folder / 'lobby.mp4'}?loop=1")
        config.add_data_stream("faces", f"file:{tmp_path / 'hall.jsonl'}")
        create(fp, name="hall", stream="hall", python=True)  # `faceprint stream-processor create` and `start`
        fp.start_stream_processor("hall")
        client = srv.client()
        wait_for(lambda: status_of(client, "hall") == "RUNNING", 60, "RUNNING")
        with EventStream(srv, f"{srv.url}/stream-processors/hall/events?after=0") as events:
            assert events.status == 200 and events.until(lambda e: e["event"] == "record", 30)
            client.stop_stream_processor(Name="hall")
            wait_for(lambda: status_of(client, "hall") == "STOPPED", 60, "STOPPED")
            client.delete_stream_processor(Name="hall")
            assert events.drained()  # the processor's stream ends with it
    finally:
        assert srv.stop() in (0, -signal.SIGTERM)


def test_several_workers_run_one_host(world: World, tmp_path: Path) -> None:
    from faceprint.service import Faceprint

    home = tmp_path / "home"
    Faceprint(home, profile="fast", models_dir=models_dir()).create_collection("watch")
    sink = tmp_path / "hall.jsonl"
    srv = Server(home, "--no-auth", "--workers", "2", "--stream", f"hall=file://{world.folder / 'lobby.mp4'}?loop=1",
                 "--data-stream", f"faces=file:{sink}")
    try:
        client = srv.client()
        create(client, name="hall", stream="hall")  # the workers know the server's streams (from its 0600 file)
        create(client, name="hall-2", stream="hall")
        client.start_stream_processor(Name="hall")
        wait_for(lambda: len(_lines(sink)) >= 5, 60, "records from the supervisor's host")
        assert {status_of(client, "hall"), status_of(client, "hall-2")} == {"RUNNING", "STOPPED"}
        hosts = [line for line in _processes() if "faceprint.streams.host" in line and str(home) in line]
        assert len(hosts) == 1, hosts
    finally:
        assert srv.stop() in (0, -signal.SIGTERM)
    assert not [line for line in _processes() if "faceprint.streams.host" in line and str(home) in line]


# -- helpers -------------------------------------------------------------------------------------------------

def _processes() -> list[str]:
    """Every process's command line."""
    found = []
    for folder in Path("/proc").iterdir():
        if folder.name.isdigit():
            try:
                found.append((folder / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return found


def with_threshold_update(client: Any, threshold: float) -> Any:
    """``client`` whose UpdateStreamProcessor requests carry faceprint's ``SettingsForUpdate.FaceSearchForUpdate``
    (botocore's model has no such member, so it is added to the JSON body before the request is signed)."""
    def add(params: dict[str, Any], **kwargs: Any) -> None:
        body = json.loads(params["body"] or b"{}")
        body.setdefault("SettingsForUpdate", {})["FaceSearchForUpdate"] = {"FaceMatchThreshold": threshold}
        params["body"] = json.dumps(body).encode()

    client.meta.events.register("before-call.rekognition.UpdateStreamProcessor", add)
    return client


class EventStream:
    """A Server-Sent Events client (what a dashboard's EventSource does), over http.client."""

    def __init__(self, server: Server, url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.conn.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path,
                          headers={"Accept": "text/event-stream", **(headers or {})})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def probe(self) -> int:
        self.close()
        return self.status

    def close(self) -> None:
        self.conn.close()

    def json(self) -> dict[str, Any]:
        return json.loads(self.response.read())

    def next(self) -> dict[str, str] | None:
        """The next event (None at the end of the stream); comments are skipped."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            if not line:
                return None
            text = line.decode().rstrip("\r\n")
            if not text:
                if "data" in fields:
                    return fields
                continue
            if text.startswith(":"):
                continue
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = f"{fields[name]}\n{value}" if name in fields else value

    def until(self, done: Any, timeout: float) -> list[dict[str, str]]:
        """Events until one satisfies ``done`` (included)."""
        seen: list[dict[str, str]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.next()
            assert event is not None, f"the stream ended after {len(seen)} events"
            seen.append(event)
            if done(event):
                return seen
        raise AssertionError(f"no such event in {timeout} s ({len(seen)} events)")

    def drained(self) -> bool:
        """True once the stream ended cleanly (the server closed it)."""
        while self.next() is not None:
            pass
        return True


def _appearance_matched(records: list[dict[str, Any]]) -> float | None:
    """Seconds of stream time from the person's first appearance in view (after a frame with nobody)
    to their first match, for the first whole appearance in ``records``; None if there is none yet."""
    ordered = sorted(records, key=lambda r: r["InputInformation"]["KinesisVideo"]["ProducerTimestamp"])
    appeared: float | None = None
    empty_before = False
    for record in ordered:
        when = record["InputInformation"]["KinesisVideo"]["ProducerTimestamp"]
        faces = record["FaceSearchResponse"]
        if not faces:
            empty_before, appeared = True, None
            continue
        if appeared is None and empty_before:
            appeared = when
        if appeared is not None and any(f["MatchedFaces"] for f in faces):
            return when - appeared
    return None


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _metric(text: str, name: str) -> float:
    line = next((line for line in text.splitlines() if line.startswith(name + " ")), None)
    assert line is not None, f"{name} not in /metrics"
    return float(line.rsplit(" ", 1)[1])
