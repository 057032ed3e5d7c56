"""Dead ends found in Chromium: orders named like path segments, the preload of an unplayed
clip, one duration on the page and in the player."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest_web import PASSWORDS, TZ8, WebEnv, add_users, build_env, index_clip

from station.store.ledger import Ledger

pytestmark = pytest.mark.slow

ODD_ORDERS = [".", "..", "../../etc/passwd", "/leading-slash", "a/./b"]


def _noisy_mp4(path: Path, seconds: float = 6.0, fps: int = 25) -> Path:
    """A clip in the station's format that is several MB (noise does not compress)."""
    from station.recording.writer import ClipWriter, EncoderSettings, to_i420

    rng = np.random.default_rng(5)
    writer = ClipWriter(path, EncoderSettings(320, 240, fps, keyframe_interval_s=1.0))
    for i in range(round(seconds * fps)):
        writer.write(to_i420(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)), i / fps)
    writer.finish()
    return path


@pytest.fixture(scope="module")
def odd_site(tmp_path_factory: pytest.TempPathFactory, mp4_template: Path) -> Iterator[Any]:
    from web import cli

    root = tmp_path_factory.mktemp("odd")
    env: WebEnv = build_env(root, mp4_template)
    add_users(env.data_dir)
    big = _noisy_mp4(root / "big.mp4")
    ledger = Ledger.in_data_dir(env.data_dir)
    try:
        for n, order in enumerate(ODD_ORDERS):
            start = datetime(2026, 12, 1, 10, n, tzinfo=TZ8)
            index_clip(ledger, env.data_dir, mp4_template, order, start=start, waybill=f"ODD{n}")
        env.clips["big"] = index_clip(
            ledger, env.data_dir, big, "BIG-9", start=datetime(2026, 12, 1, 11, 0, tzinfo=TZ8)
        )
    finally:
        ledger.close()
    # the duration the station indexes: its frames (6.0 s), not the fixture's 4 s
    import sqlite3

    with sqlite3.connect(env.data_dir / "index.sqlite3") as conn:
        conn.execute("UPDATE clips SET duration_s = 6.0 WHERE order_id = 'BIG-9'")
    conn.close()
    server = cli.make_server(env.cfg, "127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(target=cli.run_server, args=(server,), kwargs={"stop": stop})
    thread.start()
    try:
        yield cli.server_url(server).rstrip("/"), env
    finally:
        stop.set()
        thread.join(15)


def _log_in(page: Any, url: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", "viewer")
    page.fill("input[name=password]", PASSWORDS["viewer"])
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(r".*/search"))


@pytest.mark.parametrize("order", ODD_ORDERS)
def test_an_order_named_like_a_path_opens_from_its_own_link(
    page: Any, odd_site: Any, order: str
) -> None:
    url, _env = odd_site
    _log_in(page, url)
    n = ODD_ORDERS.index(order)
    page.goto(url + f"/search?q=ODD{n}")
    page.click("#results a.order-link")
    page.wait_for_selector("h1.order-title")
    assert page.locator("h1.order-title .order-id").inner_text() == order
    assert page.locator("video").count() == 1


def test_an_unplayed_clip_is_not_downloaded_and_durations_agree(page: Any, odd_site: Any) -> None:
    url, env = odd_site
    size = (env.data_dir / env.clips["big"].path).stat().st_size
    assert size > 3 << 20
    _log_in(page, url)
    got: list[int] = []

    def on_response(resp: Any) -> None:
        if "/video" in resp.url:
            got.append(int(resp.headers.get("content-length", "0")))

    page.on("response", on_response)
    page.goto(url + "/orders/BIG-9")
    page.wait_for_timeout(2000)
    assert sum(got) <= 1 << 20, got  # nothing (or the metadata) before play is pressed
    shown = page.locator("dl.meta dd").nth(2).inner_text().split(" ")[0]
    page.click("video")
    page.evaluate("document.querySelector('video').play()")
    page.wait_for_function(
        "() => { const v = document.querySelector('video'); return v.readyState >= 1; }"
    )
    real = page.evaluate("document.querySelector('video').duration")
    player = f"{int(real) // 60}:{int(real) % 60:02d}"  # how Chromium's controls show it
    assert shown == player, (shown, real)
