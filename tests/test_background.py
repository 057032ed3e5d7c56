"""The Repeater behind the archiver and the central sync: timer, wake, back-off, stop.

Its waits go through a recording stand-in: the tests read which waits it asked for instead of
timing them, and a wait that does not "pass" lasts until it is woken or stopped.
"""

from __future__ import annotations

import threading

import pytest

from station.runtime.background import Repeater, Schedule


class Waits:
    """The Repeater's ``wait``: records the seconds of each; the first ``elapse`` of them pass
    at once, as if the time went by; later ones last until their event is set."""

    def __init__(self, elapse: int = 0) -> None:
        self.seconds: list[float] = []
        self.elapse = elapse
        self._cond = threading.Condition()

    def __call__(self, event: threading.Event, seconds: float) -> bool:
        with self._cond:
            self.seconds.append(seconds)
            self._cond.notify_all()
            if len(self.seconds) <= self.elapse:
                return False
        event.wait()
        return True

    def until(self, count: int) -> list[float]:
        """Block until the thread has started its ``count``-th wait; the waits so far."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.seconds) >= count, timeout=30)
            return list(self.seconds)


def test_runs_at_start_then_waits_its_interval_and_runs_again_when_woken() -> None:
    runs: list[int] = []  # how many waits had begun before each run
    waits = Waits()
    r = Repeater("t-wake", lambda: runs.append(len(waits.seconds)), Schedule(60, 1, 2), wait=waits)
    r.start()
    try:
        assert waits.until(1) == [60]  # the next timed run is a minute away
        assert runs == [0]
        r.wake()
        assert waits.until(2) == [60, 60]
        assert runs == [0, 1]
    finally:
        r.stop(5)
    assert not r.alive and not any(t.name == "t-wake" for t in threading.enumerate())
    with pytest.raises(RuntimeError):
        r.start()


def test_runs_again_when_its_interval_has_passed() -> None:
    runs: list[int] = []
    waits = Waits(elapse=2)
    r = Repeater("t-timer", lambda: runs.append(len(waits.seconds)), Schedule(60, 1, 2), wait=waits)
    r.start()
    try:
        assert waits.until(3) == [60, 60, 60]
        assert runs == [0, 1, 2]
    finally:
        r.stop(5)
    assert not r.alive


def test_failures_back_off_doubling_to_the_cap_and_start_over_after_a_success() -> None:
    calls: list[int] = []
    errors: list[Exception] = []

    def job() -> None:
        calls.append(len(calls) + 1)
        if len(calls) in (1, 2, 3, 5):
            raise OSError(f"store down {len(calls)}")

    waits = Waits(elapse=4)
    r = Repeater("t-backoff", job, Schedule(60, 5, 12), on_error=errors.append, wait=waits)
    r.start()
    try:
        # 5, doubled to 10, capped at 12; the success waits the interval; then 5 again.
        assert waits.until(5) == [5, 10, 12, 60, 5]
        assert r.last_error == "OSError: store down 5"
    finally:
        r.stop(5)
    assert calls == [1, 2, 3, 4, 5]
    assert [str(e) for e in errors] == [f"store down {n}" for n in (1, 2, 3, 5)]


def test_a_success_clears_the_last_error() -> None:
    calls: list[int] = []

    def job() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("store down")

    waits = Waits(elapse=1)
    r = Repeater("t-clear", job, Schedule(60, 5, 5), wait=waits)
    r.start()
    try:
        assert waits.until(2) == [5, 60]
        assert r.last_error is None and len(calls) == 2
    finally:
        r.stop(5)


def test_last_error_is_kept_while_failing_and_stop_ends_a_long_wait() -> None:
    waits = Waits()  # no wait passes by itself: only stop() can end it
    r = Repeater("t-fail", lambda: 1 / 0, Schedule(60, 30, 60), wait=waits)
    r.start()
    assert waits.until(1) == [30]
    assert r.last_error is not None and r.last_error.startswith("ZeroDivisionError")
    r.stop(5)  # wakes the 30 s back-off wait
    assert not r.alive
    assert r.stopping.is_set()


def test_the_default_wait_is_the_event_s() -> None:
    """Without a ``wait``, a real 60 s interval is cut short by ``wake`` and ``stop``."""
    ran = threading.Semaphore(0)
    r = Repeater("t-real", ran.release, Schedule(60, 1, 2))
    r.start()
    try:
        assert ran.acquire(timeout=30)
        r.wake()
        assert ran.acquire(timeout=30)  # long before the minute is up
    finally:
        r.stop(30)
    assert not r.alive


def test_bad_intervals_are_refused() -> None:
    with pytest.raises(ValueError):
        Schedule(0, 1, 1)
    with pytest.raises(ValueError):
        Schedule(1, 5, 1)
