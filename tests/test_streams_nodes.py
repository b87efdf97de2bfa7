"""Two nodes' stream hosts over one PostgreSQL store: each its own home, its own host process
(``python -m faceprint.streams.host``, the camera and sinks on its stdin as a server's runner sends
them, the store through ``FACEPRINT_STORE``), real models, a real clip played at its real rate. The
processors, created through a third home's API (no camera flag of its own: it accepts the camera
that the hosts publish), are split between the hosts; one host is paused past its lease (SIGSTOP):
its processor moves, and the host, resumed, stops its own run; then the other is killed (SIGKILL) and
its processors move within the lease's time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conftest
from conftest import LFW, models_dir
from pg import PgServer, pg  # noqa: F401
from videokit import Walker, photos_of, walking_clip

ACCOUNT = "123456789012"
LEASE = 4.0
"""The hosts' lease in seconds (the default is 15: shorter here to keep the test short)."""
WAIT = 60.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 8 fps, 320 x 180: a face walking across (small and slow: two hosts share the cores)."""
    path = tmp_path_factory.mktemp("clip") / "walk.mp4"
    walking_clip(path, 320, 180, 2.0, [Walker(photos_of(LFW, "Colin_Powell")[0], 80, (20, 40), (200, 50))], fps=8)
    return path


def spawn(home: Path, config: dict[str, Any], url: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "faceprint.streams.host", "--home", str(home), "--profile", "fast",
               "--models-dir", str(models_dir())]
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "host.log", "wb")  # noqa: SIM115 (the child keeps it)
    host = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=log,
                            env={**os.environ, "FACEPRINT_STORE": url})
    log.close()
    assert host.stdin is not None
    host.stdin.write((json.dumps(config) + "\n").encode())
    host.stdin.flush()
    return host


def running(home: Path) -> set[str]:
    """The processors a host's metrics list (what it runs now)."""
    try:
        return set(json.loads((home / "streams" / "metrics.json").read_text())["processors"])
    except (FileNotFoundError, ValueError):
        return set()


def records_after(path: Path, t: float) -> int:
    if not path.exists():
        return 0
    count = 0
    for line in path.read_text().splitlines():
        try:
            count += json.loads(line)["InputInformation"]["KinesisVideo"]["ServerTimestamp"] > t
        except (ValueError, KeyError):
            continue
    return count


@pytest.fixture
def hosts(request: pytest.FixtureRequest, tmp_path: Path, clip: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    server: PgServer = request.getfixturevalue("pg")
    url = server.database()
    config = {"sources": {"cam": f"file://{clip}?loop=1"}, "region": "us-east-1", "lease_seconds": LEASE,
              "data_streams": {name: [f"file:{tmp_path / name}.jsonl"] for name in ("p1", "p2")}}
    made: dict[str, Any] = {"url": url, "tmp": tmp_path}
    try:
        for node in ("a", "b"):
            made[node] = spawn(tmp_path / node, config, url)
        yield url, made
    finally:
        for node in ("a", "b"):
            host = made.get(node)
            if host is not None and host.poll() is None:
                host.kill()
                host.wait(30)


def test_processors_are_split_and_move_from_a_paused_or_killed_host(hosts: tuple[str, dict[str, Any]]) -> None:
    from faceprint.service import Faceprint
    from faceprint.streams.store_pg import PgProcessorStore

    url, made = hosts
    tmp: Path = made["tmp"]
    homes = {node: tmp / node for node in ("a", "b")}
    for node, home in homes.items():  # up, and beating (a host reports after its first look)
        conftest.wait_for(f"host {node}", lambda h=home: (h / "streams" / "metrics.json").exists(), WAIT)
    fp = Faceprint(tmp / "api", store_url=url, profile="fast", models_dir=models_dir())
    fp.create_collection("watch")
    for name in ("p1", "p2"):
        fp.streams.create_stream_processor(
            {"KinesisVideoStream": {"Arn": f"arn:aws:kinesisvideo:us-east-1:{ACCOUNT}:stream/cam/1"}},
            {"KinesisDataStream": {"Arn": f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{name}"}}, name,
            {"FaceSearch": {"CollectionId": "watch"}}, f"arn:aws:iam::{ACCOUNT}:role/r")
        fp.streams.start_stream_processor(name)
    split = conftest.wait_for("one processor on each host", lambda: (
        {n: running(h) for n, h in homes.items()} if all(len(running(h)) == 1 for h in homes.values()) else None), WAIT)
    assert split["a"] | split["b"] == {"p1", "p2"}
    conftest.wait_for("both RUNNING", lambda: all(
        fp.streams.describe_stream_processor(n).status == "RUNNING" for n in ("p1", "p2")), WAIT)
    (moved,) = split["a"]
    conftest.wait_for("records", lambda: records_after(tmp / f"{moved}.jsonl", 0), WAIT)
    store = PgProcessorStore(url)
    node = {n: (h / "streams" / "node-id").read_text().strip() for n, h in homes.items()}

    def lease(name: str) -> str | None:
        return store.part.one("SELECT lease_node FROM streams_processors WHERE name = %s", (name,))[0]

    try:
        # node a pauses past its lease (SIGSTOP): b takes its processor; a, resumed, stops its own run
        made["a"].send_signal(signal.SIGSTOP)
        conftest.wait_for("the paused node's lease on node b", lambda: lease(moved) == node["b"], WAIT)
        made["a"].send_signal(signal.SIGCONT)
        conftest.wait_for("the resumed node a running nothing", lambda: running(homes["a"]) == set(), 15)
        conftest.wait_for("node b running both", lambda: running(homes["b"]) == {"p1", "p2"}, 15)
        assert made["a"].poll() is None and lease(moved) == node["b"]
        # node b dies (SIGKILL: no release): both move to a within the lease
        made["b"].send_signal(signal.SIGKILL)
        made["b"].wait(30)
        killed = time.time()
        conftest.wait_for("both leases on node a", lambda: {lease("p1"), lease("p2")} == {node["a"]}, WAIT)
        leased = time.time() - killed
        for name in ("p1", "p2"):
            conftest.wait_for(f"{name}'s records from node a", lambda n=name: records_after(tmp / f"{n}.jsonl", killed),
                              WAIT)
        recorded = time.time() - killed
        print(f"failover with a {LEASE:g} s lease: leases taken {leased:.1f} s, first records {recorded:.1f} s "
              "after the kill")
        assert leased <= LEASE + 3.0, leased  # the lease's expiry, the other host's poll, a busy machine
        conftest.wait_for("node a's metrics listing both", lambda: running(homes["a"]) == {"p1", "p2"}, 10)
        assert {fp.streams.describe_stream_processor(n).status for n in ("p1", "p2")} == {"RUNNING"}
        # stopped through the API of a node that runs no host: the holder stops it and writes STOPPED
        fp.streams.stop_stream_processor("p1")
        conftest.wait_for("p1 STOPPED", lambda: fp.streams.describe_stream_processor("p1").status == "STOPPED", WAIT)
        conftest.wait_for("p1's lease released", lambda: lease("p1") is None, 10)
        # a host that stops cleanly hands its processors back at once (no lease to wait for): none is left
        made["a"].stdin.close()
        assert made["a"].wait(30) == 0
        assert store.part.rows("SELECT name FROM streams_processors WHERE lease_node IS NOT NULL") == []
        assert not store.host_running() and fp.streams.describe_stream_processor("p2").status == "RUNNING"
    finally:
        store.close()
        fp.streams.close()
    for home in homes.values():  # the camera's URL never reached a log
        assert "walk.mp4" not in (home / "host.log").read_text(errors="replace")
