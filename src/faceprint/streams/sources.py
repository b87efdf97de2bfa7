"""Live video sources for stream processors: camera feeds read with PyAV (FFmpeg inside the wheel).

One :class:`Source` per processor reads one camera URL on its own thread: it connects, decodes
every frame (later frames refer to earlier ones, so none can be skipped), and turns into pixels
only the frames *due* for analysis, one every ``1/fps`` seconds of the stream's own time. A due
frame waits in a one-slot mailbox for :meth:`Source.take`; when the next due frame comes before
it was taken, it is replaced and counted in ``frames_dropped``: processing that is slower than the
camera drops frames, never queues them, so memory stays flat however long it runs.

URL forms (see :func:`faceprint.streams.config.parse_source_url`):

- ``rtsp://`` and ``rtsps://``: RTSP over TCP, or UDP with ``?transport=udp``; low-latency
  demuxer options (a short probe, a 0.5 s reordering window).
- ``rtsp-listen://HOST:PORT/PATH``: faceprint listens there and a camera or encoder pushes RTSP
  (ANNOUNCE/RECORD) to it.
- ``http://`` and ``https://``: multipart MJPEG, or HLS (``.m3u8``), which FFmpeg tells apart.
- ``udp://HOST:PORT``: MPEG-TS sent to that address (faceprint binds HOST:PORT).
- ``file:///abs/path``: a file played at its real rate (for testing), ``?loop=1`` to loop it.

faceprint's own query keys (``transport``, ``loop``) are taken out before FFmpeg sees the URL.
The stream's time is the frames' own timestamps, made continuous across jumps; MJPEG has none
(FFmpeg makes them up from a guessed 25 fps), so its frames' arrival times are used. HLS segments
come in bursts, so HLS frames, like a file's, are released at the stream's own pace.

Kinesis-only fields of the records are filled plainly: ``producer_ms`` is when the camera sent
the frame, by the stream's own clock (below; for a file or HLS, when the frame is due in real-rate
play; for MJPEG, whose times are made up, when it arrived); ``fragment`` counts key frames (a new
fragment at each, and at each new connection; every MJPEG frame is a key frame); ``offset_s`` is
the time since the fragment's first frame, in the stream's time.

Real time (live sources with their own frame times: RTSP, a push, MPEG-TS): a reader that cannot
decode as fast as the camera sends (a saturated CPU) would leave packets waiting in the socket,
neither analysed nor dropped, and the wall clock when a frame is decoded would hide the wait. So
the stream's clock is anchored to the wall clock: ``anchor`` is the least ``receipt - t`` seen on
the connection (``t`` the frame's stream time, ``receipt`` the wall clock when it was decoded), so
jitter and drift only ever move it earlier; a frame's producer time is ``anchor + t``, and its
*lag* ``receipt - (anchor + t)`` (``SourceStats.lag_s``, and the most seen, ``max_lag_s``) is how far
the reader is behind the camera. Past ``max_lag`` seconds the source skips ahead: it stops decoding
and reads packets (cheap) until a key frame that is within ``max_lag / 2`` of real time, or the first
key frame after the backlog drained (a read had to wait for the camera: then the anchor was late,
a camera clock slower than ours or restarted, and is set afresh there); the decoder is flushed and
decoding starts again at that key frame. Every due frame skipped is counted in ``frames_dropped``
(from the skipped packets' times and the due schedule), each skip in ``SourceStats.skips``. Paced
sources (files, HLS) are released by our own clock and do not skip: their lag is how late a frame
is released after it was due (a paced HLS source that falls :data:`PACE_RESYNC_S` behind paces
afresh, and FFmpeg's HLS demuxer itself jumps past segments that left the playlist). MJPEG has no
frame times of its own: its lag is not measured (0) and it does not skip.

A camera that cannot be reached, stops sending or ends is connected again, forever, after a
back-off that doubles from ``backoff[0]`` to ``backoff[1]`` seconds (reset once frames flowed; a
listener waiting for a push listens again at once). Opening gives up after ``open_timeout``
seconds and a read after :data:`READ_TIMEOUT` (longer for HLS, whose segments come seconds
apart). :meth:`Source.stop` cannot close the connection under a blocked read (with PyAV that
frees what the read is using), so a camera that went silent holds the reader thread, and
``stop()``, that long at most; a camera that sends stops within a frame. Error texts never hold
the URL's password.

Hostile or broken cameras cost bounded memory and time: no FFmpeg block grows past
:data:`MAX_FFMPEG_ALLOC` (a packet that never ends is cut there), frames over
:data:`~faceprint.video.decode.MAX_FRAME_PIXELS` are refused, a video that stopped while audio or
metadata still flows counts as gone after the read timeout (RTSP cameras send their video track
only), and a ``file://`` URL must name a regular file (not a pipe or a device). Not bounded by
size: an HLS server that serves an endless playlist has FFmpeg parse it until ``open_timeout``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import numpy as np

from faceprint.video.decode import MAX_FRAME_PIXELS, frame_rate  # the largest frame decoded (8K), as for stored video

log = logging.getLogger(__name__)

READ_TIMEOUT = 5.0
"""Seconds a read may wait for the camera's next packet before the camera counts as gone."""
HLS_READ_TIMEOUT = 20.0
"""The same for HLS, whose segments (and so packets) come seconds apart."""
MAX_FFMPEG_ALLOC = 128 << 20
"""The largest block FFmpeg may allocate in a process that reads cameras (``av_max_alloc``, as
ffmpeg's ``-max_alloc``). An 8K BGR frame is 102 MiB; a camera that sends endless bytes in one
packet (an MJPEG part that never ends, or claims a length of gigabytes) has FFmpeg grow that packet
until a read times out, gigabytes at loopback speed: it is cut at this size instead."""
MAX_BAD_PACKETS = 200
"""Undecodable packets in a row before the connection is dropped and made again."""
MAX_GAP_S = 10.0
"""A stream time that jumps by more than this (a camera reset, a looping encoder) is made continuous."""
PACE_RESYNC_S = 3.0
"""A paced live source (HLS) that falls this far behind its stream time starts pacing afresh."""
OWN_QUERY_KEYS = ("transport", "loop")
UNTIMED_FORMATS = frozenset({"mpjpeg", "mjpeg"})
"""Demuxers whose frame times are made up (from a guessed 25 fps), not the camera's."""


