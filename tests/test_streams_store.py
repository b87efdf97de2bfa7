"""The stream processor store against both back-ends (SQLite in the home, PostgreSQL shared by nodes),
the same tests for each; then what only several nodes have: leases (one host at a time per
processor, balance, lapse, fencing) and the API's view of other nodes' hosts. Real PostgreSQL
(``tests/pg.py``); no models, no cameras (hosts are played through the leases as a host calls them)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faceprint.errors import (
    InvalidParameterException,
    LimitExceededException,
    ResourceInUseException,
    ResourceNotFoundException,
)
from faceprint.streams.leases import PgLeases, leases_for, node_id
from faceprint.streams.store import EVENT_RING, open_processor_store
from faceprint.streams.types import FAILED, RUNNING, STARTING, STOPPED, STOPPING, ProcessorRow
from pg import PgServer, pg  # noqa: F401


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> PgServer:
    return request.getfixturevalue("pg")


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Opens the processor store of one home (the same one each call: two calls = two processes)."""
    url = request.getfixturevalue("server").database() if request.param == "postgresql" else None
    opened: list[Any] = []

    def open_store(node: str | None = None) -> Any:
        opened.append(open_processor_store(tmp_path / "home", url, node=node))
        return opened[-1]

    yield open_store
    for store in opened:
        store.close()


def row(name: str, status: str = STOPPED, **fields: Any) -> ProcessorRow:
    return ProcessorRow(name=name, arn=f"arn:aws:rekognition:us-east-1:123456789012:streamprocessor/{name}",
                        status=status, status_message=None, created=1.0, updated=1.0,
                        request={"Settings": {"FaceSearch": {"CollectionId": "c"}},
                                 "Input": {"KinesisVideoStream": {"Arn": "arn:aws:kinesisvideo:us-east-1:"
                                                                         "123456789012:stream/cam/1"}},
                                 "Output": {"KinesisDataStream": {"Arn": "arn:aws:kinesis:us-east-1:"
                                                                         "123456789012:stream/out"}}}, **fields)


# -- the same behaviour on both ------------------------------------------------------------------------------


def test_rows_transitions_and_limits(opener: Any) -> None:
    store = opener()
    store.insert(row("b"), 2)
    with pytest.raises(ResourceInUseException, match="already exists"):
        store.insert(row("b"), 2)
    store.insert(row("a"), 2)
    with pytest.raises(LimitExceededException):
        store.insert(row("c"), 2)
    assert [r.name for r in store.page(None, 1)] == ["a"] and [r.name for r in store.page("a", 5)] == ["b"]
    new = store.transition("a", {STOPPED}, status=STARTING, desired=RUNNING, generation=lambda r: r.generation + 1,
                           updated=5.0, start_selector={"KVSStreamStartSelector": {"ProducerTimestamp": 3}})
    assert (new.status, new.desired, new.generation, new.updated) == (STARTING, RUNNING, 1, 5.0)
    assert opener().get("a") == new and [r.name for r in store.wanted()] == ["a"]
    with pytest.raises(ResourceInUseException, match="a is STARTING"):
        store.transition("a", {STOPPED}, status=RUNNING)
    with pytest.raises(ResourceNotFoundException):
        store.transition("zz", {STOPPED}, status=RUNNING)
    with pytest.raises(TypeError):
        store.transition("a", {STARTING}, arn="x")
    assert not store.set_status("a", RUNNING, None, generation=0)  # an old generation writes nothing
    assert store.set_status("a", RUNNING, "ok", generation=1)
    assert (store.get("a").status, store.get("a").status_message) == (RUNNING, "ok")
    changed = store.get("a").updated
    assert changed > 5.0  # LastUpdateTimestamp follows status changes
    assert store.set_status("a", RUNNING, "Camera reconnecting (attempt 1)", generation=1)
    assert store.get("a").updated == changed  # not messages alone
    assert store.set_status("a", FAILED, "Camera door could not be reached: timeout")
    assert (store.get("a").status, store.get("a").desired) == (FAILED, STOPPED)  # a failed processor is unwanted
    store.set_health("a", {"connected": True, "frames_read": 7})
    assert store.get("a").health == {"connected": True, "frames_read": 7}
    assert not store.set_status("zz", RUNNING, None)
    with pytest.raises(ResourceInUseException):
        store.delete("b", allowed={FAILED})
    assert store.delete("a") and not store.delete("a") and [r.name for r in store.all()] == ["b"]
    assert not store.mapped_elsewhere("sources", "cam")  # no host publishes anything yet


