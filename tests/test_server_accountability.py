"""The server's side of accountability, end to end (a real `faceprint serve`, boto3 against it): the
case and purpose headers reach the audit entry only when signed, a key that must give a case is
refused without one, searches answer their audit entry and probe quality in headers, key changes
are audit entries, and a search whose record cannot be written fails with a message saying so."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import lfw_image
from faceprint.audit.log import AuditLog
from faceprint.client import with_case
from faceprint.server.keys import KeyStore
from serverkit import Server, faceprint_keys

COLLECTION = "cases"
PROBE = lfw_image("Aaron_Peirsol", 2)


def _key(home: Path, name: str, *args: str) -> dict[str, str]:
    return faceprint_keys(home, "create", "--name", name, *args)["AccessKey"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accountable-home")


@pytest.fixture(scope="module")
def keys(home: Path) -> dict[str, dict[str, str]]:
    return {"admin": _key(home, "admin", "--purpose", "fraud inquiries"),
            "strict": _key(home, "strict", "--require-case")}


@pytest.fixture(scope="module")
def server(home: Path, keys: dict[str, dict[str, str]]):
    srv = Server(home)
    try:
        rek = client(srv, keys["admin"])
        rek.create_collection(CollectionId=COLLECTION)
        for n in (1, 3):
            rek.index_faces(CollectionId=COLLECTION, Image={"Bytes": lfw_image("Aaron_Peirsol", n).read_bytes()},
                            ExternalImageId=f"aaron-{n}")
        yield srv
    finally:
        assert srv.stop() in (0, -signal.SIGTERM)


def client(server: Server, key: dict[str, str]) -> Any:
    return server.client(key["AccessKeyId"], key["SecretAccessKey"])


def code_of(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    error = exc.value.response["Error"]
    return error["Code"], error["Message"]


def search(rek: Any) -> dict[str, Any]:
    return rek.search_faces_by_image(CollectionId=COLLECTION, Image={"Bytes": PROBE.read_bytes()})


def entry(home: Path, response: dict[str, Any]) -> dict[str, Any]:
    """The audit entry a response names in X-Faceprint-Audit-Id, read from the home's log."""
    seq = int(response["ResponseMetadata"]["HTTPHeaders"]["x-faceprint-audit-id"])
    log = AuditLog(home / "audit")
    try:
        record = log.get(seq)
    finally:
        log.close()
    assert record is not None
    return record.to_json()


def test_signed_case_and_purpose_reach_the_audit_entry(server: Server, home: Path,
                                                       keys: dict[str, dict[str, str]]) -> None:
    rek = with_case(client(server, keys["admin"]), "CASE-2026/0042 Müller, née Ünal", purpose="theft inquiry")
    found = search(rek)
    assert found["FaceMatches"], "the probe's own person is in the collection"
    recorded = entry(home, found)
    assert recorded["Operation"] == "SearchFacesByImage" and recorded["CollectionId"] == COLLECTION
    assert recorded["Case"] == "CASE-2026/0042 Müller, née Ünal" and recorded["Purpose"] == "theft inquiry"
    assert recorded["Actor"] == "admin" and recorded["KeyId"] == keys["admin"]["AccessKeyId"]
    assert {c["FaceId"] for c in recorded["Candidates"]} == {m["Face"]["FaceId"] for m in found["FaceMatches"]}


def test_the_key_purpose_applies_when_the_request_declares_none(server: Server, home: Path,
                                                                 keys: dict[str, dict[str, str]]) -> None:
    rek = with_case(with_case(client(server, keys["admin"]), "CASE-1", purpose="other"), "CASE-2")
    recorded = entry(home, search(rek))
    assert (recorded["Purpose"], recorded["Case"]) == ("fraud inquiries", "CASE-2")  # the last with_case holds
    recorded = entry(home, search(with_case(rek, None)))
    assert (recorded["Purpose"], recorded["Case"]) == ("fraud inquiries", None)


def test_a_case_reference_of_the_longest_size_in_any_script_is_accepted(server: Server, home: Path,
                                                                        keys: dict[str, dict[str, str]]) -> None:
    case = "案件" * 100  # 200 characters, 1,800 bytes percent-encoded
    assert entry(home, search(with_case(client(server, keys["admin"]), case)))["Case"] == case


