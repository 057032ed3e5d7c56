"""Real-browser end-to-end tests: Chromium (headless) against waitress on 127.0.0.1."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest_web import CLIP_SECONDS, PASSWORDS

pytestmark = pytest.mark.slow

VIDEO_READY = "() => { const v = document.querySelector('video'); return v && v.readyState >= 2; }"
# The player loads nothing until asked (preload="none"): press play, as a viewer would.
PLAY = (
    "() => { const v = document.querySelector('video'); v.muted = true; v.play().catch(() => {}); }"
)
SEEK = """(t) => new Promise((resolve) => {
  const v = document.querySelector('video');
  v.addEventListener('seeked', () => resolve(v.currentTime), { once: true });
  v.currentTime = t;
})"""


def log_in(page: Any, site: Any, role: str = "viewer") -> None:
    page.goto(site("/login"))
    page.fill("input[name=username]", role)
    page.fill("input[name=password]", PASSWORDS[role])
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(r".*/search"))


def test_search_open_play_seek_download(page: Any, site: Any) -> None:
    log_in(page, site)
    page.fill("input[name=q]", "PO-10")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector("#results")
    assert page.locator("#results img").first.evaluate("i => i.complete && i.naturalWidth") > 0
    page.click("#results a.order-link >> text=PO-1001")
    page.wait_for_url(re.compile(r".*/orders/PO-1001$"))
    page.evaluate(PLAY)
    page.wait_for_function(VIDEO_READY)
    page.evaluate("document.querySelector('video').pause()")  # seeks below must stay put
    duration = page.evaluate("document.querySelector('video').duration")
    assert abs(duration - CLIP_SECONDS) < 0.2
    src = page.evaluate("document.querySelector('video').currentSrc")
    assert re.search(r"/clips/\d+/video$", src)
    landed = page.evaluate(SEEK, 2.5)
    assert abs(landed - 2.5) < 0.05
    # Clicking a key frame seeks too.
    page.locator("button.seek").nth(2).click()
    page.wait_for_function(
        "() => Math.abs(document.querySelector('video').currentTime - 3.5) < 0.05"
    )
    with page.expect_download() as info:
        page.locator("a.download").first.click()
    download = info.value
    clip = site.env.clips["plain"]
    assert download.suggested_filename == "PO-1001_桌1_20261130-090000.mp4"
    with open(download.path(), "rb") as f:
        assert f.read() == (site.env.data_dir / clip.path).read_bytes()


def _make_share(page: Any, site: Any) -> str:
    page.goto(site("/orders/PO-1001"))
    page.click("#share-form button[type=submit]")
    page.wait_for_selector("input.share-url")
    return page.locator("input.share-url").first.input_value()


def test_share_link_logged_out_then_revoked(browser: Any, page: Any, site: Any) -> None:
    log_in(page, site)
    url = _make_share(page, site)
    anon = browser.new_context(locale="en-US")
    anon.set_default_timeout(15_000)
    try:
        visitor = anon.new_page()
        visitor.goto(url)
        assert visitor.locator("#shared-banner").is_visible()
        visitor.evaluate(PLAY)
        visitor.wait_for_function(VIDEO_READY)
        assert abs(visitor.evaluate("document.querySelector('video').duration") - 4.0) < 0.2
        assert abs(visitor.evaluate(SEEK, 1.0) - 1.0) < 0.05
        # Revoke it from the staff page: the visitor loses access at once.
        page.goto(site("/orders/PO-1001"))
        page.on("dialog", lambda d: d.accept())
        page.locator("button.revoke").first.click()
        page.wait_for_selector("text=Share link revoked.")
        resp = visitor.goto(url)
        assert resp.status == 410
        assert "expired or was revoked" in visitor.content()
        staff_log = page.locator("#access").inner_text()
        assert "opened a share link" in staff_log and "revoked a share link" in staff_log
    finally:
        anon.close()


def test_share_link_expires(browser: Any, page: Any, site: Any) -> None:
    from web.db import WebDB, utc_str

    log_in(page, site)
    url = _make_share(page, site)
    anon = browser.new_context()
    try:
        visitor = anon.new_page()
        assert visitor.goto(url).status == 200
        db = WebDB.in_data_dir(site.env.data_dir)
        db.conn.execute(
            "UPDATE share_links SET expires_utc = ? WHERE revoked_utc IS NULL",
            (utc_str(datetime.now(UTC) - timedelta(seconds=1)),),
        )
        db.close()
        assert visitor.goto(url).status == 410
    finally:
        anon.close()


def test_pages_read_in_chinese_when_the_browser_asks(browser: Any, site: Any) -> None:
    context = browser.new_context(locale="zh-CN")
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(site("/login"))
        assert page.get_attribute("html", "lang") == "zh-CN"
        assert page.locator("h1").inner_text() == "登录"
        page.fill("input[name=username]", "viewer")
        page.fill("input[name=password]", PASSWORDS["viewer"])
        page.click("form.stack button[type=submit]")
        page.wait_for_url(re.compile(r".*/search"))
        assert page.locator("h1").inner_text() == "查找打包视频"
        page.goto(site("/orders/PO-1001"))
        body = page.locator("main").inner_text()
        assert "下载原始视频" in body and "已封箱" in body and "访问记录" in body
        # The switch beats the browser's language.
        page.click("text=English")
        assert page.locator("h1.order-title").inner_text().startswith("Order")
    finally:
        context.close()


def _open_then_revoke(browser: Any, page: Any, site: Any, locale: str) -> tuple[Any, Any]:
    """(context, page) of a visitor in ``locale`` who opened a share link that the staff
    page then revoked; the caller closes the context."""
    log_in(page, site)
    url = _make_share(page, site)
    anon = browser.new_context(locale=locale, accept_downloads=True)
    anon.set_default_timeout(15_000)
    visitor = anon.new_page()
    visitor.goto(url)
    page.goto(site("/orders/PO-1001"))
    page.on("dialog", lambda d: d.accept())
    page.locator("button.revoke").first.click()
    page.wait_for_selector("text=Share link revoked.")
    return anon, visitor


GONE = {"zh-CN": "此链接已过期或已被撤销", "en-US": "This link has expired or was revoked."}


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_a_link_revoked_before_play_says_so_under_the_player(
    browser: Any, page: Any, site: Any, locale: str
) -> None:
    # The platform's reviewer opens the link, the seller revokes it (or it expires) before
    # the video is played: the player's requests get 410. The reviewer is told why under
    # the player, in the page's language, not left with a grey, broken player.
    anon, visitor = _open_then_revoke(browser, page, site, locale)
    try:
        visitor.evaluate(PLAY)
        note = visitor.locator(".clip .video-error").first
        note.wait_for(state="visible")
        assert GONE[locale] in note.inner_text()
    finally:
        anon.close()


def test_download_on_a_link_revoked_meanwhile_says_why(browser: Any, page: Any, site: Any) -> None:
    # The reviewer presses "Download original" after the link was revoked: Chrome must show
    # the site's page saying why, not a failed item in its download list and nothing else.
    anon, visitor = _open_then_revoke(browser, page, site, "zh-CN")
    try:
        failed: list[Any] = []
        visitor.on("download", lambda d: failed.append(d.failure()))
        with visitor.expect_navigation() as nav:
            visitor.locator("a.download").first.click()
        assert nav.value.status == 410 and failed == []
        assert GONE["zh-CN"] in visitor.locator("main").inner_text()
    finally:
        anon.close()
