"""The supervisor's live page in Chromium: a picture refused at first shows once it can."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import Site
from conftest_web import WebEnv
from test_live_slots import _open_all
from test_station_screen import _serve
from test_web_browser import log_in
from test_web_live import jpeg, write_station

pytestmark = pytest.mark.slow

KEY = "desk-9"
FIG = f"document.querySelector('figure[data-key=\"{KEY}\"]')"
WAITING = (
    f"() => {{ const f = {FIG}; const w = f && f.querySelector('.no-frame');"
    " return !!w && !w.hidden && f.querySelector('img.live-img').hidden; }"
)
SHOWN = (
    f"() => {{ const i = {FIG}.querySelector('img.live-img');"
    " return !i.hidden && i.complete && i.naturalWidth > 0; }"
)


def test_a_live_picture_refused_a_stream_slot_shows_once_one_is_free(page: Any, site: Any) -> None:
    """Every live stream slot taken (503): the picture is not left broken; the page says it
    is waiting and asks again, sooner first, until it shows, without a reload."""
    write_station(site.env.data_dir / "live", KEY)
    log_in(page, site, "operator")
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    held = _open_all(urlsplit(site.url).port, f"/live/{KEY}/stream.mjpg", cookie)
    try:
        page.goto(site("/live"))
        page.wait_for_function(WAITING)
    finally:
        for sock in held:
            sock.close()
    page.wait_for_function(SHOWN)
    assert page.locator(f'figure[data-key="{KEY}"] .no-frame').is_hidden()


def _colour(name: str) -> str:
    """A page function: the live picture shows, and its middle is mostly ``name`` (red or
    green), read back through a canvas (same origin, so not tainted)."""
    test = {"red": "d[0] > 150 && d[1] < 90", "green": "d[1] > 150 && d[0] < 90"}[name]
    return (
        f"() => {{ const i = {FIG}.querySelector('img.live-img');"
        " if (i.hidden || !i.complete || !i.naturalWidth) return false;"
        " const c = document.createElement('canvas'); c.width = i.naturalWidth;"
        " c.height = i.naturalHeight; const x = c.getContext('2d'); x.drawImage(i, 0, 0);"
        " const d = x.getImageData(c.width >> 1, c.height >> 1, 1, 1).data;"
        f" return {test}; }}"
    )


def test_a_live_picture_is_asked_for_again_once_the_site_is_back(
    page: Any, web_env: WebEnv
) -> None:
    """The site restarts: the picture's stream ends cleanly (a finished multipart stream fires
    no error event), which would leave the picture frozen on its last frame. The page's poll
    of /api/stations fails meanwhile; once it answers again, each picture is asked for again
    and shows the station's frame of now, without a reload."""
    live = web_env.data_dir / "live"
    write_station(live, KEY)  # red
    with _serve(web_env.cfg) as url:
        log_in(page, Site(url, web_env), "operator")
        page.goto(f"{url}/live")
        page.wait_for_function(_colour("red"))
    port = urlsplit(url).port
    # The site is down: the page's next poll fails (within its 2 s period).
    page.wait_for_event(
        "requestfailed", predicate=lambda r: "/api/stations" in r.url, timeout=10_000
    )
    tmp = live / f".{KEY}.new"
    tmp.write_bytes(jpeg((0, 200, 0)))
    tmp.replace(live / f"{KEY}.jpg")
    with _serve(web_env.cfg, port):
        page.wait_for_function(_colour("green"))


def test_a_station_with_no_picture_yet_shows_it_once_it_comes(page: Any, site: Any) -> None:
    """The page is opened while the station has its status but no picture yet (its camera
    starting): it says so, and shows the picture once the station writes one, without a
    reload (the stream answers 404 until then, and the page asks again)."""
    live = site.env.data_dir / "live"
    write_station(live, KEY)
    (live / f"{KEY}.jpg").unlink()
    log_in(page, site, "operator")
    page.goto(site("/live"))
    page.wait_for_function(WAITING)
    assert "No picture yet" in page.locator(f'figure[data-key="{KEY}"] .no-frame').inner_text()
    tmp = live / f".{KEY}.new"
    tmp.write_bytes(jpeg((0, 200, 0)))
    tmp.replace(live / f"{KEY}.jpg")
    page.wait_for_function(_colour("green"))
    assert page.locator(f'figure[data-key="{KEY}"] .no-frame').is_hidden()
