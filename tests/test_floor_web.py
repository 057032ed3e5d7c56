"""The packing floor in the index and on the site: packer, kind, repacks, per-packer stats."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from conftest_web import WebEnv, index_clip, login, make_app, openapi_errors

from station.store.ledger import Ledger
from web.dashboard import packer_stats


@pytest.fixture
def floor_env(web_env: WebEnv, mp4_template) -> WebEnv:
    now = datetime.now(UTC).replace(microsecond=0)
    ledger = Ledger.in_data_dir(web_env.data_dir)
    try:
        for key, order, packer, kind, dur, ago in (
            ("a1", "FL-1", "alice", "order", 40.0, 0),
            ("a2", "FL-2", "alice", "order", 60.0, 0),
            ("b1", "FL-3", "bob", "order", 30.0, 1),
            ("r1", "FL-4", "bob", "return", 90.0, 0),
        ):
            clip = index_clip(ledger, web_env.data_dir, mp4_template, order,
                              start=now - timedelta(days=ago, minutes=5),
                              extra={"packer": packer, "kind": kind})  # fmt: skip
            if dur != clip.duration_s:  # the median needs distinct durations
                ledger.conn.execute("UPDATE clips SET duration_s=? WHERE id=?", (dur, clip.id))
                ledger.conn.commit()
            web_env.clips[key] = clip
        first = web_env.clips["a1"]
        web_env.clips["a1-repack"] = index_clip(
            ledger, web_env.data_dir, mp4_template, "FL-1", start=now - timedelta(minutes=1),
            extra={"packer": "bob", "kind": "order", "repack_of": [first.id]},
        )  # fmt: skip
    finally:
        ledger.close()
    return web_env


def test_the_index_keeps_packer_kind_and_repack(floor_env: WebEnv) -> None:
    ledger = Ledger.in_data_dir(floor_env.data_dir)
    try:
        first, repack = ledger.clips("FL-1")
        ret = ledger.clips("FL-4")[0]
        old = ledger.clips("PO-1001")[0]
    finally:
        ledger.close()
    assert (first.packer, first.kind, first.repack_of) == ("alice", "order", [])
    assert (repack.packer, repack.repack_of) == ("bob", [first.id])
    assert ret.kind == "return"
    assert (old.packer, old.kind) == (None, "order")  # a clip without the floor's fields


def _search(client, **args: str) -> str:
    resp = client.get("/search", query_string=args)
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def test_the_api_sends_the_packing_floor_as_documented(floor_env: WebEnv) -> None:
    client = login(make_app(floor_env).test_client(), "viewer")
    doc = client.get("/api/openapi.json").get_json()
    schema = {"$ref": "#/components/schemas/Order"}
    first, repack = client.get("/api/orders/FL-1").get_json()["clips"]
    assert (first["packer"], first["kind"], repack["repack_of"]) == (
        "alice",
        "order",
        [first["id"]],
    )
    ret = client.get("/api/orders/FL-4").get_json()
    assert ret["clips"][0]["kind"] == "return"
    for order in ("FL-1", "FL-4"):
        assert openapi_errors(client.get(f"/api/orders/{order}").get_json(), schema, doc) == []
    from test_web_live import write_station

    write_station(floor_env.data_dir / "live", "desk-7", state="recording", packer="王芳")
    stations = client.get("/api/stations").get_json()
    assert stations["stations"][0]["packer"] == "王芳" and stations["clips_today"]
    assert max(max(v) for v in stations["clips_today_per_hour"].values()) > 0
    assert openapi_errors(stations, {"$ref": "#/components/schemas/Stations"}, doc) == []


def test_search_filters_by_packer_and_kind(floor_env: WebEnv) -> None:
    client = make_app(floor_env).test_client()
    login(client, "viewer")
    page = _search(client, packer="alice")
    assert "FL-1" in page and "FL-2" in page and "FL-3" not in page and "PO-1001" not in page
    page = _search(client, kind="return")
    assert "FL-4" in page and "FL-1" not in page
    page = _search(client, packer="bob", kind="order")
    assert "FL-3" in page and "FL-4" not in page
    page = _search(client, q="FL-", kind="nonsense")  # an unknown kind is no filter
    assert "FL-4" in page and "FL-1" in page


def test_the_order_page_shows_packer_kind_and_the_repack_link_both_ways(
    floor_env: WebEnv,
) -> None:
    client = make_app(floor_env).test_client()
    login(client, "viewer")
    page = client.get("/orders/FL-1").get_data(as_text=True)
    first, repack = floor_env.clips["a1"].id, floor_env.clips["a1-repack"].id
    assert 'class="packer">alice<' in page and 'class="packer">bob<' in page
    assert f'class="repack-of"><a href="#clip-{first}">' in page
    assert f'class="repacked-by"><a href="#clip-{repack}">' in page
    page = client.get("/orders/FL-4").get_data(as_text=True)
    assert "Return (unboxing a returned parcel)" in page
    client.get("/lang/zh_CN")
    page = client.get("/orders/FL-4").get_data(as_text=True)
    assert "退货（拆箱）" in page


def test_the_dashboard_counts_orders_and_median_time_per_packer(floor_env: WebEnv) -> None:
    client = make_app(floor_env).test_client()
    login(client, "operator")
    page = client.get("/dashboard").get_data(as_text=True)
    table = page[page.index('id="packers"') :]
    table = table[: table.index("</table>")]
    alice = table[table.index("<td>alice</td>") :].split("</tr>")[0]
    assert "2 orders" in alice and "50" in alice  # median of 40 s and 60 s
    bob = table[table.index("<td>bob</td>") :].split("</tr>")[0]
    assert bob.count("1 orders") == 2  # yesterday FL-3, today the repack; the return is not
    assert "90" not in bob


def test_packer_stats_is_per_local_day() -> None:
    tz = timezone(timedelta(hours=8))
    days = [date(2026, 12, 3), date(2026, 12, 4)]
    rows = [
        ("a", "2026-12-03T16:30:00+00:00", 10.0),  # 00:30 on the 4th in UTC+8
        ("a", "2026-12-04T01:00:00+00:00", 20.0),
        ("a", "2026-12-04T02:00:00+00:00", 60.0),
        ("b", "2026-12-03T01:00:00+00:00", 5.0),
        ("b", "2026-11-20T01:00:00+00:00", 5.0),  # outside the days: not shown
    ]
    assert packer_stats(rows, tz, days) == {
        "a": [(0, None), (3, 20.0)],
        "b": [(1, 5.0), (0, None)],
    }


def test_the_export_has_packer_kind_and_repack_columns(floor_env: WebEnv) -> None:
    import csv
    import io

    client = make_app(floor_env).test_client()
    login(client, "operator")
    today = datetime.now(UTC).date()
    resp = client.get(
        "/export/orders.csv",
        query_string={"from": (today - timedelta(days=2)).isoformat(), "to": today.isoformat()},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    table = list(csv.reader(io.StringIO(resp.get_data(as_text=True).lstrip("\ufeff"))))
    header, body = table[0], table[1:]
    cols = [header.index(name) for name in ("packer", "kind", "repack_of")]
    assert cols == sorted(cols)  # read by name: columns are only ever added at the end
    by_order = {}
    for row in body:
        by_order.setdefault(row[0], []).append([row[i] for i in cols])
    first = floor_env.clips["a1"].id
    assert by_order["FL-1"] == [["alice", "order", ""], ["bob", "order", str(first)]]
    assert by_order["FL-4"] == [["bob", "return", ""]]


def test_the_dashboard_names_the_packer_signed_in_at_each_station(web_env: WebEnv) -> None:
    from test_web_live import write_station

    live = web_env.data_dir / "live"
    write_station(live, "desk-7", state="idle", packer="王芳")
    write_station(live, "desk-8", state="idle")
    client = login(make_app(web_env).test_client(), "operator")
    page = client.get("/dashboard").get_data(as_text=True)
    assert page.count('<span class="packer">') == 1 and "Packer 王芳</span>" in page
    api = client.get("/api/stations").get_json()
    assert "王芳" in str(api)


def test_the_station_publishes_who_is_signed_in(tmp_path) -> None:
    import json

    import numpy as np

    from station.recording.live import LiveWriter
    from station.recording.runner import Status
    from web.stations import FileWarnings, read_stations

    live = LiveWriter(tmp_path, "desk-1", interval=0.0)
    st = Status("desk-1", "idle", None, (), None, 1, None, packer="alice")
    live(np.zeros((48, 64, 3), np.uint8), st, 0)
    doc = json.loads((tmp_path / "live" / "desk-1.json").read_text(encoding="utf-8"))
    assert doc["packer"] == "alice"
    (got,) = read_stations(tmp_path / "live", 60, FileWarnings())
    assert got.packer == "alice"
