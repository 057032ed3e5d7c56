"""The scan worker's background escalation: located codes the frame budget cannot read."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from station.capture.barcodes import BarcodeDecoder, Detection, ScanWorker, read_located
from station.capture.changegate import ChangeGate
from station.capture.escalate import Escalator
from station.capture.frames import Frame, RawScan
from station.capture.synthetic import Scenario, SyntheticCamera

BLURRY = "ean13/ean13-5_07.png"  # a fixed-focus shot only the EAN model reads
BLURRY_TEXT = "9780345460950"


def frames(photo: np.ndarray, n: int) -> list[np.ndarray]:
    """The empty table, then ``n`` noisy frames with ``photo`` lying on it."""
    cam = SyntheticCamera(1280, 720, 30.0, Scenario.from_dict({"seed": 3, "event": []}), False)
    cam.start()
    table = cam.render(2.0)
    h, w = photo.shape[:2]
    rng = np.random.default_rng(1)
    out = [table]
    for _ in range(n):
        shown = table.copy()
        shown[250 : 250 + h, 500 : 500 + w] = photo
        noise = rng.integers(-2, 3, shown.shape)
        out.append(np.clip(shown.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return out


def frame(image: np.ndarray, i: int) -> Frame:
    return Frame(image=image, t=0.1 * i, wall=datetime(2026, 1, 1, tzinfo=UTC), index=3 * i)


def worker(escalate: bool, read=None, sync: bool = True) -> ScanWorker:
    decoder = BarcodeDecoder()
    esc = None
    if escalate:
        esc = Escalator(read or (lambda g: read_located(decoder, g)), sync=sync, looks=3)
    return ScanWorker(decoder, sync=sync, gate=ChangeGate(10.0), escalator=esc)


def test_a_blurred_ean_the_frame_budget_misses_is_read_by_the_background_escalation(
    barcodes_dir: Path,
) -> None:
    shown = frames(cv2.imread(str(barcodes_dir / BLURRY)), 6)
    plain = worker(escalate=False)
    plain.start()
    for i, image in enumerate(shown):
        plain.submit(frame(image, i))
    plain.stop()
    assert plain.poll(99.0) == []
    w = worker(escalate=True)
    w.start()
    for i, image in enumerate(shown):
        w.submit(frame(image, i))
    w.stop()
    # located at 0.1, settled and offered at 0.2, 0.3, 0.4: three model reads, confirmed
    # as three looks of three frames (a model read alone never is)
    assert w.poll(99.0) == [RawScan(BLURRY_TEXT, "camera", 0.4, "ean13")]
    assert w.stats().escalations == 1 and w.stats().escalation_seconds > 0


def wait_for(cond, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_the_frame_loop_never_waits_for_an_escalation(barcodes_dir: Path) -> None:
    shown = frames(cv2.imread(str(barcodes_dir / BLURRY)), 12)
    decoder = BarcodeDecoder()
    started, release = threading.Event(), threading.Event()

    def slow_read(gray: np.ndarray) -> list[Detection]:
        started.set()
        release.wait(60.0)
        return read_located(decoder, gray)

    w = worker(escalate=True, read=slow_read, sync=False)
    w.start()
    try:
        i = 0
        while not started.is_set() and i < 8:
            before = w.stats().decoded
            w.submit(frame(shown[i], i))
            assert wait_for(lambda b=before: w.stats().decoded > b)
            i += 1
        assert started.is_set()  # the escalation is now stuck in its read ...
        for j in range(i, i + 3):  # ... and the worker still decodes every frame offered
            before = w.stats().decoded
            t0 = time.perf_counter()
            w.submit(frame(shown[j], j))
            assert time.perf_counter() - t0 < 0.5
            assert wait_for(lambda b=before: w.stats().decoded > b)
        assert w.poll(99.0) == []
        release.set()
        assert wait_for(lambda: w.stats().escalations == 1)
        # the results join the confirmation at the next decoded frame
        j = i + 3
        w.submit(frame(shown[j], j))
        scans: list = []
        assert wait_for(lambda: bool(scans.extend(w.poll(99.0)) or scans))
        assert [(s.text, s.symbology) for s in scans] == [(BLURRY_TEXT, "ean13")]
    finally:
        release.set()
        w.stop()
