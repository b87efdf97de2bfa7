"""The console on a server over HTTPS (`faceprint serve --tls-cert`) whose audit log cannot be
written: its cookies are Secure, and a search gives no result (no entry, no result), saying why."""

from __future__ import annotations

import re
import signal
import uuid
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest

from consolekit import PASSWORD, photo
from serverkit import Server
from test_server_tls import self_signed


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from faceprint.console.users import ConsoleUsers
    from faceprint.service import Faceprint

    home = tmp_path_factory.mktemp("home")
    ConsoleUsers(home / "console").add("tess", "admin", PASSWORD)
    Faceprint(home, profile="fast").create_collection("people")
    (home / "audit").write_text("not a folder: the audit log cannot be written here\n")
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    server = Server(home, "--no-auth", "--tls-cert", str(cert), "--tls-key", str(key), tls_ca=cert)
    yield server
    assert server.stop() in (0, -signal.SIGTERM)


def test_cookies_are_secure_over_https_and_a_search_without_its_record_gives_no_result(server):
    conn = server.connection(60)
    conn.request("GET", "/console/sign-in")
    answer = conn.getresponse()
    page, pre = answer.read().decode(), SimpleCookie(answer.getheader("set-cookie"))["faceprint_console_pre"]
    assert answer.status == 200 and pre["secure"] and pre["httponly"] and pre["samesite"].lower() == "strict"
    body = urlencode({"csrf": _token(page), "name": "tess", "password": PASSWORD, "next": "/console/search"})
    conn.request("POST", "/console/sign-in", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"faceprint_console_pre={pre.value}"})
    answer = conn.getresponse()
    answer.read()
    cookies = [SimpleCookie(value) for name, value in answer.getheaders() if name.lower() == "set-cookie"]
    session = next(c["faceprint_console"] for c in cookies if "faceprint_console" in c)
    assert answer.status == 303 and answer.getheader("location") == "/console/search"
    assert session["secure"] and session["httponly"] and session["samesite"].lower() == "strict"
    cookie = {"Cookie": f"faceprint_console={session.value}"}
    conn.request("GET", "/console/search", headers=cookie)
    answer = conn.getresponse()
    page = answer.read().decode()
    assert answer.status == 200 and "tess · admin" in page
    form = {"csrf": _token(page), "collection_id": "people", "purpose": "a test", "case": "C-1", "threshold": "80.0",
            "max_faces": "10"}
    body, content_type = _multipart(form, "probe", "probe.jpg", photo("Al_Gore", 1).read_bytes())
    conn.request("POST", "/console/search", body=body, headers=cookie | {"Content-Type": content_type})
    answer = conn.getresponse()
    page = answer.read().decode()
    assert answer.status == 500 and "The audit record could not be written" in page
    assert "not identifications" not in page and 'class="card"' not in page  # the form again, no result
    assert 'name="probe"' in page
    conn.close()


def _token(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def _multipart(fields: dict[str, str], name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                 f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
