"""The bad-image corpus (tests/badimages.py) on the wire: sent to a real `faceprint serve`
(fast profile, authentication on, signed with a real key) through every image operation it
serves, as ``Image.Bytes`` and as ``Image.S3Object`` from a local bucket.

Every answer must be a success that fits the operation's output shape or an AWS JSON error
(``{"__type", "Code", "Message"}``) whose code the operation models in botocore (or
ValidationException, for a request that breaks the model's constraints), never a 5xx;
an entry that must not decode gets the corpus's code (from S3 the 15 MB object limit replaces
the 5 MB one), a decodable one a success or ``InvalidParameterException`` (no face). After the
run the server is up, its log holds no traceback or error, and the collection holds its first
faces plus exactly those IndexFaces said it added.

Cost: entries that fail at decode are cheap, so each goes through every operation from both
sources (about 1,070 requests). Decodable entries run the models: one whose decoded picture is
new goes, from each source, to the next inference operation in turn, one seen before to
DetectFaces (what follows the decode depends on the pixels only), and DetectText, the costly
one, gets the first entry from both sources; so every operation sees decodable entries from
both sources, and tests/test_bad_images.py runs each through every operation in-process.
About 13 s on a 2-core machine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError
from PIL import Image

from badimages import OK, TOO_LARGE, Case, corpus, encode
from conftest import lfw_image
from contract import output_shape, service_model, validate
from serverkit import Server, faceprint_keys

COLLECTION, BUCKET, USER = "bad-images", "corpus", "someone"
FACE = lfw_image("Aaron_Peirsol", 1)
BASE = Image.open(FACE).resize((160, 160))
OTHER = encode(BASE, "JPEG", quality=90)
"""The other picture of a CompareFaces: small, so that its detection costs little."""
CASES = corpus(BASE)
SOURCES = ("Bytes", "S3Object")
ERROR_KEYS = {"__type", "Code", "Message"}

Call = Callable[[Any, dict[str, Any]], Any]
OPERATIONS: dict[str, tuple[str, Call]] = {
    "DetectFaces": ("DetectFaces", lambda c, image: c.detect_faces(Image=image)),
    "CompareFaces as source": ("CompareFaces", lambda c, image: c.compare_faces(
        SourceImage=image, TargetImage={"Bytes": OTHER})),
    "CompareFaces as target": ("CompareFaces", lambda c, image: c.compare_faces(
        SourceImage={"Bytes": OTHER}, TargetImage=image)),
    "DetectText": ("DetectText", lambda c, image: c.detect_text(Image=image)),
    "IndexFaces": ("IndexFaces", lambda c, image: c.index_faces(CollectionId=COLLECTION, Image=image)),
    "SearchFacesByImage": ("SearchFacesByImage", lambda c, image: c.search_faces_by_image(
        CollectionId=COLLECTION, Image=image)),
    "SearchUsersByImage": ("SearchUsersByImage", lambda c, image: c.search_users_by_image(
        CollectionId=COLLECTION, Image=image)),
}
INFERENCE = [name for name in OPERATIONS if name != "DetectText"]


@dataclass
class Answer:
    """The last answer the client received: its HTTP status and raw JSON body."""

    status: int = 0
    body: bytes = b""


@dataclass
class World:
    server: Server
    client: Any
    answer: Answer
    initial: set[str]
    added: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The server, with the corpus in its bucket (``NNN.bin`` per entry, plus a 16 MB object)
    and a collection holding one face owned by a user."""
    work = tmp_path_factory.mktemp("bad-images-server")
    home, bucket = work / "home", work / "bucket"
    home.mkdir()
    bucket.mkdir()
    for i, case in enumerate(CASES):
        (bucket / object_name(i)).write_bytes(case.data)
    with open(bucket / "over-15-MB.bin", "wb") as huge:
        huge.truncate(16 * 1024 * 1024)
    key = faceprint_keys(home, "create", "--name", "corpus")["AccessKey"]
    server = Server(home, "--bucket", f"{BUCKET}={bucket}")
    try:
        client = server.client(key["AccessKeyId"], key["SecretAccessKey"])
        answer = Answer()
        client.meta.events.register("after-call.rekognition", lambda http_response, **_: _record(
            answer, http_response))
        client.create_collection(CollectionId=COLLECTION)
        face_id = client.index_faces(CollectionId=COLLECTION, Image={"Bytes": FACE.read_bytes()})[
            "FaceRecords"][0]["Face"]["FaceId"]
        client.create_user(CollectionId=COLLECTION, UserId=USER)
        client.associate_faces(CollectionId=COLLECTION, UserId=USER, FaceIds=[face_id])
        yield World(server, client, answer, face_ids(client))
    finally:
        server.stop()


