"""Shared metrics: a dead worker's counters stay, its requests in flight do not."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceprint.server.metrics import Metrics
from serverkit import Server, slow_request

LIST = {"X-Amz-Target": "RekognitionService.ListCollections", "Content-Type": "application/x-amz-json-1.1"}


def snapshot(pid: int, in_flight: int, answered: int, **extra: object) -> str:
    return json.dumps({"requests": [["ListCollections", "200", answered]], "errors": [],
                       "histogram": {"ListCollections": [0.0] * 13 + [float(answered), 0.5]},
                       "in_flight": in_flight, "started": 1000.0, **extra})


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, f"{name} missing from:\n{text}"
    return float(found.group(1))


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_dead_process_counts_but_is_not_in_flight(tmp_path: Path, sleeper: subprocess.Popen) -> None:
    (tmp_path / f"metrics-{dead_pid()}.json").write_text(snapshot(0, 3, 5))  # pid from the name, as before
    (tmp_path / f"metrics-{sleeper.pid}.json").write_text(snapshot(sleeper.pid, 2, 7))
    text = Metrics(tmp_path).render()
    assert 'faceprint_requests_total{operation="ListCollections",status="200"} 12' in text  # never backwards
    assert 'faceprint_request_duration_seconds_count{operation="ListCollections"} 12' in text
    assert metric(text, "faceprint_requests_in_flight") == 2  # the live sibling's, not the dead one's
    assert metric(text, "faceprint_worker_processes") == 2  # this process and the live sibling


def test_a_reused_pid_is_not_the_process_that_wrote(tmp_path: Path, sleeper: subprocess.Popen) -> None:
    (tmp_path / f"metrics-{sleeper.pid}.json").write_text(snapshot(sleeper.pid, 4, 1, pid_start=1))
    text = Metrics(tmp_path).render()
    assert metric(text, "faceprint_requests_in_flight") == 0
    assert metric(text, "faceprint_worker_processes") == 1


def test_a_process_is_visible_to_its_siblings_from_its_start(tmp_path: Path) -> None:
    mine = Metrics(tmp_path)
    shared = tmp_path / f"metrics-{os.getpid()}.json"
    assert json.loads(shared.read_text())["in_flight"] == 0  # counted before its first answer
    mine.begin()
    assert json.loads(shared.read_text())["in_flight"] == 1  # a long request shows while it runs


def worker_pids(server: Server) -> set[int]:
    """The server's worker processes: its children started by multiprocessing's spawn (not its
    resource tracker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == \
                    server.process.pid and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
    return found


def shared_folder(pid: int) -> Path:
    environ = dict(v.split(b"=", 1) for v in (Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")) if b"=" in v)
    return Path(json.loads(environ[b"FACEPRINT_SERVE_SETTINGS"])["metrics_dir"])


def holding_worker(server: Server, folder: Path) -> int | None:
    """A worker whose shared snapshot shows requests in flight."""
    for path in folder.glob("metrics-*.json"):
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text())["in_flight"] > 0:
                return int(path.stem.split("-")[1])
    return None


def test_a_killed_worker_leaves_no_request_in_flight(tmp_path: Path) -> None:
    server = Server(tmp_path, "--no-auth", "--workers", "2")
    held = []
    try:
        workers = worker_pids(server)
        assert len(workers) == 2
        folder = shared_folder(next(iter(workers)))
        held = [slow_request(server) for _ in range(6)]  # bodies that never come: in flight until closed
        victim = None
        for _ in range(200):  # answered requests make each worker's snapshot current
            assert server.post(b"{}", LIST)[0] == 200
            victim = holding_worker(server, folder)
            if victim is not None:
                break
        assert victim in workers
        answered = metric(server.get("/metrics")[2].decode(),
                          'faceprint_requests_total{operation="ListCollections",status="200"}')
        os.kill(victim, signal.SIGKILL)
        for sock in held:  # the live worker's requests end too: nothing is in flight any more
            sock.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = server.get("/metrics")[2].decode()
            if metric(text, "faceprint_requests_in_flight") == 0 and metric(text, "faceprint_worker_processes") == 2:
                break
            time.sleep(0.2)
        assert metric(text, "faceprint_requests_in_flight") == 0, text
        assert metric(text, "faceprint_worker_processes") == 2  # the survivor and the one started in its place
        assert metric(text, 'faceprint_requests_total{operation="ListCollections",status="200"}') >= answered
    finally:
        for sock in held:
            sock.close()
        server.stop()
