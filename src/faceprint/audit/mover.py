"""The thread that moves a relaxed audit log's journal into ``audit.db`` (``faceprint.audit.log``):
the search whose entry fills a batch of the journal returns once its own line is written, and the
batch's move (about 2 to 5 ms of SQLite: the rows, the filter index, the signed heads) runs
beside the next searches instead of inside one of them.

One :class:`Mover` a log; its thread starts on the first :meth:`Mover.wake` and ends after
:data:`IDLE` seconds without one (it holds its log weakly: a log no one holds is not kept alive by
it). In a forked child the parent's thread is gone: :meth:`Mover.after_fork` forgets it, and the
next wake starts the child's own.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

IDLE = 5.0
"""Seconds the thread waits for the next wake before it ends."""


class Mover:
    """Calls ``owner.move_journal()`` on a thread of its own each time it is woken (once for any
    number of wakes that came while it was busy); ``runs`` and ``cpu`` (seconds of that thread's
    CPU) count what it did, for measurements."""

    def __init__(self, owner: Any, name: str) -> None:
        self._owner = weakref.ref(owner)
        self.name = name
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False  # inside a move
        self.runs = 0
        self.cpu = 0.0

    def wake(self) -> bool:
        """Have the thread move the journal soon (started where none runs); False where no thread
        can be started (the interpreter is shutting down): the caller moves it itself."""
        with self._lock:
            thread = self._thread
            if thread is None or not thread.is_alive():
                thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                try:
                    thread.start()
                except RuntimeError:
                    return False
                self._thread = thread
            self._wake.set()
        return True

    def _run(self) -> None:
        while self._next():
            owner = self._owner()
            if owner is None:
                return
            started = time.thread_time()
            try:
                owner.move_journal()
            finally:
                self.runs += 1
                self.cpu += time.thread_time() - started
                with self._lock:
                    self._running = False
            del owner
        owner = self._owner()
        if owner is not None:
            owner.close()  # this thread's connection

    def _next(self) -> bool:
        """Wait for a wake: True once one came (the thread is then moving), False after :data:`IDLE`
        seconds without one (the thread then ends: a wake from now on starts another)."""
        while not self._wake.wait(IDLE):
            with self._lock:
                if not self._wake.is_set():
                    self._thread = None
                    return False
        with self._lock:
            self._wake.clear()
            self._running = True
        return True

    def join(self, timeout: float) -> bool:
        """Wait until the thread has moved what it was woken for and no wake is pending (tests);
        whether it has, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._thread is None or not (self._running or self._wake.is_set()):
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def after_fork(self) -> None:
        """In a forked child (one thread): the parent's thread and its lock, which it may have held, forgotten."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._running = False
