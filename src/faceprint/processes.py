"""Helpers for worker processes (bulk import workers, video job workers)."""

from __future__ import annotations

import os
import threading
import time

PARENT_POLL = 0.5
"""Seconds between a worker's checks that its parent is still alive."""


def exit_with_parent(parent: int, interval: float = PARENT_POLL) -> threading.Thread:
    """Watch, on a daemon thread, that ``parent`` is still this process's parent, and exit the
    process as soon as it is not (it died, even by ``kill -9``, and this process was handed to
    init): a worker blocked on its queue would otherwise wait forever, holding its models' memory."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    thread = threading.Thread(target=watch, name="faceprint-parent-watch", daemon=True)
    thread.start()
    return thread
