"""Running the fuzzer (tests/fuzzing.py) against a real `faceprint serve`: the server with its
collection, users, faces and bucket; requests signed with a real key (SigV4 over the raw body,
since boto3 would refuse to send invalid shapes); the checks each answer must pass; and a tally.

Each answer must be a 2xx JSON object that fits the operation's output shape, or a 4xx AWS JSON
error (``{"__type": CODE, "Code": CODE, "Message": TEXT}``) whose code is one of the operation's
modelled errors or one of :data:`PROTOCOL_CODES`; never a 5xx (but ``ThrottlingException``,
which the model makes a 500), never a server path or a traceback, never a hang. After a run the
server must be up, what it was given to keep must be there, and its log must hold no error.
A run does not stop at the first failure: :class:`Tally` counts outcomes per operation and keeps,
for each class of failure, the smallest request that caused it (rather than shrinking with
Hypothesis, which would replay hundreds of requests against the server).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from fuzzing import PREFIX, Fixtures, FuzzRequest, junk_images, small_images

PROTOCOL_CODES = frozenset({
    "ValidationException", "SerializationException", "UnknownOperationException", "UnsupportedOperationException",
    "RequestTimeoutException", "RequestEntityTooLargeException", "ThrottlingException"})
"""Codes any request may answer besides its operation's modelled errors (docs/server.md)."""
FAULT_CODES = frozenset({"ThrottlingException"})
"""The codes a 5xx may carry: Rekognition's model makes ThrottlingException a fault (HTTP 500)."""
CONTENT_TYPE = "application/x-amz-json-1.1"
ACCEPTED_TYPES = (CONTENT_TYPE, "application/x-amz-json-1.0", "application/json")
"""The Content-Types a request may have (or none), as docs/server.md says."""


# -- sending and judging ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """A running server and the key that signs requests to it."""

    host: str
    port: int
    key_id: str
    secret: str
    region: str = "us-east-1"

    def headers(self, request: FuzzRequest) -> dict[str, str]:
        """The request's headers, signed with SigV4 over its raw body."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        headers = {}
        if request.target is not None:
            headers["X-Amz-Target"] = request.target
        if request.content_type is not None:
            headers["Content-Type"] = request.content_type
        aws = AWSRequest("POST", f"http://{self.host}:{self.port}/", data=request.body, headers=headers)
        SigV4Auth(Credentials(self.key_id, self.secret), "rekognition", self.region).add_auth(aws)
        return dict(aws.headers.items())


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    seconds: float
    error: str | None = None
    """Why no answer came (connection reset, timeout), or None."""
    headers: dict[str, str] = field(default_factory=dict)
    """Header names in lower case."""


def send(endpoint: Endpoint, request: FuzzRequest, timeout: float = 120.0) -> Answer:
    started = time.perf_counter()
    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    try:
        if request.chunked:  # http.client sends Transfer-Encoding: chunked for an iterable body
            chunks = (request.body[i:i + 4096] for i in range(0, len(request.body), 4096))
            conn.request("POST", "/", body=chunks, headers=endpoint.headers(request), encode_chunked=True)
        else:
            conn.request("POST", "/", body=request.body, headers=endpoint.headers(request))
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Answer(response.status, response.read(), time.perf_counter() - started, headers=headers)
    except (OSError, http.client.HTTPException) as exc:
        return Answer(0, b"", time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def named_operation(model: dict[str, Any], request: FuzzRequest) -> str | None:
    """The Rekognition operation the request's target names (HTTP drops the whitespace around a
    header's value), or None."""
    target = (request.target or "").strip(" \t")
    name = target[len(PREFIX):] if target.startswith(PREFIX) else ""
    return name if name in model["operations"] else None


def allowed_codes(model: dict[str, Any], request: FuzzRequest) -> frozenset[str]:
    """The codes ``request`` may answer: the modelled errors of the operation its target names
    and the protocol's."""
    name = named_operation(model, request)
    modelled = {e["shape"] for e in model["operations"][name].get("errors", ())} if name else set()
    return PROTOCOL_CODES | modelled