@dataclass(frozen=True)
class CapturedFrame:
    image: np.ndarray
    """BGR ``uint8``, full resolution, upright."""
    number: int
    """Frames read since :meth:`Source.start` (all of them, analysed or not, across reconnects)."""
    captured: float
    """Wall-clock epoch seconds when the frame was decoded here (paced sources: released)."""
    producer_ms: int
    """ProducerTimestamp, wall-clock ms: when the camera sent the frame, by its own clock anchored to
    ours (files, HLS: when it is due in real-rate play; MJPEG: when it arrived). Always increasing."""
    fragment: int
    """FragmentNumber: +1 at each key frame (and each new connection), across reconnects."""
    offset_s: float
    """FrameOffsetInSeconds: seconds since the fragment's first frame."""


@dataclass
class SourceStats:
    connected: bool = False
    connected_once: bool = False
    frames_read: int = 0
    frames_due: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    """Connection attempts after the first one (each retry counts)."""
    last_error: str | None = None
    """Why the last attempt or connection failed (password redacted); None once frames flow again."""
    since: float | None = None
    """Wall-clock time ``connected`` last changed (or of the first failure, before any connection)."""
    ended: bool = False
    """A non-looping file reached its end (the source then stops)."""
    lag_s: float = 0.0
    """How far the reader is behind the camera, seconds, at the last decoded frame (see the module's text)."""
    max_lag_s: float = 0.0
    """The largest ``lag_s`` seen since :meth:`Source.start`."""
    skips: int = 0
    """Times the reader fell ``max_lag`` behind and skipped ahead to a key frame (frames skipped are dropped)."""


