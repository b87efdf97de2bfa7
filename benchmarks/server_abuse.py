"""A normal client's latency with the server quiet, then under 1,000 idle connections and 64 slow bodies.

Run: python benchmarks/server_abuse.py [--profile accurate|fast] [--workers N] [--calls 200]
                                       [--idle 1000] [--slow 64] [--unsigned]

A real server (a subprocess, authentication on, its default connection limits) on a temporary
home; a collection of 20 LFW people. The normal client (boto3, its own key, one connection)
calls SearchFacesByImage ``--calls`` times with the people's second images, first with the
server quiet (the baseline), then under attack:

- ``--idle`` connections that send nothing (no key needed); when the server closes one
  (``--header-timeout``, 10 s), the attacker opens another;
- ``--slow`` SearchFacesByImage requests whose bodies arrive a byte every half second, signed
  with a valid key of the attacker's own (``--unsigned``: without a key); when the server
  answers one (``--body-timeout``, 30 s), the attacker sends another.

It prints p50 / p99 of both phases, the errors, the server's memory, and the ratio of p99
under attack to quiet (the goal: within 2x).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import resource
import selectors
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mixed_load import tree_rss  # noqa: E402
from server_load import Server as LoadServer  # noqa: E402
from server_load import people  # noqa: E402

COLLECTION = "bench"
REGION = "us-east-1"


class Server(LoadServer):
    """``server_load``'s server, with two keys of its own: the normal client's and the attacker's."""

    def __init__(self, home: Path, profile: str, workers: int) -> None:
        from faceprint.server.auth import KeyStore

        store = KeyStore(home)
        self.keys = {name: store.create(name) for name in ("normal", "attacker")}
        super().__init__(home, profile, workers)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        except OSError:
            return 0, b""

    def in_flight(self) -> float:
        lines = self.get("/metrics")[1].decode().splitlines()
        return sum(float(line.split()[-1]) for line in lines if line.startswith("faceprint_requests_in_flight"))

    def memory_mb(self) -> float:
        """Resident memory of the server and its worker processes."""
        return tree_rss(self.process.pid) / 2**20

    def client_of(self, name: str) -> Any:
        import boto3
        from botocore.config import Config

        key = self.keys[name]
        return boto3.client("rekognition", endpoint_url=f"http://127.0.0.1:{self.port}", region_name=REGION,
                            aws_access_key_id=key.access_key_id, aws_secret_access_key=key.secret_access_key,
                            config=Config(retries={"max_attempts": 1}, read_timeout=300, max_pool_connections=1))


