"""A daemon thread that repeats one job: on a timer, sooner when woken, backing off on errors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from station.runtime.backoff import Backoff
from station.store.clips import ClipTable
from station.store.cursors import SyncCursors
from station.store.index import open_index
from station.store.ledger import INDEX_NAME, Ledger
from station.store.uploads import UploadJournal

if TYPE_CHECKING:
    from station.config import Config
    from station.recording.recorder import FinishedClip

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a ``Repeater`` runs its job: every ``interval_s`` seconds; after a failure, again
    after ``retry_s``, doubling up to ``max_backoff_s`` while it keeps failing."""

    interval_s: float
    retry_s: float
    max_backoff_s: float

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.retry_s <= 0 or self.max_backoff_s < self.retry_s:
            raise ValueError("intervals must be positive and max_backoff_s >= retry_s")


class Repeater:
    """Runs ``job()`` on a daemon thread named ``name``, again every ``schedule.interval_s``
    seconds or as soon as ``wake()`` is called.

    A job that raises is logged and retried after the schedule's ``retry_s``, doubling up to
    its ``max_backoff_s`` while it keeps failing (the loop survives anything: the jobs keep
    their place in the index, not in memory); ``last_error`` holds the last failure until a run
    succeeds, and ``on_error`` (if given) hears of each one. ``stopping`` is set by ``stop``;
    a job should check it between steps and give up early. ``start`` twice is a programming
    error and raises.

    Between runs the thread calls ``wait(event, seconds)``, which returns when ``event`` (set
    by ``wake`` and ``stop``) is set or ``seconds`` have passed: ``threading.Event.wait`` by
    default; tests pass one that records the seconds instead of spending them.
    """

    def __init__(
        self,
        name: str,
        job: Callable[[], object],
        schedule: Schedule,
        *,
        on_error: Callable[[Exception], None] | None = None,
        wait: Callable[[threading.Event, float], object] = threading.Event.wait,
    ) -> None:
        self.name = name
        self.job = job
        self.schedule = schedule
        self.on_error = on_error
        self._wait = wait
        self.stopping = threading.Event()
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    @property
    def alive(self) -> bool:
        """Whether the thread is (still) running a pass."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None) -> None:
        """Ask the job to stop and wait up to ``timeout`` seconds for the thread."""
        self.stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s: still busy after %.0f s; left to finish", self.name, timeout or 0)

    def _loop(self) -> None:
        backoff = Backoff(self.schedule.retry_s, self.schedule.max_backoff_s)
        while not self.stopping.is_set():
            wait = self.schedule.interval_s
            try:
                self.job()
                backoff.reset()
                self.last_error = None
            except Exception as exc:
                if self.stopping.is_set():
                    break
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if self.on_error is not None:
                    self.on_error(exc)
                wait = backoff.next()
                log.warning("%s: %s; retrying in %.0f s", self.name, self.last_error, wait)
            self._wait(self._wake, wait)
            self._wake.clear()


class Sweepable(Protocol):
    """A cache that keeps itself within its bound (``FrameFiles``, ``ExportWorker``)."""

    def sweep(self) -> int:
        """Remove what is over the bound, stale files first; the bytes freed."""
        ...


# Key frames and bundles grow only as the site is used: every ten minutes is soon enough, and
# retention frees them at once when the disk runs short.
CACHE_SWEEP = Schedule(interval_s=600.0, retry_s=60.0, max_backoff_s=600.0)


class CacheSweep:
    """Keeps the caches of derived files (the site's key frames, its evidence bundles) within
    their bounds: one sweep at ``start`` on the caller's thread, then one every
    ``schedule.interval_s`` on the daemon thread "cache-sweep" (a ``Repeater``). A cache whose
    sweep fails is logged and the others are still swept; the pass is retried with backoff.
    """

    def __init__(self, caches: Sequence[Sweepable], schedule: Schedule = CACHE_SWEEP) -> None:
        self.caches = list(caches)
        self._repeater = Repeater("cache-sweep", self.sweep, schedule)

    def sweep(self) -> int:
        """Sweep every cache once; the bytes freed. Raises the first failure after trying all."""
        freed = 0
        failed: Exception | None = None
        for cache in self.caches:
            try:
                freed += cache.sweep()
            except Exception as exc:
                log.warning("cache sweep of %r failed: %s", cache, exc)
                failed = failed or exc
        if failed is not None:
            raise failed
        return freed

    def start(self) -> None:
        try:
            self.sweep()
        except Exception:  # the caches must not keep the station from recording
            log.exception("cache sweep at start failed")
        self._repeater.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._repeater.stop(timeout)


class IndexWorker:
    """What the archiver and the central sync share: their own connections to the index, a
    ``Repeater`` running ``job`` one pass at a time, and the recorder's hook that wakes it.

    Own connections (WAL) because the capture and finisher threads must never wait for this
    thread's statements, nor it for theirs; a ``ledger`` passed in (tests) is not closed.
    ``_stop`` is set when stopping: long passes check it between steps.
    """

    STOP_TIMEOUT_S = 15.0

    def __init__(
        self,
        cfg: Config,
        ledger: Ledger | None,
        *,
        name: str,
        job: Callable[[], object],
        schedule: Schedule,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.data_dir = cfg.station.data_dir
        self._own_ledger = ledger is None
        self.ledger = ledger or Ledger.in_data_dir(self.data_dir)
        # this thread's own connection to the index, and the table owners it works with
        self.index = open_index(self.data_dir / INDEX_NAME)
        self.journal = UploadJournal(self.index)
        self.cursors = SyncCursors(self.index)
        self.clips = ClipTable(self.index)
        self._repeater = Repeater(name, job, schedule, on_error=on_error)
        self._stop = self._repeater.stopping

    def start(self) -> None:
        self._repeater.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current step (waiting up to ``timeout``, default ``STOP_TIMEOUT_S``)
        and close the index connections."""
        self._repeater.stop(self.STOP_TIMEOUT_S if timeout is None else timeout)
        self.index.close()
        if self._own_ledger:
            self.ledger.close()

    @property
    def last_error(self) -> str | None:
        """The last pass's failure, None once a pass succeeds."""
        return self._repeater.last_error

    def wake(self) -> None:
        self._repeater.wake()

    def on_finished(self, finished: FinishedClip) -> None:
        """The recorder's callback: a clip was indexed; handle it soon."""
        if finished.record is not None:
            self._repeater.wake()


__all__ = ["CACHE_SWEEP", "CacheSweep", "IndexWorker", "Repeater", "Schedule", "Sweepable"]
