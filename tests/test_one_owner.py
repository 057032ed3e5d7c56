"""Every second of video belongs to one order: pre-roll never reaches into another clip."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import av
import numpy as np
import pytest
from recorder_support import encoded_recorder
from scan_support import LateScans

from station import config as config_mod
from station.capture.frames import Caption, Frame, RawScan
from station.capture.synthetic import Scenario, SyntheticCamera
from station.errors import RecordingError
from station.floor.events import EventKind, EventRecorder
from station.floor.feedback import Feedback, RecordingSink, prepare_sounds
from station.floor.screen import ScreenState
from station.proof.verify import verify_clip
from station.recording.recorder import FinishedClip
from station.runtime.faults import FlakyCamera, Outage
from station.service import Assembly, assemble
from station.store.clips import ClipSearch
from station.store.ledger import ClipRecord, Ledger

W, H, FPS = 160, 96, 10.0
WALL0 = datetime(2026, 12, 4, 9, 0, 0).astimezone()


def i420(n: int) -> np.ndarray:
    return np.full((H * 3 // 2, W), n % 256, np.uint8)


def owners_ok(finished: list[FinishedClip]) -> None:
    """Each clip shows only its own order (or none, in idle pre-roll); spans never overlap."""
    spans = []
    for f in finished:
        labels = [label for label, _n in f.frame_labels]
        assert set(labels) <= {None, f.order_id}, (f.order_id, f.frame_labels)
        # Idle frames only as pre-roll, before the first frame of the order itself.
        if None in labels:
            assert labels.index(f.order_id) > max(i for i, v in enumerate(labels) if v is None)
        if f.record is not None:
            assert sum(n for _l, n in f.frame_labels) == f.record.frame_count
        assert f.span is not None
        spans.append(f.span)
    spans.sort()
    for (_a0, a1), (b0, _b1) in itertools.pairwise(spans):
        assert a1 < b0, spans


class SteppedWall(SyntheticCamera):
    """The synthetic camera on a Pi with no battery clock, its wall clock stepped by NTP: by
    ``d`` seconds from camera time ``at`` on, for each (at, d) of ``steps``. Camera time (the
    monotonic clock) runs on untouched."""

    def __init__(self, *a: Any, steps: tuple[tuple[float, float], ...], **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.steps = steps

    def read(self, timeout: float = 2.0) -> Frame | None:
        frame = super().read(timeout)
        if frame is None:
            return None
        shift = sum(d for at, d in self.steps if frame.t >= at)
        return dataclasses.replace(frame, wall=frame.wall + timedelta(seconds=shift))


def run_keys(
    cfg: config_mod.Config,
    keys: list[tuple[float, str]],
    *,
    seed: int,
    end: float,
    still: tuple[tuple[float, float], ...] = (),
    wall_steps: tuple[tuple[float, float], ...] = (),
) -> tuple[list[ClipRecord], list[FinishedClip]]:
    """The station on a synthetic scene whose scans are ``keys`` (camera time, typed text),
    frozen for each (start, duration) in ``still``, its wall clock stepped as ``wall_steps``
    say (``SteppedWall``), ended at ``end``: the indexed clips and what the recorder
    finished."""
    events = [{"at": at, "kind": "key", "text": text} for at, text in keys]
    events += [{"at": at, "kind": "still", "duration": d} for at, d in still]
    scenario = Scenario.from_dict({"seed": seed, "event": [*events, {"at": end, "kind": "end"}]})
    finished: list[FinishedClip] = []
    cam = SteppedWall(W, H, FPS, scenario, realtime=False, start_wall=WALL0, steps=wall_steps)
    asm = assemble(cfg, camera=cam, live_view=False, on_finished=finished.append)
    try:
        asm.station.run(threading.Event())
        return asm.ledger.clips(), finished
    finally:
        asm.close()


def late_station(
    cfg: config_mod.Config, scans: list[tuple[float, RawScan]], *, seed: int, end: float
) -> Assembly:
    """The station on a synthetic scene ended at ``end``, its ``scans`` reaching it late (at
    their poll time, stamped with their own): not run yet (``ran``)."""
    scenario = Scenario.from_dict({"seed": seed, "event": [{"at": end, "kind": "end"}]})
    cam = SyntheticCamera(W, H, FPS, scenario, realtime=False)
    asm = assemble(cfg, camera=cam, live_view=False)
    asm.station.scan_sources.append(LateScans(scans))
    return asm


@contextlib.contextmanager
def ran(asm: Assembly) -> Iterator[Ledger]:
    """Run the station to the end of its input; its index until the assembly is closed."""
    try:
        asm.station.run(threading.Event())
        yield asm.ledger
    finally:
        asm.close()


def test_recorder_pre_roll_starts_after_the_previous_clip(
    cfg: config_mod.Config, ledger: Ledger
) -> None:
    cfg = cfg.replace("session", pre_roll_s=3.0).replace("proof", enabled=False)
    # A keyframe every 0.5 s: A's pre-roll can start exactly 3 s before its scan.
    rec = encoded_recorder(cfg, ledger, W, H, FPS, keyframe_interval_s=0.5)
    t, label = 0.0, None
    try:
        for i in range(80):
            if i == 35:  # A scanned: 3 s of idle pre-roll
                rec.start("A", t, wall=WALL0 + timedelta(seconds=t))
                label = "A"
            if i == 50:  # B scanned 1.5 s later: next-order, then B at once
                rec.stop("next-order", t)
                rec.start("B", t, wall=WALL0 + timedelta(seconds=t))
                label = "B"
            rec.push(i420(i), t, WALL0 + timedelta(seconds=t), label)
            t = round(t + 1 / FPS, 6)
        rec.stop("sealed", t)
        rec.wait_idle()
    finally:
        rec.close()
    a, b = rec.finished
    assert (a.order_id, b.order_id) == ("A", "B")
    assert a.frame_labels == ((None, 30), ("A", 15))  # 3 s pre-roll at 10 fps
    assert b.frame_labels == (("B", 30),)  # no pre-roll: those seconds are A's (an IDR at B)
    assert b.record is not None and b.record.pre_roll_s == 0
    owners_ok(list(rec.finished))
    # Named with the wall time of the first frame: A's first pre-roll frame, B's scan frame.
    assert a.record is not None and "_20261204T090000_500" in a.record.path
    assert "_20261204T090005_000" in b.record.path


def test_back_to_back_orders_each_clip_shows_only_its_own_order(cfg: config_mod.Config) -> None:
    """The seller's bug: after next-order / rescan the next clip opened with the previous
    order burned into its first seconds."""
    cfg = cfg.replace("session", pre_roll_s=3.0, max_duration_s=60.0, still_timeout_s=0.0)
    cfg = cfg.replace("proof", enabled=False)
    keys = [
        (0.5, "PO-1"),
        (2.0, "PO-2"),  # next-order 1.5 s after PO-1
        (2.8, "PO-3"),  # next-order again, under a second later
        (6.0, "PO-3"),  # rescan (after the 3 s debounce): PO-3 ends
        (6.6, "PO-4"),  # 0.6 s after: only that much idle pre-roll is free
        (9.5, "SEAL"),
        (10.0, "PO-5"),  # 0.5 s after a seal
        (13.9, "PO-6"),
    ]
    clips, finished = run_keys(cfg, keys, seed=7, end=16.0)
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        ("PO-1", "next-order"),
        ("PO-2", "next-order"),
        ("PO-3", "rescan"),
        ("PO-4", "sealed"),
        ("PO-5", "next-order"),
        ("PO-6", "end-of-input"),
    ]
    assert [f.order_id for f in finished] == [c.order_id for c in clips]
    owners_ok(finished)
    by = {c.order_id: c for c in clips}
    assert by["PO-2"].pre_roll_s == 0 and by["PO-3"].pre_roll_s == 0
    assert by["PO-4"].pre_roll_s == pytest.approx(0.6, abs=0.15)
    assert by["PO-5"].pre_roll_s == pytest.approx(0.5, abs=0.15)
    assert by["PO-1"].pre_roll_s == pytest.approx(0.5, abs=0.15)  # the scene began at 0
    # Every frame the camera gave between the first scan and the end is in exactly one clip.
    total = sum(c.frame_count for c in clips)
    first = min(f.span[0] for f in finished if f.span)
    last = max(f.span[1] for f in finished if f.span)
    assert total == round((last - first) * FPS) + 1


def test_no_pre_roll_reaches_back_to_the_parcel_before_seen_with_no_order_open(
    cfg: config_mod.Config,
) -> None:
    """A clip ended (sealed here; a timeout or the stillness rule in practice) and the parcel
    is still being finished: a second seal, its waybill. The next order's pre-roll starts
    after that, not at the end of the clip before: those frames show another buyer's parcel."""
    cfg = cfg.replace("session", pre_roll_s=3.0, max_duration_s=60.0, still_timeout_s=0.0)
    cfg = cfg.replace("proof", enabled=False)
    keys = [
        (0.5, "PO-1"),
        (3.0, "SEAL"),  # PO-1 sealed
        (6.5, "SEAL"),  # no order open: PO-1's parcel is still at the table
        (7.5, "PO-2"),
        (10.0, "SEAL"),  # PO-2 sealed
        (11.5, "SF1234567890123"),  # a waybill with no order open: PO-2's label
        (12.5, "PO-3"),
    ]  # (a code seen again within codes.debounce_s, 3 s, is one scan)
    clips, finished = run_keys(cfg, keys, seed=3, end=14.0)
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        ("PO-1", "sealed"),
        ("PO-2", "sealed"),
        ("PO-3", "end-of-input"),
    ]
    owners_ok(finished)
    by = {f.order_id: f for f in finished}
    # Started on a keyframe asked for right after the idle seal / waybill (frames 0.1 s apart).
    assert by["PO-2"].span is not None and 6.5 < by["PO-2"].span[0] <= 6.5 + 2 / FPS
    assert by["PO-3"].span is not None and 11.5 < by["PO-3"].span[0] <= 11.5 + 2 / FPS
    pre = {c.order_id: c.pre_roll_s for c in clips}
    assert pre["PO-2"] == pytest.approx(1.0, abs=0.15)
    assert pre["PO-3"] == pytest.approx(1.0, abs=0.15)


