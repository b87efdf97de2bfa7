"""Two ``faceprint serve`` nodes on this machine behind one PostgreSQL and one Milvus, 8 clients
writing and searching at once, and one node killed mid-run (issue 14).

    python benchmarks/two_nodes.py [--seconds 90] [--clients 8] [--kill-at 0.5] [--no-milvus]

Starts a real PostgreSQL (Debian's, as the tests do: ``tests/pg.py``, durable: fsync on) and a real
Milvus 2.3 (``tests/milvuskit.py``), then two nodes (``faceprint serve --store postgresql://...
--index milvus://...``, each with its own home), and one access key made through node A's home (so
kept in PostgreSQL) that signs every request to both nodes (SigV4; ``--no-auth`` for none). Each
client, a thread with its own boto3 client, loops: IndexFaces of an LFW dev photo no one else
indexes (ExternalImageId unique) on its node, then SearchFaces by the new FaceId on the OTHER node,
repeated until that node finds it (the time this takes is the cross-node visibility lag; the issue's
bar is one second; before the clients start, one face is indexed and searched on both nodes, so that
each has opened the collection, as serving nodes have), and a SearchFacesByImage of the photo on the
other node now and then. At ``--kill-at`` of the run node B is killed (SIGKILL); its clients move to
node A (a client whose request got no answer records the outcome as unknown and does not retry it,
since IndexFaces is not idempotent).

At the end, from node A: every acknowledged face is in the collection exactly once (nothing lost),
no ExternalImageId is there twice (nothing duplicated), each unknown outcome is there once or not at
all. Prints the counts, the lag's p50/p95/max, operations a second before and after the kill, and
exits 1 if a correctness check failed. Throughput ratios are against the same clients on one node
alone, measured first in the same run (``--baseline-seconds``; 0 to skip).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
LFW = ROOT.parent / "shared" / "data" / "faces" / "lfw-dev" / "images"
COLLECTION = "two-nodes"


@dataclass
class Tally:
    acked: dict[str, str] = field(default_factory=dict)  # ExternalImageId -> FaceId
    unknown: set[str] = field(default_factory=set)
    no_face: int = 0
    lags: list[float] = field(default_factory=list)
    slow: list[tuple[float, float, str]] = field(default_factory=list)  # (when, lag, node) of lags over 1 s
    never_seen: list[str] = field(default_factory=list)
    searches: int = 0
    wrong_search: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    done: list[tuple[float, str]] = field(default_factory=list)  # (time, node) of each acked write
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1


def photos(count: int) -> list[Path]:
    """One photo per LFW dev person (distinct people), in a fixed order."""
    people = sorted(p for p in LFW.iterdir() if p.is_dir())
    return [sorted(p.iterdir())[0] for p in people][:count]


class Client(threading.Thread):
    def __init__(self, number: int, nodes: dict[str, Any], dead: threading.Event, stop: threading.Event,
                 work: list[Path], tally: Tally, collection: str) -> None:
        super().__init__(daemon=True)
        self.number, self.nodes, self.dead, self.stop_, self.work, self.tally = number, nodes, dead, stop, work, tally
        self.collection = collection

    def run(self) -> None:
        for i, photo in enumerate(self.work):
            if self.stop_.is_set():
                return
            home, other = ("a", "b") if self.number % 2 == 0 else ("b", "a")
            if self.dead.is_set():
                home, other = "a", "a"
            self.one(f"c{self.number}-{i}", photo, home, other, i)

    def one(self, external: str, photo: Path, home: str, other: str, i: int) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        data = photo.read_bytes()
        try:
            answer = self.nodes[home].index_faces(CollectionId=self.collection, Image={"Bytes": data}, MaxFaces=1,
                                                  ExternalImageId=external)
        except ClientError as e:
            self.tally.error(f"IndexFaces {e.response['Error']['Code']}")
            return
        except BotoCoreError as e:  # no answer: the node died under it (or the connection broke)
            with self.tally.lock:
                self.tally.unknown.add(external)
            self.tally.error(f"IndexFaces no answer ({type(e).__name__})")
            return
        if not answer["FaceRecords"]:
            self.tally.no_face += 1
            return
        face_id = answer["FaceRecords"][0]["Face"]["FaceId"]
        with self.tally.lock:
            self.tally.acked[external] = face_id
            self.tally.done.append((time.monotonic(), home))
        self.visible(face_id, other if not self.dead.is_set() else "a", external)
        if i % 4 == 0:
            self.search_image(data, face_id, other if not self.dead.is_set() else "a")

    def visible(self, face_id: str, node: str, external: str) -> None:
        """Search by the new FaceId on ``node`` until it is found (the lag), up to 10 s."""
        from botocore.exceptions import BotoCoreError, ClientError

        start = time.monotonic()
        while time.monotonic() - start < 10.0:
            try:
                self.nodes[node].search_faces(CollectionId=self.collection, FaceId=face_id, MaxFaces=1)
                with self.tally.lock:
                    self.tally.lags.append(time.monotonic() - start)
                    if self.tally.lags[-1] > 1.0:
                        self.tally.slow.append((start, self.tally.lags[-1], node))
                return
            except ClientError as e:
                if e.response["Error"]["Code"] != "ResourceNotFoundException":  # the face: not seen yet
                    self.tally.error(f"SearchFaces {e.response['Error']['Code']}")
            except BotoCoreError:
                if node == "b" and self.dead.is_set():
                    node = "a"
                    continue
                self.tally.error("SearchFaces no answer")
            time.sleep(0.02)
        with self.tally.lock:
            self.tally.never_seen.append(external)

    def search_image(self, data: bytes, face_id: str, node: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = self.nodes[node].search_faces_by_image(CollectionId=self.collection, Image={"Bytes": data},
                                                           MaxFaces=3)
        except (ClientError, BotoCoreError) as e:
            self.tally.error(f"SearchFacesByImage {type(e).__name__}")
            return
        with self.tally.lock:
            self.tally.searches += 1
            if face_id not in [m["Face"]["FaceId"] for m in found["FaceMatches"]]:
                self.tally.wrong_search += 1


def all_faces(client: Any) -> list[dict[str, Any]]:
    faces, token = [], None
    while True:
        page = client.list_faces(CollectionId=COLLECTION, MaxResults=4096, **({"NextToken": token} if token else {}))
        faces += page["Faces"]
        token = page.get("NextToken")
        if not token:
            return faces


def check(tally: Tally, client: Any) -> dict[str, Any]:
    stored = all_faces(client)
    by_external: dict[str, list[str]] = {}
    for face in stored:
        by_external.setdefault(face.get("ExternalImageId", ""), []).append(face["FaceId"])
    lost = [e for e, f in tally.acked.items() if by_external.get(e) != [f]]
    duplicated = [e for e, ids in by_external.items() if len(ids) > 1]
    unknown_in = sum(1 for e in tally.unknown if e in by_external)
    strays = [e for e in by_external if e not in tally.acked and e not in tally.unknown and e != "warm-up"]
    return {"stored": len(stored), "acknowledged": len(tally.acked), "lost": lost, "duplicated": duplicated,
            "unknown outcome": len(tally.unknown), "unknown outcome stored": unknown_in, "strays": strays}


def warm(nodes: dict[str, Any], collection: str, photo: Path) -> float:
    """One face indexed on node A and searched on every node until found: each node has opened the
    collection (with Milvus: loaded it, the first time seconds) before the run, as a serving node has.
    The face is deleted again; the seconds this took."""
    start = time.monotonic()
    face = nodes["a"].index_faces(CollectionId=collection, Image={"Bytes": photo.read_bytes()}, MaxFaces=1,
                                  ExternalImageId="warm-up")["FaceRecords"][0]["Face"]["FaceId"]
    for node in set(nodes.values()):
        node.search_faces(CollectionId=collection, FaceId=face, MaxFaces=1)
    nodes["a"].delete_faces(CollectionId=collection, FaceIds=[face])
    return time.monotonic() - start


def run_clients(nodes: dict[str, Any], collection: str, clients: int, seconds: float, work: list[Path],
                kill: Any = None, kill_at: float = 0.5) -> tuple[Tally, float, float | None]:
    warm(nodes, collection, work[-1])
    tally, dead, stop = Tally(), threading.Event(), threading.Event()
    share = len(work) // clients
    threads = [Client(n, nodes, dead, stop, work[n * share:(n + 1) * share], tally, collection) for n in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    killed_at = None
    if kill is not None:
        time.sleep(seconds * kill_at)
        kill()
        killed_at = time.monotonic()
        dead.set()
    time.sleep(max(0.0, start + seconds - time.monotonic()))
    stop.set()
    for t in threads:
        t.join(timeout=60)
    return tally, start, killed_at


def rate(tally: Tally, since: float, until: float) -> float:
    done = [t for t, _ in tally.done if since <= t < until]
    return len(done) / max(until - since, 1e-9)


def main() -> int:  # noqa: PLR0915 (one linear script)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--baseline-seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kill-at", type=float, default=0.5)
    parser.add_argument("--no-milvus", action="store_true", help="each node's embedded index instead")
    parser.add_argument("--no-auth", action="store_true",
                        help="nodes without access keys (default: one key, made through node A's home in "
                             "PostgreSQL, signs every request to both nodes)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import pwd

    import boto3
    from botocore.config import Config

    import milvuskit
    from pg import PgServer, pg_bin
    from serverkit import Server, faceprint_keys

    folder = Path(tempfile.mkdtemp(prefix="fp-2n-"))
    run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    if run_as:
        os.chown(folder, run_as.pw_uid, run_as.pw_gid)
    durable = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    pg = PgServer(folder, pg_bin(), run_as, settings=durable)
    pg.start()
    milvus, servers = None, []
    try:
        if not args.no_milvus:
            milvus = milvuskit.start(Path(tempfile.mkdtemp(prefix="fp-2n-milvus-")))
        url = pg.database()
        homes = [Path(tempfile.mkdtemp(prefix=f"fp-2n-{name}-")) for name in ("a", "b")]
        key_id, secret = "x", "x"
        if not args.no_auth:  # a key made through node A's home is in PostgreSQL: node B verifies it too
            made = faceprint_keys(homes[0], "create", "--name", "two-nodes-bench", env={"FACEPRINT_STORE": url})
            key_id, secret = made["AccessKey"]["AccessKeyId"], made["AccessKey"]["SecretAccessKey"]
        milvus_flags = [] if milvus is None else ["--index", f"milvus://127.0.0.1:{milvus.listen_port}"]
        flags = ["--store", url, *milvus_flags, *(["--no-auth"] if args.no_auth else [])]
        for home in homes:
            servers.append(Server(home, *flags))
        config = Config(retries={"max_attempts": 1}, read_timeout=60, connect_timeout=5, max_pool_connections=32)
        nodes = {n: boto3.client("rekognition", endpoint_url=s.url, region_name="us-east-1",
                                 aws_access_key_id=key_id, aws_secret_access_key=secret, config=config)
                 for n, s in zip(("a", "b"), servers, strict=True)}
        nodes["a"].create_collection(CollectionId=COLLECTION)
        work = photos(4000)
        figures: dict[str, Any] = {"clients": args.clients, "seconds": args.seconds, "milvus": milvus is not None,
                                   "signed with a shared access key": not args.no_auth}
        if args.baseline_seconds > 0:  # the same clients, every request to node A alone
            nodes["a"].create_collection(CollectionId="one-node")
            alone = {"a": nodes["a"], "b": nodes["a"]}
            base, start, _ = run_clients(alone, "one-node", args.clients, args.baseline_seconds, work[:len(work) // 2])
            figures["one node: writes/s"] = round(rate(base, start, start + args.baseline_seconds), 2)
            work = work[len(work) // 2:]

        def kill() -> None:
            os.kill(servers[1].process.pid, signal.SIGKILL)

        tally, start, killed = run_clients(nodes, COLLECTION, args.clients, args.seconds, work, kill, args.kill_at)
        end = start + args.seconds
        figures |= {"two nodes: writes/s before the kill": round(rate(tally, start, killed), 2),
                    "node A alone after the kill: writes/s": round(rate(tally, killed + 2, end), 2)}
        if "one node: writes/s" in figures:
            figures["ratio two nodes / one node"] = round(figures["two nodes: writes/s before the kill"]
                                                          / max(figures["one node: writes/s"], 1e-9), 2)
        lags = sorted(tally.lags)
        figures |= {"lag p50 s": round(statistics.median(lags), 3) if lags else None,
                    "lag p95 s": round(lags[int(0.95 * (len(lags) - 1))], 3) if lags else None,
                    "lag max s": round(lags[-1], 3) if lags else None,
                    "lags over 1 s": sum(1 for x in lags if x > 1.0), "never seen in 10 s": len(tally.never_seen),
                    "lags over 1 s (second of the run, lag, node searched)": [
                        (round(t - start, 1), round(lag, 2), node) for t, lag, node in sorted(tally.slow)],
                    "killed at second": round(killed - start, 1),
                    "SearchFacesByImage": tally.searches, "own face not among the matches": tally.wrong_search,
                    "no face found": tally.no_face, "errors": tally.errors}
        figures |= check(tally, nodes["a"])
        ok = not figures["lost"] and not figures["duplicated"] and not figures["strays"] and not tally.never_seen
        figures["correct"] = ok
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return 0 if ok else 1
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.stop()
        if milvus is not None:
            milvus.stop()
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
