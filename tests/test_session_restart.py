"""A station stopped mid-order and started again on the same index: that packing resumes."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scan_support import LateScans
from test_recovery import WALL0 as CUT_WALL
from test_recovery import boxes, journal, put_tmp, write_clip

from station import config as config_mod
from station.capture.frames import InputEvent, RawScan
from station.capture.synthetic import Scenario, SyntheticCamera
from station.proof.verify import audit, verify_clip
from station.service import assemble, run_station
from station.store.ledger import ClipRecord, Ledger, ScanEventRecord

pytestmark = pytest.mark.slow

W, H = 640, 360
CUT, OTHER, THIRD = "PO-CUT-1", "PO-NEXT-2", "PO-THIRD-3"
# The first run's camera clock; the second starts an hour later (the station was off).
WALL0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AFTER = WALL0 + timedelta(hours=1)


@pytest.fixture
def station_cfg(cfg: config_mod.Config) -> config_mod.Config:
    cfg = cfg.replace("camera", width=W, height=H, fps=10.0)
    return cfg.replace("proof", enabled=False)


class StopAt(LateScans):
    """LateScans that also stops the station (as SIGTERM does) at its first poll at or after
    ``stop_at``: the clip open then ends "interrupted"."""

    def __init__(
        self, scans: list[tuple[float, RawScan]], stop_at: float, stop: threading.Event
    ) -> None:
        super().__init__(scans)
        self.stop_at, self.stop_event = stop_at, stop

    def poll(self, now: float) -> list[InputEvent]:
        if now >= self.stop_at:
            self.stop_event.set()
        return super().poll(now)


def shown(code: str, at: float) -> dict[str, object]:
    return {"at": at, "kind": "show", "code": code, "symbology": "code128", "duration": 1.5}


def run(
    cfg: config_mod.Config,
    scans: list[tuple[float, RawScan]],
    *,
    end: float,
    stop_at: float | None = None,
    show: tuple[dict[str, object], ...] = (),
    wall: datetime = AFTER,
) -> list[ClipRecord]:
    """One run of the station on a synthetic table; the index's clips after it, oldest first."""
    script = {"seed": 4, "event": [*show, {"at": end, "kind": "end"}]}
    cam = SyntheticCamera(
        W, H, cfg.camera.fps, Scenario.from_dict(script), realtime=False, start_wall=wall
    )
    asm = assemble(cfg, camera=cam, live_view=False)
    stop = threading.Event()
    source = LateScans(scans) if stop_at is None else StopAt(scans, stop_at, stop)
    asm.station.scan_sources.append(source)
    try:
        asm.station.run(stop)
        return asm.ledger.clips()
    finally:
        asm.close()


def manifest(cfg: config_mod.Config, clip: ClipRecord) -> dict[str, object]:
    return json.loads((cfg.station.data_dir / clip.manifest_path).read_text())


def cut_mid_order(cfg: config_mod.Config) -> ClipRecord:
    """The first run: OTHER packed and sealed, then CUT scanned and the station stopped."""
    scans = [
        (0.5, RawScan(OTHER, "keyboard", 0.5)),
        (2.0, RawScan("SEAL", "keyboard", 2.0)),
        (3.0, RawScan(CUT, "keyboard", 3.0)),
    ]
    clips = run(cfg, scans, end=20.0, stop_at=5.0, wall=WALL0)
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        (OTHER, "sealed"),
        (CUT, "interrupted"),
    ]
    return clips[1]


