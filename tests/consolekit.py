"""A real `faceprint serve` with console users and an enrolled collection, and a real Chromium
(Playwright, Debian's /usr/bin/chromium) signed in as any of them."""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import LFW, ROOT
from serverkit import REGION, Server

CHROMIUM = os.environ.get("FACEPRINT_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "docs" / "console"
COLLECTION = "people"
PROCESSOR = "lobby-door"
PEOPLE = ("Al_Gore", "Aaron_Peirsol", "Abdullah_Gul", "Adam_Sandler", "Albert_Costa", "Ahmed_Chalabi")
"""Enrolled with their first photo; their second photo is a probe that should find them."""


def photo(person: str, n: int) -> Path:
    """``person``'s ``n``-th photo (from 0) of those in the LFW dev set."""
    return sorted((LFW / "images" / person).glob("*.jpg"))[n]
PASSWORD = "a long console password"
USERS = {"ivy": "investigator", "ian": "investigator", "ira": "investigator", "rita": "reviewer", "rob": "reviewer",
         "ada": "auditor", "max": "admin", "lou": "reviewer"}
"""Console users of the site (``lou`` is locked out by a test; ``ira`` may not search with a low-quality probe)."""


@dataclass
class Site:
    server: Server
    home: Path
    faces: dict[str, str] = field(default_factory=dict)
    """External image id (a person's name) -> FaceId."""
    job_id: str = ""
    """The face search of the lobby clip."""

    @property
    def console(self) -> str:
        return f"{self.server.url}/console"

    def client(self) -> Any:
        return self.server.client()

    def faceprint(self) -> Any:
        """boto3's client of faceprint's own operations (FaceprintService) for this server."""
        from faceprint.client import faceprint_client

        return faceprint_client(endpoint_url=self.server.url, region_name=REGION, aws_access_key_id="unused",
                                aws_secret_access_key="unused")


def start_site(home: Path, videos: Path) -> Site:
    """Console users in ``home``, then ``faceprint serve --no-auth`` on it (bucket ``videos``: the
    folder ``videos``), a collection (two-person rule on, as new collections on a server have it,
    and face crops kept) with :data:`PEOPLE` enrolled, and a face search of :func:`two_people_clip`
    started (``site.job_id``)."""
    from faceprint.console.users import ConsoleUsers

    users = ConsoleUsers(home / "console")
    for name, role in USERS.items():
        users.add(name, role, PASSWORD, refuse_low_quality=name == "ira")
    two_people_clip(videos / "lobby.mp4")
    camera, sink = f"lobby=file://{videos / 'lobby.mp4'}?loop=1", f"faces=file:{videos / 'faces.jsonl'}"
    server = Server(home, "--no-auth", "--bucket", f"videos={videos}", "--no-streams", "--stream", camera,
                    "--data-stream", sink)
    site = Site(server, home)
    try:
        rekognition = site.client()
        rekognition.create_collection(CollectionId=COLLECTION)
        site.faceprint().update_collection_settings(CollectionId=COLLECTION, KeepFaceCrops=True)
        for person in PEOPLE:
            indexed = rekognition.index_faces(CollectionId=COLLECTION, ExternalImageId=person, MaxFaces=1,
                                              Image={"Bytes": photo(person, 0).read_bytes()})
            site.faces[person] = indexed["FaceRecords"][0]["Face"]["FaceId"]
        rekognition.create_stream_processor(  # not started: this server runs no stream host (--no-streams)
            Input={"KinesisVideoStream": {"Arn": f"arn:aws:kinesisvideo:{REGION}:123456789012:stream/lobby/1"}},
            Output={"KinesisDataStream": {"Arn": f"arn:aws:kinesis:{REGION}:123456789012:stream/faces"}},
            Name=PROCESSOR, RoleArn="arn:aws:iam::123456789012:role/RekognitionStreams",
            Settings={"FaceSearch": {"CollectionId": COLLECTION, "FaceMatchThreshold": 85}})
        site.job_id = rekognition.start_face_search(Video={"S3Object": {"Bucket": "videos", "Name": "lobby.mp4"}},
                                                    CollectionId=COLLECTION, FaceMatchThreshold=80)["JobId"]
    except BaseException:
        server.stop()
        raise
    return site


CLIP_PEOPLE = (("Aaron_Peirsol", 0.0, 1.6), ("Albert_Costa", 2.2, 3.6))
"""Who walks through the lobby clip, from and to which second."""


def two_people_clip(path: Path, seconds: float = 3.6, fps: int = 25) -> Path:
    """A face search clip: :data:`CLIP_PEOPLE` (their second photos, 110 px faces) cross a background."""
    from videokit import background, face_sprite, paste, write_video

    sprites = {name: face_sprite(photo(name, 1), 110) for name, _, _ in CLIP_PEOPLE}
    scene = background(480, 272, seed=5)

    def frames() -> Any:
        for i in range(round(seconds * fps)):
            t, frame = i / fps, scene.copy()
            for name, start, end in CLIP_PEOPLE:
                if start <= t < end:
                    paste(frame, sprites[name], 40 + round(240 * (t - start) / (end - start)), 70)
            yield frame

    return write_video(path, frames(), fps=fps)


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True)


def sign_in(browser: Any, site: Site, name: str, password: str = PASSWORD, **context: Any) -> Any:
    """A new browser context signed in as ``name``: its page, on the user's start page."""
    page = browser.new_context(**context).new_page()
    page.goto(f"{site.console}/sign-in")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def shot(page: Any, name: str, full_page: bool = True) -> None:
    """With FACEPRINT_SCREENSHOTS=1, the page (or what the window shows of it) as docs/console/NAME.png."""
    if os.environ.get("FACEPRINT_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def small_face(person: str, face_px: int = 36, canvas: int = 240) -> bytes:
    """``person``'s second photo shrunk so the face is about ``face_px`` wide (LFW faces are ~110 px of
    250), blurred a little, on a grey canvas: a CCTV still's face."""
    from PIL import Image, ImageFilter

    image = Image.open(photo(person, 1)).convert("RGB")
    side = round(image.width * face_px / 110)
    small = image.resize((side, side), Image.LANCZOS).filter(ImageFilter.GaussianBlur(0.6))
    out = Image.new("RGB", (canvas, canvas), (128, 128, 128))
    out.paste(small, ((canvas - side) // 2, (canvas - side) // 3))
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=30)
    return buffer.getvalue()


def text_of(page: Any, selector: str = "main") -> str:
    return re.sub(r"\s+", " ", page.inner_text(selector))
