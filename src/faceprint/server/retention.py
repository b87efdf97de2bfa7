"""Face retention on the server: one process of the home applies each collection's face retention
period every ``every`` seconds (``faceprint.erasure.RetentionSchedule``), as the system caller
``face-retention``. Of several processes on one home (workers, servers), the one that holds the
home's retention lock does it; the others try the lock again at each period."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faceprint.home import FileLock

if TYPE_CHECKING:
    from faceprint.erasure import RetentionSchedule
    from faceprint.service import Faceprint

LOCK_NAME = "retention.lock"


class RetentionRunner:
    """Starts and stops the periodic face retention of ``fp``'s home (``every`` seconds; 0: never)."""

    def __init__(self, fp: Faceprint, every: float) -> None:
        self.fp = fp
        self.every = every
        self.lock = FileLock(fp.home / LOCK_NAME)
        self._schedule: RetentionSchedule | None = None

    def start(self) -> None:
        if self.every <= 0 or self._schedule is not None:
            return
        from faceprint.erasure import RetentionSchedule

        self._schedule = RetentionSchedule(self._apply, every=self.every)
        self._schedule.start()

    def _apply(self, **kwargs: Any) -> Any:
        """Apply retention if this process holds (or now takes) the home's retention lock."""
        if not self.lock.acquire():
            return None
        return self.fp.apply_retention(**kwargs)

    def stop(self) -> None:
        if self._schedule is not None:
            self._schedule.stop()
            self._schedule = None
        self.lock.release()
