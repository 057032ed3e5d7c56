"""The central site's search on a real PostgreSQL: substrings in any case via pg_trgm."""

from __future__ import annotations

import pytest

from central import db as central_db_mod
from central.db import CentralDB
from central.site import CentralSite
from web.index import SearchTimeout


def _clip(i: int, order: str, waybill: str | None) -> dict:
    t = f"2026-12-01T01:{i // 60:02d}:{i % 60:02d}Z"
    return {
        "id": i, "order_id": order, "waybill": waybill, "station": "s1",
        "started_at": t, "ended_at": t, "started_utc": t, "ended_utc": t, "tz": "+08:00",
        "duration_s": 1.0, "frame_count": 1, "finish_reason": "sealed", "pre_roll_s": 0.0,
        "path": f"clips/{i}.mp4", "manifest_path": "", "size": 1, "sha256": f"{i:064x}",
        "waybills": [{"waybill": waybill, "carrier": "SF", "t_clip_s": 0.0}] if waybill else [],
    }  # fmt: skip


@pytest.fixture
def central(pg_dsn: str):
    db = CentralDB(pg_dsn)
    db.migrate()
    token = db.add_station("s1")
    station = db.station_for_token(token)
    assert station is not None
    clips = [_clip(i, f"PO-{i:06d}", f"SF{1000000000000 + i}") for i in range(1, 301)]
    clips += [_clip(301, "订单-七号", None), _clip(302, "50%_off", "YT77_1")]
    db.register_clips(station["id"], "s1", clips)
    yield db
    db.close()


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("po-000123", {"PO-000123"}),
        ("000123", {"PO-000123"}),  # the last digits
        ("1000000000123", {"PO-000123"}),  # a waybill's digits without SF
        ("sf1000000000123", {"PO-000123"}),
        ("七号", {"订单-七号"}),
        ("%_o", {"50%_off"}),  # wildcards are plain characters
        ("7_1", {"50%_off"}),
        ("p", set()),  # one character: a prefix, in any case; page below
    ],
)
def test_central_search_matches_anywhere_in_any_case(central, q: str, expected: set) -> None:
    found = {c.order_id for c in central.search(q, limit=500)}
    if q == "p":
        assert len(found) == 300
    else:
        assert found == expected


def test_common_and_rare_pieces_page_newest_first(central) -> None:
    page1 = central.search("po", limit=10)
    page2 = central.search("po", limit=10, offset=10)
    orders = [c.order_id for c in page1 + page2]
    assert orders == [f"PO-{i:06d}" for i in range(300, 280, -1)]
    assert [c.order_id for c in central.search("o-000012", limit=50)] == ["PO-000012"]
    assert len(central.search("po-0001", limit=500)) == 100
    assert [c.order_id for c in central.search("PO-0000", limit=3, offset=2)] == [
        "PO-000097", "PO-000096", "PO-000095",
    ]  # fmt: skip


def test_central_search_timeout(central, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(central_db_mod, "SEARCH_TIMEOUT_S", 0.001)
    with pytest.raises(SearchTimeout):
        # pg_sleep stands in for a slow plan: the statement timeout must stop it
        central._timed("x", [("SELECT pg_sleep(1)", [])])


def test_central_site_has_no_dead_ends(central, pg_dsn: str, tmp_path) -> None:
    """No bare 501 behind the evidence button, no live view asking about a data dir."""
    from conftest_web import add_users, login

    from station import config as config_mod
    from web import create_app

    cfg = config_mod.load(None).with_data_dir(tmp_path / "central").replace("central", dsn=pg_dsn)
    add_users(cfg.station.data_dir)
    client = create_app(cfg, central=CentralSite(cfg), test_config={"TESTING": True}).test_client()
    login(client, "operator")
    page = client.get("/orders/PO-000123").get_data(as_text=True)
    assert "bundle.zip" in page  # streamed from the bucket (tests/test_fleet_bundles.py)
    assert 'href="/live"' not in page
    live = client.get("/live")
    assert live.status_code == 200 and 'id="live-central"' in live.get_data(as_text=True)
    clip_id = central.order("PO-000123")[0].id
    bundle = client.get(f"/clips/{clip_id}/bundle.zip")
    assert bundle.status_code == 503  # no [archive] bucket on this central site