def test_no_pre_roll_reaches_back_into_a_packing_whose_clip_timed_out(
    cfg: config_mod.Config,
) -> None:
    """PO-1's clip ends at max_duration_s (3 s here, 10 minutes by default) while PO-1 is
    still being packed; the packer then scans PO-2 with no seal, pedal or waybill first.
    Nothing marked the end of PO-1's packing: PO-2's clip starts at its scan, as after a
    refused clip; its pre-roll would be PO-1's parcel, with no clip of PO-1 to own it."""
    cfg = cfg.replace("session", pre_roll_s=3.0, max_duration_s=3.0, still_timeout_s=0.0)
    cfg = cfg.replace("proof", enabled=False)
    clips, finished = run_keys(cfg, [(0.5, "PO-1"), (6.0, "PO-2")], seed=9, end=8.0)
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        ("PO-1", "timeout"),
        ("PO-2", "end-of-input"),
    ]
    owners_ok(finished)
    assert clips[1].pre_roll_s == 0
    b = finished[1]
    assert b.span is not None and 6.0 - 1e-6 <= b.span[0] <= 6.0 + 1 / FPS


@pytest.mark.parametrize("sealed", [False, True], ids=["packed-on", "sealed-after"])
def test_no_pre_roll_reaches_back_into_a_packing_whose_clip_ended_still(
    cfg: config_mod.Config, sealed: bool
) -> None:
    """Nothing moves in view from 1 s to 4 s (the packer away for tape, PO-1 half packed
    where it lies): PO-1's clip ends "still" at 3 s. The packer is back and packs on with no
    clip, then scans PO-2. With nothing marking the end of PO-1's packing, PO-2's clip starts
    at its scan; PO-1's seal after the still stop ends it, and PO-2's pre-roll starts on the
    keyframe made right after that seal, not in PO-1's packing before it."""
    cfg = cfg.replace("session", pre_roll_s=3.0, max_duration_s=60.0, still_timeout_s=2.0)
    cfg = cfg.replace("proof", enabled=False)
    keys = [(0.5, "PO-1"), *([(6.5, "SEAL")] if sealed else []), (7.5, "PO-2")]
    clips, finished = run_keys(cfg, keys, seed=4, end=9.0, still=((1.0, 3.0),))
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        ("PO-1", "still"),
        ("PO-2", "end-of-input"),
    ]
    owners_ok(finished)
    b = finished[1]
    assert b.span is not None
    if sealed:
        assert 6.5 < b.span[0] <= 6.5 + 2 / FPS
        assert clips[1].pre_roll_s == pytest.approx(1.0, abs=0.15)
    else:
        assert 7.5 - 1e-6 <= b.span[0] <= 7.5 + 1 / FPS
        assert clips[1].pre_roll_s == 0


