"""The recorder on its own: scans that cannot be indexed yet, and what close() does with them."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from recorder_support import HeldBack, encoded_recorder
from sync_support import fsyncs

from station import config as config_mod
from station.errors import LedgerError, RecordingError
from station.recording.recorder import LateLink, Recorder, journal_path
from station.recording.stream import EncodedPacket, stream_factories
from station.store.ledger import Ledger, ScanEventRecord

W, H, FPS = 64, 48, 10.0
WALL0 = datetime(2026, 12, 4, 9, 0, 0).astimezone()


class FullIndex(Ledger):
    """A real ledger whose unattached-event writes fail while ``full`` is set."""

    full = True

    def log_events(self, station, events):  # type: ignore[no-untyped-def]
        if self.full:
            raise LedgerError("index write failed: database or disk is full")
        super().log_events(station, events)


def refused(n: int) -> ScanEventRecord:
    return ScanEventRecord("refused", f"PO-{n}", "station", WALL0 + timedelta(seconds=n), None,
                           "disk full: 3 MB free")  # fmt: skip


@pytest.fixture
def rec_cfg(cfg: config_mod.Config) -> config_mod.Config:
    return cfg.replace("proof", enabled=False)


def recorder(cfg: config_mod.Config, ledger: Ledger) -> Recorder:
    return encoded_recorder(cfg, ledger, W, H, FPS)


def test_refused_scans_are_kept_until_the_index_takes_writes_again(
    rec_cfg: config_mod.Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr("station.recording.recorder.time.monotonic", lambda: clock[0])
    ledger = FullIndex(tmp_path / "index.sqlite3")
    rec = recorder(rec_cfg, ledger)
    try:
        frame = np.zeros((H * 3 // 2, W), np.uint8)
        rec.log_event(refused(1), 0.0)  # raises nothing: kept
        rec.log_event(refused(2), 0.1)
        assert rec.unsaved_events == 2 and ledger.unattached_events() == []
        ledger.full = False  # space is back
        rec.push(frame, 0.2, WALL0)
        assert rec.unsaved_events == 2  # retried at most once a second
        clock[0] += 1.0
        rec.push(frame, 0.3, WALL0)
        assert rec.unsaved_events == 0
        assert [e.text for e in ledger.unattached_events()] == ["PO-1", "PO-2"]
    finally:
        rec.close()
        ledger.close()


def test_close_with_the_index_still_full_puts_the_scans_in_the_log(
    rec_cfg: config_mod.Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = FullIndex(tmp_path / "index.sqlite3")
    rec = recorder(rec_cfg, ledger)
    rec.log_event(refused(7), 0.0)
    with caplog.at_level(logging.ERROR, logger="station.recording.recorder"):
        rec.close()
    ledger.close()
    assert "scan event lost (index unavailable)" in caplog.text and "PO-7" in caplog.text


# ---- a clip whose writer fails: its frames still in the encoder stay its own -------------------


class LaggingEncoder:
    """A ``FrameEncoder`` whose packets come out ``lag`` frames after their frame (a V4L2
    encoder keeps a few, libx264's thread and queue a few more), a keyframe every ``gop``."""

    width, height, fps, encoder, extradata = W, H, FPS, "libx264", b"\x00\x00\x00\x01\x67"

    def __init__(self, lag: int = 3, gop: int = 7) -> None:
        self.lag, self.gop = lag, gop
        self._queue: list[EncodedPacket] = []
        self._frames = 0
        self._force = False

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, image_i420: np.ndarray, t: float, wall: datetime, label: str | None) -> None:
        key = self._force or self._frames % self.gop == 0
        self._force = False
        self._frames += 1
        self._queue.append(EncodedPacket(b"", t, wall, label, key))

    def request_keyframe(self) -> None:
        self._force = True

    def drain(self) -> list[EncodedPacket]:
        out = self._queue[: max(0, len(self._queue) - self.lag)]
        del self._queue[: len(out)]
        return out

    def flush(self) -> list[EncodedPacket]:
        out, self._queue = self._queue, []
        return out