def test_an_unsigned_case_header_is_refused(server: Server, keys: dict[str, dict[str, str]]) -> None:
    rek = client(server, keys["admin"])

    def after_signing(request: Any, **kwargs: Any) -> None:  # added once the signature is made: not covered
        request.headers["X-Faceprint-Case"] = "CASE-forged"

    rek.meta.events.register("before-send.*.*", after_signing)
    code, message = code_of(rek.search_faces_by_image, CollectionId=COLLECTION, Image={"Bytes": PROBE.read_bytes()})
    assert code == "AccessDeniedException" and "X-Faceprint-Case" in message and "signature" in message


@pytest.mark.parametrize(("value", "problem"), [("%C3%28", "not percent-encoded UTF-8"),
                                                ("x" * 2401, "at most"), ("x" * 201, "1 to 200"), ("%0A", "printable"),
                                                ("CASE-%E2%80%AE4321", "printable"), ("%C2%85", "printable")])
def test_a_bad_case_header_is_refused(server: Server, keys: dict[str, dict[str, str]], value: str,
                                      problem: str) -> None:
    rek = client(server, keys["admin"])

    def raw_header(request: Any, **kwargs: Any) -> None:  # signed, but not what with_case would send
        request.headers["X-Faceprint-Case"] = value

    rek.meta.events.register("before-sign.*.*", raw_header)
    code, message = code_of(rek.search_faces_by_image, CollectionId=COLLECTION, Image={"Bytes": PROBE.read_bytes()})
    assert code == "InvalidParameterException" and problem in message


def test_whitespace_a_signed_case_header_gains_on_the_way_changes_nothing_recorded(
        server: Server, home: Path, keys: dict[str, dict[str, str]]) -> None:
    rek = client(server, keys["admin"])

    def signed(request: Any, **kwargs: Any) -> None:  # raw spaces: not what with_case sends, but signed
        request.headers["X-Faceprint-Case"] = "CASE 12 north"

    def on_the_way(request: Any, **kwargs: Any) -> None:  # SigV4 signs runs of whitespace as one space
        request.headers["X-Faceprint-Case"] = "  CASE    12 north "

    rek.meta.events.register("before-sign.*.*", signed)
    rek.meta.events.register("before-send.*.*", on_the_way)
    assert entry(home, search(rek))["Case"] == "CASE 12 north"  # what was signed, not what arrived


def test_a_key_purpose_that_would_not_show_as_it_is_is_refused(tmp_path: Path) -> None:
    from faceprint.errors import InvalidParameterException

    with pytest.raises(InvalidParameterException, match="printable"):
        KeyStore(tmp_path).create("reversed", purpose="fraud \u202eseiriuqni")
    assert KeyStore(tmp_path).list() == []


def test_a_key_that_must_give_a_case_is_refused_without_one(server: Server, home: Path,
                                                            keys: dict[str, dict[str, str]]) -> None:
    rek = client(server, keys["strict"])
    code, message = code_of(rek.search_faces_by_image, CollectionId=COLLECTION, Image={"Bytes": PROBE.read_bytes()})
    assert code == "AccessDeniedException" and "case reference" in message
    assert rek.list_collections()["CollectionIds"] == [COLLECTION]  # what identifies no one needs no case
    recorded = entry(home, search(with_case(rek, "CASE-7")))
    assert recorded["Case"] == "CASE-7" and recorded["Actor"] == "strict"


def test_a_search_answers_its_probe_quality_in_headers(server: Server, keys: dict[str, dict[str, str]]) -> None:
    headers = search(client(server, keys["admin"]))["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-faceprint-probe-face-width"]) > 40
    assert 0 <= float(headers["x-faceprint-probe-sharpness"]) <= 100
    assert headers["x-faceprint-probe-low-quality"] in ("true", "false")
    assert "x-faceprint-probe-expected-rank1" in headers
    assert "x-faceprint-probe-face-width" not in client(server, keys["admin"]).list_collections()[
        "ResponseMetadata"]["HTTPHeaders"]


