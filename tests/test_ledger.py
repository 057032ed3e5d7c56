"""SQLite index tests on real database files."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from station.errors import LedgerError
from station.store.ledger import MIGRATIONS, ClipRecord, Ledger, ScanEventRecord, WaybillLink

TZ = timezone(timedelta(hours=8))


def make_clip(order: str = "PO-1", start_min: int = 0, **kw) -> ClipRecord:
    start = datetime(2026, 11, 30, 9, start_min, 0, 123000, tzinfo=TZ)
    return ClipRecord(
        order_id=order,
        station="桌1",
        started_at=start,
        ended_at=start + timedelta(seconds=42),
        duration_s=42.0,
        frame_count=1260,
        finish_reason="sealed",
        pre_roll_s=3.0,
        path=kw.pop("path", f"clips/2026/11/30/s_{order}_{start_min}.mp4"),
        manifest_path=f"clips/2026/11/30/s_{order}_{start_min}.json",
        size=1234,
        sha256="ab" * 32,
        waybills=(WaybillLink("SF1234567890123", "SF", 12.5),),
        events=(
            ScanEventRecord("order", order, "camera", start + timedelta(seconds=3), 3.0),
            ScanEventRecord("seal", "SEAL", "camera", start + timedelta(seconds=42), 42.0),
        ),
        **kw,
    )


def test_schema_migrates_once_and_reopens(tmp_path) -> None:
    path = tmp_path / "i.sqlite3"
    led = Ledger(path)
    assert led.schema_version == len(MIGRATIONS)
    assert led.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    led.close()
    again = Ledger(path)
    assert again.schema_version == len(MIGRATIONS)
    again.close()


def test_newer_schema_refused(tmp_path) -> None:
    path = tmp_path / "i.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger(path)


def test_round_trip_keeps_everything(ledger: Ledger) -> None:
    clip = make_clip()
    clip_id = ledger.add_clip(clip)
    (got,) = ledger.clips("PO-1")
    assert got.id == clip_id
    assert got.started_at == clip.started_at and got.started_at.utcoffset() == timedelta(hours=8)
    assert got.waybill == "SF1234567890123"
    assert got.waybills == clip.waybills
    assert [e.kind for e in got.events] == ["order", "seal"]
    assert got.events[1].t_clip_s == 42.0
    assert got.to_json()["sha256"] == "ab" * 32
    row = ledger.conn.execute("SELECT started_utc, tz FROM clips").fetchone()
    assert tuple(row) == ("2026-11-30T01:00:00.123000Z", "+0800")


def test_one_order_many_clips_in_time_order(ledger: Ledger) -> None:
    ledger.add_clip(make_clip("PO-1", 5))
    ledger.add_clip(make_clip("PO-2", 1))
    ledger.add_clip(make_clip("PO-1", 2))
    assert [c.started_at.minute for c in ledger.clips("PO-1")] == [2, 5]
    assert [c.order_id for c in ledger.clips()] == ["PO-2", "PO-1", "PO-1"]
    assert ledger.clips("nope") == []


def test_duplicate_path_is_refused_and_rolls_back(ledger: Ledger) -> None:
    ledger.add_clip(make_clip("PO-1", 1, path="clips/x.mp4"))
    with pytest.raises(LedgerError):
        ledger.add_clip(make_clip("PO-2", 2, path="clips/x.mp4"))
    assert [c.order_id for c in ledger.clips()] == ["PO-1"]
    assert ledger.conn.execute("SELECT count(*) FROM scan_events").fetchone()[0] == 2


def test_hostile_order_ids_are_just_data(ledger: Ledger) -> None:
    evil = "x'; DROP TABLE clips; --"
    ledger.add_clip(make_clip(evil, 1))
    assert ledger.clips(evil)[0].order_id == evil
    assert len(ledger.clips()) == 1


def test_unattached_events(ledger: Ledger) -> None:
    ev = ScanEventRecord("seal", "SEAL", "camera", datetime.now(TZ), None, "no open order")
    ledger.log_events("s1", [ev])
    (got,) = ledger.unattached_events()
    assert got.note == "no open order" and got.t_clip_s is None


def test_shared_connection_like_sqlite_utils() -> None:
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    led = Ledger(conn)
    led.add_clip(make_clip())
    assert conn.execute("SELECT count(*) FROM clips").fetchone()[0] == 1