def test_a_wall_clock_step_changes_only_the_dates_of_clips(cfg: config_mod.Config) -> None:
    """NTP steps the wall clock back 5 minutes in PO-1's clip, forward 10 minutes in PO-2's
    and back an hour between PO-4's scan and its rescan within the debounce. Every rule runs
    on camera time: PO-2's pre-roll starts after PO-1's seal, its clip times out 4 s after
    its scan, the rescan is one scan with the first; each clip is dated by its first frame's
    wall time by the clock after any step within it (the clock its TSA time is held to), lasts
    as long as its frames, and its file's timestamps run on evenly."""
    cfg = cfg.replace("session", pre_roll_s=3.0, max_duration_s=4.0, still_timeout_s=0.0)
    cfg = cfg.replace("proof", enabled=False)
    keys = [(1.0, "PO-1"), (5.0, "SEAL"), (6.0, "PO-2"), (13.0, "PO-3"), (14.0, "PO-4")]
    keys.append((15.0, "PO-4"))  # 1 s after the first scan: the debounce's, not a rescan
    steps = ((3.0, -300.0), (7.0, 600.0), (14.5, -3600.0))
    clips, finished = run_keys(cfg, keys, seed=5, end=17.0, wall_steps=steps)
    # (sorted: the index lists clips by their dates, which the steps moved)
    assert sorted((c.order_id, c.finish_reason) for c in clips) == [
        ("PO-1", "sealed"),
        ("PO-2", "timeout"),
        ("PO-3", "next-order"),
        ("PO-4", "end-of-input"),
    ]
    owners_ok(finished)
    spans = {f.order_id: f.span for f in finished}
    assert spans["PO-1"] == pytest.approx((0.0, 4.9))
    assert spans["PO-2"] == pytest.approx((5.0, 9.9))  # from the seal on; timed out at 10.0
    assert spans["PO-4"] == pytest.approx((14.0, 16.9))
    for c in clips:
        first, last = spans[c.order_id]
        shift = sum(d for at, d in steps if last >= at)  # the steps up to its last frame
        assert c.started_at == WALL0 + timedelta(seconds=first + shift)
        assert (c.ended_at - c.started_at).total_seconds() == pytest.approx(last - first)
        assert c.frame_count == round((last - first) * FPS) + 1
        with av.open(str(cfg.station.data_dir / c.path)) as mp4:
            times = [f.time for f in mp4.decode(video=0)]
        assert times == pytest.approx([i / FPS for i in range(c.frame_count)])


def _kb(text: str, t: float) -> tuple[float, RawScan]:
    return t, RawScan(text, "keyboard", t)


def test_a_frame_shot_before_a_hand_scan_that_comes_with_it_is_the_order_befores(
    cfg: config_mod.Config,
) -> None:
    """A camera hands a frame over some ms after it was shot; a hand scan typed meanwhile
    reaches the station with it, stamped after it. The frame at 2.0 shows PO-A's packing (PO-B
    was scanned at 2.03): it is PO-A's, not the first frame of PO-B's clip with PO-B burned in;
    the frame at 4.0, shot before the seal at 4.03, is PO-B's last. Each scan acts from the
    first frame shot after it, also the ones typed after the last frame."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS).replace("proof", enabled=False)
    cfg = cfg.replace("scanner", camera_decode=False)
    cfg = cfg.replace("session", pre_roll_s=1.0, max_duration_s=60.0, still_timeout_s=0.0)
    typed = [(0.5, "PO-A"), (2.0, "PO-B"), (4.0, "SEAL"), (4.5, "PO-C"), (7.4, "SEAL")]
    scans = [(at, RawScan(text, "keyboard", at + 0.03)) for at, text in typed]
    finished: list[FinishedClip] = []
    scenario = Scenario.from_dict({"seed": 5, "event": [{"at": 7.5, "kind": "end"}]})
    cam = SyntheticCamera(W, H, FPS, scenario, realtime=False)
    asm = assemble(cfg, camera=cam, live_view=False, on_finished=finished.append)
    asm.station.scan_sources.append(LateScans(scans))
    with ran(asm) as ledger:
        clips = ledger.clips()
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        ("PO-A", "next-order"),
        ("PO-B", "sealed"),
        ("PO-C", "sealed"),
    ]
    owners_ok(finished)
    a, b, c = finished
    assert a.span == pytest.approx((0.0, 2.0)) and a.frame_labels == ((None, 6), ("PO-A", 15))
    assert b.span == pytest.approx((2.1, 4.0)) and b.frame_labels == (("PO-B", 20),)
    assert c.span == pytest.approx((4.1, 7.4)) and c.frame_labels == ((None, 5), ("PO-C", 29))


@pytest.mark.parametrize(
    ("scans", "outage_at", "expected"),
    [
        pytest.param(  # PO-A sealed; the camera blinks; PO-A's sheet, still there, is read
            [_kb("PO-A", 0.5), _kb("SEAL", 2.0), (4.0, RawScan("PO-A", "camera", 4.0))],
            30,
            [("PO-A", "sealed"), ("PO-B", "sealed")],
            id="sealed-before-the-loss",
        ),
        pytest.param(  # PO-A open at the loss, sealed in the dark; then its sheet is read
            [_kb("PO-A", 0.5), _kb("SEAL", 3.05), (4.0, RawScan("PO-A", "camera", 4.0))],
            30,
            [("PO-A", "camera-lost"), ("PO-B", "sealed")],
            id="sealed-in-the-dark",
        ),
        pytest.param(  # PO-X's sheet read at 3.9, decoded only when the camera is back
            [_kb("PO-X", 0.5), _kb("PO-A", 4.0), (4.55, RawScan("PO-X", "camera", 3.9))],
            45,
            [
                ("PO-X", "next-order"),
                ("PO-A", "camera-lost"),
                ("PO-A", "next-order"),
                ("PO-B", "sealed"),
            ],
            id="late-read-of-the-order-before",
        ),
    ],
)
def test_after_a_camera_loss_no_clip_of_an_earlier_order_records_the_next_parcel(
    cfg: config_mod.Config,
    scans: list[tuple[float, RawScan]],
    outage_at: int,
    expected: list[tuple[str, str]],
) -> None:
    """The camera blinks (two reads fail, 0.2 s) around the end of an order. A camera read of
    an order finished before (its sheet still lying at the table, or a read decoded late)
    must not open a clip of that order, nor become the order that resumes: that clip would
    record the next buyer's parcel under the earlier order until PO-B is scanned."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    cfg = cfg.replace("session", pre_roll_s=1.0, max_duration_s=60.0, still_timeout_s=0.0)
    scans = [*scans, _kb("PO-B", 6.0), _kb("SEAL", 8.5)]
    scenario = Scenario.from_dict({"seed": 4, "event": [{"at": 10.0, "kind": "end"}]})
    cam = FlakyCamera(SyntheticCamera(W, H, FPS, scenario, realtime=False), [Outage(outage_at, 2)])
    finished: list[FinishedClip] = []
    asm = assemble(cfg, camera=cam, live_view=False, on_finished=finished.append)
    asm.station.scan_sources.append(LateScans(scans))
    try:
        asm.station.run(threading.Event())
        clips = asm.ledger.clips()
    finally:
        asm.close()
    assert asm.station.stats.camera_losses == 1
    assert [(c.order_id, c.finish_reason) for c in clips] == expected
    owners_ok(finished)


