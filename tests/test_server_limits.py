"""`faceprint serve` with its limits changed: image bytes over 5 MB with --max-image-bytes, a
body that does not arrive within --body-timeout, headers that do not arrive within
--header-timeout, a keep-alive connection idle past --idle-timeout, and connections past
--max-connections and --max-connections-per-ip."""

from __future__ import annotations

import contextlib
import http.client
import io
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import FACES, ROOT
from serverkit import Server, free_port, read_answer, slow_request

GROUP = FACES / "identities" / "faceapi_bbt" / "group" / "bbt1.jpg"
MAX_IMAGE_BYTES = 8_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = Server(tmp_path_factory.mktemp("limits-home"), "--no-auth", "--max-image-bytes", str(MAX_IMAGE_BYTES),
                 "--body-timeout", "1", "--header-timeout", "1", "--idle-timeout", "1")
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM)


def noise_png() -> bytes:
    """A real PNG over 5 MB (noise does not compress)."""
    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    pixels = np.random.default_rng(7).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def test_max_image_bytes_raises_the_bytes_limit(server: Server) -> None:
    rek = server.client()
    png = noise_png()
    assert 5 * 1024 * 1024 < len(png) < MAX_IMAGE_BYTES
    assert rek.detect_faces(Image={"Bytes": png})["FaceDetails"] == []
    jpeg = Path(GROUP).read_bytes()
    with pytest.raises(rek.exceptions.ImageTooLargeException) as exc:
        rek.detect_faces(Image={"Bytes": jpeg + b"\0" * (MAX_IMAGE_BYTES + 1 - len(jpeg))})
    assert str(MAX_IMAGE_BYTES) in str(exc.value)


def test_a_body_that_does_not_arrive_times_out(server: Server) -> None:
    started = time.monotonic()
    with slow_request(server) as sock:
        sock.sendall(b"{")  # one byte of the 1,000 announced
        status, body = read_answer(sock)
    assert (status, body["__type"]) == (408, "RequestTimeoutException")
    assert 1 <= time.monotonic() - started < 10
    entry = server.access_log()[-1]
    assert (entry["operation"], entry["status"], entry["error"]) == ("ListCollections", 408, "RequestTimeoutException")
    assert server.client().list_collections()["CollectionIds"] == []  # still serving


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends on ``sock`` until it closes the connection (a socket timeout,
    30 s, if it never does)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_headers_that_do_not_arrive_time_out(server: Server) -> None:
    """Half a request line, then nothing: answered 408 and closed after --header-timeout (uvicorn
    alone would hold the connection, and its file handle, for ever)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST / HT")
        answer = until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"RequestTimeoutException" in answer
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        assert until_closed(sock) == b""  # not a byte sent: closed, nothing to answer
    assert server.client().list_collections()["CollectionIds"] == []  # still serving


def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    """After an answer a connection may wait --idle-timeout (1 s here, uvicorn's own is 5 s) for its
    next request; one byte of a next request does not stop the clock: its headers must then be
    complete within --header-timeout."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=4) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert (response.status, response.getheader("connection")) == (200, None)  # kept alive
        response.read()
        assert until_closed(sock) == b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        sock.sendall(b"G")  # the next request's first byte, and no more
        answer = until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in answer


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory):
    srv = Server(tmp_path_factory.mktemp("capped-home"), "--no-auth", "--max-connections", "5",
                 "--max-connections-per-ip", "3", "--header-timeout", "60", "--idle-timeout", "60")
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM)


def busy(server: Server, source: str) -> socket.socket:
    """A connection whose request the app is reading (its headers in, its body not): the server
    has answered its ``Expect: 100-continue``."""
    sock = slow_request(server, length=2, headers={"Expect": "100-continue"}, source=source)
    assert sock.recv(25).startswith(b"HTTP/1.1 100 ")
    return sock


