"""The Repeater behind the archiver and the central sync: timer, wake, back-off, stop."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from station.background import Repeater


def wait_until(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_runs_at_start_and_again_when_woken() -> None:
    runs: list[float] = []
    r = Repeater("t-wake", lambda: runs.append(time.monotonic()), interval_s=60,
                 retry_s=1, max_backoff_s=2)  # fmt: skip
    r.start()
    try:
        assert wait_until(lambda: len(runs) == 1)
        time.sleep(0.05)
        assert len(runs) == 1  # the next timed run is a minute away
        r.wake()
        assert wait_until(lambda: len(runs) == 2)
    finally:
        r.stop(5)
    assert not any(t.name == "t-wake" for t in threading.enumerate())
    with pytest.raises(RuntimeError):
        r.start()


def test_failures_back_off_doubling_and_clear_when_a_run_succeeds() -> None:
    calls: list[float] = []
    errors: list[Exception] = []

    def job() -> None:
        calls.append(time.monotonic())
        if len(calls) <= 3:
            raise OSError(f"store down {len(calls)}")

    r = Repeater("t-backoff", job, interval_s=60, retry_s=0.05, max_backoff_s=0.1,
                 on_error=errors.append)  # fmt: skip
    r.start()
    try:
        assert wait_until(lambda: len(calls) >= 4)
        assert r.last_error is None  # the fourth run succeeded
    finally:
        r.stop(5)
    gaps = [b - a for a, b in itertools.pairwise(calls)][:3]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.095  # 0.05, then capped 0.1
    assert [str(e) for e in errors] == ["store down 1", "store down 2", "store down 3"]


def test_last_error_is_kept_while_failing_and_stop_ends_a_long_wait() -> None:
    r = Repeater("t-fail", lambda: 1 / 0, interval_s=60, retry_s=30, max_backoff_s=60)
    r.start()
    assert wait_until(lambda: r.last_error is not None)
    assert r.last_error.startswith("ZeroDivisionError")
    started = time.monotonic()
    r.stop(5)  # wakes the 30 s back-off wait at once
    assert time.monotonic() - started < 2
    assert r.stopping.is_set()


def test_bad_intervals_are_refused() -> None:
    with pytest.raises(ValueError):
        Repeater("x", lambda: None, interval_s=0, retry_s=1, max_backoff_s=1)
    with pytest.raises(ValueError):
        Repeater("x", lambda: None, interval_s=1, retry_s=5, max_backoff_s=1)