LABEL = "SF1234567890123"  # PO-A's waybill label


@pytest.mark.parametrize(
    ("scans", "expected"),
    [
        pytest.param(  # scanned by hand in the dark, PO-A sealed there
            [_kb("PO-A", 0.5), _kb(LABEL, 4.55), _kb("SEAL", 4.6), _kb("PO-B", 6.0)],
            [("PO-A", "camera-lost", [LABEL]), ("PO-B", "sealed", [])],
            id="by-hand-in-the-dark",
        ),
        pytest.param(  # read at 4.2, decoded in the dark, PO-A sealed there
            [
                _kb("PO-A", 0.5),
                (4.55, RawScan(LABEL, "camera", 4.2)),
                _kb("SEAL", 4.6),
                _kb("PO-B", 6.0),
            ],
            [("PO-A", "camera-lost", [LABEL]), ("PO-B", "sealed", [])],
            id="decoded-in-the-dark",
        ),
        pytest.param(  # read at 4.2, decoded in PO-B's clip, PO-B scanned in the dark
            [
                _kb("PO-A", 0.5),
                _kb("SEAL", 4.55),
                _kb("PO-B", 4.6),
                (5.5, RawScan(LABEL, "camera", 4.2)),
            ],
            [("PO-A", "camera-lost", [LABEL]), ("PO-B", "sealed", [])],
            id="decoded-in-the-next-orders-clip",
        ),
        pytest.param(  # read at 4.2, decoded in PO-A's clip resumed after the loss
            [
                _kb("PO-A", 0.5),
                (5.5, RawScan(LABEL, "camera", 4.2)),
                _kb("SEAL", 7.0),
                _kb("PO-B", 7.5),
            ],
            [
                ("PO-A", "camera-lost", [LABEL]),
                ("PO-A", "sealed", []),
                ("PO-B", "end-of-input", []),  # (the seal at 8.5: one sighting with 7.0's)
            ],
            id="decoded-in-its-resumed-clip",
        ),
        pytest.param(  # read at 4.2, decoded after PO-A's clip resumed after the loss ended
            [
                _kb("PO-A", 0.5),
                _kb("SEAL", 7.0),
                (7.5, RawScan(LABEL, "camera", 4.2)),
                _kb("PO-B", 8.0),
            ],
            [
                ("PO-A", "camera-lost", [LABEL]),
                ("PO-A", "sealed", []),
                ("PO-B", "end-of-input", []),  # (the seal at 8.5: one sighting with 7.0's)
            ],
            id="decoded-after-its-resumed-clip-ended",
        ),
        pytest.param(  # read at 4.2, decoded in PO-B's clip scanned after PO-A's resumed one
            [
                _kb("PO-A", 0.5),
                _kb("PO-B", 7.0),
                (7.5, RawScan(LABEL, "camera", 4.2)),
            ],
            [
                ("PO-A", "camera-lost", [LABEL]),
                ("PO-A", "next-order", []),
                ("PO-B", "sealed", []),
            ],
            id="decoded-in-the-next-orders-clip-after-the-resumed-one",
        ),
        pytest.param(  # PO-A sealed before the loss, its label read at 2.5 decoded in the dark
            [
                _kb("PO-A", 0.5),
                _kb("SEAL", 3.0),
                (4.55, RawScan(LABEL, "camera", 2.5)),
                _kb("PO-B", 6.0),
            ],
            [("PO-A", "sealed", [LABEL]), ("PO-B", "sealed", [])],
            id="sealed-before-the-loss",
        ),
    ],
)
def test_a_waybill_read_around_a_camera_loss_is_linked_to_its_orders_clip(
    cfg: config_mod.Config,
    scans: list[tuple[float, RawScan]],
    expected: list[tuple[str, str, list[str]]],
) -> None:
    """PO-A's waybill scanned by hand while the camera is lost (two reads fail, 0.2 s at 4.5),
    or read by the camera while PO-A's clip was open and decoded only after the loss: it was
    linked to no clip (the link went to no open clip, or the session forgot when PO-A's clip
    began), so a search for the waybill found no clip and a restart remembered it as no
    clip's. It is PO-A's clip's; never PO-B's, whose clip is the one open or next."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    cfg = cfg.replace("session", pre_roll_s=1.0, max_duration_s=60.0, still_timeout_s=0.0)
    scans = [*scans, _kb("SEAL", 8.5)]
    scenario = Scenario.from_dict({"seed": 4, "event": [{"at": 10.0, "kind": "end"}]})
    cam = FlakyCamera(SyntheticCamera(W, H, FPS, scenario, realtime=False), [Outage(45, 2)])
    asm = assemble(cfg, camera=cam, live_view=False)
    asm.station.scan_sources.append(LateScans(scans))
    try:
        asm.station.run(threading.Event())
        clips = asm.ledger.clips()
        unlinked = asm.ledger.unlinked_waybills(cfg.station.name, 100)
    finally:
        asm.close()
    assert asm.station.stats.camera_losses == 1
    assert [(c.order_id, c.finish_reason, [w.waybill for w in c.waybills]) for c in clips] == (
        expected
    )
    assert unlinked == []


def test_a_rejected_code_read_before_the_next_clip_began_is_not_in_its_timeline(
    cfg: config_mod.Config,
) -> None:
    """A long QR code on PO-A's parcel (a platform's label: the buyer's address, say) is read
    by the camera at 4.0 and rejected (too long) only after the packer scanned PO-B at 4.3:
    it was on PO-A's parcel, not PO-B's, so its text must not be in PO-B's timeline (its
    order page, share link and signed manifest), as no other late read is."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS).replace("proof", enabled=False)
    cfg = cfg.replace("scanner", camera_decode=False)
    long_code = "https://example.com/a?buyer=" + "x" * 80
    scans = [
        _kb("PO-A", 0.5),
        _kb("PO-B", 4.3),
        (4.6, RawScan(long_code, "camera", 4.0, "qrcode")),
        _kb("SEAL", 8.0),
    ]
    with ran(late_station(cfg, scans, seed=5, end=9.0)) as ledger:
        clips, stray = ledger.clips(), ledger.unattached_events()
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        ("PO-A", "next-order"),
        ("PO-B", "sealed"),
    ]
    assert [e.kind for e in clips[1].events] == ["order", "seal"]
    assert [e.kind for e in stray] == ["rejected"]


