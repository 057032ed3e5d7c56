"""Tests for the change gate: the decoder looks only where the picture changed."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from station.capture.barcodes import BarcodeDecoder, Detection, ScanWorker
from station.capture.changegate import (
    MARGIN,
    SCALE,
    ChangeGate,
    changed_cells,
    code_box,
    merge_boxes,
    plan_regions,
    thumbnail,
)
from station.capture.frames import Frame, RawScan
from station.capture.synthetic import Scenario, SyntheticCamera, render_card

W, H = 640, 480


def scene(seed: int = 3) -> np.ndarray:
    """A textured table with sensor noise: the background the gate must ignore."""
    rng = np.random.default_rng(seed)
    base = np.full((H, W, 3), (60, 100, 140), np.uint8)
    return np.clip(base + rng.integers(-4, 5, base.shape), 0, 255).astype(np.uint8)


def noisy(image: np.ndarray, seed: int) -> np.ndarray:
    """The same picture with fresh sensor noise (sigma ~2.6 grey levels)."""
    rng = np.random.default_rng(seed)
    return np.clip(image.astype(np.int16) + rng.integers(-4, 5, image.shape), 0, 255).astype(
        np.uint8
    )


def card(text: str = "PO-GATE-1") -> np.ndarray:
    return render_card(text, "qrcode", 160, W)


def with_card(image: np.ndarray, x: int, y: int, patch: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    return out


def frame(image: np.ndarray, t: float, index: int = 0) -> Frame:
    return Frame(image=image, t=t, wall=datetime(2026, 11, 30, tzinfo=UTC), index=index)


# ---- pure parts ---------------------------------------------------------------------------


def test_thumbnail_is_one_eighth_grey() -> None:
    th = thumbnail(scene())
    assert th.shape == (H // SCALE, W // SCALE) and th.dtype == np.int16


def test_sensor_noise_is_no_change_but_an_object_is() -> None:
    a, b = thumbnail(noisy(scene(), 1)), thumbnail(noisy(scene(), 2))
    assert changed_cells(a, b) == []
    moved = scene()
    moved[200:260, 300:380] = 230  # a 80x60 pale object
    cells = changed_cells(thumbnail(scene()), thumbnail(moved))
    assert len(cells) == 1
    x0, y0, x1, y1 = cells[0]
    # the object's cells (dilated by one): 300/8..380/8 x 200/8..260/8
    assert x0 <= 300 // SCALE and x1 >= 380 // SCALE and y0 <= 200 // SCALE and y1 >= 260 // SCALE
    assert x1 - x0 <= 80 // SCALE + 3 and y1 - y0 <= 60 // SCALE + 3


def test_merge_joins_overlapping_boxes_only() -> None:
    assert merge_boxes([(0, 0, 10, 10), (5, 5, 20, 20), (30, 30, 40, 40)]) == [
        (0, 0, 20, 20),
        (30, 30, 40, 40),
    ]
    # a chain: a overlaps b, b overlaps c, a does not overlap c
    assert merge_boxes([(0, 0, 10, 10), (20, 0, 30, 10), (8, 0, 22, 10)]) == [(0, 0, 30, 10)]
    assert merge_boxes([]) == []


def test_plan_adds_a_margin_clips_at_the_edges_and_keeps_hot_boxes() -> None:
    assert plan_regions([], [], W, H) == []
    boxes = plan_regions([(0, 0, 2, 2)], [(500, 300, 560, 360)], W, H)
    assert boxes == [(0, 0, 2 * SCALE + MARGIN, 2 * SCALE + MARGIN), (500, 300, 560, 360)]


def test_plan_falls_back_to_the_whole_frame_when_it_is_cheaper() -> None:
    # most of the frame changed
    assert plan_regions([(0, 0, W // SCALE, H // SCALE // 2 + 10)], [], W, H) is None
    # too many separate boxes
    many = [(i % 4 * 20, i // 4 * 30, i % 4 * 20 + 1, i // 4 * 30 + 1) for i in range(8)]
    assert plan_regions(many, [], W, H) is None


def test_code_box_is_generous_around_a_scan_line() -> None:
    # zxing may report a 1-D code as a thin line: the box must hold the whole symbol
    x0, y0, x1, y1 = code_box(((100, 200), (300, 200), (300, 201), (100, 201)), W, H)
    assert x0 <= 100 - 100 and x1 >= 300 + 100 and y0 <= 200 - 100 and y1 >= 201 + 100
    assert code_box(((2, 3), (5, 3), (5, 6), (2, 6)), W, H)[:2] == (0, 0)


# ---- the gate over time -------------------------------------------------------------------


def test_gate_looks_at_everything_first_then_only_at_changes() -> None:
    gate = ChangeGate(full_every_s=2.0)
    bg = scene()
    assert gate.plan(noisy(bg, 1), 0.0) is None  # nothing seen yet: the whole frame
    gate.done(None, 0.0, [], W, H)
    assert gate.plan(noisy(bg, 2), 0.1) == []  # only noise changed: nothing to decode
    gate.done([], 0.1, [], W, H)
    patch = card()
    boxes = gate.plan(with_card(noisy(bg, 3), 300, 150, patch), 0.2)
    assert boxes is not None and len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    ph, pw = patch.shape[:2]
    assert x0 <= 300 and y0 <= 150 and x1 >= 300 + pw and y1 >= 150 + ph  # all of the card
    assert (x1 - x0) * (y1 - y0) < 0.5 * W * H


def test_gate_keeps_looking_where_a_code_was_read_and_looks_at_all_periodically() -> None:
    gate = ChangeGate(full_every_s=5.0, hold_s=1.0)
    img = with_card(scene(), 300, 150, card())
    corners = ((320, 170), (400, 170), (400, 250), (320, 250))
    gate.plan(img, 0.0)
    gate.done(None, 0.0, [corners], W, H)
    # unchanged, but a code was read there: look at it again (keeps the debounce alive)
    hot = gate.plan(noisy(img, 5), 0.3)
    assert hot == [code_box(corners, W, H)]
    gate.done(hot, 0.3, [], W, H)  # one missed read: keep looking for a while
    assert gate.plan(noisy(img, 6), 0.6) == hot
    gate.done(hot, 0.6, [], W, H)
    assert gate.plan(noisy(img, 7), 1.2) == []  # no read for over hold_s: not hot any more
    gate.done([], 1.2, [], W, H)
    assert gate.plan(noisy(img, 8), 5.0) is None  # a full look is due
    gate.done(None, 5.0, [], W, H)
    assert gate.plan(noisy(img, 9), 0.5) is None  # time went back: a new camera session


def test_a_new_read_replaces_the_box_it_overlaps() -> None:
    gate = ChangeGate(full_every_s=5.0, hold_s=1.0)
    img = scene()
    gate.plan(img, 0.0)
    gate.done(None, 0.0, [((100, 100), (160, 100), (160, 160), (100, 160))], W, H)
    gate.plan(noisy(img, 1), 0.1)
    moved = ((110, 100), (170, 100), (170, 160), (110, 160))  # the card slid a little
    gate.done(None, 0.1, [moved], W, H)
    assert gate.plan(noisy(img, 2), 0.2) == [code_box(moved, W, H)]


def test_a_located_but_unread_box_is_looked_at_again_for_hold_s_only() -> None:
    gate = ChangeGate(full_every_s=100.0, hold_s=1.0)
    img = scene()
    gate.plan(img, 0.0)
    gate.done(None, 0.0, [], W, H)
    box = (300, 150, 500, 330)
    gate.plan(noisy(img, 1), 0.1)
    gate.done([box], 0.1, [], W, H, located=[box])
    assert gate.plan(noisy(img, 2), 0.4) == [box]  # unchanged, but it looked like a code
    gate.done([box], 0.4, [], W, H, located=[box])  # still unread: not refreshed
    assert gate.plan(noisy(img, 3), 0.9) == [box]
    gate.done([box], 0.9, [], W, H, located=[box])
    assert gate.plan(noisy(img, 4), 1.2) == []  # hold_s after it was first located
    gate.done([], 1.2, [], W, H)
    # a read there makes it an ordinary hot box
    gate.plan(noisy(img, 5), 1.3)
    gate.done([], 1.3, [], W, H, located=[box])
    corners = ((350, 200), (450, 200), (450, 280), (350, 280))
    gate.plan(noisy(img, 6), 1.4)
    gate.done([box], 1.4, [corners], W, H)
    assert gate.plan(noisy(img, 7), 1.5) == [code_box(corners, W, H)]


def test_slow_changes_add_up_until_they_are_looked_at() -> None:
    gate = ChangeGate(full_every_s=100.0)
    bg = scene()
    gate.plan(bg, 0.0)
    gate.done(None, 0.0, [], W, H)
    seen = []
    for step in range(1, 8):  # a region brightening by 3 levels per frame: each step is small
        img = bg.copy()
        img[100:200, 100:200] = np.clip(bg[100:200, 100:200].astype(np.int16) + 3 * step, 0, 255)
        boxes = gate.plan(img, step * 0.1)
        seen.append(bool(boxes))
        gate.done(boxes, step * 0.1, [], W, H)
    assert seen[:2] == [False, False] and any(seen)  # noticed once the total passes the threshold


def test_gate_needs_plan_before_done_and_a_positive_interval() -> None:
    with pytest.raises(RuntimeError):
        ChangeGate().done(None, 0.0, [], W, H)
    with pytest.raises(ValueError):
        ChangeGate(0)
    with pytest.raises(ValueError):
        ChangeGate(1.0, hold_s=-1)
    with pytest.raises(ValueError):
        BarcodeDecoder().decode_frame(scene(), 0)


# ---- through the ScanWorker ---------------------------------------------------------------


class Recording:
    """Decodes for real and remembers the size of every image it was given."""

    def __init__(self) -> None:
        self.decoder = BarcodeDecoder()
        self.sizes: list[tuple[int, int]] = []

    def decode_frame(self, image: np.ndarray, share: float = 1.0) -> list[Detection]:
        self.sizes.append(image.shape[:2])
        return self.decoder.decode_frame(image, share)


def test_gated_worker_reads_a_card_in_a_crop_at_its_frame_time_and_skips_a_still_scene() -> None:
    rec = Recording()
    worker = ScanWorker(rec, sync=True, gate=ChangeGate(full_every_s=2.0))
    worker.start()
    bg = scene()
    worker.submit(frame(noisy(bg, 1), 0.0))  # first look: whole frame
    worker.submit(frame(noisy(bg, 2), 0.1))  # nothing changed
    worker.submit(frame(noisy(bg, 3), 0.2))
    img = with_card(noisy(bg, 4), 250, 120, card("PO-GATE-7"))
    worker.submit(frame(img, 0.3))
    worker.submit(frame(noisy(img, 5), 0.4))  # still in view: re-read in its box
    # the first read is confirmed by the second look
    assert worker.poll(1.0) == [RawScan("PO-GATE-7", "camera", 0.4, "qrcode")]
    worker.stop()
    assert rec.sizes[0] == (H, W)
    assert len(rec.sizes) == 3  # two still frames never reached the decoder
    assert all(h * w < 0.5 * H * W for h, w in rec.sizes[1:])
    stats = worker.stats()
    assert stats.decoded == 5 and stats.unchanged == 2
    assert stats.pixels == H * W + sum(h * w for h, w in rec.sizes[1:])


def test_gated_and_ungated_workers_read_the_same_codes_on_the_synthetic_scene() -> None:
    sc = Scenario.from_dict(
        {
            "seed": 5,
            "event": [
                {"at": 0.5, "kind": "show", "code": "PO-SAME-1", "duration": 1.5},
                {
                    "at": 2.5,
                    "kind": "show",
                    "code": "SF1234567890123",
                    "symbology": "code128",
                    "duration": 1.5,
                },
                {"at": 4.5, "kind": "show", "code": "SEAL", "duration": 1.2},
                {"at": 6.0, "kind": "end"},
            ],
        }
    )
    texts = {}
    for gated in (False, True):
        cam = SyntheticCamera(640, 360, 30.0, sc, realtime=False)
        worker = ScanWorker(sync=True, gate=ChangeGate(1.5) if gated else None)
        worker.start()
        cam.start()
        while (f := cam.read()) is not None:
            if f.index % 3 == 0:
                worker.submit(f)
        worker.stop()
        events = worker.poll(1e9)
        # the first sighting of each code, to the frame
        first: dict[str, float] = {}
        for e in events:
            first.setdefault(e.text, e.t)
        texts[gated] = first
        if gated:
            assert worker.stats().pixels < worker.stats().decoded * 640 * 360
    assert texts[True] == texts[False]
    assert set(texts[True]) == {"PO-SAME-1", "SF1234567890123", "SEAL"}
