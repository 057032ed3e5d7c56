"""Located-but-unread codes decoded again by the whole pipeline, off the frame loop."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from station.runtime.priority import BACKGROUND_NICE, lower_thread_priority

log = logging.getLogger(__name__)

T = TypeVar("T")
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels

# Crops of one place offered less than this far apart belong to the same code lying there.
GAP_S = 0.5
# Jobs waiting for the thread; more are dropped (counted): a backlog of old crops is worthless.
MAX_WAITING = 2
# Below the scan worker's own priority: escalation may wait for anything else.
ESCALATION_NICE = 2 * BACKGROUND_NICE


@dataclass(frozen=True, slots=True)
class EscalatorStats:
    """Jobs run, jobs dropped for a full queue, reads that raised, and CPU seconds spent."""

    jobs: int = 0
    dropped: int = 0
    errors: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class _Place:
    box: Box
    last_t: float
    crops: list[tuple[float, Box, np.ndarray]] = field(default_factory=list)
    sent: bool = False


Job = list[tuple[float, Box, np.ndarray]]


class Escalator(Generic[T]):
    """Sends crops of a located code (it looks like a code, the frame's budget read nothing)
    to ``read``, the whole pipeline without a budget (the EAN model, deconvolution: 0.2-0.5 s
    per crop), once per code: the first ``looks`` crops of a place, from as many frames, make
    one job. Each crop is read on its own, so a text the job finds is ``looks`` independent
    looks, and the caller still has to confirm it (station/capture/confirm.py); the job stops at the
    first crop that gives nothing.

    Threaded (live cameras): ``offer`` never blocks; one daemon thread at a lower priority
    than the scan worker runs the jobs, at most ``MAX_WAITING`` waiting (more are dropped).
    ``sync=True`` (file replay, tests): a job runs inside the ``offer`` that completes it, so
    results do not depend on machine speed. ``take`` returns the finished reads:
    (frame time, crop box, what ``read`` found in that crop, in crop pixels).
    """

    def __init__(
        self, read: Callable[[np.ndarray], list[T]], *, sync: bool = False, looks: int = 3
    ) -> None:
        if looks < 1:
            raise ValueError("looks must be at least 1")
        self._read = read
        self._sync = sync
        self.looks = looks
        self._places: list[_Place] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: deque[Job] = deque()
        self._done: list[tuple[float, Box, list[T]]] = []
        self._stats = EscalatorStats()
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._running:
                raise RuntimeError("Escalator already started")
            self._running = True
        if not self._sync:
            self._thread = threading.Thread(target=self._loop, name="scan-escalator", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (a job in progress is waited for up to ``timeout``); idempotent."""
        with self._wake:
            self._running = False
            self._waiting.clear()
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("escalation still decoding after %.1f s; left to finish", timeout)
            self._thread = None

    def offer(self, box: Box, t: float, crop: np.ndarray) -> None:
        """A crop of the frame at ``t`` at ``box`` that looks like a code and gave no read.

        Called by the one thread that decodes frames, in time order. The crop is copied."""
        self._places = [
            p for p in self._places if 0 <= t - p.last_t <= GAP_S
        ]  # a place not offered for a while: the code has gone (or the timeline went back)
        place = next((p for p in self._places if _overlap(p.box, box)), None)
        if place is None:
            place = _Place(box, t)
            self._places.append(place)
        place.box, place.last_t = box, t
        if place.sent:
            return  # once per code
        place.crops.append((t, box, np.array(crop)))
        if len(place.crops) < self.looks:
            return
        job, place.crops, place.sent = place.crops, [], True
        if self._sync:
            self._run(job)
            return
        with self._wake:
            if not self._running:
                return
            if len(self._waiting) >= MAX_WAITING:
                self._stats = _add(self._stats, dropped=1)
                return
            self._waiting.append(job)
            self._wake.notify()

    def take(self) -> list[tuple[float, Box, list[T]]]:
        """The reads finished since the last call (crops that gave none are left out)."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def stats(self) -> EscalatorStats:
        with self._lock:
            return self._stats

    def _loop(self) -> None:
        lower_thread_priority(by=ESCALATION_NICE)
        while True:
            with self._wake:
                while not self._waiting and self._running:
                    self._wake.wait()
                if not self._running:
                    return
                job = self._waiting.popleft()
            self._run(job)

    def _run(self, job: Job) -> None:
        cpu = time.thread_time()
        found: list[tuple[float, Box, list[T]]] = []
        errors = 0
        for t, box, crop in job:
            try:
                got = self._read(crop)
            except Exception:
                errors += 1
                log.exception("escalated decode failed on a crop at t=%.3f", t)
                got = []
            if not got:
                # A text needs a look in every crop to be confirmed by this job alone: an
                # unreadable code costs one pipeline run, not ``looks`` of them.
                break
            found.append((t, box, got))
        took = time.thread_time() - cpu
        with self._lock:
            self._done.extend(found)
            self._stats = _add(self._stats, jobs=1, errors=errors, seconds=took)


def _add(st: EscalatorStats, **more: float) -> EscalatorStats:
    return EscalatorStats(
        jobs=st.jobs + int(more.get("jobs", 0)),
        dropped=st.dropped + int(more.get("dropped", 0)),
        errors=st.errors + int(more.get("errors", 0)),
        seconds=st.seconds + more.get("seconds", 0.0),
    )


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


__all__ = ["GAP_S", "MAX_WAITING", "Escalator", "EscalatorStats"]
