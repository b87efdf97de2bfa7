"""What the live-stream benchmarks share: a camera scene, a watch list, and a stream host fed by
real RTSP cameras (Debian's GStreamer server, as in the tests), with file and webhook sinks.

The scene (``scene_clip``): 1280x720 at 15 fps, H.264 as cameras send it (no B-frames, a key
frame a second), ``SCENE_SECONDS`` long and looped by the camera. Two strangers walk slowly across
it the whole time; a person on the watch list steps into view at ``ENTER_S`` (all at once, as
from behind a door) and leaves at ``LEAVE_S``: two or three faces in view, a new track to name
at each loop. The watch list: that person's other photos and the first photo of ``GALLERY``
other LFW dev people.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from camerakit import RtspCamera, scene_frames, write_camera_video  # noqa: E402
from conftest import LFW, models_dir  # noqa: E402
from sinkkit import WebhookReceiver  # noqa: E402
from videokit import Walker, photos_of  # noqa: E402

SCENE_SECONDS = 20
FPS = 15
SIZE = (1280, 720)
ENTER_S, LEAVE_S = 5.0, 15.0
WANTED = "Colin_Powell"
STRANGERS = ("Christopher_Walken", "Gerhard_Schroeder")
GALLERY = 60
COLLECTION = "watch"
ACCOUNT_ARN = "arn:aws:{service}:us-east-1:{account}:stream/{name}"


def cache_root() -> Path:
    return Path(os.environ.get("FACEPRINT_BENCH_CACHE", Path.home() / ".cache" / "faceprint-bench")) / "streams"


def scene_clip(path: Path | None = None) -> Path:
    """The looped camera scene (made once, cached)."""
    path = path or cache_root() / "scene-720p15.mp4"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    walkers = [Walker(photos_of(LFW, STRANGERS[0])[0], 150, (60, 120), (520, 200)),
               Walker(photos_of(LFW, STRANGERS[1])[0], 130, (1080, 380), (700, 300)),
               Walker(photos_of(LFW, WANTED)[0], 170, (760, 60), (820, 90), ENTER_S, LEAVE_S)]
    tmp = path.with_suffix(".tmp.mp4")
    write_camera_video(tmp, scene_frames(walkers, SIZE, SCENE_SECONDS, FPS, seed=3), FPS)
    tmp.replace(path)
    return path


def watch_list(fp: Any) -> list[str]:
    """Index the watch list into ``COLLECTION`` (once per home); the wanted person's FaceIds."""
    if COLLECTION in fp.list_collections().collection_ids:
        faces = fp.list_faces(COLLECTION, 4096).faces
        return [f.face_id for f in faces if f.external_image_id == WANTED]
    fp.create_collection(COLLECTION)
    wanted = []
    for photo in photos_of(LFW, WANTED)[1:4]:
        wanted += [r.face.face_id for r in fp.index_faces(COLLECTION, photo.read_bytes(), WANTED, max_faces=1,
                                                          quality_filter="NONE").face_records]
    others = sorted(p.name for p in (LFW / "images").iterdir() if p.name not in (WANTED, *STRANGERS))
    for name in others[:GALLERY]:
        fp.index_faces(COLLECTION, photos_of(LFW, name)[0].read_bytes(), name, max_faces=1, quality_filter="NONE")
    return wanted


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Rig:
    """N RTSP cameras, one processor each, a host process (StreamRunner), sinks: a JSON-lines file per
    processor and one webhook receiver for all (records arrive there with their arrival times)."""

    root: Path
    cameras: int
    profile: str = "fast"
    matches_only_webhook: bool = False
    threads: int = 1
    stagger: float = 0.0
    """Seconds between two processors' starts: each camera's client gets the scene from its start, so
    this puts the cameras' scenes out of step (independent cameras are), 0: all in step (the wanted
    person steps into every camera at once)."""
    home: Path | None = None
    """The Faceprint home (default: one per profile in the cache; two rigs at once need two homes:
    one stream host runs a home)."""
    fp: Any = None
    runner: Any = None
    hook: WebhookReceiver | None = None
    rtsp: list[RtspCamera] = field(default_factory=list)
    wanted: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return [f"cam{i}" for i in range(self.cameras)]

    def start(self) -> Rig:
        from faceprint.service import Faceprint
        from faceprint.streams.runner import StreamRunner
        from faceprint.streams.service import StreamSettings

        clip = scene_clip()
        self.hook = WebhookReceiver()
        hook_spec = self.hook.url + (";matches-only" if self.matches_only_webhook else "")
        self.rtsp = [RtspCamera(clip, f"/{n}", workdir=self.root).start() for n in self.names()]
        sources = {n: cam.url for n, cam in zip(self.names(), self.rtsp, strict=True)}
        sinks = {f"out-{n}": [f"file:{self.root}/out-{n}.jsonl", hook_spec] for n in self.names()}
        home = self.home or cache_root() / f"home-{self.profile}"
        self.fp = Faceprint(home, profile=self.profile, models_dir=models_dir(), threads=self.threads,
                            streams=StreamSettings(sources=sources, data_streams=sinks))
        self.wanted = watch_list(self.fp)
        account = self.fp.arns.account
        for n in self.names():
            with contextlib.suppress(Exception):
                self.fp.stop_stream_processor(n)
            with contextlib.suppress(Exception):
                self.fp.delete_stream_processor(n)
            self.fp.create_stream_processor(
                {"KinesisVideoStream": {"Arn": ACCOUNT_ARN.format(service="kinesisvideo", account=account,
                                                                  name=f"{n}/1")}},
                {"KinesisDataStream": {"Arn": ACCOUNT_ARN.format(service="kinesis", account=account,
                                                                 name=f"out-{n}")}},
                n, {"FaceSearch": {"CollectionId": COLLECTION, "FaceMatchThreshold": 80.0}},
                f"arn:aws:iam::{account}:role/faceprint")
        self.runner = StreamRunner(home, models_dir=models_dir(), profile=self.profile, region="us-east-1",
                                   sources=sources, data_streams=sinks, threads=self.threads)
        self.runner.start()
        for i, n in enumerate(self.names()):
            if i and self.stagger:
                time.sleep(self.stagger)
            self.fp.start_stream_processor(n)
        self.wait_running()
        return self

    def wait_running(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.fp.describe_stream_processor(n).status == "RUNNING" for n in self.names()):
                return
            time.sleep(0.5)
        raise RuntimeError("processors not RUNNING: " + ", ".join(
            f"{n}={self.fp.describe_stream_processor(n).status}" for n in self.names()))

    def metrics(self) -> dict[str, Any]:
        import json

        path = self.fp.home / "streams" / "metrics.json"
        return json.loads(path.read_text()).get("processors", {}) if path.exists() else {}

    @property
    def host_pid(self) -> int:
        return self.runner.pid

    def close(self) -> None:
        if self.fp is not None:
            for n in self.names():
                with contextlib.suppress(Exception):
                    self.fp.stop_stream_processor(n)
        if self.runner is not None:
            self.runner.close()
        for cam in self.rtsp:
            cam.stop()
        if self.hook is not None:
            self.hook.close()


@contextlib.contextmanager
def rig(root: Path, cameras: int, profile: str = "fast", **kw: Any) -> Iterator[Rig]:
    r = Rig(Path(root), cameras, profile, **kw)
    try:
        yield r.start()
    finally:
        r.close()
