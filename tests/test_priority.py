"""Background threads (encoder, barcode worker) run below the capture loop's priority."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from station.capture.barcodes import Detection, ScanWorker
from station.capture.frames import Frame
from station.runtime.priority import BACKGROUND_NICE, lower_thread_priority, thread_ids

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature"
)


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def test_lowering_one_thread_leaves_the_caller_alone() -> None:
    mine = nice_of(threading.get_native_id())
    seen: list[int] = []

    def body() -> None:
        assert lower_thread_priority()
        seen.append(nice_of(threading.get_native_id()))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [min(19, mine + BACKGROUND_NICE)]
    assert nice_of(threading.get_native_id()) == mine
    assert threading.get_native_id() in thread_ids()
    assert lower_thread_priority(2**22 + 12345) is False  # no such thread: no exception


ENCODER_THREADS = """
import json, os, sys, threading, time
from pathlib import Path
import numpy as np
from station.runtime.priority import thread_ids
from station.recording.writer import ClipWriter, EncoderSettings, to_i420

frame = to_i420(np.full((240, 320, 3), 90, np.uint8))  # OpenCV starts its pool first
before = thread_ids()
w = ClipWriter(Path(sys.argv[1]) / "c.mp4", EncoderSettings(320, 240, 30.0, threads=2))
w.write(frame, 0.0)
deadline = time.monotonic() + 5
while w.frames_encoded < 1 and time.monotonic() < deadline:
    time.sleep(0.01)
nice = sorted(os.getpriority(os.PRIO_PROCESS, t) for t in thread_ids() - before)
w.finish()
me = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
print(json.dumps({"me": me, "new": nice}))
"""


def test_encoder_threads_run_below_the_capturing_thread(tmp_path: Path) -> None:
    # In a fresh process, so no other test's background thread can start meanwhile.
    out = subprocess.run(
        [sys.executable, "-c", ENCODER_THREADS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["new"], "the writer starts at least its own thread"
    assert got["new"] == [min(19, got["me"] + BACKGROUND_NICE)] * len(got["new"])


class Nice:
    def __init__(self) -> None:
        self.nice: list[int] = []

    def decode_frame(self, image: np.ndarray, share: float = 1.0) -> list[Detection]:
        self.nice.append(nice_of(threading.get_native_id()))
        return []


def test_scan_worker_thread_runs_below_the_capturing_thread() -> None:
    from datetime import UTC, datetime

    dec = Nice()
    worker = ScanWorker(dec)
    worker.start()
    try:
        wall = datetime(2026, 1, 1, tzinfo=UTC)
        worker.submit(Frame(image=np.zeros((8, 8, 3), np.uint8), t=0.0, wall=wall, index=0))
        deadline = time.monotonic() + 5
        while not dec.nice and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop()
    mine = nice_of(threading.get_native_id())
    assert dec.nice == [min(19, mine + BACKGROUND_NICE)]