@dataclass(frozen=True)
class Target:
    """How FFmpeg opens a source URL."""

    url: str
    options: dict[str, str]
    format: str | None = None
    file: bool = False
    loop: bool = False
    listen: bool = False
    """faceprint listens and the camera connects to it (RTSP push): waiting is no failure to back off from."""
    paced: bool = False
    """Frames are released at the stream's own pace (files; HLS, whose segments come in bursts)."""
    read_timeout: float = READ_TIMEOUT


def target(url: str) -> Target:
    """The URL FFmpeg opens for ``url`` (faceprint's query keys taken out) and its options."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k.lower(): v for k, v in query if k.lower() in OWN_QUERY_KEYS}
    rest = urlencode([(k, v) for k, v in query if k.lower() not in OWN_QUERY_KEYS])
    plain = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
    if scheme in ("rtsp", "rtsps"):
        transport = "udp" if own.get("transport", "tcp").lower() == "udp" else "tcp"
        return Target(plain, _rtsp_options() | {"rtsp_transport": transport, "allowed_media_types": "video"})
    if scheme == "rtsp-listen":
        listen = urlunsplit(("rtsp", parts.netloc, parts.path, rest, ""))
        return Target(listen, _rtsp_options() | {"rtsp_flags": "listen"}, listen=True)
    if scheme in ("http", "https"):
        hls = parts.path.lower().endswith(".m3u8")
        timeout = HLS_READ_TIMEOUT if hls else READ_TIMEOUT
        return Target(plain, {"timeout": _micros(timeout)}, paced=hls, read_timeout=timeout)
    if scheme == "udp":
        options = {"timeout": _micros(READ_TIMEOUT), "overrun_nonfatal": "1"}
        if parts.hostname:
            options["localaddr"] = parts.hostname
        return Target(plain, options, format="mpegts")
    if scheme == "file":
        loop = own.get("loop", "0").lower() in ("1", "true", "yes")
        return Target(unquote(parts.path), {}, file=True, loop=loop, paced=True)
    raise ValueError(f"faceprint does not read {scheme or 'this'}:// camera URLs")


def _rtsp_options() -> dict[str, str]:
    """Low latency: a short probe (the SDP already names the codec), a 0.5 s reordering window.
    (``fflags nobuffer`` would throw away the probed packets, the first key frame among them.)
    A camera pulled from sets up its video track only (no audio or metadata is sent); a push
    listener takes what the encoder announces (refusing a track would refuse the push)."""
    return {"analyzeduration": "500000", "max_delay": "500000", "timeout": _micros(READ_TIMEOUT)}


def _micros(seconds: float) -> str:
    return str(int(seconds * 1_000_000))


class _Mailbox:
    """One slot: the newest due frame not yet taken."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: CapturedFrame | None = None

    def put(self, item: CapturedFrame) -> bool:
        """Put ``item``; True if it replaced one that was never taken."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify_all()
            return replaced

    def take(self, timeout: float) -> CapturedFrame | None:
        with self._cond:
            if self._item is None:
                self._cond.wait_for(lambda: self._item is not None, timeout=max(0.0, timeout))
            item, self._item = self._item, None
            return item


class _StreamTime:
    """The stream's own time in seconds, made continuous and increasing: no time (MJPEG), a time
    that does not move on (a repeated timestamp), jumps back (a looping file, a camera that restarts
    its clock, a broken stream) or far ahead carries on one frame after the last."""

    def __init__(self, frame_s: float) -> None:
        self.frame_s = frame_s
        self.offset = 0.0
        self.last: float | None = None
        self.started = time.monotonic()

    def of(self, raw: float | None) -> float:
        if raw is None or not math.isfinite(raw):
            raw = time.monotonic() - self.started - self.offset
        t = raw + self.offset
        if self.last is not None and not self.last < t <= self.last + MAX_GAP_S:
            self.offset += self.last + self.frame_s - t
            t = self.last + self.frame_s
        self.last = t
        return t


class _Pacer:
    """Holds frames back until their stream time comes, from the first frame's arrival on."""

    def __init__(self, clock: Callable[[], float], wait: Callable[[float], bool], resync: float | None) -> None:
        self.clock, self.wait, self.resync = clock, wait, resync
        self.base: tuple[float, float, float] | None = None  # (monotonic, wall clock, stream time)

    def hold(self, t: float) -> float:
        """Wait until the frame at stream time ``t`` is due; the wall-clock time it is due."""
        now = time.monotonic()
        if self.base is None or (self.resync is not None and now - self._due(t) > self.resync):
            self.base = (now, self.clock(), t)
        due = self._due(t)
        if due > now:
            self.wait(due - now)
        return self.base[1] + (t - self.base[2])

    def _due(self, t: float) -> float:
        assert self.base is not None
        return self.base[0] + (t - self.base[2])


