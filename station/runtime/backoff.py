"""One back-off helper for everything that retries: a camera, a scanner, an upload."""

from __future__ import annotations


class Backoff:
    """Delays for retrying what keeps failing: ``first``, then ``factor`` times longer each
    time, never more than ``maximum``; ``reset`` after a success starts over.

    Pure bookkeeping, no sleeping: the caller waits (on its stop event, so a stop is not
    delayed by a back-off). Not thread-safe; one retry loop owns one ``Backoff``.
    """

    def __init__(self, first: float, maximum: float, factor: float = 2.0) -> None:
        if first <= 0 or maximum < first or factor < 1:
            raise ValueError("need 0 < first <= maximum and factor >= 1")
        self.first, self.maximum, self.factor = first, maximum, factor
        self._next = first
        self.failures = 0

    def next(self) -> float:
        """The delay before the next try (counts one more failure)."""
        delay = self._next
        self.failures += 1
        self._next = min(self._next * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.first
        self.failures = 0


__all__ = ["Backoff"]