@pytest.mark.parametrize("how", ["camera", "keyboard"])
def test_the_order_a_stop_cut_resumes_when_its_sheet_is_shown_again_not_as_a_repack(
    station_cfg: config_mod.Config, how: str
) -> None:
    """The station stops while CUT's clip records (a power cut, a crash, a restart): after it
    is back, the packer shows CUT's sheet to the camera (or scans it) to pack on. It opened
    nothing (the camera) or recorded a repack announced as a duplicate (by hand), as the
    session started with CUT among the orders packed here; the clip resumes that packing,
    its signed manifest saying when the station stopped and which clip it cut."""
    cut = cut_mid_order(station_cfg)
    scans = [(4.0, RawScan("SEAL", "keyboard", 4.0))]
    show: tuple[dict[str, object], ...] = ()
    if how == "camera":
        show = (shown(CUT, 1.0),)
    else:
        scans.append((1.0, RawScan(CUT, "keyboard", 1.0)))
    clips = run(station_cfg, scans, end=6.0, show=show)
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        (OTHER, "sealed"),
        (CUT, "interrupted"),
        (CUT, "sealed"),
    ]
    resumed = clips[2]
    assert resumed.repack_of == []
    body = manifest(station_cfg, resumed)
    assert "repack" not in body and "repack" not in resumed.extra
    gap = body["gap"]
    assert isinstance(gap, dict)
    assert gap["order_at_loss"] == CUT
    assert gap["station_stopped_at"] == cut.ended_at.isoformat(timespec="milliseconds")
    assert (gap["cut_clip"], gap["cut_clip_sha256"]) == (cut.id, cut.sha256)
    assert body["resumed_after_s"] == gap["seconds"]
    assert isinstance(gap["seconds"], float) and gap["seconds"] >= 0.0


def test_once_another_order_is_packed_the_cut_orders_sheet_in_view_is_an_old_one(
    station_cfg: config_mod.Config,
) -> None:
    """After the restart the packer leaves CUT and packs OTHER-3: its clip starts at its scan
    (CUT's parcel may have been packed on in view before), and CUT's sheet lying in view is
    then an old one: read by the camera, it neither ends OTHER-3's clip nor opens its own."""
    cut_mid_order(station_cfg)
    scans = [
        (1.0, RawScan(THIRD, "keyboard", 1.0)),
        (5.0, RawScan("SEAL", "keyboard", 5.0)),
    ]
    clips = run(station_cfg, scans, end=9.0, show=(shown(CUT, 2.0), shown(CUT, 6.5)))
    assert [(c.order_id, c.finish_reason) for c in clips[2:]] == [(THIRD, "sealed")]
    assert clips[2].pre_roll_s == 0.0
    seen = [(e.kind, e.text, e.source) for e in clips[2].events]
    assert ("order", CUT, "camera") in seen


def test_an_order_sealed_before_the_stop_stays_remembered(
    station_cfg: config_mod.Config,
) -> None:
    """Only the packing the stop cut resumes: the sheet of OTHER (sealed before the stop)
    shown to the camera after the restart still opens nothing."""
    cut_mid_order(station_cfg)
    clips = run(station_cfg, [], end=5.0, show=(shown(OTHER, 1.0),))
    assert len(clips) == 2


@pytest.mark.parametrize("back_after", [timedelta(hours=1), timedelta(seconds=3)])
def test_a_clip_a_power_cut_left_unfinished_recovered_then_resumed(
    station_cfg: config_mod.Config, back_after: timedelta
) -> None:
    """The power went while CUT's clip recorded: the station's next start finishes it (crash
    recovery: "interrupted"), and CUT's sheet shown to the camera resumes that packing. The
    recovered clip ends at its last frame that survived: the resumed one, the station back
    seconds after the cut, claims none of its seconds (`packcam audit`)."""
    station_cfg = station_cfg.replace("proof", enabled=True)
    data = station_cfg.station.data_dir
    (data / "tmp").mkdir(parents=True)
    blob = write_clip(data / "scratch.mp4")
    (data / "scratch.mp4").unlink()
    torn = blob[: [p for p, k, _ in boxes(blob) if k == b"mdat"][-1] + 100]
    put_tmp(data, "station-01_PO-CUT-1_20261130T140506_789", torn, journal(CUT))
    script = {
        "seed": 4,
        "event": [
            shown(CUT, 1.0),
            {"at": 4.0, "kind": "show", "code": "SEAL", "symbology": "qrcode", "duration": 1.5},
            {"at": 7.0, "kind": "end"},
        ],
    }
    cam = SyntheticCamera(
        W,
        H,
        station_cfg.camera.fps,
        Scenario.from_dict(script),
        realtime=False,
        start_wall=CUT_WALL + back_after,
    )
    run_station(station_cfg, threading.Event(), camera=cam, live_view=False)
    ledger = Ledger.in_data_dir(data)
    try:
        clips = ledger.clips()
    finally:
        ledger.close()
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        (CUT, "interrupted"),
        (CUT, "sealed"),
    ]
    body = manifest(station_cfg, clips[1])
    assert "repack" not in body and clips[1].repack_of == []
    assert body["gap"]["cut_clip"] == clips[0].id  # type: ignore[index]
    report = audit(station_cfg, check_timestamps=False)
    assert report.ok and "clip-overlap" not in report.codes(), report.lines()


