"""The bounded, thread-safe event queue the threaded scan sources share (stdin, evdev, GPIO)."""

from __future__ import annotations

import logging
import threading
from collections import deque

from station.capture.frames import InputEvent

log = logging.getLogger(__name__)

MAX_LINE = 4096  # characters kept of one scanned line; the rest is discarded and logged
MAX_QUEUED = 1000  # scans kept while nobody polls; the oldest go first


class EventQueue:
    """A bounded, thread-safe queue of input events: producers ``put``, ``poll`` drains.

    Shared by the threaded sources (stdin, evdev, GPIO). When nobody drains it the oldest
    events are dropped (and logged) rather than growing without bound.
    """

    def __init__(self, name: str, maxlen: int = MAX_QUEUED) -> None:
        self.name = name
        self._items: deque[InputEvent] = deque()
        self._maxlen = maxlen
        self._lock = threading.Lock()
        self.overflowed = 0

    def put(self, event: InputEvent) -> None:
        with self._lock:
            if len(self._items) >= self._maxlen:
                self._items.popleft()
                self.overflowed += 1
                log.warning("%s: %d events queued and none polled; dropping the oldest",
                            self.name, self._maxlen)  # fmt: skip
            self._items.append(event)

    def drain(self) -> list[InputEvent]:
        """Everything queued, oldest first.

        Live sources stamp events with ``time.monotonic()``, which may be a few milliseconds
        ahead of the frame being processed; holding them back would only delay them.
        """
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items


__all__ = ["MAX_LINE", "MAX_QUEUED", "EventQueue"]