class _Anchor:
    """The wall-clock time of stream time 0 on one connection: the least ``receipt - t`` seen, so
    a frame that comes earlier than predicted (less delay, or a camera clock faster than ours)
    moves it earlier, never later (but :meth:`reset`, when the reader is known to be live)."""

    def __init__(self) -> None:
        self.value: float | None = None

    def place(self, receipt: float, t: float) -> tuple[float, float]:
        """The producer time of the frame at stream time ``t`` received at ``receipt``, and its lag."""
        if self.value is None or receipt - t < self.value:
            self.value = receipt - t
        produced = self.value + t
        return produced, receipt - produced

    def lag(self, receipt: float, t: float) -> float:
        return 0.0 if self.value is None else max(0.0, receipt - (self.value + t))

    def reset(self, receipt: float, t: float) -> None:
        self.value = receipt - t


class _Connection:
    """What is known of one open connection: its time, its due times, its frame rate."""

    def __init__(self, frame_s: float, times: _StreamTime, pacer: _Pacer | None, timed: bool) -> None:
        self.frame_s = frame_s
        self.times = times
        self.pacer = pacer
        self.first = True
        self.next_due: float | None = None
        self.timed = timed
        """The frames' own times are real (MJPEG's are made up from a guessed rate: arrival times are used)."""
        self.anchor = _Anchor()
        self.live = timed and pacer is None
        """Producer times and lag come from the anchored stream clock; the reader may skip ahead."""
        self.skipping = False
        """Packets are read and not decoded, until a key frame near real time."""
        self.drained = False
        """While skipping, a read had to wait for the camera: the backlog is gone."""