class Attack:
    """``idle`` silent connections and ``slow`` trickling requests, each replaced when the server
    closes or answers it, from two threads, until :meth:`stop`."""

    def __init__(self, server: Server, idle: int, slow: int, probe: bytes, signed: bool) -> None:
        self.server, self.signed, self.stopping = server, signed, threading.Event()
        self.body = json.dumps({"CollectionId": COLLECTION,
                                "Image": {"Bytes": base64.b64encode(probe).decode()}}).encode()
        self.replaced = {"idle": 0, "slow": 0}
        self.idle = selectors.DefaultSelector()
        for _ in range(idle):
            self._open_idle()
        self.slow = selectors.DefaultSelector()
        for _ in range(slow):
            self._open_slow()
        self.threads = [threading.Thread(target=self._keep_idle), threading.Thread(target=self._trickle)]
        for thread in self.threads:
            thread.start()

    def _connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.server.port), timeout=30)

    def _open_idle(self) -> None:
        sock = self._connect()
        sock.setblocking(False)
        self.idle.register(sock, selectors.EVENT_READ)

    def _open_slow(self) -> None:
        sock = self._connect()
        sock.sendall(self._head())
        sock.setblocking(False)
        self.slow.register(sock, selectors.EVENT_READ, 0)  # data: body bytes sent so far

    def _head(self) -> bytes:
        headers = {"X-Amz-Target": "RekognitionService.SearchFacesByImage",
                   "Content-Type": "application/x-amz-json-1.1"}
        if self.signed:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials

            key = self.server.keys["attacker"]
            request = AWSRequest("POST", f"http://127.0.0.1:{self.server.port}/", data=self.body, headers=headers)
            SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "rekognition", REGION).add_auth(request)
            headers = dict(request.headers.items())
        lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{self.server.port}", f"Content-Length: {len(self.body)}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _keep_idle(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.idle.select(timeout=0.5):
                self._replace(self.idle, key.fileobj)
                self._open_idle()
                self.replaced["idle"] += 1

    def _trickle(self) -> None:
        while not self.stopping.wait(0.5):
            for key, _ in self.slow.select(timeout=0):  # answered or closed: another one
                self._replace(self.slow, key.fileobj)
                self._open_slow()
                self.replaced["slow"] += 1
            for key in list(self.slow.get_map().values()):
                sent = key.data
                if sent < len(self.body) - 1:
                    try:
                        key.fileobj.send(self.body[sent:sent + 1])  # type: ignore[union-attr]
                    except OSError:
                        continue
                    self.slow.modify(key.fileobj, selectors.EVENT_READ, sent + 1)

    @staticmethod
    def _replace(selector: selectors.BaseSelector, sock: Any) -> None:
        selector.unregister(sock)
        sock.close()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()
        for selector in (self.idle, self.slow):
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            selector.close()


def search(client: Any, probes: list[bytes], calls: int) -> dict[str, float]:
    latencies, errors = [], 0
    for i in range(calls):
        started = time.perf_counter()
        try:
            client.search_faces_by_image(CollectionId=COLLECTION, Image={"Bytes": probes[i % len(probes)]})
        except Exception:  # an error is counted, and its time too
            errors += 1
        latencies.append(time.perf_counter() - started)
    ms = np.array(latencies) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="accurate", choices=["accurate", "fast"])
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--calls", type=int, default=200, help="searches per phase")
    parser.add_argument("--idle", type=int, default=1000, help="idle connections")
    parser.add_argument("--slow", type=int, default=64, help="slow bodies")
    parser.add_argument("--unsigned", action="store_true", help="slow bodies without a key")
    args = parser.parse_args()
    from faceprint.service import default_home, default_models_dir

    os.environ.setdefault("FACEPRINT_MODELS_DIR", str(default_models_dir(default_home())))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.idle + args.slow + 512)), hard))
    cast = people(20)
    probes = [p for _, _, p in cast]
    with tempfile.TemporaryDirectory(prefix="faceprint-abuse-") as tmp:
        server = Server(Path(tmp), args.profile, args.workers)
        try:
            rows = measure(server, cast, probes, args)
        except BaseException:
            print((Path(tmp) / "server.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            server.stop()
    print_report(args, rows)


def measure(server: Server, cast: list[tuple[str, bytes, bytes]], probes: list[bytes], args: argparse.Namespace
            ) -> dict[str, dict[str, float]]:
    rek = server.client_of("normal")
    rek.create_collection(CollectionId=COLLECTION)
    for name, enrol, _ in cast:
        rek.index_faces(CollectionId=COLLECTION, Image={"Bytes": enrol}, ExternalImageId=name, MaxFaces=1)
    search(rek, probes, 5)  # warm
    quiet = search(rek, probes, args.calls) | {"memory": server.memory_mb()}
    print(f"quiet: p50 {quiet['p50']:.0f} ms, p99 {quiet['p99']:.0f} ms", file=sys.stderr, flush=True)
    attack = Attack(server, args.idle, args.slow, probes[0], signed=not args.unsigned)
    try:
        deadline = time.monotonic() + 30
        while server.in_flight() < args.slow and time.monotonic() < deadline:
            time.sleep(0.1)  # the slow requests are in
        abused = search(rek, probes, args.calls) | {"memory": server.memory_mb()}
    finally:
        attack.stop()
    return {"quiet": quiet, "abused": abused | {f"replaced {k}": float(v) for k, v in attack.replaced.items()}}


def print_report(args: argparse.Namespace, rows: dict[str, dict[str, float]]) -> None:
    quiet, abused = rows["quiet"], rows["abused"]
    print(f"load average at the end {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"profile {args.profile}, server workers {args.workers}, {args.calls} SearchFacesByImage calls a phase; "
          f"attack: {args.idle} idle connections, {args.slow} slow bodies "
          f"({'without a key' if args.unsigned else 'signed with a valid key'}); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}")
    print()
    print("| phase | p50 ms | p99 ms | errors | server memory MB |")
    print("|---|---|---|---|---|")
    for name, row in (("quiet", quiet), ("under attack", abused)):
        print(f"| {name} | {row['p50']:.0f} | {row['p99']:.0f} | {row['errors']:.0f} | {row['memory']:.0f} |")
    print()
    print(f"connections the attacker replaced during the run: {abused['replaced idle']:.0f} idle (closed by "
          f"--header-timeout), {abused['replaced slow']:.0f} slow (answered)")
    print(f"p50 ratio (attack / quiet): {abused['p50'] / quiet['p50']:.2f}")
    print(f"p99 ratio (attack / quiet): {abused['p99'] / quiet['p99']:.2f} (goal: within 2x)")


if __name__ == "__main__":
    main()
