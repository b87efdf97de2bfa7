"""The stream host and its runner, with real parts: a real encoded clip of an enrolled LFW person
played at its real rate (``file://...?loop=1``), the real models, the real processor store, a real
JSON-lines file sink; processors are driven through the API (``fp.streams``). One host runs in a
background thread of the test; the process path (the runner spawning ``python -m
faceprint.streams.host``, ``kill -9``, stdin closed) runs real child processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import conftest
from conftest import LFW, models_dir
from serverkit import free_port
from videokit import Walker, photos_of, walking_clip

PERSON = "Colin_Powell"
STRANGER = "Christopher_Walken"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/faceprint"
WAIT = 40.0
"""Seconds a test waits for a state before it fails (generous: 2 cores shared with other tests)."""


def kvs(name: str) -> dict[str, Any]:
    return {"KinesisVideoStream": {"Arn": f"arn:aws:kinesisvideo:us-east-1:{ACCOUNT}:stream/{name}/1700000000000"}}


def kinesis(name: str) -> dict[str, Any]:
    return {"KinesisDataStream": {"Arn": f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{name}"}}


def face_search(collection: str, threshold: float = 80.0) -> dict[str, Any]:
    return {"FaceSearch": {"CollectionId": collection, "FaceMatchThreshold": threshold}}


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    return conftest.wait_for(what, check, timeout)


def records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a file sink (a last line cut by a killed host is left out)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def matched_ids(record: dict[str, Any]) -> set[str]:
    return {m["Face"].get("ExternalImageId") for face in record["FaceSearchResponse"] for m in face["MatchedFaces"]}


def status(fp: Any, name: str) -> tuple[str, str | None]:
    answer = fp.streams.describe_stream_processor(name).to_dict()
    return answer["Status"], answer.get("StatusMessage")


def status_is(fp: Any, name: str, wanted: str) -> Callable[[], bool]:
    return lambda: status(fp, name)[0] == wanted


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s at 15 fps, 640 x 360: the enrolled person walks across; a stranger stands at the right."""
    path = tmp_path_factory.mktemp("clip") / "walk.mp4"
    walkers = [Walker(photos_of(LFW, PERSON)[0], 150, (40, 100), (300, 120)),
               Walker(photos_of(LFW, STRANGER)[1], 130, (480, 150), (480, 150))]
    walking_clip(path, 640, 360, 4.0, walkers, fps=15)
    return path


def enrol(fp: Any, collection: str) -> None:
    fp.create_collection(collection)
    for photo in photos_of(LFW, PERSON)[1:3]:
        fp.index_faces(collection, photo.read_bytes(), external_image_id=PERSON, max_faces=1)


class Rig:
    """A home with an enrolled collection, a camera ("cam", the clip looped), a camera nobody
    serves ("dead") and a data stream per test (file sinks), run by a :class:`StreamHost` on a
    background thread of this process."""

    def __init__(self, home: Path, clip: Path) -> None:
        from faceprint.service import Faceprint
        from faceprint.streams.config import StreamConfig, streams_folder
        from faceprint.streams.host import StreamHost
        from faceprint.streams.store import ProcessorStore

        self.home = home
        self.fp = Faceprint(home, profile="fast", models_dir=models_dir(), threads=1)
        enrol(self.fp, "watch")
        self.config = StreamConfig(home)
        self.config.add_source("cam", f"file://{clip}?loop=1")
        self.config.add_source("dead", f"rtsp://127.0.0.1:{free_port()}/nobody")
        self.store = ProcessorStore(streams_folder(home) / "processors.db")
        self.host = StreamHost(self.fp, self.store, self.config, region="us-east-1", poll=0.1, connect_timeout=3.0)
        self.thread = threading.Thread(target=self.host.run, name="test-stream-host", daemon=True)
        self.thread.start()
        wait_for("the host's lock", lambda: self.host.lock.held)

    def sink(self, name: str, options: str = "") -> Path:
        path = self.home / f"{name}.jsonl"
        self.config.add_data_stream(name, f"file:{path}{options}")
        return path

    def create(self, name: str, camera: str = "cam", collection: str = "watch", options: str = "",
               **kwargs: Any) -> Path:
        path = self.sink(name, options)
        self.fp.streams.create_stream_processor(kvs(camera), kinesis(name), name, face_search(collection), ROLE,
                                                **kwargs)
        return path

    def close(self) -> None:
        self.host.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("stream-home"), clip)
    try:
        yield rig
    finally:
        rig.close()