class RefusesFirst:
    """A clip guard that refuses the first clip (the disk was full then) and no other."""

    def __init__(self) -> None:
        self.asked = 0

    def refusal(self) -> str | None:
        self.asked += 1
        return "disk full" if self.asked == 1 else None

    def must_finish_clip(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("why", "outages"),
    [("refused", []), ("refused", [Outage(30, 2)]), ("timeout", [Outage(30, 2)])],
    ids=["refused", "refused-camera-blink", "timeout-camera-blink"],
)
def test_no_pre_roll_reaches_back_into_a_packing_no_clip_recorded(
    cfg: config_mod.Config, why: str, outages: list[Outage]
) -> None:
    """PO-A's clip is refused (the disk was full), or ends at max_duration_s; the packer packs
    PO-A all the same and scans PO-B at 6.0 when space is back. PO-B's clip starts at its
    scan: a 3 s pre-roll would be PO-A's parcel, with no clip of PO-A to own those frames.
    A camera blink at 3.0 changes nothing: when it is back PO-A is still on the table."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS, read_timeout_s=0.5)
    cfg = cfg.replace("proof", enabled=False)
    limit = 2.0 if why == "timeout" else 60.0
    cfg = cfg.replace("session", pre_roll_s=3.0, max_duration_s=limit, still_timeout_s=0.0)
    scenario = Scenario.from_dict({"seed": 6, "event": [
        {"at": 0.5, "kind": "key", "text": "PO-A"},
        {"at": 6.0, "kind": "key", "text": "PO-B"},
        {"at": 8.0, "kind": "key", "text": "SEAL"},
        {"at": 9.0, "kind": "end"},
    ]})  # fmt: skip
    finished: list[FinishedClip] = []
    cam = FlakyCamera(SyntheticCamera(W, H, FPS, scenario, realtime=False), outages)
    asm = assemble(cfg, camera=cam, live_view=False, on_finished=finished.append)
    if why == "refused":
        asm.station.guard = RefusesFirst()
    try:
        asm.station.run(threading.Event())
        clips = asm.ledger.clips()
    finally:
        asm.close()
    assert asm.station.stats.camera_losses == len(outages)
    a = [("PO-A", "timeout")] if why == "timeout" else []
    assert [(c.order_id, c.finish_reason) for c in clips] == [*a, ("PO-B", "sealed")]
    assert clips[-1].pre_roll_s == 0
    b = finished[-1]
    assert b.span is not None and 6.0 - 1e-6 <= b.span[0] <= 6.0 + 1 / FPS


def test_no_frame_of_a_clip_carries_another_orders_waybill_or_packer(
    cfg: config_mod.Config,
) -> None:
    """What is burned into each frame of a clip (order, waybills, packer, kind) is that
    clip's own, across waybills scanned at the switch, late camera reads of the order before
    (its waybill too), badges changing mid-clip, a return card and a camera blink."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    cfg = cfg.replace("session", pre_roll_s=2.0, max_duration_s=60.0, still_timeout_s=0.0)
    wa, wb, wc = "SF1000000000001", "SF1000000000002", "SF1000000000003"
    scans = [
        _kb("OP:alice", 0.2),
        _kb("PO-A", 0.5),
        _kb(wa, 2.0),
        _kb("OP:bob", 2.5),  # the next clip's packer; PO-A keeps alice
        _kb("PO-B", 3.0),
        (3.4, RawScan(wa, "camera", 2.9, "code128")),  # PO-A's label, decoded late
        _kb(wb, 4.5),
        _kb("RETURN", 5.0),
        _kb("PO-C", 6.5),
        _kb(wc, 7.5),  # the camera blinks at 8.0 (PO-C resumes with its waybill)
        _kb("SEAL", 10.0),
    ]
    scenario = Scenario.from_dict({"seed": 8, "event": [{"at": 12.0, "kind": "end"}]})
    cam = FlakyCamera(SyntheticCamera(W, H, FPS, scenario, realtime=False), [Outage(80, 2)])
    finished: list[FinishedClip] = []
    asm = assemble(cfg, camera=cam, live_view=False, on_finished=finished.append)
    station = asm.station
    station.scan_sources.append(LateScans(scans))
    shown: dict[float, Caption] = {}
    drawn: list[Caption] = []
    overlay, push = station.overlay, station.recorder.push
    assert overlay is not None

    class Seen:
        def apply_i420(self, image: np.ndarray, caption: Caption) -> None:
            drawn.append(caption)
            overlay.apply_i420(image, caption)

    def pushed(image: np.ndarray, t: float, wall: datetime, label: str | None = None) -> None:
        shown[t] = drawn[-1]
        push(image, t, wall, label)

    station.overlay = Seen()
    station.recorder.push = pushed  # type: ignore[method-assign]
    try:
        station.run(threading.Event())
        clips = asm.ledger.clips()
    finally:
        asm.close()
    assert [(c.order_id, c.finish_reason, c.packer, c.kind) for c in clips] == [
        ("PO-A", "next-order", "alice", "order"),
        ("PO-B", "next-order", "bob", "order"),
        ("PO-C", "camera-lost", "bob", "return"),
        ("PO-C", "sealed", "bob", "return"),
    ]
    owners_ok(finished)
    checked = 0
    for f, c in zip(sorted(finished, key=lambda f: f.span or (0, 0)), clips, strict=True):
        assert f.span is not None
        own = {w.waybill for w in c.waybills}
        for t in (t for t in shown if f.span[0] <= t <= f.span[1]):
            checked += 1
            cap = shown[t]
            assert cap.order_id in (None, c.order_id), (c.order_id, t, cap)
            if cap.order_id is None:
                continue  # pre-roll: the table before the scan
            assert set((cap.waybill or "").split()) <= own, (c.order_id, t, cap)
            assert (cap.packer, cap.kind) == (c.packer, c.kind), (c.order_id, t, cap)
    assert checked == sum(c.frame_count for c in clips)
    assert [sorted(w.waybill for w in c.waybills) for c in clips] == [[wa], [wb], [wc], [wc]]