def _record(answer: Answer, http_response: Any) -> None:
    answer.status, answer.body = http_response.status_code, http_response.content


def object_name(i: int) -> str:
    return f"{i:03d}.bin"


def image(source: str, i: int, case: Case) -> dict[str, Any]:
    if source == "Bytes":
        return {"Bytes": case.data}
    return {"S3Object": {"Bucket": BUCKET, "Name": object_name(i)}}


def expected(source: str, case: Case) -> str:
    """What the entry must give from ``source``: empty Bytes break the model's ImageBlob
    constraint (min 1), which AWS's framework answers with ValidationException; from S3, an
    entry refused only for its 5 MB is read up to 15 MB (the corpus's one such entry is no JPEG
    past its magic)."""
    if source == "Bytes" and len(case.data) < service_model()["shapes"]["ImageBlob"]["min"]:
        return "ValidationException"
    if source == "S3Object" and case.expected == TOO_LARGE and len(case.data) > 5 * 1024 * 1024:
        return "InvalidImageFormatException"
    return case.expected


def modelled_errors(operation: str) -> set[str]:
    return {e["shape"] for e in service_model()["operations"][operation].get("errors", [])}


def face_ids(client: Any) -> set[str]:
    ids, token = set(), None
    while True:
        page = client.list_faces(CollectionId=COLLECTION, **({"NextToken": token} if token else {}))
        ids |= {f["FaceId"] for f in page["Faces"]}
        token = page.get("NextToken")
        if not token:
            return ids


class Problems:
    """Wrong answers by kind (``"HTTP 500 InternalServerError"``, ``"... where ok was due"``),
    each with where it happened, so that one defect seen everywhere hides no other."""

    def __init__(self) -> None:
        self.kinds: dict[str, list[str]] = {}

    def add(self, kind: str, where: str) -> None:
        self.kinds.setdefault(kind, []).append(where)

    def check(self) -> None:
        if self.kinds:
            pytest.fail(self.report(), pytrace=False)

    def report(self) -> str:
        count = sum(len(wheres) for wheres in self.kinds.values())
        lines = [f"{count} wrong answers of {len(self.kinds)} kinds:"]
        for kind, wheres in sorted(self.kinds.items(), key=lambda item: len(item[1])):
            lines += [f"- {kind}: {len(wheres)}, e.g.", *(f"    {where}" for where in wheres[:3])]
        return "\n".join(lines)


def send(world: World, problems: Problems, name: str, image: dict[str, Any], want: str, where: str) -> None:
    """Send one request and add what is wrong with its answer to ``problems``."""
    operation, call = OPERATIONS[name]
    world.answer.status, world.answer.body = 0, b""
    where = f"{where} / {name}"
    try:
        call(world.client, image)
    except ClientError:
        pass
    except BotoCoreError as exc:
        problems.add(f"no answer ({type(exc).__name__})", f"{where}: {exc}")
        return
    status = world.answer.status
    try:
        body = json.loads(world.answer.body)
    except ValueError:
        problems.add(f"HTTP {status}, a body that is not JSON", f"{where}: {world.answer.body[:200]!r}")
        return
    code = judge(problems, operation, status, body, where)
    if code == OK and operation == "IndexFaces":
        world.added |= {r.get("Face", {}).get("FaceId") for r in body.get("FaceRecords", [])}
    if not (code == want or want == OK and code == "InvalidParameterException"):
        message = body.get("Message", body.get("message", "")) if isinstance(body, dict) else ""
        problems.add(f"{code} where {want} was due", f"{where}: {message!r:.200}")