class Source:
    """A camera feed, read on its own thread (see the module's text)."""

    def __init__(self, url: str, *, fps: float = 5.0, clock: Callable[[], float] = time.time,
                 open_timeout: float = 10.0, backoff: tuple[float, float] = (0.5, 30.0),
                 max_lag: float = 1.0) -> None:
        if not max_lag > 0:
            raise ValueError("max_lag must be a positive number of seconds (math.inf: never skip)")
        self.url = url
        self.max_lag = max_lag
        """Seconds a live reader may fall behind the camera before it skips ahead to a key frame."""
        self.target = target(url)
        self.interval = 1.0 / fps if fps > 0 else 0.0
        self.clock = clock
        self.open_timeout = open_timeout
        self.backoff = backoff
        self._stats = SourceStats()
        self._lock = threading.Lock()
        self._mailbox = _Mailbox()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._number = 0
        self._fragment = 0
        self._fragment_t = 0.0
        self._last_ms: int | None = None

    # -- the public face -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"source {self.shown}", daemon=True)
        self._thread.start()

    def take(self, timeout: float) -> CapturedFrame | None:
        """The newest due frame, or None when none came within ``timeout`` seconds."""
        return self._mailbox.take(timeout)

    def stop(self) -> None:
        """Stop reading. Returns once the reader thread ended, or after the longest a blocked open
        or read can take (the thread then ends on its own, closing its connection). A frame not
        taken is dropped, and counted in ``frames_dropped`` (frames are not kept)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(self.open_timeout, self.target.read_timeout) + 2.0)
            if thread.is_alive():
                log.warning("camera %s: the reader is still blocked; it ends on its own", self.shown)
        if self._mailbox.take(0.0) is not None:
            with self._lock:
                self._stats.frames_dropped += 1

    @property
    def stats(self) -> SourceStats:
        with self._lock:
            return dataclasses.replace(self._stats)

    @property
    def shown(self) -> str:
        """The URL as it may be shown (password and secret query values hidden)."""
        from faceprint.streams.config import redact

        return redact(self.url)

    # -- the reader thread -------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.backoff[0]
        attempts = 0
        while not self._stopping.is_set():
            if attempts:
                self._update(reconnects=self._stats.reconnects + 1)
            attempts += 1
            flowed = self._session()
            if self._stats.ended or self._stopping.is_set():
                break
            if flowed or self.target.listen:
                delay = self.backoff[0]
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, self.backoff[1])
        self._update(connected=False)

    def _session(self) -> bool:
        """One connection, read until it fails or ends; True if frames flowed."""
        import av

        container = None
        read = self._stats.frames_read
        try:
            container = self._open()
            self._read(container)
        except av.ExitError:
            if not self._stopping.is_set():
                self._failed(self._timed_out(opening=container is None))
        except (av.FFmpegError, OSError, ValueError, RuntimeError, UnicodeDecodeError, _Unusable) as exc:
            if not self._stopping.is_set():
                self._failed(_reason(exc, self.url))
        except Exception as exc:  # a bug must not end the reader for good: it reconnects
            log.exception("camera %s: unexpected error", self.shown)
            self._failed(f"unexpected error ({type(exc).__name__})")
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.close()
        flowed = self._stats.frames_read > read
        if self._stats.connected:
            self._update(connected=False, since=self.clock())
        return flowed

    def _timed_out(self, opening: bool) -> str:
        if not opening:
            return f"no video came for {self.target.read_timeout:g} s"
        if self.target.listen:
            return f"no camera pushed to it within {self.open_timeout:g} s"
        return f"no answer within {self.open_timeout:g} s"

    def _open(self) -> Any:
        import av

        limit_ffmpeg_allocations()
        t = self.target
        if t.file:
            _regular_file(t.url)
        options = dict(t.options)
        if t.listen:
            options["listen_timeout"] = str(max(1, math.ceil(self.open_timeout)))
        container = av.open(t.url, mode="r", format=t.format, container_options=options,
                            timeout=(self.open_timeout, t.read_timeout), metadata_errors="ignore")
        if not container.streams.video:
            container.close()
            raise _Unusable("the stream has no video")
        ctx = container.streams.video[0].codec_context
        if (ctx.width or 0) * (ctx.height or 0) > MAX_FRAME_PIXELS:
            container.close()
            raise _Unusable(f"its frames are {ctx.width} x {ctx.height} pixels; the limit is {MAX_FRAME_PIXELS}")
        return container

    def _read(self, container: Any) -> None:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        frame_s = 1.0 / frame_rate(stream, 0.5, 300.0)
        pacer = _Pacer(self.clock, self._stopping.wait, None if self.target.file else PACE_RESYNC_S) \
            if self.target.paced else None
        conn = _Connection(frame_s, _StreamTime(frame_s), pacer, container.format.name not in UNTIMED_FORMATS)
        self._update(connected=True, connected_once=True, since=self.clock())
        while not self._demux(container, stream, conn):
            if not (self.target.file and self.target.loop):
                if self.target.file:
                    self._update(ended=True)
                    return
                raise _Unusable("the camera ended the stream")
            container.seek(0)
            stream.codec_context.flush_buffers()

    def _demux(self, container: Any, stream: Any, conn: _Connection) -> bool:
        """Decode packets until the stream ends (False) or the source stops (True). Every track's
        packets are read here (PyAV skips those of tracks not asked for inside one call, which
        then never returns while an audio or metadata track flows and the video has stopped)."""
        import av

        bad = 0
        video_at = read_at = time.monotonic()
        for packet in container.demux():
            if self._stopping.is_set():
                return True
            waited, read_at = time.monotonic() - read_at, time.monotonic()
            if packet.stream_index != stream.index:
                if not self.target.file and time.monotonic() - video_at > self.target.read_timeout:
                    raise _Unusable(f"no video came for {self.target.read_timeout:g} s (only other tracks)")
                continue
            video_at = time.monotonic()
            if conn.skipping and self._skipped(packet, conn, waited):
                read_at = time.monotonic()
                continue
            try:
                decoded = packet.decode()
            except (av.FFmpegError, ValueError) as exc:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise _Unusable(f"{bad} packets in a row do not decode ({_reason(exc, self.url)})") from None
                continue
            bad = 0
            for av_frame in decoded:
                if av_frame.width * av_frame.height > MAX_FRAME_PIXELS:
                    raise _Unusable(f"a frame is {av_frame.width} x {av_frame.height} pixels; "
                                    f"the limit is {MAX_FRAME_PIXELS}")
                self._frame(av_frame, conn)
            if self._stopping.is_set():
                return True
            read_at = time.monotonic()
        return self._stopping.is_set()

    def _skipped(self, packet: Any, conn: _Connection, waited: float) -> bool:
        """While skipping: True if ``packet`` is passed over undecoded (its due frame counted
        dropped); False for the key frame decoding starts again at (the decoder flushed first)."""
        raw = packet.dts if packet.dts is not None else packet.pts
        t = conn.times.of(None if raw is None else float(raw * packet.time_base))
        receipt = self.clock()
        conn.drained = conn.drained or waited >= conn.frame_s / 2
        if packet.is_keyframe:
            lag = conn.anchor.lag(receipt, t)
            if lag <= self.max_lag / 2 or conn.drained:
                if lag > self.max_lag / 2:  # live, yet late by the anchor: the anchor was late
                    log.debug("camera %s: caught up, %.2f s late by its clock: anchored afresh", self.shown, lag)
                    conn.anchor.reset(receipt, t)
                conn.skipping = False
                conn.times.last = t - 1e-6  # the key frame decoded next has this time
                packet.stream.codec_context.flush_buffers()
                return False
            self._fragment += 1
            self._fragment_t = t
        due = self._due(t, conn)
        if due:
            with self._lock:
                self._stats.frames_due += 1
                self._stats.frames_dropped += 1
        return True

    def _frame(self, av_frame: Any, conn: _Connection) -> None:
        t = conn.times.of(av_frame.time if conn.timed else None)
        produced, lag, now = self._place(t, conn)
        if av_frame.key_frame or conn.first:
            self._fragment += 1
            self._fragment_t = t
        number = self._number
        self._number += 1
        due = self._due(t, conn)
        producer_ms = int(produced * 1000)
        if self._last_ms is not None and producer_ms <= self._last_ms:
            producer_ms = self._last_ms + 1  # producer times only move on (a re-anchor, a new connection)
        self._last_ms = producer_ms
        with self._lock:
            self._stats.frames_read += 1
            self._stats.lag_s = round(lag, 3)
            self._stats.max_lag_s = max(self._stats.max_lag_s, self._stats.lag_s)
            if conn.first:
                self._stats.last_error = None
            if conn.live and lag > self.max_lag:
                conn.skipping, conn.drained = True, False
                self._stats.skips += 1
                log.debug("camera %s: %.2f s behind the camera: skipping to a key frame", self.shown, lag)
        conn.first = False
        if not due:
            return
        image = _upright(av_frame.to_ndarray(format="bgr24"), _rotation(av_frame))
        frame = CapturedFrame(image=image, number=number, captured=now, producer_ms=producer_ms,
                              fragment=self._fragment, offset_s=round(max(0.0, t - self._fragment_t), 6))
        with self._lock:  # counted as it is put: due frames are always taken, dropped or in the slot
            self._stats.frames_due += 1
            self._stats.frames_dropped += self._mailbox.put(frame)

    def _place(self, t: float, conn: _Connection) -> tuple[float, float, float]:
        """The producer time (wall clock) of the frame at stream time ``t``, the reader's lag, and
        when the frame was received (paced: released)."""
        if conn.pacer is not None:
            due = conn.pacer.hold(t)
            now = self.clock()
            return due, max(0.0, now - due), now
        receipt = self.clock()
        if not conn.live:
            return receipt, 0.0, receipt  # MJPEG: made-up frame times, the arrival time is all there is
        return *conn.anchor.place(receipt, t), receipt

    def _due(self, t: float, conn: _Connection) -> bool:
        """Is the frame at stream time ``t`` one to analyse (one every ``interval`` seconds)?"""
        if conn.next_due is not None and t < conn.next_due - conn.frame_s / 2:
            return False
        step = self.interval
        conn.next_due = t + step if conn.next_due is None or t > conn.next_due + step else conn.next_due + step
        return True

    def _failed(self, reason: str) -> None:
        with self._lock:
            self._stats.last_error = reason
            if self._stats.since is None:
                self._stats.since = self.clock()
        log.info("camera %s: %s", self.shown, reason)

    def _update(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._stats, key, value)


class _Unusable(Exception):
    """The connection is open but cannot be used (no video, too many bad packets, ended)."""


def limit_ffmpeg_allocations() -> bool:
    """Cap the blocks PyAV's FFmpeg may allocate in this process at :data:`MAX_FFMPEG_ALLOC`
    (a process-wide FFmpeg setting, the same for every camera: setting it again changes nothing).
    False where PyAV's libavutil is not found among the process's libraries (not Linux)."""
    import ctypes

    path = _pyav_library("libavutil")
    if path is None:
        return False
    lib = ctypes.CDLL(path)
    lib.av_max_alloc.argtypes = [ctypes.c_size_t]
    lib.av_max_alloc.restype = None
    lib.av_max_alloc(MAX_FFMPEG_ALLOC)
    return True


def _pyav_library(name: str) -> str | None:
    """The path of PyAV's ``name`` library as loaded in this process: the one in PyAV's wheel
    (``av.libs``), else the system's (OpenCV's wheel brings its own FFmpeg, not PyAV's)."""
    import av

    try:
        with open("/proc/self/maps") as maps:
            loaded = {line.split()[-1] for line in maps if f"/{name}" in line}
    except OSError:
        return None
    bundled = str(Path(av.__file__).resolve().parent.parent / "av.libs") + "/"
    ours = sorted(p for p in loaded if p.startswith(bundled))
    system = sorted(p for p in loaded if "-packages/" not in p)
    return (ours or system or [None])[0]