def test_creates_racing_from_several_processes_keep_the_cap(opener: Any) -> None:
    stores, errors = [opener() for _ in range(4)], []

    def create(i: int) -> None:
        try:
            stores[i].insert(row(f"p{i}"), 2)
        except LimitExceededException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(stores[0].all()) == 2 and len(errors) == 2


def test_events_ring_erasure_and_last_seq(opener: Any) -> None:
    store = opener()
    store.insert(row("cam"), 5)
    store.insert(row("other"), 5)
    assert store.last_seq("cam") == 0 and store.events_after("cam", 0) == []
    store.add_events("other", [("record", '{"n": -1}')])
    store.add_events("cam", [])
    for start in range(0, EVENT_RING + 300, 100):
        store.add_events("cam", [("alert" if n % 50 == 0 else "record", json.dumps({"n": n, "who": f"id-{n}"}))
                                 for n in range(start, start + 100)])
    kept = store.events_after("cam", 0, limit=10 * EVENT_RING)
    assert len(kept) == EVENT_RING  # the oldest 300 were trimmed
    assert [json.loads(body)["n"] for _, _, body in kept] == list(range(300, EVENT_RING + 300))
    seqs = [seq for seq, _, _ in kept]
    assert seqs == sorted(seqs) and store.last_seq("cam") == seqs[-1]
    assert kept[0][1] == "alert" and kept[1][1] == "record"
    assert [s for s, _, _ in store.events_after("cam", seqs[10], limit=5)] == seqs[11:16]
    assert len(store.events_after("other", 0)) == 1  # another processor's ring is its own
    # erasure: the events that hold a needle and that the check confirms
    erased = store.erase_events(["id-400", "id-401", "id-9999"], lambda body: body["n"] != 401)
    assert erased == 1 and not any('"id-400"' in b for _, _, b in store.events_after("cam", 0, limit=2000))
    assert any('"id-401"' in b for _, _, b in store.events_after("cam", 0, limit=2000))
    assert store.erase_events([], lambda body: True) == 0
    last = store.last_seq("cam")
    store.delete("cam")
    store.add_events("cam", [("record", "{}")])  # a sink's late delivery after a delete: dropped
    assert store.events_after("cam", 0) == []
    store.insert(row("cam"), 5)
    store.add_events("cam", [("record", "{}")])
    assert store.events_after("cam", 0)[0][0] > last  # seqs are never reused: old Last-Event-IDs stay meaningful


def test_the_factory_picks_the_back_end(tmp_path: Path, server: PgServer) -> None:
    assert open_processor_store(tmp_path, None, existing=True) is None  # the eraser: no file, nothing to erase
    local = open_processor_store(tmp_path, "sqlite:///x")
    assert not local.shared and (tmp_path / "streams" / "processors.db").is_file()
    assert open_processor_store(tmp_path, None, existing=True).path == local.path
    shared = open_processor_store(tmp_path, server.database())
    assert shared.shared and not shared.host_running()
    shared.close()


# -- several nodes: leases ---------------------------------------------------------------------------------


class Node:
    """A stream host's view of the store (as ``StreamHost`` calls its leases), without cameras."""

    def __init__(self, url: str, home: Path, sources: list[str], ttl: float = 2.0) -> None:
        self.node, self.home = node_id(home), home
        self.store = open_processor_store(home, url, node=self.node)
        self.leases = leases_for(self.store, lambda: (sources, ["out"]), ttl=ttl)
        self.sources = sources
        self.busy: set[str] = set()

    def look(self) -> tuple[set[str], set[str]]:
        rows = {r.name: r for r in self.store.all()}
        mine, others = self.leases.settle(rows, self.busy, lambda r: r.video_stream in self.sources)
        self.busy = mine  # it starts what it holds, and stops what it lost
        return mine, others


@pytest.fixture
def nodes(server: PgServer, tmp_path: Path) -> Iterator[tuple[Any, list[Node]]]:
    url = server.database()
    api = open_processor_store(tmp_path / "api", url)
    made = [Node(url, tmp_path / f"n{i}", ["cam"]) for i in range(2)]
    yield api, made
    for n in made:
        n.store.close()
    api.close()


def start(api: Any, *names: str) -> None:
    for name in names:
        api.insert(row(name), 100)
        api.transition(name, {STOPPED}, status=STARTING, desired=RUNNING, generation=1)