def test_a_processor_matches_the_enrolled_person_and_stops(rig: Rig) -> None:
    fp = rig.fp
    path = rig.create("match", options=";snapshots")
    assert status(fp, "match")[0] == "STOPPED"
    fp.streams.start_stream_processor("match")
    wait_for("RUNNING", status_is(fp, "match", "RUNNING"))
    matched = wait_for("a record matching the person", lambda: [r for r in records(path) if PERSON in matched_ids(r)])
    first = records(path)[0]
    # the person is in view from the clip's first frame: matched within 3 s of stream time
    k = first["InputInformation"]["KinesisVideo"]
    assert matched[0]["InputInformation"]["KinesisVideo"]["ProducerTimestamp"] - k["ProducerTimestamp"] <= 3.0
    assert k["StreamArn"] == kvs("cam")["KinesisVideoStream"]["Arn"]
    assert first["StreamProcessorInformation"]["Status"] == "RUNNING"
    stranger = [f for r in records(path) for f in r["FaceSearchResponse"] if not f["MatchedFaces"]]
    assert stranger and all(set(f["DetectedFace"]) == {"BoundingBox", "Confidence"} for f in stranger)
    # alerts reach the events ring (never the file sink), one per track
    wait_for("an alert event", lambda: any(kind == "alert" for _, kind, _ in rig.store.events_after("match", 0)))
    # the sink keeps snapshots: the matched frames, whole, as JPEG
    face_id = next(m["Face"]["FaceId"] for f in matched[0]["FaceSearchResponse"] for m in f["MatchedFaces"])
    shots = wait_for("a snapshot", lambda: sorted(path.with_name(path.name + ".snapshots").glob(f"*-{face_id}.jpg")))
    assert cv2.imdecode(np.frombuffer(shots[0].read_bytes(), np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)
    assert all("Alert" not in r for r in records(path))
    wait_for("metrics", lambda: _metrics(rig.home).get("match", {}).get("records"))
    metrics = wait_for("delivered records in metrics", lambda: [
        m for m in [_metrics(rig.home)["match"]] if any(s["delivered"] for s in m["sinks"].values())])[0]
    assert metrics["status"] == "RUNNING" and metrics["alerts"] >= 1 and set(metrics["sinks"]) >= {"events"}
    latency = metrics["latency"]
    assert len(latency["counts"]) == len(latency["buckets"]) + 1 and sum(latency["counts"]) == latency["count"] > 0
    health = wait_for("health", lambda: rig.store.get("match").health.get("frames_analysed"))
    assert health > 0
    fp.streams.stop_stream_processor("match")
    wait_for("STOPPED", status_is(fp, "match", "STOPPED"))
    count = len(records(path))
    time.sleep(1.0)
    assert len(records(path)) == count  # no record after STOPPED: the sinks were closed
    wait_for("metrics without it", lambda: "match" not in _metrics(rig.home))
    # started again at once: a new session runs (the old run is over)
    session = fp.streams.start_stream_processor("match").session_id
    again = time.time()
    wait_for("RUNNING again", status_is(fp, "match", "RUNNING"))
    wait_for("records of the new session", lambda: after(path, again))
    assert rig.host._runs["match"].row.session_id == session
    fp.streams.stop_stream_processor("match")
    wait_for("STOPPED", status_is(fp, "match", "STOPPED"))


def _metrics(home: Path) -> dict[str, Any]:
    path = home / "streams" / "metrics.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return json.loads(path.read_text())["processors"]


def test_a_camera_never_reached_fails_the_processor(rig: Rig) -> None:
    rig.create("unreached", camera="dead")
    rig.fp.streams.start_stream_processor("unreached")
    wait_for("FAILED", status_is(rig.fp, "unreached", "FAILED"))
    message = status(rig.fp, "unreached")[1]
    assert message and message.startswith("Camera dead could not be reached: ")
    assert rig.store.get("unreached").desired == "STOPPED"  # not restarted by the host


def test_a_deleted_collection_fails_the_processor(rig: Rig) -> None:
    enrol(rig.fp, "doomed")
    rig.create("orphan", collection="doomed")
    rig.fp.streams.start_stream_processor("orphan")
    wait_for("RUNNING", status_is(rig.fp, "orphan", "RUNNING"))
    rig.fp.delete_collection("doomed")
    wait_for("FAILED", status_is(rig.fp, "orphan", "FAILED"))
    assert status(rig.fp, "orphan")[1] == "Collection doomed was deleted."


def test_a_stream_no_longer_mapped_fails_the_processor(rig: Rig, clip: Path) -> None:
    rig.config.add_source("temporary", f"file://{clip}?loop=1")
    rig.create("unmapped", camera="temporary")
    rig.fp.streams.start_stream_processor("unmapped")
    wait_for("RUNNING", status_is(rig.fp, "unmapped", "RUNNING"))
    assert rig.config.remove_source("temporary")  # faceprint streams remove temporary
    wait_for("FAILED", status_is(rig.fp, "unmapped", "FAILED"))
    assert status(rig.fp, "unmapped")[1].startswith("Stream temporary is not mapped to a camera")


def test_a_sink_edited_by_hand_into_nonsense_fails_its_processor_only(rig: Rig) -> None:
    """A home file edited by hand (a sink that does not parse): its processor FAILS saying why, the
    host keeps running the others."""
    from faceprint.streams.config import DATA_STREAMS_FILE

    rig.create("handmade")
    rig.fp.streams.start_stream_processor("handmade")
    wait_for("RUNNING", status_is(rig.fp, "handmade", "RUNNING"))
    path = rig.home / "streams" / DATA_STREAMS_FILE
    files = json.loads(path.read_text())
    files["handmade"] = ["ftp://someone:pa55word@example.net/faces"]
    path.write_text(json.dumps(files))
    wait_for("FAILED", status_is(rig.fp, "handmade", "FAILED"))
    message = status(rig.fp, "handmade")[1]
    assert message.startswith("The stream configuration of handmade cannot be used: ") and "pa55word" not in message
    rig.create("sound")  # another processor starts and runs all the same
    rig.fp.streams.start_stream_processor("sound")
    wait_for("the other processor RUNNING", status_is(rig.fp, "sound", "RUNNING"))
    rig.fp.streams.stop_stream_processor("sound")
    wait_for("STOPPED", status_is(rig.fp, "sound", "STOPPED"))


def test_a_run_that_breaks_on_a_defect_fails_its_processor_only(rig: Rig) -> None:
    """A defect in a run (here: a row written into nonsense behind the API's back) ends that run FAILED
    with a message that says where to look, never RUNNING silently; the host runs the others."""
    rig.create("corrupt")
    row = rig.store.get("corrupt")
    rig.store.transition("corrupt", ["STOPPED"], request=row.request | {"RegionsOfInterest": [{"BoundingBox": 7}]})
    rig.fp.streams.start_stream_processor("corrupt")
    wait_for("FAILED", status_is(rig.fp, "corrupt", "FAILED"))
    assert status(rig.fp, "corrupt")[1].startswith("The stream processor failed on an internal error (")
    rig.create("healthy")
    rig.fp.streams.start_stream_processor("healthy")
    wait_for("the other processor RUNNING", status_is(rig.fp, "healthy", "RUNNING"))
    rig.fp.streams.stop_stream_processor("healthy")
    wait_for("STOPPED", status_is(rig.fp, "healthy", "STOPPED"))


def test_an_update_applies_to_the_running_pipeline_without_reconnecting(rig: Rig) -> None:
    fp = rig.fp
    path = rig.create("update")
    fp.streams.start_stream_processor("update")
    wait_for("faces in records", lambda: any(r["FaceSearchResponse"] for r in records(path)))
    run = rig.host._runs["update"]
    # a region of interest where no face ever is: no face is reported any more
    corner = [{"BoundingBox": {"Left": 0.0, "Top": 0.9, "Width": 0.1, "Height": 0.1}}]
    fp.streams.update_stream_processor("update", regions_of_interest_for_update=corner,
                                       settings_for_update={"FaceSearchForUpdate": {"FaceMatchThreshold": 95}})
    generation = rig.store.get("update").generation
    wait_for("the update applied, RUNNING again",
             lambda: run.generation == generation and status(fp, "update")[0] == "RUNNING")
    applied = time.time()
    later = wait_for("records after the update", lambda: [r for r in records(path) if
                                                           r["InputInformation"]["KinesisVideo"]["ServerTimestamp"]
                                                           > applied][3:])
    assert all(r["FaceSearchResponse"] == [] for r in later)
    assert rig.host._runs["update"] is run and run.source.stats.reconnects == 0  # the camera was kept
    assert run.row.threshold == 95.0
    fp.streams.stop_stream_processor("update")
    wait_for("STOPPED", status_is(fp, "update", "STOPPED"))


def test_start_and_stop_selectors(rig: Rig, tmp_path: Path) -> None:
    from camerakit import face_clip

    fp = rig.fp
    video = face_clip(tmp_path / "gop.mp4", [photos_of(LFW, PERSON)[0]], seconds=3.0)  # a key frame a second
    rig.config.add_source("gop", f"file://{video}?loop=1")
    path = rig.create("fragments", camera="gop")
    fp.streams.start_stream_processor("fragments", start_selector={"KVSStreamStartSelector": {"FragmentNumber": "3"}},
                                      stop_selector={"MaxDurationInSeconds": 4})
    wait_for("STOPPED", status_is(fp, "fragments", "STOPPED"))
    assert status(fp, "fragments")[1] == "Stopped after MaxDurationInSeconds=4."
    fragments = [int(r["InputInformation"]["KinesisVideo"]["FragmentNumber"]) for r in records(path)]
    assert fragments and min(fragments) == 3  # the first two fragments (seconds) were not analysed
    # a producer time not reached while the processor runs: nothing is analysed
    path = rig.create("later")
    later = {"KVSStreamStartSelector": {"ProducerTimestamp": int(time.time() * 1000) + 3_600_000}}
    fp.streams.start_stream_processor("later", start_selector=later, stop_selector={"MaxDurationInSeconds": 2})
    wait_for("RUNNING", status_is(fp, "later", "RUNNING"))
    run = rig.host._runs["later"]
    wait_for("STOPPED", status_is(fp, "later", "STOPPED"))
    assert run.skipped > 0 and run.frames_analysed == 0 and records(path) == []


def test_a_camera_that_drops_is_reconnected_and_reported(rig: Rig, tmp_path: Path) -> None:
    from camerakit import face_clip, rtsp_camera

    video = face_clip(tmp_path / "camera.mp4", [photos_of(LFW, PERSON)[0]], seconds=3.0)
    with rtsp_camera(video, workdir=tmp_path) as camera:
        secret_url = camera.url.replace("rtsp://", "rtsp://officer:s3cret-pw@")  # a camera's credentials
        rig.config.add_source("door", secret_url)
        path = rig.create("door", camera="door")
        rig.fp.streams.start_stream_processor("door")
        wait_for("RUNNING", status_is(rig.fp, "door", "RUNNING"))
        wait_for("records", lambda: records(path))
        camera.kill()
        message = wait_for("the reconnecting message", lambda: status(rig.fp, "door")[1])
        assert status(rig.fp, "door")[0] == "RUNNING"
        assert message.startswith("Camera reconnecting (attempt ") and "s3cret-pw" not in message
        wait_for("health: not connected", lambda: rig.store.get("door").health.get("connected") is False)
        camera.start()
        back = time.time()
        wait_for("the message cleared", lambda: status(rig.fp, "door") == ("RUNNING", None))
        wait_for("records after the camera came back", lambda: [
            r for r in records(path) if r["InputInformation"]["KinesisVideo"]["ServerTimestamp"] > back])
        wait_for("health: connected again, after reconnecting", lambda: (
            rig.store.get("door").health["connected"] and rig.store.get("door").health["reconnects"] >= 1))
        rig.fp.streams.stop_stream_processor("door")
        wait_for("STOPPED", status_is(rig.fp, "door", "STOPPED"))


# -- the process path ------------------------------------------------------------------------------------------


def test_the_runner_restarts_a_killed_host_and_another_runner_takes_over(tmp_path: Path, clip: Path) -> None:
    """The camera and sink are known only from the runner's config (the server's flags: on the
    host's stdin, never its command line); a host killed with -9 is started again and resumes the
    processor; a second runner of the home waits (its host exits 3) until the first one closes."""
    from faceprint.service import Faceprint
    from faceprint.streams.runner import StreamRunner
    from faceprint.streams.service import StreamSettings

    home, out, url = tmp_path / "home", tmp_path / "out.jsonl", f"file://{clip}?loop=1"
    flags = {"sources": {"cam": url}, "data_streams": {"out": [f"file:{out}"]}}
    fp = Faceprint(home, profile="fast", models_dir=models_dir(), threads=1, streams=StreamSettings(**flags))
    enrol(fp, "watch")
    fp.streams.create_stream_processor(kvs("cam"), kinesis("out"), "p", face_search("watch"), ROLE)
    runners = [StreamRunner(home, models_dir=models_dir(), profile="fast", region="us-east-1", threads=1, **flags)
               for _ in range(2)]
    try:
        runners[0].start()
        first = wait_for("the host", lambda: runners[0].pid)
        assert str(clip) not in Path(f"/proc/{first}/cmdline").read_bytes().decode(errors="replace")
        arenas = f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', '2')}".encode()
        assert arenas in Path(f"/proc/{first}/environ").read_bytes().split(b"\0")  # memory stays flat
        fp.streams.start_stream_processor("p")
        wait_for("RUNNING", status_is(fp, "p", "RUNNING"))
        wait_for("records", lambda: records(out))
        os.kill(first, signal.SIGKILL)
        killed = time.time()
        second = wait_for("a new host", lambda: runners[0].pid not in (None, first) and runners[0].pid)
        assert runners[0].starts == 2
        wait_for("records of the new host", lambda: after(out, killed))
        assert status(fp, "p")[0] == "RUNNING"
        runners[1].start()
        wait_for("the second runner's host tried", lambda: runners[1].starts >= 1 and runners[1].pid is None)
        runners[0].close()
        assert _gone(second)
        closed = time.time()
        wait_for("the second runner's host", lambda: runners[1].pid)
        wait_for("records of the second runner's host", lambda: after(out, closed))
        assert status(fp, "p")[0] == "RUNNING"
    finally:
        for runner in runners:
            runner.close()


def after(path: Path, t: float) -> list[dict[str, Any]]:
    return [r for r in records(path) if r["InputInformation"]["KinesisVideo"]["ServerTimestamp"] > t]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_host_exits_when_its_stdin_closes_and_when_another_holds_the_lock(tmp_path: Path) -> None:
    from faceprint.streams.runner import EXIT_LOCKED, HostLock

    command = [sys.executable, "-m", "faceprint.streams.host", "--home", str(tmp_path), "--profile", "fast",
               "--models-dir", str(models_dir())]
    host = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert host.stdin is not None
        host.stdin.write(b'{"sources": {}, "data_streams": {}, "region": "us-east-1"}\n')
        host.stdin.flush()
        wait_for("metrics.json", (tmp_path / "streams" / "metrics.json").exists)
        assert host.poll() is None  # it runs while its stdin is open
        lock = HostLock(tmp_path)
        assert not lock.acquire()
        again = subprocess.run(command, input=b"{}\n", capture_output=True, timeout=60)
        assert again.returncode == EXIT_LOCKED
        host.stdin.close()
        assert host.wait(30) == 0
        assert lock.acquire()  # released by the host
        lock.release()
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


# -- secrets and counters ------------------------------------------------------------------------------------


def test_the_host_log_never_shows_camera_or_sink_secrets(tmp_path: Path) -> None:
    """A library's error may carry the URL it was given (whole, or its path and query): the host's log
    handlers show camera URLs and sink specs redacted, in messages and tracebacks, a camera added while
    the host runs included."""
    import io
    import logging

    from faceprint.streams.config import StreamConfig
    from faceprint.streams.scrub import ScrubSecrets, config_secrets

    camera = "rtsp://officer:s3cret!pw@127.0.0.1:8554/door?token=t0ken-value"
    hook = "https://hooks.example/services/T0/B0/XXXXcapability"
    config = StreamConfig(tmp_path, data_streams={"out": [f"{hook};matches-only"]})
    config.add_source("door", camera)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ScrubSecrets(lambda: config_secrets(config.sources(), config.data_streams()), refresh=0.0))
    logger = logging.getLogger("test-scrub")
    logger.addHandler(handler)
    try:
        logger.warning("opening %s failed", camera)
        try:
            raise OSError("HTTPSConnectionPool(host='hooks.example'): Max retries exceeded with url: "
                          "/services/T0/B0/XXXXcapability; user officer, password s3cret%21pw")
        except OSError:
            logger.exception("delivering failed")
        config.add_source("late", "rtsp://admin:later-pw@127.0.0.1/x")  # added while running
        logger.error("rtsp://admin:later-pw@127.0.0.1/x: 401")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    for secret in ("s3cret!pw", "s3cret%21pw", "t0ken-value", "XXXXcapability", "later-pw", "officer"):
        assert secret not in text, (secret, text)
    assert "rtsp://***:***@127.0.0.1:8554/door?token=***" in text and "Traceback" in text


