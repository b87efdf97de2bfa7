"""`faceprint serve` under load, beside the same calls made in-process, in the same run.

Run: python benchmarks/server_load.py [--profile accurate|fast] [--workers N] [--clients 1,4,16]
                                      [--requests 64]
     python benchmarks/server_load.py --mixed [--duration 60] [--mixed-clients 8] [--profile P]

A real server (a subprocess, authentication on, a key of its own) on a temporary home; a
collection of 40 LFW people (first image each). The probes are the people's second images
(250 x 250 JPEG, one face). For DetectFaces and SearchFacesByImage and each number of
concurrent clients C (threads, each with its own boto3 client and connection), ``--requests``
calls are made and timed: throughput (calls/s) and latency p50 / p99 per call. Then the same
calls with C threads on one in-process ``Faceprint`` (same profile, same home), which is the
baseline: the ratios say what the HTTP layer costs (base64, JSON, SigV4, the pools).

``--mixed``: for each profile (both unless ``--profile`` names one), ``--mixed-clients`` clients
(default 8) call for ``--duration`` seconds (default 60) a mix of SearchFacesByImage (50%),
IndexFaces (25%, other LFW images into the searched collection, so searches follow writes) and
DetectFaces (25%); reported per operation: calls, errors, latency p50 / p99, and the server's
memory (resident set of its process tree, sampled twice a second: at the start, peak, end).
The baseline is the same mix for the same time on an in-process ``Faceprint`` (its own
collection of the same people), with this process's memory. The code is in mixed_load.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw_data import LFW  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COLLECTION = "bench"


def people(count: int) -> list[tuple[str, bytes, bytes]]:
    out = []
    for folder in sorted((LFW / "images").iterdir()):
        images = sorted(folder.glob("*.jpg"))
        if len(images) >= 2:
            out.append((folder.name, images[0].read_bytes(), images[1].read_bytes()))
        if len(out) == count:
            break
    return out


def index_images(count: int) -> list[bytes]:
    """LFW images that are neither enrolled nor probes (each person's third image on)."""
    found: list[bytes] = []
    for folder in sorted((LFW / "images").iterdir()):
        found += [p.read_bytes() for p in sorted(folder.glob("*.jpg"))[2:]]
        if len(found) >= count:
            return found[:count]
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, home: Path, profile: str, workers: int) -> None:
        from faceprint.server.auth import KeyStore

        key = KeyStore(home).create("bench")
        self.key = (key.access_key_id, key.secret_access_key)
        self.port = free_port()
        self.log = open(home / "server.log", "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "faceprint.cli", "--home", str(home), "--profile", profile, "serve",
             "--port", str(self.port), "--workers", str(workers), "--log-level", "warning"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait()

    def _wait(self) -> None:
        import http.client

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("the server did not start; see server.log")

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("rekognition", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                            aws_access_key_id=self.key[0], aws_secret_access_key=self.key[1],
                            config=Config(retries={"max_attempts": 1}, read_timeout=300,
                                          max_pool_connections=1))

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its worker processes (Linux /proc)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid, ppid = int(stat.parent.name), int(fields[1])
            if self.process.pid in (pid, ppid):
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        self.log.close()


def run(clients: int, requests: int, make_call: Callable[[], Callable[[int], Any]],
        cpu: Callable[[], float] = time.process_time) -> dict[str, float]:
    """``requests`` calls shared by ``clients`` threads, each with the call ``make_call()`` gives it;
    ``cores`` is the CPU time ``cpu()`` counted during the run over its wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    ready = threading.Barrier(clients + 1)

    def worker() -> None:
        call = make_call()
        call(0)  # warm: connection, first request
        ready.wait()
        mine = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t = time.perf_counter()
            call(i)
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    start, cpu_start = time.perf_counter(), cpu()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"rps": requests / wall, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "cores": (cpu() - cpu_start) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=["accurate", "fast"],
                        help="default: accurate; with --mixed, both one after the other")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=64, help="calls per measurement")
    parser.add_argument("--people", type=int, default=40)
    parser.add_argument("--mixed", action="store_true", help="the mixed run instead (index, search, detect)")
    parser.add_argument("--duration", type=float, default=60.0, help="--mixed: seconds of load per half")
    parser.add_argument("--mixed-clients", type=int, default=8, help="--mixed: concurrent clients")
    args = parser.parse_args()
    from faceprint.service import Faceprint, default_home, default_models_dir

    os.environ.setdefault("FACEPRINT_MODELS_DIR", str(default_models_dir(default_home())))
    if args.mixed:
        from mixed_load import run_mixed

        run_mixed(args, Server, people(args.people), index_images(400))
        return
    args.profile = args.profile or "accurate"
    cast = people(args.people)
    probes = [p for _, _, p in cast]
    with tempfile.TemporaryDirectory(prefix="faceprint-load-") as tmp:
        home = Path(tmp)
        server = Server(home, args.profile, args.workers)
        try:
            admin = server.client()
            admin.create_collection(CollectionId=COLLECTION)
            for name, enrol, _ in cast:
                admin.index_faces(CollectionId=COLLECTION, Image={"Bytes": enrol}, ExternalImageId=name, MaxFaces=1)
            fp = Faceprint(home, profile=args.profile)
            fp.engine.load()
            rows = measure(server, fp, probes, [int(c) for c in args.clients.split(",")], args.requests)
        except BaseException:
            print((home / "server.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            server.stop()
    print_report(args, rows)


def measure(server: Server, fp: Any, probes: list[bytes], levels: list[int], requests: int
            ) -> list[tuple[str, int, dict[str, float], dict[str, float]]]:
    def over_http(operation: str) -> Callable[[], Callable[[int], Any]]:
        def make() -> Callable[[int], Any]:
            client = server.client()
            if operation == "DetectFaces":
                return lambda i: client.detect_faces(Image={"Bytes": probes[i % len(probes)]})
            return lambda i: client.search_faces_by_image(CollectionId=COLLECTION,
                                                          Image={"Bytes": probes[i % len(probes)]})
        return make

    def in_process(operation: str) -> Callable[[], Callable[[int], Any]]:
        def make() -> Callable[[int], Any]:
            if operation == "DetectFaces":
                return lambda i: fp.detect_faces(probes[i % len(probes)]).to_dict()
            return lambda i: fp.search_faces_by_image(COLLECTION, probes[i % len(probes)]).to_dict()
        return make

    rows = []
    for operation in ("DetectFaces", "SearchFacesByImage"):
        for clients in levels:
            served = run(clients, requests, over_http(operation), server.cpu_seconds)
            local = run(clients, requests, in_process(operation))
            rows.append((operation, clients, served, local))
            print(f"{operation} x{clients}: server {served['rps']:.1f}/s p50 {served['p50']:.0f} ms, "
                  f"in-process {local['rps']:.1f}/s p50 {local['p50']:.0f} ms", file=sys.stderr, flush=True)
    return rows


def print_report(args: argparse.Namespace, rows: list[tuple[str, int, dict[str, float], dict[str, float]]]) -> None:
    import onnxruntime

    print(f"load average at the end {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"profile {args.profile}, server workers {args.workers}, {args.requests} calls per row; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, onnxruntime {onnxruntime.__version__}, {time.strftime('%Y-%m-%d')}")
    print()
    print("| operation | clients | server calls/s | server p50 / p99 ms | server cores busy | in-process calls/s | "
          "in-process p50 / p99 ms | in-process cores busy | throughput ratio | p50 ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for operation, clients, s, p in rows:
        print(f"| {operation} | {clients} | {s['rps']:.1f} | {s['p50']:.0f} / {s['p99']:.0f} | {s['cores']:.2f} | "
              f"{p['rps']:.1f} | {p['p50']:.0f} / {p['p99']:.0f} | {p['cores']:.2f} | {s['rps'] / p['rps']:.2f} | "
              f"{s['p50'] / p['p50']:.2f} |")


if __name__ == "__main__":
    main()