def small_probe() -> bytes:
    """The probe as a far camera would see it: a third of its size (the face some 33 pixels wide), JPEG quality 30."""
    from PIL import Image

    with Image.open(PROBE) as image:
        out = io.BytesIO()
        image.resize((image.width // 3, image.height // 3), Image.Resampling.BILINEAR).save(out, "JPEG", quality=30)
    return out.getvalue()


def test_a_key_that_refuses_low_quality_probes(server: Server, home: Path, keys: dict[str, dict[str, str]]) -> None:
    careful = client(server, _key(home, "careful", "--refuse-low-quality"))
    assert search(careful)["FaceMatches"]
    code, message = code_of(careful.search_faces_by_image, CollectionId=COLLECTION, Image={"Bytes": small_probe()})
    assert code == "InvalidParameterException" and "quality" in message
    flagged = client(server, keys["admin"]).search_faces_by_image(CollectionId=COLLECTION,
                                                                  Image={"Bytes": small_probe()})
    assert flagged["ResponseMetadata"]["HTTPHeaders"]["x-faceprint-probe-low-quality"] == "true"
    assert entry(home, flagged)["LowQuality"] is True


def test_key_changes_are_audit_entries(home: Path, keys: dict[str, dict[str, str]]) -> None:
    strict = keys["strict"]["AccessKeyId"]
    faceprint_keys(home, "update", strict, "--purpose", "missing persons", "--refuse-low-quality")
    listed = {k["AccessKeyId"]: k for k in faceprint_keys(home, "list")["AccessKeyMetadata"]}
    assert listed[strict]["Purpose"] == "missing persons" and listed[strict]["RefuseLowQuality"] is True
    assert listed[strict]["RequireCase"] is True
    faceprint_keys(home, "update", strict, "--no-refuse-low-quality", "--purpose", "none given")
    log = AuditLog(home / "audit")
    try:
        entries = [r.to_json() for r in log.records()]
    finally:
        log.close()
    changes = [(e["Operation"], e["Details"]["AccessKeyId"]) for e in entries if e["Operation"].startswith("Key")]
    assert changes[:2] == [("KeyCreated", keys["admin"]["AccessKeyId"]), ("KeyCreated", strict)]
    assert changes[-2:] == [("KeyUpdated", strict), ("KeyUpdated", strict)]
    updated = [e for e in entries if e["Operation"] == "KeyUpdated"][0]
    assert updated["Details"]["Changes"]["RefuseLowQuality"] == {"Before": False, "After": True}
    assert updated["ActorKind"] == "os"
    assert all("SecretAccessKey" not in json.dumps(e) for e in entries)


def test_a_keys_file_from_before_loads_with_no_duties(tmp_path: Path) -> None:
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "keys.json").write_text(json.dumps({"Version": 1, "AccessKeys": [{
        "UserName": "old", "AccessKeyId": "FPAKAAAAAAAAAAAAAAAA", "SecretAccessKey": "s" * 40, "Status": "Active",
        "CreateDate": "2026-01-01T00:00:00+00:00", "Policy": {"Operations": None, "Collections": None}}]}))
    key = KeyStore(tmp_path).get("FPAKAAAAAAAAAAAAAAAA")
    assert key is not None and (key.purpose, key.require_case, key.refuse_low_quality) == (None, False, False)


def test_a_search_whose_record_cannot_be_written_fails_saying_so(tmp_path: Path) -> None:
    key = _key(tmp_path, "admin")
    shutil.rmtree(tmp_path / "audit")
    (tmp_path / "audit").write_text("not a folder: the audit log cannot be written here\n")
    srv = Server(tmp_path)
    try:
        rek = client(srv, key)
        rek.create_collection(CollectionId=COLLECTION)
        code, message = code_of(rek.search_faces_by_image, CollectionId=COLLECTION,
                                Image={"Bytes": PROBE.read_bytes()})
        assert code == "InternalServerError" and "audit record could not be written" in message
        assert rek.list_collections()["CollectionIds"] == [COLLECTION]  # the rest of the server still answers
    finally:
        assert srv.stop() in (0, -signal.SIGTERM)
    with pytest.raises(subprocess.CalledProcessError) as refused:  # no entry, no key change either
        faceprint_keys(tmp_path, "update", key["AccessKeyId"], "--require-case")
    assert "audit record could not be written" in refused.value.stderr
    assert KeyStore(tmp_path).get(key["AccessKeyId"]).require_case is False



def test_a_failure_other_than_the_record_is_a_generic_500(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Only AuditUnavailable says what failed; anything else (here a damaged home: its database is a
    folder) answers InternalServerError with nothing of the cause, which goes to the server log."""
    from faceprint.server.handler import HttpRequest, RekognitionHandler
    from faceprint.server.protocol import INTERNAL_MESSAGE
    from faceprint.service import Faceprint

    (tmp_path / "faceprint.db").mkdir()
    handler = RekognitionHandler(Faceprint(tmp_path, profile="fast"))
    request = HttpRequest("POST", "/", "", {"x-amz-target": "RekognitionService.ListCollections",
                                            "content-type": "application/x-amz-json-1.1"}, b"{}")
    reply = handler.handle(request).reply
    assert (reply.status, reply.body["__type"], reply.body["Message"]) == (500, "InternalServerError",
                                                                            INTERNAL_MESSAGE)
    assert "OperationalError" in caplog.text  # the cause is in the server log
