"""A progress bar for long command-line work (``faceprint video search-faces`` and co, ``faceprint
index-faces`` over many images): done of about how many, the rate and the time left, on stderr."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO


class ProgressBar:
    """Things (``unit``: frames, images) done of about how many, their rate and the time left, on
    ``stream``: redrawn in place (at most 5 times a second) on a terminal, else a line every 5%."""

    WIDTH = 30

    def __init__(self, stream: IO[str], clock: Callable[[], float] = time.monotonic,
                 tty: bool | None = None, unit: str = "frames") -> None:
        self.stream, self.clock, self.unit = stream, clock, unit
        self.tty = stream.isatty() if tty is None else tty
        self.started = clock()
        self.last_draw = float("-inf")
        self.last_step = -1
        self.drawn = False
        self.state = (0, 0)

    def update(self, done: int, total: int) -> None:
        self.state = (done, total)
        now = self.clock()
        if self.tty:
            if now - self.last_draw >= 0.2:
                self.last_draw = now
                self._write("\r" + self.line(done, total, now) + "\x1b[K")
            return
        step = int(self._fraction(done, total) * 20)  # every 5%
        if step > self.last_step:
            self.last_step = step
            self._write(self.line(done, total, now) + "\n")

    def finish(self) -> None:
        """The last state, drawn once more on a terminal, then a new line."""
        if self.tty and self.drawn:
            done, total = self.state
            self._write("\r" + self.line(done, max(total, done), self.clock()) + "\x1b[K\n")

    def line(self, done: int, total: int, now: float) -> str:
        fraction = self._fraction(done, total)
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        left = (max(total - done, 0) / rate) if rate > 0 else None
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        eta = clock_time(left * 1000, tenths=False) if left is not None else "--:--:--"
        return f"[{bar}] {fraction * 100:5.1f}%  {done}/{total} {self.unit}  {rate:.1f} {self.unit}/s  ETA {eta}"

    @staticmethod
    def _fraction(done: int, total: int) -> float:
        return min(done / total, 1.0) if total > 0 else 0.0

    def _write(self, text: str) -> None:
        self.drawn = True
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed: the work goes on
            pass


def clock_time(ms: float, tenths: bool = True) -> str:
    """``01:12:04.3`` (hours, minutes, seconds and tenths) for ``ms`` milliseconds."""
    if tenths:
        tenth = int(round(ms / 100))
        seconds, rest = divmod(tenth, 10)
        return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{rest}"
    seconds = int(round(ms / 1000))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
