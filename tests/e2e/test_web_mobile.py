"""Every page on a phone (390 x 844 in English; 360 x 780, the narrow Android a seller in China
holds, in Chinese): no horizontal scrolling, tap targets of 44 px or more, the search results
as cards."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest_web import PASSWORDS

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}
PHONES = {"en": PHONE, "zh_CN": {"width": 360, "height": 780}}
# What a thumb has to hit: header links and buttons, form controls, buttons, result links.
TARGETS = (
    "header a, header button, main button, main a.button, main select, main a.order-link,"
    " main .pages a, main input:not([type=hidden]):not([type=checkbox])"
)
CHECK = """(sel) => {
  const wide = document.documentElement.scrollWidth;
  const small = [];
  for (const el of document.querySelectorAll(sel)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;  // not shown
    if (r.height < 43.5 || r.width < 43.5) {
      small.push(el.outerHTML.slice(0, 80) + ' ' + r.width + 'x' + r.height);
    }
  }
  return {wide, inner: window.innerWidth, small};
}"""


@pytest.fixture(params=list(PHONES))
def phone(browser: Any, request: Any):
    lang = request.param
    context = browser.new_context(
        viewport=PHONES[lang], locale=lang.replace("_", "-"), device_scale_factor=2
    )
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _check(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("load")
    got = page.evaluate(CHECK, TARGETS)
    assert got["wide"] <= got["inner"], (url, got["wide"])
    assert not got["small"], (url, got["small"])


def test_every_page_fits_a_phone(phone: Any, site: Any) -> None:
    lang = "en" if phone.viewport_size == PHONE else "zh_CN"
    anonymous = [site("/login"), site("/verify"), site("/lang/zh_CN?next=/login")]
    for url in anonymous:
        _check(phone, url)
    phone.goto(site(f"/lang/{lang}?next=/login"))
    phone.fill("input[name=username]", "admin")
    phone.fill("input[name=password]", PASSWORDS["admin"])
    phone.click("form.stack button[type=submit]")
    phone.wait_for_url(re.compile(r".*/search"))
    # a share link, so the order page shows its table
    phone.goto(site("/orders/PO-1001"))
    phone.click("#share-form button[type=submit]")
    phone.wait_for_selector("input.share-url")
    share = phone.locator("input.share-url").first.input_value()
    pages = [
        "/search",
        "/search?q=po",
        "/search?q=nothing-here",
        "/orders/PO-1001",
        "/orders/%E8%AE%A2%E5%8D%95-%E4%B8%83%E5%8F%B7",
        "/orders/NO-SUCH-ORDER",
        "/dashboard",
        "/live",
        "/admin",
        "/verify",
        "/export",
        "/clips/999999/video",
        "/clips/999999/thumb.jpg",
    ]
    for path in pages:
        _check(phone, site(path))
    _check(phone, site("/lang/zh_CN?next=/orders/PO-1001"))
    _check(phone, site("/search?q=po"))
    _check(phone, share.replace("http://localhost", site.url.rstrip("/")))
    _check(phone, share.replace("http://localhost", site.url.rstrip("/")) + "/summary")


def test_results_become_cards_on_a_phone(phone: Any, site: Any) -> None:
    phone.goto(site("/login"))
    phone.fill("input[name=username]", "viewer")
    phone.fill("input[name=password]", PASSWORDS["viewer"])
    phone.click("form.stack button[type=submit]")
    phone.goto(site("/search?q=sf"))
    assert phone.locator("#results thead").evaluate("t => getComputedStyle(t).display") == "none"
    rows = phone.locator("#results tbody tr")
    assert rows.count() >= 5
    for i in range(rows.count()):
        box = rows.nth(i).bounding_box()
        assert (
            box is not None
            and box["x"] >= 0
            and box["x"] + box["width"] <= phone.viewport_size["width"]
        )
        assert box["height"] >= 72  # a card: the thumbnail beside its details
