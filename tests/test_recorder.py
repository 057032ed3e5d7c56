"""The recorder on its own: scans that cannot be indexed yet, and what close() does with them."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from recorder_support import encoded_recorder

from station import config as config_mod
from station.errors import LedgerError
from station.recording.recorder import Recorder
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
