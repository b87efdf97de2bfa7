"""Real endpoints for the stream processors' sinks: an HTTP webhook receiver and moto's Kinesis server.

``webhook_receiver(delay=0, fail_first=0)``: a threaded HTTP server on 127.0.0.1 that collects
POSTed JSON::

    with webhook_receiver() as hook:        # hook.url = "http://127.0.0.1:PORT/hook"
        ... sink spec hook.url (or hook.url + ";matches-only") ...
        hook.wait(3)                        # until 3 POSTs were accepted (raises after timeout)
        hook.bodies                         # their JSON, in arrival order; hook.kinds: "frame"|"alert"
        hook.arrived                        # time.time() of each accepted POST (for benchmarks)
        hook.requests                       # every request, failed ones included

``delay`` seconds are slept before each answer (released at once when the receiver closes);
the first ``fail_first`` requests are answered 500. ``tls=(CERT, KEY)`` (PEM files, e.g.
``test_server_tls.self_signed(folder)``) serves HTTPS: hook.url starts https://, and a client trusts
it with ``SSL_CERT_FILE=CERT`` in its environment.

``kinesis_server()``: moto's real server (``ThreadedMotoServer``) on a free port::

    with kinesis_server() as kinesis:       # kinesis.endpoint = "http://127.0.0.1:PORT"
        kinesis.create_stream("faces")      # ACTIVE when it returns
        spec = kinesis.spec("faces")        # "kinesis:http://127.0.0.1:PORT#faces"
        kinesis.env                         # dummy AWS credentials + region: for a subprocess's env,
                                            # or monkeypatch.setenv each, for boto3 in this process
        kinesis.records("faces")            # every record: {"Data": bytes, "PartitionKey", ...}
        kinesis.json_records("faces")       # their Data parsed as JSON
        with throttling_proxy(kinesis) as proxy:  # proxy.endpoint: Kinesis that fails every other
            ...                                   # record of the first PutRecords (FailedRecordCount)
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from serverkit import REGION, free_port

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout} s")
        time.sleep(0.02)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (a closed sink) is expected here


class WebhookReceiver:
    def __init__(self, delay: float = 0.0, fail_first: int = 0, tls: tuple[Path, Path] | None = None) -> None:
        self.delay, self.fail_first = delay, fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.bodies: list[Any] = []
        self.kinds: list[str] = []
        self.arrived: list[float] = []
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="webhook-receiver",
                                       daemon=True)
        self.thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.requests.append((headers, body))
                    failing = len(receiver.requests) <= receiver.fail_first
                if receiver.delay:
                    receiver.closed.wait(receiver.delay)
                if not failing:
                    with receiver._lock:
                        receiver.bodies.append(json.loads(body))
                        receiver.kinds.append(headers.get("x-faceprint-record", ""))
                        receiver.arrived.append(time.time())
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def wait(self, count: int, timeout: float = 10.0) -> None:
        wait_for(lambda: len(self.bodies) >= count, timeout, f"{count} webhook POSTs (got {len(self.bodies)})")

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextmanager
def webhook_receiver(delay: float = 0.0, fail_first: int = 0,
                     tls: tuple[Path, Path] | None = None) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(delay, fail_first, tls)
    try:
        yield receiver
    finally:
        receiver.close()


class KinesisServer:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.region = REGION
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": REGION}

    def client(self, endpoint: str | None = None) -> Any:
        """A boto3 Kinesis client of this server (or of ``endpoint``, e.g. a proxy's)."""
        import boto3

        return boto3.session.Session().client("kinesis", endpoint_url=endpoint or self.endpoint,
                                              region_name=REGION, **CREDENTIALS)

    def spec(self, stream: str) -> str:
        return f"kinesis:{self.endpoint}#{stream}"

    def create_stream(self, name: str, shards: int = 1) -> None:
        client = self.client()
        client.create_stream(StreamName=name, ShardCount=shards)
        client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})

    def records(self, name: str) -> list[dict[str, Any]]:
        """Every record of every shard, oldest first in each shard."""
        client = self.client()
        found: list[dict[str, Any]] = []
        for shard in client.list_shards(StreamName=name)["Shards"]:
            iterator = client.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                                 ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while iterator:
                answer = client.get_records(ShardIterator=iterator, Limit=10000)
                found += answer["Records"]
                if not answer["Records"]:
                    break
                iterator = answer.get("NextShardIterator")
        return found

    def json_records(self, name: str) -> list[Any]:
        return [json.loads(record["Data"]) for record in self.records(name)]


@contextmanager
def kinesis_server(port: int | None = None) -> Iterator[KinesisServer]:
    """moto's server on ``port`` (a free one by default) until the block ends."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on stderr
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto keeps its state in the process, not in the server: a server started after another one in
    # the same test run would see that one's streams. A fresh server starts empty.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    try:
        yield KinesisServer(endpoint)
    finally:
        server.stop()


class ThrottlingProxy:
    """A Kinesis endpoint in front of moto's that fails every other record (the last, the third
    last...) of the first ``fail_calls`` PutRecords calls, the way Kinesis does when a shard is over
    its rate (``FailedRecordCount``, ``ErrorCode: ProvisionedThroughputExceededException``); the other
    records and every other call go to moto unchanged (moto never fails records)."""

    def __init__(self, upstream: str, fail_calls: int = 1) -> None:
        self.upstream = urlsplit(upstream)
        self.fail_calls = fail_calls
        self.throttled = 0
        self._lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="kinesis-proxy",
                                       daemon=True)
        self.thread.start()

    def forward(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname or "", self.upstream.port, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "host", "connection")}
            conn.request("POST", "/", body=body, headers=sent)
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()

    def put_records(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        request = json.loads(body)
        records = request["Records"]
        failing = [(len(records) - n) % 2 == 1 for n in range(len(records))]  # the last, the third last...
        kept = [r for r, fails in zip(records, failing, strict=True) if not fails]
        done: Iterator[dict[str, Any]] = iter([])
        if kept:
            status, answer = self.forward(headers, json.dumps(request | {"Records": kept}).encode())
            if status != 200:
                return status, answer
            done = iter(json.loads(answer)["Records"])
        failure = {"ErrorCode": "ProvisionedThroughputExceededException",
                   "ErrorMessage": f"Rate exceeded for shard shardId-000000000000 in stream {request['StreamName']}."}
        merged = [failure if fails else next(done) for fails in failing]
        return 200, json.dumps({"FailedRecordCount": len(records) - len(kept), "Records": merged}).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                with proxy._lock:
                    throttle = headers.get("X-Amz-Target", "").endswith(".PutRecords") and \
                        proxy.throttled < proxy.fail_calls
                    proxy.throttled += throttle
                status, answer = proxy.put_records(headers, body) if throttle else proxy.forward(headers, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextmanager
def throttling_proxy(kinesis: KinesisServer, fail_calls: int = 1) -> Iterator[ThrottlingProxy]:
    proxy = ThrottlingProxy(kinesis.endpoint, fail_calls)
    try:
        yield proxy
    finally:
        proxy.close()