def test_wanted_processors_are_split_held_once_and_move_when_a_node_dies(nodes: tuple[Any, list[Node]]) -> None:
    api, (a, b) = nodes
    assert isinstance(a.leases, PgLeases) and a.node != b.node  # a node id per home
    a.look(), b.look()  # both beat: two live hosts
    assert api.host_running() and api.mapped_elsewhere("sources", "cam") and not api.mapped_elsewhere("sources", "x")
    start(api, "p1", "p2", "p3", "p4")
    mine_a, _ = a.look()
    mine_b, others_b = b.look()
    assert len(mine_a) == 2 and len(mine_b) == 2 and not mine_a & mine_b  # balance: ceil(4 / 2) each
    assert others_b == mine_a
    assert a.look()[0] == mine_a and b.look()[0] == mine_b  # held, not taken again
    restarted = Node(a.store.url, a.home, ["cam"])  # a's host restarted on its home: its own back at once
    try:
        assert restarted.node == a.node and restarted.look()[0] == mine_a
    finally:
        restarted.store.close()
    time.sleep(2.2)  # a dies: it beats no more; its leases lapse after the ttl (2 s here)
    mine_b, others_b = b.look()
    assert mine_b == {"p1", "p2", "p3", "p4"} and others_b == set()
    # a comes back (paused, then resumed): it finds its processors taken and stops them
    assert a.look() == (set(), mine_b)
    # fenced: a's late writes do not land while b holds the lease; b's do
    assert not a.store.set_status("p1", RUNNING, "late", generation=1)
    a.store.set_health("p1", {"frames_read": 1})
    assert b.store.set_status("p1", RUNNING, None, generation=1) and api.get("p1").health == {}


def test_a_stopping_host_releases_at_once_and_unresolvable_ones_go_to_one_that_can(
        nodes: tuple[Any, list[Node]], server: PgServer, tmp_path: Path) -> None:
    api, (a, b) = nodes
    c = Node(b.store.url, tmp_path / "n2", ["door"])  # a third node with another camera
    try:
        for n in (a, b, c):
            n.look()
        api.insert(row("d"), 100)
        api.transition("d", {STOPPED}, status=STARTING, desired=RUNNING, generation=1,
                       request=lambda r: {**r.request, "Input": {"KinesisVideoStream": {
                           "Arn": "arn:aws:kinesisvideo:us-east-1:123456789012:stream/door/1"}}})
        start(api, "p1")
        assert a.look()[0] | b.look()[0] == {"p1"}  # c cannot resolve cam
        assert c.look()[0] == {"d"}  # only c resolves door
        assert a.leases.elsewhere(api.get("p1")) and not c.leases.elsewhere(api.get("d"))  # (b maps cam; none door)
        holder = a if "p1" in a.busy else b
        holder.leases.close()  # a clean stop: leases and heartbeat released
        other = b if holder is a else a
        assert other.look()[0] == {"p1"}
        # a processor no longer wanted: its lease is released once its run is over
        api.transition("p1", {STARTING}, status=STOPPING, desired=STOPPED, generation=2)
        assert "p1" in other.look()[0]  # still stopping
        other.busy.discard("p1")
        assert "p1" not in other.look()[0] and api.get("p1").status == STOPPING
    finally:
        c.store.close()


def test_the_api_sees_other_nodes_hosts_and_maps(server: PgServer, tmp_path: Path) -> None:
    """A node without any camera flag accepts a processor whose camera another node's host maps, and
    its Stop waits for that host (STOPPING), as on one machine with the home's own host."""
    from faceprint.service import Faceprint
    from faceprint.streams.runner import host_environment

    url = server.database()
    fp = Faceprint(tmp_path / "api", store_url=url)
    fp.create_collection("c")
    members = {"input": {"KinesisVideoStream": {"Arn": "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam/1"}},
               "output": {"KinesisDataStream": {"Arn": "arn:aws:kinesis:us-east-1:123456789012:stream/out"}},
               "name": "p", "settings": {"FaceSearch": {"CollectionId": "c"}},
               "role_arn": "arn:aws:iam::123456789012:role/r"}
    with pytest.raises(InvalidParameterException, match="not mapped to a camera"):
        fp.streams.create_stream_processor(**members)
    assert fp.eraser().events is fp.streams.store  # an erasure reaches the shared events, on the Faceprint's pool
    runner = fp.streams.make_runner()  # its host gets the store's URL in its environment, not its command line
    assert host_environment(runner.store_url)["FACEPRINT_STORE"] == url and url not in " ".join(runner.command())
    host = Node(url, tmp_path / "host", ["cam"])
    try:
        host.look()
        fp.streams.create_stream_processor(**members)
        fp.streams.start_stream_processor("p")
        assert host.look()[0] == {"p"}
        fp.streams.stop_stream_processor("p")
        assert fp.streams.describe_stream_processor("p").status == STOPPING
        host.leases.close()  # its host stopped without settling it: the API settles it
        assert fp.streams.describe_stream_processor("p").status == STOPPED
    finally:
        host.store.close()
        fp.streams.close()