def test_a_clip_salvaged_as_interrupted_while_the_station_ran_on_is_no_cut_packing(
    station_cfg: config_mod.Config,
) -> None:
    """CUT's clip indexed "interrupted" and a seal scanned after it with no clip open: the
    station ran on (its writer failed, and the clip was salvaged so), and the packer sealed
    the parcel since. After a restart CUT is an order packed here: its sheet opens nothing."""
    cut = cut_mid_order(station_cfg)
    ledger = Ledger.in_data_dir(station_cfg.station.data_dir)
    try:
        wall = cut.ended_at + timedelta(seconds=20)
        ledger.log_events("station-01", [ScanEventRecord("seal", "SEAL", "keyboard", wall)])
    finally:
        ledger.close()
    clips = run(station_cfg, [], end=5.0, show=(shown(CUT, 1.0),))
    assert len(clips) == 2


# A Pi has no clock of its own: booted after a power cut, it runs on fake-hwclock's saved time
# (saved now and then, so before the clips the cut interrupted) until NTP steps it.
BOOTED_EARLIER = WALL0 - timedelta(hours=1)


def by_id(clip: ClipRecord) -> int:
    """The station's own sequence (the index lists clips by start: by a clock set back)."""
    return clip.id or 0


def test_after_a_boot_on_an_earlier_clock_the_order_packed_since_is_the_newest(
    station_cfg: config_mod.Config,
) -> None:
    """The packer leaves CUT after the restart and packs THIRD, on a clock set back: THIRD's
    clip starts before CUT's, yet it was recorded after it. At the next start CUT's sheet
    lying in view is an old one: it resumes nothing (nor records over the next parcel)."""
    cut_mid_order(station_cfg)
    scans = [(1.0, RawScan(THIRD, "keyboard", 1.0)), (3.0, RawScan("SEAL", "keyboard", 3.0))]
    run(station_cfg, scans, end=5.0, wall=BOOTED_EARLIER)
    later = BOOTED_EARLIER + timedelta(minutes=10)
    clips = sorted(run(station_cfg, [], end=5.0, show=(shown(CUT, 1.0),), wall=later), key=by_id)
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        (OTHER, "sealed"),
        (CUT, "interrupted"),
        (THIRD, "sealed"),
    ]


def test_a_packing_cut_on_an_earlier_clock_resumes_at_the_next_start(
    station_cfg: config_mod.Config,
) -> None:
    """OTHER sealed; after a boot on a clock set back CUT is scanned and the station stops
    while it records: CUT's clip starts before OTHER's, yet it is the station's last. Its
    sheet shown at the next start resumes that packing."""
    scans = [(0.5, RawScan(OTHER, "keyboard", 0.5)), (2.0, RawScan("SEAL", "keyboard", 2.0))]
    run(station_cfg, scans, end=4.0, wall=WALL0)
    run(station_cfg, [(1.0, RawScan(CUT, "keyboard", 1.0))], end=20.0, stop_at=3.0,
        wall=BOOTED_EARLIER)  # fmt: skip
    later = BOOTED_EARLIER + timedelta(minutes=10)
    seal = [(4.0, RawScan("SEAL", "keyboard", 4.0))]
    clips = sorted(run(station_cfg, seal, end=6.0, show=(shown(CUT, 1.0),), wall=later), key=by_id)
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        (OTHER, "sealed"),
        (CUT, "interrupted"),
        (CUT, "sealed"),
    ]
    assert manifest(station_cfg, clips[2])["gap"]["cut_clip"] == clips[1].id  # type: ignore[index]


