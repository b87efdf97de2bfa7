"""Live camera streams: how many 720p15 cameras one machine follows in real time, and how fast an alert comes.

Run: python benchmarks/streams.py [--quick] [--profiles fast,accurate] [--cameras 1,4,8,10] [--seconds 60]
                                  [--host-cpus 0,1] [--threads 1]
     (full: about 13 minutes on 2 cores once the scene and the watch lists are cached; --quick: about
     2 minutes, fast profile, 1 and 4 cameras, 40 s each). ``--host-cpus`` keeps the stream host on
     those CPUs (a 2-core machine inside a bigger one), this process and the cameras on the others.

The rig (benchmarks/streamsetup.py): N real RTSP cameras (Debian's GStreamer server, each looping
the 720p15 scene: two strangers always in view, a watch-list person stepping in at ``ENTER_S`` of
each ``SCENE_SECONDS`` loop and out at ``LEAVE_S``), one stream processor each, run by one stream
host process (the StreamRunner's child, ``--threads`` inference threads per model, default 1),
writing a JSON-lines file and POSTing every record and alert to one webhook receiver in this
process, which notes each arrival time. A home per profile (``home-bench-PROFILE`` in the cache).
For each profile and camera count: ``--warmup`` seconds, then a window of ``--seconds``, then
until the last appearance that began in the window is over. The processors start 20 s / N apart,
so the N cameras' scenes are spread evenly over the loop, as independent cameras' are;
``--in-step`` starts them at once (the wanted person steps into every camera in the same instant).

- Analysed: frames analysed per second per camera (the host's metrics over the window) against
  the due rate (5 a second); dropped: due frames replaced before the analyser took them. Both as
  a share of due frames, of the worst camera.
- Record latency: webhook arrival time minus the frame record's ``ProducerTimestamp`` (the frame's
  time on the camera's clock: a frame that waited to be read keeps its earlier time), p50/p95 over
  the window's frame records.
- Frame to alert: from the wanted person's first frame in view to his alert's arrival at the
  webhook. That frame's wall-clock time is rebuilt per camera from the frame records: the scene
  has a key frame every second, so ``FragmentNumber`` counts its seconds, and the entry frame is
  the first of a fragment whose number modulo ``SCENE_SECONDS`` is fitted to the analysed frames
  (the phase whose seconds with him in view best match the frames that hold 3 faces). The camera
  sends at the clip's real rate, so a frame left it at ORIGIN + FragmentNumber +
  FrameOffsetInSeconds seconds and reached the host (``ProducerTimestamp``) no earlier: ORIGIN is
  the least ``ProducerTimestamp`` - (FragmentNumber + FrameOffsetInSeconds) of the camera's
  frames, and the entry frame's time is ORIGIN + its fragment number. Frame to alert therefore
  includes any backlog of frames waiting for the host to read them (the details give it; the
  source skips ahead past a second of it) and the wait for the first analysed
  frame that shows him (a dropped frame's included). In this scene his first frame (75) is
  itself due (every 3rd from the connection's first), so the 0-200 ms that sampling adds with a
  real camera is not in the figures (the details give the first 3-face frame's lag); also left
  out: the camera's own capture and encoding, and the network (loopback here). An appearance
  with no alert is missed (counted as infinitely late in the percentiles), one with more than
  one alert for him is repeated (alerts are matched to appearances through their frame's
  record: same ``ProducerTimestamp``, its fragment).
- Host CPU: the stream host process's CPU over the window (cores, and CPU-s per camera-second);
  the cameras' CPU (the GStreamer servers: external cameras in reality) apart, and what the rest
  of the machine used meanwhile (other programs: /proc/stat minus the host, the cameras and this
  process, which holds the webhook receiver).
- Real time: analysed >= 98% of due and dropped <= 2% on every camera, and frame-to-alert p95
  <= 500 ms. Goals (issue 12): p95 <= 500 ms, >= 8 cameras with the fast profile on 2 cores
  (about 0.25 CPU-s per camera-second).
- Baseline, measured in the same run on the same clip, decoded here: a naive loop following one
  camera (every frame decoded, every 3rd, 5 a second, through ``Faceprint.analyze`` at full size,
  a collection search of every face, no tracking), on a Faceprint with the host's threads; its
  CPU-s per camera-second, and ours / naive.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streamsetup import (  # noqa: E402
    COLLECTION,
    ENTER_S,
    LEAVE_S,
    SCENE_SECONDS,
    WANTED,
    cache_root,
    models_dir,
    process_cpu,
    rig,
    scene_clip,
    watch_list,
)

DUE_FPS = 5.0
REAL_TIME = {"analysed": 0.98, "dropped": 0.02, "alert_p95_ms": 500.0}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the machine -----------------------------------------------------------------------------------

def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def neighbours() -> list[str]:
    """Other live-stream work on this machine now (stream hosts, the soak, cameras): what shares it."""
    found: Counter[str] = Counter()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            args = proc.joinpath("cmdline").read_bytes().split(b"\0")
            text = [a.decode(errors="replace") for a in args]
            if "faceprint.streams.host" in text:
                home = text[text.index("--home") + 1] if "--home" in text else "?"
                found[f"a stream host on {home}"] += 1
            elif any(a.endswith("streams_soak.py") for a in text):
                found["the memory soak (benchmarks/streams_soak.py)"] += 1
            elif any(a.endswith("rtsp_camera_server.py") for a in text):
                found["RTSP cameras"] += 1
            elif any(a.endswith("benchmarks/streams.py") for a in text):
                found["another streams benchmark"] += 1
    return [f"{what} (x{n})" if n > 1 else what for what, n in found.items()]


def self_cpu() -> float:
    return process_cpu(os.getpid())


# -- the naive loop --------------------------------------------------------------------------------

@dataclass
class Naive:
    profile: str
    video_s: float
    cpu_s: float
    frames: int
    faces: int
    hits: int

    @property
    def per_camera_s(self) -> float:
        return self.cpu_s / self.video_s


def naive(profile: str, seconds: float, threads: int) -> Naive:
    """One camera's worth, the plain way: the clip decoded here, every 3rd frame (5 a second)
    analysed at full size and each face searched in the watch list."""
    from faceprint.imaging import DecodedImage
    from faceprint.service import Faceprint
    from faceprint.video import decode

    fp = Faceprint(cache_root() / f"home-bench-{profile}", profile=profile, models_dir=models_dir(), threads=threads)
    watch_list(fp)
    clip = scene_clip()
    info = decode.probe(clip)
    step = max(1, round(info.frame_rate / DUE_FPS))
    fp.analyze(DecodedImage(rgb=np.zeros((720, 1280, 3), np.uint8)))  # load the models untimed
    frames = faces = hits = 0
    cpu = self_cpu()
    with contextlib.closing(decode.frames(clip, info)) as stream:
        for n, frame in enumerate(stream):
            if frame.timestamp_ms >= seconds * 1000:
                break
            if n % step:
                continue
            frames += 1
            analysis = fp.analyze(DecodedImage(rgb=np.ascontiguousarray(frame.bgr()[:, :, ::-1])))
            for vector in analysis.vectors:
                faces += 1
                hits += bool(fp.collections.search(COLLECTION, vector, 1, 80.0))
    cpu = self_cpu() - cpu
    return Naive(profile, frames / DUE_FPS, cpu, frames, faces, hits)


# -- one run: a profile, a camera count ----------------------------------------------------------

@dataclass
class Run:
    profile: str
    cameras: int
    seconds: float = 0.0
    analysed: dict[str, float] = field(default_factory=dict)
    """camera -> frames analysed / frames due over the window"""
    dropped: dict[str, float] = field(default_factory=dict)
    record_ms: list[float] = field(default_factory=list)
    analyse_ms: list[float] = field(default_factory=list)
    """ServerTimestamp - ProducerTimestamp: received to record made (the rest is delivery)."""
    behind_ms: list[float] = field(default_factory=list)
    """ProducerTimestamp - when the camera sent the frame: a backlog before the host read it."""
    alert_ms: list[float] = field(default_factory=list)
    appearances: int = 0
    missed: int = 0
    repeated: int = 0
    other_alerts: int = 0
    entry_checks: list[float] = field(default_factory=list)
    """first analysed 3-face frame's producer time minus the rebuilt entry time (s)"""
    phases: list[int] = field(default_factory=list)
    """camera (index) -> its entry fragment modulo the loop"""
    host_cpu: float = 0.0
    camera_cpu: float = 0.0
    bench_cpu: float = 0.0
    machine_cpu: float = 0.0
    reconnects: int = 0
    frames_dropped: int = 0
    sink_dropped: int = 0
    host_restarted: bool = False
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def alert_p(self, q: float) -> float:
        """Percentile of frame-to-alert (ms), a missed appearance counting as infinitely late."""
        values = self.alert_ms + [float("inf")] * self.missed
        return float(np.percentile(values, q, method="higher")) if values else float("nan")

    @property
    def frame_cpu_ms(self) -> float:
        """The host's CPU per analysed frame (decoding every frame, analysis, records, sinks)."""
        frames = sum(self.analysed.values()) * DUE_FPS * self.seconds
        return 1000 * self.host_cpu * self.seconds / frames if frames else float("nan")

    @property
    def worst_analysed(self) -> float:
        return min(self.analysed.values(), default=0.0)

    @property
    def worst_dropped(self) -> float:
        return max(self.dropped.values(), default=1.0)

    @property
    def real_time(self) -> bool:
        return (self.worst_analysed >= REAL_TIME["analysed"] and self.worst_dropped <= REAL_TIME["dropped"]
                and self.alert_p(95) <= REAL_TIME["alert_p95_ms"] and not self.host_restarted)


