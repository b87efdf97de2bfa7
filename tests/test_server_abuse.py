"""Abuse: 1,000 idle connections and 64 slow bodies while a normal client keeps searching.

A real `faceprint serve` (authentication on, its default caps). The idle connections send
nothing and need no key; whenever the server closes one (--header-timeout) the attacker opens
another. The 64 slow bodies are SearchFacesByImage requests correctly signed with a valid key
(the stronger attacker: a request without a usable key is refused from its headers, see
test_server_auth.py), their bodies sent a byte at a time. Meanwhile a boto3 client with its own
key keeps calling SearchFacesByImage on a small collection: every call must be answered (a
liveness check; the benchmark benchmarks/server_abuse.py measures its latency).
"""

from __future__ import annotations

import base64
import json
import resource
import selectors
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import lfw_image
from serverkit import REGION, Server

IDLE = 1000
SLOW = 64
SEARCHING = 10.0
"""Seconds the normal client searches under attack (at least)."""
ANSWERS = 3
"""Searches answered under attack (at least), however slow the machine."""


@pytest.fixture(scope="module")
def abused(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE + SLOW + 256
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"this test opens {wanted} sockets; `ulimit -Hn` is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    from faceprint.server.auth import KeyStore

    home = tmp_path_factory.mktemp("abuse-home")
    store = KeyStore(home)
    keys = {name: store.create(name) for name in ("normal", "attacker")}
    server = Server(home, "--header-timeout", "3")
    yield server, {name: f"{k.access_key_id}:{k.secret_access_key}" for name, k in keys.items()}
    assert server.stop() in (0, -signal.SIGTERM)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def signed_headers(server: Server, key: str, body: bytes) -> bytes:
    """The head of a SearchFacesByImage request signed with ``key`` (``ID:SECRET``) for ``body``."""
    key_id, secret = key.split(":")
    request = AWSRequest("POST", server.url + "/", data=body,
                         headers={"X-Amz-Target": "RekognitionService.SearchFacesByImage",
                                  "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(key_id, secret), "rekognition", REGION).add_auth(request)
    lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Content-Length: {len(body)}",
             *(f"{k}: {v}" for k, v in request.headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Attack:
    """Idle connections kept at ``idle`` (reopened when the server closes them) and ``slow`` signed
    requests whose bodies arrive a byte every half second, from threads, until :meth:`stop`."""

    def __init__(self, server: Server, key: str, idle: int, slow: int, probe: bytes) -> None:
        self.server, self.stopping = server, threading.Event()
        self.reopened = 0
        self.selector = selectors.DefaultSelector()
        for _ in range(idle):
            self._open_idle()
        body = json.dumps({"CollectionId": "people", "Image": {"Bytes": base64.b64encode(probe).decode()}}).encode()
        head = signed_headers(server, key, body)
        self.slow = [self._connect() for _ in range(slow)]
        for sock in self.slow:
            sock.sendall(head)
        self.body = body
        self.threads = [threading.Thread(target=self._keep_idle), threading.Thread(target=self._trickle)]
        for thread in self.threads:
            thread.start()

    def _connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.server.port), timeout=30)

    def _open_idle(self) -> None:
        sock = self._connect()
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)

    def _keep_idle(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.selector.select(timeout=0.5):
                self.selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
                self._open_idle()
                self.reopened += 1

    def _trickle(self) -> None:
        sent = 0
        while not self.stopping.wait(0.5) and sent < len(self.body) - 1:
            for sock in self.slow:
                sock.sendall(self.body[sent:sent + 1])
            sent += 1

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()
        for sock in self.slow:
            sock.close()


def image(path: Path) -> dict[str, bytes]:
    return {"Bytes": path.read_bytes()}


def wait_in_flight(server: Server, count: int) -> None:
    """Wait (30 s at most) until the server has taken in ``count`` requests: the attack is in place."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = server.get("/metrics")[2].decode()
        gauge = next(line for line in text.splitlines() if line.startswith("faceprint_requests_in_flight"))
        if float(gauge.split()[-1]) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"the server did not take in the {count} slow requests")


def test_a_normal_client_keeps_searching_under_idle_and_slow_connections(abused: tuple[Server, dict[str, str]]
                                                                        ) -> None:
    server, keys = abused
    rek = server.client(*keys["normal"].split(":"))
    rek.create_collection(CollectionId="people")
    for n in (1, 2):
        rek.index_faces(CollectionId="people", Image=image(lfw_image("Aaron_Peirsol", n)), MaxFaces=1)
    probe = lfw_image("Aaron_Peirsol", 3).read_bytes()
    attack = Attack(server, keys["attacker"], IDLE, SLOW, probe)
    answered = 0
    try:
        wait_in_flight(server, SLOW)
        deadline = time.monotonic() + SEARCHING
        while time.monotonic() < deadline or answered < ANSWERS:  # a count, not a rate: no timing assert
            found = rek.search_faces_by_image(CollectionId="people", Image={"Bytes": probe})
            assert found["FaceMatches"]
            answered += 1
    finally:
        attack.stop()
    assert server.process.poll() is None and server.get("/health")[0] == 200