def test_a_cut_packing_sealed_after_a_boot_on_an_earlier_clock_stays_sealed(
    station_cfg: config_mod.Config,
) -> None:
    """After the restart, on a clock set back, the packer seals CUT's parcel with no clip open:
    that seal is stamped before CUT's clip ended, yet scanned after it. At the next start
    CUT's sheet lying in view is an old one: it resumes nothing."""
    cut_mid_order(station_cfg)
    run(station_cfg, [(1.0, RawScan("SEAL", "keyboard", 1.0))], end=3.0, wall=BOOTED_EARLIER)
    later = BOOTED_EARLIER + timedelta(minutes=10)
    clips = run(station_cfg, [], end=5.0, show=(shown(CUT, 1.0),), wall=later)
    assert len(clips) == 2


def test_an_honest_session_with_stops_resumes_and_repacks_audits_clean(
    cfg: config_mod.Config,
) -> None:
    """Each second of video belongs to one order, whatever an honest station went through:
    an order packed and sealed, another cut by a stop and resumed a few seconds after it,
    the first packed again (a repack), then a power cut mid-clip recovered at the next start
    and resumed. `packcam audit` finds no two clips claiming the same seconds."""
    cfg = cfg.replace("camera", width=W, height=H, fps=10.0)
    cut = cut_mid_order(cfg)
    soon = cut.ended_at + timedelta(seconds=3)
    scans = [
        (1.0, RawScan(CUT, "keyboard", 1.0)),
        (3.0, RawScan("SEAL", "keyboard", 3.0)),
        (4.0, RawScan(OTHER, "keyboard", 4.0)),
        (6.0, RawScan("SEAL", "keyboard", 6.0)),
        (7.0, RawScan(CUT, "keyboard", 7.0)),
    ]
    clips = run(cfg, scans, end=12.0, stop_at=9.0, wall=soon)
    scans = [(1.0, RawScan(CUT, "keyboard", 1.0)), (3.0, RawScan("SEAL", "keyboard", 3.0))]
    clips = run(cfg, scans, end=5.0, wall=clips[-1].ended_at + timedelta(seconds=2))
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        (OTHER, "sealed"),
        (CUT, "interrupted"),
        (CUT, "sealed"),
        (OTHER, "next-order"),
        (CUT, "interrupted"),
        (CUT, "sealed"),
    ]
    assert clips[3].repack_of == [clips[0].id]
    report = audit(cfg, check_timestamps=False)
    assert report.ok, report.lines()
    assert {"clip-overlap", "clip-logged-twice"}.isdisjoint(report.codes()), report.lines()
    assert any(c.name == "clips" and c.status == "ok" for c in report.checks), report.lines()
    for c in clips:
        data = cfg.station.data_dir / c.path
        assert "clip-overlap" not in verify_clip(data, cfg).codes()