def read_metrics(home: Path) -> tuple[float, dict[str, Any]]:
    data = json.loads((home / "streams" / "metrics.json").read_text())
    return float(data["updated"]), data.get("processors", {})


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process ``pid`` onto ``cpus`` (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


def measure(profile: str, cameras: int, seconds: float, warmup: float, threads: int,
            host_cpus: set[int] | None = None, in_step: bool = False) -> Run:
    home = cache_root() / f"home-bench-{profile}"
    run = Run(profile, cameras)
    stagger = 0.0 if in_step else SCENE_SECONDS / cameras
    with tempfile.TemporaryDirectory() as tmp, rig(Path(tmp), cameras, profile, home=home, threads=threads,
                                                   stagger=stagger) as r:
        pid, cams = r.host_pid, [c.process.pid for c in r.rtsp]
        if host_cpus:
            pin(pid, host_cpus)
        time.sleep(warmup)
        if host_cpus:
            pin(pid, host_cpus)  # threads started meanwhile (by processors) too
        t0, (u0, m0), before = time.time(), read_metrics(home), cpu_now(pid, cams)
        time.sleep(seconds)
        t1, (u1, m1), after = time.time(), read_metrics(home), cpu_now(pid, cams)
        run.load = os.getloadavg()
        time.sleep(LEAVE_S - ENTER_S + 1.5)  # the window's last appearances end, their alerts arrive
        run.host_restarted = r.host_pid != pid or math.isnan(after[0])
        with r.hook._lock:
            received = list(zip(r.hook.kinds, r.hook.bodies, r.hook.arrived, strict=True))
    run.seconds = t1 - t0
    tally_metrics(run, m0, m1, u1 - u0)
    host, cams_cpu, self_, busy, total = (b - a for a, b in zip(before, after, strict=True))
    run.host_cpu, run.camera_cpu, run.bench_cpu = host / run.seconds, cams_cpu / run.seconds, self_ / run.seconds
    run.machine_cpu = busy / max(1, total) * (os.cpu_count() or 1)
    score(run, received, t0, t1)
    return run


def cpu_now(host: int, cameras: list[int]) -> tuple[float, float, float, float, float]:
    """CPU seconds so far of the host, the cameras and this process; the machine's (busy, total)."""
    try:
        host_cpu = process_cpu(host)
    except OSError:  # the host died (the runner restarts it): the run is void
        host_cpu = float("nan")
    return host_cpu, sum(map(process_cpu, cameras)), self_cpu(), *machine_busy()


def tally_metrics(run: Run, m0: dict[str, Any], m1: dict[str, Any], span: float) -> None:
    """Frames analysed and dropped per camera (shares of due), from the host's metrics ``span`` s apart."""
    due = DUE_FPS * span
    for name, after in m1.items():
        before = m0.get(name, {})
        dropped = after["frames_dropped"] - before.get("frames_dropped", 0)
        run.analysed[name] = (after["frames_analysed"] - before.get("frames_analysed", 0)) / due
        run.dropped[name] = dropped / due
        run.frames_dropped += dropped
        run.reconnects += after.get("reconnects", 0)
        run.sink_dropped += sum(s.get("dropped", 0) for s in after.get("sinks", {}).values())


# -- scoring from the records ------------------------------------------------------------------------

@dataclass
class Frame:
    producer: float
    fragment: int
    offset: float
    faces: int


def score(run: Run, received: list[tuple[str, Any, float]], t0: float, t1: float) -> None:
    frames: dict[str, list[Frame]] = defaultdict(list)
    alerts: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for kind, body, arrived in received:
        if kind == "alert":
            alert = body["Alert"]
            who = (alert["MatchedFaces"] or [{}])[0].get("Face", {}).get("ExternalImageId")
            if who == WANTED:
                alerts[alert["StreamProcessorName"]].append((float(alert["ProducerTimestamp"]), arrived))
            elif t0 <= arrived < t1:
                run.other_alerts += 1
            continue
        kv = body["InputInformation"]["KinesisVideo"]
        producer = float(kv["ProducerTimestamp"])
        frames[kv["StreamArn"].split("/")[1]].append(Frame(
            producer, int(kv["FragmentNumber"]), float(kv["FrameOffsetInSeconds"]), len(body["FaceSearchResponse"])))
        if t0 <= producer < t1:
            run.record_ms.append(1000 * (arrived - producer))
            run.analyse_ms.append(1000 * (float(kv["ServerTimestamp"]) - producer))
    for camera, seen in frames.items():
        score_camera(run, sorted(seen, key=lambda f: f.producer), alerts[camera], t0, t1)


def score_camera(run: Run, seen: list[Frame], alerts: list[tuple[float, float]], t0: float, t1: float) -> None:
    """One camera's appearances in the window: missed, repeated, frame to alert."""
    phase, origin = entry_phase(seen), camera_origin(seen)
    run.phases.append(phase)
    run.behind_ms += [1000 * (f.producer - origin - f.fragment - f.offset) for f in seen if t0 <= f.producer < t1]
    fragment_of = {round(f.producer, 3): f.fragment for f in seen}
    # an alert's frame is a recorded frame (same ProducerTimestamp); else, at the latest:
    shown = [fragment_of.get(round(p, 3), math.floor(p - origin)) for p, _ in alerts]
    for fragment, entry, first3 in entries(seen, phase, origin):
        if not t0 <= entry < t1:
            continue
        run.appearances += 1
        if first3 is not None:
            run.entry_checks.append(first3 - entry)
        mine = [arrived for (_, arrived), at in zip(alerts, shown, strict=True)
                if fragment <= at < fragment + LEAVE_S - ENTER_S]
        if not mine:
            run.missed += 1
            continue
        run.repeated += len(mine) > 1
        run.alert_ms.append(1000 * (min(mine) - entry))


def entry_phase(seen: list[Frame]) -> int:
    """The entry fragment's number modulo SCENE_SECONDS (expected ENTER_S + 1: fragment 1 holds the
    connection's first frame, the clip's start): the phase whose "wanted person in view" seconds
    agree best with the analysed frames holding 3 faces (robust to dropped frames and to a face
    missed now and then)."""
    expected = int(ENTER_S + 1) % SCENE_SECONDS
    span = int(LEAVE_S - ENTER_S)

    def agreement(phase: int) -> tuple[int, int]:
        hits = sum((f.faces >= 3) == ((f.fragment - phase) % SCENE_SECONDS < span) for f in seen)
        return hits, -min((phase - expected) % SCENE_SECONDS, (expected - phase) % SCENE_SECONDS)

    return max(range(SCENE_SECONDS), key=agreement)


def camera_origin(seen: list[Frame]) -> float:
    """The wall-clock time of the camera's stream time 0 (fragment 0, offset 0): the camera sends at
    the clip's real rate, so each frame left it at origin + its stream time (fragments are seconds)
    and reached the host at its ProducerTimestamp, no earlier; the least difference is the origin
    (a frame that waited in a backlog before the host read it only adds to the difference)."""
    return min(f.producer - (f.fragment + f.offset) for f in seen)


def entries(seen: list[Frame], phase: int, origin: float) -> list[tuple[int, float, float | None]]:
    """(entry fragment, the camera's wall time of the entry frame, producer time of the first
    analysed 3-face frame of that appearance or None) for each loop of the scene in the records."""
    if not seen:
        return []
    out = []
    first, last = min(f.fragment for f in seen), max(f.fragment for f in seen)
    fragment = first + (phase - first) % SCENE_SECONDS
    while fragment <= last:
        first3 = next((f.producer for f in seen if fragment <= f.fragment < fragment + LEAVE_S - ENTER_S
                       and f.faces >= 3), None)
        out.append((fragment, origin + fragment, first3))
        fragment += SCENE_SECONDS
    return out


# -- report ------------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def ms(value: float) -> str:
    return "∞" if value == float("inf") else "-" if value != value else f"{value:.0f}"


def print_report(args: argparse.Namespace, naives: dict[str, Naive], runs: list[Run], started: float) -> None:
    print(f"\n# Live camera streams, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, {args.cores} cores")
    print(f"`python benchmarks/streams.py {' '.join(sys.argv[1:])}`".replace(" `", "`"), end="; ")
    print(f"load average at the start {' '.join(f'{v:.2f}' for v in args.load)}; also running at the start: "
          f"{', '.join(args.neighbours) or 'no other stream work'} (the 'other load' column: all the machine "
          f"did besides the host, the cameras and this process).")
    if args.host_cpus:
        print(f"The stream host ran on CPUs {sorted(args.host_cpus)} only; this process (webhook receiver) and the "
              f"cameras on the others.")
    print(f"720p15 RTSP cameras (GStreamer, looped {SCENE_SECONDS} s scene: 2 strangers, the wanted person in view "
          f"{ENTER_S:g}-{LEAVE_S:g} s), {args.seconds:g} s per run after {args.warmup:g} s warm-up, host --threads "
          f"{args.threads}; whole benchmark {(time.time() - started) / 60:.1f} min.\n")
    print("| profile | naive loop CPU-s per camera-s | frames | faces searched (matched) | cameras on "
          f"{len(args.host_cpus or ()) or args.cores} cores at that rate |")
    print("|---|---|---|---|---|")
    for n in naives.values():
        print(f"| {n.profile} | {n.per_camera_s:.3f} | {n.frames} ({n.video_s:g} s) | {n.faces} ({n.hits}) | "
              f"{(len(args.host_cpus or ()) or args.cores) / n.per_camera_s:.1f} |")
    print("\n| profile | cameras | analysed/s per camera (worst) | dropped (worst) | record latency p50 / p95 ms "
          "| frame to alert p50 / p95 ms | appearances: missed / repeated | host cores | host CPU-s per camera-s "
          "| ours / naive | cameras' cores | other load (cores) | real time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        mean = float(np.mean(list(r.analysed.values()))) * DUE_FPS if r.analysed else 0.0
        per_cam = r.host_cpu / r.cameras
        ratio = f"{per_cam / naives[r.profile].per_camera_s:.2f}" if r.profile in naives else "-"
        other = max(0.0, r.machine_cpu - r.host_cpu - r.camera_cpu - r.bench_cpu)
        print(f"| {r.profile} | {r.cameras} | {mean:.2f} ({r.worst_analysed * DUE_FPS:.2f}) of {DUE_FPS:g} | "
              f"{100 * r.worst_dropped:.1f}% | {ms(pct(r.record_ms, 50))} / {ms(pct(r.record_ms, 95))} | "
              f"{ms(r.alert_p(50))} / {ms(r.alert_p(95))} | {r.appearances}: {r.missed} / {r.repeated} | "
              f"{r.host_cpu:.2f} | {per_cam:.3f} | {ratio} | {r.camera_cpu:.2f} | {other:.2f} | "
              f"{'yes' if r.real_time else 'no'} |")
    print()
    for profile in dict.fromkeys(r.profile for r in runs):
        mine = [r for r in runs if r.profile == profile]
        ok = [r.cameras for r in mine if r.real_time]
        print(f"- {profile}: the most cameras in real time: {max(ok) if ok else 'none'} of "
              f"{', '.join(str(r.cameras) for r in mine)} tried (analysed >= {100 * REAL_TIME['analysed']:.0f}% "
              f"of due, dropped <= {100 * REAL_TIME['dropped']:.0f}%, frame-to-alert p95 <= "
              f"{REAL_TIME['alert_p95_ms']:.0f} ms; goal: >= 8 with the fast profile)")
    print("\nDetails (per run): record latency's part from receiving the frame to making its record (analysis) "
          "p50 / p95 ms; how long after the camera sent them the host read the frames (a backlog the record "
          "latency does not show; frame to alert does) p50 / p95 ms; the first analysed 3-face frame after the "
          "rebuilt entry (s, median / max: the sampling's share of frame to alert); the entry fragment modulo "
          "the loop, per camera (expected "
          f"{int(ENTER_S + 1) % SCENE_SECONDS}); alerts for anyone else; frames dropped; reconnects; records "
          "dropped by sinks; the host's CPU per analysed frame; load average at the window's end; this process "
          "(webhook receiver) cores.")
    for r in runs:
        print(detail_line(r))


def detail_line(r: Run) -> str:
    phases = sorted(Counter(r.phases).items())
    lag = f"+{pct(r.entry_checks, 50):.2f} / +{max(r.entry_checks, default=float('nan')):.2f} s"
    return (f"- {r.profile} x{r.cameras}: analysis {ms(pct(r.analyse_ms, 50))} / {ms(pct(r.analyse_ms, 95))} ms; "
            f"behind the camera {ms(pct(r.behind_ms, 50))} / {ms(pct(r.behind_ms, 95))} ms; "
            f"first 3-face frame {lag} ({len(r.entry_checks)} of {r.appearances}); phases {phases}; "
            f"other alerts {r.other_alerts}; frames dropped {r.frames_dropped}; reconnects {r.reconnects}; "
            f"sink drops {r.sink_dropped}; host {r.frame_cpu_ms:.0f} CPU-ms per analysed frame; "
            f"load {' '.join(f'{v:.2f}' for v in r.load)}; receiver {r.bench_cpu:.2f} cores"
            + ("; reconnects: the entry times assume one connection per camera" if r.reconnects else "")
            + ("; THE HOST RESTARTED: void" if r.host_restarted else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast profile, 1 and 4 cameras, 40 s each")
    parser.add_argument("--profiles", help="default: fast,accurate (fast with --quick)")
    parser.add_argument("--cameras", help="camera counts, default 1,4,8,10 (1,4 with --quick)")
    parser.add_argument("--seconds", type=float, help="measured seconds per run, default 60 (40 with --quick)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before each window, default 8 (5 quick)")
    parser.add_argument("--threads", type=int, default=1, help="the host's inference threads (default 1)")
    parser.add_argument("--host-cpus", help="run the stream host on these CPUs only (e.g. 0,1: a 2-core machine "
                        "inside a bigger one), this process and the cameras on the others")
    parser.add_argument("--in-step", action="store_true", help="start every camera's scene at once (the wanted "
                        "person steps into all cameras in the same instant: the worst case for alerts); by default "
                        "the cameras' scenes are spread evenly over the 20 s loop, as independent cameras are")
    parser.add_argument("--naive-seconds", type=float, help="clip seconds of the naive loop, default 20 "
                        "(one loop of the scene; 10 with --quick); 0: none")
    args = parser.parse_args()
    profiles = (args.profiles or ("fast" if args.quick else "fast,accurate")).split(",")
    counts = [int(c) for c in (args.cameras or ("1,4" if args.quick else "1,4,8,10")).split(",")]
    args.seconds = args.seconds or (40.0 if args.quick else 60.0)
    args.warmup = args.warmup if args.warmup is not None else (5.0 if args.quick else 8.0)
    naive_s = args.naive_seconds if args.naive_seconds is not None else (10.0 if args.quick else float(SCENE_SECONDS))
    started, args.load, args.cores = time.time(), os.getloadavg(), len(os.sched_getaffinity(0))
    args.neighbours = neighbours()
    args.host_cpus = {int(c) for c in args.host_cpus.split(",")} if args.host_cpus else None
    if args.host_cpus and set(os.sched_getaffinity(0)) - args.host_cpus:
        os.sched_setaffinity(0, set(os.sched_getaffinity(0)) - args.host_cpus)
    scene_clip()
    naives: dict[str, Naive] = {}
    runs: list[Run] = []
    for profile in profiles:
        if naive_s > 0:
            naives[profile] = naive(profile, naive_s, args.threads)
            log(f"{profile}: naive loop {naives[profile].per_camera_s:.3f} CPU-s per camera-second")
        for count in counts:
            runs.append(measure(profile, count, args.seconds, args.warmup, args.threads, args.host_cpus,
                                args.in_step))
            r = runs[-1]
            log(f"{profile} x{count}: host {r.host_cpu:.2f} cores, analysed {r.worst_analysed:.1%}, dropped "
                f"{r.worst_dropped:.1%}, alert p95 {ms(r.alert_p(95))} ms, real time {r.real_time} "
                f"({(time.time() - started) / 60:.1f} min)")
    print_report(args, naives, runs, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
