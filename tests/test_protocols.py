"""Both clip indexes are one IndexReader: checked by mypy (this file is in `make lint`) and here
at run time, signature by signature and answer by answer, on real SQLite and PostgreSQL."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from central.db import CentralDB
from station.store.clips import ClipSearch
from station.store.ledger import ClipRecord, Ledger, WaybillLink
from web.backends import IndexReader
from web.index import ClipIndex, zone_of


def static_conformance(station: ClipIndex, central: CentralDB) -> list[IndexReader]:
    """Never called: mypy --strict rejects this file when either class stops being one."""
    return [station, central]


MEMBERS = sorted(
    name
    for name, value in vars(IndexReader).items()
    if callable(value) and not name.startswith("_")
)


@pytest.mark.parametrize("impl", [ClipIndex, CentralDB], ids=["sqlite", "postgresql"])
@pytest.mark.parametrize("name", MEMBERS)
def test_every_protocol_method_has_a_compatible_signature(impl: type, name: str) -> None:
    want = inspect.signature(getattr(IndexReader, name))
    have = inspect.signature(getattr(impl, name))
    params = dict(have.parameters)
    for p in want.parameters.values():
        got = params.pop(p.name, None)
        assert got is not None, f"{impl.__name__}.{name} lacks parameter {p.name}"
        assert got.kind == p.kind, f"{impl.__name__}.{name}({p.name}): {got.kind} != {p.kind}"
        assert got.default == p.default, f"{impl.__name__}.{name}({p.name}) default differs"
    extra = [p for p in params.values() if p.default is inspect.Parameter.empty]
    assert not extra, f"{impl.__name__}.{name} requires more than the Protocol: {extra}"


def test_the_member_list_is_not_vacuous() -> None:
    assert {"order", "search", "legal_hold", "packer_days", "fleet_health", "close"} <= set(MEMBERS)


SH = timezone(timedelta(hours=8))
T0 = datetime(2026, 12, 1, 23, 30, tzinfo=SH)  # 15:30 UTC: the local day differs from UTC's


def _records() -> list[ClipRecord]:
    out = []
    specs = [
        ("PO-1", "s1", 0, "ann", 30.0, "SF100"),
        ("PO-2", "s1", 1, "ann", 50.0, None),
        ("PO-3", "s2", 2, "bob", 40.0, "YT7"),
        ("PO-3", "s2", 40, None, 12.0, None),  # a second clip of the order, no packer
        ("PO-4", "s1", 60, "ann", 20.0, None),  # 00:30 local: the next local day
    ]
    for order, station, minutes, packer, duration, waybill in specs:
        start = T0 + timedelta(minutes=minutes)
        out.append(
            ClipRecord(
                order_id=order,
                station=station,
                started_at=start,
                ended_at=start + timedelta(seconds=duration),
                duration_s=duration,
                frame_count=int(duration * 25),
                finish_reason="sealed",
                pre_roll_s=1.0,
                path=f"clips/{order}-{minutes}.mp4",
                manifest_path="",
                size=1000 + minutes,
                sha256=f"{minutes:064x}",
                waybills=(WaybillLink(waybill, "SF", 1.0),) if waybill else (),
                extra={"packer": packer} if packer else {},
            )
        )
    return out


def _utc(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _doc(local_id: int, rec: ClipRecord) -> dict[str, Any]:
    """The clip as central sync sends it (station/fleet/central_sync.py)."""
    doc = rec.to_json()
    doc.update(id=local_id, started_utc=_utc(rec.started_at), ended_utc=_utc(rec.ended_at))
    doc["tz"] = rec.started_at.strftime("%z")
    return doc


@pytest.fixture
def both(tmp_path: Path, pg_dsn: str) -> Iterator[tuple[ClipIndex, CentralDB]]:
    """The same clips in a station's SQLite index and in the fleet's PostgreSQL index."""
    ledger = Ledger(tmp_path / "index.sqlite3")
    db = CentralDB(pg_dsn)
    db.migrate()
    ids = {}
    for station in ("s1", "s2"):
        row = db.station_for_token(db.add_station(station))
        assert row is not None
        ids[station] = int(row["id"])
    for rec in _records():
        local = ledger.add_clip(rec)
        db.register_clips(ids[rec.station], rec.station, [_doc(local, rec)])
    ledger.close()
    index = ClipIndex(tmp_path / "index.sqlite3")
    yield index, db
    index.close()
    db.close()


def _orders(clips: list[ClipRecord]) -> list[tuple[str, str, float, str | None, str | None]]:
    return [(c.order_id, c.station, c.duration_s, c.packer, c.waybill) for c in clips]


def test_both_indexes_answer_the_same(both: tuple[ClipIndex, CentralDB]) -> None:
    for index in both:
        reader: IndexReader = index
        assert _orders(reader.order("PO-3")) == [
            ("PO-3", "s2", 40.0, "bob", "YT7"), ("PO-3", "s2", 12.0, None, None),
        ]  # fmt: skip
        assert reader.order("PO-9") == []
        info = reader.order_info("PO-3")
        assert info is not None and info["order_id"] == "PO-3"
        assert reader.order_info("PO-9") is None
        first = reader.order("PO-1")[0]
        assert first.id is not None
        got = reader.clip(first.id)
        assert got is not None and got.order_id == "PO-1"
        assert reader.clip(2**70) is None
        found = reader.search(ClipSearch("po"))
        assert {c.order_id for c in found} == {"PO-1", "PO-2", "PO-3", "PO-4"}
        assert _orders(reader.search(ClipSearch("", station="s1", limit=1))) == [
            ("PO-4", "s1", 20.0, "ann", None)
        ]
        assert {c.order_id for c in reader.search(ClipSearch("", stations=["s2"]))} == {"PO-3"}
        assert {c.order_id for c in reader.search(ClipSearch("", packer="bob"))} == {"PO-3"}
        assert reader.stations() == ["s1", "s2"]
        start, end = _utc(T0), _utc(T0 + timedelta(minutes=50))
        assert sorted((s, n) for s, _t, n in reader.started_between(start, end)) == [
            ("s1", 1000), ("s1", 1001), ("s2", 1002), ("s2", 1040),
        ]  # fmt: skip
        span = (_utc(T0 - timedelta(days=1)), _utc(T0 + timedelta(days=1)))
        assert sorted((p, d) for p, _t, d in reader.packer_clips(*span)) == [
            ("ann", 20.0), ("ann", 30.0), ("ann", 50.0), ("bob", 40.0),
        ]  # fmt: skip
        assert reader.packer_days(*span, "Asia/Shanghai") == [
            ("ann", "2026-12-01", 2, 40.0), ("ann", "2026-12-02", 1, 20.0),
            ("bob", "2026-12-01", 1, 40.0),
        ]  # fmt: skip
        assert reader.packer_days(*span, "+00:00", stations=["s2"]) == [
            ("bob", "2026-12-01", 1, 40.0)
        ]
        assert reader.packer_days(*span, "+00:00", stations=[]) == []
        assert str(reader.first_clip_utc()).startswith("2026-12-01T15:30:00")
        assert str(reader.last_clip_utc("s1")).startswith("2026-12-01T16:30:00")
        assert reader.last_clip_utc("s9") is None
        assert reader.legal_hold("PO-1") is None


def test_both_indexes_page_a_listing_oldest_first_after_a_key(
    both: tuple[ClipIndex, CentralDB],
) -> None:
    """Keyset paging (ClipSearch.after), as the export reads a year: each page starts after
    the last clip of the one before, and the range's bounds and filters still hold."""
    start, end = _utc(T0 + timedelta(minutes=1)), _utc(T0 + timedelta(hours=2))
    for index in both:
        pages, after = [], ("", 0)
        while page := index.search(ClipSearch(limit=2, after=after, start_utc=start, end_utc=end)):
            pages.append([(c.order_id, c.duration_s) for c in page])
            last = page[-1]
            assert last.id is not None
            after = (str(last.extra["started_utc"]), last.id)
        assert pages == [[("PO-2", 50.0), ("PO-3", 40.0)], [("PO-3", 12.0), ("PO-4", 20.0)]]
        s1 = ClipSearch(limit=5, after=("", 0), station="s1", start_utc=start, end_utc=end)
        assert [c.order_id for c in index.search(s1)] == ["PO-2", "PO-4"]
    with pytest.raises(ValueError, match="after"):
        ClipSearch("po", after=("", 0))


def test_what_only_one_index_knows_is_empty_on_the_other(
    both: tuple[ClipIndex, CentralDB],
) -> None:
    station, central = both
    # the fleet's registry and health exist centrally only
    assert [s.station for s in central.station_statuses(60.0)] == ["s1", "s2"]
    assert [r["name"] for r in central.fleet_health()] == ["s1", "s2"]
    assert station.station_statuses(60.0) == [] and station.fleet_health() == []
    # rejected scans stay on the station (its dashboard shows them)
    assert central.recent_rejections() == []


def test_zone_of_reads_what_pg_zone_writes() -> None:
    when = datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert when.astimezone(zone_of("+08:00")).hour == 20
    assert when.astimezone(zone_of("-03:30")).strftime("%H:%M") == "08:30"
    assert when.astimezone(zone_of("Europe/Berlin")).hour == 14  # summer time
