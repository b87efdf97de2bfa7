"""A real `faceprint serve` in a subprocess on a free port, and real clients for it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import ROOT, models_dir

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``faceprint --home HOME --profile fast serve ARGS`` until :meth:`stop` (SIGTERM)."""

    def __init__(self, home: Path, *args: str, profile: str = "fast", env: dict[str, str] | None = None,
                 ready: bool = True, tls_ca: Path | None = None) -> None:
        """``ready`` False: return once the port answers, whether or not ``/health`` says ok.
        ``tls_ca``: the server speaks HTTPS (``--tls-cert``), its certificate signed by this file."""
        self.home, self.port, self.tls_ca = home, free_port(), tls_ca
        self.url = f"{'https' if tls_ca else 'http'}://127.0.0.1:{self.port}"
        self.log = home / f"server-{self.port}.log"
        env = os.environ | {"FACEPRINT_MODELS_DIR": str(models_dir()), "PYTHONUNBUFFERED": "1"} | (env or {})
        self._log_file = open(self.log, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "faceprint.cli", "--home", str(home), "--profile", profile, "serve",
             "--port", str(self.port), *args], cwd=ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT)
        self.wait_ready(ready=ready)

    def wait_ready(self, timeout: float = 60.0, ready: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.log.read_text()}")
            try:
                status, _, _ = self.get("/health")
                if status == 200 or not ready:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout} s:\n{self.log.read_text()}")

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.tls_ca is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        context = ssl.create_default_context(cafile=str(self.tls_ca))
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=context)

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection(30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """A raw POST / (no signature unless the headers carry one)."""
        conn = self.connection(60)
        try:
            conn.request("POST", "/", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else {}
        finally:
            conn.close()

    def client(self, key_id: str = "unused", secret: str = "unused", **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("rekognition", endpoint_url=self.url, region_name=REGION, aws_access_key_id=key_id,
                            aws_secret_access_key=secret, verify=str(self.tls_ca) if self.tls_ca else None,
                            config=Config(retries={"total_max_attempts": 1}, read_timeout=120, **config))

    def access_log(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode


def faceprint_keys(home: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``faceprint keys ARGS --home HOME``'s JSON output (``{}`` when it prints nothing)."""
    done = subprocess.run([sys.executable, "-m", "faceprint.cli", "keys", *args, "--home", str(home)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True, env=os.environ | (env or {}))
    return json.loads(done.stdout) if done.stdout.strip() else {}


def slow_request(server: Server, target: str = "ListCollections", length: int = 1000,
                 headers: dict[str, str] | None = None, source: str | None = None) -> socket.socket:
    """A socket that has sent a request's headers, announcing ``length`` body bytes, and no body
    (from loopback address ``source``, e.g. 127.0.0.2, if given)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30,
                                    source_address=(source, 0) if source else None)
    lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"X-Amz-Target: RekognitionService.{target}",
             "Content-Type: application/x-amz-json-1.1", f"Content-Length: {length}",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the answer on ``sock``."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    data = response.read()
    return response.status, json.loads(data) if data else {}


def aws_cli(server: Server, *args: str, key_id: str = "unused", secret: str = "unused",
            sign: bool = True) -> subprocess.CompletedProcess[str]:
    """``aws rekognition ARGS --endpoint-url URL`` with an empty AWS configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_PAGER": "",
        "AWS_MAX_ATTEMPTS": "1"}
    aws = Path(sys.executable).with_name("aws")
    command = [str(aws), "rekognition", *args, "--endpoint-url", server.url, "--output", "json"]
    if not sign:
        command.append("--no-sign-request")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


class RawBodies:
    """The raw JSON body of each answer a boto3 client receives (to check it against the model)."""

    def __init__(self, client: Any) -> None:
        self.last: dict[str, Any] = {}
        client.meta.events.register("after-call.rekognition", self._record)

    def _record(self, http_response: Any, model: Any, **kwargs: Any) -> None:
        self.last[model.name] = json.loads(http_response.content or b"{}")


def photo_server(factory: Any, name: str, photo: Path) -> Any:
    """A generator for a module fixture: ``faceprint serve --no-auth`` with a bucket ``photos``
    holding ``photo``; stopped cleanly afterwards."""
    import shutil

    bucket = factory.mktemp("photos")
    shutil.copy(photo, bucket / photo.name)
    srv = Server(factory.mktemp(name), "--no-auth", "--bucket", f"photos={bucket}")
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM)
