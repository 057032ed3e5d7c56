"""The supervisor's live page in Chromium: a picture refused at first shows once it can."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from test_live_slots import _open_all
from test_web_browser import log_in
from test_web_live import write_station

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
