"""A daemon thread that repeats one job: on a timer, sooner when woken, backing off on errors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Repeater:
    """Runs ``job()`` on a daemon thread named ``name``, again every ``interval_s`` seconds or
    as soon as ``wake()`` is called.

    A job that raises is logged and retried after ``retry_s``, doubling up to
    ``max_backoff_s`` while it keeps failing (the loop survives anything: the jobs keep their
    place in the index, not in memory); ``last_error`` holds the last failure until a run
    succeeds, and ``on_error`` (if given) hears of each one. ``stopping`` is set by ``stop``;
    a job should check it between steps and give up early. ``start`` twice is a programming
    error and raises.
    """

    def __init__(
        self,
        name: str,
        job: Callable[[], object],
        *,
        interval_s: float,
        retry_s: float,
        max_backoff_s: float,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        if interval_s <= 0 or retry_s <= 0 or max_backoff_s < retry_s:
            raise ValueError("intervals must be positive and max_backoff_s >= retry_s")
        self.name = name
        self.job = job
        self.interval_s = interval_s
        self.retry_s = retry_s
        self.max_backoff_s = max_backoff_s
        self.on_error = on_error
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

    def stop(self, timeout: float | None) -> None:
        """Ask the job to stop and wait up to ``timeout`` seconds for the thread."""
        self.stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s: still busy after %.0f s; left to finish", self.name, timeout or 0)

    def _loop(self) -> None:
        delay = self.retry_s
        while not self.stopping.is_set():
            wait = self.interval_s
            try:
                self.job()
                delay = self.retry_s
                self.last_error = None
            except Exception as exc:
                if self.stopping.is_set():
                    break
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if self.on_error is not None:
                    self.on_error(exc)
                log.warning("%s: %s; retrying in %.0f s", self.name, self.last_error, delay)
                wait, delay = delay, min(delay * 2, self.max_backoff_s)
            self._wake.wait(wait)
            self._wake.clear()


__all__ = ["Repeater"]
