"""`faceprint serve` with its limits changed: image bytes over 5 MB with --max-image-bytes."""

from __future__ import annotations

import io
import signal
from pathlib import Path

import pytest

from conftest import FACES
from serverkit import Server

GROUP = FACES / "identities" / "faceapi_bbt" / "group" / "bbt1.jpg"
MAX_IMAGE_BYTES = 8_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = Server(tmp_path_factory.mktemp("limits-home"), "--no-auth", "--max-image-bytes", str(MAX_IMAGE_BYTES))
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
