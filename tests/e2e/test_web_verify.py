"""/verify in Chromium over waitress: a real multi-MB clip and a real bundle, chosen and sent
through the page's own form."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from proof_support import Store, tsa_ec  # noqa: F401 (fixture)
from verify_support import MB, big_store, clip_of, running_site  # noqa: F401 (fixture)

from station.proof.bundle import export_order


@pytest.fixture
def verify_site(big_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    tmp = tmp_path / "system-tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    st = big_store.copy(tmp_path / "data")
    with running_site(st.cfg) as (url, _server):
        yield url, st, tmp


def _send(page: Any, url: str, file: Path) -> str:
    page.goto(url.rstrip("/") + "/verify")
    page.set_input_files('input[type="file"]', str(file))
    with page.expect_navigation():
        page.click('button[type="submit"]')
    return str(page.content())


def test_a_real_clip_and_bundle_verify_in_the_browser(page: Any, verify_site, tmp_path) -> None:
    url, st, tmp = verify_site
    clip = clip_of(st)
    assert clip.stat().st_size > 2 * MB
    body = _send(page, url, clip)
    assert "Authentic" in body and "BIG1" in body, body[-1500:]
    bundle = export_order(st.cfg, "BIG2", tmp_path / "BIG2.zip").path
    assert bundle.stat().st_size > 2 * MB
    body = _send(page, url, bundle)
    assert "Authentic" in body and "BIG2" in body, body[-1500:]
    altered = tmp_path / "altered.mp4"
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 1
    altered.write_bytes(bytes(data))
    assert "Not authentic" in _send(page, url, altered)
    assert list((st.data / "spool" / "verify").iterdir()) == []
    assert list(tmp.iterdir()) == []


def test_verify_sits_in_the_site_layout_with_the_language_switch(page: Any, verify_site) -> None:
    url, _st, _tmp = verify_site
    page.goto(url.rstrip("/") + "/verify")
    assert page.locator("header.top .langs a").count() == 2
    assert page.locator("header.top a.brand").is_visible()
    page.click("header.top .langs a[hreflang=zh-CN]")
    page.wait_for_url("**/verify")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("section.verify h1").is_visible()
    margin = page.evaluate("getComputedStyle(document.body).marginLeft")
    assert margin == "0px"  # the site's layout, not the bare page's
