"""Live streams over hours: does the stream host's memory stay flat?

Run: python benchmarks/streams_soak.py [--cameras 2] [--minutes 120] [--profile fast] [--out FILE]

N real RTSP cameras (GStreamer, the looped scene of benchmarks/streamsetup.py: a watch-list person
enters and leaves every 20 s, two strangers always in view) feed one stream host process (the
StreamRunner's child), each processor writing a JSON-lines file and POSTing to a webhook. Every
minute it samples the host's RSS and CPU and the processors' counters (a JSON line each to
``--out``). At the end it prints the RSS growth from the end of the warm-up (``--warmup``
minutes) to the end; the goal is 5% or less over 2 hours.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streamsetup import SCENE_SECONDS, process_cpu, process_rss_mib, rig  # noqa: E402


def totals(metrics: dict) -> dict[str, int]:
    keys = ("frames_read", "frames_analysed", "frames_dropped", "records", "alerts", "reconnects")
    return {k: sum(int(p.get(k, 0)) for p in metrics.values()) for k in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out.open("a") if args.out else None
    with tempfile.TemporaryDirectory() as tmp, rig(Path(tmp), args.cameras, args.profile) as r:
        pid, started = r.host_pid, time.time()
        cpu0, samples = process_cpu(pid), []
        while time.time() - started < args.minutes * 60:
            time.sleep(args.every)
            if r.host_pid != pid:
                print("the host process was restarted: the run is void", file=sys.stderr)
                return 1
            sample = {"t": round(time.time() - started, 1), "rss_mib": round(process_rss_mib(pid), 1),
                      "cpu_s": round(process_cpu(pid) - cpu0, 1), **totals(r.metrics()),
                      "webhook_records": len(r.hook.bodies)}
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            if out:
                print(json.dumps(sample), file=out, flush=True)
            with r.hook._lock:  # the receiver's own memory must not grow over hours
                for kept in (r.hook.requests, r.hook.bodies, r.hook.kinds, r.hook.arrived):
                    kept.clear()
        report(args, samples)
    return 0


def report(args: argparse.Namespace, samples: list[dict]) -> None:
    warm = [s for s in samples if s["t"] >= args.warmup * 60] or samples
    first, last = warm[0], samples[-1]
    growth = 100.0 * (last["rss_mib"] - first["rss_mib"]) / first["rss_mib"]
    span = last["t"] - first["t"]
    loops = args.cameras * last["t"] / SCENE_SECONDS
    print(f"\n# Stream host soak, {datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
          f"{args.cameras} cameras 720p15, {args.profile} profile, {last['t'] / 60:.0f} min")
    print(f"RSS {first['rss_mib']:.1f} MiB at {first['t'] / 60:.0f} min -> {last['rss_mib']:.1f} MiB at "
          f"{last['t'] / 60:.0f} min: {growth:+.2f}% over {span / 60:.0f} min (goal: <= 5% over 2 h); "
          f"peak {max(s['rss_mib'] for s in warm):.1f} MiB")
    print(f"host CPU {last['cpu_s'] / last['t']:.2f} cores ({last['cpu_s'] / last['t'] / args.cameras:.3f} "
          f"CPU-s per camera-second); frames analysed {last['frames_analysed']}, dropped {last['frames_dropped']}, "
          f"reconnects {last['reconnects']}; alerts {last['alerts']} for about {loops:.0f} appearances "
          f"of the wanted person (one in each {SCENE_SECONDS} s loop of each camera)")


if __name__ == "__main__":
    sys.exit(main())
