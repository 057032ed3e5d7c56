"""A queue and a thread that handle station events (or sounds) off the capture loop."""

from __future__ import annotations

import logging
import queue
import threading
import urllib.error
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from station.floor.events import StationEvent

log = logging.getLogger(__name__)

T = TypeVar("T")

# (order ID, manifest key, value) -> whether it went into the manifest of the order's open clip
Annotate = Callable[[str, str, Any], bool]


def fetch_failure(exc: Exception) -> str:
    """What a handler says of a failed fetch, in the log and the manifest: an HTTP error by its
    status (closed: its unread body holds the connection), anything else by its type and text;
    at most 300 characters."""
    if isinstance(exc, urllib.error.HTTPError):
        exc.close()
        return f"HTTP {exc.code}"
    return f"{type(exc).__name__}: {exc}"[:300]


class QueueWorker(Generic[T]):
    """Runs ``handle(item)`` on its own daemon thread ``name``, one item at a time.

    ``submit`` never blocks (the capture loop calls it through an event listener): a full
    queue drops the item, logged, and ``submit`` returns False. A handler's error is logged
    and the worker goes on. ``describe(item)`` names the work on one item in the log
    ("order lookup of 'PO-1'", "playing sound order-started").
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[T], object],
        describe: Callable[[T], str],
        *,
        max_queue: int,
        close_timeout_s: float,
    ) -> None:
        self._handle = handle
        self._describe = describe
        self._close_timeout_s = close_timeout_s
        self._queue: queue.Queue[T | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            log.warning("queue full; %s dropped", self._describe(item))
            return False
        return True

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._handle(item)
            except Exception:
                log.exception("%s failed", self._describe(item))

    def close(self) -> None:
        """Stop after the queued items (waiting at most ``close_timeout_s`` for each step)."""
        if self._thread.is_alive():
            try:
                self._queue.put(None, timeout=self._close_timeout_s)
            except queue.Full:
                return
            self._thread.join(timeout=self._close_timeout_s)


class OrderEventWorker:
    """Base of the event listeners that work on an order's events off the capture loop.

    ``on_event`` submits each event ``wants`` to a ``QueueWorker`` thread (named
    ``thread_name``, at most ``max_queue`` events waiting) that runs ``handle``; a full queue
    drops the event, logged as "<work> of '<order>'". ``close`` stops after the queued events,
    waiting at most ``timeout_s`` (the handler's own timeout) + 1 s.
    """

    thread_name: str
    work: str  # what the handler does, for the log ("order lookup")
    max_queue: int

    def __init__(self, handle: Callable[[StationEvent], object], *, timeout_s: float) -> None:
        self._worker: QueueWorker[StationEvent] = QueueWorker(
            self.thread_name,
            handle,
            lambda event: f"{self.work} of {event.order_id!r}",
            max_queue=self.max_queue,
            close_timeout_s=timeout_s + 1,
        )

    def wants(self, event: StationEvent) -> bool:
        raise NotImplementedError

    def on_event(self, event: StationEvent) -> None:
        if self.wants(event):
            self._worker.submit(event)

    def close(self) -> None:
        self._worker.close()