class CountingSink:
    """A clip's muxer that takes ``room`` packets, then fails as a full disk does."""

    def __init__(self, room: int | None = None) -> None:
        self.room = room
        self.packets: list[EncodedPacket] = []

    def write(self, packet: EncodedPacket) -> None:
        if self.room is not None and len(self.packets) >= self.room:
            raise RecordingError("writing clip failed: disk full: [Errno 28]")
        self.packets.append(packet)

    def finish(self) -> None:
        raise RecordingError("not a real file")  # what becomes of it is not this test's


def after_a_failed_clip(rec: Recorder, b_at: int) -> dict[str, Any]:
    """Frames 0-29 into ``rec`` (its first muxer fails after 4 packets): A scanned at frame 2,
    B at frame ``b_at``. Returns B's journal as written at its start (all a power cut leaves)."""
    frame = np.zeros((H * 3 // 2, W), np.uint8)
    label, journal = None, {}
    try:
        for i in range(30):
            t = i / FPS
            if i in (2, b_at):
                label = "A" if i == 2 else "B"
                rec.start(label, t, wall=WALL0 + timedelta(seconds=t))
                assert rec._open is not None
                journal = json.loads(journal_path(rec._open.tmp_path).read_text())
            try:
                rec.push(frame, t, WALL0 + timedelta(seconds=t), label)
            except RecordingError:
                label = None  # the runner's RecordingFailed: the session is idle again
        rec.stop("sealed", 3.0)
    finally:
        rec.close()  # flushes the encoder: B's last frames, then both clips finish
    return journal


def test_frames_of_an_order_whose_clip_failed_never_open_the_next_orders_clip(
    rec_cfg: config_mod.Config, ledger: Ledger
) -> None:
    """Order A's writer fails (a full disk) while frames showing A are still in the encoder;
    B is scanned a second later. B's pre-roll must not start on a keyframe among those frames:
    they show A's parcel and A's order number burned in."""
    sinks = [CountingSink(room=4), CountingSink()]
    rec = Recorder(rec_cfg.replace("session", pre_roll_s=3.0), ledger,
                   encoder=LaggingEncoder, muxer=lambda _p, _e: sinks.pop(0))  # fmt: skip
    after_a_failed_clip(rec, 12)
    a, b = rec.finished
    assert a.order_id == "A" and a.frame_labels == ((None, 2), ("A", 3))
    assert b.order_id == "B"
    assert "A" not in [label for label, _n in b.frame_labels], b.frame_labels
    # A failed when frame 4's packet came out, at the push of frame 7 (t=0.7, a keyframe):
    # frames up to there showed A. B starts on the IDR asked for at its scan.
    assert b.span is not None and b.span[0] > 0.7


def test_a_keyframe_the_encoder_made_on_its_own_in_flight_does_not_start_a_clip(
    rec_cfg: config_mod.Config, ledger: Ledger
) -> None:
    """After A's writer failed (no IDR picture is asked for then), B is scanned at frame 16
    while the encoder still holds frames 13-15, 14 a periodic keyframe the recorder cannot
    know of. B starts at the IDR picture asked for at its scan, so the journal written at its
    start names its real first frame and pre-roll."""
    sinks = [CountingSink(room=4), CountingSink()]
    rec = Recorder(rec_cfg, ledger, encoder=LaggingEncoder, muxer=lambda _p, _e: sinks.pop(0))
    journal = after_a_failed_clip(rec, 16)
    b = rec.finished[-1]
    assert b.order_id == "B" and b.span is not None
    first_wall = WALL0 + timedelta(seconds=b.span[0])
    assert journal["first_wall"] == first_wall.isoformat(timespec="milliseconds")
    assert journal["pre_roll_s"] == max(0.0, round(1.6 - b.span[0], 3))


@pytest.mark.parametrize(("frames_after_stop", "signed"), [(0, False), (10, True)])
def test_a_waybill_of_the_clip_stopped_last_is_linked_to_it(
    rec_cfg: config_mod.Config, ledger: Ledger, frames_after_stop: int, signed: bool
) -> None:
    """A waybill read while A's clip was open, decoded after B's began, goes to A's clip: in
    its signed manifest while A still waits for its last packets; once A is being finished,
    in the index only, marked as linked after signing (the manifest cannot change), and told
    to ``done`` once its index row is written."""
    cfg = rec_cfg.replace("recorder", keyframe_interval_s=1.0)
    told: list[LateLink] = []
    enc, mux = stream_factories(cfg.recorder, W, H, FPS)
    rec = Recorder(cfg, ledger, encoder=lambda: HeldBack(enc()), muxer=mux)
    frame = np.zeros((H * 3 // 2, W), np.uint8)
    wb = "SF1234567890123"
    try:
        for i in range(40):
            t = i / FPS
            if i == 1:
                rec.start("A", t, wall=WALL0 + timedelta(seconds=t))
            if i == 20:
                rec.stop("next-order", t)
                rec.start("B", t, wall=WALL0 + timedelta(seconds=t))
            if i == 20 + frames_after_stop:
                if signed:
                    rec.wait_idle()  # A is finished and indexed
                assert rec.link_ended("B", wb, "SF", 1.5) is None  # still open: no ended clip
                linked = rec.link_ended("A", wb, "SF", 1.5, done=told.append)
                assert linked is not None and linked.how == ("index" if signed else "manifest")
            label = "A" if 1 <= i < 20 else "B"
            rec.push(frame, t, WALL0 + timedelta(seconds=t), label)
        rec.stop("sealed", 4.0)
    finally:
        rec.close()
    a, b = ledger.clips()
    assert (a.order_id, [w.waybill for w in a.waybills]) == ("A", [wb])
    assert b.waybills == ()
    (row,) = ledger.waybill_rows(a.id or 0)
    assert (row["linked_utc"] is not None) is signed
    manifest = json.loads((cfg.station.data_dir / a.manifest_path).read_text())
    assert [w["waybill"] for w in manifest["waybills"]] == ([] if signed else [wb])
    assert [(t.order_id, t.link.waybill, t.error) for t in told] == (
        [("A", wb, None)] if signed else []
    )


def test_a_stopped_clip_waiting_for_its_last_packets_has_its_end_journaled(
    rec_cfg: config_mod.Config, ledger: Ledger
) -> None:
    """A clip sealed while the encoder still holds its last frames is not finished yet; its
    journal on disk says already how and when it ended (a power cut now must not leave
    recovery to call it "interrupted"). A clip still open says neither."""
    enc, mux = stream_factories(rec_cfg.recorder, W, H, FPS)
    rec = Recorder(rec_cfg, ledger, encoder=lambda: HeldBack(enc()), muxer=mux)
    frame = np.zeros((H * 3 // 2, W), np.uint8)
    try:
        for i in range(10):
            t = i / FPS
            if i == 1:
                rec.start("A", t, wall=WALL0 + timedelta(seconds=t))
            rec.push(frame, t, WALL0 + timedelta(seconds=t), "A" if i >= 1 else None)
        (open_journal,) = rec.tmp_dir.glob("*.open.json")
        assert "finish_reason" not in json.loads(open_journal.read_text())
        rec.stop("sealed", 0.9)
        journal = json.loads(open_journal.read_text())  # (the clip waits for 3 packets)
        assert (journal["finish_reason"], journal["stopped_wall"]) == (
            "sealed",
            (WALL0 + timedelta(seconds=0.9)).isoformat(timespec="milliseconds"),
        )
        assert not rec.finished
    finally:
        rec.close()
    (clip,) = ledger.clips()
    assert clip.finish_reason == "sealed"


def test_a_stopped_clip_whose_writer_fails_is_journaled_interrupted_before_its_salvage(
    rec_cfg: config_mod.Config, ledger: Ledger
) -> None:
    """A's clip sealed, then its writer fails as it finishes, and the salvage fails too (kept
    in tmp/ for the next start): its journal no longer says "sealed" but what the salvage
    would have indexed, "interrupted" with the error."""
    tried: list[dict[str, Any]] = []

    def salvage(_mp4: Path, meta: dict[str, Any]) -> None:
        tried.append(meta)
        raise OSError(28, "No space left on device")

    rec = Recorder(rec_cfg, ledger, encoder=LaggingEncoder, muxer=lambda _p, _e: CountingSink(),
                   salvage=salvage)  # fmt: skip
    frame = np.zeros((H * 3 // 2, W), np.uint8)
    try:
        for i in range(12):
            t = i / FPS
            if i == 1:
                rec.start("A", t, wall=WALL0 + timedelta(seconds=t))
            rec.push(frame, t, WALL0 + timedelta(seconds=t), "A" if i >= 1 else None)
        rec.stop("sealed", 1.1)
    finally:
        rec.close()
    (journal_file,) = rec.tmp_dir.glob("*.open.json")
    journal = json.loads(journal_file.read_text())
    assert (journal["finish_reason"], journal["error"]) == ("interrupted", "not a real file")
    assert [m["finish_reason"] for m in tried] == ["interrupted"]


def test_the_capture_thread_never_waits_for_a_journal_fsync(
    rec_cfg: config_mod.Config, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clip's start, its waybill and its stop are journaled at once (kill -9 safe when they
    return) but fsynced on the journal-sync thread: two fsyncs on the capture thread (tens to
    hundreds of ms each on a Pi's SD card) dropped the frames of the next buyer's clip that
    came meanwhile (bench/loop.py --fsync-delay-ms). After ``flush_journals`` the journal and
    its folder were fsynced, as they stood after the stop."""
    synced = fsyncs(monkeypatch)
    enc, mux = stream_factories(rec_cfg.recorder, W, H, FPS)
    rec = Recorder(rec_cfg, ledger, encoder=enc, muxer=mux)
    frame = np.zeros((H * 3 // 2, W), np.uint8)
    capture = threading.current_thread().name
    on_capture: list[tuple[str, str]] = []
    try:
        for i in range(10):
            t = i / FPS
            if i == 1:
                before = len(synced)
                rec.start("A", t, wall=WALL0 + timedelta(seconds=t))
                on_capture += [s for s in synced[before:] if s[0] == capture]
                assert rec._open is not None
                journal = journal_path(rec._open.tmp_path)
                # on disk already: what a kill -9 right now leaves recovery
                assert json.loads(journal.read_text())["order_id"] == "A"
            rec.push(frame, t, WALL0 + timedelta(seconds=t), "A" if i >= 1 else None)
            if i == 5:
                before = len(synced)
                rec.link_waybill("SF1234567890123", "sf", t)
                on_capture += [s for s in synced[before:] if s[0] == capture]
        rec.flush_journals()
        assert str(journal) in {path for name, path in synced if name == "clip-journal-sync"}
        before = len(synced)
        rec.stop("sealed", 0.9)
        on_capture += [s for s in synced[before:] if s[0] == capture]
        stopped = json.loads(journal.read_text())
        assert stopped["finish_reason"] == "sealed"
        assert [w["waybill"] for w in stopped["waybills"]] == ["SF1234567890123"]
        rec.flush_journals()
        assert on_capture == []
        by_sync = {path for name, path in synced if name == "clip-journal-sync"}
        assert {str(journal), str(journal.parent)} <= by_sync
    finally:
        rec.close()
    assert [c.finish_reason for c in ledger.clips()] == ["sealed"]