@pytest.mark.parametrize(
    ("badges", "packer", "gap"),
    [
        pytest.param([_kb("OP:bob", 2.0)], "alice", {}, id="bob-badged-before-the-loss"),
        pytest.param(
            [_kb("SIGNOUT", 3.2), _kb("OP:bob", 3.3)],
            None,
            {"packer_at_loss": "alice", "packer_at_resume": "bob"},
            id="alice-out-bob-in-in-the-dark",
        ),
    ],
)
def test_a_resumed_clip_names_its_packer_only_when_it_is_known(
    cfg: config_mod.Config,
    badges: list[tuple[float, RawScan]],
    packer: str | None,
    gap: dict[str, str],
) -> None:
    """Alice packs PO-A; the camera is lost 3.0-3.5 and PO-A resumes. Bob's badge read before
    the loss is the next clip's: the resumed clip is alice's, as the clip it was read in. A
    sign-out and bob's badge in the dark: nobody saw who packed on, so the resumed clip's
    caption and manifest name no packer, and its signed gap says who was signed in at either
    end."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False)
    cfg = cfg.replace("session", pre_roll_s=1.0, max_duration_s=60.0, still_timeout_s=0.0)
    scans = [_kb("OP:alice", 0.2), _kb("PO-A", 0.5), *badges, _kb("SEAL", 5.0)]
    scenario = Scenario.from_dict({"seed": 9, "event": [{"at": 6.0, "kind": "end"}]})
    cam = FlakyCamera(SyntheticCamera(W, H, FPS, scenario, realtime=False), [Outage(30, 5)])
    asm = assemble(cfg, camera=cam, live_view=False)
    station = asm.station
    station.scan_sources.append(LateScans(scans))
    drawn: list[Caption] = []
    overlay = station.overlay
    assert overlay is not None

    class Seen:
        def apply_i420(self, image: np.ndarray, caption: Caption) -> None:
            drawn.append(caption)
            overlay.apply_i420(image, caption)

    station.overlay = Seen()
    with ran(asm) as ledger:
        clips = ledger.clips()
    assert [(c.order_id, c.finish_reason, c.packer) for c in clips] == [
        ("PO-A", "camera-lost", "alice"),
        ("PO-A", "sealed", packer),
    ]
    resumed = json.loads((cfg.station.data_dir / clips[1].manifest_path).read_text("utf-8"))
    assert resumed.get("packer") == packer
    assert {k: v for k, v in resumed["gap"].items() if k.startswith("packer")} == gap
    assert verify_clip(cfg.station.data_dir / clips[1].path, cfg).ok
    # burned in: the clip's packer on every frame of each clip (elapsed restarts on resume)
    recorded = [c for c in drawn if c.recording]
    (cut,) = [i for i in range(1, len(recorded))
              if (recorded[i].elapsed_s or 0) < (recorded[i - 1].elapsed_s or 0)]  # fmt: skip
    assert {c.packer for c in recorded[:cut]} == {"alice"}
    assert {c.packer for c in recorded[cut:]} == {packer}


def test_a_next_order_whose_clip_cannot_start_leaves_the_order_before_finished(
    cfg: config_mod.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PO-B is scanned while PO-A records and its clip cannot be opened (the muxer fails).
    PO-A's sheet, still at the table, read by the camera at 5.0 is not a repack of PO-A:
    that clip would record PO-B's parcel, unrecorded, under PO-A until the seal."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS).replace("proof", enabled=False)
    cfg = cfg.replace("scanner", camera_decode=False)
    cfg = cfg.replace("session", max_duration_s=60.0, still_timeout_s=0.0)
    scans = [
        _kb("PO-A", 0.5),
        _kb("PO-B", 4.0),
        (5.0, RawScan("PO-A", "camera", 5.0)),
        _kb("SEAL", 8.0),
    ]
    asm = late_station(cfg, scans, seed=7, end=9.0)
    real_start = asm.recorder.start

    def start(order_id: str, t: float, **kw: Any) -> None:
        if order_id == "PO-B":
            raise RecordingError("cannot open clip file: disk full")
        real_start(order_id, t, **kw)

    monkeypatch.setattr(asm.recorder, "start", start)
    with ran(asm) as ledger:
        clips = ledger.clips()
    assert [(c.order_id, c.finish_reason) for c in clips] == [("PO-A", "next-order")]


@pytest.mark.parametrize("decoded_at", [4.05, 6.0], ids=["at-the-next-scan", "seconds-later"])
def test_a_late_waybill_of_the_order_before_is_found_under_that_orders_clip(
    cfg: config_mod.Config, decoded_at: float
) -> None:
    """PO-A's waybill is read by the camera at 3.5, while PO-A records, and decoded only after
    the packer scanned PO-B at 4.0. It is PO-A's label: a seller searching by it finds PO-A's
    clip (never PO-B's). PO-A's clip may be signed by then: its manifest cannot change, so the
    link is in the index only, marked as made after signing, and verification still finds the
    index row as signed."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS).replace("scanner", camera_decode=False)
    wb = "SF1234567890123"
    scans = [
        _kb("PO-A", 0.5),
        _kb("PO-B", 4.0),
        (decoded_at, RawScan(wb, "camera", 3.5, "code128")),
        _kb("SEAL", 8.0),
    ]
    with ran(late_station(cfg, scans, seed=8, end=9.0)) as ledger:
        found, clips = ledger.search_rows(ClipSearch(q=wb)), ledger.clips()
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        ("PO-A", "next-order"),
        ("PO-B", "sealed"),
    ]
    assert [r["order_id"] for r in found] == ["PO-A"]
    a, b = clips
    assert [w.waybill for w in a.waybills] == [wb] and b.waybills == ()
    assert 0 < a.waybills[0].t_clip_s < a.duration_s  # the moment it was read, in PO-A's clip
    report = verify_clip(cfg.station.data_dir / a.path, cfg)
    row, *notes = [c for c in report.checks if c.name == "index.row"]
    assert row.status == "ok", row.reason
    # linked after PO-A's clip was signed: verify says the index alone holds it
    assert [(c.status, wb in c.reason) for c in notes] in ([], [("info", True)]), notes


