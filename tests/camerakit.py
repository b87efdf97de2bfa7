"""Real cameras for tests, on 127.0.0.1 and free ports: each starts a real server process (or thread)
and stops it when its ``with`` block ends.

- :func:`rtsp_camera`: Debian's GStreamer RTSP server (``tests/rtsp_camera_server.py``, run by
  ``/usr/bin/python3``) serving an H.264 MP4 at its real rate, looping; clients pull over TCP or UDP
  (``tls=True``: RTSPS with a self-signed certificate). Each client gets the clip from its start.
  ``camera.kill()`` then ``camera.start()`` restarts it on the same port (a camera that drops).
- :func:`rtsp_push`: pushes a clip with PyAV (RTSP ANNOUNCE/RECORD over TCP, ``tests/rtsp_pusher.py``
  in its own process) to a listening ``rtsp-listen://`` source, retrying until the listener is up.
- :func:`mjpeg_camera`: ffmpeg serving multipart MJPEG over HTTP (one client at a time; it is
  started again for the next).
- :func:`hls_camera`: ffmpeg writing a live HLS playlist into a temporary folder served over HTTP.
- :func:`udp_ts_camera`: ffmpeg sending MPEG-TS to ``udp://127.0.0.1:PORT`` at the real rate.
- :func:`face_clip`: a camera-like H.264 clip (no B-frames, a key frame a second) of LFW faces.
- :func:`hostile_camera`: an HTTP "camera" that misbehaves (sends nothing, redirects forever, or
  sends endless bytes in one MJPEG part), a thread in the test's process; :func:`mute_video_camera`,
  MPEG-TS over HTTP whose video stops while its audio goes on.

Each camera has ``url`` (what a stream processor is given) and ``log`` (what its process said).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from conftest import ROOT
from serverkit import free_port
from videokit import Walker, background, paste

SYSTEM_PYTHON = "/usr/bin/python3"
FFMPEG = "/usr/bin/ffmpeg"
SERVER_SCRIPT = ROOT / "tests" / "rtsp_camera_server.py"
PUSHER_SCRIPT = ROOT / "tests" / "rtsp_pusher.py"
START_TIMEOUT = 20.0


def listening(port: int) -> bool:
    """Is some process listening on TCP ``port`` (read from /proc, without connecting: a probe
    connection would be taken for the one client ffmpeg's single-client HTTP server serves)?"""
    hexport = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[1].endswith(hexport) and fields[3] == "0A":
                    return True
    return False


def _wait(predicate, what: str, process: subprocess.Popen | None = None, log: Path | None = None,
          timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}: {log.read_text() if log else ''}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready in {timeout} s: {log.read_text() if log else ''}")


def _end(process: subprocess.Popen | None, kill: bool = False) -> None:
    if process is None or process.poll() is not None:
        return
    process.kill() if kill else process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class RtspCamera:
    """The GStreamer RTSP server on ``port``: ``url`` for TCP, ``udp_url`` for UDP (with ``tls``,
    ``url`` is ``rtsps://``, a self-signed certificate)."""

    def __init__(self, video: Path, path: str = "/cam", loop: bool = True, port: int | None = None,
                 workdir: Path | None = None, tls: bool = False) -> None:
        self.video, self.path, self.loop = Path(video), path, loop
        self.port = port or free_port()
        folder = Path(workdir or tempfile.gettempdir())
        self.tls_pem = self_signed_pem(folder / f"rtsp-camera-{self.port}.pem") if tls else None
        self.url = f"{'rtsps' if tls else 'rtsp'}://127.0.0.1:{self.port}{path}"
        self.udp_url = f"{self.url}?transport=udp"
        self.log = folder / f"rtsp-camera-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> RtspCamera:
        """Start the server (again, on the same port) and wait until it listens."""
        if self.process is not None and self.process.poll() is None:
            return self
        args = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--path", self.path,
                "--video", str(self.video)] + ([] if self.loop else ["--once"])
        if self.tls_pem is not None:
            args += ["--tls-pem", str(self.tls_pem)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait(lambda: listening(self.port) and "READY" in self.log.read_text(errors="replace"),
              "the RTSP camera", self.process, self.log)
        return self

    def kill(self) -> None:
        """The camera dies at once (SIGKILL): its clients lose the connection."""
        _end(self.process, kill=True)

    def stop(self) -> None:
        _end(self.process)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@contextlib.contextmanager
def rtsp_camera(video: Path, path: str = "/cam", loop: bool = True, workdir: Path | None = None,
                tls: bool = False) -> Iterator[RtspCamera]:
    """``with rtsp_camera(clip) as cam:`` read ``cam.url`` (TCP) or ``cam.udp_url``;
    ``cam.kill(); cam.start()`` drops it and brings it back on the same port. ``tls``: RTSPS."""
    camera = RtspCamera(video, path, loop, workdir=workdir, tls=tls)
    try:
        yield camera.start()
    finally:
        camera.stop()


def self_signed_pem(path: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 and its key (``test_server_tls.self_signed``'s), in
    one PEM file (0600), as GStreamer's RTSP server reads them."""
    from test_server_tls import self_signed

    cert, key = self_signed(path.parent, path.stem)
    path.touch(0o600)
    path.write_bytes(cert.read_bytes() + key.read_bytes())
    cert.unlink()
    key.unlink()
    return path


class RtspPusher:
    """``tests/rtsp_pusher.py`` in its own process (PyAV holds the GIL while its RTSP muxer waits
    for the listener, so a pusher thread would stall a listener in the same process)."""

    def __init__(self, url: str, video: Path, loop: bool = True, workdir: Path | None = None) -> None:
        self.url, self.video, self.loop = url, Path(video), loop
        self.log = Path(workdir or tempfile.gettempdir()) / f"rtsp-push-{urlsplit(url).port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> RtspPusher:
        args = [sys.executable, str(PUSHER_SCRIPT), "--url", self.url, "--video", str(self.video)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args + ([] if self.loop else ["--once"]), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    @property
    def connections(self) -> int:
        """RTSP sessions the pusher opened so far (it retries until a listener takes it)."""
        return self.log.read_text(errors="replace").count("PUSHING") if self.log.exists() else 0

    def stop(self) -> None:
        _end(self.process)


@contextlib.contextmanager
def rtsp_push(url: str, video: Path, loop: bool = True, workdir: Path | None = None) -> Iterator[RtspPusher]:
    """Push ``video`` (H.264 MP4, remuxed, at its real rate, looping) to ``url``
    (``rtsp://127.0.0.1:PORT/PATH``, where faceprint listens as ``rtsp-listen://127.0.0.1:PORT/PATH``)
    until the block ends, connecting again whenever the listener is not (or no longer) there."""
    pusher = RtspPusher(url, video, loop, workdir)
    try:
        yield pusher.start()
    finally:
        pusher.stop()


class FfmpegCamera:
    """ffmpeg serving or sending ``video`` at its real rate, looping, started again whenever it
    exits (an HTTP server ffmpeg serves one client, then ends) until :meth:`stop`."""

    def __init__(self, name: str, args: Sequence[str], url: str, log: Path, ready=None) -> None:
        self.name, self.args, self.url, self.log = name, list(args), url, log
        self.ready = ready
        self.process: subprocess.Popen | None = None
        self.runs = 0
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name=name, daemon=True)

    def start(self) -> FfmpegCamera:
        self._spawn()
        self._thread.start()
        if self.ready is not None:
            _wait(self.ready, self.name, self.process, self.log)
        return self

    def _spawn(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", *self.args],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.runs += 1

    def _supervise(self) -> None:
        while not self.stopping.is_set():
            if self.process is not None and self.process.poll() is not None:
                self._spawn()
            self.stopping.wait(0.1)

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(5)
        _end(self.process)


def _loop_input(video: Path) -> list[str]:
    return ["-re", "-stream_loop", "-1", "-i", str(video), "-an"]


@contextlib.contextmanager
def mjpeg_camera(video: Path, workdir: Path | None = None, quality: int = 5) -> Iterator[FfmpegCamera]:
    """Multipart MJPEG over HTTP (``Content-Type: multipart/x-mixed-replace``), at ``camera.url``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/cam.mjpg"
    log = Path(workdir or tempfile.gettempdir()) / f"mjpeg-camera-{port}.log"
    args = [*_loop_input(video), "-c:v", "mjpeg", "-q:v", str(quality), "-pix_fmt", "yuvj420p",
            "-f", "mpjpeg", "-listen", "1", url]
    camera = FfmpegCamera("the MJPEG camera", args, url, log, ready=lambda: listening(port))
    try:
        yield camera.start()
    finally:
        camera.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


@contextlib.contextmanager
def hls_camera(video: Path, workdir: Path | None = None, segment_s: float = 1.0) -> Iterator[FfmpegCamera]:
    """A live HLS playlist (``camera.url``, ``.m3u8``), written by ffmpeg into a temporary folder
    that a threaded ``http.server`` serves. Segments are cut at key frames (the clip's GOP)."""
    folder = Path(tempfile.mkdtemp(prefix="hls-camera-", dir=workdir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(folder)))
    serving = threading.Thread(target=server.serve_forever, name="hls http", daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/live.m3u8"
    args = [*_loop_input(video), "-c:v", "copy", "-f", "hls", "-hls_time", str(segment_s), "-hls_list_size", "6",
            "-hls_flags", "delete_segments+omit_endlist", str(folder / "live.m3u8")]
    camera = FfmpegCamera("the HLS camera", args, url, folder / "ffmpeg.log",
                          ready=lambda: (folder / "live.m3u8").exists())
    try:
        yield camera.start()
    finally:
        camera.stop()
        server.shutdown()
        server.server_close()
        serving.join(5)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def udp_ts_camera(video: Path, port: int | None = None, workdir: Path | None = None) -> Iterator[FfmpegCamera]:
    """MPEG-TS sent to ``udp://127.0.0.1:PORT`` at the real rate (``camera.url``, for a
    ``udp://`` source, which listens there)."""
    port = port or _free_udp_port()
    url = f"udp://127.0.0.1:{port}"
    log = Path(workdir or tempfile.gettempdir()) / f"udp-camera-{port}.log"
    args = [*_loop_input(video), "-c:v", "copy", "-f", "mpegts", f"{url}?pkt_size=1316"]
    camera = FfmpegCamera("the UDP camera", args, url, log)
    try:
        yield camera.start()
    finally:
        camera.stop()


@contextlib.contextmanager
def mute_video_camera(video: Path, workdir: Path, seconds: int = 60) -> Iterator[HostileCamera]:
    """MPEG-TS over HTTP whose video (``video``, once) stops while its audio track (a tone) goes on
    for ``seconds``, sent at about the real rate: a camera whose video encoder died and whose
    microphone did not."""
    ts = workdir / "mute-video.ts"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(video), "-f", "lavfi",
                    "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-map", "0:v", "-map", "1:a",
                    "-c:v", "copy", "-c:a", "mp2", str(ts)], check=True, capture_output=True)
    camera = HostileCamera("paced", body=ts.read_bytes(), seconds=seconds, path="/camera.ts")
    camera.thread.start()
    try:
        yield camera
    finally:
        camera.stop()


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def face_clip(path: Path, photos: Sequence[Path], seconds: float = 6.0, fps: int = 15,
              size: tuple[int, int] = (640, 360), face: int = 120, seed: int = 0) -> Path:
    """A camera-like H.264 MP4 (no B-frames, a key frame every second, as cameras send) of LFW
    ``photos`` walking across a background, all in view the whole time, side by side."""
    width, height = size
    count = max(1, len(photos))
    lane = width // count
    walkers = [Walker(photo, face, (i * lane + lane * 0.1, height * 0.2), (i * lane + lane * 0.3, height * 0.4))
               for i, photo in enumerate(photos)]
    return write_camera_video(path, scene_frames(walkers, size, seconds, fps, seed), fps)


def scene_frames(walkers: Sequence[Walker], size: tuple[int, int], seconds: float, fps: int,
                 seed: int = 0) -> Iterator[np.ndarray]:
    """BGR frames of ``walkers`` over a still background (``videokit.background``), one by one
    (for :func:`write_camera_video`)."""
    width, height = size
    bg = background(width, height, seed)
    for n in range(int(round(seconds * fps))):
        frame = bg.copy()
        for walker in walkers:
            corner = walker.at(n / fps, seconds)
            if corner is not None:
                paste(frame, walker.sprite, *corner)
        yield frame


def write_camera_video(path: Path, frames, fps: int = 15, gop_s: float = 1.0, crf: int = 23) -> Path:
    """Encode BGR frames as a camera does: H.264 without B-frames, a key frame every ``gop_s``."""
    import av

    with av.open(str(path), "w") as container:
        stream = None
        for image in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast", "bf": "0",
                                  "g": str(max(1, round(fps * gop_s))), "sc_threshold": "0"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return Path(path)


HOSTILE_MJPEG_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n"
                      b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 2000000000\r\n\r\n")


class HostileCamera:
    """An HTTP server on 127.0.0.1 that answers every client with one ``behaviour``:
    ``silent`` (accepts, reads, sends nothing), ``redirect`` (a 302 to itself, forever),
    ``endless`` (an MJPEG part claiming 2 GB, then bytes as fast as the client takes them) or
    ``paced`` (``body`` sent evenly over ``seconds``)."""

    def __init__(self, behaviour: str, body: bytes = b"", seconds: float = 1.0, path: str = "/video.mjpg") -> None:
        self.behaviour = behaviour
        self.body, self.seconds = body, seconds
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.stopping = threading.Event()
        self.clients: list = []
        self.thread = threading.Thread(target=self._accept, name="hostile camera", daemon=True)

    def _accept(self) -> None:
        self.server.settimeout(0.1)  # a closed socket does not wake a blocked accept()
        while not self.stopping.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            serving = threading.Thread(target=self._serve, args=(client,), name="hostile camera client", daemon=True)
            self.clients.append((client, serving))
            serving.start()

    def _serve(self, client) -> None:
        with contextlib.suppress(OSError):
            client.recv(65536)
            if self.behaviour == "redirect":
                client.sendall(f"HTTP/1.1 302 Found\r\nLocation: {self.url}\r\nContent-Length: 0\r\n\r\n".encode())
            elif self.behaviour == "paced":
                self._paced(client)
            elif self.behaviour == "endless":
                client.sendall(HOSTILE_MJPEG_HEAD)
                junk = bytes(range(256)) * 4096  # 1 MiB, no boundary in it
                while not self.stopping.is_set():
                    client.sendall(junk)
            else:
                self.stopping.wait()
        with contextlib.suppress(OSError):
            client.close()

    def _paced(self, client) -> None:
        """``body`` over ``seconds``, in 1316-byte pieces (seven MPEG-TS packets)."""
        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\r\n")
        step, started = 1316, time.monotonic()
        for at in range(0, len(self.body), step):
            due = started + self.seconds * at / len(self.body)
            if self.stopping.wait(max(0.0, due - time.monotonic())):
                return
            client.sendall(self.body[at:at + step])

    def stop(self) -> None:
        self.stopping.set()
        self.server.close()
        self.thread.join(5)
        for client, serving in self.clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)  # unblocks a sendall in its thread
            serving.join(5)


@contextlib.contextmanager
def hostile_camera(behaviour: str) -> Iterator[HostileCamera]:
    camera = HostileCamera(behaviour)
    camera.thread.start()
    try:
        yield camera
    finally:
        camera.stop()
