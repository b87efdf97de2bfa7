"""The fuzzer's short run (tests/fuzzing.py, tests/fuzzrun.py): generated requests for every served operation,
valid and mutated, signed and sent to a real `faceprint serve`; every answer must be a success or
an AWS JSON error with one of the operation's modelled codes or a protocol code, never a 5xx, and
the server must stay up.

The run is reproducible: the same seed draws the same requests. ``FACEPRINT_FUZZ_SEED`` and
``FACEPRINT_FUZZ_EXAMPLES`` change the seed and the number of requests; the long run is
``python benchmarks/fuzz_server.py --minutes 10``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fuzzing import Requests, regressions
from fuzzrun import Tally, fuzz_server, health, intact, run

SEED = int(os.environ.get("FACEPRINT_FUZZ_SEED", "9"))
EXAMPLES = int(os.environ.get("FACEPRINT_FUZZ_EXAMPLES", "1000"))


def test_fuzzed_requests_get_aws_answers_and_the_server_stays_up(tmp_path: Path) -> None:
    from faceprint.server.dispatch import SERVED
    from faceprint.server.model import ServiceModel

    model = ServiceModel().raw
    print(f"fuzzing with seed {SEED}, {EXAMPLES} requests (FACEPRINT_FUZZ_SEED, FACEPRINT_FUZZ_EXAMPLES)")
    with fuzz_server(tmp_path) as target:
        tally = Tally(model, private=target.private)
        run(target.endpoint, Requests(model, target.fixtures, SERVED).requests(), tally, EXAMPLES, SEED,
            first=regressions(target.fixtures))
        alive, said = health(target)
        lost = intact(target)
    print(tally.report())
    assert len(tally.failures) == 0, f"seed {SEED}: {tally.report()}"
    assert alive, said
    assert lost is None, lost
    sent = {operation for operation, _ in tally.outcomes}
    assert sent == set(SERVED), f"never sent: {set(SERVED) - sent}"
    succeeded = {operation for operation, code in tally.outcomes if code == "OK"}
    assert len(succeeded) >= len(SERVED) // 2, f"few operations ever succeeded: {sorted(succeeded)}"
