"""A camera for tests: Debian's GStreamer RTSP server serving an H.264 MP4 file at its real rate,
over RTSP (clients pull with TCP or UDP) or RTSPS (``--tls-pem``), looping it forever unless ``--once``.

Run it with ``/usr/bin/python3`` (Debian's Python has ``gi``; the project's venv does not)::

    /usr/bin/python3 tests/rtsp_camera_server.py --port 8554 --path /cam --video clip.mp4 [--once] [--tls-pem PEM]

It prints ``READY`` on stdout once it listens on 127.0.0.1, and stops on SIGTERM or SIGINT.

The clip's H.264 access units are read into memory once (``qtdemux ! h264parse ! appsink``); each
shared media then has a feeder thread that pushes them into an ``appsrc`` again and again, with
timestamps that carry on from one pass to the next (so a client sees one endless stream). The
pipeline is not live: the RTP sinks sync on the clock, as with ``filesrc``, which plays it at its
real rate, and the ``appsrc`` (``block=true``, a small queue) holds the feeder back.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = "( appsrc name=src format=time is-live=true do-timestamp=false ! h264parse ! " \
         "rtph264pay name=pay0 pt=96 config-interval=1 )"


class Clip:
    """The file's H.264 access units, in decoding order, with times relative to the earliest."""

    def __init__(self, video: str) -> None:
        pipeline = Gst.parse_launch(
            "filesrc name=file ! qtdemux name=demux demux.video_0 ! h264parse ! "
            "video/x-h264,stream-format=avc,alignment=au ! appsink name=sink sync=false")
        pipeline.get_by_name("file").set_property("location", video)
        sink = pipeline.get_by_name("sink")
        pipeline.set_state(Gst.State.PLAYING)
        self.units: list[tuple[bytes, int, int, Gst.BufferFlags]] = []
        """(data, pts, dts, flags) of each access unit, times in ns (CLOCK_TIME_NONE: unknown)."""
        self.caps = None
        while True:
            sample = sink.emit("pull-sample")
            if sample is None:
                break
            self.caps = sample.get_caps()
            buffer = sample.get_buffer()
            self.units.append((buffer.extract_dup(0, buffer.get_size()), buffer.pts, buffer.dts, buffer.get_flags()))
        pipeline.set_state(Gst.State.NULL)
        if not self.units:
            raise SystemExit(f"no H.264 video in {video}")
        times = [t for _, pts, dts, _ in self.units for t in (pts, dts) if t != Gst.CLOCK_TIME_NONE]
        self.start = min(times)
        last = max(pts for _, pts, _, _ in self.units if pts != Gst.CLOCK_TIME_NONE)
        step = (last - self.start) // max(1, len(self.units) - 1)
        self.period = last - self.start + step
        """One pass lasts this long (ns): the next pass's times start there."""

    def stamped(self, unit: tuple[bytes, int, int, Gst.BufferFlags], offset: int) -> Gst.Buffer:
        """A new buffer holding ``unit``, its times moved to start at ``offset`` (ns)."""
        data, pts, dts, flags = unit
        pts = pts if pts != Gst.CLOCK_TIME_NONE else dts
        dts = dts if dts != Gst.CLOCK_TIME_NONE else pts
        out = Gst.Buffer.new_wrapped(data)
        out.set_flags(flags)
        out.pts, out.dts = pts - self.start + offset, dts - self.start + offset
        return out


class Feeder(threading.Thread):
    """Pushes the clip into one media's appsrc until the media shuts down (a push is refused)."""

    def __init__(self, appsrc: Gst.Element, clip: Clip, loop: bool) -> None:
        super().__init__(daemon=True)
        self.appsrc, self.clip, self.loop = appsrc, clip, loop
        appsrc.set_property("caps", clip.caps)

    def run(self) -> None:
        base = self.running_time()
        if base is None:
            return
        started, offset = time.monotonic(), 0
        while True:
            for unit in self.clip.units:
                out = self.clip.stamped(unit, offset)
                time.sleep(max(0.0, started + out.dts / 1e9 - time.monotonic()))
                out.pts, out.dts = out.pts + base, out.dts + base
                if self.appsrc.emit("push-buffer", out) != Gst.FlowReturn.OK:
                    return
            if not self.loop:
                self.appsrc.emit("end-of-stream")
                return
            offset += self.clip.period

    def running_time(self) -> int | None:
        """The pipeline's running time now (ns), once it plays (None: it shut down first)."""
        for _ in range(1000):
            clock = self.appsrc.get_clock()
            if clock is not None and self.appsrc.current_state == Gst.State.PLAYING:
                return clock.get_time() - self.appsrc.get_base_time()
            if self.appsrc.current_state == Gst.State.NULL and _ > 100:
                return None
            time.sleep(0.01)
        return None


def use_tls(server: GstRtspServer.RTSPServer, factory: GstRtspServer.RTSPMediaFactory, pem: str) -> None:
    """Speak RTSPS (TLS) with the certificate and key in ``pem``; anyone may watch."""
    auth = GstRtspServer.RTSPAuth()
    auth.set_tls_certificate(Gio.TlsCertificate.new_from_file(pem))
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "anonymous")
    auth.set_default_token(token)
    factory.add_role_from_structure(Gst.Structure.new_from_string(
        "anonymous, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
    server.set_auth(auth)


def serve(port: int, path: str, clip: Clip, loop: bool, tls_pem: str | None = None) -> int:
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH)
    factory.set_shared(False)  # each client its own pipeline, from the clip's start (no race with a media
    # that the last client's TEARDOWN is shutting down)
    factory.connect("media-configure", lambda _f, media: Feeder(
        media.get_element().get_by_name("src"), clip, loop).start())
    server.get_mount_points().add_factory(path, factory)
    if tls_pem:
        use_tls(server, factory, tls_pem)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        return 1
    main = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, main.quit)
    print("READY", flush=True)
    main.run()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--video", required=True)
    parser.add_argument("--once", action="store_true", help="play the file once, then end the stream")
    parser.add_argument("--tls-pem", help="serve RTSPS: a PEM file holding the certificate and its key")
    args = parser.parse_args()
    Gst.init(None)
    return serve(args.port, args.path, Clip(args.video), loop=not args.once, tls_pem=args.tls_pem)


if __name__ == "__main__":
    sys.exit(main())