def judge(model: dict[str, Any], request: FuzzRequest, answer: Answer, private: tuple[str, ...] = (),
          refused: tuple[str, ...] = ()) -> tuple[str, str | None]:
    """The outcome's code (``OK`` for a success) and, if the answer is wrong, its failure class:
    per operation, but one class for answers of the wrong form, whatever their code. ``private``:
    text no answer may show (the server's folders); ``refused``: object names no request may
    read."""
    op = request.operation
    if answer.error is not None:
        return "no answer", f"{op}: no answer ({answer.error.split(':')[0]})"
    if any(p.encode() in answer.body for p in private) or b"Traceback" in answer.body:
        return f"HTTP {answer.status}", f"{op}: an answer showing a server path or a traceback"
    if answer.headers.get("content-type") != CONTENT_TYPE or not answer.headers.get("x-amzn-requestid"):
        return f"HTTP {answer.status}", f"answers without Content-Type {CONTENT_TYPE} and x-amzn-RequestId"
    try:
        body = json.loads(answer.body)
    except ValueError:
        return f"HTTP {answer.status}", f"{op}: HTTP {answer.status} with a body that is not JSON"
    if not isinstance(body, dict):
        return f"HTTP {answer.status}", f"{op}: HTTP {answer.status} with a JSON body that is not an object"
    if 200 <= answer.status < 300:
        return "OK", _success_problem(model, request, body, refused)
    code = body.get("__type")
    if not isinstance(code, str):
        return f"HTTP {answer.status}", f"{op}: HTTP {answer.status} error without __type"
    return code, _error_problem(model, request, answer.status, code, body)


def _success_problem(model: dict[str, Any], request: FuzzRequest, body: dict[str, Any],
                     refused: tuple[str, ...]) -> str | None:
    """What is wrong with a success: it must answer a served operation's target, with a
    Content-Type the protocol takes, read no refused object, and fit the operation's output
    shape."""
    from contract import validate

    read = [name for name in refused if f'"Name": {json.dumps(name)}'.encode() in request.body]
    if read:
        return f"{request.operation}: a success reading the refused object {read[0]!r}"
    name = named_operation(model, request)
    if name != request.operation:  # the generator's other targets name no served operation
        return f"{request.operation}: a success for the target {request.target!r}"
    base = (request.content_type or "").split(";")[0].strip().lower()
    if base and base not in ACCEPTED_TYPES:
        return f"{request.operation}: a success for Content-Type {request.content_type!r}"
    shape = model["operations"][name]["output"]["shape"]
    try:
        validate(body, shape)
    except AssertionError as exc:
        return f"{request.operation}: a success that does not fit {shape} ({re.sub(r'[0-9]+', 'N', str(exc))})"
    return None


def _error_problem(model: dict[str, Any], request: FuzzRequest, status: int, code: str,
                   body: dict[str, Any]) -> str | None:
    op = request.operation
    if status >= 500 and code not in FAULT_CODES:
        return f"{op}: HTTP {status} {code}"
    if not 400 <= status < 600:
        return f"{op}: HTTP {status} for an error"
    if not isinstance(body.get("Message"), str) or not body["Message"].strip() or body.get("Code") != code:
        return "error bodies without Code and Message as Rekognition writes them"
    if code not in allowed_codes(model, request):
        return f"{op}: {code} is neither one of its modelled errors nor a protocol code"
    return None


# -- a run's tally ------------------------------------------------------------------------------
@dataclass
class Failure:
    request: FuzzRequest
    status: int
    body: bytes
    count: int = 1
    drawn: str = ""
    """Where the request came from: ``seed S`` or ``regression``."""


@dataclass
class Tally:
    """Outcomes per operation and code; for each failure class, its smallest request."""

    model: dict[str, Any]
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: dict[str, Failure] = field(default_factory=dict)
    slowest: dict[str, tuple[float, FuzzRequest]] = field(default_factory=dict)
    private: tuple[str, ...] = ()
    """Text no answer may show (the server's folders)."""
    refused: tuple[str, ...] = ()
    """Object names no request may read."""
    drawing: str = ""
    """Where the requests now recorded come from (``seed S``)."""

    def record(self, request: FuzzRequest, answer: Answer) -> None:
        code, problem = judge(self.model, request, answer, self.private, self.refused)
        self.outcomes[(request.operation, code)] += 1
        if answer.seconds > self.slowest.get(request.operation, (-1.0, request))[0]:
            self.slowest[request.operation] = (answer.seconds, request)
        if problem is None:
            return
        seen = self.failures.get(problem)
        if seen is None or len(request.body) < len(seen.request.body):
            self.failures[problem] = Failure(request, answer.status, answer.body, (seen.count if seen else 0) + 1,
                                             self.drawing)
        else:
            seen.count += 1

    @classmethod
    def against(cls, model: dict[str, Any], target: Target) -> Tally:
        """A tally that knows what ``target``'s answers may not show or read."""
        return cls(model, private=target.private, refused=target.fixtures.refused)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def report(self) -> str:
        lines = [f"{self.total} requests; outcomes per operation:"]
        for operation in sorted({op for op, _ in self.outcomes}):
            codes = {c: n for (op, c), n in self.outcomes.items() if op == operation}
            seconds, _ = self.slowest[operation]
            shown = ", ".join(f"{c} {n}" for c, n in sorted(codes.items(), key=lambda kv: -kv[1]))
            lines.append(f"  {operation:20} {sum(codes.values()):6}  slowest {seconds:6.2f} s  {shown}")
        lines.append(f"{len(self.failures)} failure classes" + (":" if self.failures else ""))
        lines += [self.describe(key) for key in sorted(self.failures)]
        return "\n".join(lines)

    def describe(self, problem: str) -> str:
        failure = self.failures[problem]
        body = failure.body[:400].decode("utf-8", "backslashreplace")
        return (f"- {problem} ({failure.count}x); smallest request ({failure.drawn}): {failure.request.show()}\n"
                f"  answer: HTTP {failure.status} {body}")


