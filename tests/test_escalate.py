"""The escalation of located-but-unread codes to the whole pipeline
(station/capture/escalate.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from station.capture.escalate import GAP_S, MAX_WAITING, Escalator

BOX = (100, 100, 300, 250)
MOVED = (104, 98, 306, 252)  # the same code a little later: overlapping
ELSEWHERE = (700, 400, 900, 600)


def crop(value: int) -> np.ndarray:
    return np.full((150, 200), value, np.uint8)


class Reader:
    """Reads a crop's first pixel as text; optionally blocks until released."""

    def __init__(self, block: bool = False) -> None:
        self.calls: list[int] = []
        self.release = threading.Event()
        self.started = threading.Event()
        if not block:
            self.release.set()

    def __call__(self, gray: np.ndarray) -> list[str]:
        self.calls.append(int(gray[0, 0]))
        self.started.set()
        self.release.wait(10.0)
        return [] if gray[0, 0] == 0 else [f"code-{gray[0, 0]}"]


def test_a_job_is_the_first_crops_of_one_code_from_as_many_frames_once() -> None:
    read = Reader()
    esc = Escalator(read, sync=True, looks=3)
    esc.start()
    esc.offer(BOX, 0.1, crop(1))
    esc.offer(MOVED, 0.2, crop(2))
    assert read.calls == [] and esc.take() == []
    esc.offer(BOX, 0.3, crop(3))
    assert read.calls == [1, 2, 3]
    assert [(t, found) for t, _box, found in esc.take()] == [
        (0.1, ["code-1"]),
        (0.2, ["code-2"]),
        (0.3, ["code-3"]),
    ]
    # the same code lying there: never again, however long it is offered
    for i in range(4, 20):
        esc.offer(BOX, 0.1 * i, crop(9))
    assert read.calls == [1, 2, 3] and esc.take() == []
    # another place is another code
    for i in range(3):
        esc.offer(ELSEWHERE, 2.0 + 0.1 * i, crop(7))
    assert read.calls[3:] == [7, 7, 7]
    # the first place offered again after a pause: a new code put down there
    for i in range(3):
        esc.offer(BOX, 2.1 + GAP_S + 0.1 * i, crop(5))
    assert read.calls[6:] == [5, 5, 5]
    assert esc.stats().jobs == 3
    esc.stop()


def test_a_job_stops_at_the_first_crop_that_reads_nothing() -> None:
    read = Reader()
    esc = Escalator(read, sync=True, looks=3)
    esc.start()
    for i, v in enumerate((0, 2, 3)):
        esc.offer(BOX, 0.1 * i, crop(v))
    assert read.calls == [0] and esc.take() == []
    esc.stop()


def test_threaded_offer_never_waits_for_a_running_job_and_drops_a_backlog() -> None:
    read = Reader(block=True)
    esc = Escalator(read, sync=False, looks=1)
    esc.start()
    try:
        esc.offer(BOX, 0.0, crop(1))
        assert read.started.wait(5.0)  # the thread is inside the (blocked) read
        started = time.perf_counter()
        for i in range(MAX_WAITING + 2):
            esc.offer((1000 * (i + 1), 0, 1000 * (i + 1) + 50, 50), 0.1, crop(2))
        assert time.perf_counter() - started < 0.5  # offer never waited for the read
        assert esc.stats().dropped == 2
        read.release.set()
        deadline = time.monotonic() + 10.0
        done: list = []
        while len(done) < MAX_WAITING + 1 and time.monotonic() < deadline:
            done += esc.take()
            time.sleep(0.01)
        assert len(done) == MAX_WAITING + 1
        assert esc.stats().jobs == MAX_WAITING + 1 and esc.stats().seconds >= 0
    finally:
        read.release.set()
        esc.stop()


def test_a_read_that_raises_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    def broken(gray: np.ndarray) -> list[str]:
        raise ValueError("bad crop")

    esc: Escalator[str] = Escalator(broken, sync=True, looks=1)
    esc.start()
    esc.offer(BOX, 0.0, crop(1))
    assert esc.take() == [] and esc.stats().errors == 1
    assert "escalated decode failed" in caplog.text
    esc.stop()