@pytest.mark.parametrize("ends", [False, True], ids=["linked", "waybill-ends-clip"])
def test_a_label_read_with_no_clip_open_before_a_restart_is_no_later_clips_waybill(
    station_cfg: config_mod.Config, ends: bool
) -> None:
    """OTHER sealed, then its label scanned with no clip open (sealed before it was stuck on),
    and the station restarted: the label, lying in view, read by the camera while NEXT is
    packed. The session forgot such labels at a restart (the index holds them as scan events
    of no clip): it linked it to NEXT's clip (its index row and signed manifest naming another
    buyer's waybill) or, with waybill_ends_clip, ended NEXT's clip mid-packing."""
    cfg = station_cfg.replace("session", waybill_ends_clip=ends)
    label = "SF1234567890123"
    first = [
        (0.5, RawScan(OTHER, "keyboard", 0.5)),
        (2.0, RawScan("SEAL", "keyboard", 2.0)),
        (3.0, RawScan(label, "keyboard", 3.0)),
    ]
    clips = run(cfg, first, end=5.0, wall=WALL0)
    assert [(c.order_id, c.waybills) for c in clips] == [(OTHER, ())]
    second = [(1.0, RawScan(THIRD, "keyboard", 1.0)), (5.0, RawScan("SEAL", "keyboard", 5.0))]
    clips = run(cfg, second, end=7.0, show=(shown(label, 2.5),))
    assert [(c.order_id, c.finish_reason, c.waybills) for c in clips[1:]] == [(THIRD, "sealed", ())]
    seen = [(e.kind, e.text, e.source, e.note) for e in clips[1].events]
    assert ("waybill", label, "camera", "a waybill first seen with no clip open, seen again by"
            " the camera; ignored (scan it by hand to link it)") in seen  # fmt: skip
    assert manifest(cfg, clips[1])["waybills"] == []


class PowerCut(LateScans):
    """LateScans that, at its first poll at or after ``at``, copies the data dir as a power cut
    would leave it on disk (``into``): once the finisher is inside the finalizer ``held``
    (the clip before moved into clips/ but not signed nor indexed yet), then lets it go on."""

    def __init__(
        self, scans: list[tuple[float, RawScan]], at: float, held: HeldFinisher, into: Path
    ) -> None:
        super().__init__(scans)
        self.at, self.held, self.into = at, held, into

    def poll(self, now: float) -> list[InputEvent]:
        if now >= self.at and not self.into.exists():
            assert self.held.entered.wait(60), "the finisher never reached the finalizer"
            shutil.copytree(self.held.data_dir, self.into)
            self.held.go.set()
        return super().poll(now)


