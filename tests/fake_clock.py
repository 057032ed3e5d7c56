"""A monotonic clock the test moves by hand, for code that takes ``clock=``."""

from __future__ import annotations

import threading


class FakeClock:
    """Returns ``now`` until ``advance`` moves it; safe to read from other threads."""

    def __init__(self, start: float = 100.0) -> None:
        self._lock = threading.Lock()
        self.now = start

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self.now += seconds
            return self.now
