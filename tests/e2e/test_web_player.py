"""The player a dispute needs: timeline marks that seek, frame steps, speed, copy feedback."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from conftest_web import PASSWORDS

pytestmark = pytest.mark.slow

PLAY = "() => { const v = document.querySelector('video'); v.muted = true; return v.play(); }"
PAUSE = "() => document.querySelector('video').pause()"


def _log_in(page: Any, site: Any) -> None:
    page.goto(site("/login"))
    page.fill("input[name=username]", "viewer")
    page.fill("input[name=password]", PASSWORDS["viewer"])
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(r".*/search"))


def test_timeline_marks_seek_and_frames_step(page: Any, site: Any) -> None:
    clip = site.env.clips["plain"]
    # the clip began when the camera came back: its manifest says so
    manifest = site.env.data_dir / clip.manifest_path
    manifest.write_text(json.dumps({"resumed_after_s": 7.5}))
    try:
        _log_in(page, site)
        page.goto(site("/orders/PO-1001"))
        tools = page.locator(f".player-tools[data-video=video-{clip.id}]")
        marks = tools.locator("button.mark")
        assert [marks.nth(i).get_attribute("class") for i in range(marks.count())] == [
            "mark mark-order", "mark mark-waybill", "mark mark-seal",
        ]  # fmt: skip
        assert tools.locator(".mark-gap").is_visible()
        line = tools.locator(".timeline").bounding_box()
        for i in range(marks.count()):
            box = marks.nth(i).bounding_box()
            assert box["x"] >= line["x"] - 0.5
            assert box["x"] + box["width"] <= line["x"] + line["width"] + 0.5
        # the waybill mark sits at 2.0 s of 4.0 s and seeks there
        order_box, waybill_box = marks.nth(0).bounding_box(), marks.nth(1).bounding_box()
        assert order_box["x"] < waybill_box["x"]
        page.evaluate(PLAY)
        page.evaluate(PAUSE)
        marks.nth(1).click()
        page.wait_for_function(
            "() => Math.abs(document.querySelector('video').currentTime - 2.0) < 0.05"
        )
        tools.locator("button[data-step='1']").click()
        t = page.evaluate("document.querySelector('video').currentTime")
        assert abs(t - 2.04) < 0.02 and page.evaluate("document.querySelector('video').paused")
        tools.locator("button[data-step='-1']").click()
        tools.locator("button[data-step='-1']").click()
        assert abs(page.evaluate("document.querySelector('video').currentTime") - 1.96) < 0.02
        tools.locator("select.speed").select_option("2")
        assert page.evaluate("document.querySelector('video').playbackRate") == 2
    finally:
        manifest.unlink()


def test_copy_link_says_it_was_copied(page: Any, site: Any) -> None:
    _log_in(page, site)
    page.goto(site("/orders/PO-1001"))
    page.click("#share-form button[type=submit]")
    btn = page.locator("button[data-copy]").first
    btn.click()
    # The clipboard API answers asynchronously (127.0.0.1 is a secure context): wait for the
    # page to say so. The button's tick and the status line are set together.
    page.wait_for_function(
        "() => { const b = document.querySelector('button[data-copy]');"
        " const s = document.querySelector('.copied');"
        " return b.textContent.startsWith('\u2713') && s.textContent === 'Copied'; }",
        timeout=10_000,
    )
    assert page.locator(".copied").first.inner_text() == "Copied"


def test_the_share_links_qr_code_reads_back_as_the_link(page: Any, site: Any, tmp_path) -> None:
    import zxingcpp
    from PIL import Image

    _log_in(page, site)
    page.goto(site("/orders/PO-1001"))
    page.click("#share-form button[type=submit]")
    url = page.locator("input.share-url").first.input_value()
    page.locator("details.qr summary").first.click()
    img = page.locator("details.qr img").first
    img.wait_for()
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
    shot = tmp_path / "qr.png"
    img.screenshot(path=str(shot))
    (found,) = zxingcpp.read_barcodes(Image.open(shot))
    # the same link (a token is signed with its time: the payload, the share's id, is equal)
    assert found.text.split(".")[0] == url.split(".")[0]
    page.goto(found.text)
    assert page.locator("#shared-banner").is_visible()


def test_a_clip_retention_deletes_after_the_page_opened_is_not_called_missing(
    page: Any, site: Any
) -> None:
    """Last in this module: it deletes PO-1001's second clip. The seller opened the order page,
    then the station's retention deleted the clip: playing it says so under the player (the
    video's 404 says deleted), not that the file is missing from the store (lost evidence)."""
    from test_web_clips import _retention_deletes

    clip = site.env.clips["plain2"]
    _log_in(page, site)
    page.goto(site("/orders/PO-1001"))
    _retention_deletes(site.env, clip)
    page.evaluate(
        "(id) => { const v = document.getElementById(id); v.muted = true;"
        " v.play().catch(() => {}); }",
        f"video-{clip.id}",
    )
    note = page.locator(f"#clip-{clip.id} .video-error")
    note.wait_for(state="visible")
    text = note.inner_text()
    assert "deleted this clip's video" in text and "after this page was opened" in text, text
    assert "missing" not in text
