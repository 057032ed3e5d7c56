"""Lower the CPU priority of background threads so the capture loop is never starved."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

# Nice steps below the capture loop: at +5 the kernel gives a busy background thread about a
# third of the CPU share of the capture thread when both want the same core, so a burst of
# encoding (the pre-roll at a clip's start) or a slow decode waits instead of dropping frames.
BACKGROUND_NICE = 5


def thread_ids() -> set[int]:
    """Native ids of this process's threads (empty where /proc is not available)."""
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def lower_thread_priority(tid: int | None = None, by: int = BACKGROUND_NICE) -> bool:
    """Raise the nice value of one thread (default: the calling one) by ``by``.

    On Linux the nice value belongs to each thread, and raising it needs no privilege.
    Threads the thread starts later inherit it. Returns False (and logs at debug) where the
    platform does not allow it; never raises, as priority is an optimisation.
    """
    tid = threading.get_native_id() if tid is None else tid
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + by))
    except (OSError, AttributeError) as exc:
        log.debug("cannot lower the priority of thread %d: %s", tid, exc)
        return False
    return True


__all__ = ["BACKGROUND_NICE", "lower_thread_priority", "thread_ids"]