class HeldFinisher:
    """A finalizer that holds the recorder's finisher until ``go`` (signing that takes long:
    C2PA on a slow card, say)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.entered, self.go = threading.Event(), threading.Event()

    def __call__(self, path: Path, data: dict[str, Any]) -> dict[str, Any]:
        self.entered.set()
        assert self.go.wait(60), "the test never let the finisher go on"
        return data


def test_a_power_cut_while_the_clip_before_was_signed_resumes_the_clip_that_recorded(
    station_cfg: config_mod.Config, tmp_path: Path
) -> None:
    """OTHER sealed and CUT scanned while OTHER's clip was still being signed (in clips/, not
    yet indexed); then the power went. Crash recovery at the next start indexes both: CUT's
    (from tmp/, "interrupted") must be the station's newest, as it was recorded last, so its
    sheet resumes that packing. Recovery indexed CUT's first and OTHER's after it: the station
    took OTHER (sealed) for its last clip, CUT for an order packed here, and its sheet opened
    nothing."""
    data = station_cfg.station.data_dir
    held = HeldFinisher(data)
    cut_copy = tmp_path / "after-the-cut"
    scans = [
        (0.5, RawScan(OTHER, "keyboard", 0.5)),
        (2.0, RawScan("SEAL", "keyboard", 2.0)),
        (3.0, RawScan(CUT, "keyboard", 3.0)),
    ]
    script = {"seed": 4, "event": [{"at": 8.0, "kind": "end"}]}
    cam = SyntheticCamera(
        W, H, station_cfg.camera.fps, Scenario.from_dict(script), realtime=False, start_wall=WALL0
    )
    asm = assemble(station_cfg, camera=cam, live_view=False)
    asm.recorder.finalizers = (*asm.recorder.finalizers, held)
    asm.station.scan_sources.append(PowerCut(scans, 5.0, held, cut_copy))
    try:
        asm.station.run(threading.Event())
    finally:
        held.go.set()
        asm.close()
    assert sorted(p.parent.name for p in cut_copy.rglob("*.mp4")) == ["02", "tmp"]

    cfg = station_cfg.with_data_dir(cut_copy)
    script = {
        "seed": 4,
        "event": [
            shown(CUT, 1.0),
            {"at": 4.0, "kind": "show", "code": "SEAL", "symbology": "qrcode", "duration": 1.5},
            {"at": 7.0, "kind": "end"},
        ],
    }
    cam = SyntheticCamera(
        W, H, cfg.camera.fps, Scenario.from_dict(script), realtime=False, start_wall=AFTER
    )
    run_station(cfg, threading.Event(), camera=cam, live_view=False)
    ledger = Ledger.in_data_dir(cut_copy)
    try:
        clips = sorted(ledger.clips(), key=by_id)
    finally:
        ledger.close()
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        (OTHER, "sealed"),
        (CUT, "interrupted"),
        (CUT, "sealed"),
    ]
    body = manifest(cfg, clips[2])
    assert "repack" not in body and clips[2].repack_of == []
    assert body["gap"]["cut_clip"] == clips[1].id  # type: ignore[index]


def test_a_clip_sealed_but_not_yet_finished_when_the_power_went_stays_sealed(
    station_cfg: config_mod.Config, tmp_path: Path
) -> None:
    """OTHER sealed (its clip held in signing), then THIRD scanned and sealed: THIRD's clip
    stopped and queued for the finisher behind OTHER's when the power went. Its journal had
    no finish reason (written only just before the rename), so crash recovery indexed it
    "interrupted": its signed manifest said so (it was sealed), and at the next start the
    station took it for the packing its stop cut, THIRD's sheet lying in view opening a
    "resumed" clip over the next parcel. The reason is journaled at the stop."""
    data = station_cfg.station.data_dir
    held = HeldFinisher(data)
    cut_copy = tmp_path / "after-the-cut"
    scans = [
        (0.5, RawScan(OTHER, "keyboard", 0.5)),
        (2.0, RawScan("SEAL", "keyboard", 2.0)),
        (3.0, RawScan(THIRD, "keyboard", 3.0)),
        (5.5, RawScan("SEAL", "keyboard", 5.5)),
    ]
    script = {"seed": 4, "event": [{"at": 8.0, "kind": "end"}]}
    cam = SyntheticCamera(
        W, H, station_cfg.camera.fps, Scenario.from_dict(script), realtime=False, start_wall=WALL0
    )
    asm = assemble(station_cfg, camera=cam, live_view=False)
    asm.recorder.finalizers = (*asm.recorder.finalizers, held)
    asm.station.scan_sources.append(PowerCut(scans, 6.5, held, cut_copy))
    try:
        asm.station.run(threading.Event())
    finally:
        held.go.set()
        asm.close()
    (third_tmp,) = (cut_copy / "tmp").glob(f"*{THIRD}*.mp4")

    cfg = station_cfg.with_data_dir(cut_copy)
    script = {
        "seed": 4,
        "event": [
            shown(THIRD, 1.0),
            {"at": 4.0, "kind": "show", "code": "SEAL", "symbology": "qrcode", "duration": 1.5},
            {"at": 7.0, "kind": "end"},
        ],
    }
    cam = SyntheticCamera(
        W, H, cfg.camera.fps, Scenario.from_dict(script), realtime=False, start_wall=AFTER
    )
    run_station(cfg, threading.Event(), camera=cam, live_view=False)
    ledger = Ledger.in_data_dir(cut_copy)
    try:
        clips = sorted(ledger.clips(), key=by_id)
    finally:
        ledger.close()
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        (OTHER, "sealed"),
        (THIRD, "sealed"),
    ]
    assert clips[1].path.endswith(third_tmp.name)
    body = manifest(cfg, clips[1])
    assert body["finish_reason"] == "sealed"
    recovery = body["recovery"]
    assert isinstance(recovery, dict)
    assert "interrupted" not in recovery["note"] and "sealed" in recovery["note"]
    stopped = datetime.fromisoformat(str(recovery["stopped_at"]))
    assert abs((stopped - (WALL0 + timedelta(seconds=5.5))).total_seconds()) < 0.2
