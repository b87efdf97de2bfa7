"""`faceprint serve --tls-cert --tls-key`: HTTPS end to end with boto3 (two workers), a
connection that never starts its TLS handshake closed after --header-timeout, and clear errors
for certificate files that do not load.

The certificate is made here: a self-signed one for 127.0.0.1, which the clients trust as their
CA file (``verify=``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, lfw_image
from serverkit import Server


def self_signed(folder: Path, name: str = "server") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "faceprint test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pem: tuple[Path, Path]) -> Iterator[Server]:
    cert, key = pem
    srv = Server(tmp_path_factory.mktemp("tls-home"), "--no-auth", "--workers", "2", "--tls-cert", str(cert),
                 "--tls-key", str(key), "--header-timeout", "2", tls_ca=cert)
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM)


def test_boto3_over_https(server: Server) -> None:
    assert server.url.startswith("https://")
    rek = server.client()
    rek.create_collection(CollectionId="tls")
    face = {"Bytes": lfw_image("Aaron_Peirsol", 1).read_bytes()}
    assert rek.index_faces(CollectionId="tls", Image=face, MaxFaces=1)["FaceRecords"]
    probe = {"Bytes": lfw_image("Aaron_Peirsol", 2).read_bytes()}
    assert rek.search_faces_by_image(CollectionId="tls", Image=probe)["FaceMatches"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:  # plain HTTP: no answer
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        assert not sock.recv(65536).startswith(b"HTTP/")


def test_an_untrusted_client_refuses_the_certificate(server: Server, tmp_path: Path) -> None:
    other, _ = self_signed(tmp_path, "other")
    context = ssl.create_default_context(cafile=str(other))
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock, pytest.raises(ssl.SSLError):
        context.wrap_socket(sock, server_hostname="127.0.0.1")


def test_a_connection_that_never_starts_its_handshake_is_closed(server: Server) -> None:
    """The header deadline counts from the connection's start, TLS handshake included (asyncio's
    own handshake timeout is 60 s), in every worker."""
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(4)]
    try:
        for sock in socks:
            assert sock.recv(1) == b""
    finally:
        for sock in socks:
            sock.close()
    assert server.get("/health")[0] == 200


def serve_error(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "faceprint.cli", "--home", str(home), "serve", "--port", "0",
                           "--no-auth", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    return done.stderr


def test_certificate_files_that_do_not_load_are_clear_errors(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    cert, key = pem
    _, other_key = self_signed(tmp_path, "other")
    missing = tmp_path / "missing.pem"
    assert "No such file" in serve_error(tmp_path, "--tls-cert", str(missing), "--tls-key", str(key))
    assert "go together" in serve_error(tmp_path, "--tls-cert", str(cert))
    assert "Cannot load the TLS certificate" in serve_error(tmp_path, "--tls-cert", str(cert), "--tls-key",
                                                            str(other_key))
    assert "Cannot load the TLS certificate" in serve_error(tmp_path, "--tls-cert", str(key), "--tls-key", str(key))