def refused(server: Server, source: str) -> bool:
    """True if a new connection from ``source`` is closed without an answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30, source_address=(source, 0)) as sock:
        try:
            sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
            return sock.recv(1) == b""
        except ConnectionResetError:
            return True


def test_past_max_connections_the_longest_waiting_connection_gives_way(capped: Server) -> None:
    """Five idle connections fill the cap: a new client is served all the same, and the
    connection that had waited longest for a request is closed."""
    idle = [socket.create_connection(("127.0.0.1", capped.port), timeout=30,
                                     source_address=(f"127.0.0.{2 + i % 2}", 0)) for i in range(5)]
    try:
        rek = capped.client()
        assert rek.list_collections()["CollectionIds"] == []
        assert until_closed(idle[0]) == b""
        rek.close()
    finally:
        for sock in idle:
            sock.close()


def test_past_max_connections_a_new_connection_is_closed_when_none_waits(capped: Server) -> None:
    """With every place held by a request in progress, a new connection is closed at once; the
    requests in progress are answered."""
    held = [busy(capped, "127.0.0.2") for _ in range(3)] + [busy(capped, "127.0.0.3") for _ in range(2)]
    try:
        assert refused(capped, "127.0.0.1")
        for sock in held:
            sock.sendall(b"{}")
            status, body = read_answer(sock)
            assert (status, body["CollectionIds"]) == (200, [])
    finally:
        for sock in held:
            sock.close()
    rek = capped.client()
    assert rek.list_collections()["CollectionIds"] == []
    rek.close()


def test_past_max_connections_per_ip_that_address_is_refused(capped: Server) -> None:
    """Three requests in progress from 127.0.0.2: its fourth connection is closed at once, while
    a client on another address is served."""
    held = [busy(capped, "127.0.0.2") for _ in range(3)]
    try:
        assert refused(capped, "127.0.0.2")
        rek = capped.client()
        assert rek.list_collections()["CollectionIds"] == []
        rek.close()
        held[0].sendall(b"{}")
        assert read_answer(held[0])[0] == 200
    finally:
        for sock in held:
            sock.close()


def serve_with_file_limit(home: Path, soft: int, hard: int, *args: str) -> subprocess.Popen[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return subprocess.Popen([sys.executable, "-m", "faceprint.cli", "--home", str(home), "serve", "--no-auth",
                             "--port", str(free_port()), *args], cwd=ROOT, preexec_fn=limit, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def open_files_limit(pid: int) -> tuple[int, int]:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if x.startswith("Max open files"))
    soft, hard = (resource.RLIM_INFINITY if x == "unlimited" else int(x) for x in line.split()[3:5])
    return soft, hard


def test_serve_raises_its_file_limit_and_keeps_max_connections_below_it(tmp_path: Path) -> None:
    """`serve` raises its soft limit on open files to the hard one; a --max-connections that the
    hard limit cannot hold is refused at start with the limit in the message."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard limit on open files is {hard}")
    refused = serve_with_file_limit(tmp_path, 300, 300, "--max-connections", "1000")
    _, err = refused.communicate(timeout=60)
    assert refused.returncode != 0 and "Traceback" not in err
    assert "--max-connections 1000" in err and "300" in err
    started = serve_with_file_limit(tmp_path, 300, hard, "--max-connections", "1000")
    try:
        deadline = time.monotonic() + 30
        while open_files_limit(started.pid)[0] == 300 and started.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.poll() is None
        soft_now, _ = open_files_limit(started.pid)
        assert soft_now == hard if hard != resource.RLIM_INFINITY else soft_now > 300
    finally:
        started.terminate()
        started.communicate(timeout=60)


def test_bodies_arriving_are_bounded_by_the_bytes_received(tmp_path: Path) -> None:
    """Bodies still arriving hold at most ``body_budget`` bytes together, counted as they arrive:
    two bodies announcing 90 kB each fit a 100 kB budget while they are short of it; once 120 kB
    have come, one of them is throttled (and its connection closed) and the other completes."""
    import uvicorn

    from faceprint.server.app import AppOptions, create_app
    from faceprint.service import Faceprint

    app = create_app(Faceprint(tmp_path, profile="fast"), options=AppOptions(body_budget=100_000, warm=False))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run)
    thread.start()
    body = b" " * 89_998 + b"{}"
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(2):
            socks.append(socket.create_connection(("127.0.0.1", server.config.port), timeout=30))
            socks[-1].sendall(f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: RekognitionService.ListCollections"
                              f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:60_000])
        ready, _, _ = select.select(socks, [], [], 30)
        assert len(ready) == 1
        status, answer = read_answer(ready[0])
        assert (status, answer["__type"]) == (500, "ThrottlingException")
        other = next(sock for sock in socks if sock is not ready[0])
        other.sendall(body[60_000:])
        status, answer = read_answer(other)
        assert (status, answer["CollectionIds"]) == (200, [])
    finally:
        for sock in socks:
            sock.close()
        server.should_exit = True
        thread.join(30)


def test_an_answered_requests_unread_body_does_not_hold_the_connection(server: Server) -> None:
    """/health answers without reading the body its request announced; the client then sends that
    body a byte at a time, each byte within --idle-timeout. The connection has no request in
    progress: it must still be closed, --header-timeout after the answer, not held for ever."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: 1000000\r\n\r\n"
                     .encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200
        response.read()
        closed = False
        for _ in range(120):  # 30 s of bytes, every 0.25 s; the server's deadline is 1 s
            try:
                sock.sendall(b" ")
                readable, _, _ = select.select([sock], [], [], 0.25)
                if readable and sock.recv(65536) == b"":
                    closed = True
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            if closed:
                break
    assert closed
    assert server.client().list_collections()["CollectionIds"] == []  # still serving


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of ``sock`` (1: established; 7: closed, reset by the server; 8: the
    server closed its side)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def test_a_client_that_reads_no_answers_is_dropped(server: Server) -> None:
    """A client pipelines thousands of requests and reads none of the answers: once the socket's
    buffers are full, uvicorn waits, with a request in progress, for the client to read. That wait
    is bounded by --body-timeout: the connection is dropped, not held for ever."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.settimeout(10)
        request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
        with contextlib.suppress(TimeoutError, ConnectionError):  # the server stops reading, or drops it
            sock.sendall(request * 20_000)
        for _ in range(300):  # 30 s; the deadline is 1 s
            if tcp_state(sock) != 1:
                break
            time.sleep(0.1)
        assert tcp_state(sock) != 1
    assert server.client().list_collections()["CollectionIds"] == []  # still serving