def run(endpoint: Endpoint, requests: st.SearchStrategy[FuzzRequest], tally: Tally, examples: int,
        seed: int, first: Iterable[FuzzRequest] = (), clients: int = 1) -> None:
    """Send the ``first`` requests (regressions), then ``examples`` distinct requests drawn from
    ``requests`` with ``seed`` (:func:`draw`), recording each answer in ``tally``; ``clients``
    sends that many at once."""
    tally.drawing = "regression"
    send_all(endpoint, list(first), tally)
    tally.drawing = f"seed {seed}"
    send_all(endpoint, draw(requests, examples, seed), tally, clients)


def draw(requests: st.SearchStrategy[FuzzRequest], examples: int, seed: int) -> list[FuzzRequest]:
    """``examples`` distinct requests drawn by Hypothesis seeded with ``seed``: the same seed and
    number draw the same requests. (Hypothesis's generator also draws near copies of what it
    drew; a copy is drawn again.)"""
    from hypothesis import HealthCheck, Phase, assume, given, settings
    from hypothesis import seed as seeded

    drawn: dict[bytes, FuzzRequest] = {}
    if examples <= 0:
        return []

    @seeded(seed)
    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(requests)
    def one(request: FuzzRequest) -> None:
        assume(request.digest not in drawn)
        drawn[request.digest] = request

    one()
    return list(drawn.values())


def send_all(endpoint: Endpoint, requests: list[FuzzRequest], tally: Tally, clients: int = 1) -> None:
    """Send ``requests``, ``clients`` at once, and record the answers in order."""
    if clients <= 1:
        for request in requests:
            tally.record(request, send(endpoint, request))
        return
    with ThreadPoolExecutor(clients) as pool:
        for request, answer in zip(requests, pool.map(lambda r: send(endpoint, r), requests), strict=True):
            tally.record(request, answer)


# -- the server under test ----------------------------------------------------------------------
FACES = (("Aaron_Peirsol", 1), ("Aaron_Peirsol", 2), ("Aaron_Sorkin", 1))
"""LFW pictures indexed before the run (250 x 250 JPEGs)."""


@dataclass(frozen=True)
class Target:
    server: Any
    """The :class:`serverkit.Server`."""
    endpoint: Endpoint
    fixtures: Fixtures
    client: Any
    """A boto3 client signing with the same key."""
    work: Path
    """The folder holding the server's home and bucket."""

    @property
    def private(self) -> tuple[str, ...]:
        """Text no answer may show: the server's folders."""
        return (str(self.work.resolve()), str(self.work))


@contextlib.contextmanager
def fuzz_server(work: Path, profile: str = "fast", env: dict[str, str] | None = None,
                serve_args: tuple[str, ...] = ()) -> Iterator[Target]:
    """A real ``faceprint serve`` (authentication on, a local bucket, ``serve_args``) in ``work``,
    holding a collection with faces and users; stopped on exit. ``env`` adds to the server's
    environment (``PYTHONPATH`` to fuzz another checkout's code)."""
    from conftest import lfw_image
    from serverkit import REGION, Server, faceprint_keys

    home, bucket = work / "home", work / "bucket"
    home.mkdir()
    key = faceprint_keys(home, "create", "--name", "fuzz", env=env)["AccessKey"]
    face = lfw_image(*FACES[0]).read_bytes()
    images, junk = small_images(face), junk_images(face)
    objects, refused = _fill_bucket(work, images, junk)
    server = Server(home, "--bucket", f"fuzz-bucket={bucket}", *serve_args, profile=profile, env=env)
    try:
        endpoint = Endpoint("127.0.0.1", server.port, key["AccessKeyId"], key["SecretAccessKey"], REGION)
        client = server.client(key["AccessKeyId"], key["SecretAccessKey"])
        fixtures = _populate(client, "fuzz-bucket", objects, images, junk, refused)
        yield Target(server, endpoint, fixtures, client, work)
    finally:
        server.stop()