@pytest.mark.parametrize(
    ("decoded_at", "expected"),
    [
        pytest.param(
            6.5,
            [("PO-A", "camera-lost", [LABEL]), ("PO-A", "camera-lost", []), ("PO-A", "sealed", [])],
            id="decoded-in-the-clip-resumed-last",
        ),
        pytest.param(
            6.05,
            [("PO-A", "camera-lost", [LABEL]), ("PO-A", "camera-lost", []), ("PO-A", "sealed", [])],
            id="decoded-in-the-dark-of-the-second-loss",
        ),
        pytest.param(
            8.5,
            [("PO-A", "camera-lost", [LABEL]), ("PO-A", "camera-lost", []), ("PO-A", "sealed", [])],
            id="decoded-after-it-ended",
        ),
    ],
)
def test_after_two_camera_losses_a_late_waybill_goes_to_the_clip_it_was_read_in(
    cfg: config_mod.Config, decoded_at: float, expected: list[tuple[str, str, list[str]]]
) -> None:
    """PO-A's clip is cut twice by the camera (two reads fail at 3.0 and at 6.0): its label
    read at 2.5, in the first clip, decoded late. It was linked to the clip the loss cut
    last (the recorder knew only the clip stopped last): same buyer, but the wrong clip's
    signed manifest and index row; or, decoded after the order was sealed, to no clip."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    cfg = cfg.replace("session", pre_roll_s=1.0, max_duration_s=60.0, still_timeout_s=0.0)
    scans = [_kb("PO-A", 0.5), (decoded_at, RawScan(LABEL, "camera", 2.5)), _kb("SEAL", 8.0)]
    scenario = Scenario.from_dict({"seed": 4, "event": [{"at": 10.0, "kind": "end"}]})
    outages = [Outage(30, 2), Outage(60, 2)]
    cam = FlakyCamera(SyntheticCamera(W, H, FPS, scenario, realtime=False), outages)
    asm = assemble(cfg, camera=cam, live_view=False)
    asm.station.scan_sources.append(LateScans(scans))
    try:
        asm.station.run(threading.Event())
        clips = asm.ledger.clips()
        unlinked = asm.ledger.unlinked_waybills(cfg.station.name, 100)
    finally:
        asm.close()
    assert asm.station.stats.camera_losses == 2
    assert [(c.order_id, c.finish_reason, [w.waybill for w in c.waybills]) for c in clips] == (
        expected
    )
    assert unlinked == []


def test_a_waybill_scanned_while_the_camera_is_lost_is_announced_as_what_happened_to_it(
    cfg: config_mod.Config,
) -> None:
    """PO-A sealed; the camera lost (two reads fail at 4.5); PO-B and its label scanned by hand
    in the dark. No clip is open, so the recorder linked the label to none, yet the station
    announced "waybill linked" (the blip, the screen, the hub's listeners): a label in no clip
    yet (and in none at all were PO-B sealed in the dark). The event says it is remembered for
    PO-B's clip to come, with no "linked" blip; the clip that starts when the camera is back
    names it, and a waybill linked to an open clip says which clip."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    cfg = cfg.replace("session", pre_roll_s=1.0, max_duration_s=60.0, still_timeout_s=0.0)
    other = "YT1234567890123"
    scans = [
        _kb("PO-A", 0.5),
        _kb("SEAL", 3.0),
        _kb("PO-B", 4.55),
        _kb(LABEL, 4.6),
        _kb(other, 6.0),
        _kb("SEAL", 8.0),
    ]
    scenario = Scenario.from_dict({"seed": 4, "event": [{"at": 10.0, "kind": "end"}]})
    cam = FlakyCamera(SyntheticCamera(W, H, FPS, scenario, realtime=False), [Outage(45, 2)])
    asm = assemble(cfg, camera=cam, live_view=False)
    asm.station.scan_sources.append(LateScans(scans))
    heard = EventRecorder()
    sink = RecordingSink()
    assert asm.events is not None
    asm.events.add(heard)
    asm.events.add(Feedback(sink, prepare_sounds(cfg.station.data_dir / "sounds")))
    try:
        asm.station.run(threading.Event())
        clips = asm.ledger.clips()
    finally:
        asm.close()
    assert asm.station.stats.camera_losses == 1
    assert [(c.order_id, c.finish_reason, [w.waybill for w in c.waybills]) for c in clips] == [
        ("PO-A", "sealed", []),
        ("PO-B", "sealed", [LABEL, other]),
    ]
    linked = [e for e in heard.events if e.kind is EventKind.WAYBILL_LINKED]
    assert [(e.order_id, e.data["waybill"], e.data["linked_to"]) for e in linked] == [
        ("PO-B", LABEL, "order"),
        ("PO-B", other, "open-clip"),
    ]
    assert "clip" not in linked[0].data
    assert clips[1].path.endswith(f"{linked[1].data['clip']}.mp4")
    assert [p.name for p in sink.played].count("waybill-linked") == 1


class ScreenWaybills:
    """A listener folding events into the station screen's state, noting after each event the
    waybills the screen lists under the order on screen."""

    def __init__(self, station: str) -> None:
        self.state = ScreenState(station)
        self.seen: list[tuple[EventKind, str | None, list[str]]] = []

    def on_event(self, event: Any) -> None:
        self.state.apply(event)
        self.seen.append((event.kind, event.order_id, list(self.state.waybills)))


def test_the_screen_lists_the_waybill_scanned_in_the_dark_under_the_clip_that_names_it(
    cfg: config_mod.Config,
) -> None:
    """PO-B and its label scanned by hand while the camera is lost: the clip that starts when
    the camera is back names the label (its manifest, its index row), yet the screen cleared
    its waybill list on order-started and showed none: the packer saw no label for PO-B. The
    screen lists it from the moment the clip starts."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    cfg = cfg.replace("session", pre_roll_s=1.0, max_duration_s=60.0, still_timeout_s=0.0)
    other = "YT1234567890123"
    scans = [
        _kb("PO-A", 0.5),
        _kb("SEAL", 3.0),
        _kb("PO-B", 4.55),
        _kb(LABEL, 4.6),
        _kb(other, 6.0),
        _kb("SEAL", 8.0),
    ]
    scenario = Scenario.from_dict({"seed": 4, "event": [{"at": 10.0, "kind": "end"}]})
    cam = FlakyCamera(SyntheticCamera(W, H, FPS, scenario, realtime=False), [Outage(45, 2)])
    asm = assemble(cfg, camera=cam, live_view=False)
    asm.station.scan_sources.append(LateScans(scans))
    screen = ScreenWaybills(cfg.station.name)
    assert asm.events is not None
    asm.events.add(screen)
    try:
        asm.station.run(threading.Event())
        clips = asm.ledger.clips()
    finally:
        asm.close()
    assert asm.station.stats.camera_losses == 1
    assert [w.waybill for w in clips[1].waybills] == [LABEL, other]
    on_b = [(k, w) for k, order, w in screen.seen if order == "PO-B"]
    started = [w for k, w in on_b if k is EventKind.ORDER_STARTED]
    assert started == [[LABEL]]
    before_seal = [w for k, w in on_b if k is EventKind.WAYBILL_LINKED][-1]
    assert before_seal == [LABEL, other]


def test_a_late_waybill_for_a_clip_never_indexed_is_announced_unlinked_not_linked(
    cfg: config_mod.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PO-A's waybill read by the camera at 3.5, decoded at 6.0, long after PO-B's scan ended
    PO-A's clip and handed it to the finisher: the link can go in the index only, once PO-A
    is indexed. The index refuses PO-A's row (a full disk). The station announced
    "waybill-linked" (ended-clip, after signing) at once, for a link that landed nowhere;
    it announces "waybill-unlinked" (the buzz, the screen's notice, the webhook) instead."""
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS).replace("scanner", camera_decode=False)
    wb = "SF1234567890123"
    scans = [
        _kb("PO-A", 0.5),
        _kb("PO-B", 4.0),
        (6.0, RawScan(wb, "camera", 3.5, "code128")),
        _kb("SEAL", 8.0),
    ]
    asm = late_station(cfg, scans, seed=8, end=9.0)
    add_clip = asm.ledger.add_clip

    def full_for_a(record: ClipRecord) -> int:
        if record.order_id == "PO-A":
            raise RecordingError("database or disk is full")
        return add_clip(record)

    monkeypatch.setattr(asm.ledger, "add_clip", full_for_a)
    heard = EventRecorder()
    screen = ScreenWaybills(cfg.station.name)
    assert asm.events is not None
    asm.events.add(heard)
    asm.events.add(screen)
    with ran(asm) as ledger:
        found = ledger.search_rows(ClipSearch(q=wb))
    assert found == []
    about = [e for e in heard.events if e.data.get("waybill") == wb]
    assert [(e.kind, e.order_id) for e in about] == [(EventKind.WAYBILL_UNLINKED, "PO-A")]
    assert "not indexed" in about[0].data["why"] and about[0].data["clip"]
    notice = screen.state.notice
    assert notice is not None
    assert (notice["kind"], notice["order_id"]) == ("waybill-unlinked", "PO-A")
