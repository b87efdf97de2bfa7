"""`faceprint serve` with its limits changed: image bytes over 5 MB with --max-image-bytes, a
body that does not arrive within --body-timeout."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import pytest

from conftest import FACES
from serverkit import Server, read_answer, slow_request

GROUP = FACES / "identities" / "faceapi_bbt" / "group" / "bbt1.jpg"
MAX_IMAGE_BYTES = 8_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = Server(tmp_path_factory.mktemp("limits-home"), "--no-auth", "--max-image-bytes", str(MAX_IMAGE_BYTES),
                 "--body-timeout", "1")
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM)


def noise_png() -> bytes:
    """A real PNG over 5 MB (noise does not compress)."""
    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    pixels = np.random.default_rng(7).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def test_max_image_bytes_raises_the_bytes_limit(server: Server) -> None:
    rek = server.client()
    png = noise_png()
    assert 5 * 1024 * 1024 < len(png) < MAX_IMAGE_BYTES
    assert rek.detect_faces(Image={"Bytes": png})["FaceDetails"] == []
    jpeg = Path(GROUP).read_bytes()
    with pytest.raises(rek.exceptions.ImageTooLargeException) as exc:
        rek.detect_faces(Image={"Bytes": jpeg + b"\0" * (MAX_IMAGE_BYTES + 1 - len(jpeg))})
    assert str(MAX_IMAGE_BYTES) in str(exc.value)


def test_a_body_that_does_not_arrive_times_out(server: Server) -> None:
    started = time.monotonic()
    with slow_request(server) as sock:
        sock.sendall(b"{")  # one byte of the 1,000 announced
        status, body = read_answer(sock)
    assert (status, body["__type"]) == (408, "RequestTimeoutException")
    assert 1 <= time.monotonic() - started < 10
    entry = server.access_log()[-1]
    assert (entry["operation"], entry["status"], entry["error"]) == ("ListCollections", 408, "RequestTimeoutException")
    assert server.client().list_collections()["CollectionIds"] == []  # still serving