def _fill_bucket(work: Path, images: tuple[bytes, ...], junk: tuple[bytes, ...]
                 ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The bucket's objects: pictures, junk, an empty file, a sparse 16 MB one, a folder, a link
    inside; and the names no request may read: links out of the bucket (to a real face, so that
    reading one would succeed), a link loop and a FIFO."""
    bucket, outside = work / "bucket", work / "outside"
    (bucket / "sub").mkdir(parents=True)
    outside.mkdir()
    named = {"face.jpg": images[0], "face.png": images[1], "sub/blank.png": images[2], "junk.jpg": junk[2],
             "empty.png": b""}
    for name, data in named.items():
        (bucket / name).write_bytes(data)
    shutil.copy(bucket / "face.jpg", bucket / "sub" / "face copy \u00e9.jpg")
    with open(bucket / "huge.jpg", "wb") as huge:
        huge.truncate(16 * 1024 * 1024)
    shutil.copy(bucket / "face.jpg", outside / "face.jpg")
    (bucket / "link-in.jpg").symlink_to("face.jpg")
    (bucket / "link-out.jpg").symlink_to(outside / "face.jpg")
    (bucket / "sub" / "up.jpg").symlink_to("../../outside/face.jpg")
    (bucket / "loop.jpg").symlink_to("loop.jpg")
    os.mkfifo(bucket / "fifo.jpg")
    objects = (*named, "sub/face copy \u00e9.jpg", "huge.jpg", "link-in.jpg", "sub", "sub/", "./face.jpg")
    return objects, ("link-out.jpg", "sub/up.jpg", "loop.jpg", "fifo.jpg")


def _populate(client: Any, bucket: str, objects: tuple[str, ...], images: tuple[bytes, ...],
              junk: tuple[bytes, ...], refused: tuple[str, ...]) -> Fixtures:
    """A collection with three faces and two users (one with a face), a second collection, and
    the NextTokens their listings issue."""
    from conftest import lfw_image

    collection = "fuzz"
    for name in (collection, "fuzz-other"):
        client.create_collection(CollectionId=name)
    face_ids = []
    for person, n in FACES:
        indexed = client.index_faces(CollectionId=collection, Image={"Bytes": lfw_image(person, n).read_bytes()},
                                     ExternalImageId=f"{person}-{n}", MaxFaces=1)
        face_ids += [r["Face"]["FaceId"] for r in indexed["FaceRecords"]]
    users = ("fuzz-user", "fuzz-user-empty")
    for user in users:
        client.create_user(CollectionId=collection, UserId=user)
    client.associate_faces(CollectionId=collection, UserId=users[0], FaceIds=face_ids[:1])
    tokens = (client.list_collections(MaxResults=1).get("NextToken"),
              client.list_faces(CollectionId=collection, MaxResults=1).get("NextToken"),
              client.list_users(CollectionId=collection, MaxResults=1).get("NextToken"))
    return Fixtures(collection, users, tuple(face_ids), bucket, objects, images, junk,
                    tuple(t for t in tokens if t), refused)


def health(target: Target) -> tuple[bool, str]:
    """Whether the server process is alive and ``/health`` answers 200 (and what it said)."""
    if target.server.process.poll() is not None:
        return False, f"the server exited with {target.server.process.returncode}"
    try:
        status, _, body = target.server.get("/health")
    except OSError as exc:
        return False, f"/health: {exc}"
    return status == 200, f"/health: HTTP {status} {body[:200]!r}"


def intact(target: Target) -> str | None:
    """What the fuzzer lost of what it was given to keep (the collection, its faces and users),
    or None."""
    fx, client = target.fixtures, target.client
    try:
        faces = {f["FaceId"] for f in client.list_faces(CollectionId=fx.collection, MaxResults=4096)["Faces"]}
        users = {u["UserId"] for u in client.list_users(CollectionId=fx.collection, MaxResults=500)["Users"]}
    except Exception as exc:  # any failure to list is the finding; the report says which
        return f"the collection {fx.collection!r} cannot be listed: {exc}"
    lost = sorted((set(fx.face_ids) - faces) | (set(fx.users) - users))
    return f"lost from {fx.collection!r}: {', '.join(lost)}" if lost else None


def log_problems(target: Target) -> str | None:
    """The first traceback or error the server logged (an exception handled into a 4xx answer
    still logs one), with the count of such lines; None if there is none."""
    lines = target.server.log.read_text(errors="replace").splitlines()
    bad = [i for i, line in enumerate(lines) if line.startswith(("Traceback", "ERROR")) or " ERROR " in line[:40]]
    if not bad:
        return None
    return f"{len(bad)} tracebacks or errors in the server log; the first:\n" + "\n".join(lines[bad[0]:bad[0] + 25])
