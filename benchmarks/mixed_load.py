"""The mixed run of server_load.py (``--mixed``): index, search and detect at once, beside the same
mix in-process, with the server's memory. Run it through server_load.py (see its docstring)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MIX = ("SearchFacesByImage", "IndexFaces", "SearchFacesByImage", "DetectFaces")
"""A client's cycle: search 50%, index 25%, detect 25% (each client starts at its own place)."""
OPERATIONS = ("IndexFaces", "SearchFacesByImage", "DetectFaces")
PAGE = os.sysconf("SC_PAGE_SIZE")

Calls = dict[str, Callable[[int], Any]]
"""One client's calls by operation; each takes a number that picks its image."""


def tree_rss(root: int) -> int:
    """Bytes resident in ``root`` and its descendants, summed (Linux /proc; shared pages count
    once per process)."""
    parent, rss = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        parent[pid], rss[pid] = int(fields[1]), int(fields[21]) * PAGE
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += [child for child, up in parent.items() if up == pid and child not in tree]
    return sum(rss.get(pid, 0) for pid in tree)


class MemorySampler:
    """The resident memory of a process tree, every ``interval`` seconds while in the ``with``."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        self.root, self.interval, self.samples = root, interval, [tree_rss(root)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(tree_rss(self.root))

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(tree_rss(self.root))

    def summary(self) -> dict[str, float]:
        mb = np.array(self.samples) / 1e6
        return {"start": float(mb[0]), "peak": float(mb.max()), "end": float(mb[-1])}


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code", type(exc).__name__) if isinstance(response, dict) \
        else type(exc).__name__


def mixed(clients: int, seconds: float, make: Callable[[], Calls]) -> dict[str, Any]:
    """``clients`` threads, each with the calls ``make()`` gives it, cycling through MIX for
    ``seconds``: per operation the latencies of answered calls and the errors by code."""
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, Counter[str]] = defaultdict(Counter)
    lock = threading.Lock()
    deadline: list[float] = []
    ready = threading.Barrier(clients, action=lambda: deadline.append(time.perf_counter() + seconds))

    def client(k: int) -> None:
        calls = make()
        calls["DetectFaces"](k)  # warm: connection, first request
        ready.wait()
        mine: dict[str, list[float]] = defaultdict(list)
        failed: dict[str, Counter[str]] = defaultdict(Counter)
        n = 0
        while time.perf_counter() < deadline[0]:
            operation = MIX[(k + n) % len(MIX)]
            started = time.perf_counter()
            try:
                calls[operation](k + clients * n)
                mine[operation].append(time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                failed[operation][error_code(exc)] += 1
            n += 1
        with lock:
            for op in OPERATIONS:
                latencies[op] += mine[op]
                errors[op].update(failed[op])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - (deadline[0] - seconds)  # the calls under way at the deadline included
    return {"seconds": wall, "latencies": dict(latencies), "errors": dict(errors)}


def server_calls(server: Any, collection: str, probes: list[bytes], extra: list[bytes]) -> Callable[[], Calls]:
    def make() -> Calls:
        client = server.client()
        return {"DetectFaces": lambda i: client.detect_faces(Image={"Bytes": probes[i % len(probes)]}),
                "SearchFacesByImage": lambda i: client.search_faces_by_image(
                    CollectionId=collection, Image={"Bytes": probes[i % len(probes)]}),
                "IndexFaces": lambda i: client.index_faces(CollectionId=collection, MaxFaces=1,
                                                           Image={"Bytes": extra[i % len(extra)]})}
    return make


def local_calls(fp: Any, collection: str, probes: list[bytes], extra: list[bytes]) -> Callable[[], Calls]:
    def make() -> Calls:
        return {"DetectFaces": lambda i: fp.detect_faces(probes[i % len(probes)]).to_dict(),
                "SearchFacesByImage": lambda i: fp.search_faces_by_image(collection, probes[i % len(probes)]).to_dict(),
                "IndexFaces": lambda i: fp.index_faces(collection, extra[i % len(extra)], max_faces=1).to_dict()}
    return make


def one_profile(args: argparse.Namespace, server_class: Any, profile: str, cast: list[tuple[str, bytes, bytes]],
                extra: list[bytes]) -> dict[str, Any]:
    """The server half, then the in-process half, of one profile."""
    from faceprint.service import Faceprint

    probes = [p for _, _, p in cast]
    with tempfile.TemporaryDirectory(prefix="faceprint-mixed-") as tmp:
        home = Path(tmp)
        server = server_class(home, profile, args.workers)
        try:
            admin = server.client()
            admin.create_collection(CollectionId="served")
            for name, enrol, _ in cast:
                admin.index_faces(CollectionId="served", Image={"Bytes": enrol}, ExternalImageId=name, MaxFaces=1)
            with MemorySampler(server.process.pid) as memory:
                served = mixed(args.mixed_clients, args.duration, server_calls(server, "served", probes, extra))
            served["memory"] = memory.summary()
            print(f"{profile}: server half done", file=sys.stderr, flush=True)
            fp = Faceprint(home, profile=profile)
            fp.create_collection("local")
            for name, enrol, _ in cast:
                fp.index_faces("local", enrol, external_image_id=name, max_faces=1)
            with MemorySampler(os.getpid()) as memory:
                local = mixed(args.mixed_clients, args.duration, local_calls(fp, "local", probes, extra))
            local["memory"] = memory.summary()
            print(f"{profile}: in-process half done", file=sys.stderr, flush=True)
        except BaseException:
            print((home / "server.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            server.stop()
    return {"profile": profile, "server": served, "local": local}


def run_mixed(args: argparse.Namespace, server_class: Any, cast: list[tuple[str, bytes, bytes]],
              extra: list[bytes]) -> None:
    profiles = [args.profile] if args.profile else ["accurate", "fast"]
    results = [one_profile(args, server_class, profile, cast, extra) for profile in profiles]
    print_mixed(args, results)


def _stats(half: dict[str, Any], op: str) -> tuple[int, int, float, float]:
    ms = np.array(half["latencies"].get(op, [])) * 1000
    errors = sum(half["errors"].get(op, Counter()).values())
    if not len(ms):
        return 0, errors, float("nan"), float("nan")
    return len(ms), errors, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _codes(half: dict[str, Any]) -> str:
    found = Counter[str]()
    for counts in half["errors"].values():
        found.update(counts)
    return ", ".join(f"{code} {n}" for code, n in found.most_common()) or "none"


def print_mixed(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    import onnxruntime

    print(f"load average at the end {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"mixed run: {args.mixed_clients} clients, {args.duration:.0f} s a half, search 50% / index 25% / "
          f"detect 25%, server workers {args.workers}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    for result in results:
        served, local = result["server"], result["local"]
        print()
        print(f"Profile {result['profile']}:")
        print()
        print("| operation | server calls/s | server errors | server p50 / p99 ms | in-process calls/s | "
              "in-process errors | in-process p50 / p99 ms | throughput ratio | p50 ratio | p99 ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for op in OPERATIONS:
            sn, se, s50, s99 = _stats(served, op)
            ln, le, l50, l99 = _stats(local, op)
            s_rate, l_rate = sn / served["seconds"], ln / local["seconds"]
            print(f"| {op} | {s_rate:.1f} | {se} | {s50:.0f} / {s99:.0f} | {l_rate:.1f} | {le} | "
                  f"{l50:.0f} / {l99:.0f} | {s_rate / max(l_rate, 1e-9):.2f} | {s50 / l50:.2f} | {s99 / l99:.2f} |")
        sm, lm = served["memory"], local["memory"]
        print()
        print(f"errors: server {_codes(served)}; in-process {_codes(local)}")
        print(f"memory (resident, MB): server process tree {sm['start']:.0f} at the start, peak {sm['peak']:.0f}, "
              f"end {sm['end']:.0f}; in-process (this benchmark's process) {lm['start']:.0f}, peak "
              f"{lm['peak']:.0f}, end {lm['end']:.0f}")
