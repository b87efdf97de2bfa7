"""Push an H.264 MP4 over RTSP (ANNOUNCE/RECORD, TCP) with PyAV, at its real rate, as an encoder
pushes to a server: for faceprint's ``rtsp-listen://`` sources in tests. Run by the venv's Python::

    python tests/rtsp_pusher.py --url rtsp://127.0.0.1:PORT/PATH --video clip.mp4 [--once]

It connects again (every 0.2 s) while nobody listens or after the listener went away, prints
``PUSHING`` each time a session starts, and loops the clip (times carry on) unless ``--once``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from pathlib import Path

import av


class Pusher:
    def __init__(self, url: str, video: Path, loop: bool) -> None:
        self.url, self.video, self.loop = url, video, loop
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            try:
                self.push_once()
                if not self.loop:
                    return
            except (av.FFmpegError, OSError) as exc:
                print(f"push failed: {type(exc).__name__}: {getattr(exc, 'strerror', '') or exc}", flush=True)
            time.sleep(0.2)

    def push_once(self) -> None:
        with av.open(str(self.video)) as source:
            stream = source.streams.video[0]
            output = av.open(self.url, "w", format="rtsp", options={"rtsp_transport": "tcp"}, timeout=5.0)
            try:
                out_stream = output.add_stream_from_template(stream)
                self.copy(source, stream, output, out_stream)
            finally:
                with contextlib.suppress(av.FFmpegError, OSError):
                    output.close()

    def copy(self, source, stream, output, out_stream) -> None:
        frame_s = 1 / float(stream.average_rate or 25)
        started, first, offset, last, announced = time.monotonic(), None, 0.0, 0.0, False
        while not self.stopping:
            for packet in source.demux(stream):
                if packet.dts is None or self.stopping:
                    continue
                raw = float(packet.dts * packet.time_base)
                first = raw if first is None else first
                t = raw + offset
                last = max(last, t)
                time.sleep(max(0.0, started + (t - first) - time.monotonic()))
                shift = round(offset / packet.time_base)
                packet.dts += shift
                packet.pts = None if packet.pts is None else packet.pts + shift
                packet.stream = out_stream
                output.mux(packet)
                if not announced:
                    print("PUSHING", flush=True)
                    announced = True
            if not self.loop:
                return
            offset = last + frame_s - first
            source.seek(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--video", required=True, type=Path)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    pusher = Pusher(args.url, args.video, loop=not args.once)

    def stop(*_: object) -> None:
        pusher.stopping = True
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    pusher.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
