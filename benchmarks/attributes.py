"""The face attributes report (DetectFaces ALL): every benchmarks/attr_*.py section in turn.

Each ``attr_<name>.py`` module (attr_age, attr_state, attr_wear, ...) has ``section(limit=None) ->
str`` (markdown); ``attr_stats.py`` is the shared statistics, not a section. The report starts with
the machine and the date, ready to paste into docs/benchmarks.md.

    python benchmarks/attributes.py [--limit N] [--only age,state]
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_SECTIONS = {"attr_stats"}


def section_modules(only: set[str] | None = None) -> list[str]:
    """The attr_*.py modules with a section, in name order (``only``: their names without attr_)."""
    names = sorted(p.stem for p in HERE.glob("attr_*.py") if p.stem not in NOT_SECTIONS)
    return [n for n in names if only is None or n.removeprefix("attr_") in only]


def machine() -> str:
    try:
        import onnxruntime

        runtime = f", onnxruntime {onnxruntime.__version__}"
    except ImportError:
        runtime = ""
    cpu = platform.processor() or platform.machine()
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{model or cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}{runtime}")


def report(limit: int | None = None, only: set[str] | None = None) -> str:
    sys.path.insert(0, str(HERE))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = ["# Face attributes (DetectFaces ALL)", "",
           f"Measured {now} on {machine()}; `python benchmarks/attributes.py"
           + (f" --limit {limit}" if limit else "") + "`.", ""]
    for name in section_modules(only):
        start = time.time()
        module = importlib.import_module(name)
        out.append(module.section(limit=limit))
        print(f"{name}: {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="faces of each set in each section (default: all)")
    parser.add_argument("--only", default=None, help="comma-separated sections, e.g. age,state (default: all)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    print(report(args.limit, only))


if __name__ == "__main__":
    main()