def test_a_host_that_cannot_renew_for_a_lease_knows_its_leases_lapsed(nodes: tuple[Any, list[Node]]) -> None:
    _, (a, _) = nodes
    now = [0.0]
    leases = PgLeases(a.store.part, "z", lambda: ([], []), ttl=2.0, clock=lambda: now[0])
    leases.settle({}, set(), lambda r: True)
    now[0] = 1.9
    assert not leases.lapsed()
    now[0] = 2.0  # no beat for the lease's time (the database out of reach): stop the runs
    assert leases.lapsed()
    leases.settle({}, set(), lambda r: True)
    assert not leases.lapsed()


def test_an_embedded_homes_processors_move_to_postgresql(server: PgServer, tmp_path: Path) -> None:
    from faceprint.streams.store_pg import copy_processors

    source = open_processor_store(tmp_path, None)
    start(source, "live", "stopping")
    source.transition("stopping", {STARTING}, status=STOPPING, desired=STOPPED, generation=2)
    source.set_health("live", {"session": "s", "last_frame": 5.0})
    source.add_events("live", [("record", json.dumps({"n": n})) for n in range(5)])
    target = open_processor_store(tmp_path, server.database())
    try:
        assert copy_processors(source, target) == {"Processors": 2, "Events": 5}
        assert target.get("live") == source.get("live") and target.get("live").health["last_frame"] == 5.0
        assert (target.get("stopping").status, target.get("stopping").desired) == (STOPPED, STOPPED)
        assert target.events_after("live", 0) == source.events_after("live", 0)  # seqs kept
        target.add_events("live", [("record", "{}")])
        assert target.last_seq("live") > source.last_seq("live")
        with pytest.raises(InvalidParameterException, match="already"):
            copy_processors(source, target)
    finally:
        target.close()


def test_leases_and_the_api_outlive_a_database_restart(nodes: tuple[Any, list[Node]], server: PgServer) -> None:
    api, (a, b) = nodes
    a.look(), b.look()
    start(api, "p1", "p2")
    held = {n: n.look()[0] for n in (a, b)}
    server.restart()  # sessions cut, as a failover or an upgrade of the database does
    assert {n: n.look()[0] for n in (a, b)} == held  # each keeps its own (leases are rows, not sessions)
    assert api.transition("p1", {STARTING}, status=STOPPING, desired=STOPPED, generation=2).status == STOPPING


def test_hosts_that_map_nothing_do_not_keep_processors_waiting(server: PgServer, tmp_path: Path) -> None:
    """A live host that maps no camera counts in the balance; the one that maps it takes the rest
    once they have waited a lease's time."""
    url = server.database()
    api = open_processor_store(tmp_path / "api", url)
    able, idle = Node(url, tmp_path / "able", ["cam"]), Node(url, tmp_path / "idle", [])
    try:
        able.look(), idle.look()
        start(api, "p1", "p2")
        assert able.look()[0] == {"p1"} and idle.look()[0] == set()  # ceil(2 / 2): one
        time.sleep(1.0)
        assert idle.look()[0] == set() and able.look()[0] == {"p1"}  # balance first: another may take it yet
        time.sleep(1.1)
        assert idle.look()[0] == set() and able.look()[0] == {"p1", "p2"}  # idle still live: waited a lease
    finally:
        for n in (able, idle):
            n.store.close()
        api.close()


def test_a_processor_no_live_host_maps_is_taken_to_fail_after_four_leases(server: PgServer, tmp_path: Path) -> None:
    """Not at once (the node that maps its camera may be restarting): after four lease times."""
    from faceprint.streams.leases import ORPHAN_LEASES

    url = server.database()
    api, host = open_processor_store(tmp_path / "api", url), Node(url, tmp_path / "host", ["cam"], ttl=0.5)
    try:
        api.insert(row("x"), 100)
        api.transition("x", {STOPPED}, status=STARTING, desired=RUNNING, generation=1,
                       request=lambda r: {**r.request, "Input": {"KinesisVideoStream": {
                           "Arn": "arn:aws:kinesisvideo:us-east-1:123456789012:stream/nowhere/1"}}})
        assert host.look()[0] == set()
        time.sleep(ORPHAN_LEASES * 0.5 * 0.6)
        assert host.look()[0] == set()
        time.sleep(ORPHAN_LEASES * 0.5 * 0.5)
        assert host.look()[0] == {"x"}  # its host fails it, saying why
    finally:
        host.store.close()
        api.close()
