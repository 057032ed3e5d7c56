"""The central site's fleet health page in a real browser on a phone: a station that stopped
reporting, with its archive backlog, in English and Chinese, without horizontal scrolling."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_web import PASSWORDS, add_users

from central.db import CentralDB
from central.site import CentralSite
from station import config as config_mod

PHONE = {"width": 390, "height": 844}
WIDTH = "() => [document.documentElement.scrollWidth, window.innerWidth]"


@pytest.fixture
def central_site(pg_dsn: str, tmp_path: Path) -> Iterator[str]:
    from web import cli

    db = CentralDB(pg_dsn)
    db.migrate()
    for name in ("station-01", "packing-table-with-a-long-name-02"):
        st = db.station_for_token(db.add_station(name))
        assert st is not None
        db.set_health(st["id"], {"state": "recording", "archive_backlog": 12,
                                 "archive_backlog_bytes": 34_000_000,
                                 "last_error": "camera lost: /dev/video0 gone"})  # fmt: skip
    # the long-named one stopped reporting two hours ago; station-01 is alive and well
    db._run(lambda conn: conn.execute(
        "UPDATE stations SET health_utc = now() - interval '2 hours',"
        " last_seen_utc = now() - interval '2 hours' WHERE name <> 'station-01'"
    ))  # fmt: skip
    alive = db.station_for_token(db.rotate_token("station-01"))
    assert alive is not None
    db.set_health(alive["id"], {"state": "idle", "archive_backlog": 0,
                                "archive_backlog_bytes": 0})  # fmt: skip
    db.close()
    cfg = config_mod.load(None).with_data_dir(tmp_path / "central").replace("central", dsn=pg_dsn)
    add_users(cfg.station.data_dir, stations=["station-01", "packing-table-with-a-long-name-02"])
    server = cli.make_server(cfg, "127.0.0.1", 0, central=CentralSite(cfg))
    server.packcam_app.config["PASSWORD_METHOD"] = "scrypt:1024:8:1"
    stop = threading.Event()
    thread = threading.Thread(target=cli.run_server, args=(server,), kwargs={"stop": stop})
    thread.start()
    try:
        yield cli.server_url(server).rstrip("/")
    finally:
        stop.set()
        thread.join(15)


def test_fleet_health_shows_a_silent_station_and_its_backlog_on_a_phone(
    browser: Any, central_site: str
) -> None:
    context = browser.new_context(viewport=PHONE, locale="en-US", device_scale_factor=2)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(central_site + "/lang/en?next=/login")
        page.fill("input[name=username]", "operator")
        page.fill("input[name=password]", PASSWORDS["operator"])
        page.click("form.stack button[type=submit]")
        page.wait_for_url(re.compile(r".*/search"))
        page.click("header a[href='/fleet']")  # linked from the navigation
        page.wait_for_url(re.compile(r".*/fleet$"))
        gone = page.locator("#fleet-packing-table-with-a-long-name-02")
        assert "stopped reporting" in gone.locator("dd.state").inner_text()
        assert re.search(r"^2:00:\d\d ago$", gone.locator("dd.last-seen").inner_text())
        assert gone.locator("dd.backlog").inner_text() == "12 clips · 34.0 MB"
        assert "stopped reporting" in gone.locator("dd.alarms").inner_text()
        ok = page.locator("#fleet-station-01")
        assert ok.locator("dd.alarms").inner_text() == "none"
        assert ok.locator("dd.backlog").inner_text() == "0 clips · 0 B"
        assert page.locator("#fleet-alarmed").inner_text() == "1"
        wide, inner = page.evaluate(WIDTH)
        assert wide <= inner, ("en", wide, inner)

        page.goto(central_site + "/lang/zh_CN?next=/fleet")
        page.wait_for_url(re.compile(r".*/fleet$"))
        assert page.locator("h1").inner_text() == "设备群健康状况"
        gone = page.locator("#fleet-packing-table-with-a-long-name-02")
        assert "失去联系" in gone.locator("dd.state").inner_text()
        assert gone.locator("dd.backlog").inner_text() == "共 12 段视频 · 34.0 MB"
        wide, inner = page.evaluate(WIDTH)
        assert wide <= inner, ("zh", wide, inner)
    finally:
        context.close()