def _regular_file(path: str) -> None:
    """Refuse what is not a regular file (a FIFO or a device would block the reader for good)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise _Unusable(exc.strerror or "the file cannot be read") from None
    if not stat.S_ISREG(mode):
        raise _Unusable("it is not a regular file (a pipe, a device or a folder)")


def _rotation(av_frame: Any) -> int:
    try:
        return int(round(float(av_frame.rotation or 0) / 90.0)) % 4 * 90
    except (TypeError, ValueError, AttributeError):
        return 0


def _upright(array: np.ndarray, rotation: int) -> np.ndarray:
    if rotation == 0:
        return array
    return np.ascontiguousarray(np.rot90(array, k=rotation // 90))


def _reason(exc: BaseException, url: str) -> str:
    """A short reason, fit for a status message: FFmpeg's text without the URL, and the URL (or
    its secrets: password, query, secret pieces of its path) hidden if it shows anyway; cut after
    they were hidden (a cut first could leave the start of a password)."""
    from faceprint.streams.config import HIDDEN, redact
    from faceprint.streams.scrub import scrub, url_secrets

    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    text = str(text)[:4000].split(": '")[0]
    pairs = url_secrets(url, redact(url)) + [(secret, HIDDEN) for secret in _secrets(url)]
    return scrub(text, pairs)[:300]


def _secrets(url: str) -> list[str]:
    """The URL's password (as written and decoded, however short), the secret values of its path
    and its query's values (of 4 characters or more: a token, a signature)."""
    from faceprint.streams.config import path_secrets

    try:
        parts = urlsplit(url)
        query = [value for _, value in parse_qsl(parts.query, keep_blank_values=True) if len(value) >= 4]
        found = [parts.password, unquote(parts.password or ""), *path_secrets(parts.path), *query]
        return [s for s in found if s]
    except ValueError:
        return []
