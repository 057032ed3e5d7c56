"""The central site's fleet health page: maintained archive counters on a real PostgreSQL,
the station's health report (backlog bytes, its own clock), and the page's rows and alarms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest_web import add_users, index_clip, login

from central.db import CentralDB
from central.site import CentralSite
from station import config as config_mod
from station.store.ledger import Ledger
from web.fleet import fleet_rows

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
MB = 1024 * 1024


def _clip(i: int, *, station: str = "s1", size: int = 1000, archived: str | None = None) -> dict:
    t = f"2026-12-01T01:00:{i:02d}Z"
    doc: dict[str, Any] = {
        "id": i, "order_id": f"PO-{i}", "waybill": None, "station": station,
        "started_at": t, "ended_at": t, "started_utc": t, "ended_utc": t, "tz": "+08:00",
        "duration_s": 1.0, "frame_count": 1, "finish_reason": "sealed", "pre_roll_s": 0.0,
        "path": f"clips/{i}.mp4", "manifest_path": "", "size": size, "sha256": f"{i:064x}",
    }  # fmt: skip
    if archived:
        doc.update(archived_utc=archived, archive_key=f"k/{i}", archive_meta={"etag": "x"},
                   archive_seq=i)  # fmt: skip
    return doc


@pytest.fixture
def central(pg_dsn: str):
    db = CentralDB(pg_dsn)
    db.migrate()
    yield db
    db.close()


def _enrol(db: CentralDB, name: str) -> int:
    st = db.station_for_token(db.add_station(name))
    assert st is not None
    return int(st["id"])


def _counted(db: CentralDB, station_id: int) -> dict[str, Any]:
    r = db._one(
        "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes, MAX(archived_utc) AS last"
        " FROM clips WHERE station_id = %s AND archived_utc IS NOT NULL",
        (station_id,),
    )
    assert r is not None
    return {"n_archived": r["n"], "archived_bytes": int(r["bytes"]), "last_archived_utc": r["last"]}


def _kept(db: CentralDB, station_id: int) -> dict[str, Any]:
    (r,) = [x for x in db.fleet_health() if x["id"] == station_id]
    return {k: r[k] for k in ("n_archived", "archived_bytes", "last_archived_utc")}


def test_archive_counters_equal_counted_values_after_repeated_batches(central) -> None:
    sid = _enrol(central, "s1")
    other = _enrol(central, "s2")
    # registered before archiving (the clips cursor), then archived (the archived cursor)
    central.register_clips(sid, "s1", [_clip(i, size=1000 * i) for i in range(1, 6)])
    assert _kept(central, sid) == {"n_archived": 0, "archived_bytes": 0, "last_archived_utc": None}
    archived = [_clip(i, size=1000 * i, archived=f"2026-12-01T02:00:0{i}Z") for i in (1, 2, 3)]
    central.register_clips(sid, "s1", archived)
    assert _kept(central, sid) == _counted(central, sid) == {
        "n_archived": 3, "archived_bytes": 6000, "last_archived_utc": "2026-12-01T02:00:03Z",
    }  # fmt: skip
    # the same batches again (a lost acknowledgement), and the clips cursor's unarchived
    # copies (their archive fields are null: COALESCE keeps the archived state)
    for _ in range(3):
        central.register_clips(sid, "s1", archived)
        central.register_clips(sid, "s1", [_clip(i, size=1000 * i) for i in range(1, 6)])
    assert _kept(central, sid) == _counted(central, sid)
    assert _kept(central, sid)["archived_bytes"] == 6000
    # a clip first registered already archived, and a batch mixing old and new archivings
    mixed = [*archived, _clip(5, size=5000, archived="2026-12-01T02:00:09Z"),
             _clip(7, size=7, archived="2026-12-01T02:00:08Z")]  # fmt: skip
    central.register_clips(sid, "s1", mixed)
    central.register_clips(sid, "s1", mixed)
    assert _kept(central, sid) == _counted(central, sid) == {
        "n_archived": 5, "archived_bytes": 11007, "last_archived_utc": "2026-12-01T02:00:09Z",
    }  # fmt: skip
    # another station's clips count for it only
    central.register_clips(
        other, "s2", [_clip(1, station="s2", size=9, archived="2026-12-02T00:00:00Z")]
    )
    assert _kept(central, sid)["archived_bytes"] == 11007
    assert _kept(central, other) == _counted(central, other) == {
        "n_archived": 1, "archived_bytes": 9, "last_archived_utc": "2026-12-02T00:00:00Z",
    }  # fmt: skip
    # a refused batch (another SHA-256) changes no counter: its transaction rolled back
    bad = {**_clip(8, size=50, archived="2026-12-03T00:00:00Z")}
    forged = {**_clip(1, size=1000, archived="2026-12-03T00:00:00Z"), "sha256": "f" * 64}
    with pytest.raises(Exception, match="another SHA-256"):
        central.register_clips(sid, "s1", [bad, forged])
    assert _kept(central, sid) == _counted(central, sid)
    assert _kept(central, sid)["archived_bytes"] == 11007


def test_a_clip_held_with_another_sha256_is_left_out_and_named_when_asked(central) -> None:
    """A restored station asks for its conflicts: the clip the index holds with another SHA-256
    is named and left as it was; the rest of the batch registers and counts once."""
    sid = _enrol(central, "s1")
    central.register_clips(sid, "s1", [_clip(1, archived="2026-12-01T02:00:01Z"), _clip(2)])
    reused = {**_clip(2, size=77, archived="2026-12-03T00:00:00Z"), "sha256": "e" * 64}
    conflicts: list[int] = []
    n = central.register_clips(sid, "s1", [reused, _clip(3)], conflicts=conflicts)
    assert (n, conflicts) == (1, [2])
    rows = central._all(
        "SELECT local_id, sha256, archived_utc FROM clips WHERE station_id = %s ORDER BY local_id",
        (sid,),
    )
    assert [(r["local_id"], r["sha256"]) for r in rows] == [(i, f"{i:064x}") for i in (1, 2, 3)]
    assert rows[1]["archived_utc"] is None  # nothing of the refused clip was written
    assert _kept(central, sid) == _counted(central, sid)
    assert central.high_water(sid)["clips"] == 3
    (r,) = [x for x in central.fleet_health() if x["id"] == sid]
    assert r["n_clips"] == 3


def test_migration_8_backfills_the_archive_counters(central) -> None:
    """An index that had archived clips before migration 8 starts with counted values."""
    sid = _enrol(central, "s1")
    central.register_clips(
        sid, "s1", [_clip(i, size=100, archived=f"2026-12-01T03:00:0{i}Z") for i in (1, 2)]
    )
    central.register_clips(sid, "s1", [_clip(3, size=100)])

    def undo_and_redo(conn: Any) -> None:
        from central.schema import MIGRATIONS

        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "ALTER TABLE stations DROP COLUMN last_archived_utc,"
                " DROP COLUMN archived_bytes, DROP COLUMN n_archived"
            )
            (script,) = [m for m in MIGRATIONS if "ADD COLUMN archived_bytes" in m]
            cur.execute(script)

    central._run(undo_and_redo)
    assert _kept(central, sid) == _counted(central, sid) == {
        "n_archived": 2, "archived_bytes": 200, "last_archived_utc": "2026-12-01T03:00:02Z",
    }  # fmt: skip


def _row(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "s1", "health": {}, "health_utc": T0, "last_seen_utc": T0, "retired_utc": None,
        "n_clips": 0, "n_archived": 0, "archived_bytes": 0, "last_archived_utc": None,
        "witness_alarms": [],
    }  # fmt: skip
    return {**base, **kw}


def test_fleet_rows_decide_offset_silence_and_alarms() -> None:
    rows = [
        _row(name="ok", health={"state": "recording", "archive_backlog": 2,
             "archive_backlog_bytes": 3 * MB, "sent_utc": "2026-12-01T07:59:59.500000Z",
             "disk_free_bytes": 5000 * MB, "clock_synced": True}),
        _row(name="gone", health_utc=T0 - timedelta(hours=2), health={"state": "recording",
             "archive_backlog": 40, "archive_backlog_bytes": 99, "last_error": "camera lost"}),
        _row(name="skew", health={"state": "idle", "sent_utc": "2026-12-01T08:00:07Z",
             "disk_free_bytes": 10 * MB, "archive_backlog": 500}),
        _row(name="never", health={}, health_utc=None, last_seen_utc=None),
        _row(name="old", retired_utc=T0, health_utc=T0 - timedelta(days=3),
             witness_alarms=[{"kind": "log-fork", "detail": "two roots at 5"}]),
        _row(name="refused", health={"state": "idle", "sync_failed": {
             "checkpoints": "/checkpoints: HTTP 409: log-fork", "waybills": "/clips: timed out"}}),
        _row(name="synced", health={"state": "idle", "sync_failed": {}}),
    ]  # fmt: skip
    got = {
        r.name: r
        for r in fleet_rows(
            rows,
            T0 + timedelta(seconds=10),
            stale_after_s=60,
            disk_free_min_bytes=2048 * MB,
            backlog_max_clips=200,
        )
    }
    ok = got["ok"]
    assert (ok.silent, ok.state, ok.backlog_clips, ok.backlog_bytes, ok.alarms) == (
        False, "recording", 2, 3 * MB, [],
    )  # fmt: skip
    assert ok.clock_offset_s == -0.5 and ok.age_s == 10.0
    gone = got["gone"]
    assert gone.silent and gone.state == "recording" and gone.backlog_clips == 40
    assert gone.alarms == [("silent", ""), ("error", "camera lost")]
    assert got["skew"].clock_offset_s == 7.0
    assert [k for k, _ in got["skew"].alarms] == ["disk-low", "backlog", "clock-offset"]
    assert got["never"].age_s is None and got["never"].alarms == [("silent", "")]
    # up and recording, but its last sync round failed: which step, and why
    assert got["refused"].alarms == [
        ("sync", "checkpoints: /checkpoints: HTTP 409: log-fork · waybills: /clips: timed out")
    ]
    assert got["synced"].alarms == []
    old = got["old"]  # retired: not "silent", but its witness alarm stays
    assert old.retired and old.alarms == [("log-fork", "two roots at 5")]


def test_station_health_reports_backlog_bytes_and_its_own_clock(
    tmp_path: Path, mp4_template: Path
) -> None:
    from station.fleet.central_sync import CentralSync

    cfg = config_mod.load(None).with_data_dir(tmp_path / "st").replace("station", name="s1")
    cfg = cfg.replace("central", url="http://127.0.0.1:9", token="pcs_x")
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        a = index_clip(ledger, cfg.station.data_dir, mp4_template, "PO-1", station="s1")
        b = index_clip(ledger, cfg.station.data_dir, mp4_template, "PO-2", station="s1",
                       start=datetime(2026, 11, 30, 9, 5, tzinfo=UTC))  # fmt: skip
        sync = CentralSync(cfg, ledger=ledger)
        try:
            before = datetime.now(UTC)
            doc = sync.health()
            assert doc["archive_backlog"] == 2
            assert doc["archive_backlog_bytes"] == a.size + b.size
            sent = datetime.fromisoformat(doc["sent_utc"].replace("Z", "+00:00"))
            assert before <= sent <= datetime.now(UTC)
            assert ledger.mark_archived(a.id, "k/1", {"etag": "x"})
            assert sync.health()["archive_backlog_bytes"] == b.size
        finally:
            sync.stop(timeout=0)
    finally:
        ledger.close()


def test_fleet_page_on_the_central_site(central, pg_dsn: str, tmp_path: Path) -> None:
    from web import create_app

    sid = _enrol(central, "station-01")
    central.register_clips(sid, "station-01", [_clip(1, station="station-01", size=4_000_000,
                           archived="2026-12-01T02:00:00Z")])  # fmt: skip
    central.set_health(sid, {"state": "idle", "archive_backlog": 7,
                             "archive_backlog_bytes": 21_000_000})  # fmt: skip
    central.replace_station("station-01")
    cfg = config_mod.load(None).with_data_dir(tmp_path / "central").replace("central", dsn=pg_dsn)
    add_users(cfg.station.data_dir, stations=["station-01"])
    client = create_app(cfg, central=CentralSite(cfg), test_config={"TESTING": True}).test_client()
    assert client.get("/fleet").status_code == 302  # staff only
    login(client, "viewer")
    assert client.get("/fleet").status_code == 403
    login(client, "operator")
    page = client.get("/fleet").get_data(as_text=True)
    assert 'id="fleet-station-01"' in page and 'id="fleet-station-01-retired"' in page
    assert "7 clips · 21.0 MB" in page and "4.0 MB · 1 clip" in page
    assert 'id="retention-note"' in page
    dash = client.get("/dashboard").get_data(as_text=True)
    assert 'href="/fleet"' in dash and 'id="fleet-health-link"' in dash
    client.get("/lang/zh_CN")
    zh = client.get("/fleet").get_data(as_text=True)
    assert "设备群健康状况" in zh and "待归档" in zh and "已停用（已更换）" in zh


def test_the_fleet_page_is_central_only(tmp_path: Path) -> None:
    from web import create_app

    cfg = config_mod.load(None).with_data_dir(tmp_path / "station")
    add_users(cfg.station.data_dir)
    client = create_app(cfg, test_config={"TESTING": True}).test_client()
    login(client, "admin")
    assert client.get("/fleet").status_code == 404
    assert 'href="/fleet"' not in client.get("/dashboard").get_data(as_text=True)


def test_the_same_batch_twice_at_once_counts_once(central, pg_dsn: str) -> None:
    """A station's retry can arrive while the request that timed out is still being written."""
    import threading

    sid = _enrol(central, "s1")
    batch = [_clip(i % 60, size=10) for i in range(1, 60)]
    central.register_clips(sid, "s1", batch)
    archived = [{**c, **_clip(c["id"], size=10, archived="2026-12-01T05:00:00Z")} for c in batch]
    dbs = [CentralDB(pg_dsn) for _ in range(4)]
    start = threading.Barrier(len(dbs))
    errors: list[BaseException] = []

    def push(db: CentralDB) -> None:
        try:
            start.wait()
            for _ in range(3):
                db.register_clips(sid, "s1", archived)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(db,)) for db in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for db in dbs:
        db.close()
    assert not errors
    assert _kept(central, sid) == _counted(central, sid)
    assert _kept(central, sid)["archived_bytes"] == 10 * len(batch)
