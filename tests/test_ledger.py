"""SQLite index tests on real database files."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
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


def test_one_order_many_clips_in_the_order_recorded(ledger: Ledger) -> None:
    """Listed in the index's sequence, not by start: the third clip, started "earlier" (a clock
    set back at boot), was recorded last (tests/test_recording_order.py)."""
    ledger.add_clip(make_clip("PO-1", 5))
    ledger.add_clip(make_clip("PO-2", 1))
    ledger.add_clip(make_clip("PO-1", 2))
    assert [c.started_at.minute for c in ledger.clips("PO-1")] == [5, 2]
    assert [c.order_id for c in ledger.clips()] == ["PO-1", "PO-2", "PO-1"]
    assert ledger.clips("nope") == []


def test_the_last_orders_of_a_station_newest_first_with_their_waybills(ledger: Ledger) -> None:
    """What the table may still have in view at start-up (the session's memory): the orders
    of the station's newest clips, each once, with the waybills of their clips walked."""
    yt = (WaybillLink("YT1234567890123", "YTO", 3.0),)
    ledger.add_clip(make_clip("PO-1", 1))
    ledger.add_clip(replace(make_clip("PO-2", 2), waybills=yt))
    ledger.add_clip(replace(make_clip("PO-1", 3), waybills=()))  # a repack: the newest
    ledger.add_clip(replace(make_clip("PO-9", 4), station="桌2"))  # another station's
    assert ledger.recent_orders("桌1", 10) == [
        ("PO-1", ("SF1234567890123",)),
        ("PO-2", ("YT1234567890123",)),
    ]
    assert ledger.recent_orders("桌1", 1) == [("PO-1", ("SF1234567890123",))]
    assert ledger.recent_orders("桌3", 10) == []


def test_the_waybills_a_station_read_with_no_clip_open_newest_first(ledger: Ledger) -> None:
    """Labels the table may still have in view at start-up, no clip's (the session's memory):
    the waybills of the station's scan events of no clip, each once, newest read first; not
    one linked to a clip since, nor one read in a clip, nor another station's."""
    wall = datetime(2026, 11, 30, 10, 0, tzinfo=TZ)

    def read(text: str, kind: str = "waybill", station: str = "桌1") -> None:
        ledger.log_events(station, [ScanEventRecord(kind, text, "camera", wall)])

    for text in ("YT1234567890123", "JT1234567890123", "SF1234567890123"):
        read(text)
    read("YT1234567890123")  # read again: the newest
    read("JD0123456789012", station="桌2")
    read("SEAL", kind="seal")
    ledger.add_clip(make_clip("PO-1", 1))  # SF1234567890123 linked to a clip since
    ledger.add_clip(replace(make_clip("PO-2", 2), waybills=(), events=(
        ScanEventRecord("waybill", "JT9999999999999", "camera", wall, 3.0),
    )))  # fmt: skip
    assert ledger.unlinked_waybills("桌1", 10) == ["YT1234567890123", "JT1234567890123"]
    assert ledger.unlinked_waybills("桌1", 1) == ["YT1234567890123"]
    assert ledger.unlinked_waybills("桌3", 10) == []


def test_the_unlinked_waybills_at_start_up_are_read_by_an_index_not_a_scan(
    ledger: Ledger,
) -> None:
    """The start-up seed of the table's memory (``unlinked_waybills``) runs over a year of
    scans (a million scan events) on a Pi: its plan must search an index for the events of no
    clip (newest first by that index, no sort of them), never scan the table; also once
    ANALYZE has given the planner the table's real statistics."""
    wall = datetime(2026, 11, 30, 10, 0, tzinfo=TZ)
    for i in range(50):  # clips with their events, and scans made with no clip open
        events = tuple(
            ScanEventRecord("item", f"690123456{i:04d}", "camera", wall, 1.0) for _ in range(8)
        )
        ledger.add_clip(replace(make_clip(f"PO-{i}", i), events=events))
        ledger.log_events("桌1", [ScanEventRecord("waybill", f"YT{i:013d}", "camera", wall)])
    statements: list[str] = []
    ledger.conn.set_trace_callback(statements.append)
    try:
        assert len(ledger.unlinked_waybills("桌1", 10)) == 10
    finally:
        ledger.conn.set_trace_callback(None)
    (query,) = [q for q in statements if "scan_events" in q]
    for analyzed in (False, True):
        if analyzed:
            ledger.conn.execute("ANALYZE")
        plan = [row[3] for row in ledger.conn.execute(f"EXPLAIN QUERY PLAN {query}")]
        assert any(p.startswith("SEARCH e USING") and "INDEX" in p for p in plan), plan
        assert not any(p.startswith("SCAN") or "TEMP B-TREE" in p for p in plan), plan


def test_the_last_orders_of_a_station_are_its_last_indexed_not_last_started(
    ledger: Ledger,
) -> None:
    """A Pi boots on fake-hwclock's saved time after a power cut, before its clips: those it
    records then start before older ones. The orders last packed there are those indexed
    last (the station's own sequence), not the latest by a clock that steps."""
    ledger.add_clip(make_clip("PO-1", 9))
    ledger.add_clip(make_clip("PO-2", 1))  # recorded after PO-1, on a clock set back
    assert ledger.recent_orders("桌1", 1) == [("PO-2", ("SF1234567890123",))]
    assert [o for o, _ in ledger.recent_orders("桌1", 10)] == ["PO-2", "PO-1"]


def test_the_newest_clip_of_a_station_says_how_it_last_stopped(ledger: Ledger) -> None:
    """Its last indexed (by start a clock set back would hide it), another station's aside:
    ended "interrupted", its packing is the one the station's stop cut (session.Cut)."""
    ledger.add_clip(make_clip("PO-1", 1))
    ledger.add_clip(make_clip("PO-3", 3))
    ledger.add_clip(replace(make_clip("PO-2", 2), finish_reason="interrupted"))  # after PO-3
    ledger.add_clip(replace(make_clip("PO-9", 4), station="桌2"))
    newest = ledger.newest_clip_at("桌1")
    assert newest is not None
    assert (newest.order_id, newest.finish_reason) == ("PO-2", "interrupted")
    assert ledger.newest_clip_at("桌3") is None
    assert ledger.newest_unattached_event("桌1") is None
    wall = newest.ended_at
    ledger.log_events("桌1", [ScanEventRecord("seal", "SEAL", "keyboard", wall)])
    ledger.log_events("桌2", [ScanEventRecord("item", "4006381333931", "camera", wall)])
    got = ledger.newest_unattached_event("桌1")
    assert got is not None and (got.kind, got.wall) == ("seal", wall)


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
    # the caller owns a connection it passes in (Ledger.close leaves it open): close it here,
    # or Python 3.13 warns when the collector finds it, failing whichever test runs then
    with closing(
        sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    ) as conn:
        led = Ledger(conn)
        led.add_clip(make_clip())
        led.close()
        assert conn.execute("SELECT count(*) FROM clips").fetchone()[0] == 1


def test_the_id_floor_numbers_new_clips_above_it_and_never_goes_down(ledger: Ledger) -> None:
    assert ledger.add_clip(make_clip("PO-1", 1)) == 1
    ledger.raise_id_floor(40)  # a restored index: the central site holds ids up to 40
    ledger.raise_id_floor(7)
    assert ledger.next_clip_id() == 41
    assert ledger.add_clip(make_clip("PO-2", 2)) == 41
    assert ledger.add_clip(make_clip("PO-3", 3)) == 42


def test_renumbered_clips_keep_their_rows_and_never_take_an_old_id(ledger: Ledger) -> None:
    first = ledger.add_clip(make_clip("PO-1", 1))
    a = ledger.add_clip(replace(make_clip("PO-2", 2), sha256="cd" * 32))
    repack = {"repack_of": [first, a]}
    b = ledger.add_clip(replace(make_clip("PO-2", 3), sha256="ef" * 32, extra=repack))
    assert ledger.renumber_clips([b, a], above=10) == {a: 11, b: 12}
    got = {c.id: c for c in ledger.clips()}
    assert sorted(got) == [first, 11, 12]
    assert got[11].sha256 == "cd" * 32 and got[12].sha256 == "ef" * 32
    assert got[12].repack_of == [first, 11]  # the repack names the clip where it now is
    assert [e.kind for e in got[11].events] == ["order", "seal"]
    assert got[11].waybills == make_clip().waybills
    assert ledger.add_clip(make_clip("PO-3", 4)) == 13
    assert ledger.renumber_clips([99], above=5) == {}  # not here: nothing moves


def test_a_clip_named_by_a_signed_deletion_is_not_renumbered(ledger: Ledger) -> None:
    cid = ledger.add_clip(make_clip("PO-1", 1))
    ledger.mark_deleted(cid, reason="age", record=b"{}", signature=None, key_fingerprint="",
                        deleted_at=datetime.now(TZ))  # fmt: skip
    with pytest.raises(LedgerError, match="cannot renumber"):
        ledger.renumber_clips([cid], above=10)
    assert [c.id for c in ledger.clips()] == [cid]
    assert ledger.next_clip_id() == cid + 1  # rolled back, the floor too
    assert ledger.add_clip(make_clip("PO-2", 2)) == cid + 1


def test_a_scan_logged_after_a_clip_is_after_it_whatever_its_stamp(ledger: Ledger) -> None:
    """What was scanned with no clip open after a clip, by the index's sequence: a clock set
    back (a boot on fake-hwclock's time) stamps it before the clip ended. Unknown for a clip
    with no events to place it by."""
    clip_id = ledger.add_clip(make_clip("PO-1", 30))
    bare = ledger.add_clip(replace(make_clip("PO-2", 40), events=()))
    assert ledger.logged_since("桌1", clip_id) is False
    assert ledger.logged_since("桌1", bare) is None
    set_back = datetime(2026, 11, 30, 8, 0, tzinfo=TZ)
    ledger.log_events("桌2", [ScanEventRecord("seal", "SEAL", "keyboard", set_back)])
    assert ledger.logged_since("桌1", clip_id) is False  # another station's
    ledger.log_events("桌1", [ScanEventRecord("seal", "SEAL", "keyboard", set_back)])
    assert ledger.logged_since("桌1", clip_id) is True