def test_sinks_with_the_same_shown_label_keep_their_own_counters(tmp_path: Path) -> None:
    """Two sinks whose redacted labels are alike (the same Kinesis stream with other credentials) are
    two series in metrics.json, not one overwriting the other."""
    from faceprint.streams.config import parse_sink
    from faceprint.streams.processor_run import sink_counters
    from faceprint.streams.sinks import open_sinks
    from faceprint.streams.store import ProcessorStore

    store = ProcessorStore(tmp_path / "processors.db")
    specs = [parse_sink(f"kinesis:http://{user}:{password}@127.0.0.1:1#faces")
             for user, password in (("ops", "first-pw"), ("audit", "second-pw"))]
    sinks = open_sinks(specs, processor="p", region="us-east-1", store=store)
    try:
        counters = sink_counters(sinks)
        assert len(counters) == 3 and "events" in counters, counters
        assert not any("pw" in label for label in counters)
    finally:
        for sink in sinks:
            sink.close(0.5)
        store.close()


def test_a_runner_refuses_a_config_it_cannot_send() -> None:
    """A value that is not JSON (a Path for a camera) fails when the runner is made, not later on
    its supervising thread (which would end, leaving a host waiting for its config)."""
    from faceprint.streams.runner import StreamRunner

    with pytest.raises(TypeError):
        StreamRunner(Path("/nonexistent"), sources={"cam": Path("/videos/door.mp4")})  # type: ignore[dict-item]
