"""Over HTTPS (`faceprint serve --tls-cert`), the console's cookies are Secure."""

from __future__ import annotations

import re
import signal
from http.cookies import SimpleCookie
from urllib.parse import urlencode

from consolekit import PASSWORD
from serverkit import Server
from test_server_tls import self_signed


def test_cookies_are_secure_over_https(tmp_path):
    from faceprint.console.users import ConsoleUsers

    ConsoleUsers(tmp_path / "home" / "console").add("tess", "auditor", PASSWORD)
    cert, key = self_signed(tmp_path)
    server = Server(tmp_path / "home", "--no-auth", "--tls-cert", str(cert), "--tls-key", str(key), tls_ca=cert)
    try:
        conn = server.connection(30)
        conn.request("GET", "/console/sign-in")
        answer = conn.getresponse()
        page, pre = answer.read().decode(), SimpleCookie(answer.getheader("set-cookie"))["faceprint_console_pre"]
        assert answer.status == 200 and pre["secure"] and pre["httponly"] and pre["samesite"].lower() == "strict"
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        body = urlencode({"csrf": token, "name": "tess", "password": PASSWORD, "next": "/console/audit"})
        conn.request("POST", "/console/sign-in", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"faceprint_console_pre={pre.value}"})
        answer = conn.getresponse()
        answer.read()
        cookies = [SimpleCookie(value) for name, value in answer.getheaders() if name.lower() == "set-cookie"]
        session = next(c["faceprint_console"] for c in cookies if "faceprint_console" in c)
        assert answer.status == 303 and answer.getheader("location") == "/console/audit"
        assert session["secure"] and session["httponly"] and session["samesite"].lower() == "strict"
        conn.request("GET", "/console/audit", headers={"Cookie": f"faceprint_console={session.value}"})
        answer = conn.getresponse()
        assert answer.status == 200 and "tess · auditor" in answer.read().decode()
        conn.close()
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
