"""Scoping in a real browser on the central site: an account of one warehouse cannot see
another warehouse's orders by search, order page, API or share creation; an admin can."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest_web import FAST_PW

from central.db import CentralDB
from central.site import CentralSite
from station import config as config_mod
from web.db import WebDB

PASSWORD = "scoped-pass-1"


def _clip(local_id: int, station: str, order_id: str, waybill: str) -> dict[str, Any]:
    t = datetime(2026, 12, 1, 9, 0, tzinfo=UTC) + timedelta(minutes=local_id)
    utc = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sha = hashlib.sha256(f"{station}/{local_id}".encode()).hexdigest()
    return {
        "id": local_id, "order_id": order_id, "waybill": waybill, "station": station,
        "started_at": t.isoformat(), "ended_at": t.isoformat(), "started_utc": utc,
        "ended_utc": utc, "tz": "+00:00", "duration_s": 4.0, "frame_count": 100,
        "finish_reason": "sealed", "pre_roll_s": 1.0, "path": f"clips/{local_id}.mp4",
        "manifest_path": "", "size": 10, "sha256": sha,
        "waybills": [{"waybill": waybill, "carrier": "SF", "t_clip_s": 2.0}],
    }  # fmt: skip


@pytest.fixture
def central_site(pg_dsn: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    from web import cli

    db = CentralDB(pg_dsn)
    db.migrate()
    for station, clips in {
        "hz-01": [_clip(1, "hz-01", "HZ-1001", "SF1000000001"),
                  _clip(2, "hz-01", "SAME-42", "SF1000000002")],
        "nb-01": [_clip(1, "nb-01", "NB-2002", "SF2000000001"),
                  _clip(2, "nb-01", "SAME-42", "SF2000000002")],
    }.items():  # fmt: skip
        st = db.station_for_token(db.add_station(station))
        assert st is not None
        db.register_clips(st["id"], station, clips)
    db.close()
    data = tmp_path / "central"
    cfg = config_mod.load(None).with_data_dir(data).replace("central", dsn=pg_dsn)
    wdb = WebDB.in_data_dir(data, pw_method=FAST_PW)
    try:
        for group, station in (("hangzhou", "hz-01"), ("ningbo", "nb-01")):
            wdb.add_group(group)
            wdb.change_group_stations(group, add=[station])
        wdb.add_user("hz-lead", "operator", PASSWORD, groups=["hangzhou"])
        wdb.add_user("boss", "admin", PASSWORD)
    finally:
        wdb.close()
    server = cli.make_server(cfg, "127.0.0.1", 0, central=CentralSite(cfg))
    server.packcam_app.config["PASSWORD_METHOD"] = FAST_PW
    stop = threading.Event()
    thread = threading.Thread(target=cli.run_server, args=(server,), kwargs={"stop": stop})
    thread.start()
    try:
        yield cli.server_url(server).rstrip("/"), data
    finally:
        stop.set()
        thread.join(15)


def _login(page: Any, url: str, name: str) -> None:
    page.goto(url + "/lang/en?next=/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(r".*/search"))


def _search(page: Any, url: str, q: str) -> list[str]:
    page.goto(url + "/search")
    page.fill("input[name=q]", q)
    page.click("#search-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/search\?.*q="))
    return [t.strip() for t in page.locator("#results a.order-link").all_inner_texts()]


def test_a_scoped_user_cannot_see_another_warehouses_orders(
    browser: Any, central_site: tuple[str, Path]
) -> None:
    url, data = central_site
    context = browser.new_context(locale="en-US")
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        _login(page, url, "hz-lead")
        # search: only Hangzhou's clips, also for an order ID both warehouses used
        assert _search(page, url, "1001") == ["HZ-1001"]
        assert _search(page, url, "NB-2002") == []
        assert _search(page, url, "SAME") == ["SAME-42"]
        stations = page.locator("select[name=station] option").all_inner_texts()
        assert "hz-01" in stations and "nb-01" not in stations
        assert page.locator("#results tbody tr").count() == 1
        assert "nb-01" not in page.locator("#results").inner_text()
        assert _search(page, url, "SF2000") == []  # Ningbo's waybills
        # order page: Ningbo's order is "not found", like an order that does not exist
        resp = page.goto(url + "/orders/NB-2002")
        assert resp is not None and resp.status == 404
        assert page.locator("h1").inner_text() == "Order not found"
        page.goto(url + "/orders/SAME-42")
        assert "hz-01" in page.content() and "nb-01" not in page.content()
        # the JSON API with the browser's session: the same 404 as for an unknown order
        other = page.request.get(url + "/api/orders/NB-2002")
        unknown = page.request.get(url + "/api/orders/NO-SUCH-9")
        assert other.status == unknown.status == 404 and other.json() == unknown.json()
        mine = page.request.get(url + "/api/orders/SAME-42").json()
        assert [c["station"] for c in mine["clips"]] == ["hz-01"]
        listed = page.request.get(url + "/api/clips?q=SAME").json()["clips"]
        assert [c["station"] for c in listed] == ["hz-01"]
        # share creation: her own order works; the form pointed at Ningbo's order is refused
        page.goto(url + "/orders/HZ-1001")
        page.click("#share-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/orders/HZ-1001"))
        assert page.locator("input.share-url").count() == 1
        page.locator("#share-form input[name=order_id]").evaluate(
            "(el) => { el.value = 'NB-2002'; }"
        )
        with page.expect_navigation() as nav:
            page.click("#share-form button[type=submit]")
        assert nav.value is not None and nav.value.status == 404
        db = WebDB.in_data_dir(data)
        try:
            assert db.shares("NB-2002") == [] and len(db.shares("HZ-1001")) == 1
        finally:
            db.close()

        # the administrator sees both warehouses
        admin = context.browser.new_context(locale="en-US")  # a session of its own
        try:
            apage = admin.new_page()
            _login(apage, url, "boss")
            assert sorted(_search(apage, url, "SF")) == ["HZ-1001", "NB-2002", "SAME-42",
                                                        "SAME-42"]  # fmt: skip
            resp = apage.goto(url + "/orders/NB-2002")
            assert resp is not None and resp.status == 200
        finally:
            admin.close()
    finally:
        context.close()
