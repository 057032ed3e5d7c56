"""A queue and a thread that handle station events (or sounds) off the capture loop."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


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