def judge(problems: Problems, operation: str, status: int, body: Any, where: str) -> str:
    """The answer's code (``OK`` for a success); what is wrong with it goes to ``problems``."""
    if 200 <= status < 300:
        try:
            validate(body, output_shape(operation))
        except AssertionError as exc:
            problems.add(f"a success that does not fit {output_shape(operation)}", f"{where}: {exc}")
        return OK
    code = body.get("__type", "?") if isinstance(body, dict) else "?"
    if status >= 500:
        problems.add(f"HTTP {status} {code}", f"{where}: {body!r:.200}")
    if not isinstance(body, dict) or set(body) != ERROR_KEYS:
        keys = sorted(body) if isinstance(body, dict) else type(body).__name__
        problems.add(f"an error body with {keys}, not {sorted(ERROR_KEYS)}", f"{where}: {body!r:.200}")
        return code
    if body["Code"] != code or not isinstance(body["Message"], str) or not body["Message"].strip():
        problems.add("Code and Message that do not go with __type", f"{where}: {body!r:.200}")
    if code not in modelled_errors(operation) | {"ValidationException"}:  # the model's constraints
        problems.add(f"{code}, not one of the operation's modelled errors", where)
    return code


def test_undecodable_entries_on_every_operation_from_both_sources(world: World) -> None:
    problems = Problems()
    for i, case in enumerate(CASES):
        for source in SOURCES:
            want = expected(source, case)
            if want != OK:
                for name in OPERATIONS:
                    send(world, problems, name, image(source, i, case), want, f"{case.name} / {source}")
    for name in OPERATIONS:
        send(world, problems, name, {"S3Object": {"Bucket": BUCKET, "Name": "over-15-MB.bin"}}, TOO_LARGE,
             "16 MB S3 object")
    problems.check()


def test_decodable_entries_from_both_sources(world: World) -> None:
    """Each decodable entry from each source: to the next inference operation in turn if its
    decoded picture is new, else to DetectFaces (what follows the decode depends on the pixels
    only); DetectText for the first entry, from both sources."""
    problems, seen, sent = Problems(), set(), set()
    decodable = [(i, case) for i, case in enumerate(CASES) if case.expected == OK]
    for n, (i, case) in enumerate(decodable):
        digest = pixels(case)
        new = digest not in seen
        seen.add(digest)
        for s, source in enumerate(SOURCES):
            names = [INFERENCE[(len(seen) + s) % len(INFERENCE)] if new else "DetectFaces"]
            names += ["DetectText"] if n == 0 else []
            for name in names:
                sent.add((name, source))
                send(world, problems, name, image(source, i, case), OK, f"{case.name} / {source}")
    problems.check()
    assert sent == {(name, source) for name in OPERATIONS for source in SOURCES}


def pixels(case: Case) -> str:
    """A digest of the entry's decoded picture (decoded here, in-process)."""
    from faceprint.imaging import load_image

    rgb = load_image(case.data).rgb
    return hashlib.sha256(rgb.tobytes()).hexdigest() + repr(rgb.shape)


def test_the_server_survives_and_keeps_its_faces(world: World) -> None:
    server = world.server
    assert server.process.poll() is None, f"the server exited with {server.process.returncode}"
    status, _, said = server.get("/health")
    assert status == 200, said
    bad = [line for line in server.log.read_text(errors="replace").splitlines()
           if line.startswith(("Traceback", "ERROR")) or " ERROR " in line[:40]]
    assert not bad, "\n".join(bad[:20])
    assert face_ids(world.client) == world.initial | world.added
