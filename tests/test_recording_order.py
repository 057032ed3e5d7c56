"""An order's clips in the order they were recorded, not by start: a clock set back at boot."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest_web import WebEnv, add_users, login, make_app
from test_session_restart import BOOTED_EARLIER, WALL0, H, W, run

from station import config as config_mod
from station.capture.frames import RawScan
from station.proof.bundle import export_order
from station.store.clips import ClipRecord, recording_order
from station.store.ledger import Ledger

ORDER = "PO-AGAIN-7"


def record(station: str, seq: int, start: datetime, *, enrolment: int = 0) -> ClipRecord:
    extra = {} if not enrolment else {"station_id": enrolment, "local_id": seq}
    return ClipRecord(
        order_id=ORDER, station=station, started_at=start, ended_at=start + timedelta(seconds=9),
        duration_s=9.0, frame_count=90, finish_reason="sealed", pre_roll_s=0.0,
        path=f"clips/{station}-{seq}.mp4", manifest_path="", size=1, sha256=f"{seq:064x}",
        id=seq if not enrolment else 1000 - seq, extra=extra,
    )  # fmt: skip


def test_each_station_in_its_own_sequence_the_stations_by_start() -> None:
    """s1 booted on an earlier clock between its two clips; s2 recorded one a few minutes after
    s1's first. s1's second clip stays after its first (whatever its start); the stations'
    sequences merge by the start of each one's next clip (s1's second, started "earlier",
    before s2's); on the central index (enrolments, local ids) the same."""
    t = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    for enrol in (False, True):
        s1a = record("s1", 1, t, enrolment=1 if enrol else 0)
        s1b = record("s1", 2, t - timedelta(hours=1), enrolment=1 if enrol else 0)
        s2 = record("s2", 5, t + timedelta(minutes=3), enrolment=2 if enrol else 0)
        assert recording_order([s2, s1b, s1a]) == [s1a, s1b, s2]
    # one name, two enrolments (a Pi set up again counts from 1 again): two sequences
    old = record("s1", 7, t - timedelta(days=1), enrolment=1)
    new = record("s1", 1, t, enrolment=3)
    assert recording_order([new, old]) == [old, new]


@pytest.fixture
def proof_cfg(cfg: config_mod.Config) -> config_mod.Config:
    return cfg.replace("camera", width=W, height=H, fps=10.0)


def test_a_repack_on_a_clock_set_back_is_listed_after_the_clip_it_follows(
    proof_cfg: config_mod.Config,
) -> None:
    """The order is packed and sealed; after a boot on fake-hwclock's earlier time it is
    packed again (a repack): the repack's clip starts an hour before the first. The index,
    the order page, the order lookup and the bundle listed the repack first (by start), and
    the lookup's first_seen_utc / last_clip_utc were the other way round."""
    cfg = proof_cfg
    seal = RawScan("SEAL", "keyboard", 2.0)
    run(cfg, [(0.5, RawScan(ORDER, "keyboard", 0.5)), (2.0, seal)], end=4.0, wall=WALL0)
    again = [(1.0, RawScan(ORDER, "keyboard", 1.0)), (3.0, RawScan("SEAL", "keyboard", 3.0))]
    run(cfg, again, end=5.0, wall=BOOTED_EARLIER)
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        first, repack = sorted(ledger.clips(ORDER), key=lambda c: c.id or 0)
        listed = [c.id for c in ledger.clips(ORDER)]
    finally:
        ledger.close()
    assert repack.started_at < first.started_at and repack.repack_of == [first.id]
    assert listed == [first.id, repack.id]

    bundle = export_order(cfg, ORDER, cfg.station.data_dir.parent / "order.zip").path
    with zipfile.ZipFile(bundle) as zf:
        index = json.loads(zf.read("bundle.json"))
    assert [c["clip"] for c in index["clips"]] == [
        f"clips/{Path(c.path).name}" for c in (first, repack)
    ]

    add_users(cfg.station.data_dir)
    client = login(make_app(WebEnv(cfg.station.data_dir, cfg)).test_client())
    doc = client.get(f"/api/orders/{ORDER}").get_json()
    assert [c["id"] for c in doc["clips"]] == [first.id, repack.id]
    assert doc["first_seen_utc"] == doc["clips"][0]["started_utc"]
    assert doc["last_clip_utc"] == doc["clips"][1]["started_utc"]
    page = client.get(f"/orders/{ORDER}").get_data(as_text=True)
    at = [page.index(f"/clips/{c.id}/video") for c in (first, repack)]
    assert at == sorted(at)


def _central_clip(local_id: int, station: str, start: str) -> dict:
    return {
        "id": local_id, "order_id": ORDER, "waybill": None, "station": station,
        "started_at": start, "ended_at": start, "started_utc": start, "ended_utc": start,
        "tz": "+00:00", "duration_s": 1.0, "frame_count": 1, "finish_reason": "sealed",
        "pre_roll_s": 0.0, "path": f"clips/{station}-{local_id}.mp4", "manifest_path": "",
        "size": 1, "sha256": f"{local_id:062x}{station[-1]}0", "waybills": [],
    }  # fmt: skip


def test_the_central_index_lists_an_order_as_its_stations_recorded_it(pg_dsn: str) -> None:
    """s1 packs the order, boots on an earlier clock and packs it again; s2 packs it too. The
    central order page, its lookup (first and last clip) and the stations' duplicate check
    listed s1's second clip first, by start (``ORDER BY started_utc``)."""
    from central.db import CentralDB

    db = CentralDB(pg_dsn)
    try:
        db.migrate()
        ids = {}
        for name in ("s1", "s2"):
            station = db.station_for_token(db.add_station(name))
            assert station is not None
            ids[name] = station["id"]
        db.register_clips(ids["s1"], "s1", [
            _central_clip(1, "s1", "2026-03-02T09:00:00.000000Z"),
            _central_clip(2, "s1", "2026-03-02T08:00:03.000000Z"),
        ])  # fmt: skip
        db.register_clips(ids["s2"], "s2", [_central_clip(1, "s2", "2026-03-02T09:05:00.000000Z")])
        listed = [(c.station, c.extra["local_id"]) for c in db.order(ORDER)]
        assert listed == [("s1", 1), ("s1", 2), ("s2", 1)]
        info = db.order_info(ORDER)
        assert info is not None
        assert (info["first_seen_utc"], info["last_clip_utc"]) == (
            "2026-03-02T09:00:00.000000Z",
            "2026-03-02T09:05:00.000000Z",
        )
        refs = [(r["station"], r["clip_id"]) for r in db.order_clips(ORDER)]
        assert refs == [("s1", 1), ("s1", 2), ("s2", 1)]
        assert [(r["station"], r["clip_id"]) for r in db.order_clips(ORDER, limit=2)] == refs[:2]
    finally:
        db.close()
