"""Scans indexed with no clip open: no fsync on the capture thread, nothing lost to a kill -9."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from recorder_support import encoded_recorder
from sync_support import fsyncs, run_killed

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
    """The capture thread's index write commits on a connection that syncs nothing
    (synchronous=NORMAL in WAL, no automatic checkpoint) and touches none of the connection
    the clip finisher holds through its commits' fsyncs; the WAL is synced on the thread
    "index-sync" instead. So does the duplicate check at an order scan, a read."""
    ledger = Ledger(tmp_path / "index.sqlite3")
    rec = encoded_recorder(rec_cfg, ledger, W, H, FPS)
    dbs = {id(db.conn): db.conn for db in (ledger.db, getattr(ledger, "capture_db", ledger.db))}
    ran: dict[int, list[str]] = {k: [] for k in dbs}
    for k, conn in dbs.items():
        conn.set_trace_callback(ran[k].append)
    synced = fsyncs(monkeypatch)
    try:
        rec.log_event(item(1), 0.0)
        ledger.order_clip_refs("PO-1")
        for conn in dbs.values():
            conn.set_trace_callback(None)
        writes = [k for k, sqls in ran.items() if any("INSERT INTO scan_events" in s for s in sqls)]
        assert len(writes) == 1
        conn = dbs[writes[0]]
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: no sync at commit
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # nor a checkpoint
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ran[id(ledger.db.conn)] == []  # the finisher's connection (FULL) was not used
        assert [e.text for e in ledger.unattached_events()] == [EAN]
    finally:
        rec.close()
        ledger.close()  # waits for "index-sync"
    assert synced, "the WAL was never synced"
    assert {(name, Path(path).name) for name, path in synced} == {
        ("index-sync", "index.sqlite3-wal")
    }


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
ledger = Ledger.in_data_dir(data)
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
    ledger = Ledger.in_data_dir(data)
    try:
        got = [(e.kind, e.text) for e in ledger.unattached_events()]
    finally:
        ledger.close()
    assert got == [("item", "item-0"), ("refused", "refused-1"), ("pedal", "pedal-2")]
