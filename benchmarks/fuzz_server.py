"""The fuzzer's long run: generated requests for every served operation against a real
`faceprint serve`, as tests/test_fuzz.py sends them in CI, for longer.

Run: python benchmarks/fuzz_server.py [--examples N | --minutes M] [--seed S] [--clients C]
                                      [--workers W] [--profile fast|accurate] [--batch 500]
                                      [--pythonpath DIR]

The requests are drawn by Hypothesis from botocore's input shapes (tests/fuzzing.py), valid and
mutated, signed with a real key and sent one at a time; the regressions (requests that once
answered 500) go first. ``--examples N`` sends N generated requests drawn with ``--seed``;
``--minutes M`` sends batches of ``--batch`` requests, batch i drawn with seed S + i, until M
minutes have passed. ``--clients C`` sends C requests at once, to a server of ``--workers W``
processes (to look for races; answers then depend on the order they ran in). The same seed and
count draw the same requests, so a failure is reproduced by the command printed at the end
(answers can differ where they depend on what earlier requests stored). ``--pythonpath DIR``
runs the server on another checkout's ``src`` (to see what the fuzzer finds in older code).

Printed: the requests per operation and outcome code (``OK`` for a success), the slowest answer
per operation, the resident memory of the server's processes after setup and at the end,
requests per second, each failure class with the smallest request that caused it and the
answer, whether the collection's faces and users are all still there, and the first traceback
or error in the server's log. The exit status is 1 if any request failed, the server did not
stay up, anything stored was lost or the log has an error.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzzing import Requests, regressions  # noqa: E402
from fuzzrun import Tally, Target, fuzz_server, health, intact, log_problems, run  # noqa: E402
from mixed_load import tree_rss  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--examples", type=int, default=None, help="generated requests to send (default 5000)")
    amount.add_argument("--minutes", type=float, default=None, help="send batches until this many minutes pass")
    parser.add_argument("--seed", type=int, default=9, help="Hypothesis seed of the first batch (default 9)")
    parser.add_argument("--batch", type=int, default=500, help="requests per batch with --minutes (default 500)")
    parser.add_argument("--clients", type=int, default=1, help="requests sent at once (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="faceprint serve --workers (default 1)")
    parser.add_argument("--profile", default="fast", choices=("fast", "accurate"))
    parser.add_argument("--pythonpath", default=None, help="run the server on this src folder instead")
    return parser.parse_args(argv)


def resident_mb(pid: int) -> float:
    """The resident memory of the server's process tree (its workers included), in MB."""
    return tree_rss(pid) / 2**20


def fuzz(args: argparse.Namespace, target: Target, tally: Tally) -> list[tuple[int, int]]:
    """Send the regressions and the batches; the seed and size of each batch sent."""
    from faceprint.server.dispatch import SERVED

    requests = Requests(tally.model, target.fixtures, SERVED).requests()
    first = regressions(target.fixtures)
    if args.minutes is None:
        count = args.examples or 5000
        run(target.endpoint, requests, tally, count, args.seed, first=first, clients=args.clients)
        return [(args.seed, count)]
    deadline, batches = time.monotonic() + args.minutes * 60, []
    while time.monotonic() < deadline:
        seed = args.seed + len(batches)
        run(target.endpoint, requests, tally, args.batch, seed, first=first if not batches else (),
            clients=args.clients)
        batches.append((seed, args.batch))
        print(f"  batch {len(batches)} (seed {seed}): {tally.total} requests, {len(tally.failures)} failure "
              "classes so far", flush=True)
    return batches


def main(argv: list[str] | None = None) -> int:
    from faceprint.server.model import ServiceModel

    args = parse_args(argv)
    env = {"PYTHONPATH": str(Path(args.pythonpath).resolve())} if args.pythonpath else None
    with tempfile.TemporaryDirectory(prefix="faceprint-fuzz-") as work, \
            fuzz_server(Path(work), args.profile, env, ("--workers", str(args.workers))) as target:
        tally = Tally.against(ServiceModel().raw, target)
        pid = target.server.process.pid
        memory = resident_mb(pid)
        print(f"faceprint serve --profile {args.profile} (pid {pid}), {memory:.0f} MB after setup; seed {args.seed}",
              flush=True)
        started = time.perf_counter()
        batches = fuzz(args, target, tally)
        seconds = time.perf_counter() - started
        alive, said = health(target)
        lost, logged = intact(target), log_problems(target)
        memory_end = resident_mb(pid)
    print(tally.report())
    print(f"{tally.total} requests in {seconds:.0f} s ({tally.total / seconds:.1f}/s); server memory "
          f"{memory:.0f} MB after setup, {memory_end:.0f} MB at the end; server up: {alive} ({said}); "
          f"{lost or 'the collection, its faces and users are intact'}; "
          f"{logged or 'no traceback or error in the server log'}")
    if tally.failures:
        where = f" --pythonpath {args.pythonpath}" if args.pythonpath else ""
        print(f"reproduce a batch: python benchmarks/fuzz_server.py --seed S --examples {batches[0][1]}{where} "
              "with the seed its failure names")
    return 0 if alive and lost is None and logged is None and not tally.failures else 1


if __name__ == "__main__":
    sys.exit(main())
