"""Scans indexed with no clip open: no fsync nor write on the capture thread, nothing lost to
a kill -9."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from recorder_support import encoded_recorder
from sync_support import fsyncs, run_killed, statements

from station import config as config_mod
from station.store.ledger import Ledger, ScanEventRecord

W, H, FPS = 64, 48, 10.0
WALL0 = datetime(2026, 12, 7, 9, 0, 0).astimezone()
EAN = "6901234567892"  # a product scanned by hand between two orders


def item(n: int) -> ScanEventRecord:
    return ScanEventRecord("item", EAN, "keyboard", WALL0 + timedelta(seconds=n), None,
                           f"no open order; ignored ({n})")  # fmt: skip


@pytest.fixture
def rec_cfg(cfg: config_mod.Config) -> config_mod.Config:
    return cfg.replace("proof", enabled=False)


def test_a_scan_with_no_clip_open_is_indexed_without_waiting_for_an_fsync(
    rec_cfg: config_mod.Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The capture thread runs no write statement and no fsync for a scan with no clip open:
    it writes one line to the index's capture journal, which "index-sync" fsyncs, and the
    thread "index-writer" commits the row (on the connection whose commits are synced). The
    duplicate check at an order scan reads on a connection of its own, read only, which no
    other thread's statement holds."""
    ledger = Ledger(tmp_path / "index.sqlite3", capture_writes=True)
    rec = encoded_recorder(rec_cfg, ledger, W, H, FPS)
    synced = fsyncs(monkeypatch)
    try:
        with statements(ledger) as ran:
            capture = threading.Thread(
                target=lambda: (rec.log_event(item(1), 0.0), ledger.order_clip_refs("PO-1")),
                name="capture",
            )
            capture.start()
            capture.join()
            assert ledger.flush_capture_writes()
        mine = [(conn, sql.split()[0]) for th, conn, sql in ran if th == "capture"]
        assert mine == [("capture", "SELECT")]
        assert [(th, conn) for th, conn, sql in ran if "INSERT INTO scan_events" in sql] == [
            ("index-writer", "writer")
        ]
        assert ledger.writer_db is not None
        assert ledger.writer_db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert ledger.capture_db.conn.execute("PRAGMA query_only").fetchone()[0] == 1
        assert [e.text for e in ledger.unattached_events()] == [EAN]
    finally:
        rec.close()
        ledger.close()  # waits for "index-sync"
    assert ("index-sync", "index.sqlite3-capture.jsonl") in {
        (name, Path(path).name) for name, path in synced
    }
    assert not [p for name, p in synced if name == "capture"]


# A station's capture thread indexes scans with no clip open, then dies by kill -9 the moment
# log_event returned (nothing flushed, no thread finished).
KILLED_CHILD = """
import os, signal, sys
from datetime import datetime, timedelta
from pathlib import Path

from recorder_support import encoded_recorder

from station import config as config_mod
from station.store.ledger import Ledger, ScanEventRecord

data = Path(sys.argv[1])
cfg = config_mod.load(None).with_data_dir(data).replace("proof", enabled=False)
ledger = Ledger.in_data_dir(data, capture_writes=True)
rec = encoded_recorder(cfg, ledger, 64, 48, 10.0)
wall = datetime(2026, 12, 7, 9, 0, 0).astimezone()
for n, kind in enumerate(("item", "refused", "pedal")):
    rec.log_event(ScanEventRecord(kind, f"{kind}-{n}", "keyboard", wall + timedelta(seconds=n)),
                  float(n))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_scans_indexed_with_no_clip_open_survive_a_kill_9_right_after(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_killed(KILLED_CHILD, str(data))
    ledger = Ledger.in_data_dir(data, capture_writes=True)  # commits what the journal holds
    try:
        assert ledger.flush_capture_writes()
        got = [(e.kind, e.text) for e in ledger.unattached_events()]
    finally:
        ledger.close()
    assert got == [("item", "item-0"), ("refused", "refused-1"), ("pedal", "pedal-2")]
