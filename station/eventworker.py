"""A queue and a thread that handle station events off the capture loop."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from station.events import StationEvent

log = logging.getLogger(__name__)


class EventWorker:
    """Runs ``handle(event)`` on its own daemon thread ``name``, one event at a time.

    ``submit`` never blocks (the capture loop calls it through an event listener): a full
    queue drops the event, logged. A handler's error is logged and the worker goes on.
    ``what`` names the work in the log ("order lookup").
    """

    def __init__(
        self,
        name: str,
        what: str,
        handle: Callable[[StationEvent], object],
        *,
        max_queue: int,
        close_timeout_s: float,
    ) -> None:
        self.what = what
        self._handle = handle
        self._close_timeout_s = close_timeout_s
        self._queue: queue.Queue[StationEvent | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, event: StationEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("%s queue full; %r dropped", self.what, event.order_id)

    def _loop(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                self._handle(event)
            except Exception:
                log.exception("%s of %r failed", self.what, event.order_id)

    def close(self) -> None:
        """Stop after the queued events (waiting at most ``close_timeout_s`` for each step)."""
        if self._thread.is_alive():
            try:
                self._queue.put(None, timeout=self._close_timeout_s)
            except queue.Full:
                return
            self._thread.join(timeout=self._close_timeout_s)
