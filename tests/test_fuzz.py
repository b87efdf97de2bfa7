"""The fuzzer's short run (tests/fuzzing.py, tests/fuzzrun.py): generated requests for every
served operation, valid and mutated, signed and sent to a real `faceprint serve`; every answer
must be a success that fits the model or an AWS JSON error with one of the operation's modelled
codes or a protocol code, never a 5xx; the server must stay up, keep what it stored and log no
error.

The run is reproducible: the same seed draws the same requests. ``FACEPRINT_FUZZ_SEED`` and
``FACEPRINT_FUZZ_EXAMPLES`` change the seed and the number of requests; the long run is
``python benchmarks/fuzz_server.py --minutes 10``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fuzzing import FuzzRequest, Requests, encode, regressions
from fuzzrun import Answer, Tally, fuzz_server, health, intact, judge, log_problems, run

SEED = int(os.environ.get("FACEPRINT_FUZZ_SEED", "9"))
EXAMPLES = int(os.environ.get("FACEPRINT_FUZZ_EXAMPLES", "1500"))


def test_fuzzed_requests_get_aws_answers_and_the_server_stays_up(tmp_path: Path) -> None:
    from faceprint.server.dispatch import SERVED
    from faceprint.server.model import ServiceModel

    model = ServiceModel().raw
    print(f"fuzzing with seed {SEED}, {EXAMPLES} requests (FACEPRINT_FUZZ_SEED, FACEPRINT_FUZZ_EXAMPLES)")
    with fuzz_server(tmp_path) as target:
        tally = Tally.against(model, target)
        run(target.endpoint, Requests(model, target.fixtures, SERVED).requests(), tally, EXAMPLES, SEED,
            first=regressions(target.fixtures))
        alive, said = health(target)
        lost, logged = intact(target), log_problems(target)
    print(tally.report())
    assert len(tally.failures) == 0, f"seed {SEED}: {tally.report()}"
    assert alive, said
    assert lost is None, lost
    assert logged is None, logged
    sent = {operation for operation, _ in tally.outcomes}
    assert sent == set(SERVED), f"never sent: {set(SERVED) - sent}"
    succeeded = {operation for operation, code in tally.outcomes if code == "OK"}
    assert len(succeeded) >= len(SERVED) // 2, f"few operations ever succeeded: {sorted(succeeded)}"


def test_the_checks_refuse_wrong_answers() -> None:
    """The judge itself, on made-up answers: each kind of wrong answer is a failure."""
    from faceprint.server.model import ServiceModel

    model = ServiceModel().raw
    request = FuzzRequest("DetectFaces", "RekognitionService.DetectFaces", "application/x-amz-json-1.1",
                          encode({"Image": {"S3Object": {"Bucket": "b", "Name": "link-out.jpg"}}}))
    headers = {"content-type": "application/x-amz-json-1.1", "x-amzn-requestid": "r"}

    def problem(status: int, body: bytes, **checks: tuple[str, ...]) -> str | None:
        return judge(model, request, Answer(status, body, 0.0, headers=headers), **checks)[1]

    def error(code: str, message: str = "m") -> bytes:
        return encode({"__type": code, "Code": code, "Message": message})

    assert problem(200, b'{"FaceDetails": []}') is None
    assert problem(400, error("InvalidS3ObjectException")) is None
    assert problem(400, error("ValidationException")) is None
    assert problem(500, error("ThrottlingException")) is None  # a modelled fault
    assert "500 InternalServerError" in problem(500, error("InternalServerError"))
    assert "neither" in problem(400, error("ConflictException"))  # not DetectFaces's
    assert "Code and Message" in problem(400, b'{"__type": "ValidationException", "message": "m"}')
    assert "Code and Message" in problem(400, error("ValidationException", ""))
    assert "not JSON" in problem(400, b"<html>")
    assert "does not fit" in problem(200, b'{"FaceDetails": [{"Bogus": 1}]}')
    assert "refused object" in problem(200, b'{"FaceDetails": []}', refused=("link-out.jpg",))
    assert "server path" in problem(400, error("InvalidS3ObjectException", "/srv/x/link"), private=("/srv/x",))
    assert "Content-Type" in judge(model, request, Answer(200, b"{}", 0.0))[1]
    assert "no answer" in judge(model, request, Answer(0, b"", 0.0, error="TimeoutError: timed out"))[1]
